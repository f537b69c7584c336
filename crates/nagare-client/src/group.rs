//! Consumer group administration on [`Client`]: list, describe, committed offsets, commit and
//! delete, each sent to the group's coordinator (found with FindCoordinator); and raw KIP-848
//! ConsumerGroupHeartbeat / ConsumerGroupDescribe calls for tests and benchmarks.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, ConsumerProtocolAssignment, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Message, Request, StrBytes};
use kafka_protocol::ResponseError;

use crate::client::{Client, Target};
use crate::error::{check_code, Error, Result};

/// Highest OffsetFetch version used: the one-group form (v8+ batches groups).
const OFFSET_FETCH_MAX_VERSION: i16 = 7;
/// Highest OffsetCommit version used: the last one naming topics (v10 uses topic ids).
const OFFSET_COMMIT_MAX_VERSION: i16 = 9;

/// A group as listed by ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type, `consumer` for consumer groups (empty for groups that only commit).
    pub protocol_type: String,
    /// The state (`Empty`, `Stable`, …) when the broker reports it (ListGroups v4+), else
    /// empty.
    pub state: String,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator assigned.
    pub member_id: String,
    /// The static membership instance id (KIP-345), if any.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host as the coordinator saw it, e.g. `/127.0.0.1`.
    pub client_host: String,
    /// The partitions assigned to the member, by topic (sorted). Empty when the assignment is
    /// not in the consumer protocol's format or there is none yet.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// A group as described by DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The state: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`
    /// (`Dead` also for groups that do not exist).
    pub state: String,
    /// The protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The chosen protocol, for consumer groups the assignor (e.g. `range`).
    pub protocol: String,
    /// The members, sorted by member id.
    pub members: Vec<GroupMember>,
}

impl GroupDescription {
    /// True when the group has no active members (`Empty` or `Dead`): its offsets may be reset.
    pub fn is_inactive(&self) -> bool {
        matches!(self.state.as_str(), "Empty" | "Dead")
    }
}

/// Decodes a consumer protocol assignment (`member_assignment` bytes: an i16 version, then
/// the assignment at that version) into partitions by topic.
///
/// Empty bytes decode to an empty assignment. Versions newer than the ones known are decoded
/// as the newest known one, as Kafka does (newer versions only add fields at the end).
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeMap<String, Vec<i32>>> {
    let mut out = BTreeMap::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    if bytes.len() < 2 {
        return Err(Error::InvalidArgument(
            "consumer assignment shorter than its version prefix".into(),
        ));
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    let version = buf.get_i16();
    if version < 0 {
        return Err(Error::InvalidArgument(format!(
            "consumer assignment has negative version {version}"
        )));
    }
    let version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version)
        .map_err(|e| Error::InvalidArgument(format!("cannot decode consumer assignment: {e}")))?;
    for tp in assignment.assigned_partitions {
        let parts: &mut Vec<i32> = out.entry(tp.topic.0.to_string()).or_default();
        parts.extend(tp.partitions);
        parts.sort_unstable();
        parts.dedup();
    }
    Ok(out)
}

/// True for the errors that mean "ask (another) coordinator again later".
pub(crate) fn is_coordinator_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::CoordinatorLoadInProgress
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
    )
}

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_owned()))
}

impl Client {
    /// Finds the coordinator of `group` (FindCoordinator, key type 0) and returns its node id,
    /// refreshing the broker list when the coordinator is not in it.
    async fn find_coordinator_once(&mut self, group: &str) -> Result<i32> {
        self.find_coordinator_of(0, group).await
    }

    /// Finds the coordinator of `key` — a group (key type 0) or a transactional id (1) — once
    /// and returns its node id, refreshing the broker list when the coordinator is not in it.
    pub(crate) async fn find_coordinator_of(&mut self, key_type: i8, key: &str) -> Result<i32> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |version| {
                let mut req = FindCoordinatorRequest::default();
                req.key_type = key_type;
                if version >= 4 {
                    req.coordinator_keys = vec![StrBytes::from_string(key.to_owned())];
                } else {
                    req.key = StrBytes::from_string(key.to_owned());
                }
                req
            })
            .await?;
        let (code, message, node_id) = match resp.coordinators.first() {
            Some(c) => (c.error_code, c.error_message.clone(), c.node_id.0),
            None => (resp.error_code, resp.error_message.clone(), resp.node_id.0),
        };
        let what = if key_type == 1 {
            "transactional id"
        } else {
            "group"
        };
        check_code(code, message.as_deref(), || {
            format!("find the coordinator of {what} '{key}'")
        })?;
        if !self.brokers().contains_key(&node_id) {
            self.metadata(Some(&[])).await?;
            if !self.brokers().contains_key(&node_id) {
                return Err(Error::UnknownBroker { node_id });
            }
        }
        Ok(node_id)
    }

    /// The node id of the coordinator of `group` (FindCoordinator, key type 0), once; its
    /// errors (COORDINATOR_NOT_AVAILABLE while `__consumer_offsets` is being created, …) are
    /// returned as they are.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<i32> {
        self.find_coordinator_once(group).await
    }

    /// Sends a request to the coordinator of `group`. `error_of` picks the error code that
    /// tells whether the coordinator was the wrong one or not ready; then (and on transport
    /// failures) the coordinator is looked up again and the request retried with backoff.
    async fn send_to_coordinator<R: Request>(
        &mut self,
        group: &str,
        cap: Option<i16>,
        build: impl Fn(i16) -> R,
        error_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response> {
        let mut attempt = 0;
        loop {
            let result = match self.find_coordinator_once(group).await {
                Ok(node) => {
                    self.send_to(Target::Node(node), cap, Duration::ZERO, &build)
                        .await
                }
                Err(e) => Err(e),
            };
            let retry = match &result {
                Ok(resp) => {
                    ResponseError::try_from_code(error_of(resp)).is_some_and(is_coordinator_error)
                }
                Err(e) => {
                    e.is_transport()
                        || e.kafka_error().is_some_and(is_coordinator_error)
                        || matches!(e, Error::UnknownBroker { .. })
                }
            };
            if !retry || attempt >= self.config().retries.max(10) {
                return result;
            }
            tracing::debug!(group, attempt, "group coordinator not ready; retrying");
            self.backoff(attempt).await;
            attempt += 1;
        }
    }

    /// Lists the groups of every broker (ListGroups), sorted by group id.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>> {
        self.metadata(Some(&[])).await?;
        let nodes: Vec<i32> = self.brokers().keys().copied().collect();
        let mut groups = BTreeMap::new();
        for node in nodes {
            let mut attempt = 0;
            let resp = loop {
                let result = self
                    .send_to(Target::Node(node), None, Duration::ZERO, |_| {
                        ListGroupsRequest::default()
                    })
                    .await;
                let retry = match &result {
                    Ok(resp) => ResponseError::try_from_code(resp.error_code)
                        .is_some_and(is_coordinator_error),
                    Err(e) => e.is_transport(),
                };
                if !retry || attempt >= self.config().retries.max(10) {
                    break result?;
                }
                self.backoff(attempt).await;
                attempt += 1;
            };
            check_code(resp.error_code, None, || {
                format!("list groups of broker {node}")
            })?;
            for g in resp.groups {
                let listing = GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: g.group_state.to_string(),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes a group (DescribeGroups): state, protocol and members with their decoded
    /// assignments. A group that does not exist is described with state `Dead`.
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        let resp = self
            .send_to_coordinator(
                group,
                None,
                |_| {
                    let mut req = DescribeGroupsRequest::default();
                    req.groups = vec![group_id(group)];
                    req
                },
                |resp| resp.groups.first().map_or(0, |g| g.error_code),
            )
            .await?;
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| Error::UnexpectedResponse {
                addr: "coordinator".into(),
                reason: format!("DescribeGroups response lacks group '{group}'"),
            })?;
        if ResponseError::try_from_code(g.error_code) == Some(ResponseError::GroupIdNotFound) {
            // DescribeGroups v6 reports unknown groups with an error; older versions (and
            // Kafka's tools) describe them as Dead.
            return Ok(GroupDescription {
                group_id: group.to_owned(),
                state: "Dead".to_owned(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        }
        check_code(g.error_code, g.error_message.as_deref(), || {
            format!("describe group '{group}'")
        })?;
        let consumer = g.protocol_type.as_str() == "consumer" || g.protocol_type.is_empty();
        let mut members = Vec::with_capacity(g.members.len());
        for m in g.members {
            let assignment = if consumer {
                match decode_assignment(&m.member_assignment) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(member = %m.member_id, error = %e, "undecodable assignment");
                        BTreeMap::new()
                    }
                }
            } else {
                BTreeMap::new()
            };
            members.push(GroupMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(ToString::to_string),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment,
            });
        }
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// The committed offsets of `group` (OffsetFetch), by topic and partition. `topics`:
    /// `None` for every partition with a committed offset, or the partitions of these topics
    /// (those without a committed offset are left out of the answer).
    pub async fn fetch_committed(
        &mut self,
        group: &str,
        topics: Option<&[&str]>,
    ) -> Result<BTreeMap<(String, i32), i64>> {
        let mut requested = None;
        if let Some(names) = topics {
            let mut list = Vec::with_capacity(names.len());
            for name in names {
                let md = self.topic_metadata(name).await?;
                let mut t = OffsetFetchRequestTopic::default();
                t.name = TopicName(StrBytes::from_string((*name).to_owned()));
                t.partition_indexes = md.partitions.iter().map(|p| p.partition).collect();
                list.push(t);
            }
            requested = Some(list);
        }
        let resp = self
            .send_to_coordinator(
                group,
                Some(OFFSET_FETCH_MAX_VERSION),
                |_| {
                    let mut req = OffsetFetchRequest::default();
                    req.group_id = group_id(group);
                    req.topics.clone_from(&requested);
                    req
                },
                |resp| {
                    if resp.error_code != 0 {
                        return resp.error_code;
                    }
                    resp.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| p.error_code)
                        .find(|&c| c != 0)
                        .unwrap_or(0)
                },
            )
            .await?;
        check_code(resp.error_code, None, || {
            format!("fetch committed offsets of group '{group}'")
        })?;
        let mut out = BTreeMap::new();
        for t in resp.topics {
            let topic = t.name.0.to_string();
            for p in t.partitions {
                check_code(p.error_code, None, || {
                    format!(
                        "fetch the committed offset of group '{group}' for topic '{topic}' \
                         partition {}",
                        p.partition_index
                    )
                })?;
                if p.committed_offset >= 0 {
                    out.insert((topic.clone(), p.partition_index), p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// Commits offsets for `group` as `(topic, partition, offset)` (OffsetCommit with
    /// generation -1 and no member id, as Kafka's tools do): only accepted while the group
    /// has no active members. Fails with the first per-partition error.
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[(&str, i32, i64)],
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for &(topic, partition, offset) in offsets {
            if offset < 0 {
                return Err(Error::InvalidArgument(format!(
                    "offset {offset} for topic '{topic}' partition {partition} is negative"
                )));
            }
            by_topic.entry(topic).or_default().push((partition, offset));
        }
        let resp = self
            .send_to_coordinator(
                group,
                Some(OFFSET_COMMIT_MAX_VERSION),
                |_| {
                    let mut req = OffsetCommitRequest::default();
                    req.group_id = group_id(group);
                    req.generation_id_or_member_epoch = -1;
                    req.member_id = StrBytes::from_static_str("");
                    req.retention_time_ms = -1;
                    req.topics = by_topic
                        .iter()
                        .map(|(topic, parts)| {
                            let mut t = OffsetCommitRequestTopic::default();
                            t.name = TopicName(StrBytes::from_string((*topic).to_owned()));
                            t.partitions = parts
                                .iter()
                                .map(|&(partition, offset)| {
                                    let mut p = OffsetCommitRequestPartition::default();
                                    p.partition_index = partition;
                                    p.committed_offset = offset;
                                    p.committed_leader_epoch = -1;
                                    p.committed_metadata = Some(StrBytes::from_static_str(""));
                                    p
                                })
                                .collect();
                            t
                        })
                        .collect();
                    req
                },
                |resp| {
                    resp.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| p.error_code)
                        .find(|&c| c != 0)
                        .unwrap_or(0)
                },
            )
            .await?;
        for t in &resp.topics {
            for p in &t.partitions {
                check_code(p.error_code, None, || {
                    format!(
                        "commit offset of group '{group}' for topic '{}' partition {}",
                        t.name.0, p.partition_index
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Sends one KIP-848 ConsumerGroupHeartbeat to the coordinator of the request's group and
    /// returns the response as is: a group-level error (FENCED_MEMBER_EPOCH,
    /// UNKNOWN_MEMBER_ID, …) is in its `error_code`, not an `Err`, so that callers can act on
    /// it. Coordinator errors are retried like every coordinator request.
    pub async fn consumer_group_heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
    ) -> Result<ConsumerGroupHeartbeatResponse> {
        let group = req.group_id.0.as_str().to_owned();
        self.send_to_coordinator(&group, None, |_| req.clone(), |resp| resp.error_code)
            .await
    }

    /// Describes a KIP-848 consumer group (ConsumerGroupDescribe) at its coordinator and
    /// returns the response as is (an unknown group has GROUP_ID_NOT_FOUND in its entry).
    pub async fn consumer_group_describe(
        &mut self,
        group: &str,
    ) -> Result<ConsumerGroupDescribeResponse> {
        self.send_to_coordinator(
            group,
            None,
            |_| ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]),
            |resp| resp.groups.first().map_or(0, |g| g.error_code),
        )
        .await
    }

    /// Deletes the committed offsets of `topics` (name, partitions) from `group`
    /// (OffsetDelete, KIP-496): allowed for topics the group is not subscribed to. Returns
    /// each partition's error code (0: deleted); a group-level error is the `Err`.
    pub async fn delete_offsets(
        &mut self,
        group: &str,
        topics: &[(&str, Vec<i32>)],
    ) -> Result<Vec<(String, i32, i16)>> {
        use kafka_protocol::messages::offset_delete_request::{
            OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
        };
        use kafka_protocol::messages::OffsetDeleteRequest;
        let resp = self
            .send_to_coordinator(
                group,
                None,
                |_| {
                    let mut req = OffsetDeleteRequest::default();
                    req.group_id = group_id(group);
                    req.topics = topics
                        .iter()
                        .map(|(t, ps)| {
                            let mut topic = OffsetDeleteRequestTopic::default();
                            topic.name = TopicName(StrBytes::from_string((*t).to_owned()));
                            topic.partitions = ps
                                .iter()
                                .map(|p| {
                                    let mut part = OffsetDeleteRequestPartition::default();
                                    part.partition_index = *p;
                                    part
                                })
                                .collect();
                            topic
                        })
                        .collect();
                    req
                },
                |resp| resp.error_code,
            )
            .await?;
        check_code(resp.error_code, None, || {
            format!("delete offsets of group '{group}'")
        })?;
        let mut out = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                out.push((t.name.0.to_string(), p.partition_index, p.error_code));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes groups (DeleteGroups), each at its coordinator. Only groups without active
    /// members can be deleted (else [`ResponseError::NonEmptyGroup`]); a group that does not
    /// exist fails with [`ResponseError::GroupIdNotFound`]. Stops at the first failure.
    pub async fn delete_groups(&mut self, groups: &[&str]) -> Result<()> {
        for &group in groups {
            let resp = self
                .send_to_coordinator(
                    group,
                    None,
                    |_| {
                        let mut req = DeleteGroupsRequest::default();
                        req.groups_names = vec![group_id(group)];
                        req
                    },
                    |resp| resp.results.first().map_or(0, |r| r.error_code),
                )
                .await?;
            let result = resp
                .results
                .iter()
                .find(|r| r.group_id.0.as_str() == group)
                .ok_or_else(|| Error::UnexpectedResponse {
                    addr: "coordinator".into(),
                    reason: format!("DeleteGroups response lacks group '{group}'"),
                })?;
            check_code(result.error_code, None, || {
                format!("delete group '{group}'")
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    fn encode(version: i16, a: &ConsumerProtocolAssignment) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(version);
        a.encode(&mut buf, version.min(3)).expect("encodable");
        buf.to_vec()
    }

    #[test]
    fn assignment_round_trip() {
        let mut a = ConsumerProtocolAssignment::default();
        let mut t1 = TopicPartition::default();
        t1.topic = TopicName(StrBytes::from_static_str("b"));
        t1.partitions = vec![2, 0];
        let mut t2 = TopicPartition::default();
        t2.topic = TopicName(StrBytes::from_static_str("a"));
        t2.partitions = vec![1];
        a.assigned_partitions = vec![t1, t2];
        for v in [0, 1, 3] {
            let decoded = decode_assignment(&encode(v, &a)).expect("decodes");
            let expected: BTreeMap<String, Vec<i32>> =
                [("a".to_owned(), vec![1]), ("b".to_owned(), vec![0, 2])].into();
            assert_eq!(decoded, expected, "version {v}");
        }
        assert!(decode_assignment(&[]).expect("empty").is_empty());
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 5]).is_err());
        assert!(decode_assignment(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn inactive_states() {
        let mut d = GroupDescription {
            group_id: "g".into(),
            state: "Empty".into(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        assert!(d.is_inactive());
        d.state = "Dead".into();
        assert!(d.is_inactive());
        d.state = "Stable".into();
        assert!(!d.is_inactive());
    }
}
