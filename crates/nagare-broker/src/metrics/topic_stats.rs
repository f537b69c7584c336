//! Kafka's `BrokerTopicMetrics`: bytes and messages in and out per topic, as JMX exports them
//! under `kafka.server:type=BrokerTopicMetrics,name=...,topic=...`.
//!
//! What is counted, as Kafka counts it (`ReplicaManager.appendToLocalLog`,
//! `KafkaApis.handleFetchRequest`):
//! - *bytes in*: the size of the record batches a client's Produce appended on the leader
//!   (batch headers included, the request's other fields not); coordinator writes to
//!   `__consumer_offsets` / `__transaction_state` and replication are not client traffic;
//! - *messages in*: the records in those batches;
//! - *bytes out*: the record bytes a consumer's Fetch response carried (a throttled response,
//!   sent empty, counts nothing);
//! - *replication bytes in/out*: the same for follower fetches, kept apart so client traffic
//!   is not inflated by the replication factor (Kafka's `ReplicationBytesInPerSec`).
//!
//! A partition holds its topic's [`TopicCounters`] (looked up once, when the replica is
//! created), so the produce path adds to atomics without a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

/// One topic's counters (monotonic, since this broker first hosted the topic).
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Record-batch bytes appended by clients' Produce requests.
    pub bytes_in: AtomicU64,
    /// Records appended by clients' Produce requests.
    pub messages_in: AtomicU64,
    /// Record bytes sent to consumers.
    pub bytes_out: AtomicU64,
    /// Record bytes appended as a follower.
    pub replication_bytes_in: AtomicU64,
    /// Record bytes sent to followers.
    pub replication_bytes_out: AtomicU64,
    /// Produce requests' partitions that failed (Kafka's `FailedProduceRequestsPerSec`).
    pub failed_produce: AtomicU64,
}

/// A point-in-time copy of one topic's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicSnapshot {
    /// See [`TopicCounters::bytes_in`].
    pub bytes_in: u64,
    /// See [`TopicCounters::messages_in`].
    pub messages_in: u64,
    /// See [`TopicCounters::bytes_out`].
    pub bytes_out: u64,
    /// See [`TopicCounters::replication_bytes_in`].
    pub replication_bytes_in: u64,
    /// See [`TopicCounters::replication_bytes_out`].
    pub replication_bytes_out: u64,
    /// See [`TopicCounters::failed_produce`].
    pub failed_produce: u64,
}

impl TopicCounters {
    /// Adds `n` to `counter` (relaxed: the counters order nothing).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> TopicSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TopicSnapshot {
            bytes_in: l(&self.bytes_in),
            messages_in: l(&self.messages_in),
            bytes_out: l(&self.bytes_out),
            replication_bytes_in: l(&self.replication_bytes_in),
            replication_bytes_out: l(&self.replication_bytes_out),
            failed_produce: l(&self.failed_produce),
        }
    }
}

/// The counters of every topic this broker hosts.
#[derive(Debug, Default)]
pub struct BrokerTopicStats {
    topics: RwLock<HashMap<String, Arc<TopicCounters>>>,
}

impl BrokerTopicStats {
    /// The counters of `topic`, created on first use.
    pub fn topic(&self, topic: &str) -> Arc<TopicCounters> {
        if let Some(c) = self.topics.read().get(topic) {
            return c.clone();
        }
        self.topics
            .write()
            .entry(topic.to_string())
            .or_default()
            .clone()
    }

    /// The counters of `topic` if it has any.
    pub fn get(&self, topic: &str) -> Option<Arc<TopicCounters>> {
        self.topics.read().get(topic).cloned()
    }

    /// Forgets a deleted topic (Kafka's `BrokerTopicStats.removeMetrics`), so a scrape stops
    /// reporting it; a topic re-created under the name starts from zero.
    pub fn remove(&self, topic: &str) {
        self.topics.write().remove(topic);
    }

    /// Every topic's counters, sorted by topic.
    pub fn snapshot(&self) -> Vec<(String, TopicSnapshot)> {
        let mut v: Vec<(String, TopicSnapshot)> = self
            .topics
            .read()
            .iter()
            .map(|(t, c)| (t.clone(), c.snapshot()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_counter_set_per_topic_until_removed() {
        let s = BrokerTopicStats::default();
        let a = s.topic("a");
        TopicCounters::add(&a.bytes_in, 10);
        TopicCounters::add(&s.topic("a").bytes_in, 5);
        assert_eq!(s.get("a").map(|c| c.snapshot().bytes_in), Some(15));
        assert!(s.get("b").is_none());
        s.remove("a");
        assert!(s.snapshot().is_empty());
        assert_eq!(s.topic("a").snapshot(), TopicSnapshot::default());
    }
}
