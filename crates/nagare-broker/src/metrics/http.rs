//! The HTTP listener: a minimal HTTP/1.1 server for `/metrics`, `/health/live`,
//! `/health/ready` and the web console (`/`, `/console/*` assets and its JSON API under
//! `/api/`, see [`crate::console`]), one request per connection (`Connection: close`, which
//! Prometheus, Kubernetes probes and browsers handle). Request parsing and routing are
//! sans-I/O ([`parse_request`], [`route`]); the I/O bounds what a client can make the node
//! hold: the request head is at most [`MAX_HEAD_BYTES`], a body (sent with
//! `Content-Length`, never chunked) at most [`MAX_BODY_BYTES`], both read within
//! [`READ_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once (more are closed at
//! once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{prometheus, render, MetricsSource};

/// The largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The largest request body read (the console's JSON requests; a test message's value is
/// the biggest of them).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a client may take to send its request head and body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing the response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A request's method, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the `GET` response without its body.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// Anything else (answered 405).
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The path, without query or fragment.
    pub path: String,
    /// The query string (after `?`, without it), possibly empty.
    pub query: String,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body length announced by `Content-Length` (0 without one); a malformed value or a
    /// chunked body is a 400 (`Transfer-Encoding` is not served: no client of these paths
    /// needs it).
    pub fn content_length(&self) -> Result<usize, HttpResponse> {
        if self.header("transfer-encoding").is_some() {
            return Err(HttpResponse::text(
                411,
                "send the body with Content-Length, not Transfer-Encoding\n",
            ));
        }
        match self.header("content-length") {
            None => Ok(0),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| HttpResponse::text(400, "bad request: malformed Content-Length\n")),
        }
    }
}

/// A whole request: head, body and the client's address.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Method, path, query, headers.
    pub head: RequestHead,
    /// The body (empty without one).
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: SocketAddr,
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers (`Set-Cookie`, `Cache-Control`).
    pub headers: Vec<(&'static str, String)>,
    /// Body (left out for `HEAD`, its length still sent).
    pub body: String,
}

impl HttpResponse {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        HttpResponse {
            status,
            content_type: "application/json",
            headers: vec![("Cache-Control", "no-store".into())],
            body: value.to_string(),
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            201 => "Created",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Payload Too Large",
            415 => "Unsupported Media Type",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// Where the request head ends (just past `\r\n\r\n`), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a request head: the request line (`METHOD SP target SP HTTP/1.x`) and the header
/// lines (`name: value`). Anything else is a 400.
pub fn parse_request(head: &[u8]) -> Result<RequestHead, HttpResponse> {
    let bad = |why: &str| HttpResponse::text(400, format!("bad request: {why}\n"));
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| bad("no request line"))?;
    let text = std::str::from_utf8(head).map_err(|_| bad("not UTF-8"))?;
    let line = &text[..line_end];
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(bad("not HTTP/1.x"));
    }
    if !target.starts_with('/') {
        return Err(bad("target is not a path"));
    }
    let without_fragment = target.split('#').next().unwrap_or(target);
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (without_fragment.to_string(), String::new()),
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Method::Other,
        _ => return Err(bad("malformed method")),
    };
    let mut headers = Vec::new();
    for h in text[line_end + 2..].split("\r\n").filter(|l| !l.is_empty()) {
        let (k, v) = h.split_once(':').ok_or_else(|| bad("malformed header"))?;
        if k.is_empty() || k.contains(' ') {
            return Err(bad("malformed header name"));
        }
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(RequestHead {
        method,
        path,
        query,
        headers,
    })
}

/// Answers a parsed request.
pub async fn route(req: &HttpRequest, src: &MetricsSource) -> HttpResponse {
    let (method, path) = (req.head.method, req.head.path.as_str());
    if crate::console::serves(path) {
        return src.console.handle(req, src.broker.get()).await;
    }
    let known = matches!(path, "/metrics" | "/health/live" | "/health/ready");
    if !known {
        return HttpResponse::text(
            404,
            "not found: try /metrics, /health/live, /health/ready or / (the web console)\n",
        );
    }
    if !matches!(method, Method::Get | Method::Head) {
        return HttpResponse::text(405, "method not allowed\n");
    }
    if path == "/metrics" && !authorized(req, src.metrics_token.as_deref()) {
        let mut r = HttpResponse::text(
            401,
            "unauthorized: send Authorization: Bearer <http.metrics.bearer.token>\n",
        );
        r.headers
            .push(("WWW-Authenticate", "Bearer realm=\"nagare\"".to_string()));
        return r;
    }
    match path {
        "/metrics" => HttpResponse {
            status: 200,
            content_type: prometheus::CONTENT_TYPE,
            headers: Vec::new(),
            body: render(src).await,
        },
        "/health/live" => HttpResponse::text(200, "live\n"),
        _ => match src.not_ready() {
            None => HttpResponse::text(200, "ready\n"),
            Some(why) => HttpResponse::text(503, format!("not ready: {why}\n")),
        },
    }
}

/// Whether the request may read `/metrics`: always without a token; with one, when it
/// carries `Authorization: Bearer <token>` (compared in constant time).
fn authorized(req: &HttpRequest, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = req.head.header("authorization").and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    }) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves `listener` (plain HTTP) until the task is aborted.
pub async fn serve(listener: TcpListener, src: Arc<MetricsSource>) {
    serve_tls(listener, src, None).await
}

/// Serves `listener` until the task is aborted, over TLS when `tls` is given (an `https://`
/// entry of `http.listeners`, with the `listener.name.http.ssl.*` settings or the node's
/// `ssl.*` ones; the files are reloaded when they change, as on Kafka listeners).
pub async fn serve_tls(
    listener: TcpListener,
    src: Arc<MetricsSource>,
    tls: Option<Arc<crate::tls::ServerTls>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many HTTP connections; closing");
            continue;
        };
        let src = src.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => serve_one(stream, peer, &src).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_one(s, peer, &src).await,
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
}

/// What reading a request gave: a request, or the response to an unreadable one.
enum Read {
    Request(HttpRequest),
    Refused(HttpResponse),
}

async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
) -> std::io::Result<Read> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Ok(Read::Refused(HttpResponse::text(
                400,
                "request head too large\n",
            )));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = match parse_request(&buf[..end]) {
        Ok(h) => h,
        Err(r) => return Ok(Read::Refused(r)),
    };
    let len = match head.content_length() {
        Ok(n) => n,
        Err(r) => return Ok(Read::Refused(r)),
    };
    if len > MAX_BODY_BYTES {
        return Ok(Read::Refused(HttpResponse::text(
            413,
            format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
        )));
    }
    let mut body = buf.split_off(end);
    while body.len() < len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Read::Request(HttpRequest { head, body, peer }))
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    src: &MetricsSource,
) -> std::io::Result<()> {
    let read = tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream, peer)).await;
    let (response, head_only) = match read {
        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Read::Refused(r))) => (r, false),
        Ok(Ok(Read::Request(req))) => (route(&req, src).await, req.head.method == Method::Head),
    };
    let bytes = response.encode(head_only);
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn src() -> MetricsSource {
        MetricsSource {
            request_metrics: Arc::new(crate::request_metrics::RequestMetrics::new()),
            broker: Arc::new(OnceLock::new()),
            console: Arc::new(crate::console::Console::new()),
            metrics_token: None,
        }
    }

    #[tokio::test]
    async fn parses_and_routes() {
        let s = src();
        let ok = |h: &[u8]| {
            parse_request(h)
                .map(|r| (r.method, r.path))
                .map_err(|r| r.status)
        };
        assert_eq!(
            ok(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok((Method::Get, "/metrics".to_string()))
        );
        let h =
            parse_request(b"POST /api/x?a=b HTTP/1.1\r\nContent-Length: 12\r\nX-A:  v \r\n\r\n")
                .map_err(|r| r.status);
        let h = h.expect("parses");
        assert_eq!((h.method, h.query.as_str()), (Method::Post, "a=b"));
        assert_eq!(h.content_length().map_err(|r| r.status), Ok(12));
        assert_eq!(h.header("x-a"), Some("v"));
        assert_eq!(ok(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), Err(400));
        let chunked = parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .map_err(|r| r.status)
            .expect("parses");
        assert_eq!(chunked.content_length().map_err(|r| r.status), Err(411));
        assert_eq!(ok(b"GET /metrics\r\n\r\n"), Err(400));
        assert_eq!(ok(b"GET metrics HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(ok(b"\xff\xfe / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(ok(b"GET / SPDY/3\r\n\r\n"), Err(400));
        assert_eq!(ok(b"no line end"), Err(400));
        let req = |method: Method, path: &str| HttpRequest {
            head: RequestHead {
                method,
                path: path.into(),
                query: String::new(),
                headers: vec![],
            },
            body: vec![],
            peer: "127.0.0.1:1".parse().expect("addr"),
        };
        assert_eq!(route(&req(Method::Get, "/nope"), &s).await.status, 404);
        assert_eq!(route(&req(Method::Other, "/metrics"), &s).await.status, 405);
        assert_eq!(route(&req(Method::Post, "/metrics"), &s).await.status, 405);
        assert_eq!(
            route(&req(Method::Get, "/health/live"), &s).await.status,
            200
        );
        // The console's page is served before the broker state exists; its API is not.
        assert_eq!(route(&req(Method::Get, "/"), &s).await.status, 200);
        assert_eq!(
            route(&req(Method::Get, "/api/overview"), &s).await.status,
            503
        );
        // No broker state yet: live, not ready.
        let r = route(&req(Method::Get, "/health/ready"), &s).await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("metadata"));
        let m = route(&req(Method::Get, "/metrics"), &s).await;
        assert_eq!(m.status, 200);
        // With http.metrics.bearer.token: 401 without the token or with a wrong one.
        let mut guarded = src();
        guarded.metrics_token = Some("s3cret".into());
        let with = |auth: Option<&str>| {
            let mut r = req(Method::Get, "/metrics");
            if let Some(a) = auth {
                r.head.headers.push(("authorization".into(), a.into()));
            }
            r
        };
        let denied = route(&with(None), &guarded).await;
        assert_eq!(denied.status, 401);
        assert!(denied.headers.iter().any(|(k, _)| *k == "WWW-Authenticate"));
        assert_eq!(
            route(&with(Some("Bearer nope")), &guarded).await.status,
            401
        );
        assert_eq!(
            route(&with(Some("Basic czNjcmV0")), &guarded).await.status,
            401
        );
        assert_eq!(
            route(&with(Some("Bearer s3cret")), &guarded).await.status,
            200
        );
        assert_eq!(
            route(&req(Method::Get, "/health/live"), &guarded)
                .await
                .status,
            200,
            "probes stay open"
        );
        assert!(m.body.contains("nagare_ready 0\n"));
        let head = String::from_utf8(m.encode(true)).unwrap_or_default();
        assert!(head.ends_with("\r\n\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", m.body.len())));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    }

    /// An `https://` HTTP listener: the TLS settings of a listener named `http`.
    #[tokio::test]
    async fn serves_over_tls() {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let dir = tempfile::tempdir().expect("dir");
        let pem = dir.path().join("http.pem");
        std::fs::write(
            &pem,
            format!(
                "{}{}",
                certified.key_pair.serialize_pem(),
                certified.cert.pem()
            ),
        )
        .expect("write");
        let mut props = std::collections::BTreeMap::new();
        props.insert(
            "listener.name.http.ssl.keystore.type".to_string(),
            "PEM".to_string(),
        );
        props.insert(
            "listener.name.http.ssl.keystore.location".to_string(),
            pem.display().to_string(),
        );
        let tls = crate::tls::ServerTls::for_listener(&props, "http").expect("tls");
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(serve_tls(l, Arc::new(src()), Some(tls)));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).expect("root");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut stream = connector.connect(name, tcp).await.expect("handshake");
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("live\n"), "{text}");

        // Plain HTTP to the TLS port gets no answer.
        let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET /health/live HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut out)).await;
        assert!(!String::from_utf8_lossy(&out).contains("200"));
    }
}
