//! TLS for SSL and SASL_SSL listeners, with rustls (the `ring` provider: no OpenSSL, no
//! cmake). Kafka's `ssl.*` keys are read per listener — `listener.name.<listener in lower
//! case>.ssl.*` beats `ssl.*`, as in Kafka — into [`TlsSettings`] (parsing only, no I/O), which
//! then load the PEM key store and trust store into a rustls `ServerConfig` (or, for the
//! connections a node opens, a `ClientConfig`). [`ServerTls`] holds a listener's current
//! server configuration and swaps it when the key or trust store files change, so new
//! connections use renewed certificates without a restart (Kafka does this through dynamic
//! `AlterConfigs` of the same keys; Nagare watches the files).

pub mod client;
pub mod principal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::crypto::ring::cipher_suite as cs;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};

pub use client::ClientTls;
pub use principal::PrincipalMapper;

/// A TLS configuration error; every message names the Kafka key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TlsConfigError {
    /// The key (with its listener prefix when that is where it came from).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> TlsConfigError {
    TlsConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Where the certificate chain and private key come from (`ssl.keystore.*`, PEM only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStore {
    /// `ssl.keystore.location`: one PEM file with the private key and the chain.
    File(PathBuf),
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key`, PEM text in the config.
    Inline {
        /// The certificate chain, leaf first.
        chain: String,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: String,
    },
}

/// Where the trusted CA certificates come from (`ssl.truststore.*`, PEM only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustStore {
    /// `ssl.truststore.location`: a PEM file of certificates.
    File(PathBuf),
    /// `ssl.truststore.certificates`: PEM text in the config.
    Inline(String),
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients must present a certificate the trust store vouches for.
    Required,
    /// A certificate is asked for; clients without one connect as `User:ANONYMOUS`, a
    /// certificate that is presented must be trusted.
    Requested,
    /// No certificate is asked for (Kafka's default).
    None,
}

/// A listener's (or a node's client-side) TLS settings, parsed from the properties.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The key store, if any (a server needs one).
    pub keystore: Option<KeyStore>,
    /// The key whose value named the key store (for error messages).
    keystore_key: String,
    /// The trust store, if any (needed to verify peers).
    pub truststore: Option<TrustStore>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`.
    pub protocols: Vec<&'static SupportedProtocolVersion>,
    /// `ssl.cipher.suites`; empty means rustls' (secure) defaults.
    pub cipher_suites: Vec<SupportedCipherSuite>,
    /// `ssl.endpoint.identification.algorithm`: `https` (Kafka's default) checks the
    /// server's certificate against the host name; empty turns that off.
    pub endpoint_identification: bool,
    /// `ssl.principal.mapping.rules`.
    pub principal_mapper: PrincipalMapper,
}

/// Every `ssl.*` key Nagare reads (the config definitions list them too).
pub const SSL_KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.protocol",
    "ssl.cipher.suites",
    "ssl.endpoint.identification.algorithm",
    "ssl.principal.mapping.rules",
];

/// Kafka/IANA cipher suite names and the rustls (ring) suites they name. Java uses the
/// IANA names, so Kafka's `ssl.cipher.suites` values read the same.
const CIPHER_SUITES: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Looks a key up for a listener: `listener.name.<listener lower-case>.<key>` first, then
/// `<key>`; returns the key actually used and its value.
fn lookup<'a>(
    props: &'a BTreeMap<String, String>,
    listener: Option<&str>,
    key: &str,
) -> Option<(String, &'a str)> {
    if let Some(l) = listener {
        let prefixed = format!("listener.name.{}.{key}", l.to_ascii_lowercase());
        if let Some(v) = props.get(&prefixed) {
            return Some((prefixed, v.as_str()));
        }
    }
    props.get(key).map(|v| (key.to_string(), v.as_str()))
}

impl TlsSettings {
    /// The settings of `listener` (or, with `None`, the node's unprefixed ones) from
    /// `server.properties`; errors name the key.
    pub fn from_props(
        props: &BTreeMap<String, String>,
        listener: Option<&str>,
    ) -> Result<Self, TlsConfigError> {
        let get = |key: &str| {
            lookup(props, listener, key)
                .map(|(k, v)| (k, v.trim().to_string()))
                .filter(|(_, v)| !v.is_empty())
        };
        // Kafka's default store type is JKS; Nagare reads PEM only, so a store whose type
        // is not given is read as PEM and a non-PEM file fails with a message saying so.
        for store in ["ssl.keystore.type", "ssl.truststore.type"] {
            if let Some((k, t)) = get(store) {
                if !t.eq_ignore_ascii_case("PEM") {
                    return Err(err(
                        &k,
                        format!("{t} stores are not supported; Nagare reads PEM only (set {store}=PEM and convert the store, e.g. with openssl pkcs12 or keytool -exportcert -rfc)"),
                    ));
                }
            }
        }
        let (keystore, keystore_key) = match (
            get("ssl.keystore.location"),
            get("ssl.keystore.certificate.chain"),
            get("ssl.keystore.key"),
        ) {
            (Some((k, _)), Some(_), _) | (Some((k, _)), _, Some(_)) => {
                return Err(err(
                    &k,
                    "give either ssl.keystore.location or ssl.keystore.certificate.chain with ssl.keystore.key, not both",
                ))
            }
            (Some((k, path)), None, None) => (Some(KeyStore::File(PathBuf::from(path))), k),
            (None, Some((k, chain)), Some((_, key))) => (Some(KeyStore::Inline { chain, key }), k),
            (None, Some((k, _)), None) => return Err(err(&k, "ssl.keystore.key is missing")),
            (None, None, Some((k, _))) => {
                return Err(err(&k, "ssl.keystore.certificate.chain is missing"))
            }
            (None, None, None) => (None, "ssl.keystore.location".to_string()),
        };
        let truststore =
            match (
                get("ssl.truststore.location"),
                get("ssl.truststore.certificates"),
            ) {
                (Some((k, _)), Some(_)) => return Err(err(
                    &k,
                    "give either ssl.truststore.location or ssl.truststore.certificates, not both",
                )),
                (Some((_, path)), None) => Some(TrustStore::File(PathBuf::from(path))),
                (None, Some((_, pem))) => Some(TrustStore::Inline(pem)),
                (None, None) => None,
            };
        let client_auth = match get("ssl.client.auth") {
            None => ClientAuth::None,
            Some((k, v)) => match v.to_ascii_lowercase().as_str() {
                "required" => ClientAuth::Required,
                "requested" => ClientAuth::Requested,
                "none" => ClientAuth::None,
                _ => {
                    return Err(err(
                        &k,
                        format!("{v}: expected required, requested or none"),
                    ))
                }
            },
        };
        let protocols = match get("ssl.enabled.protocols") {
            None => vec![&rustls::version::TLS12, &rustls::version::TLS13],
            Some((k, v)) => {
                let mut out: Vec<&'static SupportedProtocolVersion> = Vec::new();
                for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match p {
                        "TLSv1.2" => out.push(&rustls::version::TLS12),
                        "TLSv1.3" => out.push(&rustls::version::TLS13),
                        // Kafka itself disables these by default (KIP-553).
                        "TLSv1" | "TLSv1.1" | "SSLv3" => {
                            tracing::warn!(key = %k, protocol = p, "TLS protocol not supported (insecure); ignored")
                        }
                        _ => return Err(err(&k, format!("unknown TLS protocol {p}"))),
                    }
                }
                if out.is_empty() {
                    return Err(err(&k, "no supported protocol (TLSv1.2, TLSv1.3) enabled"));
                }
                out
            }
        };
        let cipher_suites = match get("ssl.cipher.suites") {
            None => Vec::new(),
            Some((k, v)) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|name| {
                    CIPHER_SUITES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, s)| *s)
                        .ok_or_else(|| {
                            err(
                                &k,
                                format!(
                                    "cipher suite {name} is unknown or not supported (supported: {})",
                                    CIPHER_SUITES
                                        .iter()
                                        .map(|(n, _)| *n)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        // Unset means Kafka's default, `https`; an empty value (filtered out by `get`, so
        // looked up directly) turns host name checking off.
        let endpoint_identification =
            match lookup(props, listener, "ssl.endpoint.identification.algorithm") {
                None => true,
                Some((k, v)) => match v.trim().to_ascii_lowercase().as_str() {
                    "" => false,
                    "https" => true,
                    other => return Err(err(&k, format!("{other}: expected https or empty"))),
                },
            };
        let principal_mapper = match get("ssl.principal.mapping.rules") {
            None => PrincipalMapper::default(),
            Some((k, v)) => PrincipalMapper::parse(&v).map_err(|e| err(&k, e.to_string()))?,
        };
        let settings = TlsSettings {
            keystore,
            keystore_key,
            truststore,
            client_auth,
            protocols,
            cipher_suites,
            endpoint_identification,
            principal_mapper,
        };
        // A suite list with nothing for an enabled protocol would fail every handshake.
        if !settings.cipher_suites.is_empty() {
            let usable = settings.cipher_suites.iter().any(|s| {
                settings
                    .protocols
                    .iter()
                    .any(|p| p.version == s.version().version)
            });
            if !usable {
                let key = lookup(props, listener, "ssl.cipher.suites")
                    .map(|(k, _)| k)
                    .unwrap_or_default();
                return Err(err(
                    &key,
                    "none of the cipher suites is usable with ssl.enabled.protocols",
                ));
            }
        }
        Ok(settings)
    }

    /// The files to watch for changes (the key store and trust store files).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(KeyStore::File(p)) = &self.keystore {
            out.push(p.clone());
        }
        if let Some(TrustStore::File(p)) = &self.truststore {
            out.push(p.clone());
        }
        out
    }

    // ring's provider lacks the post-quantum hybrid key exchange (only aws-lc-rs has it, which
    // needs cmake); the build rules exclude aws-lc, so ring it is.
    #[allow(deprecated)]
    fn provider(&self) -> Arc<CryptoProvider> {
        let mut provider = rustls::crypto::ring::default_provider();
        if !self.cipher_suites.is_empty() {
            provider.cipher_suites = self.cipher_suites.clone();
        }
        Arc::new(provider)
    }

    /// Reads the key store: the certificate chain (leaf first) and the private key.
    fn load_keystore(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsConfigError>
    {
        let key = self.keystore_key.as_str();
        let (chain_pem, key_pem) = match &self.keystore {
            None => return Ok(None),
            Some(KeyStore::File(path)) => {
                let text = read_pem_file(key, path)?;
                (text.clone(), text)
            }
            Some(KeyStore::Inline { chain, key }) => (chain.clone(), key.clone()),
        };
        // rustls (like Kafka's PEM support) reads unencrypted keys; an encrypted one would
        // otherwise surface as a confusing "no key found".
        if key_pem.contains("ENCRYPTED PRIVATE KEY") || key_pem.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(err(
                key,
                "the private key is encrypted; Nagare reads unencrypted PEM keys only (decrypt it, e.g. `openssl pkcs8 -in key.pem -out plain.pem`, and drop ssl.key.password)",
            ));
        }
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(key, format!("bad PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(err(
                key,
                "no certificate (-----BEGIN CERTIFICATE-----) found",
            ));
        }
        let private = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| err(key, format!("no usable private key: {e}")))?;
        Ok(Some((chain, private)))
    }

    /// Reads the trust store into a root store.
    fn load_truststore(&self) -> Result<Option<RootCertStore>, TlsConfigError> {
        let key = "ssl.truststore.location";
        let pem = match &self.truststore {
            None => return Ok(None),
            Some(TrustStore::File(path)) => read_pem_file(key, path)?,
            Some(TrustStore::Inline(text)) => text.clone(),
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| err(key, format!("bad PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| err(key, format!("unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(err(key, "no certificate found in the trust store"));
        }
        Ok(Some(roots))
    }

    /// Builds the server side: the key store is required, the trust store too when client
    /// certificates are asked for.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsConfigError> {
        let (chain, key) = self.load_keystore()?.ok_or_else(|| {
            err(
                "ssl.keystore.location",
                "a TLS listener needs a key store (ssl.keystore.location, or ssl.keystore.certificate.chain with ssl.keystore.key)",
            )
        })?;
        let provider = self.provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.protocols)
            .map_err(|e| err("ssl.enabled.protocols", e.to_string()))?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let roots = self.load_truststore()?.ok_or_else(|| {
                    err(
                        "ssl.truststore.location",
                        "ssl.client.auth needs a trust store to verify client certificates",
                    )
                })?;
                let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                if auth == ClientAuth::Requested {
                    v = v.allow_unauthenticated();
                }
                let verifier = v
                    .build()
                    .map_err(|e| err("ssl.truststore.location", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(chain, key)
            .map_err(|e| err(&self.keystore_key, format!("key and certificate: {e}")))
    }

    /// Builds the client side (the connections a node opens, and tests): the trust store
    /// verifies the server, the key store (if any) is the client certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsConfigError> {
        let provider = self.provider();
        let roots = self.load_truststore()?.ok_or_else(|| {
            err(
                "ssl.truststore.location",
                "a TLS client needs a trust store to verify the server",
            )
        })?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.protocols)
            .map_err(|e| err("ssl.enabled.protocols", e.to_string()))?;
        let builder = if self.endpoint_identification {
            builder.with_root_certificates(roots)
        } else {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err("ssl.truststore.location", e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoHostnameCheck(inner)))
        };
        match self.load_keystore()? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| err(&self.keystore_key, format!("key and certificate: {e}"))),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

fn read_pem_file(key: &str, path: &Path) -> Result<String, TlsConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        err(
            key,
            format!(
                "{} is not a PEM file (JKS and PKCS12 stores are not supported; convert to PEM)",
                path.display()
            ),
        )
    })?;
    if !text.contains("-----BEGIN") {
        return Err(err(
            key,
            format!(
                "{} is not a PEM file (JKS and PKCS12 stores are not supported; convert to PEM)",
                path.display()
            ),
        ));
    }
    Ok(text)
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain is verified against the trust
/// store but not against the host name, as Kafka does with that setting.
#[derive(Debug)]
struct NoHostnameCheck(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for NoHostnameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The client side of the connections a node opens to `listener` of other nodes (replica
/// fetchers, the controller channel, the quorum): TLS with that listener's `ssl.*` settings
/// when it is SSL or SASL_SSL, `None` (plaintext) otherwise, and `None` with a warning when
/// no trust store is configured (those connections then fail at the peer's handshake). Its
/// files are reloaded by [`ClientTls::watch`] (the caller runs it).
pub fn client_tls(
    config: &crate::config::BrokerConfig,
    listener: &str,
) -> Result<Option<Arc<ClientTls>>, TlsConfigError> {
    if !config.security_protocol(listener).uses_tls() {
        return Ok(None);
    }
    let settings = TlsSettings::from_props(&config.props, Some(listener))?;
    if settings.truststore.is_none() {
        // Kafka would fall back to the JVM's default CAs; Nagare has none to fall back to.
        // Not an error: a node that never connects to another one (a single node) needs no
        // trust store, but connections it opens to this listener of other nodes will fail.
        tracing::warn!(listener, "no ssl.truststore.location for listener {listener}: this node cannot verify other nodes' certificates, so connections it opens to their {listener} listeners will fail");
        return Ok(None);
    }
    ClientTls::new(listener, settings).map(Some)
}

/// [`client_tls`]'s connection options (the stores as loaded now, and as reloaded by the
/// [`ClientTls`] behind them if its watch runs).
pub fn client_options(
    config: &crate::config::BrokerConfig,
    listener: &str,
) -> Result<Option<nagare_client::TlsOptions>, TlsConfigError> {
    client_tls(config, listener)?
        .map(|c| c.options())
        .transpose()
}

/// A file's identity for change detection: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// How often the key and trust store files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// A TLS listener's server side: the current rustls configuration (swapped on reload), the
/// settings it came from and the principal mapping.
#[derive(Debug)]
pub struct ServerTls {
    listener: String,
    settings: TlsSettings,
    current: RwLock<Arc<rustls::ServerConfig>>,
    stamps: parking_lot::Mutex<Vec<(PathBuf, Stamp)>>,
}

impl ServerTls {
    /// Loads `listener`'s TLS configuration from the properties; any error stops startup.
    pub fn for_listener(
        props: &BTreeMap<String, String>,
        listener: &str,
    ) -> Result<Arc<Self>, TlsConfigError> {
        let settings = TlsSettings::from_props(props, Some(listener))?;
        Self::new(listener, settings)
    }

    /// From parsed settings.
    pub fn new(listener: &str, settings: TlsSettings) -> Result<Arc<Self>, TlsConfigError> {
        let stamps = settings
            .watched_files()
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect();
        let config = settings.server_config()?;
        Ok(Arc::new(ServerTls {
            listener: listener.to_string(),
            settings,
            current: RwLock::new(Arc::new(config)),
            stamps: parking_lot::Mutex::new(stamps),
        }))
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.read().clone()
    }

    /// `ssl.principal.mapping.rules`.
    pub fn principal_mapper(&self) -> &PrincipalMapper {
        &self.settings.principal_mapper
    }

    /// Checks the watched files; when one changed, rebuilds the configuration and swaps it
    /// in. A file that does not load is logged and the old configuration stays (it is tried
    /// again when the file changes again). Returns whether a new configuration was loaded.
    pub fn reload_if_changed(&self) -> bool {
        let mut stamps = self.stamps.lock();
        let mut changed = false;
        for (path, old) in stamps.iter_mut() {
            let now = stamp(path);
            if now != *old {
                *old = now;
                changed = true;
            }
        }
        if !changed {
            return false;
        }
        match self.settings.server_config() {
            Ok(c) => {
                *self.current.write() = Arc::new(c);
                tracing::info!(listener = %self.listener, "TLS key/trust store changed: new connections use the new certificates");
                true
            }
            Err(e) => {
                tracing::error!(listener = %self.listener, error = %e, "TLS key/trust store changed but does not load; keeping the previous certificates");
                false
            }
        }
    }

    /// Polls the files every [`RELOAD_INTERVAL`] (a task per TLS listener; does nothing when
    /// the stores are inline in the config).
    pub async fn watch(self: Arc<Self>) {
        if self.settings.watched_files().is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }

    /// The principal of a connection whose handshake presented `peer_certs` (Kafka's
    /// `DefaultKafkaPrincipalBuilder`): `User:` + the mapped subject DN, `User:ANONYMOUS`
    /// without a certificate; an error when no mapping rule matches (the connection is
    /// refused, as Kafka fails the authentication).
    pub fn principal(
        &self,
        peer_certs: Option<&[CertificateDer<'_>]>,
    ) -> Result<crate::context::KafkaPrincipal, String> {
        let Some(leaf) = peer_certs.and_then(|c| c.first()) else {
            return Ok(crate::context::KafkaPrincipal::anonymous());
        };
        let dn = principal::subject_rfc2253(leaf)?;
        self.settings
            .principal_mapper
            .map(&dn)
            .map(crate::context::KafkaPrincipal::user)
            .ok_or_else(|| format!("no ssl.principal.mapping.rules rule matches {dn}"))
    }
}

#[cfg(test)]
mod tests;
