//! SASL authentication on `SASL_PLAINTEXT` / `SASL_SSL` listeners (Kafka's
//! `SaslServerAuthenticator`, KIP-43, KIP-152, KIP-368): the per-listener settings
//! (`sasl.enabled.mechanisms`, PLAIN users from `sasl.jaas.config`), the per-connection
//! session state, the gate that lets an unauthenticated connection send only ApiVersions,
//! SaslHandshake and SaslAuthenticate, and the exchange itself, driving the sans-I/O
//! mechanisms of `nagare-sasl`. SCRAM credentials come from the metadata image.
//!
//! The Kafka-framed flow (SaslHandshake v1 + SaslAuthenticate) is what every current
//! client uses; SaslHandshake v0 is followed by raw size-prefixed tokens (pre-KIP-152
//! clients), which [`raw_token`] serves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;

use nagare_protocol::error::ResponseError;
use nagare_sasl::scram::{ScramCredential, ScramMechanism, ScramServer};
use nagare_sasl::{jaas, plain, SaslError, SUPPORTED_MECHANISMS};

use crate::config::BrokerConfig;
use crate::context::{ConnectionContext, KafkaPrincipal};
use crate::network::{Reply, Response};

/// SASL settings of one listener.
#[derive(Clone, Default)]
pub struct ListenerSasl {
    /// Enabled mechanisms, in the configured order (what a refused handshake lists).
    pub mechanisms: Vec<String>,
    /// PLAIN users and passwords from the JAAS config (`user_<name>="<password>"`).
    plain_users: BTreeMap<String, String>,
}

impl std::fmt::Debug for ListenerSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords never reach a log line.
        f.debug_struct("ListenerSasl")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ListenerSasl {
    /// The PLAIN user names configured (never their passwords).
    pub fn plain_user_names(&self) -> impl Iterator<Item = &str> {
        self.plain_users.keys().map(|s| s.as_str())
    }
}

/// The node's SASL settings: one entry per SASL listener, plus the session settings.
#[derive(Debug, Clone, Default)]
pub struct SaslSettings {
    listeners: BTreeMap<String, ListenerSasl>,
    /// `connections.max.reauth.ms` (KIP-368): 0 means sessions never expire.
    pub max_reauth_ms: u64,
    /// `connection.failed.authentication.delay.ms`: how long a failed authentication's
    /// answer (and the close that follows) is held back, to slow down password guessing.
    pub failed_authentication_delay_ms: u64,
}

/// The value of a listener-prefixed key (`listener.name.<listener, lower case>.<key>`),
/// else of the plain key, as Kafka's `ListenerName.configPrefix` lookups do.
fn listener_value<'a>(config: &'a BrokerConfig, listener: &str, key: &str) -> Option<&'a str> {
    let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
    config
        .props
        .get(&prefixed)
        .or_else(|| config.props.get(key))
        .map(|s| s.as_str())
}

impl SaslSettings {
    /// Reads the SASL settings of every SASL listener of `config`. Unsupported mechanisms
    /// (Kafka's default is GSSAPI, which Nagare does not serve), PLAIN without a JAAS
    /// config and unparsable JAAS configs are errors naming the listener and key.
    pub fn from_config(config: &BrokerConfig) -> Result<Self, String> {
        let mut listeners = BTreeMap::new();
        for l in &config.listeners {
            if !config.security_protocol(&l.name).uses_sasl() {
                continue;
            }
            let lower = l.name.to_ascii_lowercase();
            let mechanisms: Vec<String> =
                listener_value(config, &l.name, "sasl.enabled.mechanisms")
                    .unwrap_or("GSSAPI")
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect();
            if mechanisms.is_empty() {
                return Err(format!(
                    "listener {}: sasl.enabled.mechanisms is empty",
                    l.name
                ));
            }
            let unsupported: Vec<&str> = mechanisms
                .iter()
                .map(|m| m.as_str())
                .filter(|m| !SUPPORTED_MECHANISMS.contains(m))
                .collect();
            if !unsupported.is_empty() {
                return Err(format!(
                    "listener {}: SASL mechanism(s) {} not supported (Nagare serves {}); set sasl.enabled.mechanisms or listener.name.{lower}.sasl.enabled.mechanisms",
                    l.name,
                    unsupported.join(", "),
                    SUPPORTED_MECHANISMS.join(", ")
                ));
            }
            let mut plain_users = BTreeMap::new();
            if mechanisms.iter().any(|m| m == "PLAIN") {
                let key = format!("listener.name.{lower}.plain.sasl.jaas.config");
                let text = config
                    .props
                    .get(&key)
                    .or_else(|| config.props.get("sasl.jaas.config"))
                    .ok_or_else(|| {
                        format!(
                            "listener {} enables PLAIN but neither {key} nor sasl.jaas.config is set",
                            l.name
                        )
                    })?;
                let entry = jaas::parse(text).map_err(|e| format!("{key}: {e}"))?;
                if entry.login_module != jaas::PLAIN_LOGIN_MODULE {
                    return Err(format!(
                        "{key}: PLAIN needs {}, not {}",
                        jaas::PLAIN_LOGIN_MODULE,
                        entry.login_module
                    ));
                }
                plain_users = entry.plain_users();
                if plain_users.is_empty() {
                    tracing::warn!(listener = %l.name, "PLAIN is enabled but the JAAS config defines no user_<name> entries: no PLAIN login can succeed");
                }
            }
            listeners.insert(
                l.name.clone(),
                ListenerSasl {
                    mechanisms,
                    plain_users,
                },
            );
        }
        let number = |key: &str, default: u64| -> Result<u64, String> {
            match config.props.get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key}: {v:?} is not a non-negative number")),
            }
        };
        Ok(SaslSettings {
            listeners,
            max_reauth_ms: number("connections.max.reauth.ms", 0)?,
            failed_authentication_delay_ms: number(
                "connection.failed.authentication.delay.ms",
                100,
            )?,
        })
    }

    /// The settings of SASL listener `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerSasl> {
        self.listeners.get(name)
    }
}

/// `sasl.mechanism.inter.broker.protocol`: the mechanism of this node's connections to
/// other brokers' inter-broker listener.
pub const INTER_BROKER_MECHANISM_KEY: &str = "sasl.mechanism.inter.broker.protocol";
/// `sasl.mechanism.controller.protocol`: the mechanism of this node's connections to the
/// controllers' listener.
pub const CONTROLLER_MECHANISM_KEY: &str = "sasl.mechanism.controller.protocol";

/// The SASL login this node uses on its own connections to `listener` (replica fetchers,
/// marker sender and KIP-890 verification towards the inter-broker listener; controller
/// channel and quorum peers towards the controller listener), as Kafka's inter-broker
/// client does: `None` unless the listener is SASL_PLAINTEXT or SASL_SSL; else the
/// mechanism from `mechanism_key` (Kafka's default GSSAPI is not served, so it must be set)
/// and `username` / `password` from that listener's JAAS config for the mechanism
/// (`listener.name.<l>.<mechanism lower>.sasl.jaas.config`, else `sasl.jaas.config`).
/// When this node serves the listener itself, the mechanism must be enabled on it (Kafka's
/// KafkaConfig check). Errors name the key to fix.
pub fn inter_node_credentials(
    config: &BrokerConfig,
    listener: &str,
    mechanism_key: &str,
) -> Result<Option<nagare_client::SaslCredentials>, String> {
    if !config.security_protocol(listener).uses_sasl() {
        return Ok(None);
    }
    let mechanism = config
        .props
        .get(mechanism_key)
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "GSSAPI".to_string());
    if !SUPPORTED_MECHANISMS.contains(&mechanism.as_str()) {
        return Err(format!(
            "listener {listener} is {} and this node connects to it: set {mechanism_key} to one of {} (it is {mechanism})",
            config.security_protocol(listener).name(),
            SUPPORTED_MECHANISMS.join(", ")
        ));
    }
    if config.listeners.iter().any(|l| l.name == listener) {
        let enabled =
            listener_value(config, listener, "sasl.enabled.mechanisms").unwrap_or("GSSAPI");
        if !enabled.split(',').any(|m| m.trim() == mechanism) {
            return Err(format!(
                "{mechanism_key}={mechanism} is not in the sasl.enabled.mechanisms of listener {listener} ({enabled})"
            ));
        }
    }
    let key = format!(
        "listener.name.{}.{}.sasl.jaas.config",
        listener.to_ascii_lowercase(),
        mechanism.to_ascii_lowercase()
    );
    let text = config
        .props
        .get(&key)
        .or_else(|| config.props.get("sasl.jaas.config"))
        .ok_or_else(|| {
            format!("{mechanism_key}={mechanism}: set {key} with the username and password this node logs in with")
        })?;
    let entry = jaas::parse(text).map_err(|e| format!("{key}: {e}"))?;
    let option = |name: &str| {
        entry
            .options
            .get(name)
            .cloned()
            .ok_or_else(|| format!("{key}: no {name}=\"...\" option for this node's own login"))
    };
    Ok(Some(nagare_client::SaslCredentials {
        mechanism,
        username: option("username")?,
        password: option("password")?,
    }))
}

/// Where one connection's SASL exchange stands.
#[derive(Debug, Default)]
enum Phase {
    /// No exchange in progress: before the first handshake, or between sessions.
    #[default]
    Idle,
    /// A handshake chose `mechanism`; the first token is next.
    Handshaken { mechanism: String, raw: bool },
    /// A SCRAM exchange sent server-first; client-final is next.
    Scram { server: ScramServer, raw: bool },
}

impl Phase {
    fn raw(&self) -> bool {
        match self {
            Phase::Idle => false,
            Phase::Handshaken { raw, .. } | Phase::Scram { raw, .. } => *raw,
        }
    }
}

/// An authenticated session.
#[derive(Debug, Clone)]
struct Session {
    mechanism: String,
    principal: KafkaPrincipal,
    /// When it ends without re-authentication (KIP-368).
    expires_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    phase: Phase,
    session: Option<Session>,
}

/// One connection's SASL state, owned by its [`ConnectionContext`].
#[derive(Debug, Default)]
pub struct SaslSession {
    state: Mutex<State>,
    close: AtomicBool,
}

impl SaslSession {
    /// Asks the connection to close once the reply to the current request is written
    /// (after a failed authentication or a refused handshake, as Kafka closes them).
    pub fn request_close(&self) {
        self.close.store(true, Ordering::Release);
    }

    /// Whether the connection is to close after the current reply.
    pub fn close_requested(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }

    /// Whether the next frame is a raw SASL token (after a v0 SaslHandshake), not a Kafka
    /// request.
    pub fn expects_raw_token(&self) -> bool {
        self.state.lock().phase.raw()
    }

    /// Whether the connection has authenticated (its session may have expired since).
    pub fn is_authenticated(&self) -> bool {
        self.state.lock().session.is_some()
    }
}

/// Whether a request with `key` may run on `conn` now. On a SASL listener, until the
/// client has authenticated only ApiVersions, SaslHandshake and SaslAuthenticate may be
/// sent; afterwards, a session past its `connections.max.reauth.ms` lifetime ends on the
/// next other request (KIP-368). A refused request closes the connection, with this log
/// line, as Kafka does.
pub fn admit(conn: &ConnectionContext, key: ApiKey) -> bool {
    if !conn.security_protocol.uses_sasl()
        || matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    {
        return true;
    }
    let state = conn.sasl.state.lock();
    if key == ApiKey::ApiVersions {
        // Kafka's authenticator takes ApiVersions before the handshake, not in the middle
        // of an exchange; once authenticated it is a request like any other.
        if !matches!(state.phase, Phase::Idle) {
            tracing::warn!(peer = %conn.peer, listener = %conn.listener_name,
                "closing connection: ApiVersions during a SASL exchange");
            return false;
        }
        if state.session.is_none() {
            return true;
        }
    }
    match &state.session {
        None => {
            tracing::warn!(peer = %conn.peer, listener = %conn.listener_name, ?key,
                "closing connection: unexpected request during SASL authentication");
            false
        }
        Some(s) if s.expires_at.is_some_and(|t| Instant::now() >= t) => {
            tracing::info!(peer = %conn.peer, principal = %s.principal,
                "closing connection: SASL session expired without re-authentication (connections.max.reauth.ms)");
            false
        }
        Some(_) => true,
    }
}

/// What a SaslHandshake gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeOutcome {
    /// The error, if refused.
    pub error: Option<ResponseError>,
    /// The listener's enabled mechanisms.
    pub mechanisms: Vec<String>,
}

/// Handles a SaslHandshake for `mechanism` (`raw`: version 0, tokens follow unframed).
/// A second handshake on an authenticated connection starts re-authentication (KIP-368),
/// which must use the same mechanism. A refusal closes the connection after the answer.
pub fn handshake(
    settings: &SaslSettings,
    conn: &ConnectionContext,
    mechanism: &str,
    raw: bool,
) -> HandshakeOutcome {
    let enabled = settings
        .listener(&conn.listener_name)
        .map(|l| l.mechanisms.clone())
        .unwrap_or_default();
    if !conn.security_protocol.uses_sasl() {
        return HandshakeOutcome {
            error: Some(ResponseError::IllegalSaslState),
            mechanisms: enabled,
        };
    }
    let mut state = conn.sasl.state.lock();
    let refuse = |error, why: &str| {
        tracing::warn!(peer = %conn.peer, listener = %conn.listener_name, mechanism, "closing connection: {why}");
        conn.sasl.request_close();
        HandshakeOutcome {
            error: Some(error),
            mechanisms: enabled.clone(),
        }
    };
    if !matches!(state.phase, Phase::Idle) {
        return refuse(
            ResponseError::IllegalSaslState,
            "SaslHandshake during a SASL exchange",
        );
    }
    if !enabled.iter().any(|m| m == mechanism) {
        return refuse(
            ResponseError::UnsupportedSaslMechanism,
            "SASL mechanism not enabled on this listener",
        );
    }
    if let Some(s) = &state.session {
        if s.mechanism != mechanism {
            return refuse(
                ResponseError::UnsupportedSaslMechanism,
                "re-authentication must use the session's SASL mechanism",
            );
        }
    }
    state.phase = Phase::Handshaken {
        mechanism: mechanism.to_string(),
        raw,
    };
    HandshakeOutcome {
        error: None,
        mechanisms: enabled,
    }
}

/// What one SaslAuthenticate (or raw token) produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The exchange continues: send this challenge.
    Continue(Vec<u8>),
    /// Authenticated: send this final token; the session lasts `session_lifetime_ms` (0:
    /// no limit).
    Done {
        /// The mechanism's last message (SCRAM's server-final; empty for PLAIN).
        token: Vec<u8>,
        /// KIP-368 session lifetime.
        session_lifetime_ms: i64,
    },
    /// Refused; the connection closes after the (delayed) answer.
    Failed {
        /// SASL_AUTHENTICATION_FAILED, or ILLEGAL_SASL_STATE out of order.
        error: ResponseError,
        /// For the client.
        message: String,
    },
}

/// Feeds one client token into the connection's exchange, with the listener settings and
/// (for SCRAM) the credentials of `image`.
pub fn authenticate(
    settings: &SaslSettings,
    image: &nagare_metadata::MetadataImage,
    conn: &ConnectionContext,
    token: &[u8],
) -> AuthOutcome {
    let mut state = conn.sasl.state.lock();
    let phase = std::mem::take(&mut state.phase);
    let (mechanism, step) = match phase {
        Phase::Idle => {
            tracing::warn!(peer = %conn.peer, "closing connection: SaslAuthenticate before SaslHandshake");
            conn.sasl.request_close();
            return AuthOutcome::Failed {
                error: ResponseError::IllegalSaslState,
                message: "SaslAuthenticate received before SaslHandshake".into(),
            };
        }
        Phase::Handshaken { mechanism, .. } if mechanism == "PLAIN" => {
            let users = settings.listener(&conn.listener_name);
            let result = plain::authenticate(token, |u| {
                users.and_then(|l| l.plain_users.get(u)).map(|p| p.as_str())
            });
            (mechanism, result.map(|user| Some((user, Vec::new()))))
        }
        Phase::Handshaken { mechanism, raw } => match ScramMechanism::from_name(&mechanism) {
            None => (
                mechanism,
                Err(SaslError::AuthenticationFailed(
                    "Unsupported SASL mechanism".into(),
                )),
            ),
            Some(m) => {
                let mut server = ScramServer::new(m);
                let nonce = nagare_sasl::scram::printable_nonce(&rand::random::<[u8; 32]>());
                let result = server.client_first(token, &nonce, |user| {
                    image
                        .scram
                        .credential(user, m.type_id())
                        .map(|c| ScramCredential {
                            mechanism: m,
                            salt: c.salt.clone(),
                            stored_key: c.stored_key.clone(),
                            server_key: c.server_key.clone(),
                            iterations: u32::try_from(c.iterations).unwrap_or(0),
                        })
                });
                match result {
                    Ok(first) => {
                        state.phase = Phase::Scram { server, raw };
                        return AuthOutcome::Continue(first);
                    }
                    Err(e) => (mechanism, Err(e)),
                }
            }
        },
        Phase::Scram { mut server, .. } => {
            let mechanism = server.mechanism().name().to_string();
            let result = server
                .client_final(token)
                .map(|fin| server.username().map(|u| (u.to_string(), fin)));
            (mechanism, result)
        }
    };
    let failed = |message: String| {
        tracing::warn!(peer = %conn.peer, listener = %conn.listener_name, mechanism = %mechanism,
            "Failed authentication with {} ({message})", conn.peer.ip());
        conn.sasl.request_close();
        AuthOutcome::Failed {
            error: ResponseError::SaslAuthenticationFailed,
            message,
        }
    };
    match step {
        Err(SaslError::AuthenticationFailed(m)) => failed(m),
        Err(SaslError::Malformed(m)) => failed(format!("Authentication failed: {m}")),
        Ok(None) => failed("Authentication failed: exchange incomplete".into()),
        Ok(Some((user, token))) => {
            let principal = KafkaPrincipal::user(user);
            if let Some(previous) = &state.session {
                // KIP-368: re-authentication may not switch identities.
                if previous.principal != principal {
                    return failed(format!(
                        "Cannot change principals during re-authentication from {}: {}",
                        previous.principal, principal
                    ));
                }
            }
            let lifetime = settings.max_reauth_ms;
            state.session = Some(Session {
                mechanism: mechanism.clone(),
                principal: principal.clone(),
                expires_at: (lifetime > 0)
                    .then(|| Instant::now() + Duration::from_millis(lifetime)),
            });
            conn.set_principal(principal.clone());
            tracing::debug!(peer = %conn.peer, %principal, mechanism = %mechanism, "SASL authentication succeeded");
            AuthOutcome::Done {
                token,
                session_lifetime_ms: i64::try_from(lifetime).unwrap_or(i64::MAX),
            }
        }
    }
}

/// Serves a raw SASL token (after a v0 SaslHandshake): the answer is a size-prefixed token
/// too. A failure closes the connection after `connection.failed.authentication.delay.ms`,
/// with no answer, as Kafka does for unframed exchanges.
pub async fn raw_token(
    settings: &SaslSettings,
    image: &nagare_metadata::MetadataImage,
    conn: &ConnectionContext,
    frame: Bytes,
) -> Reply {
    let token = match authenticate(settings, image, conn, &frame) {
        AuthOutcome::Continue(t) => t,
        AuthOutcome::Done { token, .. } => token,
        AuthOutcome::Failed { .. } => {
            tokio::time::sleep(Duration::from_millis(
                settings.failed_authentication_delay_ms,
            ))
            .await;
            return Reply::Close;
        }
    };
    let mut buf = BytesMut::with_capacity(4 + token.len());
    buf.put_i32(token.len() as i32);
    buf.put_slice(&token);
    Reply::Now(Response::bytes(buf.freeze()))
}
