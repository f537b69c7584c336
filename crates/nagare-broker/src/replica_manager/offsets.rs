//! Offset lookups and log-start moves on partitions led here: ListOffsets (Kafka's
//! `ReplicaManager.fetchOffset` → `Partition.fetchOffsetForTimestamp`), DeleteRecords
//! (`deleteRecords`), OffsetForLeaderEpoch (`lastOffsetForLeaderEpoch`) and
//! DescribeProducers (`activeProducerState`).

use super::{IsolationLevel, ReplicaError, ReplicaManager};

/// A special or real timestamp of ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// -2: the log start offset.
    Earliest,
    /// -4: the earliest offset in local storage (the log start, without tiered storage).
    EarliestLocal,
    /// -5 (KIP-1005): the highest offset uploaded to remote storage; -1 when none is, or the
    /// topic is not tiered.
    LatestTiered,
    /// -1: the last stable offset for a read_committed consumer, the high watermark for a
    /// read_uncommitted one, the log end for a replica.
    Latest,
    /// -3: the record with the largest timestamp.
    MaxTimestamp,
    /// The first record with a timestamp at or after this one, below the last offset the
    /// caller may fetch.
    Timestamp(i64),
    /// Another negative value: answered with no offset.
    Unknown(i64),
}

impl OffsetSpec {
    /// The wire value's meaning.
    pub fn from_wire(ts: i64) -> OffsetSpec {
        match ts {
            -2 => OffsetSpec::Earliest,
            -4 => OffsetSpec::EarliestLocal,
            -5 => OffsetSpec::LatestTiered,
            -1 => OffsetSpec::Latest,
            -3 => OffsetSpec::MaxTimestamp,
            ts if ts >= 0 => OffsetSpec::Timestamp(ts),
            ts => OffsetSpec::Unknown(ts),
        }
    }
}

/// A ListOffsets answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndEpoch {
    /// The record's timestamp, -1 for the special specs without one.
    pub timestamp: i64,
    /// The offset.
    pub offset: i64,
    /// The leader epoch answered (the record's batch epoch, or the current epoch).
    pub leader_epoch: i32,
}

impl ReplicaManager {
    /// ListOffsets on a partition led here at `current_leader_epoch` (-1 for any).
    /// `isolation` is the consumer's isolation level, `None` for a follower or the debugging
    /// id (replica id other than -1). As Kafka's `Partition.fetchOffsetForTimestamp`, the
    /// last offset such a caller may fetch bounds the answer: the last stable offset for
    /// read_committed, the high watermark for read_uncommitted, the log end for replicas.
    /// "Latest" answers that offset; a record found by timestamp or as the max timestamp at
    /// or past it is not answered (`Ok(None)`, Kafka's -1/-1), so a read_committed consumer
    /// is never pointed into an undecided transaction.
    /// `Ok(None)`: no such offset (e.g. no record at or after the timestamp).
    pub fn fetch_offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
        spec: OffsetSpec,
        isolation: Option<IsolationLevel>,
    ) -> Result<Option<OffsetAndEpoch>, ReplicaError> {
        let p = self.leader_partition(topic, partition, current_leader_epoch)?;
        let epoch = p.epoch();
        let special = |offset: i64| {
            Some(OffsetAndEpoch {
                timestamp: -1,
                offset,
                leader_epoch: epoch,
            })
        };
        let last_fetchable = || match isolation {
            Some(IsolationLevel::ReadCommitted) => p.last_stable_offset(),
            Some(IsolationLevel::ReadUncommitted) => p.high_watermark(),
            None => p.log.log_end_offset(),
        };
        let found = match spec {
            // KIP-405: the log starts in remote storage for a tiered partition.
            OffsetSpec::Earliest => special(p.earliest_offset()),
            OffsetSpec::EarliestLocal => special(p.log.log_start_offset()),
            OffsetSpec::LatestTiered => match p.tier.copied_end().filter(|_| p.tier.enabled()) {
                Some(end) => Some(OffsetAndEpoch {
                    timestamp: -1,
                    offset: end,
                    leader_epoch: p.log.epoch_for_offset(end).unwrap_or(-1),
                }),
                None => Some(OffsetAndEpoch {
                    timestamp: -1,
                    offset: -1,
                    leader_epoch: -1,
                }),
            },
            OffsetSpec::Latest => special(last_fetchable()),
            OffsetSpec::MaxTimestamp => p.log.max_timestamp_offset()?.map(|o| OffsetAndEpoch {
                timestamp: o.timestamp,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
            }),
            OffsetSpec::Unknown(_) => None,
            OffsetSpec::Timestamp(ts) => p.log.offset_for_timestamp(ts)?.map(|o| OffsetAndEpoch {
                timestamp: o.timestamp,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
            }),
        };
        // Kafka's ReplicaManager.fetchOffset: a lookup result at or past the last fetchable
        // offset is answered as "no offset" (the special specs are exempt: they *are* bounds).
        let bounded = matches!(spec, OffsetSpec::MaxTimestamp | OffsetSpec::Timestamp(_));
        Ok(match found {
            Some(o) if bounded && o.offset >= last_fetchable() => None,
            other => other,
        })
    }

    /// DeleteRecords on a partition led here: moves the log start to `offset` (-1: as far as
    /// allowed, Kafka's `DeleteRecordsRequest.HIGH_WATERMARK`), never past the last stable
    /// offset (OFFSET_OUT_OF_RANGE beyond it). Kafka's bound is the high watermark; the
    /// last stable offset is that bound without the records of open transactions, which
    /// must stay readable until their marker (issue 13: DeleteRecords never cuts into an
    /// open transaction). Without transactions the two are equal. Returns the new low
    /// watermark (log start).
    pub fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, ReplicaError> {
        let p = self.leader_partition(topic, partition, -1)?;
        let bound = p.last_stable_offset();
        let target = if offset == -1 { bound } else { offset };
        if target < 0 || target > bound {
            return Err(ReplicaError::OffsetOutOfRange(target));
        }
        if p.tier.enabled() {
            // KIP-405: the whole log's start moves, remote part included; the remote log
            // manager persists it and deletes the remote segments below it.
            p.tier.request_log_start(target);
            if target < p.log.log_start_offset() {
                let low = p.earliest_offset();
                tracing::info!(tp = %p.tp, low_watermark = low, "deleted records (remote)");
                return Ok(low);
            }
        }
        let low = p.log.delete_records_before(target)?;
        tracing::info!(tp = %p.tp, low_watermark = low, "deleted records");
        Ok(low)
    }

    /// OffsetForLeaderEpoch on a partition led here at `current_leader_epoch` (-1 for any):
    /// the largest epoch at or below `leader_epoch` and where it ends in the log
    /// (KIP-101/279); (-1, -1) when there is none.
    pub fn last_offset_for_leader_epoch(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> Result<(i32, i64), ReplicaError> {
        let p = self.leader_partition(topic, partition, current_leader_epoch)?;
        Ok(p.log.end_offset_for_epoch(leader_epoch))
    }

    /// DescribeProducers (KIP-664) on a partition hosted here, as leader *or* follower (Kafka's
    /// `ReplicaManager.activeProducerState`: any replica's log has the producer states, and
    /// the admin client may address a given broker): every producer the log tracks, in
    /// producer id order. UNKNOWN_TOPIC_OR_PARTITION when it is not hosted here (the handler
    /// refines that to NOT_LEADER_OR_FOLLOWER for a partition the cluster has).
    pub fn active_producers(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<nagare_storage::ProducerStateEntry>, ReplicaError> {
        let p = self
            .partition(topic, partition)
            .ok_or(ReplicaError::UnknownTopicOrPartition)?;
        Ok(p.log.producer_states())
    }
}
