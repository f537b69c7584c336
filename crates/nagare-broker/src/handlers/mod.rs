//! The request pipeline: one module per Kafka API, each declaring the version range it
//! supports (`VERSIONS`), and one table of declarations ([`apis::APIS`]) from which
//! ApiVersions, routing, forwarding and the README's API table are built. [`dispatch`]
//! decodes the header, refuses unknown keys and versions (closing the connection, as Kafka
//! does), builds the request context, forwards controller APIs in an Envelope, and runs the
//! handler; [`run_handler`] maps handler failures to Kafka's behaviour.

#[cfg(test)]
mod acl_tests;
pub mod acls;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod apis;
#[cfg(test)]
mod authorized_operations_tests;
pub mod client_quotas;
#[cfg(test)]
mod client_quotas_tests;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod controller_apis;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
#[cfg(test)]
mod disk_fault_tests;
#[cfg(test)]
mod dynamic_config_tests;
pub mod elect_leaders;
pub mod end_txn;
pub mod envelope;
pub mod error_response;
pub mod fetch;
pub mod find_coordinator;
#[cfg(test)]
mod group_timeout_tests;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
#[cfg(test)]
mod oauth_tests;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod produce_frame;
#[cfg(test)]
mod produce_frame_tests;
#[cfg(test)]
mod record_errors_tests;
pub mod sasl;
#[cfg(test)]
mod sasl_tests;
pub mod scram_credentials;
pub mod telemetry;
#[cfg(test)]
mod telemetry_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tv2_tests;
#[cfg(test)]
mod txn_data_tests;
pub mod txn_offset_commit;
#[cfg(test)]
mod txn_tests;
#[cfg(test)]
mod txn_verification_tests;
pub mod unregister_broker;
pub mod update_features;
pub mod write_txn_markers;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tracing::Instrument;

use nagare_protocol::error::ResponseError;
use nagare_protocol::frame;

use crate::context::{ConnectionContext, RequestContext};
use crate::network::{Reply, Response};
use crate::request_metrics::RequestTiming;
use crate::Broker;

pub use apis::{apis_for, spec, ApiSpec, Handler, APIS};

/// A boxed, sendable future (handlers and deferred replies).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler returns: a reply, or why it could not produce one.
pub type HandlerResult = Result<Reply, HandlerError>;

/// Why a handler produced no reply. The two cases are treated differently, as Kafka does:
/// a request that does not decode closes the connection (the stream may be out of sync),
/// while a failure of ours is answered with UNKNOWN_SERVER_ERROR and logged, and the
/// connection stays open.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The request body is malformed for its declared version.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The broker failed (a bug or an unexpected state): answered with
    /// UNKNOWN_SERVER_ERROR.
    #[error("internal error: {0}")]
    Internal(String),
}

pub use crate::context::ListenerKind;

/// A request as the handlers see it: its context (connection, header, principal, timing)
/// and the undecoded body.
pub struct Request {
    /// Who sent it, on which connection, when, and its header.
    pub ctx: RequestContext,
    /// Body bytes (decode with the request type at the header's version).
    pub body: Bytes,
}

impl Request {
    /// Decodes the body as `T`; a failure is [`HandlerError::Malformed`].
    pub fn decode<T: Decodable>(&mut self) -> Result<T, HandlerError> {
        T::decode(&mut self.body, self.ctx.header.request_api_version)
            .map_err(|e| HandlerError::Malformed(e.to_string()))
    }
    /// API version.
    pub fn version(&self) -> i16 {
        self.ctx.header.request_api_version
    }
    /// The request header.
    pub fn header(&self) -> &RequestHeader {
        &self.ctx.header
    }
    /// The correlation id to answer with.
    pub fn correlation_id(&self) -> i32 {
        self.ctx.header.correlation_id
    }
    /// The client's address (the original client's for a forwarded request).
    pub fn peer(&self) -> std::net::SocketAddr {
        match &self.ctx.forwarded {
            Some(f) => std::net::SocketAddr::new(f.client_address, 0),
            None => self.ctx.connection.peer,
        }
    }
    /// The listener it arrived on.
    pub fn listener(&self) -> ListenerKind {
        self.ctx.connection.listener
    }
}

/// What dispatching one frame produced: the reply, and the request's timing so far for the
/// metrics hook (completed when the response has been written).
pub struct Dispatched {
    /// The reply to queue.
    pub reply: Reply,
    /// Timing of a request that reached a handler.
    pub timing: Option<RequestTiming>,
}

impl From<Reply> for Dispatched {
    fn from(reply: Reply) -> Self {
        Dispatched {
            reply,
            timing: None,
        }
    }
}

/// Routes one frame that arrived on `conn` at `received`: looks up the API's declaration,
/// refuses unknown keys and versions (closing the connection, as Kafka does; ApiVersions gets
/// the KIP-511 fallback), forwards controller APIs from a client listener to the active
/// controller, and otherwise runs the handler inside a tracing span.
pub async fn dispatch(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    conn: &Arc<ConnectionContext>,
    received: Instant,
) -> Dispatched {
    let peer = conn.peer;
    let request_bytes = frame.len();
    // After a v0 SaslHandshake the client sends raw SASL tokens, not Kafka requests.
    if conn.security_protocol.uses_sasl() && conn.sasl.expects_raw_token() {
        return crate::sasl::raw_token(&broker.sasl, &broker.image(), conn, frame)
            .await
            .into();
    }
    let prefix = match frame::peek_header_prefix(&frame) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request header");
            return Reply::Close.into();
        }
    };
    let Some(spec) = apis::spec_for_code(conn.listener, prefix.api_key) else {
        tracing::warn!(%peer, api_key = prefix.api_key, "closing connection: unsupported API key");
        return Reply::Close.into();
    };
    if !spec.supports(prefix.api_version) {
        if spec.key == ApiKey::ApiVersions && prefix.api_version > spec.versions.1 {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
            let ranges: Vec<(i16, i16, i16)> = apis_for(conn.listener)
                .iter()
                .map(|(k, a, b)| (*k as i16, *a, *b))
                .collect();
            return Reply::Now(Response::bytes(frame::api_versions_fallback(
                prefix.correlation_id,
                &ranges,
            )))
            .into();
        }
        tracing::warn!(%peer, key = ?spec.key, version = prefix.api_version, "closing connection: unsupported API version");
        return Reply::Close.into();
    }
    // On a SASL listener nothing but ApiVersions and the SASL exchange runs before the
    // client has authenticated (and nothing after its session expired).
    if !crate::sasl::admit(conn, spec.key) {
        return Reply::Close.into();
    }
    // The frame as the client sent it, kept (a cheap `Bytes` clone) for forwarding.
    let original = frame.clone();
    let mut header = match frame::decode_request_header(&mut frame) {
        Ok((_, h)) => h,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request header");
            return Reply::Close.into();
        }
    };
    if spec.key == ApiKey::Produce && frame.len() >= produce_frame::OWN_FRAME_MIN_BYTES {
        header = produce_frame::detach_header(header);
    }
    let started = Instant::now();
    let ctx = RequestContext {
        connection: conn.clone(),
        header,
        api: spec,
        received,
        request_bytes,
        forwarded: None,
    };
    let timing = RequestTiming::new(&ctx, started);
    // Admin requests a client sends to any broker go to the active controller (Kafka's
    // forwarding), wrapped in an Envelope that carries the client's principal (KIP-590).
    // Log levels (BROKER_LOGGER) are this broker's own: Kafka handles them locally.
    let local_only = spec.key == ApiKey::IncrementalAlterConfigs
        && alter_configs::only_broker_loggers(&frame, prefix.api_version);
    if conn.listener == ListenerKind::Broker
        && spec.forwarded
        && !local_only
        && !broker.is_active_controller()
    {
        if let Some(reply) = envelope::forward(broker, &ctx, original.clone()).await {
            return Dispatched {
                reply,
                timing: Some(timing.local_done()),
            };
        }
    }
    // Request-percentage quota: the time this request's handler took (see `quotas`). Kafka
    // exempts cluster actions: transaction markers and batched verification from other
    // brokers here. Produce and Fetch record their own time, to report the throttle in their
    // responses (and since only a consumer's fetch and an acknowledged produce count).
    let exempt = match spec.key {
        ApiKey::Produce | ApiKey::Fetch | ApiKey::WriteTxnMarkers => true,
        ApiKey::AddPartitionsToTxn => prefix.api_version >= 4,
        _ => false,
    };
    let quota_ctx =
        (conn.listener == ListenerKind::Broker && !exempt && broker.quotas.request.enabled())
            .then(|| ctx.clone());
    // Produce hands its records to the log without a copy only while it holds the frame's
    // sole reference (`produce_frame`).
    drop(original);
    let reply = run_handler(broker, Request { ctx, body: frame }).await;
    if let Some(ctx) = quota_ctx {
        broker.quotas.record_request_time(&ctx, received.elapsed());
    }
    Dispatched {
        reply,
        timing: Some(timing.local_done()),
    }
}

/// Runs a request's handler (from its declaration) in a span carrying the correlation id,
/// and turns its failures into Kafka's behaviour: malformed → close the connection;
/// internal error or panic → UNKNOWN_SERVER_ERROR when the API has an error response, else
/// close; either way with a log line.
pub async fn run_handler(broker: &Arc<Broker>, req: Request) -> Reply {
    let spec = req.ctx.api;
    let Handler::Local(handler) = spec.handler else {
        // Quorum RPCs never reach here: the controller listener hands them to the KRaft shell.
        tracing::error!(key = ?spec.key, "quorum API routed to a broker handler");
        return Reply::Close;
    };
    let span = tracing::debug_span!(
        "request",
        api = ?spec.key,
        version = req.version(),
        correlation_id = req.correlation_id(),
        client_id = %req.ctx.client_id(),
        peer = %req.ctx.connection.peer,
    );
    let key = spec.key;
    let version = req.version();
    let correlation_id = req.correlation_id();
    let peer = req.ctx.connection.peer;
    let header = req.ctx.header.clone();
    // A large Produce gets its error reply built now rather than keeping a reference to the
    // body, so the handler can own the frame and give the log its records without a copy
    // (`produce_frame`); the decode this costs is a few hundred ns (records are not copied).
    let fallback = if key == ApiKey::Produce && req.body.len() >= produce_frame::OWN_FRAME_MIN_BYTES
    {
        Fallback::Built(internal_error_reply(&header, req.body.clone()))
    } else {
        Fallback::Body(req.body.clone())
    };
    let error_reply = move || match fallback {
        Fallback::Built(reply) => reply,
        Fallback::Body(body) => internal_error_reply(&header, body),
    };
    let result = CatchUnwind(handler(broker.clone(), req))
        .instrument(span)
        .await;
    match result {
        Ok(Ok(reply)) => reply,
        Ok(Err(HandlerError::Malformed(e))) => {
            tracing::warn!(%peer, ?key, version, error = %e, "closing connection: malformed request");
            Reply::Close
        }
        Ok(Err(HandlerError::Internal(e))) => {
            tracing::error!(%peer, ?key, version, correlation_id, error = %e, "request failed");
            error_reply()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%peer, ?key, version, correlation_id, panic = %what, "request handler panicked");
            error_reply()
        }
    }
}

/// What the panic guard answers a failed request from.
enum Fallback {
    /// The error reply, built before the handler ran.
    Built(Reply),
    /// The body, to build the error reply from if needed.
    Body(Bytes),
}

/// UNKNOWN_SERVER_ERROR for a request we failed on, in the API's own response shape
/// (Kafka's `AbstractRequest.getErrorResponse`); closes the connection when the body cannot
/// be decoded to build one.
fn internal_error_reply(header: &RequestHeader, body: Bytes) -> Reply {
    match error_response::build(header, body, ResponseError::UnknownServerError) {
        Some(resp) => Reply::Now(resp),
        None => Reply::Close,
    }
}

/// Catches a panic in a handler so one bad request costs an error answer, not the
/// connection's task.
struct CatchUnwind(BoxFuture<HandlerResult>);

impl Future for CatchUnwind {
    type Output = Result<HandlerResult, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Encodes a response with its header for `key` at `version`, with its error codes for the
/// errors-per-API metric.
pub fn respond<T: Encodable + crate::response_errors::ResponseErrors>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Response {
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
    let mut resp = Response::bytes(buf.freeze());
    body.error_counts(&mut resp.errors);
    resp
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
