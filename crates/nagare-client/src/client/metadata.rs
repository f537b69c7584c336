//! The metadata cache: Metadata requests, topic descriptions, partition leaders, and waiting
//! for an admin change to show in metadata.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{topic_name, Client, Target};
use crate::error::{Error, Result};
use crate::types::{BrokerMetadata, Metadata, PartitionMetadata, TopicMetadata};

impl Client {
    /// Fetches metadata for `topics` (`None`: all topics; `Some(&[])`: brokers only) and
    /// updates the cache. Topics that do not exist are left out of the result.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> Result<Metadata> {
        let mut attempt = 0;
        loop {
            match self.metadata_once(topics).await {
                Ok(m) => return Ok(m),
                Err(e) if e.is_transport() && attempt < self.config.retries => {
                    tracing::debug!(error = %e, "metadata request failed; retrying");
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn metadata_once(&mut self, topics: Option<&[&str]>) -> Result<Metadata> {
        let resp: MetadataResponse = self
            .send_to(Target::Any, None, Duration::ZERO, |version| {
                let mut req = MetadataRequest::default();
                req.allow_auto_topic_creation = false;
                req.topics = match topics {
                    // v0 has no null array; an empty one means "all topics" there.
                    None if version == 0 => Some(Vec::new()),
                    None => None,
                    Some(names) => Some(
                        names
                            .iter()
                            .map(|n| {
                                let mut t = MetadataRequestTopic::default();
                                t.name = Some(topic_name(n));
                                t
                            })
                            .collect(),
                    ),
                };
                req
            })
            .await?;
        Ok(self.apply_metadata(resp, topics))
    }

    /// Turns a Metadata response into [`Metadata`] and updates the cache.
    fn apply_metadata(&mut self, resp: MetadataResponse, asked: Option<&[&str]>) -> Metadata {
        let mut brokers: Vec<BrokerMetadata> = resp
            .brokers
            .iter()
            .map(|b| BrokerMetadata {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(ToString::to_string),
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        let new_brokers: BTreeMap<i32, BrokerMetadata> =
            brokers.iter().map(|b| (b.node_id, b.clone())).collect();
        // Connections to brokers that left or moved are dropped.
        self.conns.retain(|id, _| {
            let old = self.brokers.get(id);
            let new = new_brokers.get(id);
            new.is_some() && (old.is_none() || old == new)
        });
        self.brokers = new_brokers;
        self.controller_id = resp.controller_id.0;
        self.cluster_id = resp.cluster_id.as_ref().map(ToString::to_string);

        let mut topics = Vec::new();
        let mut missing = Vec::new();
        for t in resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let error = ResponseError::try_from_code(t.error_code);
            if matches!(
                error,
                Some(ResponseError::UnknownTopicOrPartition | ResponseError::InvalidTopicException)
            ) {
                missing.push(name);
                continue;
            }
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error: ResponseError::try_from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            topics.push(TopicMetadata {
                name,
                topic_id: t.topic_id,
                is_internal: t.is_internal,
                partitions,
                error,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));

        if asked.is_none() {
            self.topics.clear();
        }
        for name in missing {
            self.topics.remove(&name);
        }
        if let Some(names) = asked {
            // A topic we asked about and that is not in the answer does not exist either.
            for n in names {
                if !topics.iter().any(|t| t.name == *n) {
                    self.topics.remove(*n);
                }
            }
        }
        for t in &topics {
            self.topics.insert(t.name.clone(), t.clone());
        }
        Metadata {
            cluster_id: self.cluster_id.clone(),
            controller_id: self.controller_id,
            brokers,
            topics,
        }
    }

    /// Names of all topics, sorted (internal topics included).
    pub async fn list_topics(&mut self) -> Result<Vec<String>> {
        let md = self.metadata(None).await?;
        Ok(md.topics.into_iter().map(|t| t.name).collect())
    }

    /// Metadata of the named topics (all topics if `names` is empty), sorted by name.
    ///
    /// Fails with [`Error::UnknownTopic`] if a named topic does not exist.
    pub async fn describe_topics(&mut self, names: &[&str]) -> Result<Vec<TopicMetadata>> {
        let md = if names.is_empty() {
            self.metadata(None).await?
        } else {
            self.metadata(Some(names)).await?
        };
        for n in names {
            if !md.topics.iter().any(|t| t.name == *n) {
                return Err(Error::UnknownTopic {
                    topic: (*n).to_owned(),
                });
            }
        }
        Ok(md.topics)
    }

    /// Metadata of one topic, from the cache or (if absent) from a broker.
    pub async fn topic_metadata(&mut self, topic: &str) -> Result<TopicMetadata> {
        if let Some(t) = self.topics.get(topic) {
            if !t.partitions.is_empty() {
                return Ok(t.clone());
            }
        }
        self.metadata(Some(&[topic])).await?;
        self.topics
            .get(topic)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_owned(),
            })
    }

    /// Forgets cached metadata of `topic`, so the next request refreshes it.
    pub fn invalidate_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The leader of a partition, refreshing metadata if the cache has none.
    pub(crate) async fn leader_for(&mut self, topic: &str, partition: i32) -> Result<i32> {
        let cached = self
            .topics
            .get(topic)
            .and_then(|t| t.partition(partition))
            .map(|p| p.leader)
            .filter(|&l| l >= 0 && self.brokers.contains_key(&l));
        if let Some(leader) = cached {
            return Ok(leader);
        }
        self.metadata(Some(&[topic])).await?;
        let t = self.topics.get(topic).ok_or_else(|| Error::UnknownTopic {
            topic: topic.to_owned(),
        })?;
        if t.partitions.is_empty() {
            // Still being created.
            return Err(Error::LeaderNotAvailable {
                topic: topic.to_owned(),
                partition,
            });
        }
        let p = t
            .partition(partition)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                count: t.partitions.len(),
            })?;
        if p.leader < 0 {
            return Err(Error::LeaderNotAvailable {
                topic: topic.to_owned(),
                partition,
            });
        }
        if !self.brokers.contains_key(&p.leader) {
            return Err(Error::UnknownBroker { node_id: p.leader });
        }
        Ok(p.leader)
    }

    pub(super) fn topic_id(&self, topic: &str) -> Uuid {
        self.topics.get(topic).map_or(Uuid::nil(), |t| t.topic_id)
    }

    /// Polls metadata until `done` holds for every topic in `names` or the admin timeout
    /// passes (then it just returns: the change was accepted, only its propagation is slow).
    pub(super) async fn wait_for_topics(
        &mut self,
        names: &[&str],
        done: impl Fn(&str, Option<&TopicMetadata>) -> bool,
    ) {
        let deadline = Instant::now() + self.config.admin_timeout;
        let mut wait = Duration::from_millis(10);
        loop {
            if let Ok(md) = self.metadata(Some(names)).await {
                if names
                    .iter()
                    .all(|n| done(n, md.topics.iter().find(|t| t.name == *n)))
                {
                    return;
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(?names, "metadata did not reflect the change in time");
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(200));
        }
    }
}
