//! Topic administration at the controller: create and delete topics, add partitions, elect
//! leaders, each retried while the answer is NOT_CONTROLLER.

use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;

use super::{duration_ms_i32, topic_name, Client, Target};
use crate::error::{check_code, Error, Result};
use crate::types::NewTopic;

impl Client {
    /// Sends an admin request to the controller, retrying on NOT_CONTROLLER after refreshing
    /// metadata. `not_controller` says whether a response failed only for that reason.
    pub(crate) async fn send_admin<R: Request>(
        &mut self,
        build: impl Fn(i16) -> R,
        not_controller: impl Fn(&R::Response) -> bool,
    ) -> Result<R::Response> {
        let mut attempt = 0;
        loop {
            let result = self
                .send_to(Target::Controller, None, Duration::ZERO, &build)
                .await;
            let retry = match &result {
                Ok(resp) => not_controller(resp),
                Err(e) => e.is_transport(),
            };
            if !retry || attempt >= self.config.retries {
                return result;
            }
            self.backoff(attempt).await;
            attempt += 1;
            let _ = self.metadata(Some(&[])).await;
        }
    }

    /// Creates topics (`validate_only`: only check that it would work). Waits until the new
    /// topics show in metadata with a leader for every partition, so they can be used at once.
    ///
    /// Fails with the first per-topic error, e.g. [`Error::Kafka`] with
    /// [`ResponseError::TopicAlreadyExists`].
    pub async fn create_topics(&mut self, topics: &[NewTopic], validate_only: bool) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let resp = self
            .send_admin(
                |_| {
                    let mut req = CreateTopicsRequest::default();
                    req.timeout_ms = timeout_ms;
                    req.validate_only = validate_only;
                    req.topics = topics
                        .iter()
                        .map(|t| {
                            let mut ct = CreatableTopic::default();
                            ct.name = topic_name(&t.name);
                            ct.num_partitions = t.partitions.unwrap_or(-1);
                            ct.replication_factor = t.replication_factor.unwrap_or(-1);
                            ct.configs = t
                                .configs
                                .iter()
                                .map(|(k, v)| {
                                    let mut c = CreatableTopicConfig::default();
                                    c.name = StrBytes::from_string(k.clone());
                                    c.value = Some(StrBytes::from_string(v.clone()));
                                    c
                                })
                                .collect();
                            ct
                        })
                        .collect();
                    req
                },
                |resp| {
                    !resp.topics.is_empty()
                        && resp
                            .topics
                            .iter()
                            .all(|t| t.error_code == ResponseError::NotController.code())
                },
            )
            .await?;
        for t in &topics_in_order(topics.iter().map(|t| t.name.as_str()), &resp.topics, |r| {
            r.name.0.as_str()
        }) {
            match t {
                Some(r) => check_code(r.error_code, r.error_message.as_deref(), || {
                    format!("cannot create topic '{}'", r.name.0)
                })?,
                None => {
                    return Err(Error::UnexpectedResponse {
                        addr: "controller".into(),
                        reason: "CreateTopics response lacks a topic".into(),
                    })
                }
            }
        }
        if !validate_only {
            let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
            self.wait_for_topics(&names, |_, t| {
                t.is_some_and(|t| {
                    !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0)
                })
            })
            .await;
        }
        Ok(())
    }

    /// Deletes topics, then waits until they are gone from metadata.
    pub async fn delete_topics(&mut self, names: &[&str]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let resp = self
            .send_admin(
                |_| {
                    let mut req = DeleteTopicsRequest::default();
                    req.timeout_ms = timeout_ms;
                    // v6+ sends `topics`, older versions `topic_names`; the encoder picks.
                    req.topic_names = names.iter().map(|n| topic_name(n)).collect();
                    req.topics = names
                        .iter()
                        .map(|n| {
                            let mut t = DeleteTopicState::default();
                            t.name = Some(topic_name(n));
                            t
                        })
                        .collect();
                    req
                },
                |resp| {
                    !resp.responses.is_empty()
                        && resp
                            .responses
                            .iter()
                            .all(|t| t.error_code == ResponseError::NotController.code())
                },
            )
            .await?;
        for (i, r) in resp.responses.iter().enumerate() {
            let name = r
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .or_else(|| names.get(i).map(|n| (*n).to_owned()))
                .unwrap_or_default();
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(Error::UnknownTopic { topic: name });
            }
            check_code(r.error_code, r.error_message.as_deref(), || {
                format!("cannot delete topic '{name}'")
            })?;
        }
        for n in names {
            self.topics.remove(*n);
        }
        self.wait_for_topics(names, |_, t| t.is_none()).await;
        Ok(())
    }

    /// Removes a broker's registration from the cluster (UnregisterBroker, as
    /// `kafka-cluster unregister --id N`): for a decommissioned broker.
    pub async fn unregister_broker(&mut self, broker_id: i32) -> Result<()> {
        let resp = self
            .send_admin(
                |_| UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker_id)),
                |resp| resp.error_code == ResponseError::NotController.code(),
            )
            .await?;
        check_code(resp.error_code, resp.error_message.as_deref(), || {
            format!("cannot unregister broker {broker_id}")
        })?;
        self.brokers.remove(&broker_id);
        Ok(())
    }

    /// Raises the partition count of topics to the given totals (Kafka cannot lower it), then
    /// waits until metadata shows the new partitions with leaders.
    pub async fn create_partitions(
        &mut self,
        new_totals: &[(&str, i32)],
        validate_only: bool,
    ) -> Result<()> {
        if new_totals.is_empty() {
            return Ok(());
        }
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let resp = self
            .send_admin(
                |_| {
                    let mut req = CreatePartitionsRequest::default();
                    req.timeout_ms = timeout_ms;
                    req.validate_only = validate_only;
                    req.topics = new_totals
                        .iter()
                        .map(|(name, count)| {
                            let mut t = CreatePartitionsTopic::default();
                            t.name = topic_name(name);
                            t.count = *count;
                            t.assignments = None;
                            t
                        })
                        .collect();
                    req
                },
                |resp| {
                    !resp.results.is_empty()
                        && resp
                            .results
                            .iter()
                            .all(|t| t.error_code == ResponseError::NotController.code())
                },
            )
            .await?;
        for r in &resp.results {
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(Error::UnknownTopic {
                    topic: r.name.0.to_string(),
                });
            }
            check_code(r.error_code, r.error_message.as_deref(), || {
                format!("cannot create partitions for topic '{}'", r.name.0)
            })?;
        }
        if !validate_only {
            let names: Vec<&str> = new_totals.iter().map(|(n, _)| *n).collect();
            self.wait_for_topics(&names, |name, t| {
                let want = new_totals
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, c)| *c);
                t.is_some_and(|t| {
                    t.partitions.len() >= usize::try_from(want).unwrap_or(0)
                        && t.partitions.iter().all(|p| p.leader >= 0)
                })
            })
            .await;
        }
        Ok(())
    }
}

/// The response entry for each requested name, in request order.
fn topics_in_order<'r, T>(
    names: impl Iterator<Item = &'r str>,
    results: &'r [T],
    name_of: impl Fn(&T) -> &str,
) -> Vec<Option<&'r T>> {
    names
        .map(|n| results.iter().find(|r| name_of(r) == n))
        .collect()
}

/// One partition's answer to [`Client::elect_leaders`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionResult {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Kafka error code: 0 (elected), ELECTION_NOT_NEEDED (84), PREFERRED_LEADER_NOT_AVAILABLE
    /// (80), ELIGIBLE_LEADERS_NOT_AVAILABLE (83), UNKNOWN_TOPIC_OR_PARTITION (3), ...
    pub error_code: i16,
    /// Detail.
    pub error_message: Option<String>,
}

impl Client {
    /// ElectLeaders (key 43, KIP-460): `election_type` 0 = preferred, 1 = unclean, for the
    /// given partitions or (`None`) every partition — then, as in Kafka, partitions that need
    /// no election are left out. Returns the per-partition answers; a request-level error
    /// (v1+) fails the call. Retries while the answer is NOT_CONTROLLER.
    pub async fn elect_leaders(
        &mut self,
        election_type: i8,
        partitions: Option<&[(&str, Vec<i32>)]>,
    ) -> Result<Vec<ElectionResult>> {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        use kafka_protocol::messages::ElectLeadersRequest;
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let not_controller = ResponseError::NotController.code();
        let resp = self
            .send_admin(
                |_| {
                    let mut req = ElectLeadersRequest::default();
                    req.election_type = election_type;
                    req.timeout_ms = timeout_ms;
                    req.topic_partitions = partitions.map(|ps| {
                        ps.iter()
                            .map(|(t, parts)| {
                                let mut tp = TopicPartitions::default();
                                tp.topic = topic_name(t);
                                tp.partitions = parts.clone();
                                tp
                            })
                            .collect()
                    });
                    req
                },
                |resp| {
                    resp.error_code == not_controller
                        || (!resp.replica_election_results.is_empty()
                            && resp.replica_election_results.iter().all(|t| {
                                t.partition_result
                                    .iter()
                                    .all(|p| p.error_code == not_controller)
                            }))
                },
            )
            .await?;
        check_code(resp.error_code, None, || "ElectLeaders failed".to_string())?;
        Ok(resp
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result.iter().map(move |p| ElectionResult {
                    topic: t.topic.to_string(),
                    partition: p.partition_id,
                    error_code: p.error_code,
                    error_message: p.error_message.as_ref().map(|m| m.to_string()),
                })
            })
            .collect())
    }
}
