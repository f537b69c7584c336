//! TLS everywhere with real processes (issue 14): 1 controller and 2 brokers whose client,
//! inter-broker and controller listeners are all SSL with `ssl.client.auth=required`, with a
//! CA and certificates made here. Brokers register and fetch metadata from the controller over
//! TLS, the follower replicates over TLS (an RF=2 `acks=all` produce only completes once it
//! has), and a client with a certificate produces and consumes; a client without one is
//! refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::block_on;
use common::cluster::TestCluster;
use common::replication::{eventually, sorted};
use nagare_client::{
    Acks, Client, ClientConfig, Compression, NewTopic, ProduceRecord, ResponseError,
};

const TOPIC: &str = "secure";
const READY: Duration = Duration::from_secs(60);

/// The CA's PEM and a (key + chain) PEM for `cn`, valid for 127.0.0.1.
fn pki(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(vec![]).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "cluster-ca");
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issue = |cn: &str| {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
        format!("{}{}", key.serialize_pem(), cert.pem())
    };
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
    let node_path = dir.join("node.pem");
    std::fs::write(&node_path, issue("nagare-node")).expect("write node key store");
    (
        ca_path.display().to_string(),
        node_path.display().to_string(),
        issue("test-client"),
    )
}

/// A nagare-client configuration speaking TLS with `identity` (key + chain PEM) if given.
fn client_config(bootstrap: &str, ca: &str, identity: Option<&str>) -> ClientConfig {
    let mut props = std::collections::BTreeMap::new();
    props.insert("ssl.truststore.location".to_string(), ca.to_string());
    if let Some(pem) = identity {
        props.insert(
            "ssl.keystore.certificate.chain".to_string(),
            pem.to_string(),
        );
        props.insert("ssl.keystore.key".to_string(), pem.to_string());
    }
    let tls = nagare_broker::tls::TlsSettings::from_props(&props, None)
        .and_then(|s| s.client_config())
        .expect("client TLS");
    let mut config = ClientConfig::new(bootstrap);
    config.connection.tls = Some(nagare_client::TlsOptions {
        config: Arc::new(tls),
        server_name: None,
    });
    config
}

#[test]
fn every_listener_over_tls_replicates_and_serves() {
    let pki_dir = tempfile::tempdir().expect("dir");
    let (ca, keystore, client_pem) = pki(pki_dir.path());
    let extra = [
        // The harness's listener names, every one mapped to SSL.
        "listener.security.protocol.map=CONTROLLER:SSL,PLAINTEXT:SSL".to_string(),
        "ssl.keystore.type=PEM".to_string(),
        format!("ssl.keystore.location={keystore}"),
        "ssl.truststore.type=PEM".to_string(),
        format!("ssl.truststore.location={ca}"),
        "ssl.client.auth=required".to_string(),
        "replica.lag.time.max.ms=10000".to_string(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut cluster = TestCluster::new(1, 2, &extra);
    cluster.start_all(READY);
    let bootstrap = cluster.bootstrap();
    let cfg = || client_config(&bootstrap, &ca, Some(&client_pem));

    // Both brokers registered with the controller (over TLS) and are in the metadata.
    eventually(Duration::from_secs(30), "both brokers registered", || {
        block_on(async {
            let mut c = Client::connect(cfg()).await.ok()?;
            let created = c
                .create_topics(
                    &[NewTopic::new(TOPIC)
                        .with_partitions(1)
                        .with_replication_factor(2)],
                    false,
                )
                .await;
            match created {
                Ok(()) => Some(()),
                // A retry of a creation that went through.
                Err(e) if e.kafka_error() == Some(ResponseError::TopicAlreadyExists) => Some(()),
                Err(_) => None,
            }
        })
    });
    let state = eventually(Duration::from_secs(30), "the full ISR", || {
        block_on(async {
            let mut c = Client::connect(cfg()).await.ok()?;
            let t = c.topic_metadata(TOPIC).await.ok()?;
            let p = t.partition(0)?.clone();
            (p.leader >= 0 && sorted(p.isr.clone()) == vec![101, 102]).then_some(p)
        })
    });

    // acks=all completes only once the follower fetched the records over TLS.
    let values: Vec<String> = (0..200).map(|i| format!("secret-{i}")).collect();
    block_on(async {
        let mut c = Client::connect(cfg()).await.expect("connect");
        for chunk in values.chunks(50) {
            c.produce(
                TOPIC,
                0,
                chunk
                    .iter()
                    .map(|v| ProduceRecord::new(v.clone()))
                    .collect(),
                Acks::All,
                Compression::None,
            )
            .await
            .expect("acks=all produce over TLS");
        }
        let mut got = Vec::new();
        while got.len() < values.len() {
            let records = c
                .fetch(TOPIC, 0, got.len() as i64, 500, 1 << 20)
                .await
                .expect("fetch over TLS");
            assert!(!records.is_empty(), "no progress at {}", got.len());
            got.extend(records.into_iter().map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            }));
        }
        assert_eq!(got, values);
    });
    // The ISR stayed whole: the follower kept fetching over TLS.
    let after = block_on(async {
        let mut c = Client::connect(cfg()).await.expect("connect");
        let t = c.topic_metadata(TOPIC).await.expect("metadata");
        t.partition(0).cloned().expect("partition 0")
    });
    assert_eq!(sorted(after.isr), vec![101, 102], "leader {}", state.leader);

    // Without a client certificate nothing is served.
    let refused = block_on(async {
        Client::connect(client_config(&bootstrap, &ca, None))
            .await
            .map(|_| ())
    });
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );
}
