//! One TCP connection to one broker: framing, correlation ids and version negotiation.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{describe_io, Error, Result};

/// A SaslAuthenticate answer's error as [`Error::Kafka`] (SASL_AUTHENTICATION_FAILED with the
/// broker's message).
fn check_authenticate(resp: &kafka_protocol::messages::SaslAuthenticateResponse) -> Result<()> {
    match Error::from_code(
        resp.error_code,
        || "SaslAuthenticate".to_owned(),
        resp.error_message.as_deref(),
    ) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Timeouts and limits of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// How long the TCP connect plus the ApiVersions exchange may take.
    pub connect_timeout: Duration,
    /// How long one request may wait for its response (a fetch adds its own `max_wait_ms`).
    pub request_timeout: Duration,
    /// The largest response accepted; a bigger size prefix is treated as a protocol error
    /// rather than allocated.
    pub max_response_bytes: usize,
    /// SASL credentials for a `SASL_PLAINTEXT` listener: each connection authenticates right
    /// after ApiVersions (SaslHandshake v1 + SaslAuthenticate, KIP-152).
    pub sasl: Option<SaslCredentials>,
    /// TLS (Kafka's `security.protocol=SSL`): the handshake runs right after the TCP connect,
    /// within `connect_timeout`. `None` speaks plaintext.
    pub tls: Option<TlsOptions>,
}

/// A SASL login (Kafka clients' `sasl.mechanism`, `sasl.username`, `sasl.password`). For
/// `OAUTHBEARER`, `password` is the bearer token (a JWT) and `username` is not sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password (never printed).
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How a connection speaks TLS: the rustls client configuration (trust store, client
/// certificate, host name checking) and the name the server's certificate must match.
#[derive(Clone)]
pub struct TlsOptions {
    /// The rustls configuration.
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// The name checked against the server's certificate; by default the host of the address
    /// connected to (a DNS name or an IP address, as Kafka clients do).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsOptions {
    /// Runs the TLS handshake over `tcp`, connected to `addr` (`host:port`), checking the
    /// server's certificate against [`TlsOptions::server_name`] or the host of `addr`.
    pub async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(addr).to_owned());
        let name = rustls::pki_types::ServerName::try_from(name).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid TLS server name: {e}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }
}

/// The byte stream under a connection: plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Plain",
            Stream::Tls(_) => "Tls",
        })
    }
}

impl Stream {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(b).await,
            Stream::Tls(s) => {
                s.write_all(b).await?;
                // rustls buffers the encrypted records until flushed.
                s.flush().await
            }
        }
    }

    async fn read_exact(&mut self, b: &mut [u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.read_exact(b).await.map(|_| ()),
            Stream::Tls(s) => s.read_exact(b).await.map(|_| ()),
        }
    }
}

/// A connection's byte stream once it has been handed over by [`Connection::into_stream`]:
/// plain TCP or TLS, already past ApiVersions and SASL. Frames written on it are the
/// caller's business (Nagare's controller channel forwards raw request frames on it).
#[derive(Debug)]
pub struct ConnectionStream(Stream);

impl tokio::io::AsyncRead for ConnectionStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for ConnectionStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The host part of `host:port` (`[v6]:port` too), for TLS server name checking.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 256 * 1024 * 1024,
            sasl: None,
            tls: None,
        }
    }
}

/// One TCP connection to a broker.
///
/// On [`connect`](Connection::connect) it exchanges ApiVersions and remembers the broker's version
/// ranges; [`send`](Connection::send) then picks the highest version both sides support.
/// Requests are sent one at a time (no pipelining). If a request future is dropped half-way
/// (for example by a timeout), the connection is marked broken and every later call fails with
/// [`Error::ConnectionBroken`]; open a new one.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    /// `host:port` as given, for error messages.
    addr: String,
    client_id: StrBytes,
    options: ConnectionOptions,
    next_correlation_id: i32,
    /// The broker's supported version range per API key, from ApiVersions.
    broker_versions: BTreeMap<i16, VersionRange>,
    /// Set while a request is in flight; still set after an interrupted exchange, which leaves
    /// the byte stream out of step.
    in_flight: bool,
    /// When to re-authenticate (KIP-368): set from the session lifetime the broker answered
    /// in SaslAuthenticate v1+, `None` when the session does not expire.
    reauthenticate_at: Option<Instant>,
    /// Re-authentications done on this connection.
    reauthentications: u64,
    /// The handle [`Connection::peer_closed_probe`] gave out: held here only, so it (and its
    /// duplicate of the socket) goes with the connection.
    probe: Option<Arc<PeerClosedProbe>>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) with default [`ConnectionOptions`] and negotiates API
    /// versions.
    pub async fn connect(addr: &str, client_id: &str) -> Result<Connection> {
        Self::connect_with(addr, client_id, ConnectionOptions::default()).await
    }

    /// Connects to `addr` (`host:port`) and negotiates API versions, within
    /// `options.connect_timeout`.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        options: ConnectionOptions,
    ) -> Result<Connection> {
        let timeout = options.connect_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(addr, client_id, options)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                addr: addr.to_owned(),
                reason: format!("timed out after {} ms", timeout.as_millis()),
            }),
        }
    }

    async fn connect_inner(
        addr: &str,
        client_id: &str,
        options: ConnectionOptions,
    ) -> Result<Connection> {
        let stream = TcpStream::connect(addr).await.map_err(|e| Error::Connect {
            addr: addr.to_owned(),
            reason: describe_io(&e),
        })?;
        // Requests are written whole, so Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let stream = match &options.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host_of(addr).to_owned());
                let name =
                    rustls::pki_types::ServerName::try_from(name).map_err(|e| Error::Connect {
                        addr: addr.to_owned(),
                        reason: format!("invalid TLS server name: {e}"),
                    })?;
                let s = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| Error::Connect {
                        addr: addr.to_owned(),
                        reason: format!("TLS handshake failed: {e}"),
                    })?;
                Stream::Tls(Box::new(s))
            }
        };
        let mut conn = Connection {
            stream,
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(client_id.to_owned()),
            options,
            next_correlation_id: 0,
            broker_versions: BTreeMap::new(),
            in_flight: false,
            reauthenticate_at: None,
            reauthentications: 0,
            probe: None,
        };
        conn.negotiate_versions().await.map_err(|e| match e {
            Error::Io { addr, reason } => Error::Connect { addr, reason },
            other => other,
        })?;
        if let Some(creds) = conn.options.sasl.clone() {
            conn.authenticate(&creds).await?;
        }
        Ok(conn)
    }

    /// Hands over the byte stream (past ApiVersions and, with [`ConnectionOptions::sasl`],
    /// authenticated), for a caller that writes already-encoded request frames itself. A
    /// broken connection (an exchange interrupted half-way) is refused.
    pub fn into_stream(self) -> Result<ConnectionStream> {
        if self.in_flight {
            return Err(Error::ConnectionBroken { addr: self.addr });
        }
        Ok(ConnectionStream(self.stream))
    }

    /// SaslHandshake v1 for `creds.mechanism`, then the mechanism's SaslAuthenticate
    /// exchange; a SCRAM server must prove it holds the credential too. The broker's
    /// `session_lifetime_ms` (SaslAuthenticate v1+, KIP-368) schedules the next
    /// re-authentication on this connection.
    async fn authenticate(&mut self, creds: &SaslCredentials) -> Result<()> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        use nagare_sasl::scram::{printable_nonce, ScramClient, ScramMechanism};
        let timeout = self.options.request_timeout;
        let handshake = self
            .send_raw(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_string(creds.mechanism.clone())),
                1,
                timeout,
            )
            .await?;
        if let Some(e) = Error::from_code(
            handshake.error_code,
            || format!("SaslHandshake for {}", creds.mechanism),
            Some(&format!(
                "the broker enables {}",
                handshake
                    .mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ) {
            return Err(e);
        }
        let version = self.negotiate(ApiKey::SaslAuthenticate, Some(2))?;
        let addr = self.addr.clone();
        let step =
            |token: Vec<u8>| SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let sasl_error = |reason: String| Error::UnexpectedResponse {
            addr: addr.clone(),
            reason,
        };
        let lifetime_ms = match ScramMechanism::from_name(&creds.mechanism) {
            None if creds.mechanism == "PLAIN" => {
                let req = step(nagare_sasl::plain::client_message(
                    &creds.username,
                    &creds.password,
                ));
                let resp = self.send_raw(&req, version, timeout).await?;
                check_authenticate(&resp)?;
                resp.session_lifetime_ms
            }
            None if creds.mechanism == "OAUTHBEARER" => {
                // RFC 7628's initial client response with the bearer token (Kafka's
                // OAuthBearerSaslClient); a refused token is answered with an error
                // challenge, to which the client sends a lone %x01 and then gets the failure.
                let req = step(nagare_sasl::oauthbearer::client_initial_response(
                    &creds.password,
                    &std::collections::BTreeMap::new(),
                ));
                let resp = self.send_raw(&req, version, timeout).await?;
                check_authenticate(&resp)?;
                if !resp.auth_bytes.is_empty() {
                    let challenge = String::from_utf8_lossy(&resp.auth_bytes).into_owned();
                    let fin = self.send_raw(&step(vec![0x01]), version, timeout).await?;
                    check_authenticate(&fin)?;
                    return Err(sasl_error(format!(
                        "OAUTHBEARER token refused: {challenge}"
                    )));
                }
                resp.session_lifetime_ms
            }
            None => {
                return Err(sasl_error(format!(
                    "SASL mechanism {} is not supported by this client (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)",
                    creds.mechanism
                )))
            }
            Some(m) => {
                let nonce = printable_nonce(&rand::random::<[u8; 32]>());
                let mut client = ScramClient::new(m, &creds.username, &creds.password, &nonce);
                let first = self
                    .send_raw(&step(client.client_first()), version, timeout)
                    .await?;
                check_authenticate(&first)?;
                let fin = client
                    .client_final(&first.auth_bytes)
                    .map_err(|e| sasl_error(format!("SCRAM server-first: {e}")))?;
                let last = self.send_raw(&step(fin), version, timeout).await?;
                check_authenticate(&last)?;
                client
                    .verify_server_final(&last.auth_bytes)
                    .map_err(|e| sasl_error(format!("SCRAM server-final: {e}")))?;
                last.session_lifetime_ms
            }
        };
        self.reauthenticate_at =
            reauthentication_delay(lifetime_ms, rand::random::<f64>()).map(|d| Instant::now() + d);
        Ok(())
    }

    /// Re-authenticates (KIP-368) when the session is due, between requests, as Kafka's
    /// clients do; the broker closes a connection whose session expired.
    async fn reauthenticate_if_due(&mut self) -> Result<()> {
        let due = self
            .reauthenticate_at
            .is_some_and(|at| Instant::now() >= at);
        if !due {
            return Ok(());
        }
        let Some(creds) = self.options.sasl.clone() else {
            return Ok(());
        };
        self.reauthenticate_at = None;
        self.authenticate(&creds).await?;
        self.reauthentications += 1;
        tracing::debug!(addr = %self.addr, "re-authenticated (KIP-368)");
        Ok(())
    }

    /// How many times this connection re-authenticated (KIP-368).
    pub fn reauthentications(&self) -> u64 {
        self.reauthentications
    }

    /// ApiVersions at our highest version; on UNSUPPORTED_VERSION the broker answers in v0 with
    /// its own range (KIP-511), and we retry at the highest version both support.
    async fn negotiate_versions(&mut self) -> Result<()> {
        let ours = ApiKey::ApiVersions.valid_versions();
        let mut version = ours.max;
        for _attempt in 0..2 {
            let mut req = ApiVersionsRequest::default();
            req.client_software_name = StrBytes::from_static_str("nagare-client");
            req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            let body = self
                .exchange(
                    ApiKey::ApiVersions,
                    version,
                    &req,
                    self.options.request_timeout,
                )
                .await?;
            // Error code is the first field of every ApiVersions response version; a broker
            // that cannot parse our version answers UNSUPPORTED_VERSION in v0 (KIP-511).
            let code = match body.get(..2) {
                Some(&[hi, lo]) => i16::from_be_bytes([hi, lo]),
                _ => 0,
            };
            let decode_version = if code == ResponseError::UnsupportedVersion.code() {
                0
            } else {
                version
            };
            let mut buf = body;
            let resp = ApiVersionsResponse::decode(&mut buf, decode_version).map_err(|e| {
                Error::Decode {
                    addr: self.addr.clone(),
                    api: ApiKey::ApiVersions,
                    version: decode_version,
                    reason: e.to_string(),
                }
            })?;
            self.broker_versions = resp
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            if code == ResponseError::UnsupportedVersion.code() {
                let theirs = self.broker_range(ApiKey::ApiVersions)?;
                let common = theirs.intersect(&ours);
                if common.is_empty() || common.max >= version {
                    return Err(self.unsupported_version(ApiKey::ApiVersions, theirs, ours));
                }
                version = common.max;
                continue;
            }
            if let Some(e) = Error::from_code(resp.error_code, || "ApiVersions".to_owned(), None) {
                return Err(e);
            }
            return Ok(());
        }
        Err(Error::UnexpectedResponse {
            addr: self.addr.clone(),
            reason: "ApiVersions negotiation did not converge".into(),
        })
    }

    /// The broker's address as given to `connect`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's version range for each API key it announced.
    pub fn broker_versions(&self) -> &BTreeMap<i16, VersionRange> {
        &self.broker_versions
    }

    /// A handle through which other tasks can look whether the peer has closed or reset this
    /// connection, while its owner waits on a response: a non-blocking `MSG_PEEK` on a
    /// duplicate of the socket (it reads nothing and leaves the owner's wake-ups alone). It
    /// is only valid while the connection lives: the connection holds the only strong
    /// reference, so dropping the connection closes the duplicate too. `None` if the socket
    /// cannot be duplicated.
    pub fn peer_closed_probe(&mut self) -> Option<Weak<PeerClosedProbe>> {
        if self.probe.is_none() {
            let tcp = match &self.stream {
                Stream::Plain(s) => s,
                Stream::Tls(s) => s.get_ref().0,
            };
            let fd = tcp.as_fd().try_clone_to_owned().ok()?;
            self.probe = Some(Arc::new(PeerClosedProbe { fd }));
        }
        self.probe.as_ref().map(Arc::downgrade)
    }

    /// True if a request was interrupted and the connection must be replaced.
    pub fn is_broken(&self) -> bool {
        self.in_flight
    }

    /// The options this connection was opened with.
    pub fn options(&self) -> &ConnectionOptions {
        &self.options
    }

    fn broker_range(&self, api: ApiKey) -> Result<VersionRange> {
        self.broker_versions
            .get(&(api as i16))
            .copied()
            .ok_or_else(|| Error::UnsupportedApi {
                addr: self.addr.clone(),
                api,
            })
    }

    fn unsupported_version(&self, api: ApiKey, theirs: VersionRange, ours: VersionRange) -> Error {
        Error::UnsupportedVersion {
            addr: self.addr.clone(),
            api,
            broker_min: theirs.min,
            broker_max: theirs.max,
            client_min: ours.min,
            client_max: ours.max,
        }
    }

    /// The highest version of `api` that both the broker and this client (`kafka-protocol`)
    /// support, optionally capped at `cap`.
    pub fn negotiate(&self, api: ApiKey, cap: Option<i16>) -> Result<i16> {
        let mut ours = api.valid_versions();
        if let Some(cap) = cap {
            ours.max = ours.max.min(cap);
        }
        let theirs = self.broker_range(api)?;
        let common = theirs.intersect(&ours);
        if common.is_empty() {
            return Err(self.unsupported_version(api, theirs, ours));
        }
        Ok(common.max)
    }

    /// Sends `req` at the highest mutually supported version and waits for its response.
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let api = api_key_of::<R>()?;
        let version = self.negotiate(api, None)?;
        self.send_version(req, version).await
    }

    /// Sends `req` at `version` and waits for its response within the request timeout.
    pub async fn send_version<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let timeout = self.options.request_timeout;
        self.send_version_timeout(req, version, timeout).await
    }

    /// Sends `req` at `version` and waits for its response within `timeout` (first
    /// re-authenticating if the SASL session is due, see [`ConnectionOptions::sasl`]).
    pub async fn send_version_timeout<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        self.reauthenticate_if_due().await?;
        self.send_raw(req, version, timeout).await
    }

    /// [`send_version_timeout`](Self::send_version_timeout) without the re-authentication
    /// check (the SASL exchange itself).
    async fn send_raw<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let api = api_key_of::<R>()?;
        let mut body = self.exchange(api, version, req, timeout).await?;
        R::Response::decode(&mut body, version).map_err(|e| Error::Decode {
            addr: self.addr.clone(),
            api,
            version,
            reason: e.to_string(),
        })
    }

    /// Sends a request the broker does not answer (Produce with `acks=0`).
    pub async fn send_no_response<R: Request>(&mut self, req: &R, version: i16) -> Result<()> {
        self.reauthenticate_if_due().await?;
        let api = api_key_of::<R>()?;
        if self.in_flight {
            return Err(Error::ConnectionBroken {
                addr: self.addr.clone(),
            });
        }
        let correlation_id = self.take_correlation_id();
        let frame = encode_request(req, api, version, correlation_id, &self.client_id)?;
        let timeout = self.options.request_timeout;
        self.in_flight = true;
        match tokio::time::timeout(timeout, self.stream.write_all(&frame)).await {
            Ok(Ok(())) => {
                self.in_flight = false;
                Ok(())
            }
            Ok(Err(e)) => Err(Error::Io {
                addr: self.addr.clone(),
                reason: describe_io(&e),
            }),
            Err(_) => Err(Error::Timeout {
                addr: self.addr.clone(),
                api,
                timeout,
            }),
        }
    }

    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(0);
        id
    }

    /// Writes one request and reads its response; returns the response body (after the header).
    async fn exchange<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
        timeout: Duration,
    ) -> Result<Bytes> {
        if self.in_flight {
            return Err(Error::ConnectionBroken {
                addr: self.addr.clone(),
            });
        }
        let correlation_id = self.take_correlation_id();
        let frame = encode_request(req, api, version, correlation_id, &self.client_id)?;
        self.in_flight = true;
        let frame = match tokio::time::timeout(timeout, self.write_then_read(&frame)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::Timeout {
                    addr: self.addr.clone(),
                    api,
                    timeout,
                })
            }
        };
        // The whole response frame has been read: the stream is in step again.
        self.in_flight = false;
        decode_response_header(frame, api, version, correlation_id).map_err(|e| match e {
            FrameDecodeError::Header(reason) => Error::Decode {
                addr: self.addr.clone(),
                api,
                version,
                reason,
            },
            FrameDecodeError::Correlation { expected, got } => {
                // An answer to some other request: the stream cannot be trusted any more.
                self.in_flight = true;
                Error::CorrelationMismatch {
                    addr: self.addr.clone(),
                    expected,
                    got,
                }
            }
        })
    }

    async fn write_then_read(&mut self, frame: &[u8]) -> Result<Bytes> {
        let io_err = |addr: &str, e: std::io::Error| Error::Io {
            addr: addr.to_owned(),
            reason: describe_io(&e),
        };
        self.stream
            .write_all(frame)
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        let size =
            check_response_size(prefix, self.options.max_response_bytes).map_err(|size| {
                Error::ResponseTooLarge {
                    addr: self.addr.clone(),
                    size,
                    max: self.options.max_response_bytes,
                }
            })?;
        let mut buf = BytesMut::zeroed(size);
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        Ok(buf.freeze())
    }
}

/// See [`Connection::peer_closed_probe`].
#[derive(Debug)]
pub struct PeerClosedProbe {
    fd: std::os::fd::OwnedFd,
}

impl PeerClosedProbe {
    /// Whether the peer has closed (end-of-stream, already received) or reset the connection,
    /// right now, without waiting: what the kernel holds for a socket whose peer process
    /// died. Bytes waiting to be read, or nothing at all, mean it is open.
    pub fn peer_closed(&self) -> bool {
        let mut byte = [0u8; 1];
        match rustix::net::recv(
            &self.fd,
            &mut byte[..],
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
        ) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => {
                e == rustix::io::Errno::CONNRESET
                    || e == rustix::io::Errno::PIPE
                    || e == rustix::io::Errno::NOTCONN
            }
        }
    }
}

/// How long after authenticating to re-authenticate, for a broker-given session lifetime
/// (`None` when it is 0: no expiry): at 85–95% of it, `jitter` (0..1) picking where, as
/// Kafka's clients do (KIP-368), so that many connections do not re-authenticate at once.
pub(crate) fn reauthentication_delay(session_lifetime_ms: i64, jitter: f64) -> Option<Duration> {
    if session_lifetime_ms <= 0 {
        return None;
    }
    let fraction = 0.85 + 0.10 * jitter.clamp(0.0, 1.0);
    Some(Duration::from_millis(
        (session_lifetime_ms as f64 * fraction) as u64,
    ))
}

/// `R::KEY` as an [`ApiKey`].
pub(crate) fn api_key_of<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY)
        .map_err(|()| Error::InvalidArgument(format!("unknown API key {}", R::KEY)))
}

/// Encodes a whole request frame: 4-byte size, request header (at the header version `api`
/// uses for `version`), body.
pub(crate) fn encode_request<R: Encodable>(
    req: &R,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes> {
    let encode_err = |reason: String| Error::Encode {
        api,
        version,
        reason,
    };
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let header_version = api.request_header_version(version);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0); // size, patched below
    header
        .encode(&mut buf, header_version)
        .map_err(|e| encode_err(e.to_string()))?;
    req.encode(&mut buf, version)
        .map_err(|e| encode_err(e.to_string()))?;
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| encode_err(format!("request of {} bytes is too large", buf.len())))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Validates a response's 4-byte size prefix; `Err(size)` if negative or above `max`.
pub(crate) fn check_response_size(prefix: [u8; 4], max: usize) -> std::result::Result<usize, i64> {
    let size = i32::from_be_bytes(prefix);
    match usize::try_from(size) {
        Ok(s) if s <= max && s >= 4 => Ok(s),
        _ => Err(size as i64),
    }
}

#[derive(Debug)]
pub(crate) enum FrameDecodeError {
    Header(String),
    Correlation { expected: i32, got: i32 },
}

/// Decodes the response header of a frame (without its size prefix), checks the correlation
/// id, and returns the body.
pub(crate) fn decode_response_header(
    mut frame: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> std::result::Result<Bytes, FrameDecodeError> {
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| FrameDecodeError::Header(e.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(FrameDecodeError::Correlation {
            expected: correlation_id,
            got: header.correlation_id,
        });
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    #[test]
    fn reauthentication_is_due_at_85_to_95_percent_of_the_session() {
        assert_eq!(reauthentication_delay(0, 0.5), None, "no expiry");
        assert_eq!(reauthentication_delay(-1, 0.5), None);
        assert_eq!(
            reauthentication_delay(10_000, 0.0),
            Some(Duration::from_millis(8_500))
        );
        assert_eq!(
            reauthentication_delay(10_000, 1.0),
            Some(Duration::from_millis(9_500))
        );
        assert_eq!(
            reauthentication_delay(10_000, 7.0),
            Some(Duration::from_millis(9_500)),
            "jitter is clamped"
        );
    }

    #[test]
    fn request_frame_layout() {
        let req = MetadataRequest::default();
        let frame = encode_request(
            &req,
            ApiKey::Metadata,
            12,
            7,
            &StrBytes::from_static_str("t"),
        )
        .expect("encodes");
        let mut b = frame.clone();
        let size = b.get_i32();
        assert_eq!(size as usize, frame.len() - 4);
        assert_eq!(b.get_i16(), ApiKey::Metadata as i16);
        assert_eq!(b.get_i16(), 12);
        assert_eq!(b.get_i32(), 7);
        // Header v2: client id as a (non-compact) nullable string, then tagged fields.
        assert_eq!(b.get_i16(), 1);
        assert_eq!(b.get_u8(), b't');
        assert_eq!(b.get_u8(), 0);
        // The rest decodes as the request at the same version.
        let decoded = MetadataRequest::decode(&mut b, 12).expect("decodes");
        assert_eq!(decoded, req);
    }

    #[test]
    fn response_size_limits() {
        assert_eq!(check_response_size(100i32.to_be_bytes(), 1000), Ok(100));
        assert_eq!(check_response_size(2000i32.to_be_bytes(), 1000), Err(2000));
        assert_eq!(check_response_size((-5i32).to_be_bytes(), 1000), Err(-5));
        assert_eq!(check_response_size(2i32.to_be_bytes(), 1000), Err(2));
    }

    #[test]
    fn response_header_and_correlation() {
        let resp = MetadataResponse::default();
        let mut buf = BytesMut::new();
        buf.put_i32(42);
        buf.put_u8(0); // header v1 tagged fields (Metadata v12 uses header v1)
        resp.encode(&mut buf, 12).expect("encodes");
        let frame = buf.freeze();
        let mut body = decode_response_header(frame.clone(), ApiKey::Metadata, 12, 42)
            .expect("header decodes");
        let decoded = MetadataResponse::decode(&mut body, 12).expect("body decodes");
        assert_eq!(decoded, resp);
        assert!(matches!(
            decode_response_header(frame, ApiKey::Metadata, 12, 43),
            Err(FrameDecodeError::Correlation {
                expected: 43,
                got: 42
            })
        ));
    }

    /// After ApiVersions the byte stream is handed over in step: what the caller writes on it
    /// reaches the server as is, and the server's next frame is read back whole.
    #[tokio::test]
    async fn into_stream_hands_over_the_negotiated_stream() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            crate::testing::answer_api_versions(&mut s)
                .await
                .expect("ApiVersions");
            // Then the raw frame, echoed back reversed.
            let raw = crate::testing::read_frame(&mut s).await.expect("frame");
            let mut back: Vec<u8> = raw.to_vec();
            back.reverse();
            s.write_i32(i32::try_from(back.len()).expect("len"))
                .await
                .expect("write");
            s.write_all(&back).await.expect("write");
        });
        let conn = Connection::connect(&addr, "raw").await.expect("connect");
        let mut stream = conn.into_stream().expect("stream");
        stream
            .write_all(&[0, 0, 0, 3, 1, 2, 3])
            .await
            .expect("write");
        stream.flush().await.expect("flush");
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await.expect("read");
        assert_eq!(answer, [0, 0, 0, 3, 3, 2, 1]);
        server.await.expect("server");
    }

    /// The probe sees an open, idle connection as open, the peer's close as closed (without
    /// reading anything), and dies with the connection.
    #[tokio::test]
    async fn peer_closed_probe_sees_the_peers_close_and_dies_with_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            crate::testing::answer_api_versions(&mut s)
                .await
                .expect("ApiVersions");
            let _ = close_rx.await;
            drop(s);
        });
        let mut conn = Connection::connect(&addr, "probe").await.expect("connect");
        let probe = conn.peer_closed_probe().expect("probe");
        let p = probe.upgrade().expect("alive");
        assert!(!p.peer_closed(), "an idle open connection is open");
        let _ = close_tx.send(());
        server.await.expect("server");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.peer_closed() {
            assert!(Instant::now() < deadline, "the peer's close was not seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(p);
        drop(conn);
        assert!(
            probe.upgrade().is_none(),
            "the probe goes with the connection"
        );
    }

    #[tokio::test]
    async fn connect_refused_is_clear() {
        // Bind then drop a listener to get a port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = Connection::connect(&addr, "test")
            .await
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!("cannot connect to broker {addr}: connection refused")
        );
    }
}
