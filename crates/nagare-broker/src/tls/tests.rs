//! TLS settings, and TLS listeners served end to end (handshake, requests, mTLS principals,
//! refusal of untrusted clients, certificate reload) with certificates made by the test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use kafka_protocol::protocol::Request as KafkaRequest;
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::authorizer::{AclOperation, Authorizer, Requester, Resource};
use crate::handlers::ListenerKind;
use crate::testing::{decode_response, TestBroker};

/// A CA that signs certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(vec![]).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("CA");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for `sans` with subject `dn` (DER order): (chain PEM, key PEM).
    fn issue(&self, sans: &[&str], dn: &[(DnType, &str)]) -> (String, String) {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn error(props: &BTreeMap<String, String>, listener: &str) -> TlsConfigError {
    match TlsSettings::from_props(props, Some(listener)).and_then(|s| s.server_config()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn listener_prefix_beats_plain_keys() {
    let p = props(&[
        ("ssl.client.auth", "none"),
        ("listener.name.internal.ssl.client.auth", "required"),
        ("ssl.endpoint.identification.algorithm", ""),
        ("ssl.enabled.protocols", "TLSv1.3"),
        (
            "ssl.principal.mapping.rules",
            "RULE:^CN=(.*?),.*$/$1/L,DEFAULT",
        ),
    ]);
    let internal = TlsSettings::from_props(&p, Some("INTERNAL")).expect("settings");
    assert_eq!(internal.client_auth, ClientAuth::Required);
    assert!(!internal.endpoint_identification);
    assert_eq!(internal.protocols.len(), 1);
    assert_eq!(
        internal.principal_mapper.map("CN=Bob,O=x").as_deref(),
        Some("bob")
    );
    let external = TlsSettings::from_props(&p, Some("EXTERNAL")).expect("settings");
    assert_eq!(external.client_auth, ClientAuth::None);
    // Defaults: both protocols, rustls' suites, host name checking on.
    let d = TlsSettings::from_props(&BTreeMap::new(), Some("SSL")).expect("defaults");
    assert_eq!(d.protocols.len(), 2);
    assert!(d.cipher_suites.is_empty() && d.endpoint_identification);
    assert_eq!(d.client_auth, ClientAuth::None);
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("ca");
    let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, "broker")]);
    let jks = dir.path().join("store.jks");
    std::fs::write(&jks, [0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2]).expect("write");
    let jks = jks.display().to_string();

    let e = error(&props(&[("ssl.keystore.type", "JKS")]), "SSL");
    assert_eq!(e.key, "ssl.keystore.type");
    assert!(e.reason.contains("PEM only"), "{e}");
    let e = error(
        &props(&[("listener.name.ssl.ssl.truststore.type", "PKCS12")]),
        "SSL",
    );
    assert_eq!(e.key, "listener.name.ssl.ssl.truststore.type");
    // A binary (JKS) file given without a type.
    let e = error(&props(&[("ssl.keystore.location", &jks)]), "SSL");
    assert_eq!(e.key, "ssl.keystore.location");
    assert!(e.reason.contains("not a PEM file"), "{e}");
    let e = error(
        &props(&[(
            "listener.name.ssl.ssl.keystore.location",
            "/no/such/file.pem",
        )]),
        "SSL",
    );
    assert_eq!(e.key, "listener.name.ssl.ssl.keystore.location");
    assert!(e.reason.contains("cannot read"), "{e}");
    // No key store at all.
    let e = error(&BTreeMap::new(), "SSL");
    assert_eq!(e.key, "ssl.keystore.location");
    // Half an inline key store.
    let e = error(&props(&[("ssl.keystore.certificate.chain", &chain)]), "SSL");
    assert!(e.reason.contains("ssl.keystore.key is missing"), "{e}");
    // An encrypted private key.
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let e = error(
        &props(&[
            ("ssl.keystore.certificate.chain", &chain),
            ("ssl.keystore.key", encrypted),
            ("ssl.key.password", "secret"),
        ]),
        "SSL",
    );
    assert_eq!(e.key, "ssl.keystore.certificate.chain");
    assert!(e.reason.contains("encrypted"), "{e}");
    let inline = [
        ("ssl.keystore.certificate.chain", chain.as_str()),
        ("ssl.keystore.key", key.as_str()),
    ];
    // Client authentication without a trust store.
    let mut p = props(&inline);
    p.insert("ssl.client.auth".into(), "required".into());
    let e = error(&p, "SSL");
    assert_eq!(e.key, "ssl.truststore.location");
    p.insert("ssl.client.auth".into(), "sometimes".into());
    assert_eq!(error(&p, "SSL").key, "ssl.client.auth");
    // Cipher suites and protocols.
    let mut p = props(&inline);
    p.insert(
        "ssl.cipher.suites".into(),
        "TLS_RSA_WITH_RC4_128_MD5".into(),
    );
    let e = error(&p, "SSL");
    assert_eq!(e.key, "ssl.cipher.suites");
    assert!(e.reason.contains("TLS_RSA_WITH_RC4_128_MD5"), "{e}");
    p.insert(
        "ssl.cipher.suites".into(),
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
    );
    p.insert("ssl.enabled.protocols".into(), "TLSv1.3".into());
    assert_eq!(error(&p, "SSL").key, "ssl.cipher.suites");
    p.insert("ssl.enabled.protocols".into(), "TLSv1.4".into());
    assert_eq!(error(&p, "SSL").key, "ssl.enabled.protocols");
    p.insert("ssl.enabled.protocols".into(), "TLSv1.1".into());
    assert_eq!(error(&p, "SSL").key, "ssl.enabled.protocols");
    let mut p = props(&inline);
    p.insert("ssl.principal.mapping.rules".into(), "RULE:x".into());
    assert_eq!(error(&p, "SSL").key, "ssl.principal.mapping.rules");
    p.insert(
        "ssl.endpoint.identification.algorithm".into(),
        "ldap".into(),
    );
    p.remove("ssl.principal.mapping.rules");
    assert_eq!(
        error(&p, "SSL").key,
        "ssl.endpoint.identification.algorithm"
    );
    // And the valid inline store with a chosen suite builds.
    let mut p = props(&inline);
    p.insert(
        "ssl.cipher.suites".into(),
        "TLS_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into(),
    );
    let s = TlsSettings::from_props(&p, Some("SSL")).expect("settings");
    assert_eq!(s.cipher_suites.len(), 2);
    s.server_config().expect("server config");
}

/// Records the principal of every authorization check.
#[derive(Default)]
struct SeenPrincipals(Mutex<Vec<String>>);

impl Authorizer for SeenPrincipals {
    fn authorize(&self, r: &Requester<'_>, _: AclOperation, _: &Resource<'_>) -> bool {
        self.0.lock().push(r.principal.to_string());
        true
    }
}

/// Serves `t`'s broker on a TLS listener named SSL.
async fn serve(t: &TestBroker, tls: Arc<ServerTls>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx =
        crate::network::ServeContext::for_broker(t.broker.clone(), "SSL", ListenerKind::Broker)
            .with_tls(tls);
    assert_eq!(ctx.security_protocol, crate::context::SecurityProtocol::Ssl);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(crate::network::serve_with(ctx.clone(), stream, peer));
        }
    });
    addr
}

type Client = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(addr: SocketAddr, config: rustls::ClientConfig) -> std::io::Result<Client> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// Sends `req` over `stream` and reads its response; an I/O error when the server closes.
async fn exchange<R: KafkaRequest>(
    t: &TestBroker,
    stream: &mut Client,
    req: &R,
    version: i16,
) -> std::io::Result<R::Response> {
    let frame = t.frame(req, version);
    let mut out = BytesMut::new();
    out.put_u32(frame.len() as u32);
    out.extend_from_slice(&frame);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let size = stream.read_u32().await? as usize;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await?;
    let mut b = bytes::Bytes::from(body);
    let resp = decode_response::<R>(b.copy_to_bytes(b.remaining()), version);
    Ok(resp)
}

fn client_settings(ca_pem: &str, identity: Option<&(String, String)>) -> rustls::ClientConfig {
    let mut p = props(&[("ssl.truststore.certificates", ca_pem)]);
    if let Some((chain, key)) = identity {
        p.insert("ssl.keystore.certificate.chain".into(), chain.clone());
        p.insert("ssl.keystore.key".into(), key.clone());
    }
    TlsSettings::from_props(&p, None)
        .and_then(|s| s.client_config())
        .expect("client config")
}

fn server_tls(ca_pem: &str, chain: &str, key: &str, auth: &str) -> Arc<ServerTls> {
    let p = props(&[
        ("listener.name.ssl.ssl.keystore.certificate.chain", chain),
        ("listener.name.ssl.ssl.keystore.key", key),
        ("ssl.truststore.certificates", ca_pem),
        ("ssl.client.auth", auth),
    ]);
    ServerTls::for_listener(&p, "SSL").expect("server TLS")
}

#[tokio::test]
async fn tls_round_trip_with_mtls_principal() {
    let seen = Arc::new(SeenPrincipals::default());
    let t = TestBroker::with_authorizer(seen.clone()).await;
    t.create_topic("t", 1).await;
    let ca = Ca::new("test-ca");
    let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, "broker")]);
    let addr = serve(&t, server_tls(&ca.pem(), &chain, &key, "required")).await;
    let alice = ca.issue(
        &[],
        &[
            (DnType::OrganizationName, "acme"),
            (DnType::OrganizationalUnitName, "eng"),
            (DnType::CommonName, "alice"),
        ],
    );
    let mut s = connect(addr, client_settings(&ca.pem(), Some(&alice)))
        .await
        .expect("handshake");
    let versions = exchange(&t, &mut s, &ApiVersionsRequest::default(), 3)
        .await
        .expect("ApiVersions");
    assert_eq!(versions.error_code, 0);
    assert!(!versions.api_keys.is_empty());
    let md = exchange(
        &t,
        &mut s,
        &MetadataRequest::default().with_topics(None),
        12,
    )
    .await
    .expect("Metadata");
    assert!(md
        .topics
        .iter()
        .any(|x| x.name.as_deref().map(|n| &**n) == Some("t")));
    // The handlers saw the certificate's subject, RFC 2253, as the principal.
    assert!(
        seen.0
            .lock()
            .iter()
            .any(|p| p == "User:CN=alice,OU=eng,O=acme"),
        "{:?}",
        seen.0.lock()
    );
    assert!(!seen.0.lock().iter().any(|p| p == "User:ANONYMOUS"));
}

#[tokio::test]
async fn untrusted_or_missing_client_certificates_are_refused() {
    let seen = Arc::new(SeenPrincipals::default());
    let t = TestBroker::with_authorizer(seen.clone()).await;
    let ca = Ca::new("test-ca");
    let other = Ca::new("other-ca");
    let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, "broker")]);
    let addr = serve(&t, server_tls(&ca.pem(), &chain, &key, "required")).await;
    let mallory = other.issue(&[], &[(DnType::CommonName, "mallory")]);
    // The client trusts the server; the server does not trust the client's CA. With TLS 1.3
    // the client learns it at its first read.
    for identity in [Some(&mallory), None] {
        let refused = match connect(addr, client_settings(&ca.pem(), identity)).await {
            Err(_) => true,
            Ok(mut s) => exchange(&t, &mut s, &ApiVersionsRequest::default(), 3)
                .await
                .is_err(),
        };
        assert!(refused, "client {identity:?} was served");
    }
    assert!(seen.0.lock().is_empty(), "{:?}", seen.0.lock());
    // A client that does not trust the server's CA gives up itself.
    assert!(connect(addr, client_settings(&other.pem(), None))
        .await
        .is_err());
}

#[tokio::test]
async fn requested_client_auth_lets_anonymous_in() {
    let seen = Arc::new(SeenPrincipals::default());
    let t = TestBroker::with_authorizer(seen.clone()).await;
    t.create_topic("t", 1).await;
    let ca = Ca::new("test-ca");
    let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, "broker")]);
    let addr = serve(&t, server_tls(&ca.pem(), &chain, &key, "requested")).await;
    let mut s = connect(addr, client_settings(&ca.pem(), None))
        .await
        .expect("handshake");
    exchange(
        &t,
        &mut s,
        &MetadataRequest::default().with_topics(None),
        12,
    )
    .await
    .expect("Metadata");
    assert!(seen.0.lock().iter().all(|p| p == "User:ANONYMOUS"));
    assert!(!seen.0.lock().is_empty());
}

/// The leaf certificate a connection's server presented.
fn server_cn(s: &Client) -> String {
    let certs = s
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate");
    principal::subject_rfc2253(&certs[0]).expect("subject")
}

#[tokio::test]
async fn reload_picks_up_new_certificates_and_keeps_old_on_error() {
    let t = TestBroker::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("test-ca");
    let keystore = dir.path().join("broker.pem");
    let truststore = dir.path().join("ca.pem");
    let write_store = |cn: &str| {
        let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, cn)]);
        std::fs::write(&keystore, format!("{key}{chain}")).expect("write key store");
    };
    write_store("first");
    std::fs::write(&truststore, ca.pem()).expect("write trust store");
    let p = props(&[
        ("ssl.keystore.type", "PEM"),
        ("ssl.keystore.location", &keystore.display().to_string()),
        ("ssl.truststore.type", "PEM"),
        ("ssl.truststore.location", &truststore.display().to_string()),
    ]);
    let tls = ServerTls::for_listener(&p, "SSL").expect("server TLS");
    let addr = serve(&t, tls.clone()).await;
    let client = || client_settings(&ca.pem(), None);
    let first = connect(addr, client()).await.expect("handshake");
    assert_eq!(server_cn(&first), "CN=first");
    assert!(!tls.reload_if_changed(), "nothing changed yet");

    // A renewed certificate (the size differs, so even a coarse mtime sees the change).
    write_store("second-certificate");
    assert!(tls.reload_if_changed());
    let second = connect(addr, client()).await.expect("handshake");
    assert_eq!(server_cn(&second), "CN=second-certificate");

    // A broken file: logged, the previous certificate stays.
    std::fs::write(&keystore, "-----BEGIN GARBAGE-----\n").expect("write");
    assert!(!tls.reload_if_changed());
    let third = connect(addr, client()).await.expect("handshake");
    assert_eq!(server_cn(&third), "CN=second-certificate");
}

/// Record batches (one ~200 KB record each, non-idempotent) for `count` produces.
fn big_batch(i: usize) -> bytes::Bytes {
    let value = bytes::Bytes::from(vec![b'a' + i as u8; 200_000]);
    crate::testing::encode_batch(&[crate::testing::plain_record(0, 0, value)]).freeze()
}

/// Produce and fetch over TLS: fetched record regions (more than one read chunk) are read
/// from the segment and encrypted, and arrive intact.
#[tokio::test]
async fn fetch_over_tls_reads_records_from_the_segment() {
    use kafka_protocol::messages::{
        fetch_request, produce_request, FetchRequest, ProduceRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::RecordBatchDecoder;
    let t = TestBroker::start().await;
    t.create_topic("big", 1).await;
    let ca = Ca::new("test-ca");
    let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, "broker")]);
    let addr = serve(&t, server_tls(&ca.pem(), &chain, &key, "none")).await;
    let mut s = connect(addr, client_settings(&ca.pem(), None))
        .await
        .expect("handshake");
    let topic = || TopicName(StrBytes::from_static_str("big"));
    for i in 0..3 {
        let produce = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(big_batch(i))),
                ])]);
        let r = exchange(&t, &mut s, &produce, 9).await.expect("Produce");
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(8 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(4 << 20)])]);
    let r = exchange(&t, &mut s, &fetch, 11).await.expect("Fetch");
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 3);
    let mut records = p.records.clone().expect("records");
    assert!(records.len() > 2 * super::super::network::TLS_RECORDS_CHUNK);
    let mut values = Vec::new();
    while records.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut records).expect("batch");
        values.extend(set.records.into_iter().map(|r| r.value.expect("value")));
    }
    assert_eq!(values.len(), 3);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v.len(), 200_000);
        assert!(v.iter().all(|&b| b == b'a' + i as u8), "record {i} intact");
    }
}

/// nagare-client over TLS with the client side built from Kafka keys: host name checking
/// (`ssl.endpoint.identification.algorithm`) against the address connected to, and a client
/// certificate.
#[tokio::test]
async fn nagare_client_connects_over_tls() {
    let t = TestBroker::start().await;
    let ca = Ca::new("test-ca");
    // The server certificate names only `localhost`; the client connects to 127.0.0.1.
    let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, "broker")]);
    let addr = serve(&t, server_tls(&ca.pem(), &chain, &key, "required")).await;
    let bob = ca.issue(&[], &[(DnType::CommonName, "bob")]);
    let options = |endpoint_check: &str| {
        let p = props(&[
            ("ssl.truststore.certificates", ca.pem().as_str()),
            ("ssl.keystore.certificate.chain", bob.0.as_str()),
            ("ssl.keystore.key", bob.1.as_str()),
            ("ssl.endpoint.identification.algorithm", endpoint_check),
        ]);
        let config = TlsSettings::from_props(&p, None)
            .and_then(|s| s.client_config())
            .expect("client config");
        nagare_client::ConnectionOptions {
            tls: Some(nagare_client::TlsOptions {
                config: Arc::new(config),
                server_name: None,
            }),
            ..Default::default()
        }
    };
    let e = nagare_client::Connection::connect_with(&addr.to_string(), "t", options("https"))
        .await
        .expect_err("127.0.0.1 is not in the certificate");
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    let mut conn = nagare_client::Connection::connect_with(&addr.to_string(), "t", options(""))
        .await
        .expect("connect without host name checking");
    let md = conn
        .send(&MetadataRequest::default().with_topics(None))
        .await
        .expect("Metadata over TLS");
    assert_eq!(md.brokers.len(), 1);
    // With the name the certificate carries, the check passes.
    let mut named = options("https");
    if let Some(tls) = named.tls.as_mut() {
        tls.server_name = Some("localhost".into());
    }
    nagare_client::Connection::connect_with(&addr.to_string(), "t", named)
        .await
        .expect("connect as localhost");
}

/// A TLS listener whose context lacks a TLS configuration serves nobody, in TLS or not.
#[tokio::test]
async fn a_tls_listener_without_tls_configuration_serves_nothing() {
    let t = TestBroker::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx =
        crate::network::ServeContext::for_broker(t.broker.clone(), "SSL", ListenerKind::Broker);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(crate::network::serve_with(ctx.clone(), stream, peer));
        }
    });
    let plain = nagare_client::Connection::connect(&addr.to_string(), "t").await;
    assert!(plain.is_err(), "served in the clear");
    let ca = Ca::new("test-ca");
    assert!(connect(addr, client_settings(&ca.pem(), None))
        .await
        .is_err());
}

/// Startup refuses an SSL listener whose key store does not load, naming the key, before
/// touching the data directory.
#[tokio::test]
async fn startup_fails_on_a_broken_key_store() {
    let dir = tempfile::tempdir().expect("dir");
    let props = props(&[
        ("log.dirs", &dir.path().join("data").display().to_string()),
        ("listeners", "SSL://127.0.0.1:0,CONTROLLER://127.0.0.1:0"),
        (
            "listener.security.protocol.map",
            "SSL:SSL,CONTROLLER:PLAINTEXT",
        ),
        ("listener.name.ssl.ssl.keystore.type", "PKCS12"),
        ("ssl.keystore.location", "/no/such/store.p12"),
    ]);
    let (config, _) = crate::config::BrokerConfig::from_props(props).expect("config");
    let e = match crate::server::start(config).await {
        Ok(_) => panic!("started with a PKCS12 key store"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("listener.name.ssl.ssl.keystore.type") && e.contains("PEM only"),
        "{e}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "the data directory was created"
    );
}

/// The client side for the connections a node opens: none for plaintext listeners, TLS with
/// the listener's trust store, and none (with a warning) without a trust store, so a single
/// node with a key store only still starts.
#[test]
fn outbound_client_options_follow_the_listener() {
    let ca = Ca::new("test-ca");
    let (chain, key) = ca.issue(&["localhost"], &[(DnType::CommonName, "node")]);
    let dir = tempfile::tempdir().expect("dir");
    let base = [
        ("log.dirs", dir.path().display().to_string()),
        (
            "listeners",
            "SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093".to_string(),
        ),
        (
            "listener.security.protocol.map",
            "SSL:SSL,CONTROLLER:PLAINTEXT".to_string(),
        ),
        ("ssl.keystore.certificate.chain", chain.clone()),
        ("ssl.keystore.key", key.clone()),
    ];
    let load = |extra: &[(&str, String)]| {
        let mut p: BTreeMap<String, String> = base
            .iter()
            .chain(extra.iter())
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        p.insert("node.id".into(), "1".into());
        crate::config::BrokerConfig::from_props(p)
            .expect("config")
            .0
    };
    let c = load(&[]);
    assert!(client_options(&c, "CONTROLLER")
        .expect("plaintext")
        .is_none());
    assert!(client_options(&c, "SSL").expect("no trust store").is_none());
    let c = load(&[("ssl.truststore.certificates", ca.pem())]);
    assert!(client_options(&c, "SSL").expect("TLS").is_some());
}

/// The connections a node opens pick up changed key and trust store files: one set of
/// `TlsOptions` (as the replica fetchers, marker sender and controller channel each keep)
/// first distrusts the server, then — after the trust store file changes — trusts it but
/// presents a client certificate the server refuses, then — after the key store changes —
/// connects and is served.
#[tokio::test]
async fn outbound_connections_pick_up_changed_key_and_trust_stores() {
    let t = TestBroker::start().await;
    let old_ca = Ca::new("old-ca");
    let new_ca = Ca::new("new-ca");
    let (chain, key) = new_ca.issue(&["localhost"], &[(DnType::CommonName, "broker")]);
    let addr = serve(&t, server_tls(&new_ca.pem(), &chain, &key, "required")).await;

    let dir = tempfile::tempdir().expect("dir");
    let keystore = dir.path().join("node.pem");
    let truststore = dir.path().join("ca.pem");
    let write_identity = |ca: &Ca, cn: &str| {
        let (chain, key) = ca.issue(&[], &[(DnType::CommonName, cn)]);
        std::fs::write(&keystore, format!("{key}{chain}")).expect("write key store");
    };
    write_identity(&old_ca, "node-old");
    std::fs::write(&truststore, old_ca.pem()).expect("write trust store");
    let p = props(&[
        ("ssl.keystore.location", &keystore.display().to_string()),
        ("ssl.truststore.location", &truststore.display().to_string()),
        ("ssl.endpoint.identification.algorithm", ""),
    ]);
    let client = ClientTls::new("SSL", TlsSettings::from_props(&p, None).expect("settings"))
        .expect("client TLS");
    let options = nagare_client::ConnectionOptions {
        tls: Some(client.options().expect("options")),
        ..Default::default()
    };
    let metadata = |options: nagare_client::ConnectionOptions| async move {
        let mut conn =
            nagare_client::Connection::connect_with(&addr.to_string(), "node", options).await?;
        conn.send(&MetadataRequest::default().with_topics(None))
            .await
    };
    let e = metadata(options.clone())
        .await
        .expect_err("the server's CA is not trusted yet");
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    assert!(!client.reload_if_changed(), "nothing changed yet");

    // The new CA in the trust store: the server is trusted, but the server refuses the
    // client certificate of the old CA.
    std::fs::write(&truststore, format!("{}{}", new_ca.pem(), old_ca.pem()))
        .expect("write trust store");
    assert!(client.reload_if_changed());
    assert!(
        metadata(options.clone()).await.is_err(),
        "the server accepted a certificate of a CA it does not trust"
    );

    // A certificate from the new CA: served.
    write_identity(&new_ca, "node-renewed");
    assert!(client.reload_if_changed());
    let md = metadata(options.clone())
        .await
        .expect("Metadata with the renewed certificate");
    assert_eq!(md.brokers.len(), 1);

    // A broken key store: logged, the renewed certificate stays in use.
    std::fs::write(&keystore, "-----BEGIN GARBAGE-----\n").expect("write");
    assert!(!client.reload_if_changed());
    metadata(options).await.expect("still served");
}
