//! DescribeLogDirs (key 35): the partitions each log directory holds with their sizes, and
//! (v4) the directory's total and usable bytes — what `kafka-log-dirs.sh` and admin tools
//! show. As Kafka, it needs DESCRIBE on the cluster.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};
use nagare_protocol::error::ResponseError;

use super::{respond, sb, HandlerResult, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (1, 4);

/// Handles DescribeLogDirs.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeLogDirsRequest = req.decode()?;
    let v = req.version();
    let mut resp = DescribeLogDirsResponse::default();
    if !broker.authorize(&req.ctx, AclOperation::Describe, &Resource::cluster()) {
        // Kafka: no results; the top-level error code from v3.
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
    } else {
        // None: every partition; else the (topic, partition) pairs asked for.
        let wanted: Option<HashSet<(String, i32)>> = r.topics.map(|topics| {
            topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
                .collect()
        });
        let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
        for p in broker.replicas.all_partitions() {
            let key = (p.tp.topic.clone(), p.tp.partition);
            if wanted.as_ref().is_some_and(|w| !w.contains(&key)) {
                continue;
            }
            by_topic.entry(key.0).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(key.1)
                    .with_partition_size(p.size_bytes() as i64)
                    // The lag of a future replica (a move between directories) behind the
                    // current one; Nagare has no future replicas.
                    .with_offset_lag(0)
                    .with_is_future_key(false),
            );
        }
        let topics = by_topic
            .into_iter()
            .map(|(name, mut partitions)| {
                partitions.sort_by_key(|p| p.partition_index);
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(sb(name)))
                    .with_partitions(partitions)
            })
            .collect();
        let dir = absolute(&broker.config.log_dirs[0]);
        let (total, usable) = space(&dir).unwrap_or((-1, -1));
        resp.results = vec![if broker.replicas.log_dir_offline() {
            // Kafka's `ReplicaManager.describeLogDirs`: an offline directory is listed with
            // KAFKA_STORAGE_ERROR and nothing else.
            DescribeLogDirsResult::default()
                .with_log_dir(sb(dir.display().to_string()))
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_total_bytes(-1)
                .with_usable_bytes(-1)
        } else {
            DescribeLogDirsResult::default()
                .with_log_dir(sb(dir.display().to_string()))
                .with_topics(topics)
                .with_total_bytes(total)
                .with_usable_bytes(usable)
        }];
    }
    if v < 3 && resp.error_code != 0 {
        // No top-level error code before v3: the refusal is an empty result list.
        resp.error_code = 0;
    }
    Ok(Reply::Now(respond(
        ApiKey::DescribeLogDirs,
        v,
        req.correlation_id(),
        &resp,
    )))
}

fn absolute(p: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Total and usable bytes of the filesystem holding `dir` (Kafka reports the file store's
/// total and usable space).
fn space(dir: &Path) -> Option<(i64, i64)> {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let unit = s.f_frsize.max(1);
            Some((
                (s.f_blocks.saturating_mul(unit)).min(i64::MAX as u64) as i64,
                (s.f_bavail.saturating_mul(unit)).min(i64::MAX as u64) as i64,
            ))
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "statvfs of the log dir failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::{
        produce_request, DescribeLogDirsRequest, ProduceRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    use crate::authorizer::{AclOperation, Authorizer, Requester, Resource};
    use crate::testing::TestBroker;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_string()))
    }

    async fn produce(b: &TestBroker, topic: &str, partition: i32, bytes: usize) {
        let batch = nagare_protocol::batch_builder::build_batch(
            [(None, Some(Bytes::from(vec![7u8; bytes])))],
            0,
            0,
        )
        .expect("batch");
        let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.freeze()))]),
        ]);
        let r = b.send(&req, 9).await.expect("produce");
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }

    #[tokio::test]
    async fn reports_partition_sizes_and_the_file_store() {
        let b = TestBroker::start().await;
        b.create_topic("logs", 2).await;
        produce(&b, "logs", 1, 10_000).await;
        let all = b
            .send(&DescribeLogDirsRequest::default().with_topics(None), 4)
            .await
            .expect("all");
        assert_eq!(all.error_code, 0);
        assert_eq!(all.results.len(), 1);
        let dir = &all.results[0];
        assert!(std::path::Path::new(dir.log_dir.as_str()).is_absolute());
        assert!(dir.total_bytes > 0 && dir.usable_bytes > 0 && dir.usable_bytes <= dir.total_bytes);
        let logs = dir
            .topics
            .iter()
            .find(|t| t.name.as_str() == "logs")
            .expect("topic");
        let sizes: Vec<(i32, i64)> = logs
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes[0], (0, 0), "nothing written to partition 0");
        assert_eq!(sizes[1].0, 1);
        assert!(
            (10_000..11_000).contains(&sizes[1].1),
            "one 10 kB record plus batch overhead: {sizes:?}"
        );
        // Only what was asked for.
        let one = b
            .send(
                &DescribeLogDirsRequest::default().with_topics(Some(vec![
                    DescribableLogDirTopic::default()
                        .with_topic(name("logs"))
                        .with_partitions(vec![1]),
                ])),
                1,
            )
            .await
            .expect("filtered");
        let topics = &one.results[0].topics;
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions.len(), 1);
        assert_eq!(topics[0].partitions[0].partition_index, 1);
    }

    struct NoClusterDescribe;

    impl Authorizer for NoClusterDescribe {
        fn authorize(&self, _: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
            !(op == AclOperation::Describe && r.name == crate::authorizer::CLUSTER_NAME)
        }
    }

    #[tokio::test]
    async fn needs_describe_on_the_cluster() {
        let b = TestBroker::with_authorizer(Arc::new(NoClusterDescribe)).await;
        b.create_topic("logs", 1).await;
        let r = b
            .send(&DescribeLogDirsRequest::default().with_topics(None), 4)
            .await
            .expect("v4");
        assert_eq!(r.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED");
        assert!(r.results.is_empty());
        let r = b
            .send(&DescribeLogDirsRequest::default().with_topics(None), 2)
            .await
            .expect("v2");
        assert!(
            r.results.is_empty(),
            "no top-level error before v3: no results"
        );
    }
}
