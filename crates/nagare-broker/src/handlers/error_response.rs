//! Error responses in each API's own shape (Kafka's `AbstractRequest.getErrorResponse`): when
//! a handler fails internally, the client still gets an answer it can parse, with the error
//! on every item it asked about, instead of a closed connection.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use nagare_protocol::error::ResponseError;

use super::respond;
use crate::network::Response;

/// The response to the request (`header`, undecoded `body`) carrying `error` everywhere it
/// can; `None` when the body does not decode or the API has no error shape here (the caller
/// closes the connection then).
pub fn build(header: &RequestHeader, mut body: Bytes, error: ResponseError) -> Option<Response> {
    let key = ApiKey::try_from(header.request_api_key).ok()?;
    let v = header.request_api_version;
    let corr = header.correlation_id;
    let code = error.code();
    macro_rules! decode {
        ($t:ty) => {
            <$t>::decode(&mut body, v).ok()?
        };
    }
    macro_rules! top_level {
        ($t:ty) => {
            respond(key, v, corr, &<$t>::default().with_error_code(code))
        };
    }
    let resp = match key {
        ApiKey::Produce => {
            let r = decode!(ProduceRequest);
            let responses = r
                .topic_data
                .iter()
                .map(|t| {
                    produce_response::TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partition_responses(
                            t.partition_data
                                .iter()
                                .map(|p| {
                                    produce_response::PartitionProduceResponse::default()
                                        .with_index(p.index)
                                        .with_error_code(code)
                                        .with_base_offset(-1)
                                        .with_log_append_time_ms(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &ProduceResponse::default().with_responses(responses),
            )
        }
        ApiKey::Fetch => {
            let r = decode!(FetchRequest);
            let responses = r
                .topics
                .iter()
                .map(|t| {
                    fetch_response::FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    fetch_response::PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_error_code(code)
                                        .with_high_watermark(-1)
                                        .with_last_stable_offset(-1)
                                        .with_log_start_offset(-1)
                                        // librdkafka rejects a null record set.
                                        .with_records(Some(Bytes::new()))
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &FetchResponse::default()
                    .with_error_code(code)
                    .with_responses(responses),
            )
        }
        ApiKey::ListOffsets => {
            let r = decode!(ListOffsetsRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    list_offsets_response::ListOffsetsTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    list_offsets_response::ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                        .with_timestamp(-1)
                                        .with_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &ListOffsetsResponse::default().with_topics(topics),
            )
        }
        ApiKey::Metadata => {
            let r = decode!(MetadataRequest);
            let topics = r
                .topics
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    metadata_response::MetadataResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &MetadataResponse::default().with_topics(topics),
            )
        }
        ApiKey::OffsetCommit => {
            let r = decode!(OffsetCommitRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    offset_commit_response::OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    offset_commit_response::OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &OffsetCommitResponse::default().with_topics(topics),
            )
        }
        ApiKey::TxnOffsetCommit => {
            let r = decode!(TxnOffsetCommitRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &TxnOffsetCommitResponse::default().with_topics(topics),
            )
        }
        ApiKey::WriteTxnMarkers => {
            let r = decode!(WriteTxnMarkersRequest);
            let markers = r
                .markers
                .iter()
                .map(|m| {
                    write_txn_markers_response::WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    write_txn_markers_response::WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|p| {
                                                    write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(*p)
                                                        .with_error_code(code)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &WriteTxnMarkersResponse::default().with_markers(markers),
            )
        }
        ApiKey::OffsetFetch => {
            let r = decode!(OffsetFetchRequest);
            let groups = r
                .groups
                .iter()
                .map(|g| {
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &OffsetFetchResponse::default()
                    .with_error_code(code)
                    .with_groups(groups),
            )
        }
        ApiKey::FindCoordinator => {
            let r = decode!(FindCoordinatorRequest);
            let coordinators = r
                .coordinator_keys
                .iter()
                .map(|k| {
                    find_coordinator_response::Coordinator::default()
                        .with_key(k.clone())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &FindCoordinatorResponse::default()
                    .with_error_code(code)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_coordinators(coordinators),
            )
        }
        ApiKey::DescribeGroups => {
            let r = decode!(DescribeGroupsRequest);
            let groups = r
                .groups
                .iter()
                .map(|g| {
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DescribeGroupsResponse::default().with_groups(groups),
            )
        }
        ApiKey::DeleteGroups => {
            let r = decode!(DeleteGroupsRequest);
            let results = r
                .groups_names
                .iter()
                .map(|g| {
                    delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(g.clone())
                        .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DeleteGroupsResponse::default().with_results(results),
            )
        }
        ApiKey::ConsumerGroupDescribe => {
            let r = decode!(ConsumerGroupDescribeRequest);
            let groups = r
                .group_ids
                .iter()
                .map(|g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &ConsumerGroupDescribeResponse::default().with_groups(groups),
            )
        }
        ApiKey::CreateTopics => {
            let r = decode!(CreateTopicsRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    create_topics_response::CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(code)
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &CreateTopicsResponse::default().with_topics(topics),
            )
        }
        ApiKey::DeleteTopics => {
            let r = decode!(DeleteTopicsRequest);
            let mut responses: Vec<_> = r
                .topic_names
                .iter()
                .map(|n| {
                    delete_topics_response::DeletableTopicResult::default()
                        .with_name(Some(n.clone()))
                        .with_error_code(code)
                })
                .collect();
            responses.extend(r.topics.iter().map(|t| {
                delete_topics_response::DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(code)
            }));
            respond(
                key,
                v,
                corr,
                &DeleteTopicsResponse::default().with_responses(responses),
            )
        }
        ApiKey::CreatePartitions => {
            let r = decode!(CreatePartitionsRequest);
            let results = r
                .topics
                .iter()
                .map(|t| {
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &CreatePartitionsResponse::default().with_results(results),
            )
        }
        ApiKey::DeleteRecords => {
            let r = decode!(DeleteRecordsRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    delete_records_response::DeleteRecordsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    delete_records_response::DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p.partition_index)
                                        .with_low_watermark(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DeleteRecordsResponse::default().with_topics(topics),
            )
        }
        ApiKey::OffsetForLeaderEpoch => {
            let r = decode!(OffsetForLeaderEpochRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                        .with_topic(t.topic.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    offset_for_leader_epoch_response::EpochEndOffset::default()
                                        .with_partition(p.partition)
                                        .with_error_code(code)
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &OffsetForLeaderEpochResponse::default().with_topics(topics),
            )
        }
        ApiKey::DescribeConfigs => {
            let r = decode!(DescribeConfigsRequest);
            let results = r
                .resources
                .iter()
                .map(|res| {
                    describe_configs_response::DescribeConfigsResult::default()
                        .with_error_code(code)
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name.clone())
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DescribeConfigsResponse::default().with_results(results),
            )
        }
        ApiKey::AlterConfigs => {
            let r = decode!(AlterConfigsRequest);
            let responses = r
                .resources
                .iter()
                .map(|res| {
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(code)
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name.clone())
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &AlterConfigsResponse::default().with_responses(responses),
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            let r = decode!(IncrementalAlterConfigsRequest);
            let responses = r
                .resources
                .iter()
                .map(|res| {
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(code)
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name.clone())
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &IncrementalAlterConfigsResponse::default().with_responses(responses),
            )
        }
        ApiKey::DescribeProducers => {
            let r = decode!(DescribeProducersRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    describe_producers_response::TopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|&p| {
                                    describe_producers_response::PartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DescribeProducersResponse::default().with_topics(topics),
            )
        }
        ApiKey::JoinGroup => top_level!(JoinGroupResponse),
        ApiKey::SyncGroup => top_level!(SyncGroupResponse),
        ApiKey::Heartbeat => top_level!(HeartbeatResponse),
        ApiKey::LeaveGroup => top_level!(LeaveGroupResponse),
        ApiKey::ListGroups => top_level!(ListGroupsResponse),
        ApiKey::OffsetDelete => top_level!(OffsetDeleteResponse),
        ApiKey::ApiVersions => top_level!(ApiVersionsResponse),
        ApiKey::InitProducerId => respond(
            key,
            v,
            corr,
            &InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::AddPartitionsToTxn => {
            let r = decode!(AddPartitionsToTxnRequest);
            respond(
                key,
                v,
                corr,
                &super::add_partitions_to_txn::error_response(&r, v, code),
            )
        }
        ApiKey::AddOffsetsToTxn => top_level!(AddOffsetsToTxnResponse),
        ApiKey::EndTxn => respond(
            key,
            v,
            corr,
            &EndTxnResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::DescribeTransactions => {
            let r = decode!(DescribeTransactionsRequest);
            let states = r
                .transactional_ids
                .into_iter()
                .map(|id| {
                    describe_transactions_response::TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(code)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                        .with_transaction_start_time_ms(-1)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DescribeTransactionsResponse::default().with_transaction_states(states),
            )
        }
        ApiKey::ListTransactions => top_level!(ListTransactionsResponse),
        ApiKey::ElectLeaders => top_level!(ElectLeadersResponse),
        ApiKey::DescribeCluster => top_level!(DescribeClusterResponse),
        ApiKey::GetTelemetrySubscriptions => top_level!(GetTelemetrySubscriptionsResponse),
        ApiKey::PushTelemetry => top_level!(PushTelemetryResponse),
        ApiKey::DescribeLogDirs => top_level!(DescribeLogDirsResponse),
        ApiKey::UpdateFeatures => top_level!(UpdateFeaturesResponse),
        ApiKey::UnregisterBroker => top_level!(UnregisterBrokerResponse),
        ApiKey::DescribeTopicPartitions => {
            let r = decode!(DescribeTopicPartitionsRequest);
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(code)
                        .with_name(Some(t.name.clone()))
                        .with_topic_authorized_operations(i32::MIN)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DescribeTopicPartitionsResponse::default().with_topics(topics),
            )
        }
        ApiKey::DescribeAcls => top_level!(DescribeAclsResponse),
        ApiKey::CreateAcls => {
            let r = decode!(CreateAclsRequest);
            let results = r
                .creations
                .iter()
                .map(|_| create_acls_response::AclCreationResult::default().with_error_code(code))
                .collect();
            respond(
                key,
                v,
                corr,
                &CreateAclsResponse::default().with_results(results),
            )
        }
        ApiKey::DeleteAcls => {
            let r = decode!(DeleteAclsRequest);
            let results = r
                .filters
                .iter()
                .map(|_| {
                    delete_acls_response::DeleteAclsFilterResult::default().with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &DeleteAclsResponse::default().with_filter_results(results),
            )
        }
        ApiKey::DescribeQuorum => top_level!(DescribeQuorumResponse),
        // The quorum RPCs (refused before the KRaft shell sees them).
        ApiKey::Vote => top_level!(VoteResponse),
        ApiKey::BeginQuorumEpoch => top_level!(BeginQuorumEpochResponse),
        ApiKey::EndQuorumEpoch => top_level!(EndQuorumEpochResponse),
        ApiKey::FetchSnapshot => top_level!(FetchSnapshotResponse),
        ApiKey::ConsumerGroupHeartbeat => top_level!(ConsumerGroupHeartbeatResponse),
        ApiKey::BrokerRegistration => top_level!(BrokerRegistrationResponse),
        ApiKey::BrokerHeartbeat => top_level!(BrokerHeartbeatResponse),
        ApiKey::AllocateProducerIds => top_level!(AllocateProducerIdsResponse),
        ApiKey::AlterPartition => top_level!(AlterPartitionResponse),
        ApiKey::Envelope => top_level!(EnvelopeResponse),
        ApiKey::DescribeClientQuotas => respond(
            key,
            v,
            corr,
            &DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_entries(None),
        ),
        ApiKey::AlterClientQuotas => {
            let r = decode!(AlterClientQuotasRequest);
            let entries = r
                .entries
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntryData::default()
                        .with_error_code(code)
                        .with_entity(
                            e.entity
                                .iter()
                                .map(|c| {
                                    alter_client_quotas_response::EntityData::default()
                                        .with_entity_type(c.entity_type.clone())
                                        .with_entity_name(c.entity_name.clone())
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &AlterClientQuotasResponse::default().with_entries(entries),
            )
        }
        ApiKey::SaslHandshake => top_level!(SaslHandshakeResponse),
        ApiKey::SaslAuthenticate => top_level!(SaslAuthenticateResponse),
        ApiKey::DescribeUserScramCredentials => {
            top_level!(DescribeUserScramCredentialsResponse)
        }
        ApiKey::AlterUserScramCredentials => {
            let r = decode!(AlterUserScramCredentialsRequest);
            let mut users: Vec<&StrBytes> = Vec::new();
            for n in r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name))
            {
                if !users.contains(&n) {
                    users.push(n);
                }
            }
            let results = users
                .into_iter()
                .map(|u| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default(
                    )
                    .with_user(u.clone())
                    .with_error_code(code)
                })
                .collect();
            respond(
                key,
                v,
                corr,
                &AlterUserScramCredentialsResponse::default().with_results(results),
            )
        }
        _ => return None,
    };
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::APIS;
    use kafka_protocol::protocol::Encodable;

    /// Every API a client listener serves has an error shape, at every version, for an
    /// empty request of that version.
    #[test]
    fn every_served_api_has_an_error_response() {
        // The quorum RPCs too: the controller listener refuses them (CLUSTER_ACTION) in
        // their own shape before the KRaft shell sees them.
        for spec in APIS.iter() {
            for v in spec.versions.0..=spec.versions.1 {
                let header = RequestHeader::default()
                    .with_request_api_key(spec.key as i16)
                    .with_request_api_version(v)
                    .with_correlation_id(7);
                let body = empty_request(spec.key, v);
                let resp = build(&header, body, ResponseError::UnknownServerError);
                assert!(resp.is_some(), "{:?} v{v} has no error response", spec.key);
            }
        }
    }

    fn empty_request(key: ApiKey, v: i16) -> Bytes {
        let mut buf = bytes::BytesMut::new();
        macro_rules! enc {
            ($t:ty) => {
                <$t>::default().encode(&mut buf, v).expect("encode")
            };
        }
        match key {
            ApiKey::Produce => enc!(ProduceRequest),
            ApiKey::Fetch => enc!(FetchRequest),
            ApiKey::ListOffsets => enc!(ListOffsetsRequest),
            ApiKey::Metadata => enc!(MetadataRequest),
            ApiKey::OffsetCommit => enc!(OffsetCommitRequest),
            ApiKey::OffsetFetch => enc!(OffsetFetchRequest),
            ApiKey::FindCoordinator => enc!(FindCoordinatorRequest),
            ApiKey::JoinGroup => enc!(JoinGroupRequest),
            ApiKey::Heartbeat => enc!(HeartbeatRequest),
            ApiKey::LeaveGroup => enc!(LeaveGroupRequest),
            ApiKey::SyncGroup => enc!(SyncGroupRequest),
            ApiKey::DescribeGroups => enc!(DescribeGroupsRequest),
            ApiKey::ListGroups => enc!(ListGroupsRequest),
            ApiKey::ApiVersions => enc!(ApiVersionsRequest),
            ApiKey::CreateTopics => enc!(CreateTopicsRequest),
            ApiKey::DeleteTopics => enc!(DeleteTopicsRequest),
            ApiKey::DeleteRecords => enc!(DeleteRecordsRequest),
            ApiKey::InitProducerId => enc!(InitProducerIdRequest),
            ApiKey::OffsetForLeaderEpoch => enc!(OffsetForLeaderEpochRequest),
            ApiKey::WriteTxnMarkers => enc!(WriteTxnMarkersRequest),
            ApiKey::TxnOffsetCommit => enc!(TxnOffsetCommitRequest),
            ApiKey::DescribeConfigs => enc!(DescribeConfigsRequest),
            ApiKey::AlterConfigs => enc!(AlterConfigsRequest),
            ApiKey::CreatePartitions => enc!(CreatePartitionsRequest),
            ApiKey::DeleteGroups => enc!(DeleteGroupsRequest),
            ApiKey::ElectLeaders => enc!(ElectLeadersRequest),
            ApiKey::IncrementalAlterConfigs => enc!(IncrementalAlterConfigsRequest),
            ApiKey::OffsetDelete => enc!(OffsetDeleteRequest),
            ApiKey::DescribeCluster => enc!(DescribeClusterRequest),
            ApiKey::SaslHandshake => enc!(SaslHandshakeRequest),
            ApiKey::SaslAuthenticate => enc!(SaslAuthenticateRequest),
            ApiKey::DescribeUserScramCredentials => enc!(DescribeUserScramCredentialsRequest),
            ApiKey::AlterUserScramCredentials => enc!(AlterUserScramCredentialsRequest),
            ApiKey::DescribeClientQuotas => enc!(DescribeClientQuotasRequest),
            ApiKey::AlterClientQuotas => enc!(AlterClientQuotasRequest),
            ApiKey::DescribeLogDirs => enc!(DescribeLogDirsRequest),
            ApiKey::UpdateFeatures => enc!(UpdateFeaturesRequest),
            ApiKey::UnregisterBroker => enc!(UnregisterBrokerRequest),
            ApiKey::DescribeTopicPartitions => enc!(DescribeTopicPartitionsRequest),
            ApiKey::GetTelemetrySubscriptions => enc!(GetTelemetrySubscriptionsRequest),
            ApiKey::PushTelemetry => enc!(PushTelemetryRequest),
            ApiKey::DescribeAcls => enc!(DescribeAclsRequest),
            ApiKey::Vote => enc!(VoteRequest),
            ApiKey::BeginQuorumEpoch => enc!(BeginQuorumEpochRequest),
            ApiKey::EndQuorumEpoch => enc!(EndQuorumEpochRequest),
            ApiKey::FetchSnapshot => enc!(FetchSnapshotRequest),
            ApiKey::CreateAcls => enc!(CreateAclsRequest),
            ApiKey::DeleteAcls => enc!(DeleteAclsRequest),
            ApiKey::DescribeQuorum => enc!(DescribeQuorumRequest),
            ApiKey::ConsumerGroupHeartbeat => enc!(ConsumerGroupHeartbeatRequest),
            ApiKey::ConsumerGroupDescribe => enc!(ConsumerGroupDescribeRequest),
            ApiKey::BrokerRegistration => enc!(BrokerRegistrationRequest),
            ApiKey::BrokerHeartbeat => enc!(BrokerHeartbeatRequest),
            ApiKey::AllocateProducerIds => enc!(AllocateProducerIdsRequest),
            ApiKey::AlterPartition => enc!(AlterPartitionRequest),
            ApiKey::Envelope => enc!(EnvelopeRequest),
            ApiKey::DescribeProducers => enc!(DescribeProducersRequest),
            ApiKey::AddPartitionsToTxn => enc!(AddPartitionsToTxnRequest),
            ApiKey::AddOffsetsToTxn => enc!(AddOffsetsToTxnRequest),
            ApiKey::EndTxn => enc!(EndTxnRequest),
            ApiKey::DescribeTransactions => enc!(DescribeTransactionsRequest),
            ApiKey::ListTransactions => enc!(ListTransactionsRequest),
            other => panic!("add {other:?} to the test"),
        }
        buf.freeze()
    }
}
