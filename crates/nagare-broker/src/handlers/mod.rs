//! One module per Kafka API. Each declares the version range it supports (`VERSIONS`); the
//! ApiVersions answer is built from these declarations. [`dispatch`] decodes the header,
//! refuses unknown keys and versions (closing the connection, as Kafka does), and routes.

pub mod alter_configs;
pub mod alter_partition;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod controller_apis;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_quorum;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use nagare_protocol::frame;

use crate::network::{Reply, Response};
use crate::Broker;

/// Every API this broker answers, with its version range.
pub fn supported_apis() -> Vec<(ApiKey, i16, i16)> {
    vec![
        (ApiKey::Produce, produce::VERSIONS.0, produce::VERSIONS.1),
        (ApiKey::Fetch, fetch::VERSIONS.0, fetch::VERSIONS.1),
        (
            ApiKey::ListOffsets,
            list_offsets::VERSIONS.0,
            list_offsets::VERSIONS.1,
        ),
        (ApiKey::Metadata, metadata::VERSIONS.0, metadata::VERSIONS.1),
        (
            ApiKey::ApiVersions,
            api_versions::VERSIONS.0,
            api_versions::VERSIONS.1,
        ),
        (
            ApiKey::CreateTopics,
            create_topics::VERSIONS.0,
            create_topics::VERSIONS.1,
        ),
        (
            ApiKey::DeleteTopics,
            delete_topics::VERSIONS.0,
            delete_topics::VERSIONS.1,
        ),
        (
            ApiKey::DeleteRecords,
            delete_records::VERSIONS.0,
            delete_records::VERSIONS.1,
        ),
        (
            ApiKey::InitProducerId,
            init_producer_id::VERSIONS.0,
            init_producer_id::VERSIONS.1,
        ),
        (
            ApiKey::OffsetForLeaderEpoch,
            offset_for_leader_epoch::VERSIONS.0,
            offset_for_leader_epoch::VERSIONS.1,
        ),
        (
            ApiKey::DescribeConfigs,
            describe_configs::VERSIONS.0,
            describe_configs::VERSIONS.1,
        ),
        (
            ApiKey::AlterConfigs,
            alter_configs::ALTER_VERSIONS.0,
            alter_configs::ALTER_VERSIONS.1,
        ),
        (
            ApiKey::CreatePartitions,
            create_partitions::VERSIONS.0,
            create_partitions::VERSIONS.1,
        ),
        (
            ApiKey::IncrementalAlterConfigs,
            alter_configs::INCREMENTAL_VERSIONS.0,
            alter_configs::INCREMENTAL_VERSIONS.1,
        ),
        (
            ApiKey::ElectLeaders,
            elect_leaders::VERSIONS.0,
            elect_leaders::VERSIONS.1,
        ),
        (
            ApiKey::DescribeCluster,
            describe_cluster::VERSIONS.0,
            describe_cluster::VERSIONS.1,
        ),
        (
            ApiKey::FindCoordinator,
            find_coordinator::VERSIONS.0,
            find_coordinator::VERSIONS.1,
        ),
        (
            ApiKey::JoinGroup,
            groups::JOIN_GROUP.0,
            groups::JOIN_GROUP.1,
        ),
        (
            ApiKey::SyncGroup,
            groups::SYNC_GROUP.0,
            groups::SYNC_GROUP.1,
        ),
        (ApiKey::Heartbeat, groups::HEARTBEAT.0, groups::HEARTBEAT.1),
        (
            ApiKey::LeaveGroup,
            groups::LEAVE_GROUP.0,
            groups::LEAVE_GROUP.1,
        ),
        (
            ApiKey::OffsetCommit,
            groups::OFFSET_COMMIT.0,
            groups::OFFSET_COMMIT.1,
        ),
        (
            ApiKey::OffsetFetch,
            groups::OFFSET_FETCH.0,
            groups::OFFSET_FETCH.1,
        ),
        (
            ApiKey::DescribeGroups,
            groups::DESCRIBE_GROUPS.0,
            groups::DESCRIBE_GROUPS.1,
        ),
        (
            ApiKey::ListGroups,
            groups::LIST_GROUPS.0,
            groups::LIST_GROUPS.1,
        ),
        (
            ApiKey::DeleteGroups,
            groups::DELETE_GROUPS.0,
            groups::DELETE_GROUPS.1,
        ),
        (
            ApiKey::OffsetDelete,
            groups::OFFSET_DELETE.0,
            groups::OFFSET_DELETE.1,
        ),
        (
            ApiKey::ConsumerGroupHeartbeat,
            consumer_group_heartbeat::VERSIONS.0,
            consumer_group_heartbeat::VERSIONS.1,
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            consumer_group_describe::VERSIONS.0,
            consumer_group_describe::VERSIONS.1,
        ),
    ]
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// A client (broker) listener.
    Broker,
    /// The `CONTROLLER` listener: the quorum RPCs and what brokers send the controller.
    Controller,
}

/// A request as the handlers see it.
pub struct Request {
    /// Decoded header.
    pub header: RequestHeader,
    /// Body bytes (decode with the request type at `header.request_api_version`).
    pub body: Bytes,
    /// Client address.
    pub peer: std::net::SocketAddr,
    /// The listener it arrived on.
    pub listener: ListenerKind,
}

impl Request {
    /// Decodes the body as `T`.
    pub fn decode<T: Decodable>(&mut self) -> Result<T, String> {
        T::decode(&mut self.body, self.header.request_api_version).map_err(|e| e.to_string())
    }
    /// API version.
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
}

/// Encodes a response with its header for `key` at `version`.
pub fn respond<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Response {
    let header_version = key.response_header_version(version);
    let size = body.compute_size(version).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(size + 9);
    buf.extend_from_slice(&[0, 0, 0, 0]);
    frame::put_response_header(&mut buf, correlation_id, header_version);
    if let Err(e) = body.encode(&mut buf, version) {
        // Our own structs failed to encode: a bug. Answer nothing rather than garbage;
        // the client times out and retries.
        tracing::error!(?key, version, error = %e, "cannot encode response");
        buf.truncate(4);
        frame::put_response_header(&mut buf, correlation_id, header_version);
    }
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Response::bytes(buf.freeze())
}

/// Frames an already encoded response body with its header for `key` at `version`.
pub fn respond_raw(key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Response {
    let header_version = key.response_header_version(version);
    let mut buf = BytesMut::with_capacity(body.len() + 9);
    buf.extend_from_slice(&[0, 0, 0, 0]);
    frame::put_response_header(&mut buf, correlation_id, header_version);
    buf.extend_from_slice(body);
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Response::bytes(buf.freeze())
}

/// Helper: a `StrBytes` from a `String`.
pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The APIs a listener answers.
pub fn apis_for(listener: ListenerKind) -> Vec<(ApiKey, i16, i16)> {
    match listener {
        ListenerKind::Broker => {
            let mut v = supported_apis();
            v.extend(controller_apis::FORWARDED_ONLY.iter().copied());
            v
        }
        ListenerKind::Controller => controller_apis::supported(),
    }
}

/// Routes one frame.
pub async fn dispatch(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: std::net::SocketAddr,
    listener: ListenerKind,
) -> Reply {
    let prefix = match frame::peek_header_prefix(&frame) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request header");
            return Reply::Close;
        }
    };
    let apis = apis_for(listener);
    let Some(&(key, min, max)) = apis.iter().find(|(k, _, _)| *k as i16 == prefix.api_key) else {
        tracing::warn!(%peer, api_key = prefix.api_key, "closing connection: unsupported API key");
        return Reply::Close;
    };
    if prefix.api_version < min || prefix.api_version > max {
        if key == ApiKey::ApiVersions && prefix.api_version > max {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
            let ranges: Vec<(i16, i16, i16)> =
                apis.iter().map(|(k, a, b)| (*k as i16, *a, *b)).collect();
            return Reply::Now(Response::bytes(frame::api_versions_fallback(
                prefix.correlation_id,
                &ranges,
            )));
        }
        tracing::warn!(%peer, ?key, version = prefix.api_version, "closing connection: unsupported API version");
        return Reply::Close;
    }
    // Admin requests a client sends to any broker go to the active controller (Kafka's
    // forwarding); the raw frame travels unchanged, with the client's correlation id.
    if listener == ListenerKind::Broker
        && controller_apis::is_forwarded(key)
        && !broker.is_active_controller()
    {
        if let Some(reply) = controller_apis::forward(broker, key, frame.clone()).await {
            return reply;
        }
    }
    let header = match frame::decode_request_header(&mut frame) {
        Ok((_, h)) => h,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request header");
            return Reply::Close;
        }
    };
    let req = Request {
        header,
        body: frame,
        peer,
        listener,
    };
    if listener == ListenerKind::Controller {
        return match controller_apis::dispatch(broker, key, req).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(%peer, ?key, version = prefix.api_version, error = %e, "closing controller connection: malformed request");
                Reply::Close
            }
        };
    }
    let result = match key {
        ApiKey::ApiVersions => api_versions::handle(broker, req),
        ApiKey::Metadata => metadata::handle(broker, req).await,
        ApiKey::Produce => produce::handle(broker, req).await,
        ApiKey::Fetch => fetch::handle(broker, req),
        ApiKey::ListOffsets => list_offsets::handle(broker, req),
        ApiKey::CreateTopics => create_topics::handle(broker, req).await,
        ApiKey::DeleteTopics => delete_topics::handle(broker, req).await,
        ApiKey::CreatePartitions => create_partitions::handle(broker, req).await,
        ApiKey::DescribeConfigs => describe_configs::handle(broker, req),
        ApiKey::AlterConfigs => alter_configs::handle_alter(broker, req).await,
        ApiKey::IncrementalAlterConfigs => alter_configs::handle_incremental(broker, req).await,
        ApiKey::DescribeCluster => describe_cluster::handle(broker, req),
        ApiKey::DescribeQuorum => describe_quorum::handle(broker, req),
        ApiKey::ElectLeaders => elect_leaders::handle(broker, req).await,
        ApiKey::DeleteRecords => delete_records::handle(broker, req),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(broker, req),
        ApiKey::InitProducerId => init_producer_id::handle(broker, req).await,
        ApiKey::FindCoordinator => find_coordinator::handle(broker, req).await,
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete => groups::handle(broker, key, req).await,
        ApiKey::ConsumerGroupHeartbeat => consumer_group_heartbeat::handle(broker, req).await,
        ApiKey::ConsumerGroupDescribe => consumer_group_describe::handle(broker, req).await,
        _ => Err(format!("no handler for {key:?}")),
    };
    match result {
        Ok(reply) => reply,
        Err(e) => {
            tracing::warn!(%peer, ?key, version = prefix.api_version, error = %e, "closing connection: malformed request");
            Reply::Close
        }
    }
}
