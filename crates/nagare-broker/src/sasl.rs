//! SASL authentication on `SASL_PLAINTEXT` / `SASL_SSL` listeners (Kafka's
//! `SaslServerAuthenticator`, KIP-43, KIP-152, KIP-368): the per-listener settings
//! (`sasl.enabled.mechanisms`, PLAIN users from `sasl.jaas.config`), the per-connection
//! session state, the gate that lets an unauthenticated connection send only ApiVersions,
//! SaslHandshake and SaslAuthenticate, and the exchange itself, driving the sans-I/O
//! mechanisms of `nagare-sasl`. SCRAM credentials come from the metadata image; OAUTHBEARER
//! tokens are checked against a JWKS file (`sasl.oauthbearer.jwks.endpoint.url`), re-read
//! when it changes.
//!
//! The Kafka-framed flow (SaslHandshake v1 + SaslAuthenticate) is what every current
//! client uses; SaslHandshake v0 is followed by raw size-prefixed tokens (pre-KIP-152
//! clients), which [`raw_token`] serves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;

use nagare_protocol::error::ResponseError;
use nagare_sasl::oauthbearer::{self, Jwks, OAuthBearerServer, ServerStep, ValidatorConfig};
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
    /// OAUTHBEARER token checks, when the mechanism is enabled.
    oauth: Option<Arc<OAuthSettings>>,
}

impl std::fmt::Debug for ListenerSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords never reach a log line.
        f.debug_struct("ListenerSasl")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.keys().collect::<Vec<_>>())
            .field("oauth", &self.oauth)
            .finish()
    }
}

impl ListenerSasl {
    /// The PLAIN user names configured (never their passwords).
    pub fn plain_user_names(&self) -> impl Iterator<Item = &str> {
        self.plain_users.keys().map(|s| s.as_str())
    }

    /// The OAUTHBEARER settings, when the mechanism is enabled.
    pub fn oauth(&self) -> Option<&OAuthSettings> {
        self.oauth.as_deref()
    }
}

/// A listener's OAUTHBEARER settings (KIP-768's broker side): the token checks and where
/// the signing keys come from.
#[derive(Debug)]
pub struct OAuthSettings {
    /// Audience, issuer, clock skew and principal claim.
    pub validator: ValidatorConfig,
    /// Where the JWKS comes from.
    pub source: JwksSource,
    /// `sasl.oauthbearer.jwks.endpoint.refresh.ms`: a file is re-read at least this often
    /// (besides whenever its modification time or size changes); a URL is fetched again
    /// this often by a background thread.
    pub refresh: Duration,
    cache: Mutex<JwksCache>,
    /// Wakes an `https://` source's refresh thread early (a token named an unknown `kid`).
    wake: Arc<(Mutex<bool>, parking_lot::Condvar)>,
    /// When a refresh was last expedited (at most one per [`EXPEDITE_INTERVAL`]).
    last_expedite: Mutex<Option<Instant>>,
}

/// The shortest time between two expedited JWKS fetches, so tokens with made-up `kid`s
/// cannot make the broker hammer the identity provider.
const EXPEDITE_INTERVAL: Duration = Duration::from_secs(10);

/// Where a listener's JWKS comes from (`sasl.oauthbearer.jwks.endpoint.url`).
#[derive(Clone)]
pub enum JwksSource {
    /// `file://<path>`.
    File(PathBuf),
    /// `https://...`, with the TLS settings to fetch it.
    Https {
        /// The endpoint.
        url: crate::oauth_https::HttpsUrl,
        /// Roots from the JAAS option `ssl.truststore.location`, else the Mozilla roots.
        tls: Arc<rustls::ClientConfig>,
    },
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "file://{}", p.display()),
            JwksSource::Https { url, .. } => {
                write!(f, "https://{}:{}{}", url.host, url.port, url.path)
            }
        }
    }
}

impl JwksSource {
    /// Reads or fetches the key set (blocking).
    fn load(&self) -> Result<Jwks, String> {
        match self {
            JwksSource::File(path) => read_jwks(path),
            JwksSource::Https { url, tls } => {
                let text = crate::oauth_https::get(url, tls)?;
                let jwks = Jwks::parse(&text).map_err(|e| format!("JWKS from {self:?}: {e}"))?;
                if jwks.is_empty() {
                    tracing::warn!(source = ?self, "the JWKS holds no RSA or EC signing key: no OAUTHBEARER token can be accepted");
                }
                Ok(jwks)
            }
        }
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        match self {
            JwksSource::File(path) => file_stamp(path),
            JwksSource::Https { .. } => None,
        }
    }
}

#[derive(Debug)]
struct JwksCache {
    jwks: Arc<Jwks>,
    stamp: Option<(SystemTime, u64)>,
    loaded_at: Instant,
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_jwks(path: &std::path::Path) -> Result<Jwks, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?;
    let jwks = Jwks::parse(&text).map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
    if jwks.is_empty() {
        tracing::warn!(path = %path.display(), "the JWKS file holds no RSA or EC signing key: no OAUTHBEARER token can be accepted");
    }
    Ok(jwks)
}

impl OAuthSettings {
    /// Reads (or fetches) the JWKS once: a missing or broken one is a startup error, as in
    /// Kafka, whose validator fails to configure without its keys. For an `https://`
    /// source, a background thread re-fetches it every `refresh` while the settings live.
    pub fn new(
        validator: ValidatorConfig,
        source: JwksSource,
        refresh: Duration,
    ) -> Result<Arc<Self>, String> {
        let stamp = source.stamp();
        let jwks = source.load()?;
        let https = matches!(source, JwksSource::Https { .. });
        let settings = Arc::new(OAuthSettings {
            validator,
            source,
            refresh,
            cache: Mutex::new(JwksCache {
                jwks: Arc::new(jwks),
                stamp,
                loaded_at: Instant::now(),
            }),
            wake: Arc::new((Mutex::new(false), parking_lot::Condvar::new())),
            last_expedite: Mutex::new(None),
        });
        if https {
            let weak = Arc::downgrade(&settings);
            let wake = settings.wake.clone();
            let spawned = std::thread::Builder::new()
                .name("jwks-refresh".into())
                .spawn(move || loop {
                    {
                        let mut woken = wake.0.lock();
                        if !*woken {
                            wake.1.wait_for(&mut woken, refresh);
                        }
                        *woken = false;
                    }
                    let Some(settings) = weak.upgrade() else {
                        return;
                    };
                    settings.reload();
                });
            if let Err(e) = spawned {
                return Err(format!("cannot start the JWKS refresh thread: {e}"));
            }
        }
        Ok(settings)
    }

    /// Asks for an early fetch of an `https://` JWKS because a token named a `kid` it does not
    /// hold (the identity provider may have rotated its keys), as Kafka's
    /// `RefreshingHttpsJwks.maybeExpediteRefresh` does; rate-limited. The token at hand is
    /// still refused; the client's next attempt meets the new keys.
    pub fn expedite_refresh(&self) {
        if !matches!(self.source, JwksSource::Https { .. }) {
            return;
        }
        let mut last = self.last_expedite.lock();
        if last.is_some_and(|t| t.elapsed() < EXPEDITE_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        tracing::info!(source = ?self.source, "a token names an unknown kid: fetching the JWKS early");
        *self.wake.0.lock() = true;
        self.wake.1.notify_one();
    }

    /// Fetches an `https://` JWKS again; a failure keeps the previous keys, with a warning.
    fn reload(&self) {
        match self.source.load() {
            Ok(jwks) => {
                let mut cache = self.cache.lock();
                cache.jwks = Arc::new(jwks);
                cache.loaded_at = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "keeping the previous OAUTHBEARER keys"),
        }
    }

    /// The current key set: re-read when the file changed or the refresh interval passed
    /// (one `stat` per authentication). A file that became unreadable or invalid keeps the
    /// previous keys, with a warning, as Kafka's refreshing JWKS keeps its last good set.
    /// An `https://` source is refreshed by its own thread; this only reads the cache.
    pub fn jwks(&self) -> Arc<Jwks> {
        let JwksSource::File(path) = &self.source else {
            return self.cache.lock().jwks.clone();
        };
        let mut cache = self.cache.lock();
        let stamp = file_stamp(path);
        if stamp != cache.stamp || cache.loaded_at.elapsed() >= self.refresh {
            match read_jwks(path) {
                Ok(jwks) => {
                    if stamp != cache.stamp {
                        tracing::info!(path = %path.display(), keys = jwks.len(), "reloaded the OAUTHBEARER JWKS file");
                    }
                    cache.jwks = Arc::new(jwks);
                }
                Err(e) => tracing::warn!(error = %e, "keeping the previous OAUTHBEARER keys"),
            }
            cache.stamp = stamp;
            cache.loaded_at = Instant::now();
        }
        cache.jwks.clone()
    }
}

/// An OAUTHBEARER setting of `listener`: Kafka's mechanism-prefixed key
/// (`listener.name.<l>.oauthbearer.<key>`), else the listener-prefixed one, else the plain key.
fn oauth_value<'a>(config: &'a BrokerConfig, listener: &str, key: &str) -> Option<&'a str> {
    let lower = listener.to_ascii_lowercase();
    config
        .props
        .get(&format!("listener.name.{lower}.oauthbearer.{key}"))
        .map(|s| s.as_str())
        .or_else(|| listener_value(config, listener, key))
}

/// The TLS client settings for an `https://` JWKS: Kafka reads them from the OAUTHBEARER
/// JAAS options (`ssl.truststore.location`, a PEM file here), else the public roots.
fn jwks_tls(config: &BrokerConfig, listener: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let lower = listener.to_ascii_lowercase();
    let key = format!("listener.name.{lower}.oauthbearer.sasl.jaas.config");
    let entry = match config
        .props
        .get(&key)
        .or_else(|| config.props.get("sasl.jaas.config"))
    {
        Some(text) => Some(jaas::parse(text).map_err(|e| format!("{key}: {e}"))?),
        None => None,
    };
    let truststore = entry
        .filter(|e| e.login_module == jaas::OAUTHBEARER_LOGIN_MODULE)
        .and_then(|e| e.options.get("ssl.truststore.location").cloned());
    let pem = match &truststore {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("{key}: ssl.truststore.location {path:?}: {e}"))?,
        ),
        None => None,
    };
    crate::oauth_https::client_config(pem.as_deref())
        .map_err(|e| format!("{key}: ssl.truststore.location: {e}"))
}

/// Reads a listener's OAUTHBEARER settings. An unset JWKS URL is an error, since Kafka's
/// fallback (the *unsecured* validator, which accepts unsigned tokens) is not something
/// Nagare offers.
fn oauth_settings(config: &BrokerConfig, listener: &str) -> Result<Arc<OAuthSettings>, String> {
    let url_key = "sasl.oauthbearer.jwks.endpoint.url";
    let url = oauth_value(config, listener, url_key).ok_or_else(|| {
        format!("listener {listener} enables OAUTHBEARER but {url_key} is not set (Nagare validates tokens against a JWKS; the unsecured validator is not served)")
    })?;
    let url = url.trim();
    let source = if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(format!("{url_key}: {url:?} names no file"));
        }
        JwksSource::File(PathBuf::from(path))
    } else if url.starts_with("https://") {
        JwksSource::Https {
            url: crate::oauth_https::HttpsUrl::parse(url).map_err(|e| format!("{url_key}: {e}"))?,
            tls: jwks_tls(config, listener)?,
        }
    } else {
        return Err(format!(
            "{url_key}: {url:?}: only file:// and https:// JWKS URLs are supported"
        ));
    };
    let number = |key: &str, default: i64| -> Result<i64, String> {
        match oauth_value(config, listener, key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("{key}: {v:?} is not a non-negative number")),
        }
    };
    let validator = ValidatorConfig {
        expected_audience: oauth_value(config, listener, "sasl.oauthbearer.expected.audience")
            .map(|v| {
                v.split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        expected_issuer: oauth_value(config, listener, "sasl.oauthbearer.expected.issuer")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()),
        clock_skew_seconds: number("sasl.oauthbearer.clock.skew.seconds", 30)?,
        sub_claim_name: oauth_value(config, listener, "sasl.oauthbearer.sub.claim.name")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "sub".into()),
    };
    let refresh_ms = number("sasl.oauthbearer.jwks.endpoint.refresh.ms", 3_600_000)?;
    OAuthSettings::new(
        validator,
        source,
        Duration::from_millis(refresh_ms.max(1) as u64),
    )
    .map_err(|e| format!("listener {listener}: {e}"))
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
            let oauth = if mechanisms.iter().any(|m| m == "OAUTHBEARER") {
                Some(oauth_settings(config, &l.name)?)
            } else {
                None
            };
            listeners.insert(
                l.name.clone(),
                ListenerSasl {
                    mechanisms,
                    plain_users,
                    oauth,
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
    /// An OAUTHBEARER token was refused and the RFC 7628 error challenge sent; the
    /// client's `\x01` acknowledgement is next, then the exchange fails.
    OAuthError {
        server: OAuthBearerServer,
        raw: bool,
    },
}

impl Phase {
    fn raw(&self) -> bool {
        match self {
            Phase::Idle => false,
            Phase::Handshaken { raw, .. }
            | Phase::Scram { raw, .. }
            | Phase::OAuthError { raw, .. } => *raw,
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
    // OAUTHBEARER: the token's `exp` and the time it was checked, in ms since the epoch.
    let mut credential_expires_at_ms: Option<(i64, i64)> = None;
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
        Phase::Handshaken { mechanism, raw } if mechanism == "OAUTHBEARER" => {
            let Some(oauth) = settings
                .listener(&conn.listener_name)
                .and_then(|l| l.oauth())
            else {
                conn.sasl.request_close();
                return AuthOutcome::Failed {
                    error: ResponseError::SaslAuthenticationFailed,
                    message: "OAUTHBEARER is not configured on this listener".into(),
                };
            };
            let mut server = OAuthBearerServer::new();
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let jwks = oauth.jwks();
            match server.client_first(token, &jwks, &oauth.validator, now_ms) {
                Ok(ServerStep::Done(valid)) => {
                    credential_expires_at_ms = Some((valid.expires_at_ms, now_ms));
                    (mechanism, Ok(Some((valid.principal, Vec::new()))))
                }
                Ok(ServerStep::InvalidToken(why)) => {
                    tracing::warn!(peer = %conn.peer, listener = %conn.listener_name,
                        "OAUTHBEARER token refused: {why}");
                    let kid = oauthbearer::parse_client_initial_response(token)
                        .ok()
                        .and_then(|first| oauthbearer::token_kid(&first.token));
                    if kid.is_some_and(|k| !jwks.has_kid(&k)) {
                        oauth.expedite_refresh();
                    }
                    state.phase = Phase::OAuthError { server, raw };
                    return AuthOutcome::Continue(oauthbearer::INVALID_TOKEN_CHALLENGE.to_vec());
                }
                Err(e) => (mechanism, Err(e)),
            }
        }
        Phase::OAuthError { mut server, .. } => (
            "OAUTHBEARER".to_string(),
            Err(server.client_error_ack(token)),
        ),
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
            let lifetime = session_lifetime_ms(settings.max_reauth_ms, credential_expires_at_ms);
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

/// A session's KIP-368 lifetime in ms (0: unlimited): `connections.max.reauth.ms`, capped
/// by the credential's own expiry when it has one (an OAUTHBEARER token's `exp`, given with
/// the time it was checked), as Kafka's `SaslServerAuthenticator` computes it. A token
/// expiring right now (accepted within the clock skew) still gets 1 ms, not "unlimited".
fn session_lifetime_ms(max_reauth_ms: u64, credential: Option<(i64, i64)>) -> u64 {
    match credential {
        None => max_reauth_ms,
        Some((expires_at_ms, now_ms)) => {
            let left = u64::try_from(expires_at_ms.saturating_sub(now_ms))
                .unwrap_or(0)
                .max(1);
            if max_reauth_ms > 0 {
                left.min(max_reauth_ms)
            } else {
                left
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
