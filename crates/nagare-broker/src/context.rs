//! Who is asking: the connection context (listener, security protocol, peer, principal, client
//! software) owned by a connection's task, and the request context every handler receives
//! (Kafka's `RequestContext` / Redpanda's `request_context`). Authorization, quotas, metrics
//! and SASL state hang off these, so a handler never needs to look anywhere else to know who
//! sent a request and how.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::RequestHeader;
use parking_lot::RwLock;

use crate::handlers::ApiSpec;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// A client (broker) listener.
    Broker,
    /// The `CONTROLLER` listener: the quorum RPCs and what brokers send the controller.
    Controller,
}

/// The principal type of the broker's own in-process requests.
pub const INTERNAL_PRINCIPAL_TYPE: &str = "Internal";

/// An authenticated identity, as Kafka's `KafkaPrincipal` (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaPrincipal {
    /// The principal type; Kafka's built-in builder only makes `User`.
    pub principal_type: String,
    /// The name within the type.
    pub name: String,
}

impl KafkaPrincipal {
    /// `User:ANONYMOUS`, the principal of every PLAINTEXT connection (Kafka's
    /// `KafkaPrincipal.ANONYMOUS`).
    pub fn anonymous() -> Self {
        KafkaPrincipal::user("ANONYMOUS")
    }

    /// The principal of the requests a broker sends to itself in-process (the transaction
    /// marker sender's WriteTxnMarkers): they act as the broker, which Kafka never
    /// authorizes against itself (its internal writes call the replica manager directly), so
    /// every authorizer allows them. Its type, `Internal`, is one no authentication produces
    /// (TLS and SASL make `User` principals) and an Envelope may not carry, so no client can
    /// claim it.
    pub fn broker_internal() -> Self {
        KafkaPrincipal {
            principal_type: INTERNAL_PRINCIPAL_TYPE.into(),
            name: "broker".into(),
        }
    }

    /// Whether this is [`KafkaPrincipal::broker_internal`]'s type.
    pub fn is_broker_internal(&self) -> bool {
        self.principal_type == INTERNAL_PRINCIPAL_TYPE
    }

    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Self {
        KafkaPrincipal {
            principal_type: "User".into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// A listener's security protocol (`listener.security.protocol.map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// From Kafka's name (case-insensitive), as `listener.security.protocol.map` spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// Kafka's wire id (`SecurityProtocol.id`), as BrokerRegistration carries it.
    pub fn id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    /// From Kafka's wire id.
    pub fn from_id(id: i16) -> Option<Self> {
        match id {
            0 => Some(SecurityProtocol::Plaintext),
            1 => Some(SecurityProtocol::Ssl),
            2 => Some(SecurityProtocol::SaslPlaintext),
            3 => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before any other request.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// The client's software as it announced itself in ApiVersions v3+ (KIP-511), for logs and
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSoftware {
    /// e.g. `librdkafka`.
    pub name: String,
    /// e.g. `2.3.0`.
    pub version: String,
}

/// What every request of one connection shares. Owned (through an `Arc`) by the connection
/// task; the principal and client software change at most a few times in its life (after
/// SASL authentication, after ApiVersions), so they sit behind cheap locks.
#[derive(Debug)]
pub struct ConnectionContext {
    /// Kafka's connection id: `local-peer-index`, unique within this process.
    pub connection_id: String,
    /// The listener's name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub listener_name: String,
    /// Which role of listener it is.
    pub listener: ListenerKind,
    /// The listener's security protocol.
    pub security_protocol: SecurityProtocol,
    /// The client's address.
    pub peer: SocketAddr,
    principal: RwLock<KafkaPrincipal>,
    client_software: RwLock<Option<ClientSoftware>>,
    /// Until when no further request is read (a client quota's throttle, KIP-219).
    muted_until: parking_lot::Mutex<Option<Instant>>,
    /// SASL state (handshake, exchange, session) of a connection on a SASL listener.
    pub sasl: crate::sasl::SaslSession,
    /// Set by the first Fetch with a replica id: the connection is a follower's (Kafka's
    /// FetchFollower request metrics, as opposed to FetchConsumer).
    follower_fetches: std::sync::atomic::AtomicBool,
    /// Process-unique number of the connection (the last part of `connection_id`).
    pub index: u64,
    /// How the connection ended (`Open` while it is served): the controller watches a
    /// broker's heartbeat connection for a close by the peer (`crate::liveness`).
    end: tokio::sync::watch::Sender<ConnectionEnd>,
    /// The broker (id, epoch) whose heartbeats arrive on this connection, once one did.
    heartbeat_of: parking_lot::Mutex<Option<(i32, i64)>>,
}

/// How a connection ended, as its frame loop saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// Still served.
    Open,
    /// The peer closed it (end-of-stream) or it failed (a reset): for a broker's heartbeat
    /// connection, most likely its process died.
    ClosedByPeer,
    /// This side closed it (idle timeout, a malformed request, a failed login).
    ClosedHere,
}

static CONNECTION_INDEX: AtomicU64 = AtomicU64::new(0);

impl ConnectionContext {
    /// A new connection from `peer` on `local` speaking `security_protocol`, whose principal
    /// is `User:ANONYMOUS` until TLS client authentication or SASL sets it.
    pub fn new(
        listener_name: impl Into<String>,
        listener: ListenerKind,
        security_protocol: SecurityProtocol,
        local: Option<SocketAddr>,
        peer: SocketAddr,
    ) -> Self {
        let index = CONNECTION_INDEX.fetch_add(1, Ordering::Relaxed);
        let local = local.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        ConnectionContext {
            connection_id: format!("{local}-{peer}-{index}"),
            listener_name: listener_name.into(),
            listener,
            security_protocol,
            peer,
            principal: RwLock::new(KafkaPrincipal::anonymous()),
            client_software: RwLock::new(None),
            muted_until: parking_lot::Mutex::new(None),
            sasl: crate::sasl::SaslSession::default(),
            follower_fetches: std::sync::atomic::AtomicBool::new(false),
            index,
            end: tokio::sync::watch::Sender::new(ConnectionEnd::Open),
            heartbeat_of: parking_lot::Mutex::new(None),
        }
    }

    /// Records how the connection ended (called once by the frame loop when it stops).
    pub fn set_end(&self, end: ConnectionEnd) {
        self.end.send_replace(end);
    }

    /// Resolves with how the connection ended, once it has.
    pub async fn ended(&self) -> ConnectionEnd {
        let mut rx = self.end.subscribe();
        let end = match rx.wait_for(|e| *e != ConnectionEnd::Open).await {
            Ok(e) => *e,
            // The sender lives in `self`, so it cannot be gone while we borrow it.
            Err(_) => ConnectionEnd::ClosedHere,
        };
        end
    }

    /// Records that broker `broker_id` with `broker_epoch` heartbeats on this connection;
    /// returns the previous (id, epoch), `None` on the first heartbeat.
    pub fn set_heartbeat_of(&self, broker_id: i32, broker_epoch: i64) -> Option<(i32, i64)> {
        self.heartbeat_of.lock().replace((broker_id, broker_epoch))
    }

    /// The broker (id, epoch) of the latest heartbeat on this connection.
    pub fn heartbeat_of(&self) -> Option<(i32, i64)> {
        *self.heartbeat_of.lock()
    }

    /// Marks the connection as a follower replica's (its Fetch requests carry a replica id).
    pub fn mark_follower_fetches(&self) {
        self.follower_fetches.store(true, Ordering::Relaxed);
    }

    /// Whether Fetch requests on this connection come from a follower replica.
    pub fn follower_fetches(&self) -> bool {
        self.follower_fetches.load(Ordering::Relaxed)
    }

    /// Mutes the connection until `until` (a quota throttle): the response already produced
    /// still goes out, but no further request is read before then, as Kafka mutes a
    /// throttled channel (KIP-219). A later mute extends an earlier one, never shortens it.
    pub fn mute_until(&self, until: Instant) {
        let mut m = self.muted_until.lock();
        if m.is_none_or(|t| t < until) {
            *m = Some(until);
        }
    }

    /// The end of the current mute, if one is still running (clears a finished one).
    pub fn muted_until(&self) -> Option<Instant> {
        let mut m = self.muted_until.lock();
        match *m {
            Some(t) if t > Instant::now() => Some(t),
            _ => {
                *m = None;
                None
            }
        }
    }

    /// The connection's authenticated principal.
    pub fn principal(&self) -> KafkaPrincipal {
        self.principal.read().clone()
    }

    /// Sets the principal once authentication succeeded (SASL).
    pub fn set_principal(&self, principal: KafkaPrincipal) {
        *self.principal.write() = principal;
    }

    /// What the client said it is (ApiVersions v3+), if it did.
    pub fn client_software(&self) -> Option<ClientSoftware> {
        self.client_software.read().clone()
    }

    /// Records the client's software name and version.
    pub fn set_client_software(&self, software: ClientSoftware) {
        *self.client_software.write() = Some(software);
    }
}

/// One request as its handler sees it: the connection's context, the decoded header, when it
/// was received, and — for a request forwarded by a broker inside an Envelope (KIP-590) — the
/// original client's principal and address, which then take the connection's place.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The connection it arrived on (for an enveloped request: the forwarding broker's).
    pub connection: Arc<ConnectionContext>,
    /// The request header.
    pub header: RequestHeader,
    /// The API's declaration.
    pub api: &'static ApiSpec,
    /// When the last byte of the request was read.
    pub received: Instant,
    /// Size of the request frame (header and body, without the size prefix).
    pub request_bytes: usize,
    /// Set for a request unwrapped from an Envelope: the principal and address of the client
    /// that sent it to the forwarding broker.
    pub forwarded: Option<ForwardedFrom>,
}

/// The original sender of a request a broker forwarded in an Envelope.
#[derive(Debug, Clone)]
pub struct ForwardedFrom {
    /// The client's principal, as the forwarding broker authenticated it.
    pub principal: KafkaPrincipal,
    /// The client's IP address.
    pub client_address: std::net::IpAddr,
}

impl RequestContext {
    /// The principal the request acts as: the original client's for a forwarded request,
    /// otherwise the connection's.
    pub fn principal(&self) -> KafkaPrincipal {
        match &self.forwarded {
            Some(f) => f.principal.clone(),
            None => self.connection.principal(),
        }
    }

    /// The client's IP address (the original client's for a forwarded request), which ACL
    /// host rules match against.
    pub fn client_address(&self) -> std::net::IpAddr {
        match &self.forwarded {
            Some(f) => f.client_address,
            None => self.connection.peer.ip(),
        }
    }

    /// The client id from the header (empty when absent).
    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }
}
