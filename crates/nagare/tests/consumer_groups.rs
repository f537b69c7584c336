//! Classic consumer groups with librdkafka: partition ownership stays exact while members
//! join and leave, and a group resumes at its committed offsets after the server is killed
//! with SIGKILL and restarted (nothing committed is re-delivered, nothing skipped).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::TestServer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::ClientConfig;

fn group_consumer(server: &TestServer, group: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&["owned"]).expect("subscribe");
    c
}

/// Polls every consumer until their assignments are disjoint and cover `0..partitions`.
fn wait_exact_ownership(consumers: &[BaseConsumer], partitions: i32) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
        last = consumers
            .iter()
            .map(|c| {
                c.assignment()
                    .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default()
            })
            .collect::<Vec<BTreeSet<i32>>>();
        let total: usize = last.iter().map(|s| s.len()).sum();
        let union: BTreeSet<i32> = last.iter().flatten().copied().collect();
        if total == partitions as usize
            && union.len() == partitions as usize
            && last.iter().all(|s| !s.is_empty())
        {
            return last;
        }
    }
    panic!("ownership never became exact: {last:?}");
}

#[test]
fn ownership_stays_exact_as_members_join_and_leave() {
    let server = TestServer::start(&["group.initial.rebalance.delay.ms=0"]);
    server.create_topic("owned", 12, &[]);
    let mut consumers: Vec<BaseConsumer> =
        (0..3).map(|_| group_consumer(&server, "g-own")).collect();
    let owned = wait_exact_ownership(&consumers, 12);
    assert!(
        owned.iter().all(|s| s.len() == 4),
        "range assignor over 3 members: {owned:?}"
    );
    consumers.push(group_consumer(&server, "g-own"));
    wait_exact_ownership(&consumers, 12);
    // A member leaves (close sends LeaveGroup): the others take over its partitions.
    let leaving = consumers.remove(0);
    drop(leaving);
    let owned = wait_exact_ownership(&consumers, 12);
    assert_eq!(owned.len(), 3);
}

#[test]
fn committed_offsets_survive_a_server_crash() {
    let mut server = TestServer::start(&["group.initial.rebalance.delay.ms=0"]);
    server.create_topic("owned", 2, &[]);
    let producer = server.producer(&[]);
    let send = |from: usize, to: usize| {
        for i in from..to {
            let v = format!("v{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to("owned")
                        .partition((i % 2) as i32)
                        .payload(&v),
                )
                .expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    };
    send(0, 100);
    {
        let c = group_consumer(&server, "g-resume");
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen < 100 && Instant::now() < deadline {
            if let Some(Ok(_)) = c.poll(Duration::from_millis(200)) {
                seen += 1;
            }
        }
        assert_eq!(seen, 100);
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    }
    server.kill9();
    server.restart();
    let producer = server.producer(&[]);
    for i in 100..110i32 {
        let v = format!("v{i}");
        producer
            .send(
                BaseRecord::<(), _>::to("owned")
                    .partition(i % 2)
                    .payload(&v),
            )
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    let c = group_consumer(&server, "g-resume");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && got.len() < 10 {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    // Give any wrongly re-delivered record a moment to show up.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    got.sort();
    let want: Vec<String> = {
        let mut w: Vec<String> = (100..110).map(|i| format!("v{i}")).collect();
        w.sort();
        w
    };
    assert_eq!(got, want, "resumed exactly at the committed offsets");
}

/// Counts rebalances (assign/revoke callbacks) seen by a consumer.
struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl rdkafka::client::ClientContext for Counting {}

impl rdkafka::consumer::ConsumerContext for Counting {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, _r: &rdkafka::consumer::Rebalance<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn static_member(
    server: &TestServer,
    instance: &str,
    counter: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> BaseConsumer<Counting> {
    let c: BaseConsumer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "g-static")
        .set("group.instance.id", instance)
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(Counting(counter))
        .expect("consumer");
    c.subscribe(&["owned"]).expect("subscribe");
    c
}

fn owned_by<C: rdkafka::consumer::ConsumerContext>(c: &BaseConsumer<C>) -> BTreeSet<i32> {
    c.assignment()
        .map(|a| a.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

#[test]
fn static_member_restart_within_session_timeout_causes_no_rebalance() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = TestServer::start(&["group.initial.rebalance.delay.ms=0"]);
    server.create_topic("owned", 4, &[]);
    let b_count = Arc::new(AtomicUsize::new(0));
    let a = static_member(&server, "member-a", Arc::new(AtomicUsize::new(0)));
    let b = static_member(&server, "member-b", b_count.clone());
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        let (oa, ob) = (owned_by(&a), owned_by(&b));
        if oa.len() + ob.len() == 4 && !oa.is_empty() && !ob.is_empty() && oa.is_disjoint(&ob) {
            break;
        }
        assert!(Instant::now() < deadline, "never stable: {oa:?} {ob:?}");
    }
    let a_before = owned_by(&a);
    // Let b settle, then take note of its rebalance count.
    for _ in 0..20 {
        let _ = b.poll(Duration::from_millis(50));
    }
    let settled = b_count.load(Ordering::SeqCst);
    // Static members do not send LeaveGroup on close (KIP-345): restart `a` quickly.
    drop(a);
    for _ in 0..10 {
        let _ = b.poll(Duration::from_millis(50));
    }
    let a = static_member(&server, "member-a", Arc::new(AtomicUsize::new(0)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while owned_by(&a).is_empty() {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        assert!(
            Instant::now() < deadline,
            "restarted static member got no assignment"
        );
    }
    for _ in 0..30 {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
    }
    assert_eq!(owned_by(&a), a_before, "same assignment after the restart");
    assert_eq!(
        b_count.load(Ordering::SeqCst),
        settled,
        "the other member saw no rebalance"
    );
}

#[test]
fn killed_consumer_loses_its_partitions_after_the_session_timeout() {
    let server = TestServer::start(&["group.initial.rebalance.delay.ms=0"]);
    server.create_topic("owned", 4, &[]);
    let Some(kcat) = ["kcat", "kafkacat"]
        .iter()
        .find(|b| std::process::Command::new(b).arg("-V").output().is_ok())
    else {
        eprintln!("kcat not installed; skipping (scripts/test.sh installs it)");
        return;
    };
    // A group member in another process, killed with SIGKILL (no LeaveGroup).
    let mut other = std::process::Command::new(kcat)
        .args([
            "-b",
            &server.bootstrap(),
            "-G",
            "g-kill",
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
            "-q",
            "owned",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn kcat");
    let c = group_consumer_in(&server, "g-kill");
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let _ = c.poll(Duration::from_millis(100));
        let mine = owned_by(&c);
        if !mine.is_empty() && mine.len() < 4 {
            break; // shared with kcat
        }
        assert!(
            Instant::now() < deadline,
            "never shared the topic with kcat: {mine:?}"
        );
    }
    let killed_at = Instant::now();
    other.kill().expect("SIGKILL kcat");
    let _ = other.wait();
    let deadline = Instant::now() + Duration::from_secs(40);
    while owned_by(&c).len() < 4 {
        let _ = c.poll(Duration::from_millis(100));
        assert!(
            Instant::now() < deadline,
            "partitions never moved: {:?}",
            owned_by(&c)
        );
    }
    let took = killed_at.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "moved only after the session expired, took {took:?}"
    );
}

fn group_consumer_in(server: &TestServer, group: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&["owned"]).expect("subscribe");
    c
}

/// Records every partition revoked from a consumer.
struct Revokes(std::sync::Arc<std::sync::Mutex<Vec<i32>>>);

impl rdkafka::client::ClientContext for Revokes {}

impl rdkafka::consumer::ConsumerContext for Revokes {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Revoke(tpl) = r {
            if let Ok(mut v) = self.0.lock() {
                v.extend(tpl.elements().iter().map(|e| e.partition()));
            }
        }
    }
}

#[test]
fn cooperative_sticky_keeps_consuming_partitions_that_do_not_move() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let server = TestServer::start(&["group.initial.rebalance.delay.ms=0"]);
    server.create_topic("coop", 6, &[]);
    let cooperative = |revokes: Arc<Mutex<Vec<i32>>>| -> BaseConsumer<Revokes> {
        let c: BaseConsumer<Revokes> = ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .set("group.id", "g-coop")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(Revokes(revokes))
            .expect("consumer");
        c.subscribe(&["coop"]).expect("subscribe");
        c
    };
    // Records flow to every partition all along.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = server.producer(&[("linger.ms", "0")]);
    let flow = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let v = i.to_string();
                let _ = producer.send(
                    BaseRecord::<(), _>::to("coop")
                        .partition((i % 6) as i32)
                        .payload(&v),
                );
                producer.poll(Duration::ZERO);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            producer.flush(Duration::from_secs(5)).ok();
        })
    };
    let a_revokes = Arc::new(Mutex::new(Vec::new()));
    let a = cooperative(a_revokes.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while owned_by(&a).len() < 6 {
        let _ = a.poll(Duration::from_millis(50));
        assert!(Instant::now() < deadline, "a never owned the topic");
    }
    // Warm up: a consumes from every partition.
    let mut last_seen: HashMap<i32, Instant> = HashMap::new();
    let warm = Instant::now() + Duration::from_secs(2);
    while Instant::now() < warm {
        if let Some(Ok(m)) = a.poll(Duration::from_millis(20)) {
            last_seen.insert(m.partition(), Instant::now());
        }
    }
    a_revokes.lock().map(|mut v| v.clear()).ok();
    // b joins; track the longest gap per partition in a's consumption during the rebalance.
    let b = cooperative(Arc::new(Mutex::new(Vec::new())));
    let mut max_gap: HashMap<i32, Duration> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut settled_at = None;
    loop {
        let _ = b.poll(Duration::from_millis(5));
        if let Some(Ok(m)) = a.poll(Duration::from_millis(20)) {
            let now = Instant::now();
            if let Some(prev) = last_seen.insert(m.partition(), now) {
                let gap = max_gap.entry(m.partition()).or_default();
                *gap = (*gap).max(now - prev);
            }
        }
        let (oa, ob) = (owned_by(&a), owned_by(&b));
        if settled_at.is_none() && oa.len() + ob.len() == 6 && !ob.is_empty() && oa.is_disjoint(&ob)
        {
            settled_at = Some(Instant::now());
        }
        if settled_at
            .map(|t| t.elapsed() > Duration::from_secs(1))
            .unwrap_or(false)
        {
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {oa:?} {ob:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let _ = flow.join();
    let kept = owned_by(&a);
    let moved = owned_by(&b);
    let revoked: BTreeSet<i32> = a_revokes
        .lock()
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    // Incremental (KIP-429): only the partitions that moved were revoked from a.
    assert_eq!(
        revoked, moved,
        "revoked {revoked:?}, moved to b {moved:?}, kept {kept:?}"
    );
    for p in &kept {
        let gap = max_gap.get(p).copied().unwrap_or_default();
        assert!(
            gap < Duration::from_millis(1500),
            "kept partition {p} stalled {gap:?} during the rebalance"
        );
    }
}
