//! The KRaft RPCs on the wire: [`nagare_raft::Message`]s to and from Kafka's Vote (with
//! KIP-996's `pre_vote`), BeginQuorumEpoch, EndQuorumEpoch, Fetch (on `__cluster_metadata-0`,
//! with `diverging_epoch`, `current_leader` and `snapshot_id`) and FetchSnapshot (KIP-630).
//! and DescribeQuorum. Every request carries the cluster id; a mismatch is
//! INCONSISTENT_CLUSTER_ID (104).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    begin_quorum_epoch_request as bqe_req, begin_quorum_epoch_response as bqe_resp,
    describe_quorum_request as dq_req, describe_quorum_response as dq_resp,
    end_quorum_epoch_request as eqe_req, end_quorum_epoch_response as eqe_resp, fetch_request,
    fetch_response, fetch_snapshot_request as fs_req, fetch_snapshot_response as fs_resp,
    vote_request, vote_response, ApiKey, BeginQuorumEpochRequest, BeginQuorumEpochResponse,
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, EndQuorumEpochRequest,
    EndQuorumEpochResponse, FetchRequest, FetchResponse, FetchSnapshotRequest,
    FetchSnapshotResponse, TopicName, VoteRequest, VoteResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
// The core has its own `ResponseError` (the errors it can produce); Kafka's codes go by this name.
use kafka_protocol::ResponseError as KafkaError;
use nagare_raft::{
    DivergingEpoch, Message, NodeId, QuorumInfo, ReplicaInfo, ResponseError, SnapshotId,
    VoterAddress,
};
use uuid::Uuid;

use crate::log_store::{decode_entries, encode_entries, METADATA_TOPIC};

/// The metadata topic's fixed id (Kafka's `Uuid.METADATA_TOPIC_ID`, `AAAAAAAAAAAAAAAAAAAAAQ`).
pub const METADATA_TOPIC_ID: Uuid = Uuid::from_u128(1);

/// Versions we send (both ends are Nagare; the controller listener accepts these ranges).
pub const VOTE_VERSION: i16 = 2;
/// BeginQuorumEpoch version sent.
pub const BEGIN_VERSION: i16 = 1;
/// EndQuorumEpoch version sent.
pub const END_VERSION: i16 = 1;
/// Fetch version sent (the first with `diverging_epoch`, `current_leader`, `snapshot_id`).
pub const FETCH_VERSION: i16 = 12;
/// FetchSnapshot version sent.
pub const FETCH_SNAPSHOT_VERSION: i16 = 1;

/// The quorum APIs [`crate::RaftManager::handle`] serves, with their version ranges (Fetch
/// from v12, the first with the KRaft fields `diverging_epoch`, `current_leader` and
/// `snapshot_id`).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Vote, 0, 2),
    (ApiKey::BeginQuorumEpoch, 0, 1),
    (ApiKey::EndQuorumEpoch, 0, 1),
    (ApiKey::Fetch, 12, 17),
    (ApiKey::FetchSnapshot, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
];

/// Whether `handle` serves `key` at `version`.
pub fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|(k, lo, hi)| *k == key && (*lo..=*hi).contains(&version))
}

/// Kafka's code for a core error.
pub fn error_code(e: Option<ResponseError>) -> i16 {
    match e {
        None => 0,
        Some(ResponseError::FencedLeaderEpoch) => KafkaError::FencedLeaderEpoch.code(),
        Some(ResponseError::UnknownLeaderEpoch) => KafkaError::UnknownLeaderEpoch.code(),
        Some(ResponseError::NotLeader) => KafkaError::NotLeaderOrFollower.code(),
        Some(ResponseError::SnapshotNotFound) => KafkaError::SnapshotNotFound.code(),
        Some(ResponseError::InvalidRequest) => KafkaError::InvalidRequest.code(),
    }
}

/// The core error for a Kafka code (anything unknown is an invalid request).
pub fn from_code(code: i16) -> Option<ResponseError> {
    match KafkaError::try_from_code(code)? {
        KafkaError::FencedLeaderEpoch => Some(ResponseError::FencedLeaderEpoch),
        KafkaError::UnknownLeaderEpoch => Some(ResponseError::UnknownLeaderEpoch),
        KafkaError::NotLeaderOrFollower => Some(ResponseError::NotLeader),
        KafkaError::SnapshotNotFound => Some(ResponseError::SnapshotNotFound),
        _ => Some(ResponseError::InvalidRequest),
    }
}

fn leader(id: Option<NodeId>) -> BrokerId {
    BrokerId(id.unwrap_or(-1))
}

fn opt_leader(id: BrokerId) -> Option<NodeId> {
    (id.0 >= 0).then_some(id.0)
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(METADATA_TOPIC))
}

/// A request from a peer, decoded.
#[derive(Debug)]
pub struct InboundRequest {
    /// Who sent it (the candidate, leader or fetching replica).
    pub from: NodeId,
    /// The core message.
    pub message: Message,
    /// What the answer needs to echo.
    pub ctx: ResponseCtx,
}

/// What an answer must echo of its request.
#[derive(Debug, Clone)]
pub struct ResponseCtx {
    /// The API.
    pub key: ApiKey,
    /// Its version.
    pub version: i16,
    /// The partition asked about.
    pub partition: i32,
    /// Whether the request named the topic by id (Fetch v13+).
    pub by_id: bool,
    /// Fetch: how long the requester lets the leader hold the answer (long poll).
    pub max_wait_ms: u64,
}

/// Why a request could not be turned into a core message: answer with this error code.
#[derive(Debug)]
pub struct Refusal {
    /// The request's context, for the error answer.
    pub ctx: ResponseCtx,
    /// Kafka error code.
    pub code: i16,
}

fn check_cluster(ours: &str, theirs: &Option<StrBytes>) -> bool {
    // An absent cluster id (old versions) is accepted, as Kafka does.
    theirs.as_ref().is_none_or(|c| c.as_str() == ours)
}

/// Decodes one quorum request body.
pub fn decode_request(
    key: ApiKey,
    version: i16,
    mut body: Bytes,
    cluster_id: &str,
) -> Result<Result<InboundRequest, Refusal>, String> {
    let mut ctx = ResponseCtx {
        key,
        version,
        partition: 0,
        by_id: false,
        max_wait_ms: 0,
    };
    let refuse = |ctx: ResponseCtx, code| Ok(Err(Refusal { ctx, code }));
    match key {
        ApiKey::Vote => {
            let r = VoteRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
            check_consumed(&body)?;
            let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
                return refuse(ctx, KafkaError::InvalidRequest.code());
            };
            ctx.partition = p.partition_index;
            if !check_cluster(cluster_id, &r.cluster_id) {
                return refuse(ctx, KafkaError::InconsistentClusterId.code());
            }
            Ok(Ok(InboundRequest {
                from: p.replica_id.0,
                message: Message::VoteRequest(nagare_raft::VoteRequest {
                    epoch: p.replica_epoch,
                    candidate_id: p.replica_id.0,
                    last_offset_epoch: p.last_offset_epoch,
                    last_offset: p.last_offset,
                    pre_vote: p.pre_vote,
                }),
                ctx,
            }))
        }
        ApiKey::BeginQuorumEpoch => {
            let r =
                BeginQuorumEpochRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
            check_consumed(&body)?;
            let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
                return refuse(ctx, KafkaError::InvalidRequest.code());
            };
            ctx.partition = p.partition_index;
            if !check_cluster(cluster_id, &r.cluster_id) {
                return refuse(ctx, KafkaError::InconsistentClusterId.code());
            }
            Ok(Ok(InboundRequest {
                from: p.leader_id.0,
                message: Message::BeginQuorumEpochRequest(nagare_raft::BeginQuorumEpochRequest {
                    epoch: p.leader_epoch,
                    leader_id: p.leader_id.0,
                }),
                ctx,
            }))
        }
        ApiKey::EndQuorumEpoch => {
            let r = EndQuorumEpochRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
            check_consumed(&body)?;
            let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
                return refuse(ctx, KafkaError::InvalidRequest.code());
            };
            ctx.partition = p.partition_index;
            if !check_cluster(cluster_id, &r.cluster_id) {
                return refuse(ctx, KafkaError::InconsistentClusterId.code());
            }
            let successors = if version >= 1 {
                p.preferred_candidates
                    .iter()
                    .map(|c| c.candidate_id.0)
                    .collect()
            } else {
                p.preferred_successors.clone()
            };
            Ok(Ok(InboundRequest {
                from: p.leader_id.0,
                message: Message::EndQuorumEpochRequest(nagare_raft::EndQuorumEpochRequest {
                    epoch: p.leader_epoch,
                    leader_id: p.leader_id.0,
                    preferred_successors: successors,
                }),
                ctx,
            }))
        }
        ApiKey::Fetch => {
            let r = FetchRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
            check_consumed(&body)?;
            let Some(t) = r.topics.first() else {
                return refuse(ctx, KafkaError::InvalidRequest.code());
            };
            ctx.by_id = version >= 13;
            let Some(p) = t.partitions.first() else {
                return refuse(ctx, KafkaError::InvalidRequest.code());
            };
            ctx.partition = p.partition;
            ctx.max_wait_ms = r.max_wait_ms.max(0) as u64;
            let ours = if ctx.by_id {
                t.topic_id == METADATA_TOPIC_ID
            } else {
                t.topic.as_str() == METADATA_TOPIC
            };
            if !ours || p.partition != 0 {
                return refuse(ctx, KafkaError::UnknownTopicOrPartition.code());
            }
            if !check_cluster(cluster_id, &r.cluster_id) {
                return refuse(ctx, KafkaError::InconsistentClusterId.code());
            }
            let replica_id = if version >= 15 {
                r.replica_state.replica_id.0
            } else {
                r.replica_id.0
            };
            Ok(Ok(InboundRequest {
                from: replica_id,
                message: Message::FetchRequest(nagare_raft::FetchRequest {
                    epoch: p.current_leader_epoch,
                    replica_id,
                    fetch_offset: p.fetch_offset,
                    last_fetched_epoch: p.last_fetched_epoch,
                }),
                ctx,
            }))
        }
        ApiKey::FetchSnapshot => {
            let r = FetchSnapshotRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
            check_consumed(&body)?;
            let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
                return refuse(ctx, KafkaError::InvalidRequest.code());
            };
            ctx.partition = p.partition;
            if !check_cluster(cluster_id, &r.cluster_id) {
                return refuse(ctx, KafkaError::InconsistentClusterId.code());
            }
            Ok(Ok(InboundRequest {
                from: r.replica_id.0,
                message: Message::FetchSnapshotRequest(nagare_raft::FetchSnapshotRequest {
                    epoch: p.current_leader_epoch,
                    replica_id: r.replica_id.0,
                    snapshot_id: SnapshotId {
                        end_offset: p.snapshot_id.end_offset,
                        epoch: p.snapshot_id.epoch,
                    },
                    position: p.position.max(0) as u64,
                }),
                ctx,
            }))
        }
        other => Err(format!("{other:?} is not a quorum RPC")),
    }
}

fn check_consumed(body: &Bytes) -> Result<(), String> {
    if !body.is_empty() {
        return Err(format!("{} bytes after the request body", body.len()));
    }
    Ok(())
}

fn encode<T: Encodable>(body: &T, version: i16) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Encodes the answer to a request: the core's response message, or `code` when the core gave
/// none (a refused or ignored request).
/// `voters` go into the LeaderChangeMessage of fetched LeaderChange entries.
pub fn encode_response(
    ctx: &ResponseCtx,
    response: Option<&Message>,
    code: i16,
    voters: &[NodeId],
) -> Result<Bytes, String> {
    let v = ctx.version;
    match ctx.key {
        ApiKey::Vote => {
            let mut p = vote_response::PartitionData::default()
                .with_partition_index(ctx.partition)
                .with_leader_id(BrokerId(-1))
                .with_leader_epoch(-1);
            if let Some(Message::VoteResponse(r)) = response {
                p = p
                    .with_leader_id(leader(r.leader_id))
                    .with_leader_epoch(r.epoch)
                    .with_vote_granted(r.vote_granted);
            } else {
                p = p.with_error_code(code);
            }
            let resp =
                VoteResponse::default().with_topics(vec![vote_response::TopicData::default()
                    .with_topic_name(topic_name())
                    .with_partitions(vec![p])]);
            encode(&resp, v)
        }
        ApiKey::BeginQuorumEpoch => {
            let mut p = bqe_resp::PartitionData::default()
                .with_partition_index(ctx.partition)
                .with_leader_id(BrokerId(-1))
                .with_leader_epoch(-1);
            match response {
                Some(Message::BeginQuorumEpochResponse(r)) => {
                    p = p
                        .with_leader_id(leader(r.leader_id))
                        .with_leader_epoch(r.epoch)
                        .with_error_code(error_code(r.error));
                }
                _ => p = p.with_error_code(code),
            }
            let resp = BeginQuorumEpochResponse::default().with_topics(vec![
                bqe_resp::TopicData::default()
                    .with_topic_name(topic_name())
                    .with_partitions(vec![p]),
            ]);
            encode(&resp, v)
        }
        ApiKey::EndQuorumEpoch => {
            let mut p = eqe_resp::PartitionData::default()
                .with_partition_index(ctx.partition)
                .with_leader_id(BrokerId(-1))
                .with_leader_epoch(-1);
            match response {
                Some(Message::EndQuorumEpochResponse(r)) => {
                    p = p
                        .with_leader_id(leader(r.leader_id))
                        .with_leader_epoch(r.epoch);
                }
                _ => p = p.with_error_code(code),
            }
            let resp =
                EndQuorumEpochResponse::default().with_topics(vec![eqe_resp::TopicData::default()
                    .with_topic_name(topic_name())
                    .with_partitions(vec![p])]);
            encode(&resp, v)
        }
        ApiKey::Fetch => {
            let mut p = fetch_response::PartitionData::default()
                .with_partition_index(ctx.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            match response {
                Some(Message::FetchResponse(r)) => {
                    p = p
                        .with_error_code(error_code(r.error))
                        .with_high_watermark(r.high_watermark)
                        .with_current_leader(
                            fetch_response::LeaderIdAndEpoch::default()
                                .with_leader_id(leader(r.leader_id))
                                .with_leader_epoch(r.epoch),
                        );
                    if let Some(d) = r.diverging_epoch {
                        p = p.with_diverging_epoch(
                            fetch_response::EpochEndOffset::default()
                                .with_epoch(d.epoch)
                                .with_end_offset(d.end_offset),
                        );
                    }
                    if let Some(s) = r.snapshot_id {
                        p = p.with_snapshot_id(
                            fetch_response::SnapshotId::default()
                                .with_end_offset(s.end_offset)
                                .with_epoch(s.epoch),
                        );
                    }
                    if !r.records.is_empty() {
                        let bytes =
                            encode_entries(&r.records, voters).map_err(|e| e.to_string())?;
                        p = p.with_records(Some(bytes.freeze()));
                    }
                }
                _ => p = p.with_error_code(code),
            }
            let mut t = fetch_response::FetchableTopicResponse::default().with_partitions(vec![p]);
            if ctx.by_id {
                t = t.with_topic_id(METADATA_TOPIC_ID);
            } else {
                t = t.with_topic(topic_name());
            }
            encode(&FetchResponse::default().with_responses(vec![t]), v)
        }
        ApiKey::FetchSnapshot => {
            let mut p = fs_resp::PartitionSnapshot::default().with_index(ctx.partition);
            match response {
                Some(Message::FetchSnapshotResponse(r)) => {
                    p = p
                        .with_error_code(error_code(r.error))
                        .with_snapshot_id(
                            fs_resp::SnapshotId::default()
                                .with_end_offset(r.snapshot_id.end_offset)
                                .with_epoch(r.snapshot_id.epoch),
                        )
                        .with_current_leader(
                            fs_resp::LeaderIdAndEpoch::default()
                                .with_leader_id(leader(r.leader_id))
                                .with_leader_epoch(r.epoch),
                        )
                        .with_size(r.size as i64)
                        .with_position(r.position as i64)
                        .with_unaligned_records(r.bytes.clone());
                }
                _ => p = p.with_error_code(code),
            }
            let resp = FetchSnapshotResponse::default().with_topics(vec![
                fs_resp::TopicSnapshot::default()
                    .with_name(topic_name())
                    .with_partitions(vec![p]),
            ]);
            encode(&resp, v)
        }
        other => Err(format!("{other:?} is not a quorum RPC")),
    }
}

/// Whether `msg` answers a request of API `key`.
pub fn answers(key: ApiKey, msg: &Message) -> bool {
    matches!(
        (key, msg),
        (ApiKey::Vote, Message::VoteResponse(_))
            | (
                ApiKey::BeginQuorumEpoch,
                Message::BeginQuorumEpochResponse(_)
            )
            | (ApiKey::EndQuorumEpoch, Message::EndQuorumEpochResponse(_))
            | (ApiKey::Fetch, Message::FetchResponse(_))
            | (ApiKey::FetchSnapshot, Message::FetchSnapshotResponse(_))
    )
}

/// An outbound request in Kafka's form.
pub enum Outbound {
    /// Vote.
    Vote(VoteRequest),
    /// BeginQuorumEpoch.
    Begin(BeginQuorumEpochRequest),
    /// EndQuorumEpoch.
    End(EndQuorumEpochRequest),
    /// Fetch.
    Fetch(FetchRequest),
    /// FetchSnapshot.
    FetchSnapshot(FetchSnapshotRequest),
}

/// Builds the Kafka request for a core request message to `to`; `None` for responses (those
/// answer inbound requests and never travel on their own).
/// `fetch_max_wait_ms` is the long-poll wait a Fetch asks of the leader.
pub fn build_request(
    msg: &Message,
    to: NodeId,
    cluster_id: &str,
    fetch_max_wait_ms: u64,
) -> Option<Outbound> {
    let cluster = Some(StrBytes::from_string(cluster_id.to_string()));
    match msg {
        Message::VoteRequest(r) => Some(Outbound::Vote(
            VoteRequest::default()
                .with_cluster_id(cluster)
                .with_voter_id(BrokerId(to))
                .with_topics(vec![vote_request::TopicData::default()
                    .with_topic_name(topic_name())
                    .with_partitions(vec![vote_request::PartitionData::default()
                        .with_partition_index(0)
                        .with_replica_epoch(r.epoch)
                        .with_replica_id(BrokerId(r.candidate_id))
                        .with_last_offset_epoch(r.last_offset_epoch)
                        .with_last_offset(r.last_offset)
                        .with_pre_vote(r.pre_vote)])]),
        )),
        Message::BeginQuorumEpochRequest(r) => Some(Outbound::Begin(
            BeginQuorumEpochRequest::default()
                .with_cluster_id(cluster)
                .with_voter_id(BrokerId(to))
                .with_topics(vec![bqe_req::TopicData::default()
                    .with_topic_name(topic_name())
                    .with_partitions(vec![bqe_req::PartitionData::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(r.leader_id))
                        .with_leader_epoch(r.epoch)])]),
        )),
        Message::EndQuorumEpochRequest(r) => Some(Outbound::End(
            EndQuorumEpochRequest::default()
                .with_cluster_id(cluster)
                .with_topics(vec![eqe_req::TopicData::default()
                    .with_topic_name(topic_name())
                    .with_partitions(vec![eqe_req::PartitionData::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(r.leader_id))
                        .with_leader_epoch(r.epoch)
                        .with_preferred_candidates(
                            r.preferred_successors
                                .iter()
                                .map(|c| {
                                    eqe_req::ReplicaInfo::default().with_candidate_id(BrokerId(*c))
                                })
                                .collect(),
                        )])]),
        )),
        Message::FetchRequest(r) => Some(Outbound::Fetch(
            FetchRequest::default()
                .with_cluster_id(cluster)
                .with_replica_id(BrokerId(r.replica_id))
                .with_max_wait_ms(fetch_max_wait_ms.min(i32::MAX as u64) as i32)
                .with_max_bytes(8 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic_name())
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(r.epoch)
                        .with_fetch_offset(r.fetch_offset)
                        .with_last_fetched_epoch(r.last_fetched_epoch)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(8 << 20)])]),
        )),
        Message::FetchSnapshotRequest(r) => Some(Outbound::FetchSnapshot(
            FetchSnapshotRequest::default()
                .with_cluster_id(cluster)
                .with_replica_id(BrokerId(r.replica_id))
                .with_max_bytes(8 << 20)
                .with_topics(vec![fs_req::TopicSnapshot::default()
                    .with_name(topic_name())
                    .with_partitions(vec![fs_req::PartitionSnapshot::default()
                        .with_partition(0)
                        .with_current_leader_epoch(r.epoch)
                        .with_snapshot_id(
                            fs_req::SnapshotId::default()
                                .with_end_offset(r.snapshot_id.end_offset)
                                .with_epoch(r.snapshot_id.epoch),
                        )
                        .with_position(r.position as i64)])]),
        )),
        _ => None,
    }
}

/// Turns a Vote answer into the core's message (`sent` is the request it answers).
pub fn vote_response(resp: &VoteResponse, sent: &nagare_raft::VoteRequest) -> Option<Message> {
    let p = resp.topics.first()?.partitions.first()?;
    if resp.error_code != 0 || p.error_code != 0 {
        return None;
    }
    Some(Message::VoteResponse(nagare_raft::VoteResponse {
        epoch: p.leader_epoch,
        leader_id: opt_leader(p.leader_id),
        vote_granted: p.vote_granted,
        pre_vote: sent.pre_vote,
    }))
}

/// Turns a BeginQuorumEpoch answer into the core's message.
pub fn begin_response(resp: &BeginQuorumEpochResponse) -> Option<Message> {
    let p = resp.topics.first()?.partitions.first()?;
    if resp.error_code != 0 {
        return None;
    }
    Some(Message::BeginQuorumEpochResponse(
        nagare_raft::BeginQuorumEpochResponse {
            epoch: p.leader_epoch,
            leader_id: opt_leader(p.leader_id),
            error: from_code(p.error_code),
        },
    ))
}

/// Turns an EndQuorumEpoch answer into the core's message.
pub fn end_response(resp: &EndQuorumEpochResponse) -> Option<Message> {
    let p = resp.topics.first()?.partitions.first()?;
    if resp.error_code != 0 || p.error_code != 0 {
        return None;
    }
    Some(Message::EndQuorumEpochResponse(
        nagare_raft::EndQuorumEpochResponse {
            epoch: p.leader_epoch,
            leader_id: opt_leader(p.leader_id),
        },
    ))
}

/// Turns a Fetch answer into the core's message (`sent` is the fetch it answers).
pub fn fetch_response(resp: &FetchResponse, sent: &nagare_raft::FetchRequest) -> Option<Message> {
    let p = resp.responses.first()?.partitions.first()?;
    if resp.error_code != 0 {
        return None;
    }
    let records = match &p.records {
        Some(b) if !b.is_empty() => decode_entries(b).ok()?,
        _ => Vec::new(),
    };
    Some(Message::FetchResponse(nagare_raft::FetchResponse {
        epoch: p.current_leader.leader_epoch,
        leader_id: opt_leader(p.current_leader.leader_id),
        error: from_code(p.error_code),
        fetch_offset: sent.fetch_offset,
        last_fetched_epoch: sent.last_fetched_epoch,
        high_watermark: p.high_watermark,
        diverging_epoch: (p.diverging_epoch.epoch >= 0).then_some(DivergingEpoch {
            epoch: p.diverging_epoch.epoch,
            end_offset: p.diverging_epoch.end_offset,
        }),
        snapshot_id: (p.snapshot_id.end_offset >= 0 && p.snapshot_id.epoch >= 0).then_some(
            SnapshotId {
                end_offset: p.snapshot_id.end_offset,
                epoch: p.snapshot_id.epoch,
            },
        ),
        records,
    }))
}

/// Turns a FetchSnapshot answer into the core's message.
pub fn fetch_snapshot_response(resp: &FetchSnapshotResponse) -> Option<Message> {
    let p = resp.topics.first()?.partitions.first()?;
    if resp.error_code != 0 {
        return None;
    }
    Some(Message::FetchSnapshotResponse(
        nagare_raft::FetchSnapshotResponse {
            epoch: p.current_leader.leader_epoch,
            leader_id: opt_leader(p.current_leader.leader_id),
            error: from_code(p.error_code),
            snapshot_id: SnapshotId {
                end_offset: p.snapshot_id.end_offset,
                epoch: p.snapshot_id.epoch,
            },
            size: p.size.max(0) as u64,
            position: p.position.max(0) as u64,
            bytes: p.unaligned_records.clone(),
        },
    ))
}

/// Decodes a DescribeQuorum request: `Ok(Ok(partition))` when it asks about
/// `__cluster_metadata-0`, `Ok(Err(code))` when it names another partition.
pub fn decode_describe_quorum(version: i16, mut body: Bytes) -> Result<Result<i32, i16>, String> {
    let r = DescribeQuorumRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
    check_consumed(&body)?;
    let Some(t) = r.topics.first() else {
        return Ok(Err(KafkaError::InvalidRequest.code()));
    };
    let Some(p) = t.partitions.first() else {
        return Ok(Err(KafkaError::InvalidRequest.code()));
    };
    if t.topic_name.as_str() != METADATA_TOPIC || p.partition_index != 0 {
        return Ok(Err(KafkaError::UnknownTopicOrPartition.code()));
    }
    Ok(Ok(p.partition_index))
}

/// The DescribeQuorum request for `__cluster_metadata-0`.
pub fn describe_quorum_request() -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![dq_req::TopicData::default()
        .with_topic_name(topic_name())
        .with_partitions(vec![
            dq_req::PartitionData::default().with_partition_index(0)
        ])])
}

fn replica_state(r: &ReplicaInfo, version: i16) -> dq_resp::ReplicaState {
    let mut s = dq_resp::ReplicaState::default()
        .with_replica_id(BrokerId(r.replica_id))
        .with_log_end_offset(r.log_end_offset);
    if version >= 1 {
        s = s
            .with_last_fetch_timestamp(r.last_fetch_ms.map_or(-1, |t| t as i64))
            .with_last_caught_up_timestamp(r.last_caught_up_ms.map_or(-1, |t| t as i64));
    }
    s
}

/// Encodes the DescribeQuorum answer. Only the leader knows the replicas' progress, so any
/// other node answers NOT_LEADER_OR_FOLLOWER, as Kafka does; `code` other than 0 answers just
/// that error. `voters` fill the v2 `nodes` (their controller listener).
pub fn encode_describe_quorum(
    version: i16,
    info: &QuorumInfo,
    is_leader: bool,
    code: i16,
    voters: &[VoterAddress],
) -> Result<Bytes, String> {
    let mut p = dq_resp::PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(info.leader_id.unwrap_or(-1)))
        .with_leader_epoch(info.epoch)
        .with_high_watermark(info.high_watermark);
    let code = if code == 0 && !is_leader {
        KafkaError::NotLeaderOrFollower.code()
    } else {
        code
    };
    if code != 0 {
        p = p.with_error_code(code).with_high_watermark(-1);
    } else {
        p = p
            .with_current_voters(
                info.voters
                    .iter()
                    .map(|r| replica_state(r, version))
                    .collect(),
            )
            .with_observers(
                info.observers
                    .iter()
                    .map(|r| replica_state(r, version))
                    .collect(),
            );
    }
    let mut resp =
        DescribeQuorumResponse::default().with_topics(vec![dq_resp::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![p])]);
    if version >= 2 && code == 0 {
        resp = resp.with_nodes(
            voters
                .iter()
                .map(|v| {
                    dq_resp::Node::default()
                        .with_node_id(BrokerId(v.node_id))
                        .with_listeners(vec![dq_resp::Listener::default()
                            .with_name(StrBytes::from_static_str("CONTROLLER"))
                            .with_host(StrBytes::from_string(v.host.clone()))
                            .with_port(v.port)])
                })
                .collect(),
        );
    }
    encode(&resp, version)
}

/// Reads a DescribeQuorum answer back into a [`QuorumInfo`] (`Err` with the Kafka code when
/// it carries an error).
pub fn describe_quorum_info(resp: &DescribeQuorumResponse) -> Result<QuorumInfo, i16> {
    if resp.error_code != 0 {
        return Err(resp.error_code);
    }
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or(KafkaError::InvalidRequest.code())?;
    if p.error_code != 0 {
        return Err(p.error_code);
    }
    let ts = |t: i64| (t >= 0).then_some(t as u64);
    let conv = |r: &dq_resp::ReplicaState| ReplicaInfo {
        replica_id: r.replica_id.0,
        log_end_offset: r.log_end_offset,
        last_fetch_ms: ts(r.last_fetch_timestamp),
        last_caught_up_ms: ts(r.last_caught_up_timestamp),
    };
    Ok(QuorumInfo {
        leader_id: opt_leader(p.leader_id),
        epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: p.current_voters.iter().map(conv).collect(),
        observers: p.observers.iter().map(conv).collect(),
    })
}

/// Whether a Fetch answer is one the leader may hold back (long poll): no error, no records,
/// no divergence, no snapshot to fetch.
pub fn fetch_is_empty(msg: &Message) -> bool {
    matches!(msg, Message::FetchResponse(r)
        if r.error.is_none()
            && r.records.is_empty()
            && r.diverging_epoch.is_none()
            && r.snapshot_id.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_raft::{Entry, EntryPayload};

    /// A request built for the wire decodes into the same core message, and the core's
    /// answer survives the trip back.
    fn round_trip(msg: Message, key: ApiKey, version: i16, answer: Message) -> Message {
        let out = build_request(&msg, 2, "c", 500).expect("request");
        let body = match &out {
            Outbound::Vote(r) => encode(r, version),
            Outbound::Begin(r) => encode(r, version),
            Outbound::End(r) => encode(r, version),
            Outbound::Fetch(r) => encode(r, version),
            Outbound::FetchSnapshot(r) => encode(r, version),
        }
        .expect("encode");
        let inbound = decode_request(key, version, body.clone(), "c")
            .expect("decode")
            .expect("accepted");
        assert_eq!(inbound.message, msg);
        // Another cluster is refused.
        let refused = decode_request(key, version, body, "other").expect("decode");
        assert!(matches!(
            refused,
            Err(Refusal { code, .. }) if code == KafkaError::InconsistentClusterId.code()
        ));
        let mut bytes =
            encode_response(&inbound.ctx, Some(&answer), 0, &[1, 2, 3]).expect("response");
        match (key, &msg) {
            (ApiKey::Vote, Message::VoteRequest(sent)) => vote_response(
                &VoteResponse::decode(&mut bytes, version).expect("resp"),
                sent,
            ),
            (ApiKey::BeginQuorumEpoch, _) => begin_response(
                &BeginQuorumEpochResponse::decode(&mut bytes, version).expect("resp"),
            ),
            (ApiKey::EndQuorumEpoch, _) => {
                end_response(&EndQuorumEpochResponse::decode(&mut bytes, version).expect("resp"))
            }
            (ApiKey::Fetch, Message::FetchRequest(sent)) => fetch_response(
                &FetchResponse::decode(&mut bytes, version).expect("resp"),
                sent,
            ),
            (ApiKey::FetchSnapshot, _) => fetch_snapshot_response(
                &FetchSnapshotResponse::decode(&mut bytes, version).expect("resp"),
            ),
            _ => None,
        }
        .expect("answer")
    }

    #[test]
    fn every_rpc_round_trips() {
        let vote = nagare_raft::VoteRequest {
            epoch: 3,
            candidate_id: 1,
            last_offset_epoch: 2,
            last_offset: 10,
            pre_vote: true,
        };
        let ans = Message::VoteResponse(nagare_raft::VoteResponse {
            epoch: 3,
            leader_id: None,
            vote_granted: true,
            pre_vote: true,
        });
        assert_eq!(
            round_trip(
                Message::VoteRequest(vote),
                ApiKey::Vote,
                VOTE_VERSION,
                ans.clone()
            ),
            ans
        );
        let ans = Message::BeginQuorumEpochResponse(nagare_raft::BeginQuorumEpochResponse {
            epoch: 4,
            leader_id: Some(1),
            error: None,
        });
        assert_eq!(
            round_trip(
                Message::BeginQuorumEpochRequest(nagare_raft::BeginQuorumEpochRequest {
                    epoch: 4,
                    leader_id: 1
                }),
                ApiKey::BeginQuorumEpoch,
                BEGIN_VERSION,
                ans.clone()
            ),
            ans
        );
        let ans = Message::EndQuorumEpochResponse(nagare_raft::EndQuorumEpochResponse {
            epoch: 4,
            leader_id: Some(1),
        });
        assert_eq!(
            round_trip(
                Message::EndQuorumEpochRequest(nagare_raft::EndQuorumEpochRequest {
                    epoch: 4,
                    leader_id: 1,
                    preferred_successors: vec![3, 2],
                }),
                ApiKey::EndQuorumEpoch,
                END_VERSION,
                ans.clone()
            ),
            ans
        );
        let fetch = nagare_raft::FetchRequest {
            epoch: 4,
            replica_id: 2,
            fetch_offset: 7,
            last_fetched_epoch: 3,
        };
        let ans = Message::FetchResponse(nagare_raft::FetchResponse {
            epoch: 4,
            leader_id: Some(1),
            error: None,
            fetch_offset: 7,
            last_fetched_epoch: 3,
            high_watermark: 9,
            diverging_epoch: Some(DivergingEpoch {
                epoch: 2,
                end_offset: 5,
            }),
            snapshot_id: None,
            records: vec![
                Entry {
                    offset: 7,
                    epoch: 4,
                    payload: EntryPayload::LeaderChange { leader_id: 1 },
                },
                Entry {
                    offset: 8,
                    epoch: 4,
                    payload: EntryPayload::Data(Bytes::from_static(b"rec")),
                },
            ],
        });
        assert_eq!(
            round_trip(
                Message::FetchRequest(fetch),
                ApiKey::Fetch,
                FETCH_VERSION,
                ans.clone()
            ),
            ans
        );
        let sid = SnapshotId {
            end_offset: 100,
            epoch: 3,
        };
        let ans = Message::FetchSnapshotResponse(nagare_raft::FetchSnapshotResponse {
            epoch: 4,
            leader_id: Some(1),
            error: None,
            snapshot_id: sid,
            size: 10,
            position: 5,
            bytes: Bytes::from_static(b"12345"),
        });
        assert_eq!(
            round_trip(
                Message::FetchSnapshotRequest(nagare_raft::FetchSnapshotRequest {
                    epoch: 4,
                    replica_id: 2,
                    snapshot_id: sid,
                    position: 5,
                }),
                ApiKey::FetchSnapshot,
                FETCH_SNAPSHOT_VERSION,
                ans.clone()
            ),
            ans
        );
    }

    #[test]
    fn error_codes_are_kafkas() {
        for (e, code) in [
            (ResponseError::FencedLeaderEpoch, 74),
            (ResponseError::UnknownLeaderEpoch, 75),
            (ResponseError::NotLeader, 6),
            (ResponseError::SnapshotNotFound, 98),
            (ResponseError::InvalidRequest, 42),
        ] {
            assert_eq!(error_code(Some(e)), code);
            assert_eq!(from_code(code), Some(e));
        }
        assert_eq!(error_code(None), 0);
        assert_eq!(from_code(0), None);
        assert_eq!(
            from_code(KafkaError::InconsistentClusterId.code()),
            Some(ResponseError::InvalidRequest)
        );
    }

    #[test]
    fn fetch_from_newer_clients_names_the_replica_in_replica_state() {
        // Fetch v15+: the replica id moved into ReplicaState (KIP-903), the topic is by id.
        let req = FetchRequest::default()
            .with_cluster_id(Some(StrBytes::from_static_str("c")))
            .with_replica_state(fetch_request::ReplicaState::default().with_replica_id(BrokerId(3)))
            .with_max_wait_ms(250)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic_id(METADATA_TOPIC_ID)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(5)
                    .with_fetch_offset(10)
                    .with_last_fetched_epoch(4)])]);
        let body = encode(&req, 17).expect("encode");
        let inbound = decode_request(ApiKey::Fetch, 17, body, "c")
            .expect("decode")
            .expect("accepted");
        assert_eq!(inbound.from, 3);
        assert_eq!(inbound.ctx.max_wait_ms, 250);
        assert!(inbound.ctx.by_id);
        assert_eq!(
            inbound.message,
            Message::FetchRequest(nagare_raft::FetchRequest {
                epoch: 5,
                replica_id: 3,
                fetch_offset: 10,
                last_fetched_epoch: 4,
            })
        );
        // The answer names the topic by id too, and an error answer carries its code.
        let mut b = encode_response(
            &inbound.ctx,
            None,
            KafkaError::NotLeaderOrFollower.code(),
            &[],
        )
        .expect("resp");
        let resp = FetchResponse::decode(&mut b, 17).expect("decode");
        assert_eq!(resp.responses[0].topic_id, METADATA_TOPIC_ID);
        assert_eq!(resp.responses[0].partitions[0].error_code, 6);
        // Another partition of the topic is not ours.
        let other = req
            .clone()
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic_id(METADATA_TOPIC_ID)
                .with_partitions(vec![
                    fetch_request::FetchPartition::default().with_partition(1)
                ])]);
        let refused =
            decode_request(ApiKey::Fetch, 17, encode(&other, 17).expect("e"), "c").expect("decode");
        assert!(matches!(refused, Err(Refusal { code: 3, .. })));
    }

    #[test]
    fn vote_v0_is_not_a_pre_vote() {
        let req = VoteRequest::default()
            .with_cluster_id(Some(StrBytes::from_static_str("c")))
            .with_topics(vec![vote_request::TopicData::default()
                .with_topic_name(topic_name())
                .with_partitions(vec![vote_request::PartitionData::default()
                    .with_replica_epoch(2)
                    .with_replica_id(BrokerId(1))
                    .with_last_offset_epoch(1)
                    .with_last_offset(3)])]);
        let inbound = decode_request(ApiKey::Vote, 0, encode(&req, 0).expect("e"), "c")
            .expect("decode")
            .expect("ok");
        assert!(
            matches!(inbound.message, Message::VoteRequest(ref v) if !v.pre_vote && v.epoch == 2)
        );
    }

    #[test]
    fn describe_quorum_round_trips_at_every_version() {
        let info = QuorumInfo {
            leader_id: Some(1),
            epoch: 4,
            high_watermark: 17,
            voters: vec![
                ReplicaInfo {
                    replica_id: 1,
                    log_end_offset: 18,
                    last_fetch_ms: Some(1_000),
                    last_caught_up_ms: Some(1_000),
                },
                ReplicaInfo {
                    replica_id: 2,
                    log_end_offset: 17,
                    last_fetch_ms: Some(990),
                    last_caught_up_ms: None,
                },
            ],
            observers: vec![ReplicaInfo {
                replica_id: 101,
                log_end_offset: 10,
                last_fetch_ms: Some(900),
                last_caught_up_ms: None,
            }],
        };
        let voters = vec![VoterAddress {
            node_id: 1,
            host: "h".into(),
            port: 9093,
        }];
        for v in 0..=2 {
            let mut req = BytesMut::new();
            describe_quorum_request().encode(&mut req, v).expect("req");
            assert_eq!(
                decode_describe_quorum(v, req.freeze()).expect("decode"),
                Ok(0)
            );
            let mut b = encode_describe_quorum(v, &info, true, 0, &voters).expect("encode");
            let resp = DescribeQuorumResponse::decode(&mut b, v).expect("decode");
            let got = describe_quorum_info(&resp).expect("ok");
            if v >= 1 {
                assert_eq!(got, info);
            } else {
                // v0 has no timestamps.
                assert_eq!(got.voters[0].log_end_offset, 18);
                assert_eq!(got.voters[0].last_fetch_ms, None);
            }
            assert_eq!(resp.nodes.len(), if v >= 2 { 1 } else { 0 });
            // A non-leader answers NOT_LEADER_OR_FOLLOWER.
            let mut b = encode_describe_quorum(v, &info, false, 0, &voters).expect("encode");
            let resp = DescribeQuorumResponse::decode(&mut b, v).expect("decode");
            assert_eq!(
                describe_quorum_info(&resp),
                Err(KafkaError::NotLeaderOrFollower.code())
            );
        }
        let other = DescribeQuorumRequest::default()
            .with_topics(vec![dq_req::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("x")))
                .with_partitions(vec![dq_req::PartitionData::default()])]);
        let mut b = BytesMut::new();
        other.encode(&mut b, 1).expect("e");
        assert_eq!(decode_describe_quorum(1, b.freeze()).expect("d"), Err(3));
    }
}
