//! The HTTP listener: a minimal HTTP/1.1 server for `GET` (and `HEAD`) of `/metrics`,
//! `/health/live` and `/health/ready`, one request per connection (`Connection: close`,
//! which Prometheus and Kubernetes probes handle). Request parsing and routing are sans-I/O
//! ([`parse_request`], [`route`]); the I/O bounds what a client can make the node hold: the
//! request head is at most [`MAX_HEAD_BYTES`], read within [`READ_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed at once).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{prometheus, render, MetricsSource};

/// The largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head.
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
    /// Anything else (answered 405).
    Other,
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body (left out for `HEAD`, its length still sent).
    pub body: String,
}

impl HttpResponse {
    fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
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

/// Parses a request head's request line: the method and the path without its query.
/// Anything that is not `METHOD SP target SP HTTP/1.x` is a 400.
pub fn parse_request(head: &[u8]) -> Result<(Method, String), HttpResponse> {
    let bad = |why: &str| HttpResponse::text(400, format!("bad request: {why}\n"));
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| bad("no request line"))?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| bad("not UTF-8"))?;
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
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or(target)
        .to_string();
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Method::Other,
        _ => return Err(bad("malformed method")),
    };
    Ok((method, path))
}

/// Answers a parsed request.
pub async fn route(method: Method, path: &str, src: &MetricsSource) -> HttpResponse {
    let known = matches!(path, "/metrics" | "/health/live" | "/health/ready");
    if !known {
        return HttpResponse::text(
            404,
            "not found: try /metrics, /health/live, /health/ready\n",
        );
    }
    if method == Method::Other {
        return HttpResponse::text(405, "method not allowed\n");
    }
    match path {
        "/metrics" => HttpResponse {
            status: 200,
            content_type: prometheus::CONTENT_TYPE,
            body: render(src).await,
        },
        "/health/live" => HttpResponse::text(200, "live\n"),
        _ => match src.not_ready() {
            None => HttpResponse::text(200, "ready\n"),
            Some(why) => HttpResponse::text(503, format!("not ready: {why}\n")),
        },
    }
}

/// Serves `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, src: Arc<MetricsSource>) {
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
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, &src).await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
}

async fn serve_one(mut stream: TcpStream, src: &MetricsSource) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = head_end(&buf) {
                return Ok(Some(end));
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Ok(None);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let (response, head_only) = match read {
        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => (HttpResponse::text(400, "request head too large\n"), false),
        Ok(Ok(Some(end))) => match parse_request(&buf[..end]) {
            Ok((method, path)) => (route(method, &path, src).await, method == Method::Head),
            Err(r) => (r, false),
        },
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
        }
    }

    #[tokio::test]
    async fn parses_and_routes() {
        let s = src();
        let ok = |h: &[u8]| parse_request(h).map_err(|r| r.status);
        assert_eq!(
            ok(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok((Method::Get, "/metrics".to_string()))
        );
        assert_eq!(ok(b"GET /metrics\r\n\r\n"), Err(400));
        assert_eq!(ok(b"GET metrics HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(ok(b"\xff\xfe / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(ok(b"GET / SPDY/3\r\n\r\n"), Err(400));
        assert_eq!(ok(b"no line end"), Err(400));
        assert_eq!(route(Method::Get, "/nope", &s).await.status, 404);
        assert_eq!(route(Method::Other, "/metrics", &s).await.status, 405);
        assert_eq!(route(Method::Get, "/health/live", &s).await.status, 200);
        // No broker state yet: live, not ready.
        let r = route(Method::Get, "/health/ready", &s).await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("metadata"));
        let m = route(Method::Get, "/metrics", &s).await;
        assert_eq!(m.status, 200);
        assert!(m.body.contains("nagare_ready 0\n"));
        let head = String::from_utf8(m.encode(true)).unwrap_or_default();
        assert!(head.ends_with("\r\n\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", m.body.len())));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    }
}
