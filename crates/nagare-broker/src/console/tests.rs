//! The console's API in process: [`Console::handle`] on a [`TestBroker`], so every call
//! goes through the real request pipeline (and its authorization) as the console does in a
//! running node.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, FindCoordinatorRequest, GroupId,
    OffsetCommitRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use nagare_sasl::scram::ScramMechanism;
use serde_json::{json, Value};

use super::Console;
use crate::metrics::http::{HttpRequest, HttpResponse, Method, RequestHead};
use crate::standard_authorizer::STANDARD_AUTHORIZER;
use crate::testing::TestBroker;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

struct Client<'a> {
    console: Console,
    t: &'a TestBroker,
    cookie: Option<String>,
}

impl<'a> Client<'a> {
    fn new(t: &'a TestBroker) -> Self {
        Client {
            console: Console::new(),
            t,
            cookie: None,
        }
    }

    async fn raw(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut hs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(c) = &self.cookie {
            hs.push(("cookie".into(), c.clone()));
        }
        let req = HttpRequest {
            head: RequestHead {
                method,
                path: path.into(),
                query: query.into(),
                headers: hs,
            },
            body: body.to_vec(),
            peer: "127.0.0.1:50000".parse().expect("addr"),
        };
        self.console.handle(&req, Some(&self.t.broker)).await
    }

    async fn call(&self, method: Method, target: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut headers = vec![("x-nagare-console", "1")];
        if !bytes.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        let r = self.raw(method, target, &headers, &bytes).await;
        let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    async fn ok(&self, method: Method, target: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, target, body).await;
        assert!(status < 300, "{method:?} {target}: {status} {v}");
        v
    }
}

/// Commits `offset` for `group` on `topic` partitions 0..n through the pipeline (what a
/// consumer that stopped would have left behind).
async fn commit(t: &TestBroker, group: &str, topic: &str, offsets: &[i64]) {
    // FindCoordinator first, as a consumer does: it creates __consumer_offsets.
    for _ in 0..50 {
        let f = t
            .send(
                &FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![s(group)]),
                4,
            )
            .await
            .expect("find coordinator answer");
        if f.coordinators[0].error_code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The coordinator may still be loading its partition: retry as a consumer would.
    for _ in 0..50 {
        let r = t
            .send(
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(
                            offsets
                                .iter()
                                .enumerate()
                                .map(|(i, o)| {
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(i as i32)
                                        .with_committed_offset(*o)
                                })
                                .collect(),
                        )]),
                8,
            )
            .await
            .expect("commit answer");
        let codes: Vec<i16> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        if codes.iter().all(|c| *c == 0) {
            return;
        }
        assert!(codes.iter().all(|c| [14, 15].contains(c)), "{codes:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the coordinator never loaded");
}

#[tokio::test]
async fn topics_messages_and_groups_without_security() {
    let t = TestBroker::start().await;
    let c = Client::new(&t);
    use Method::{Delete, Get, Post, Put};

    let session = c.ok(Get, "/api/session", None).await;
    assert_eq!(session["security"], false);
    assert_eq!(session["principal"], "User:ANONYMOUS");

    let created = c
        .ok(
            Post,
            "/api/topics",
            Some(
                json!({"name": "orders", "partitions": 2, "configs": {"retention.ms": "86400000"}}),
            ),
        )
        .await;
    assert_eq!(created["partitions"], 2);
    let (status, dup) = c
        .call(Post, "/api/topics", Some(json!({"name": "orders"})))
        .await;
    assert_eq!(
        (status, dup["code"].as_str()),
        (409, Some("TOPIC_ALREADY_EXISTS"))
    );
    let (status, _) = c
        .call(Post, "/api/topics", Some(json!({"name": "bad/name"})))
        .await;
    assert_eq!(status, 400);

    let list = c.ok(Get, "/api/topics", None).await;
    let names: Vec<&str> = list["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"orders"), "{names:?}");

    // Produce three messages (one with a header, one JSON) and browse them.
    for (p, v) in [(0, "hello"), (1, "{\"id\":7}"), (0, "bye")] {
        let body = json!({"partition": p, "key": "k", "value": v,
            "headers": [{"key": "trace", "value": "abc"}]});
        let r = c.ok(Post, "/api/topics/orders/messages", Some(body)).await;
        assert_eq!(r["partition"], p);
    }
    let (status, _) = c
        .call(
            Post,
            "/api/topics/orders/messages",
            Some(json!({"partition": 9, "value": "x"})),
        )
        .await;
    assert_eq!(status, 404, "unknown partition");

    let all = c
        .ok(
            Get,
            "/api/topics/orders/messages?from=beginning&format=text",
            None,
        )
        .await;
    let values: Vec<&str> = all["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(values.len(), 3);
    assert_eq!(all["elsewhere"], json!([]));
    assert!(values.contains(&"hello") && values.contains(&"bye"));
    assert_eq!(all["records"][0]["headers"][0]["key"], "trace");

    let p0 = c
        .ok(
            Get,
            "/api/topics/orders/messages?partition=0&from=offset&offset=1&format=hex",
            None,
        )
        .await;
    assert_eq!(p0["records"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(p0["records"][0]["value"], "627965"); // "bye"
    let last = c
        .ok(
            Get,
            "/api/topics/orders/messages?from=end&limit=1&partition=1&format=json",
            None,
        )
        .await;
    assert_eq!(last["records"][0]["value"], "{\n  \"id\": 7\n}");
    let future = c
        .ok(
            Get,
            "/api/topics/orders/messages?from=timestamp&timestamp=9999999999999",
            None,
        )
        .await;
    assert_eq!(future["records"].as_array().map(|a| a.len()), Some(0));
    let past = c
        .ok(
            Get,
            "/api/topics/orders/messages?from=timestamp&timestamp=0",
            None,
        )
        .await;
    assert_eq!(past["records"].as_array().map(|a| a.len()), Some(3));
    for bad in [
        "from=later",
        "from=offset",
        "limit=0",
        "format=xml",
        "partition=x",
    ] {
        let (status, _) = c
            .call(Get, &format!("/api/topics/orders/messages?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}");
    }

    // Details: offsets, sizes and configs with their sources; alter and reset one.
    let d = c.ok(Get, "/api/topics/orders", None).await;
    assert_eq!(d["partitions"][0]["end_offset"], 2);
    assert_eq!(d["partitions"][1]["end_offset"], 1);
    assert!(d["partitions"][0]["size"].as_i64().unwrap_or(0) > 0);
    let source = |d: &Value, key: &str| {
        d["configs"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == key).cloned())
            .unwrap_or(Value::Null)
    };
    assert_eq!(source(&d, "retention.ms")["source"], "DYNAMIC_TOPIC_CONFIG");
    assert_eq!(source(&d, "cleanup.policy")["source"], "DEFAULT_CONFIG");
    c.ok(
        Put,
        "/api/topics/orders/configs",
        Some(json!({"set": {"cleanup.policy": "compact"}, "delete": ["retention.ms"]})),
    )
    .await;
    let d = c.ok(Get, "/api/topics/orders", None).await;
    assert_eq!(source(&d, "cleanup.policy")["value"], "compact");
    assert_ne!(source(&d, "retention.ms")["source"], "DYNAMIC_TOPIC_CONFIG");
    let (status, v) = c
        .call(
            Put,
            "/api/topics/orders/configs",
            Some(json!({"set": {"no.such.config": "1"}})),
        )
        .await;
    assert_eq!(status, 400, "{v}");

    // A group that committed 1 of 2 and 0 of 1: lag 1 + 1; reset to latest clears it.
    commit(&t, "billing", "orders", &[1, 0]).await;
    let groups = c.ok(Get, "/api/groups", None).await;
    assert_eq!(groups["groups"][0]["group"], "billing");
    let g = c.ok(Get, "/api/groups/billing", None).await;
    assert_eq!(g["state"], "Empty");
    assert_eq!(g["total_lag"], 2, "{g}");
    c.ok(
        Post,
        "/api/groups/billing/reset",
        Some(json!({"to": "latest"})),
    )
    .await;
    assert_eq!(c.ok(Get, "/api/groups/billing", None).await["total_lag"], 0);
    let r = c
        .ok(
            Post,
            "/api/groups/billing/reset",
            Some(json!({"to": "offset", "offset": 99, "topic": "orders"})),
        )
        .await;
    // Clamped to the log end.
    assert_eq!(r["offsets"][0]["offset"], 2);
    c.ok(
        Post,
        "/api/groups/billing/reset",
        Some(json!({"to": "earliest"})),
    )
    .await;
    assert_eq!(c.ok(Get, "/api/groups/billing", None).await["total_lag"], 3);
    let (status, _) = c
        .call(
            Post,
            "/api/groups/billing/reset",
            Some(json!({"to": "middle"})),
        )
        .await;
    assert_eq!(status, 400);

    let o = c.ok(Get, "/api/overview", None).await;
    assert_eq!(o["brokers"][0]["id"], 1);
    assert_eq!(o["controller_id"], 1);
    assert_eq!(o["under_replicated"].as_array().map(|a| a.len()), Some(0));
    // The in-memory broker has no KRaft manager to describe (the browser test checks a
    // real node's quorum); the page then shows the broker's answer.
    assert!(
        o["quorum"]["leader"] == 1 || o["quorum"]["error"].is_string(),
        "{}",
        o["quorum"]
    );
    assert!(o["finalized_features"]["metadata.version"]
        .as_i64()
        .is_some());
    let tp = c.ok(Get, "/api/throughput", None).await;
    assert!(tp["bytes_in"].as_u64().unwrap_or(0) > 0, "{tp}");
    assert!(tp["messages_in"].as_u64() == Some(3), "{tp}");

    c.ok(Delete, "/api/topics/orders", None).await;
    let (status, _) = c.call(Get, "/api/topics/orders", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn refuses_bad_requests() {
    let t = TestBroker::start().await;
    let c = Client::new(&t);
    // No CSRF header on a change.
    let r = c
        .raw(
            Method::Post,
            "/api/topics",
            &[("content-type", "application/json")],
            b"{}",
        )
        .await;
    assert_eq!(r.status, 403);
    let r = c
        .raw(
            Method::Post,
            "/api/topics",
            &[("x-nagare-console", "1"), ("content-type", "text/plain")],
            b"x",
        )
        .await;
    assert_eq!(r.status, 415);
    let r = c
        .raw(
            Method::Post,
            "/api/topics",
            &[
                ("x-nagare-console", "1"),
                ("content-type", "application/json"),
            ],
            b"{nope",
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(c.call(Method::Get, "/api/nothing", None).await.0, 404);
    assert_eq!(c.call(Method::Put, "/api/topics", None).await.0, 404);
    assert_eq!(
        c.call(Method::Post, "/api/topics", Some(json!({"partitions": 1})))
            .await
            .0,
        400
    );
    // The page and its assets.
    let page = c.raw(Method::Get, "/", &[], b"").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/console/app.js"));
    assert_eq!(
        c.raw(Method::Get, "/console/app.js", &[], b"").await.status,
        200
    );
    assert_eq!(
        c.raw(Method::Get, "/console/nope.js", &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(c.raw(Method::Post, "/", &[], b"").await.status, 405);
    assert_eq!(
        super::parse_query("a=1&b=x%20y+z&c"),
        [("a", "1"), ("b", "x y z"), ("c", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    );
    assert_eq!(super::api::parse_assignment(&[]), Some(vec![]));
    // Version 0, one topic "t" with partitions 0 and 2.
    let a = [
        0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2,
    ];
    assert_eq!(
        super::api::parse_assignment(&a),
        Some(vec![("t".into(), vec![0, 2])])
    );
    assert_eq!(super::api::parse_assignment(&a[..10]), None);
}

const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
    username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
    user_alice=\"alice-secret\";";

#[tokio::test]
async fn security_on_logs_in_and_acts_as_the_user() {
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
            ("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"),
            ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
            ("connection.failed.authentication.delay.ms", "10"),
            ("authorizer.class.name", STANDARD_AUTHORIZER),
            ("super.users", "User:admin;User:ANONYMOUS"),
        ],
        None,
    )
    .await;
    let mut c = Client::new(&t);
    use Method::{Get, Post};
    let sess = c.ok(Get, "/api/session", None).await;
    assert_eq!(sess["security"], true);
    assert_eq!(sess["principal"], Value::Null);
    assert_eq!(sess["mechanisms"], json!(["PLAIN", "SCRAM-SHA-256"]));
    assert_eq!(c.call(Get, "/api/topics", None).await.0, 401);

    // Wrong password, unknown mechanism.
    let (status, _) = c
        .call(
            Post,
            "/api/login",
            Some(json!({"username": "alice", "password": "nope"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = c
        .call(Post, "/api/login", Some(json!({"username": "alice", "password": "alice-secret", "mechanism": "SCRAM-SHA-512"})))
        .await;
    assert_eq!(status, 400);

    // alice (PLAIN) has no ACLs: she sees no topics and may not create one.
    let r = c
        .raw(
            Post,
            "/api/login",
            &[
                ("x-nagare-console", "1"),
                ("content-type", "application/json"),
            ],
            json!({"username": "alice", "password": "alice-secret"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r
        .headers
        .iter()
        .find(|(k, _)| *k == "Set-Cookie")
        .map(|(_, v)| v.clone())
        .expect("cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap_or_default().to_string();
    assert_eq!(pair.len(), "nagare_console=".len() + 64);
    c.cookie = Some(pair.clone());
    assert_eq!(
        c.ok(Get, "/api/session", None).await["principal"],
        "User:alice"
    );
    t.create_topic("secret", 1).await;
    let topics = c.ok(Get, "/api/topics", None).await;
    assert_eq!(topics["topics"], json!([]));
    let (status, v) = c
        .call(Post, "/api/topics", Some(json!({"name": "mine"})))
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("TOPIC_AUTHORIZATION_FAILED")),
        "{v}"
    );
    let (status, _) = c.call(Get, "/api/topics/secret/messages", None).await;
    assert_eq!(status, 403);

    // Granted READ on `secret` (which implies DESCRIBE), alice sees and browses it, and is
    // still refused a write.
    let acl = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
        .with_resource_type(2) // TOPIC
        .with_resource_name(s("secret"))
        .with_resource_pattern_type(3) // LITERAL
        .with_principal(s("User:alice"))
        .with_host(s("*"))
        .with_operation(3) // READ
        .with_permission_type(3)]); // ALLOW
    let r = t.send(&acl, 3).await.expect("CreateAcls");
    assert_eq!(r.results[0].error_code, 0);
    let topics = c.ok(Get, "/api/topics", None).await;
    assert_eq!(topics["topics"][0]["name"], "secret");
    let m = c
        .ok(Get, "/api/topics/secret/messages?from=beginning", None)
        .await;
    assert_eq!(m["records"], json!([]));
    let (status, v) = c
        .call(
            Post,
            "/api/topics/secret/messages",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("TOPIC_AUTHORIZATION_FAILED")),
        "{v}"
    );

    // A SCRAM user who is a super user (set through the pipeline, as kafka-configs would).
    let m = ScramMechanism::Sha256;
    let salt = b"0123456789abcdef".to_vec();
    let salted = m.salted_password(b"admin-scram", &salt, 4096);
    let r = t
        .send(
            &AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(s("admin"))
                    .with_mechanism(m.type_id())
                    .with_iterations(4096)
                    .with_salt(Bytes::from(salt))
                    .with_salted_password(Bytes::from(salted)),
            ]),
            0,
        )
        .await
        .expect("alter answer");
    assert_eq!(r.results[0].error_code, 0);
    let mut admin = Client::new(&t);
    let (status, v) = admin
        .call(Post, "/api/login", Some(json!({"username": "admin", "password": "admin-scram", "mechanism": "SCRAM-SHA-256"})))
        .await;
    assert_eq!(
        (status, v["principal"].as_str()),
        (200, Some("User:admin")),
        "{v}"
    );
    // The login's cookie went to `admin`'s console; reuse alice's token there: the
    // sessions are per console, so it is unknown.
    admin.cookie = Some(pair);
    assert_eq!(admin.call(Get, "/api/topics", None).await.0, 401);

    // Logging out ends alice's session.
    let out = c
        .raw(Post, "/api/logout", &[("x-nagare-console", "1")], b"")
        .await;
    assert_eq!(out.status, 200);
    assert_eq!(c.call(Get, "/api/topics", None).await.0, 401);
    let _ = Arc::clone(&t.broker);
}

/// Sends `parts` on one connection (with a pause between them, so a body arrives after
/// its head) and returns the status and body.
async fn over_socket(addr: std::net::SocketAddr, parts: &[&[u8]]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    for p in parts {
        s.write_all(p).await.expect("write");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn api_over_the_http_listener() {
    let t = TestBroker::start().await;
    let cell = Arc::new(std::sync::OnceLock::new());
    let _ = cell.set(t.broker.clone());
    let src = Arc::new(crate::metrics::MetricsSource {
        request_metrics: t.broker.request_metrics.clone(),
        broker: cell,
        console: Arc::new(Console::new()),
        metrics_token: None,
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(crate::metrics::http::serve(l, src));

    // A JSON body arriving after its head, in two pieces.
    let body = br#"{"name": "sock", "partitions": 1}"#;
    let head = format!(
        "POST /api/topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Nagare-Console: 1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (status, answer) = over_socket(addr, &[head.as_bytes(), &body[..10], &body[10..]]).await;
    assert_eq!(status, 201, "{answer}");
    assert!(t.broker.image().topic("sock").is_some());
    let (status, answer) = over_socket(addr, &[b"GET /api/topics/sock HTTP/1.1\r\n\r\n"]).await;
    assert_eq!(status, 200, "{answer}");
    let v: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(v["partitions"].as_array().map(|a| a.len()), Some(1));
    // Too large, chunked, malformed length: refused before any body is read.
    let big = format!(
        "POST /api/topics HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        crate::metrics::http::MAX_BODY_BYTES + 1
    );
    assert_eq!(over_socket(addr, &[big.as_bytes()]).await.0, 413);
    let chunked = b"POST /api/topics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(over_socket(addr, &[chunked]).await.0, 411);
    let bad = b"POST /api/topics HTTP/1.1\r\nContent-Length: ten\r\n\r\n";
    assert_eq!(over_socket(addr, &[bad]).await.0, 400);
    // The page itself.
    let (status, page) = over_socket(addr, &[b"GET / HTTP/1.1\r\n\r\n"]).await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>Nagare console</title>"));
}
