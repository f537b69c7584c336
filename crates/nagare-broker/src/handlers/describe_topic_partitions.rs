//! DescribeTopicPartitions (key 75, KIP-966): the paginated topic describe Kafka 4's admin
//! client uses for `describeTopics` by name. Topics come sorted by name; a response holds at
//! most `response_partition_limit` partitions (capped by `max.request.partition.size.limit`)
//! and a cursor to continue from, as Kafka's `DescribeTopicPartitionsRequestHandler`.

use std::sync::Arc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use nagare_metadata::{MetadataImage, Uuid};
use nagare_protocol::error::ResponseError;

use super::{respond, sb, HandlerResult, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 0);

/// Kafka's internal topics (`is_internal`).
const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Handles DescribeTopicPartitions.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeTopicPartitionsRequest = req.decode()?;
    let image = broker.image();
    let cap = broker.config.max_request_partition_size_limit.max(1);
    let limit = if r.response_partition_limit <= 0 {
        cap
    } else {
        r.response_partition_limit.min(cap)
    };
    let cursor = r
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.to_string(), c.partition_index));
    let requested: Vec<String> = r.topics.iter().map(|t| t.name.to_string()).collect();
    if let Some((topic, partition)) = &cursor {
        // Kafka: the cursor must name a requested topic (when topics are listed) and a
        // partition index ≥ 0.
        if *partition < 0 || (!requested.is_empty() && !requested.contains(topic)) {
            // As Kafka's error response for an InvalidRequestException: every requested
            // topic answered INVALID_REQUEST.
            tracing::debug!(peer = %req.ctx.connection.peer, %topic, partition, "DescribeTopicPartitions with an invalid cursor");
            let resp = DescribeTopicPartitionsResponse::default().with_topics(
                requested
                    .iter()
                    .map(|n| {
                        DescribeTopicPartitionsResponseTopic::default()
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_name(Some(TopicName(sb(n.clone()))))
                            .with_topic_authorized_operations(i32::MIN)
                    })
                    .collect(),
            );
            return Ok(Reply::Now(respond(
                ApiKey::DescribeTopicPartitions,
                req.version(),
                req.correlation_id(),
                &resp,
            )));
        }
    }
    let may_describe =
        |n: &str| broker.authorize(&req.ctx, AclOperation::Describe, &Resource::topic(n));
    // (name, authorized) in name order; all topics: only those the principal may describe.
    let mut names: Vec<(String, bool)> = if requested.is_empty() {
        image
            .topic_names()
            .into_iter()
            .filter(|n| may_describe(n))
            .map(|n| (n, true))
            .collect()
    } else {
        let mut v: Vec<String> = requested;
        v.sort();
        v.dedup();
        v.into_iter()
            .map(|n| {
                let ok = may_describe(&n);
                (n, ok)
            })
            .collect()
    };
    if let Some((topic, _)) = &cursor {
        names.retain(|(n, _)| n >= topic);
    }
    let page = paginate(&image, &names, cursor.as_ref(), limit);
    let mut topics = Vec::with_capacity(page.topics.len());
    for entry in page.topics {
        topics.push(match entry {
            PageTopic::Error(name, code) => DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(code)
                .with_name(Some(TopicName(sb(name))))
                .with_topic_id(Uuid::nil())
                .with_topic_authorized_operations(i32::MIN),
            PageTopic::Partitions(name, range) => {
                let ops = broker.authorized_operations(&req.ctx, &Resource::topic(&name));
                topic_entry(&image, &name, range, ops)
            }
        });
    }
    let resp = DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(page.next.map(|(t, p)| {
            Cursor::default()
                .with_topic_name(TopicName(sb(t)))
                .with_partition_index(p)
        }));
    Ok(Reply::Now(respond(
        ApiKey::DescribeTopicPartitions,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

/// One topic of a page: an error, or the partition indexes (from, to) it shows.
#[derive(Debug, PartialEq)]
enum PageTopic {
    Error(String, i16),
    Partitions(String, (i32, i32)),
}

#[derive(Debug, PartialEq)]
struct Page {
    topics: Vec<PageTopic>,
    next: Option<(String, i32)>,
}

/// Cuts the page: topics in order, partitions from the cursor's on, at most `limit`
/// partitions; the next cursor is the first partition left out.
fn paginate(
    image: &MetadataImage,
    names: &[(String, bool)],
    cursor: Option<&(String, i32)>,
    limit: i32,
) -> Page {
    let mut left = limit;
    let mut topics = Vec::new();
    for (name, authorized) in names {
        if !authorized {
            topics.push(PageTopic::Error(
                name.clone(),
                ResponseError::TopicAuthorizationFailed.code(),
            ));
            continue;
        }
        let Some(t) = image.topic(name) else {
            topics.push(PageTopic::Error(
                name.clone(),
                ResponseError::UnknownTopicOrPartition.code(),
            ));
            continue;
        };
        let count = t.partitions.len() as i32;
        let first = match cursor {
            Some((c, p)) if c == name => (*p).min(count),
            _ => 0,
        };
        if left == 0 {
            return Page {
                topics,
                next: Some((name.clone(), first)),
            };
        }
        let last = (first + left).min(count);
        topics.push(PageTopic::Partitions(name.clone(), (first, last)));
        left -= last - first;
        if last < count {
            return Page {
                topics,
                next: Some((name.clone(), last)),
            };
        }
    }
    Page { topics, next: None }
}

fn topic_entry(
    image: &MetadataImage,
    name: &str,
    (from, to): (i32, i32),
    authorized_operations: i32,
) -> DescribeTopicPartitionsResponseTopic {
    let Some(t) = image.topic(name) else {
        return DescribeTopicPartitionsResponseTopic::default()
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            .with_name(Some(TopicName(sb(name.to_string()))));
    };
    let partitions = t
        .partitions
        .range(from..to)
        .map(|(i, p)| {
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(if p.leader < 0 {
                    ResponseError::LeaderNotAvailable.code()
                } else {
                    0
                })
                .with_partition_index(*i)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
                // Nagare has no eligible leader replicas (KIP-966 ELR) yet: empty, as Kafka
                // answers with ELR disabled.
                .with_eligible_leader_replicas(Some(vec![]))
                .with_last_known_elr(Some(vec![]))
                .with_offline_replicas(super::metadata::offline_replicas(image, &p.replicas))
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(sb(name.to_string()))))
        .with_topic_id(t.id)
        .with_is_internal(INTERNAL_TOPICS.contains(&name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    use kafka_protocol::messages::{DescribeTopicPartitionsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use crate::authorizer::{AclOperation, Authorizer, Requester, Resource, ResourceType};
    use crate::testing::TestBroker;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_string()))
    }

    fn request(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(name(t)))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                Cursor::default()
                    .with_topic_name(name(t))
                    .with_partition_index(p)
            }))
    }

    /// (topic, error, partition indexes) of a response, and its next cursor.
    type Shown = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

    fn shown(r: &kafka_protocol::messages::DescribeTopicPartitionsResponse) -> Shown {
        (
            r.topics
                .iter()
                .map(|t| {
                    (
                        t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                        t.error_code,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect(),
            r.next_cursor
                .as_ref()
                .map(|c| (c.topic_name.to_string(), c.partition_index)),
        )
    }

    fn t(n: &str, code: i16, parts: std::ops::Range<i32>) -> (String, i16, Vec<i32>) {
        (n.to_string(), code, parts.collect())
    }

    #[tokio::test]
    async fn pages_through_topics_in_name_order_with_a_cursor() {
        let b = TestBroker::start().await;
        b.create_topic("b", 3).await;
        b.create_topic("a", 2).await;
        b.create_topic("c", 1).await;
        // Requested out of order: answered sorted; a limit of 3 cuts inside "b".
        let r = b
            .send(&request(&["c", "b", "a"], 3, None), 0)
            .await
            .expect("page 1");
        assert_eq!(
            shown(&r),
            (
                vec![t("a", 0, 0..2), t("b", 0, 0..1)],
                Some(("b".into(), 1))
            )
        );
        let r = b
            .send(&request(&["c", "b", "a"], 3, Some(("b", 1))), 0)
            .await
            .expect("page 2");
        assert_eq!(shown(&r), (vec![t("b", 0, 1..3), t("c", 0, 0..1)], None));
        // A page that ends exactly at a topic boundary points at the next topic's start.
        let r = b
            .send(&request(&["a", "b"], 2, None), 0)
            .await
            .expect("boundary");
        assert_eq!(shown(&r), (vec![t("a", 0, 0..2)], Some(("b".into(), 0))));
        // No topics: every topic (and a limit above the broker's cap is capped, not refused).
        let r = b.send(&request(&[], 100_000, None), 0).await.expect("all");
        assert_eq!(
            shown(&r),
            (
                vec![t("a", 0, 0..2), t("b", 0, 0..3), t("c", 0, 0..1)],
                None
            )
        );
        let topic = &r.topics[0];
        assert!(!topic.topic_id.is_nil());
        assert!(!topic.is_internal);
        assert_eq!(topic.partitions[0].leader_id.0, 1);
        assert_eq!(topic.partitions[0].replica_nodes.len(), 1);
        assert_eq!(topic.partitions[0].isr_nodes.len(), 1);
        assert!(
            topic.topic_authorized_operations > 0,
            "all operations without an authorizer"
        );
        // An unknown topic, and a cursor naming a topic not requested.
        let r = b
            .send(&request(&["nope", "a"], 10, None), 0)
            .await
            .expect("unknown");
        assert_eq!(shown(&r), (vec![t("a", 0, 0..2), t("nope", 3, 0..0)], None));
        let r = b
            .send(&request(&["a"], 10, Some(("b", 0))), 0)
            .await
            .expect("bad cursor");
        assert_eq!(shown(&r), (vec![t("a", 42, 0..0)], None), "INVALID_REQUEST");
    }

    /// Denies DESCRIBE on topic `secret`.
    struct NoSecret;

    impl Authorizer for NoSecret {
        fn authorize(&self, _: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
            !(op == AclOperation::Describe
                && r.resource_type == ResourceType::Topic
                && r.name == "secret")
        }
    }

    #[tokio::test]
    async fn unauthorized_topics_are_refused_or_left_out() {
        let b = TestBroker::with_authorizer(Arc::new(NoSecret)).await;
        b.create_topic("open", 1).await;
        b.create_topic("secret", 1).await;
        let r = b
            .send(&request(&["secret", "open"], 10, None), 0)
            .await
            .expect("named");
        assert_eq!(
            shown(&r),
            (vec![t("open", 0, 0..1), t("secret", 29, 0..0)], None),
            "TOPIC_AUTHORIZATION_FAILED"
        );
        let r = b.send(&request(&[], 10, None), 0).await.expect("all");
        assert_eq!(shown(&r), (vec![t("open", 0, 0..1)], None));
    }
}
