//! Envelope (key 58, KIP-590): how a broker forwards a client's admin request to the active
//! controller so that the controller sees who really sent it. The broker wraps the client's
//! request frame (header and body, unchanged) with the client's principal, serialized as
//! Kafka's `DefaultPrincipalData` behind a version prefix, and the client's address; the
//! controller authorizes the forwarding broker (CLUSTER_ACTION on the cluster), unwraps the
//! request, runs its handler with the original principal, and wraps the handler's response
//! frame (which carries the client's correlation id) in the Envelope response.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, DefaultPrincipalData, EnvelopeRequest, EnvelopeResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use nagare_protocol::error::ResponseError;
use nagare_protocol::fetch::Chunk;

use super::{apis, respond, run_handler, HandlerResult, ListenerKind, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::context::{ForwardedFrom, KafkaPrincipal, RequestContext};
use crate::network::{Reply, Response};
use crate::Broker;

/// Supported versions (Kafka 4.x: 0).
pub const VERSIONS: (i16, i16) = (0, 0);

/// `DefaultPrincipalData`'s version (Kafka's `DefaultKafkaPrincipalBuilder` writes the
/// highest it knows, behind a two-byte version prefix).
const PRINCIPAL_DATA_VERSION: i16 = 0;

static CORRELATION: AtomicI32 = AtomicI32::new(0);

/// Serializes a principal as Kafka's `DefaultKafkaPrincipalBuilder.serialize` does.
pub fn serialize_principal(p: &KafkaPrincipal) -> Bytes {
    let data = DefaultPrincipalData::default()
        .with_type(StrBytes::from_string(p.principal_type.clone()))
        .with_name(StrBytes::from_string(p.name.clone()))
        .with_token_authenticated(false);
    let mut buf = BytesMut::new();
    buf.put_i16(PRINCIPAL_DATA_VERSION);
    // Encoding a struct of two short strings and a bool into a growable buffer cannot fail;
    // should it, the controller refuses the empty principal and the broker answers locally.
    if data.encode(&mut buf, PRINCIPAL_DATA_VERSION).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

/// Reads a principal written by [`serialize_principal`] (or by Kafka).
pub fn deserialize_principal(mut b: Bytes) -> Result<KafkaPrincipal, String> {
    if b.remaining() < 2 {
        return Err("principal shorter than its version prefix".into());
    }
    let version = b.get_i16();
    if version != PRINCIPAL_DATA_VERSION {
        return Err(format!("unknown DefaultPrincipalData version {version}"));
    }
    let d = DefaultPrincipalData::decode(&mut b, version).map_err(|e| e.to_string())?;
    Ok(KafkaPrincipal {
        principal_type: d._type.to_string(),
        name: d.name.to_string(),
    })
}

fn ip_bytes(ip: IpAddr) -> Bytes {
    match ip {
        IpAddr::V4(v4) => Bytes::copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => Bytes::copy_from_slice(&v6.octets()),
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Forwards `frame` (the client's request as it arrived, without the size prefix) to the
/// active controller in an Envelope and returns the controller's answer for the client.
/// `None` when there is no channel, no controller answered, or it refused the Envelope: the
/// local handler then answers (NOT_CONTROLLER per item, which clients retry).
pub async fn forward(broker: &Arc<Broker>, ctx: &RequestContext, frame: Bytes) -> Option<Reply> {
    let channel = broker.channel.get()?;
    let key = ctx.api.key;
    let envelope = EnvelopeRequest::default()
        .with_request_data(frame)
        .with_request_principal(Some(serialize_principal(&ctx.principal())))
        .with_client_host_address(ip_bytes(ctx.client_address()));
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Envelope as i16)
        .with_request_api_version(VERSIONS.1)
        .with_correlation_id(CORRELATION.fetch_add(1, Ordering::Relaxed))
        .with_client_id(Some(StrBytes::from_string(format!(
            "nagare-broker-{}",
            broker.config.node_id
        ))));
    let mut buf = BytesMut::new();
    let header_version = ApiKey::Envelope.request_header_version(VERSIONS.1);
    if let Err(e) = header
        .encode(&mut buf, header_version)
        .and_then(|_| envelope.encode(&mut buf, VERSIONS.1))
    {
        tracing::error!(?key, error = %e, "cannot encode Envelope");
        return None;
    }
    let mut resp = match channel.forward_raw(ApiKey::Envelope, &buf.freeze()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(?key, error = %e, "cannot forward to the active controller");
            return None;
        }
    };
    let resp_header_version = ApiKey::Envelope.response_header_version(VERSIONS.1);
    let decoded = ResponseHeader::decode(&mut resp, resp_header_version)
        .and_then(|_| EnvelopeResponse::decode(&mut resp, VERSIONS.1));
    let env = match decoded {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!(?key, error = %e, "malformed Envelope response from the controller");
            return None;
        }
    };
    match (env.error_code, env.response_data) {
        (0, Some(data)) => {
            let mut out = BytesMut::with_capacity(data.len() + 4);
            out.put_i32(i32::try_from(data.len()).ok()?);
            out.extend_from_slice(&data);
            Some(Reply::Now(Response::bytes(out.freeze())))
        }
        (code, _) => {
            tracing::warn!(
                ?key,
                error_code = code,
                "the active controller refused the forwarded request"
            );
            None
        }
    }
}

/// Handles an Envelope on the controller listener.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let version = req.version();
    let corr = req.correlation_id();
    let env: EnvelopeRequest = req.decode()?;
    let answer = |error: ResponseError, data: Option<Bytes>| -> HandlerResult {
        let code = if data.is_some() { 0 } else { error.code() };
        let resp = EnvelopeResponse::default()
            .with_error_code(code)
            .with_response_data(data);
        Ok(Reply::Now(respond(ApiKey::Envelope, version, corr, &resp)))
    };
    // Only brokers forward: Kafka requires CLUSTER_ACTION of the forwarding connection.
    if !broker.authorize(&req.ctx, AclOperation::ClusterAction, &Resource::cluster()) {
        return answer(ResponseError::ClusterAuthorizationFailed, None);
    }
    let Some(principal_bytes) = env.request_principal else {
        tracing::warn!(peer = %req.ctx.connection.peer, "Envelope without a principal");
        return answer(ResponseError::InvalidRequest, None);
    };
    let principal = match deserialize_principal(principal_bytes) {
        // The broker's internal principal never travels: a forwarded request is a client's.
        Ok(p) if p.is_broker_internal() => {
            tracing::warn!(peer = %req.ctx.connection.peer, "Envelope claiming the broker's internal principal");
            return answer(ResponseError::PrincipalDeserializationFailure, None);
        }
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(peer = %req.ctx.connection.peer, error = %e, "Envelope with a bad principal");
            return answer(ResponseError::PrincipalDeserializationFailure, None);
        }
    };
    let Some(client_address) = ip_from_bytes(&env.client_host_address) else {
        tracing::warn!(peer = %req.ctx.connection.peer, "Envelope with a bad client address");
        return answer(ResponseError::InvalidRequest, None);
    };
    let mut inner = env.request_data;
    let request_bytes = inner.len();
    let Ok(prefix) = nagare_protocol::frame::peek_header_prefix(&inner) else {
        return answer(ResponseError::InvalidRequest, None);
    };
    // Only the APIs a broker forwards may arrive in an Envelope.
    let Some(spec) =
        apis::spec_for_code(ListenerKind::Broker, prefix.api_key).filter(|s| s.forwarded)
    else {
        tracing::warn!(
            api_key = prefix.api_key,
            "Envelope carries an API that is not forwarded"
        );
        return answer(ResponseError::InvalidRequest, None);
    };
    if !spec.supports(prefix.api_version) {
        return answer(ResponseError::UnsupportedVersion, None);
    }
    let Ok((_, header)) = nagare_protocol::frame::decode_request_header(&mut inner) else {
        return answer(ResponseError::InvalidRequest, None);
    };
    let inner_req = Request {
        ctx: RequestContext {
            connection: req.ctx.connection.clone(),
            header,
            api: spec,
            received: req.ctx.received,
            request_bytes,
            forwarded: Some(ForwardedFrom {
                principal,
                client_address,
            }),
        },
        body: inner,
    };
    let reply = run_handler(broker, inner_req).await;
    let wrap = move |resp: Response| -> Response {
        let data = response_frame(resp);
        // An answer with file regions cannot be carried (never the case for admin APIs).
        let code = match data {
            Some(_) => 0,
            None => ResponseError::UnknownServerError.code(),
        };
        respond(
            ApiKey::Envelope,
            version,
            corr,
            &EnvelopeResponse::default()
                .with_error_code(code)
                .with_response_data(data),
        )
    };
    match reply {
        Reply::Now(resp) => Ok(Reply::Now(wrap(resp))),
        Reply::Later(f) => Ok(Reply::Later(Box::pin(async move { wrap(f.await) }))),
        Reply::Nothing => answer(ResponseError::InvalidRequest, None),
        // The inner request was malformed: refuse the Envelope (the forwarding broker then
        // answers its client itself) rather than closing the inter-broker connection.
        Reply::Close => answer(ResponseError::InvalidRequest, None),
    }
}

/// A response's bytes without the size prefix, if it is all in memory.
fn response_frame(resp: Response) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(resp.len());
    for c in resp.chunks {
        match c {
            Chunk::Bytes(b) => out.extend_from_slice(&b),
            Chunk::Records(_) => return None,
        }
    }
    if out.len() < 4 {
        return None;
    }
    Some(out.freeze().slice(4..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_round_trips_in_kafkas_format() {
        let p = KafkaPrincipal::user("alice");
        let b = serialize_principal(&p);
        // Version prefix 0, then a flexible struct: compact strings "User" and "alice".
        assert_eq!(&b[..2], &[0, 0]);
        assert_eq!(deserialize_principal(b).unwrap(), p);
        assert!(deserialize_principal(Bytes::from_static(&[0, 9])).is_err());
        assert!(deserialize_principal(Bytes::from_static(&[0])).is_err());
    }

    #[test]
    fn client_addresses_round_trip() {
        for ip in ["127.0.0.1", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_from_bytes(&ip_bytes(ip)), Some(ip));
        }
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }
}
