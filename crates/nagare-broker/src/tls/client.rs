//! The client side of the connections a node opens (replica fetchers, the transaction marker
//! sender, produce verification, the controller channel, the KRaft quorum), reloading its key
//! and trust store files as a listener's [`super::ServerTls`] does.
//!
//! Those connections are made by many tasks that each keep a `nagare_client::TlsOptions`
//! (one rustls `ClientConfig`) for their whole life. Rather than rebuild and hand out a new
//! configuration on every change, the one configuration they share asks [`ClientTls`] for the
//! current trust anchors (its server certificate verifier) and the current client
//! certificate (its certificate resolver) at each handshake: when the files change, the next
//! connection any of them opens uses the new ones; established connections are not touched
//! (Kafka's dynamic keystore update behaves the same).

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{err, stamp, NoHostnameCheck, Stamp, TlsConfigError, TlsSettings, RELOAD_INTERVAL};

/// What one load of the files gave: how to verify servers, and the client certificate.
#[derive(Debug)]
struct Loaded {
    verifier: Arc<dyn ServerCertVerifier>,
    cert: Option<Arc<CertifiedKey>>,
}

/// A node's outbound TLS identity and trust, reloaded when its files change.
#[derive(Debug)]
pub struct ClientTls {
    listener: String,
    settings: TlsSettings,
    current: RwLock<Arc<Loaded>>,
    stamps: Mutex<Vec<(PathBuf, Stamp)>>,
}

impl ClientTls {
    /// Loads the settings' trust store (required) and key store (optional); an error stops
    /// startup, naming the key at fault.
    pub fn new(listener: &str, settings: TlsSettings) -> Result<Arc<Self>, TlsConfigError> {
        let stamps = settings
            .watched_files()
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect();
        let loaded = load(&settings)?;
        Ok(Arc::new(ClientTls {
            listener: listener.to_string(),
            settings,
            current: RwLock::new(Arc::new(loaded)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The options every outbound connection uses: one rustls configuration that reads the
    /// current trust store and certificate at each handshake. TLS session resumption is off,
    /// so that a connection made after a trust store change is verified against the new
    /// one rather than resuming an earlier session (inter-node connections are long-lived,
    /// the full handshake costs nothing that matters).
    pub fn options(self: &Arc<Self>) -> Result<nagare_client::TlsOptions, TlsConfigError> {
        let provider = self.settings.provider();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.settings.protocols)
            .map_err(|e| err("ssl.enabled.protocols", e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Current(self.clone())))
            .with_client_cert_resolver(Arc::new(Current(self.clone())));
        config.resumption = rustls::client::Resumption::disabled();
        Ok(nagare_client::TlsOptions {
            config: Arc::new(config),
            server_name: None,
        })
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current.read().clone()
    }

    /// Checks the watched files; when one changed, reloads both stores. Files that do not
    /// load are logged and the previous stores stay (tried again at the next change).
    /// Returns whether new stores were loaded.
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
        match load(&self.settings) {
            Ok(l) => {
                *self.current.write() = Arc::new(l);
                tracing::info!(listener = %self.listener, "TLS key/trust store for outbound connections changed: new connections use them");
                true
            }
            Err(e) => {
                tracing::error!(listener = %self.listener, error = %e, "TLS key/trust store for outbound connections changed but does not load; keeping the previous ones");
                false
            }
        }
    }

    /// Polls the files every [`RELOAD_INTERVAL`] (returns at once when the stores are inline
    /// in the config).
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
}

/// Reads the stores into a verifier (with or without the host name check, per
/// `ssl.endpoint.identification.algorithm`) and a certified key.
fn load(settings: &TlsSettings) -> Result<Loaded, TlsConfigError> {
    let provider = settings.provider();
    let roots = settings.load_truststore()?.ok_or_else(|| {
        err(
            "ssl.truststore.location",
            "a TLS client needs a trust store to verify the server",
        )
    })?;
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| err("ssl.truststore.location", e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if settings.endpoint_identification {
        webpki
    } else {
        Arc::new(NoHostnameCheck(webpki))
    };
    let cert = match settings.load_keystore()? {
        Some((chain, key)) => Some(Arc::new(
            CertifiedKey::from_der(chain, key, &provider)
                .map_err(|e| err(&settings.keystore_key, format!("key and certificate: {e}")))?,
        )),
        None => None,
    };
    Ok(Loaded { verifier, cert })
}

/// The shared configuration's view of [`ClientTls`]'s current stores.
#[derive(Debug)]
struct Current(Arc<ClientTls>);

impl ServerCertVerifier for Current {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.loaded().verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.loaded().verifier.supported_verify_schemes()
    }
}

impl ResolvesClientCert for Current {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.loaded().cert.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.loaded().cert.is_some()
    }
}
