//! A minimal HTTPS GET for OAUTHBEARER's `sasl.oauthbearer.jwks.endpoint.url=https://...`
//! (KIP-768): the broker fetches the JSON Web Key Set at startup and then every
//! `sasl.oauthbearer.jwks.endpoint.refresh.ms` on a background thread, as Kafka's
//! `RefreshingHttpsJwks` does. rustls with the ring provider; the server is checked against
//! the JAAS option `ssl.truststore.location` (a PEM CA file, as Kafka reads SSL settings for
//! the JWKS endpoint from the OAUTHBEARER JAAS options) or else the Mozilla roots.
//!
//! HTTP/1.0 with `Connection: close`, so the body is never chunked and ends at EOF; only
//! 200 answers are accepted, and bodies are capped at [`MAX_BODY`].

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;

/// The largest JWKS document accepted (a key set is a few kB).
pub const MAX_BODY: usize = 1 << 20;

/// How long a connection, or one read, may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An `https://host[:port]/path` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    /// Host name or IPv4 address (what the certificate must name).
    pub host: String,
    /// TCP port (443 by default).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpsUrl {
    /// Parses an `https://` URL; other schemes, user info and IPv6 literals are refused.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url:?} is not an https:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || authority.starts_with('[') {
            return Err(format!(
                "{url:?}: unsupported host (no user info or IPv6 literals)"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url:?}: bad port {p:?}"))?,
            ),
            None => (authority, 443),
        };
        Ok(HttpsUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// The TLS client settings of the JWKS fetch: `trust_pem` (PEM CA certificates) if given,
/// else the Mozilla roots of `webpki-roots`. (ring, not aws-lc: the build excludes cmake; ring
/// lacks only the post-quantum key exchange rustls now prefers.)
#[allow(deprecated)]
pub fn client_config(trust_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match trust_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("bad PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("no certificate in the trust store".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// GETs `url` over TLS (blocking; call it off the async runtime) and returns the body of a
/// 200 answer as text.
pub fn get(url: &HttpsUrl, tls: &Arc<rustls::ClientConfig>) -> Result<String, String> {
    let target = format!("https://{}:{}{}", url.host, url.port, url.path);
    let fail = |e: String| format!("GET {target}: {e}");
    let name = ServerName::try_from(url.host.clone()).map_err(|e| fail(e.to_string()))?;
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("the host has no address".into()))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| fail(e.to_string()))?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    let conn = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| fail(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: nagare\r\nConnection: close\r\n\r\n",
        url.path, url.host
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.len() > MAX_BODY + 16 * 1024 {
                    return Err(fail("answer too large".into()));
                }
            }
            // Servers that close without TLS close_notify: the HTTP/1.0 body ends at EOF anyway.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    parse_response(&answer).map_err(fail)
}

/// The body of an HTTP/1.x answer, if its status is 200.
fn parse_response(answer: &[u8]) -> Result<String, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the HTTP headers")?;
    let head = std::str::from_utf8(&answer[..split]).map_err(|_| "headers not UTF-8")?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("HTTP status {status_line:?}"));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err("chunked answer to an HTTP/1.0 request".into());
    }
    String::from_utf8(answer[split + 4..].to_vec()).map_err(|_| "body not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            HttpsUrl::parse("https://idp.example.com/.well-known/jwks.json"),
            Ok(HttpsUrl {
                host: "idp.example.com".into(),
                port: 443,
                path: "/.well-known/jwks.json".into()
            })
        );
        assert_eq!(
            HttpsUrl::parse("https://127.0.0.1:8443").map(|u| (u.port, u.path)),
            Ok((8443, "/".into()))
        );
        for bad in [
            "http://x/",
            "https:///p",
            "https://u:p@x/",
            "https://[::1]/",
            "https://x:99999/",
        ] {
            assert!(HttpsUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_answers() {
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"keys\":[]}"
            ),
            Ok("{\"keys\":[]}".into())
        );
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello")
                .is_err()
        );
    }
}
