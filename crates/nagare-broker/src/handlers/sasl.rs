//! SaslHandshake (key 17) and SaslAuthenticate (key 36): the Kafka-framed SASL exchange
//! (KIP-152), state kept per connection in [`crate::sasl`]. On a listener without SASL both
//! answer ILLEGAL_SASL_STATE, as Kafka's `KafkaApis` does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};

use super::{respond, sb, HandlerResult, Request};
use crate::network::Reply;
use crate::sasl::{self, AuthOutcome, SaslSettings};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported SaslHandshake versions (v0: raw tokens follow; v1: SaslAuthenticate follows).
pub const HANDSHAKE_VERSIONS: (i16, i16) = (0, 1);
/// Supported SaslAuthenticate versions (v1+: session lifetime, KIP-368).
pub const AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);

/// Handles SaslHandshake.
pub fn handle_handshake(broker: &Arc<Broker>, req: Request) -> HandlerResult {
    handle_handshake_with(&broker.sasl, req)
}

/// Handles SaslHandshake with `settings` (also before the node's state exists: a
/// controller listener authenticates its quorum peers from startup on).
pub fn handle_handshake_with(settings: &SaslSettings, mut req: Request) -> HandlerResult {
    let r: SaslHandshakeRequest = req.decode()?;
    let version = req.version();
    let outcome = sasl::handshake(settings, &req.ctx.connection, &r.mechanism, version == 0);
    let resp = SaslHandshakeResponse::default()
        .with_error_code(nagare_protocol::error::code(outcome.error))
        .with_mechanisms(outcome.mechanisms.into_iter().map(sb).collect());
    Ok(Reply::Now(respond(
        ApiKey::SaslHandshake,
        version,
        req.correlation_id(),
        &resp,
    )))
}

/// Handles SaslAuthenticate. A failure is answered SASL_AUTHENTICATION_FAILED after
/// `connection.failed.authentication.delay.ms`, and the connection then closes.
pub fn handle_authenticate(broker: &Arc<Broker>, req: Request) -> HandlerResult {
    handle_authenticate_with(&broker.sasl, &broker.image(), req)
}

/// Handles SaslAuthenticate with `settings` and (for SCRAM) the credentials of `image`
/// (also before the node's state exists, see [`handle_handshake_with`]).
pub fn handle_authenticate_with(
    settings: &SaslSettings,
    image: &nagare_metadata::MetadataImage,
    mut req: Request,
) -> HandlerResult {
    let r: SaslAuthenticateRequest = req.decode()?;
    let version = req.version();
    let correlation_id = req.correlation_id();
    let conn = &req.ctx.connection;
    if !conn.security_protocol.uses_sasl() {
        let resp = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(sb(
                "SaslAuthenticate request received on a listener without SASL",
            )));
        return Ok(Reply::Now(respond(
            ApiKey::SaslAuthenticate,
            version,
            correlation_id,
            &resp,
        )));
    }
    let resp = SaslAuthenticateResponse::default();
    match sasl::authenticate(settings, image, conn, &r.auth_bytes) {
        AuthOutcome::Continue(token) => Ok(Reply::Now(respond(
            ApiKey::SaslAuthenticate,
            version,
            correlation_id,
            &resp.with_auth_bytes(Bytes::from(token)),
        ))),
        AuthOutcome::Done {
            token,
            session_lifetime_ms,
        } => {
            let resp = resp.with_auth_bytes(Bytes::from(token));
            // v0 has no lifetime field; such a client is still cut off at expiry.
            let resp = if version >= 1 {
                resp.with_session_lifetime_ms(session_lifetime_ms)
            } else {
                resp
            };
            Ok(Reply::Now(respond(
                ApiKey::SaslAuthenticate,
                version,
                correlation_id,
                &resp,
            )))
        }
        AuthOutcome::Failed { error, message } => {
            let resp = resp
                .with_error_code(error.code())
                .with_error_message(Some(sb(message)));
            let answer = respond(ApiKey::SaslAuthenticate, version, correlation_id, &resp);
            let delay = Duration::from_millis(settings.failed_authentication_delay_ms);
            Ok(Reply::Later(Box::pin(async move {
                tokio::time::sleep(delay).await;
                answer
            })))
        }
    }
}
