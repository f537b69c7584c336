//! The console's requests: Kafka requests encoded as a client would send them and run
//! through [`crate::handlers::dispatch`] on a connection context of the console's own (whose
//! principal is the logged-in user, or `User:ANONYMOUS` without security), so API version
//! checks, SASL gating, authorization, validation, quotas and request metrics apply exactly
//! as to a client on a socket. Only the socket is skipped.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request as KafkaRequest, StrBytes};

use nagare_protocol::fetch::Chunk;

use crate::context::ConnectionContext;
use crate::network::{Reply, Response};
use crate::Broker;

/// The client id the console's requests carry (request logs, quotas by client id).
pub const CLIENT_ID: &str = "nagare-console";

/// How long a deferred answer (acks=all, a forwarded request) may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The broker would have closed the connection: the session is not (or no longer)
    /// authenticated, e.g. past `connections.max.reauth.ms`.
    Closed,
    /// No answer in time.
    Timeout,
    /// The request could not be encoded or the answer decoded (a bug, logged).
    Codec(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Closed => f.write_str("the broker closed the console's session"),
            CallError::Timeout => f.write_str("no answer from the broker in time"),
            CallError::Codec(e) => write!(f, "encoding error: {e}"),
        }
    }
}

/// A console connection: the broker and the connection context requests run on.
#[derive(Clone)]
pub struct InProcess {
    /// The broker state.
    pub broker: Arc<Broker>,
    /// The connection (listener, security protocol, peer, principal).
    pub conn: Arc<ConnectionContext>,
}

impl InProcess {
    /// Sends `req` at `version` and decodes the answer (`Ok(None)` for a request that gets
    /// no response, Produce with acks=0).
    pub async fn call<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<Option<R::Response>, CallError> {
        let frame = encode(req, version)?;
        let d = crate::handlers::dispatch(&self.broker, frame, &self.conn, Instant::now()).await;
        let resp = match d.reply {
            Reply::Now(r) => r,
            Reply::Later(f) => tokio::time::timeout(REPLY_TIMEOUT, f)
                .await
                .map_err(|_| CallError::Timeout)?,
            Reply::Nothing => return Ok(None),
            Reply::Close => return Err(CallError::Closed),
        };
        if self.conn.sasl.close_requested() {
            return Err(CallError::Closed);
        }
        let bytes = response_bytes(resp)?;
        decode::<R>(bytes, version).map(Some)
    }

    /// Like [`InProcess::call`] for requests that always get a response.
    pub async fn ask<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, CallError> {
        self.call(req, version)
            .await?
            .ok_or_else(|| CallError::Codec("no response".into()))
    }
}

/// The frame (header and body, without the size prefix) of `req` at `version`.
pub fn encode<R: KafkaRequest>(req: &R, version: i16) -> Result<Bytes, CallError> {
    let key = ApiKey::try_from(R::KEY).map_err(|_| CallError::Codec("unknown key".into()))?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| CallError::Codec(e.to_string()))?;
    req.encode(&mut buf, version)
        .map_err(|e| CallError::Codec(e.to_string()))?;
    Ok(buf.freeze())
}

/// A response's bytes after the size prefix, reading file regions (fetched records) from
/// their segments as sendfile would.
fn response_bytes(resp: Response) -> Result<Bytes, CallError> {
    let mut out = BytesMut::new();
    for c in resp.chunks {
        match c {
            Chunk::Bytes(b) => out.extend_from_slice(&b),
            Chunk::Records(crate::network::Region(slice)) => {
                let mut buf = vec![0u8; slice.len];
                slice
                    .file
                    .read_exact_at(&mut buf, slice.position)
                    .map_err(|e| CallError::Codec(format!("reading a segment: {e}")))?;
                out.extend_from_slice(&buf);
            }
        }
    }
    if out.len() < 4 {
        return Err(CallError::Codec("short response".into()));
    }
    Ok(out.freeze().slice(4..))
}

fn decode<R: KafkaRequest>(mut b: Bytes, version: i16) -> Result<R::Response, CallError> {
    let key = ApiKey::try_from(R::KEY).map_err(|_| CallError::Codec("unknown key".into()))?;
    ResponseHeader::decode(&mut b, key.response_header_version(version))
        .map_err(|e| CallError::Codec(e.to_string()))?;
    let resp = R::Response::decode(&mut b, version).map_err(|e| CallError::Codec(e.to_string()))?;
    if b.has_remaining() {
        return Err(CallError::Codec("trailing bytes after the response".into()));
    }
    Ok(resp)
}
