//! The secured cluster of issue 14, with real processes: 3 controllers and 3 brokers whose
//! client, inter-broker and controller listeners are all SASL_SSL (a CA and certificates made
//! here), with the StandardAuthorizer and the inter-node users as the only super users.
//! Brokers log in to the controllers with PLAIN (`sasl.mechanism.controller.protocol`, the
//! quorum's voters to each other too) and to each other with SCRAM-SHA-512
//! (`sasl.mechanism.inter.broker.protocol`, the user created by `storage format
//! --add-scram`). An RF=3 `acks=all` topic is produced and consumed by a SCRAM user holding
//! only topic ACLs, and that user's forged follower Fetch (replica_id ≥ 0) is refused without
//! moving the high watermark: as Kafka's `KafkaApis.handleFetchRequest`, a follower fetch
//! without CLUSTER_ACTION gets TOPIC_AUTHORIZATION_FAILED on every partition.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::block_on;
use common::cluster::TestCluster;
use common::replication::{eventually, sorted};
use nagare_client::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use nagare_client::kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, FetchRequest, TopicName,
};
use nagare_client::kafka_protocol::protocol::StrBytes;
use nagare_client::{
    acl_code, Acks, AclBinding, Client, ClientConfig, Compression, Connection, ConnectionOptions,
    NewTopic, OffsetSpec, ProduceRecord, ResponseError, SaslCredentials, OPERATIONS,
};

const TOPIC: &str = "guarded";
const READY: Duration = Duration::from_secs(60);
/// The brokers' inter-broker user (SCRAM) and the controllers' user (PLAIN): the super users.
const BROKER_USER: (&str, &str) = ("broker", "broker-secret");
const CONTROLLER_USER: (&str, &str) = ("controller", "controller-secret");
/// An ordinary client with topic ACLs only.
const ALICE: (&str, &str) = ("alice", "alice-secret");

/// Writes the CA's PEM and the nodes' (key + chain) PEM, valid for 127.0.0.1; returns their
/// paths.
fn pki(dir: &std::path::Path) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(vec![]).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "cluster-ca");
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, "nagare-node");
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
    let node_path = dir.join("node.pem");
    std::fs::write(&node_path, format!("{}{}", key.serialize_pem(), cert.pem()))
        .expect("write node key store");
    (
        ca_path.display().to_string(),
        node_path.display().to_string(),
    )
}

/// Connection options speaking TLS (trusting `ca`) and logging in as `user` with SCRAM.
fn options(ca: &str, user: (&str, &str)) -> ConnectionOptions {
    let mut props = std::collections::BTreeMap::new();
    props.insert("ssl.truststore.location".to_string(), ca.to_string());
    let tls = nagare_broker::tls::TlsSettings::from_props(&props, None)
        .and_then(|s| s.client_config())
        .expect("client TLS");
    ConnectionOptions {
        tls: Some(nagare_client::TlsOptions {
            config: Arc::new(tls),
            server_name: None,
        }),
        sasl: Some(SaslCredentials {
            mechanism: "SCRAM-SHA-512".to_string(),
            username: user.0.to_string(),
            password: user.1.to_string(),
        }),
        ..Default::default()
    }
}

fn client_config(bootstrap: &str, ca: &str, user: (&str, &str)) -> ClientConfig {
    let mut config = ClientConfig::new(bootstrap);
    config.connection = options(ca, user);
    config
}

#[test]
fn sasl_ssl_everywhere_with_acls() {
    let pki_dir = tempfile::tempdir().expect("dir");
    let (ca, keystore) = pki(pki_dir.path());
    let scram_jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{}\" password=\"{}\";",
        BROKER_USER.0, BROKER_USER.1
    );
    let plain_jaas = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{0}\" password=\"{1}\" user_{0}=\"{1}\";",
        CONTROLLER_USER.0, CONTROLLER_USER.1
    );
    let extra = [
        // The harness's listener names: PLAINTEXT is the client and inter-broker listener.
        "listener.security.protocol.map=CONTROLLER:SASL_SSL,PLAINTEXT:SASL_SSL".to_string(),
        "ssl.keystore.type=PEM".to_string(),
        format!("ssl.keystore.location={keystore}"),
        "ssl.truststore.type=PEM".to_string(),
        format!("ssl.truststore.location={ca}"),
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN".to_string(),
        format!("listener.name.controller.plain.sasl.jaas.config={plain_jaas}"),
        "sasl.mechanism.controller.protocol=PLAIN".to_string(),
        "listener.name.plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512".to_string(),
        format!("listener.name.plaintext.scram-sha-512.sasl.jaas.config={scram_jaas}"),
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512".to_string(),
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_string(),
        format!(
            "super.users=User:{};User:{}",
            BROKER_USER.0, CONTROLLER_USER.0
        ),
        "replica.lag.time.max.ms=10000".to_string(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut cluster = TestCluster::new(3, 3, &extra);
    // The SCRAM users the cluster starts with (KIP-900), in the bootstrap metadata.
    let broker_scram = format!(
        "SCRAM-SHA-512=[name={},password={}]",
        BROKER_USER.0, BROKER_USER.1
    );
    let alice_scram = format!("SCRAM-SHA-512=[name={},password={}]", ALICE.0, ALICE.1);
    for id in cluster.node_ids() {
        cluster.reformat(
            id,
            &["--add-scram", &broker_scram, "--add-scram", &alice_scram],
        );
    }
    cluster.start_all(READY);
    let bootstrap = cluster.bootstrap();
    let admin = || client_config(&bootstrap, &ca, BROKER_USER);
    let alice = || client_config(&bootstrap, &ca, ALICE);

    // Every broker registered with the controllers (over SASL_SSL) and the topic's three
    // replicas are in sync: the followers fetch from the leader over SASL_SSL with SCRAM.
    eventually(
        Duration::from_secs(40),
        "the topic on three brokers",
        || {
            block_on(async {
                let mut c = Client::connect(admin()).await.ok()?;
                let created = c
                    .create_topics(
                        &[NewTopic::new(TOPIC)
                            .with_partitions(1)
                            .with_replication_factor(3)],
                        false,
                    )
                    .await;
                match created {
                    Ok(()) => Some(()),
                    Err(e) if e.kafka_error() == Some(ResponseError::TopicAlreadyExists) => {
                        Some(())
                    }
                    Err(_) => None,
                }
            })
        },
    );
    let state = eventually(Duration::from_secs(30), "the full ISR", || {
        block_on(async {
            let mut c = Client::connect(admin()).await.ok()?;
            let t = c.topic_metadata(TOPIC).await.ok()?;
            let p = t.partition(0)?.clone();
            (p.leader >= 0 && sorted(p.isr.clone()) == vec![101, 102, 103]).then_some(p)
        })
    });

    // The quorum RPCs, like every API of a SASL listener, need a login: a TLS connection to a
    // controller that skips SASL is closed on its DescribeQuorum; the controllers' user
    // (PLAIN) is answered.
    let controller_addr = format!("127.0.0.1:{}", cluster.node(1).cport);
    block_on(async {
        let anonymous = ConnectionOptions {
            sasl: None,
            ..options(&ca, CONTROLLER_USER)
        };
        let mut conn = Connection::connect_with(&controller_addr, "no-login", anonymous)
            .await
            .expect("TLS and ApiVersions need no login");
        let refused = conn.send(&DescribeQuorumRequest::default()).await;
        assert!(refused.is_err(), "a quorum RPC served without SASL");
        let plain = ConnectionOptions {
            sasl: Some(SaslCredentials {
                mechanism: "PLAIN".to_string(),
                username: CONTROLLER_USER.0.to_string(),
                password: CONTROLLER_USER.1.to_string(),
            }),
            ..options(&ca, CONTROLLER_USER)
        };
        let mut conn = Connection::connect_with(&controller_addr, "controller-user", plain)
            .await
            .expect("the controllers' user logs in");
        conn.send(&DescribeQuorumRequest::default())
            .await
            .expect("DescribeQuorum after the login");
    });

    // Without ACLs alice sees no topic and may not write.
    block_on(async {
        let mut c = Client::connect(alice()).await.expect("alice connects");
        let denied = match c.topic_metadata(TOPIC).await {
            Ok(t) => t.error,
            Err(e) => e.kafka_error(),
        };
        assert_eq!(denied, Some(ResponseError::TopicAuthorizationFailed));
        let produced = c
            .produce(
                TOPIC,
                0,
                vec![ProduceRecord::new("nope")],
                Acks::All,
                Compression::None,
            )
            .await;
        assert!(produced.is_err(), "alice wrote without an ACL");
    });
    // The admin (a super user) grants alice Describe, Write and Read on the topic.
    block_on(async {
        let mut c = Client::connect(admin()).await.expect("admin connects");
        let acls: Vec<AclBinding> = ["Describe", "Write", "Read"]
            .iter()
            .map(|op| AclBinding {
                resource_type: 2,
                resource_name: TOPIC.to_string(),
                pattern_type: 3,
                principal: format!("User:{}", ALICE.0),
                host: "*".to_string(),
                operation: acl_code(OPERATIONS, op).expect("operation"),
                permission_type: 3,
            })
            .collect();
        c.create_acls(&acls).await.expect("create ACLs");
    });

    // acks=all completes only once both followers fetched the records (SCRAM over TLS).
    let values: Vec<String> = (0..300).map(|i| format!("guarded-{i}")).collect();
    eventually(Duration::from_secs(15), "alice's first write", || {
        block_on(async {
            let mut c = Client::connect(alice()).await.ok()?;
            c.produce(
                TOPIC,
                0,
                values[..100]
                    .iter()
                    .map(|v| ProduceRecord::new(v.clone()))
                    .collect(),
                Acks::All,
                Compression::None,
            )
            .await
            .ok()
        })
    });
    block_on(async {
        let mut c = Client::connect(alice()).await.expect("connect");
        for chunk in values[100..].chunks(100) {
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
            .expect("acks=all produce over SASL_SSL");
        }
        let mut got = Vec::new();
        while got.len() < values.len() {
            let records = c
                .fetch(TOPIC, 0, got.len() as i64, 500, 1 << 20)
                .await
                .expect("fetch over SASL_SSL");
            assert!(!records.is_empty(), "no progress at {}", got.len());
            got.extend(records.into_iter().map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            }));
        }
        assert_eq!(got, values);
    });

    // A transaction (as the super user: transactional ids need their own ACLs): the leader
    // verifies the partition with the coordinator (KIP-890) and the coordinator writes the
    // commit marker to the leader, both over the brokers' SCRAM login (the test picks a
    // transactional id whose coordinator is not the leader). The marker is one more offset.
    let before_txn = values.len() as i64;
    commit_one_transaction(&mut cluster, &ca);
    eventually(Duration::from_secs(20), "the commit marker", || {
        block_on(async {
            let mut c = Client::connect(admin()).await.ok()?;
            let hw = c.list_offsets(TOPIC, 0, OffsetSpec::Latest).await.ok()?;
            (hw == before_txn + 2).then_some(())
        })
    });

    // Alice poses as a follower of the leader: refused, and the high watermark stays put.
    let leader = eventually(Duration::from_secs(10), "the leader", || {
        block_on(async {
            let mut c = Client::connect(admin()).await.ok()?;
            let p = c.topic_metadata(TOPIC).await.ok()?.partition(0)?.clone();
            (p.leader >= 0).then_some(p.leader)
        })
    });
    let follower = *state
        .replicas
        .iter()
        .find(|&&r| r != leader)
        .expect("a follower");
    let hw_before = block_on(async {
        let mut c = Client::connect(alice()).await.expect("connect");
        c.list_offsets(TOPIC, 0, OffsetSpec::Latest)
            .await
            .expect("high watermark")
    });
    assert_eq!(hw_before, values.len() as i64 + 2);
    let leader_addr = cluster.node(leader).bootstrap();
    block_on(async {
        let mut conn = Connection::connect_with(&leader_addr, "forger", options(&ca, ALICE))
            .await
            .expect("alice reaches the leader");
        let forged = FetchRequest::default()
            .with_replica_id(BrokerId(follower))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(hw_before + 1_000)
                    .with_partition_max_bytes(1 << 20)])]);
        // v12: the last version with replica_id in the body and topics by name.
        let resp = conn.send_version(&forged, 12).await.expect("fetch answer");
        let codes: Vec<i16> = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        // Kafka: every partition of a follower fetch without CLUSTER_ACTION is refused
        // TOPIC_AUTHORIZATION_FAILED (the request itself succeeds).
        assert_eq!(resp.error_code, 0);
        assert_eq!(
            codes,
            vec![ResponseError::TopicAuthorizationFailed.code()],
            "forged follower fetch"
        );
        assert!(
            resp.responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .all(|p| p.records.as_ref().is_none_or(|r| r.is_empty())),
            "records served to a forged follower"
        );
    });
    block_on(async {
        let mut c = Client::connect(alice()).await.expect("connect");
        let hw = c
            .list_offsets(TOPIC, 0, OffsetSpec::Latest)
            .await
            .expect("high watermark");
        assert_eq!(hw, hw_before, "the forged fetch moved the high watermark");
        let t = c.topic_metadata(TOPIC).await.expect("metadata");
        let p = t.partition(0).expect("partition 0");
        assert_eq!(sorted(p.isr.clone()), vec![101, 102, 103]);
    });
}

/// One transactional record committed on partition 0 of [`TOPIC`] with raw requests (the
/// test's clients have no transactional producer): FindCoordinator, InitProducerId,
/// AddPartitionsToTxn (v3, so the leader verifies it, KIP-890), a transactional Produce, EndTxn.
fn commit_one_transaction(cluster: &mut TestCluster, ca: &str) {
    use nagare_client::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use nagare_client::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use nagare_client::kafka_protocol::messages::{
        AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest,
        ProduceRequest, ProducerId, TransactionalId,
    };
    use nagare_client::kafka_protocol::records::{
        Compression as RecordCompression, Record, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    let any_broker = cluster.node(101).bootstrap();
    let admin = || options(ca, BROKER_USER);
    let leader = block_on(async {
        let mut c = Client::connect(client_config(&any_broker, ca, BROKER_USER))
            .await
            .expect("connect");
        let p = c.topic_metadata(TOPIC).await.expect("metadata");
        p.partition(0).expect("partition 0").leader
    });
    // A transactional id whose coordinator is not the partition's leader, so that both the
    // verification and the marker cross brokers; then a producer id from that coordinator.
    let (txn, coordinator, producer_id, epoch) = eventually(
        Duration::from_secs(30),
        "a transactional producer id",
        || {
            block_on(async {
                let mut c = Connection::connect_with(&any_broker, "txn", admin())
                    .await
                    .ok()?;
                for i in 0..50 {
                    let txn = format!("sasl-txn-{i}");
                    let found = c
                        .send_version(
                            &FindCoordinatorRequest::default()
                                .with_key(StrBytes::from_string(txn.clone()))
                                .with_key_type(1),
                            3,
                        )
                        .await
                        .ok()?;
                    if found.error_code != 0 {
                        return None;
                    }
                    if found.node_id.0 == leader {
                        continue;
                    }
                    let addr = format!("127.0.0.1:{}", found.port);
                    let mut coord = Connection::connect_with(&addr, "txn", admin()).await.ok()?;
                    let init = coord
                        .send_version(
                            &InitProducerIdRequest::default()
                                .with_transactional_id(Some(TransactionalId(
                                    StrBytes::from_string(txn.clone()),
                                )))
                                .with_transaction_timeout_ms(60_000)
                                .with_producer_id(ProducerId(-1))
                                .with_producer_epoch(-1),
                            4,
                        )
                        .await
                        .ok()?;
                    return (init.error_code == 0).then_some((
                        txn,
                        addr,
                        init.producer_id,
                        init.producer_epoch,
                    ));
                }
                None
            })
        },
    );
    let txn_id = || TransactionalId(StrBytes::from_string(txn.clone()));
    let leader_addr = cluster.node(leader).bootstrap();
    block_on(async {
        let mut coord = Connection::connect_with(&coordinator, "txn", admin())
            .await
            .expect("coordinator");
        let added = coord
            .send_version(
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(txn_id())
                    .with_v3_and_below_producer_id(producer_id)
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partitions(vec![0])]),
                3,
            )
            .await
            .expect("AddPartitionsToTxn");
        let codes: Vec<i16> = added
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect();
        assert_eq!(codes, vec![0], "AddPartitionsToTxn");
        let record = Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer_id.0,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 0,
            key: None,
            value: Some(bytes::Bytes::from_static(b"in-a-transaction")),
            headers: Default::default(),
        };
        let mut batch = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: RecordCompression::None,
            },
        )
        .expect("encode");
        let mut leader_conn = Connection::connect_with(&leader_addr, "txn", admin())
            .await
            .expect("leader");
        let produced = leader_conn
            .send_version(
                &ProduceRequest::default()
                    .with_transactional_id(Some(txn_id()))
                    .with_acks(-1)
                    .with_timeout_ms(10_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.freeze()))])]),
                9,
            )
            .await
            .expect("transactional produce");
        let codes: Vec<i16> = produced
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect();
        assert_eq!(codes, vec![0], "transactional produce");
        let ended = coord
            .send_version(
                &EndTxnRequest::default()
                    .with_transactional_id(txn_id())
                    .with_producer_id(producer_id)
                    .with_producer_epoch(epoch)
                    .with_committed(true),
                3,
            )
            .await
            .expect("EndTxn");
        assert_eq!(ended.error_code, 0, "EndTxn");
    });
}
