//! The console's ACL and transaction API in process ([`Console::handle`] on a
//! [`TestBroker`]): every call goes through the real request pipeline and its authorizer.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;
use serde_json::{json, Value};

use super::Console;
use crate::metrics::http::{HttpRequest, Method, RequestHead};
use crate::standard_authorizer::STANDARD_AUTHORIZER;
use crate::testing::{encode_batch, plain_record, TestBroker};

use Method::{Delete, Get, Post};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// A browser: its console session cookie, if logged in.
struct Browser<'a> {
    console: &'a Console,
    t: &'a TestBroker,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(console: &'a Console, t: &'a TestBroker) -> Self {
        Browser {
            console,
            t,
            cookie: None,
        }
    }

    async fn call(&mut self, method: Method, target: &str, body: Option<Value>) -> (u16, Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut headers = vec![("x-nagare-console".to_string(), "1".to_string())];
        if !bytes.is_empty() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        if let Some(c) = &self.cookie {
            headers.push(("cookie".into(), c.clone()));
        }
        let req = HttpRequest {
            head: RequestHead {
                method,
                path: path.into(),
                query: query.into(),
                headers,
            },
            body: bytes,
            peer: "127.0.0.1:50001".parse().expect("addr"),
        };
        let r = self.console.handle(&req, Some(&self.t.broker)).await;
        if let Some((_, c)) = r.headers.iter().find(|(k, _)| *k == "Set-Cookie") {
            self.cookie = c.split(';').next().map(str::to_string);
        }
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )
    }

    async fn ok(&mut self, method: Method, target: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, target, body).await;
        assert!(status < 300, "{method:?} {target}: {status} {v}");
        v
    }

    async fn login(&mut self, user: &str, password: &str) {
        let v = self
            .ok(
                Post,
                "/api/login",
                Some(json!({"username": user, "password": password})),
            )
            .await;
        assert_eq!(v["principal"], format!("User:{user}"));
    }
}

#[tokio::test]
async fn acls_without_an_authorizer_answer_security_disabled() {
    let t = TestBroker::start().await;
    let console = Console::new();
    let mut b = Browser::new(&console, &t);
    // Kafka answers SECURITY_DISABLED to the three ACL APIs without an authorizer; the page
    // must be able to tell that from "no ACLs".
    let (status, v) = b.call(Get, "/api/acls", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("SECURITY_DISABLED")),
        "{v}"
    );
    let binding = json!({"resource_type": "TOPIC", "name": "t", "principal": "User:alice",
        "operation": "READ"});
    let (status, v) = b.call(Post, "/api/acls", Some(binding.clone())).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("SECURITY_DISABLED")),
        "{v}"
    );
    let (status, v) = b.call(Delete, "/api/acls", Some(binding)).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("SECURITY_DISABLED")),
        "{v}"
    );
    // Bad input is refused before the broker is asked.
    let (status, _) = b.call(Get, "/api/acls?operation=FLY", None).await;
    assert_eq!(status, 400);
    let (status, _) = b
        .call(Post, "/api/acls", Some(json!({"resource_type": "TOPIC"})))
        .await;
    assert_eq!(status, 400);
}

const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
    username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
    user_alice=\"alice-secret\";";

#[tokio::test]
async fn acls_are_listed_created_and_deleted_as_the_logged_in_user() {
    let t = TestBroker::build(
        &[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            ("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "PLAIN"),
            ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
            ("connection.failed.authentication.delay.ms", "10"),
            ("authorizer.class.name", STANDARD_AUTHORIZER),
            ("super.users", "User:admin"),
        ],
        None,
    )
    .await;
    let console = Console::new();
    let mut admin = Browser::new(&console, &t);
    admin.login("admin", "admin-secret").await;
    assert_eq!(admin.ok(Get, "/api/acls", None).await["acls"], json!([]));
    let grant = json!({"resource_type": "TOPIC", "name": "orders", "pattern": "PREFIXED",
        "principal": "User:alice", "host": "*", "operation": "READ", "permission": "ALLOW"});
    let (status, v) = admin.call(Post, "/api/acls", Some(grant.clone())).await;
    assert_eq!(status, 201, "{v}");
    let deny = json!({"resource_type": "GROUP", "name": "g", "principal": "User:bob",
        "operation": "READ", "permission": "DENY"});
    admin.ok(Post, "/api/acls", Some(deny)).await;
    let all = admin.ok(Get, "/api/acls", None).await;
    assert_eq!(all["acls"].as_array().map(Vec::len), Some(2), "{all}");
    assert_eq!(
        all["acls"][0], grant,
        "sorted by resource type: TOPIC first"
    );
    assert_eq!(all["acls"][1]["permission"], "DENY");
    // Filters: by principal, by resource type, and MATCH (every ACL applying to a name).
    let alice = admin
        .ok(Get, "/api/acls?principal=User%3Aalice", None)
        .await;
    assert_eq!(alice["acls"], json!([grant]));
    let groups = admin.ok(Get, "/api/acls?resource_type=GROUP", None).await;
    assert_eq!(groups["acls"][0]["principal"], "User:bob");
    let matching = admin
        .ok(
            Get,
            "/api/acls?resource_type=TOPIC&name=orders-eu&pattern=MATCH",
            None,
        )
        .await;
    assert_eq!(matching["acls"], json!([grant]));
    let literal = admin
        .ok(
            Get,
            "/api/acls?resource_type=TOPIC&name=orders-eu&pattern=LITERAL",
            None,
        )
        .await;
    assert_eq!(literal["acls"], json!([]));
    // The broker validates what the page cannot: a CLUSTER resource has one name.
    let (status, v) = admin
        .call(
            Post,
            "/api/acls",
            Some(
                json!({"resource_type": "CLUSTER", "name": "other", "principal": "User:x",
                "operation": "ALTER"}),
            ),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{v}"
    );

    // alice has no ALTER (nor DESCRIBE) on the cluster: refused with Kafka's error.
    let mut alice = Browser::new(&console, &t);
    alice.login("alice", "alice-secret").await;
    let (status, v) = alice
        .call(
            Post,
            "/api/acls",
            Some(
                json!({"resource_type": "TOPIC", "name": "mine", "principal": "User:alice",
                "operation": "ALL"}),
            ),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("CLUSTER_AUTHORIZATION_FAILED")),
        "{v}"
    );
    let (status, v) = alice.call(Get, "/api/acls", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("CLUSTER_AUTHORIZATION_FAILED")),
        "{v}"
    );
    let (status, _) = alice.call(Delete, "/api/acls", Some(grant.clone())).await;
    assert_eq!(status, 403);
    // The transaction actions are authorized as Kafka's: a marker needs CLUSTER_ACTION,
    // fencing a transactional id WRITE on it (and finding its coordinator DESCRIBE).
    t.create_topic("orders", 1).await;
    let (status, v) = alice
        .call(
            Post,
            "/api/hanging/abort",
            Some(json!({"topic": "orders", "partition": 0, "producer_id": 1,
                "producer_epoch": 0, "coordinator_epoch": 0})),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("CLUSTER_AUTHORIZATION_FAILED")),
        "{v}"
    );
    let (status, v) = alice
        .call(Post, "/api/transactions/someone-tx/abort", None)
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("TRANSACTIONAL_ID_AUTHORIZATION_FAILED")),
        "{v}"
    );
    // Listing shows only what she may describe: nothing, rather than an error.
    let l = alice.ok(Get, "/api/transactions", None).await;
    assert_eq!(l["transactions"], json!([]));

    // Deleting the exact binding removes it and nothing else; deleting it again removes
    // nothing. A LITERAL binding of the same name is a different binding.
    let mut literal_grant = grant.clone();
    literal_grant["pattern"] = json!("LITERAL");
    let none = admin.ok(Delete, "/api/acls", Some(literal_grant)).await;
    assert_eq!(none["deleted"], json!([]));
    let gone = admin.ok(Delete, "/api/acls", Some(grant.clone())).await;
    assert_eq!(gone["deleted"], json!([grant]));
    let left = admin.ok(Get, "/api/acls", None).await;
    assert_eq!(left["acls"].as_array().map(Vec::len), Some(1), "{left}");
    let again = admin.ok(Delete, "/api/acls", Some(grant)).await;
    assert_eq!(again["deleted"], json!([]));
}

/// One record batch of producer `pid`/`epoch`, transactional.
fn txn_batch(pid: i64, epoch: i16, n: usize) -> Bytes {
    let now = crate::replica_manager::now_ms();
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            producer_id: pid,
            producer_epoch: epoch,
            sequence: i as i32,
            ..plain_record(i, now, Bytes::from(format!("v{i}")))
        })
        .collect();
    encode_batch(&records).freeze()
}

/// Produces `batch` to `topic`-0 as `txn_id`; the base offset.
async fn produce(t: &TestBroker, txn_id: &str, topic: &str, batch: Bytes) -> i64 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_transactional_id(Some(TransactionalId(s(txn_id))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let r = t.send(&req, 9).await.expect("Produce");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{p:?}");
    p.base_offset
}

#[tokio::test]
async fn transactions_are_listed_described_found_hanging_and_aborted() {
    // Verification off, so a producer the coordinator never heard of can leave a
    // transaction open on a partition: a hanging transaction, as after a lost coordinator
    // state (KIP-664's case).
    let t = TestBroker::build(
        &[
            ("transaction.partition.verification.enable", "false"),
            ("transaction.state.log.num.partitions", "3"),
        ],
        None,
    )
    .await;
    t.create_topic("tx", 1).await;
    // A real transaction: InitProducerId (retried while the coordinator loads), the
    // partition added, one batch written.
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("console-tx"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let mut r = t.send(&init, 4).await.expect("InitProducerId");
    for _ in 0..200 {
        if ![14, 15, 16].contains(&r.error_code) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        r = t.send(&init, 4).await.expect("InitProducerId");
    }
    assert_eq!(r.error_code, 0, "{r:?}");
    let (pid, epoch) = (r.producer_id, r.producer_epoch);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s("console-tx")))
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s("tx")))
            .with_partitions(vec![0])]);
    let a = t.send(&add, 3).await.expect("AddPartitionsToTxn");
    assert!(a.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0);
    let start = produce(&t, "console-tx", "tx", txn_batch(pid.0, epoch, 2)).await;
    // The hanging one: producer 4242, unknown to the coordinator.
    let ghost = produce(&t, "ghost-tx", "tx", txn_batch(4242, 0, 1)).await;
    assert_eq!(ghost, start + 2);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let console = Console::new();
    let mut b = Browser::new(&console, &t);
    // List, with the tool's filters.
    let ongoing = b.ok(Get, "/api/transactions?state=Ongoing", None).await;
    assert_eq!(
        ongoing["transactions"],
        json!([{"transactional_id": "console-tx", "producer_id": pid.0, "state": "Ongoing"}])
    );
    let by_pid = b
        .ok(
            Get,
            &format!("/api/transactions?producer_id={}", pid.0 + 1),
            None,
        )
        .await;
    assert_eq!(by_pid["transactions"], json!([]));
    let long = b
        .ok(Get, "/api/transactions?min_duration_ms=3600000", None)
        .await;
    assert_eq!(long["transactions"], json!([]));
    let (status, _) = b
        .call(Get, "/api/transactions?min_duration_ms=x", None)
        .await;
    assert_eq!(status, 400);
    // Describe: the coordinator's view, and the partition's open transaction at its leader.
    let d = b.ok(Get, "/api/transactions/console-tx", None).await;
    assert_eq!(d["state"], "Ongoing");
    assert_eq!(
        (d["producer_id"].as_i64(), d["producer_epoch"].as_i64()),
        (Some(pid.0), Some(i64::from(epoch)))
    );
    assert_eq!(d["timeout_ms"], 60_000);
    assert!(d["start_time_ms"].as_i64().is_some_and(|s| s > 0), "{d}");
    assert!(d["duration_ms"].as_i64().is_some_and(|s| s >= 0), "{d}");
    assert_eq!(d["partitions"][0]["topic"], "tx");
    assert_eq!(d["partitions"][0]["open"]["start_offset"], start);
    let (status, v) = b.call(Get, "/api/transactions/nobody", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("TRANSACTIONAL_ID_NOT_FOUND")),
        "{v}"
    );

    // find-hanging: the ghost only (the coordinator covers console-tx).
    let h = b
        .ok(Get, "/api/hanging?topic=tx&max_timeout_min=0", None)
        .await;
    assert_eq!(h["partitions_checked"], 1);
    let rows = h["hanging"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{h}");
    assert_eq!(
        (
            rows[0]["producer_id"].as_i64(),
            rows[0]["start_offset"].as_i64(),
            rows[0]["verdict"].as_str()
        ),
        (Some(4242), Some(ghost), Some("hanging"))
    );
    // With the default 15 minutes nothing is old enough.
    let h = b.ok(Get, "/api/hanging", None).await;
    assert_eq!(h["hanging"], json!([]));
    // Abort it with an ABORT marker (kafka-transactions.sh abort --start-offset).
    let (status, _) = b
        .call(
            Post,
            "/api/hanging/abort",
            Some(json!({"topic": "tx", "partition": 0, "start_offset": 999})),
        )
        .await;
    assert_eq!(status, 404);
    let a = b
        .ok(
            Post,
            "/api/hanging/abort",
            Some(json!({"topic": "tx", "partition": 0, "start_offset": ghost})),
        )
        .await;
    assert_eq!(
        (a["producer_id"].as_i64(), a["coordinator_epoch"].as_i64()),
        (Some(4242), Some(0))
    );
    let h = b
        .ok(Get, "/api/hanging?topic=tx&max_timeout_min=0", None)
        .await;
    assert_eq!(h["hanging"], json!([]), "the marker closed it");
    // The partition's last stable offset is held only by console-tx now.
    let d = b.ok(Get, "/api/transactions/console-tx", None).await;
    assert_eq!(d["partitions"][0]["open"]["start_offset"], start);

    // Force-terminate console-tx (forceTerminateTransaction): fenced and aborted.
    let f = b.ok(Post, "/api/transactions/console-tx/abort", None).await;
    assert_eq!(f["previous_state"], "Ongoing");
    assert_eq!(f["transaction"]["state"], "CompleteAbort", "{f}");
    assert_eq!(
        f["transaction"]["duration_ms"],
        Value::Null,
        "nothing running"
    );
    assert!(
        f["transaction"]["producer_epoch"].as_i64() > Some(i64::from(epoch)),
        "{f}"
    );
    let ongoing = b.ok(Get, "/api/transactions?state=Ongoing", None).await;
    assert_eq!(ongoing["transactions"], json!([]));
    let d = b.ok(Get, "/api/transactions/console-tx", None).await;
    assert_eq!(d["partitions"], json!([]));
    // Nothing left open on the partition: its log's last stable offset is its end.
    let p = t.broker.replicas.partition("tx", 0).expect("hosted");
    assert_eq!(p.last_stable_offset(), p.log_end_offset());
    let (status, v) = b
        .call(Post, "/api/transactions/console-tx/abort", None)
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("INVALID_TXN_STATE")),
        "{v}"
    );
}
