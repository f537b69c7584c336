//! Records and log directories: DeleteRecords (at each partition's leader) and
//! DescribeLogDirs (per broker), as `kafka-delete-records.sh` and `kafka-log-dirs.sh` use them.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DeleteRecordsRequest, DescribeLogDirsRequest};

use super::{duration_ms_i32, topic_name, Client, Target};
use crate::error::{check_code, Result};

/// The outcome of deleting records of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRecordsResult {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The partition's new log start offset (on success).
    pub low_watermark: i64,
    /// Kafka error code (0: deleted).
    pub error_code: i16,
}

/// One log directory of a broker (DescribeLogDirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirDescription {
    /// The directory's path.
    pub path: String,
    /// Kafka error code of the directory (0, or KAFKA_STORAGE_ERROR when offline).
    pub error_code: i16,
    /// The partitions in it: (topic, partition) → (size in bytes, offset lag, is future).
    pub partitions: BTreeMap<(String, i32), (i64, i64, bool)>,
    /// Total bytes of the volume (-1 if unknown).
    pub total_bytes: i64,
    /// Usable bytes of the volume (-1 if unknown).
    pub usable_bytes: i64,
}

impl Client {
    /// Deletes the records before `offset` of each (topic, partition, offset): the log start
    /// moves up to it (`-1`: the high watermark). One request per leader; per-partition
    /// errors are in the results, request-level failures are the `Err`.
    pub async fn delete_records(
        &mut self,
        offsets: &[(&str, i32, i64)],
    ) -> Result<Vec<DeleteRecordsResult>> {
        let mut by_leader: BTreeMap<i32, Vec<(&str, i32, i64)>> = BTreeMap::new();
        for &(topic, partition, offset) in offsets {
            let leader = self.leader_for(topic, partition).await?;
            by_leader
                .entry(leader)
                .or_default()
                .push((topic, partition, offset));
        }
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let mut out = Vec::new();
        for (leader, items) in by_leader {
            let resp = self
                .send_to(
                    Target::Node(leader),
                    None,
                    self.config.admin_timeout,
                    |_| {
                        let mut topics: BTreeMap<&str, Vec<DeleteRecordsPartition>> =
                            BTreeMap::new();
                        for &(t, p, o) in &items {
                            let mut part = DeleteRecordsPartition::default();
                            part.partition_index = p;
                            part.offset = o;
                            topics.entry(t).or_default().push(part);
                        }
                        let mut req = DeleteRecordsRequest::default();
                        req.topics = topics
                            .into_iter()
                            .map(|(t, parts)| {
                                let mut topic = DeleteRecordsTopic::default();
                                topic.name = topic_name(t);
                                topic.partitions = parts;
                                topic
                            })
                            .collect();
                        req.timeout_ms = timeout_ms;
                        req
                    },
                )
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    out.push(DeleteRecordsResult {
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                        low_watermark: p.low_watermark,
                        error_code: p.error_code,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// The log directories of broker `node` and the partitions in them (`topics`: only
    /// these topics' partitions; `None`: all).
    pub async fn describe_log_dirs(
        &mut self,
        node: i32,
        topics: Option<&[(&str, Vec<i32>)]>,
    ) -> Result<Vec<LogDirDescription>> {
        if !self.brokers.contains_key(&node) {
            self.metadata(Some(&[])).await?;
        }
        let resp = self
            .send_to(Target::Node(node), None, Duration::ZERO, |_| {
                let mut req = DescribeLogDirsRequest::default();
                req.topics = topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| {
                            let mut d = DescribableLogDirTopic::default();
                            d.topic = topic_name(t);
                            d.partitions = ps.clone();
                            d
                        })
                        .collect()
                });
                req
            })
            .await?;
        check_code(resp.error_code, None, || {
            format!("cannot describe the log directories of broker {node}")
        })?;
        Ok(resp
            .results
            .into_iter()
            .map(|r| LogDirDescription {
                path: r.log_dir.to_string(),
                error_code: r.error_code,
                partitions: r
                    .topics
                    .into_iter()
                    .flat_map(|t| {
                        let name = t.name.0.to_string();
                        t.partitions.into_iter().map(move |p| {
                            (
                                (name.clone(), p.partition_index),
                                (p.partition_size, p.offset_lag, p.is_future_key),
                            )
                        })
                    })
                    .collect(),
                total_bytes: r.total_bytes,
                usable_bytes: r.usable_bytes,
            })
            .collect())
    }

    /// The local size in bytes of each partition of `topic` on broker `node`, summed over
    /// its log directories (DescribeLogDirs; with tiered storage, KIP-405, the local tail
    /// only). Partitions the broker does not host are absent.
    pub async fn local_partition_sizes(
        &mut self,
        node: i32,
        topic: &str,
    ) -> Result<Vec<(i32, i64)>> {
        let mut sizes: BTreeMap<i32, i64> = BTreeMap::new();
        for dir in self.describe_log_dirs(node, None).await? {
            for ((t, partition), (size, _, _)) in dir.partitions {
                if t == topic {
                    *sizes.entry(partition).or_default() += size;
                }
            }
        }
        Ok(sizes.into_iter().collect())
    }
}
