//! ListGroups, DescribeGroups and DeleteGroups.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::GroupState;
use crate::record::CoordinatorRecord;
use crate::runtime::RequestContext;
use crate::shard::GroupCoordinatorShard;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl GroupCoordinatorShard {
    /// ListGroups over this shard: the state filter is case-insensitive (KIP-518); the type
    /// filter (KIP-848) matches `classic`, the type of every group here.
    pub(crate) fn list_groups(&self, req: &ListGroupsRequest) -> ListGroupsResponse {
        let states: Vec<String> = req
            .states_filter
            .iter()
            .map(|s| s.as_str().trim().to_lowercase())
            .collect();
        let types: Vec<String> = req
            .types_filter
            .iter()
            .map(|s| s.as_str().trim().to_lowercase())
            .collect();
        let groups = self
            .groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state.as_str().to_lowercase()))
            .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(sb(&g.group_id)))
                    .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or("")))
                    .with_group_state(sb(g.state.as_str()))
                    .with_group_type(sb("classic"))
            });
        // KIP-848 groups are listed with type `consumer` and their own states.
        let consumer = self
            .consumer_groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state().as_str().to_lowercase()))
            .filter(|_| types.is_empty() || types.iter().any(|t| t == "consumer"))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(sb(&g.group_id)))
                    .with_protocol_type(sb("consumer"))
                    .with_group_state(sb(g.state().as_str()))
                    .with_group_type(sb("consumer"))
            });
        ListGroupsResponse::default().with_groups(groups.chain(consumer).collect())
    }

    /// DescribeGroups: members with metadata and assignment only when Stable (Kafka's
    /// `describe` vs `describeNoMetadata`); an unknown group is reported Dead, or
    /// GROUP_ID_NOT_FOUND from v6 (KIP-1043).
    pub(crate) fn describe_groups(
        &self,
        ctx: &RequestContext,
        req: &DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let groups = req
            .groups
            .iter()
            .map(|id| {
                if let Some(d) = self.describe_consumer_group_classic(id) {
                    return d;
                }
                let Some(g) = self.groups.get(id.0.as_str()) else {
                    let mut d = DescribedGroup::default()
                        .with_group_id(id.clone())
                        .with_group_state(sb(GroupState::Dead.as_str()));
                    if ctx.api_version >= 6 {
                        d.error_code = ResponseError::GroupIdNotFound.code();
                        d.error_message = Some(sb(&format!("Group {} not found.", id.0.as_str())));
                    }
                    return d;
                };
                let stable = g.is(GroupState::Stable);
                let protocol = g.protocol_name.clone().unwrap_or_default();
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        let mut d = DescribedGroupMember::default()
                            .with_member_id(sb(&m.member_id))
                            .with_group_instance_id(m.group_instance_id.as_deref().map(sb))
                            .with_client_id(sb(&m.client_id))
                            .with_client_host(sb(&m.client_host));
                        if stable {
                            d.member_metadata = m.metadata(&protocol);
                            d.member_assignment = m.assignment.clone();
                        }
                        d
                    })
                    .collect();
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(sb(g.state.as_str()))
                    .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or("")))
                    .with_protocol_data(sb(if stable { &protocol } else { "" }))
                    .with_members(members)
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    /// DeleteGroups: only empty groups; their offsets and the group are tombstoned.
    pub(crate) fn delete_groups(&mut self, req: &DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len().min(1024));
        for id in &req.groups_names {
            let group_id = id.0.as_str().to_owned();
            let consumer_members = self.consumer_groups.get(&group_id).map(|g| g.members.len());
            let code = match self.groups.get(&group_id) {
                None if consumer_members.is_some_and(|n| n > 0) => {
                    ResponseError::NonEmptyGroup.code()
                }
                None if consumer_members.is_some() => {
                    self.tombstone_offsets(&group_id);
                    self.delete_consumer_group_records(&group_id);
                    0
                }
                None => ResponseError::GroupIdNotFound.code(),
                Some(g) if g.is(GroupState::Dead) => ResponseError::GroupIdNotFound.code(),
                Some(g) if !g.is(GroupState::Empty) => ResponseError::NonEmptyGroup.code(),
                Some(_) => {
                    self.tombstone_offsets(&group_id);
                    self.append(CoordinatorRecord::GroupMetadata {
                        group_id: group_id.clone(),
                        value: None,
                    });
                    0
                }
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id.clone())
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    fn tombstone_offsets(&mut self, group_id: &str) {
        let offsets: Vec<(String, i32)> = self
            .offsets
            .group(group_id)
            .map(|topics| {
                topics
                    .iter()
                    .flat_map(|(t, parts)| parts.keys().map(move |p| (t.clone(), *p)))
                    .collect()
            })
            .unwrap_or_default();
        // Kafka's deleteAllOffsets tombstones the pending transactional offsets too (once
        // per partition: one tombstone removes both).
        let mut offsets = offsets;
        offsets.extend(self.pending_only_partitions(group_id));
        for (topic, partition) in offsets {
            self.append(CoordinatorRecord::OffsetCommit {
                group_id: group_id.to_owned(),
                topic,
                partition,
                value: None,
            });
        }
    }

    /// DescribeGroups of a KIP-848 group: Kafka 4.x describes it in the classic format, with
    /// protocol type `consumer`, the assignor as protocol data, and each member's
    /// subscription and assignment serialized with the classic consumer protocol.
    fn describe_consumer_group_classic(&self, id: &GroupId) -> Option<DescribedGroup> {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::messages::{
            ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
        };
        use kafka_protocol::protocol::Encodable;
        let g = self.consumer_groups.get(id.0.as_str())?;
        let encode = |v: &dyn Fn(&mut bytes::BytesMut) -> Result<(), ()>| {
            let mut b = bytes::BytesMut::new();
            bytes::BufMut::put_i16(&mut b, 0);
            v(&mut b).ok().map(|_| b.freeze()).unwrap_or_default()
        };
        let members = g
            .members
            .values()
            .map(|m| {
                let sub = ConsumerProtocolSubscription::default().with_topics(
                    m.meta
                        .subscribed_topic_names
                        .iter()
                        .map(|t| sb(t))
                        .collect(),
                );
                let asg = ConsumerProtocolAssignment::default().with_assigned_partitions(
                    m.assigned
                        .iter()
                        .map(|(t, ps)| {
                            TopicPartition::default()
                                .with_topic(TopicName(sb(self.topics.name_of(t).unwrap_or(""))))
                                .with_partitions(ps.iter().copied().collect())
                        })
                        .collect(),
                );
                DescribedGroupMember::default()
                    .with_member_id(sb(&m.member_id))
                    .with_group_instance_id(m.meta.instance_id.as_deref().map(sb))
                    .with_client_id(sb(&m.meta.client_id))
                    .with_client_host(sb(&m.meta.client_host))
                    .with_member_metadata(encode(&|b| sub.encode(b, 0).map_err(|_| ())))
                    .with_member_assignment(encode(&|b| asg.encode(b, 0).map_err(|_| ())))
            })
            .collect();
        Some(
            DescribedGroup::default()
                .with_group_id(id.clone())
                .with_group_state(sb(g.state().as_str()))
                .with_protocol_type(sb("consumer"))
                .with_protocol_data(sb(&self.group_assignor(g)))
                .with_members(members),
        )
    }
}
