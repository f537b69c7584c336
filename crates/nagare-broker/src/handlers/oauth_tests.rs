//! SASL/OAUTHBEARER on a SASL_PLAINTEXT listener, in process: a JWT signed by a key of the
//! JWKS file authenticates as its `sub` with a session no longer than the token; a refused
//! token gets RFC 7628's error challenge, then SASL_AUTHENTICATION_FAILED and a close; the
//! JWKS file is re-read when it changes, an `https://` JWKS is fetched and refreshed;
//! configuration errors name the key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::{
    MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use nagare_protocol::error::ResponseError;
use nagare_sasl::oauthbearer::{client_initial_response, INVALID_TOKEN_CHALLENGE};

use crate::context::{ConnectionContext, KafkaPrincipal};
use crate::testing::{Answer, TestBroker};

fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A P-256 signing key and its JWK.
struct Key {
    pair: EcdsaKeyPair,
    kid: String,
}

impl Key {
    fn new(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        Key {
            pair,
            kid: kid.into(),
        }
    }

    fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
               "x": b64u(&p[1..33]), "y": b64u(&p[33..65])})
    }

    fn sign(&self, claims: Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signed = format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .expect("sign");
        format!("{signed}.{}", b64u(sig.as_ref()))
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn claims(sub: &str, exp_in_s: i64) -> Value {
    json!({"sub": sub, "iss": "https://idp.test", "aud": "kafka",
           "iat": now_s() - 5, "exp": now_s() + exp_in_s})
}

fn write_jwks(path: &std::path::Path, keys: &[&Key]) {
    let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    std::fs::write(path, doc.to_string()).expect("write jwks");
}

async fn oauth_broker(jwks: &std::path::Path, extra: &[(&str, &str)]) -> TestBroker {
    let url = format!("file://{}", jwks.display());
    let mut props = vec![
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
        ),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        ("sasl.enabled.mechanisms", "OAUTHBEARER"),
        (
            "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url",
            url.as_str(),
        ),
        ("sasl.oauthbearer.expected.audience", "kafka,other"),
        ("sasl.oauthbearer.expected.issuer", "https://idp.test"),
        ("connection.failed.authentication.delay.ms", "10"),
    ];
    props.extend_from_slice(extra);
    TestBroker::build(&props, None).await
}

async fn login(t: &TestBroker, token: &str) -> (Arc<ConnectionContext>, SaslAuthenticateResponse) {
    let conn = t.connection_on("SASL_PLAINTEXT");
    let h: kafka_protocol::messages::SaslHandshakeResponse = t
        .send_on(
            &conn,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("OAUTHBEARER")),
            1,
        )
        .await
        .expect("handshake");
    assert_eq!(h.error_code, 0);
    let a = auth(t, &conn, client_initial_response(token, &BTreeMap::new())).await;
    (conn, a)
}

async fn auth(
    t: &TestBroker,
    conn: &Arc<ConnectionContext>,
    bytes: Vec<u8>,
) -> SaslAuthenticateResponse {
    t.send_on(
        conn,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
        2,
    )
    .await
    .expect("authenticate answer")
}

/// A refused token: the error challenge, then (after the client's 0x01) the failure.
async fn refused(t: &TestBroker, token: &str) {
    let (conn, a) = login(t, token).await;
    assert_eq!(a.error_code, 0, "the refusal comes as a challenge first");
    assert_eq!(&a.auth_bytes[..], INVALID_TOKEN_CHALLENGE);
    assert!(!conn.sasl.close_requested());
    let fin = auth(t, &conn, vec![1]).await;
    assert_eq!(
        fin.error_code,
        ResponseError::SaslAuthenticationFailed.code()
    );
    assert!(fin
        .error_message
        .is_some_and(|m| m.contains("invalid_token")));
    assert!(conn.sasl.close_requested());
    assert!(!conn.sasl.is_authenticated());
}

#[tokio::test]
async fn oauthbearer_accepts_valid_tokens_and_refuses_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let k1 = Key::new("k1");
    write_jwks(&jwks, &[&k1]);
    let t = oauth_broker(&jwks, &[("connections.max.reauth.ms", "600000")]).await;

    // A valid token: principal from `sub`, session capped by the token's 120 s.
    let (conn, a) = login(&t, &k1.sign(claims("alice", 120))).await;
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    assert!(a.auth_bytes.is_empty());
    assert!(
        a.session_lifetime_ms > 100_000 && a.session_lifetime_ms <= 120_000,
        "{}",
        a.session_lifetime_ms
    );
    assert_eq!(conn.principal(), KafkaPrincipal::user("alice"));
    assert!(matches!(
        t.send_on(&conn, &MetadataRequest::default(), 12).await,
        Answer::Response(_)
    ));
    // A long-lived token: connections.max.reauth.ms is the cap.
    let (_, a) = login(&t, &k1.sign(claims("alice", 7200))).await;
    assert_eq!(a.session_lifetime_ms, 600_000);

    // Expired, wrong audience, wrong issuer, signed by a key not in the JWKS.
    refused(&t, &k1.sign(claims("alice", -3600))).await;
    let mut c = claims("alice", 120);
    c["aud"] = json!("elsewhere");
    refused(&t, &k1.sign(c)).await;
    let mut c = claims("alice", 120);
    c["iss"] = json!("https://evil.test");
    refused(&t, &k1.sign(c)).await;
    let stranger = Key::new("k2");
    refused(&t, &stranger.sign(claims("mallory", 120))).await;

    // The JWKS file is re-read when it changes: k2 becomes valid. (Give the file a
    // different size so the change is seen even within the mtime's granularity.)
    write_jwks(&jwks, &[&k1, &stranger]);
    let (conn, a) = login(&t, &stranger.sign(claims("bob", 120))).await;
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    assert_eq!(conn.principal(), KafkaPrincipal::user("bob"));

    // Garbage instead of a client initial response fails at once.
    let conn = t.connection_on("SASL_PLAINTEXT");
    let _: kafka_protocol::messages::SaslHandshakeResponse = t
        .send_on(
            &conn,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("OAUTHBEARER")),
            1,
        )
        .await
        .expect("handshake");
    let a = auth(&t, &conn, b"not oauthbearer".to_vec()).await;
    assert_eq!(a.error_code, ResponseError::SaslAuthenticationFailed.code());
    assert!(conn.sasl.close_requested());
}

#[tokio::test]
async fn oauthbearer_principal_claim_is_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let k1 = Key::new("k1");
    write_jwks(&jwks, &[&k1]);
    let t = oauth_broker(
        &jwks,
        &[(
            "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.sub.claim.name",
            "client_id",
        )],
    )
    .await;
    let mut c = claims("alice", 120);
    c["client_id"] = json!("svc-1");
    let (conn, a) = login(&t, &k1.sign(c)).await;
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    assert_eq!(conn.principal(), KafkaPrincipal::user("svc-1"));
    // Without the claim the token is refused.
    refused(&t, &k1.sign(claims("alice", 120))).await;
}

#[test]
fn oauthbearer_configuration_errors() {
    use crate::config::BrokerConfig;
    use crate::sasl::SaslSettings;
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[&Key::new("k1")]);
    let load = |extra: &[(&str, &str)]| {
        let mut props = BTreeMap::new();
        props.insert(
            "listeners".to_string(),
            "PLAINTEXT://:9092,SASL_PLAINTEXT://:9094,CONTROLLER://:9093".to_string(),
        );
        props.insert(
            "listener.security.protocol.map".to_string(),
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT".to_string(),
        );
        props.insert(
            "sasl.enabled.mechanisms".to_string(),
            "OAUTHBEARER".to_string(),
        );
        for (k, v) in extra {
            props.insert(k.to_string(), v.to_string());
        }
        let (c, warnings) = BrokerConfig::from_props(props).expect("config");
        assert!(
            !warnings.iter().any(|w| w.contains("oauthbearer")),
            "{warnings:?}"
        );
        SaslSettings::from_config(&c)
    };
    let e = load(&[]).expect_err("no JWKS");
    assert!(e.contains("sasl.oauthbearer.jwks.endpoint.url"), "{e}");
    let e =
        load(&[("sasl.oauthbearer.jwks.endpoint.url", "http://idp.test/jwks")]).expect_err("http");
    assert!(e.contains("only file:// and https://"), "{e}");
    let e = load(&[(
        "sasl.oauthbearer.jwks.endpoint.url",
        "file:///nonexistent/jwks.json",
    )])
    .expect_err("missing file");
    assert!(e.contains("cannot read JWKS file"), "{e}");
    let url = format!("file://{}", jwks.display());
    let ok = load(&[
        ("sasl.oauthbearer.jwks.endpoint.url", url.as_str()),
        ("sasl.oauthbearer.clock.skew.seconds", "5"),
        (
            "listener.name.sasl_plaintext.sasl.oauthbearer.expected.audience",
            "a, b",
        ),
        (
            "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        ),
    ])
    .expect("ok");
    let o = ok
        .listener("SASL_PLAINTEXT")
        .and_then(|l| l.oauth())
        .expect("oauth settings");
    assert_eq!(o.validator.clock_skew_seconds, 5);
    assert_eq!(o.validator.expected_audience, vec!["a", "b"]);
    assert_eq!(o.validator.sub_claim_name, "sub");
    assert_eq!(o.jwks().len(), 1);
}

/// A tiny HTTPS server (self-signed certificate for `localhost`) answering every GET with
/// the current JWKS, standing in for an identity provider's JWKS endpoint.
struct JwksServer {
    port: u16,
    body: Arc<parking_lot::Mutex<String>>,
    ca_pem: String,
}

impl JwksServer {
    fn start(jwks: Value) -> JwksServer {
        use std::io::{Read, Write};
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let ca_pem = certified.cert.pem();
        let chain = vec![certified.cert.der().clone()];
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = Arc::new(parking_lot::Mutex::new(jwks.to_string()));
        let served = body.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let answer = if text.starts_with("GET /jwks.json ") {
                    let body = served.lock().clone();
                    format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                } else {
                    "HTTP/1.0 404 Not Found\r\n\r\n".to_string()
                };
                let _ = tls.write_all(answer.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        JwksServer { port, body, ca_pem }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_jwks_over_https_is_fetched_and_refreshed() {
    let k1 = Key::new("k1");
    let k2 = Key::new("k2");
    let server = JwksServer::start(json!({"keys": [k1.jwk()]}));
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("idp-ca.pem");
    std::fs::write(&ca, &server.ca_pem).expect("write ca");
    let url = format!("https://localhost:{}/jwks.json", server.port);
    let jaas = format!(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ssl.truststore.location=\"{}\";",
        ca.display()
    );
    let props = [
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
        ),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        ("sasl.enabled.mechanisms", "OAUTHBEARER"),
        ("sasl.oauthbearer.jwks.endpoint.url", url.as_str()),
        // An hour, Kafka's default: the rotation below is found through the unknown `kid`.
        ("sasl.oauthbearer.jwks.endpoint.refresh.ms", "3600000"),
        ("listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config", jaas.as_str()),
        ("connection.failed.authentication.delay.ms", "10"),
    ];
    let t = TestBroker::build(&props, None).await;
    let (conn, a) = login(&t, &k1.sign(claims("alice", 120))).await;
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    assert_eq!(conn.principal(), KafkaPrincipal::user("alice"));
    // The endpoint rotates its keys. With an hour's refresh interval, the first token with
    // the new `kid` is refused but expedites a fetch; a later attempt is accepted.
    *server.body.lock() = json!({"keys": [k1.jwk(), k2.jwk()]}).to_string();
    refused(&t, &k2.sign(claims("bob", 120))).await;
    let mut accepted = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (_, a) = login(&t, &k2.sign(claims("bob", 120))).await;
        if a.error_code == 0 && a.auth_bytes.is_empty() {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "the rotated key was never fetched");

    // Without the JAAS trust store the self-signed endpoint is not trusted: a startup error.
    use crate::config::BrokerConfig;
    use crate::sasl::SaslSettings;
    let mut untrusted: BTreeMap<String, String> = props
        .iter()
        .filter(|(k, _)| !k.ends_with("jaas.config"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (c, _) = BrokerConfig::from_props(untrusted.clone()).expect("config");
    let e = SaslSettings::from_config(&c).expect_err("untrusted certificate");
    assert!(e.contains("GET https://localhost"), "{e}");
    untrusted.insert(
        "sasl.oauthbearer.jwks.endpoint.url".into(),
        format!("https://localhost:{}/missing", server.port),
    );
    untrusted.insert(
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config".into(),
        jaas.clone(),
    );
    let (c, _) = BrokerConfig::from_props(untrusted).expect("config");
    let e = SaslSettings::from_config(&c).expect_err("404");
    assert!(e.contains("404"), "{e}");
}

/// nagare-client's OAUTHBEARER login over a real socket to a SASL_PLAINTEXT listener that
/// validates JWTs against a JWKS file: a signed token is served as its `sub` (and the session
/// lifetime the token allows is taken), an expired one is refused with the broker's error.
#[tokio::test]
async fn nagare_client_logs_in_with_a_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let key = Key::new("k1");
    write_jwks(&jwks, &[&key]);
    let t = oauth_broker(&jwks, &[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let ctx = crate::network::ServeContext::for_broker(
        t.broker.clone(),
        "SASL_PLAINTEXT",
        crate::handlers::ListenerKind::Broker,
    );
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(crate::network::serve_with(ctx.clone(), stream, peer));
        }
    });
    let options = |token: String| nagare_client::ConnectionOptions {
        sasl: Some(nagare_client::SaslCredentials {
            mechanism: "OAUTHBEARER".into(),
            username: String::new(),
            password: token,
        }),
        ..Default::default()
    };
    let mut conn = nagare_client::Connection::connect_with(
        &addr,
        "oauth",
        options(key.sign(claims("alice", 600))),
    )
    .await
    .expect("login with a valid token");
    let md = conn
        .send(&MetadataRequest::default().with_topics(None))
        .await
        .expect("served");
    assert_eq!(md.brokers.len(), 1);
    let e = nagare_client::Connection::connect_with(
        &addr,
        "oauth",
        options(key.sign(claims("alice", -60))),
    )
    .await
    .expect_err("an expired token");
    assert!(e.to_string().contains("invalid_token"), "{e}");
    let other = Key::new("k2");
    let e = nagare_client::Connection::connect_with(
        &addr,
        "oauth",
        options(other.sign(claims("bob", 600))),
    )
    .await
    .expect_err("a token signed by a key outside the JWKS");
    assert!(e.to_string().contains("invalid_token"), "{e}");
}
