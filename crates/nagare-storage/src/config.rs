//! Partition identity and per-topic log configuration (Kafka's topic configs and defaults).

use std::fmt;

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Creates a topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The log directory name, `<topic>-<partition>`, as Kafka names it.
    pub fn dir_name(&self) -> String {
        self.to_string()
    }

    /// Parses a log directory name `<topic>-<partition>`. The topic may itself contain dashes,
    /// so the partition is what follows the last one. Returns `None` for anything else
    /// (including Kafka's `-delete`, `-future` and `-stray` directories).
    pub fn from_dir_name(name: &str) -> Option<TopicPartition> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty() || partition.is_empty() {
            return None;
        }
        if !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let partition: i32 = partition.parse().ok()?;
        // Topic names are [a-zA-Z0-9._-]; a dot would also be how Kafka marks renamed dirs.
        if !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return None;
        }
        Some(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Which clock the log's timestamps come from (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp every batch with the broker's clock at append (KIP-32).
    LogAppendTime,
}

/// Per-topic log configuration. Field comments name the Kafka topic config; `Default` gives
/// Kafka 4.x defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when a segment would grow beyond this (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first append is this old (default 7 days).
    pub segment_ms: i64,
    /// `segment.index.bytes`: maximum size of an index file; roll when an index is full
    /// (default 10 MiB).
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of batches between two sparse index entries (default 4096).
    pub index_interval_bytes: u64,
    /// `retention.bytes`: delete old segments while the log is larger (-1 = no limit, default).
    pub retention_bytes: i64,
    /// `retention.ms`: delete segments whose newest timestamp is older (-1 = forever; default
    /// 7 days).
    pub retention_ms: i64,
    /// `max.message.bytes`: largest batch accepted from producers (default 1048588).
    pub max_message_bytes: u32,
    /// `message.timestamp.type` (default CreateTime).
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime timestamp may be
    /// (default `i64::MAX`, no limit).
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime timestamp may be
    /// (default 3600000 since Kafka 4.0, KIP-1030).
    pub message_timestamp_after_max_ms: i64,
    /// `file.delete.delay.ms`: how long deleted segment files linger as `*.deleted` so that
    /// in-flight reads finish (default 60000).
    pub file_delete_delay_ms: i64,
    /// `cleanup.policy` contains `delete` (default true): time and size retention apply.
    pub cleanup_policy_delete: bool,
    /// `cleanup.policy` contains `compact` (default false): the log cleaner keeps the latest
    /// record per key, and producers must give every record a key.
    pub cleanup_policy_compact: bool,
    /// `delete.retention.ms`: how long tombstones survive after the cleaner first saw them
    /// (the batch's delete horizon, KIP-534; default 86400000).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted (default 0).
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes the log cleanable
    /// whatever its dirty ratio, and rolls the active segment (KIP-354; default `i64::MAX`).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the dirty share of the log above which it is cleaned
    /// (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            segment_index_bytes: 10_485_760,
            index_interval_bytes: 4096,
            retention_bytes: -1,
            retention_ms: 604_800_000,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            file_delete_delay_ms: 60_000,
            cleanup_policy_delete: true,
            cleanup_policy_compact: false,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

impl LogConfig {
    /// `segment.bytes` as used: Kafka's is an `int`, and index positions are 32-bit.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }

    /// How old the active segment may get before it rolls: `segment.ms`, or less for a
    /// compacted log with `max.compaction.lag.ms` (KIP-354, Kafka's `maxSegmentMs`), so that
    /// records cannot stay uncompactable in the active segment longer than the lag.
    pub(crate) fn max_segment_ms(&self) -> i64 {
        if self.cleanup_policy_compact && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip() {
        let tp = TopicPartition::new("my-topic.v2", 12);
        assert_eq!(tp.to_string(), "my-topic.v2-12");
        assert_eq!(TopicPartition::from_dir_name(&tp.dir_name()), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("t-"), None);
        assert_eq!(TopicPartition::from_dir_name("-3"), None);
        assert_eq!(TopicPartition::from_dir_name("t-x"), None);
        assert_eq!(TopicPartition::from_dir_name("t-0.abc-delete"), None);
        assert_eq!(TopicPartition::from_dir_name("t-0-future"), None);
    }
}
