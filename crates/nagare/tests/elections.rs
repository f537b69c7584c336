//! Leader elections with real processes (issue 5): one or three controllers and two or three
//! brokers on 127.0.0.1.
//!
//! - unclean election: the ISR's only member dies while an out-of-sync replica is alive; with
//!   `unclean.leader.election.enable=false` (the default) the partition stays leaderless and
//!   producing fails with a retriable error; enabling it on the topic
//!   (IncrementalAlterConfigs) elects the stale replica (ISR = just it, new leader epoch);
//!   ElectLeaders UNCLEAN does the same for another topic;
//! - preferred election: after a broker returns, ElectLeaders PREFERRED (and `nagare topic
//!   elect-leaders`) moves leadership back to the first replicas; with
//!   `auto.leader.rebalance.enable` and a 1 s `leader.imbalance.check.interval.seconds` the
//!   controller does it by itself;
//! - controlled shutdown: a rolling SIGTERM restart of three brokers under an `acks=all`
//!   idempotent librdkafka producer; leadership leaves each broker while its process still
//!   runs, it exits cleanly, and no acknowledged record is lost.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::block_on;
use common::cluster::TestCluster;
use common::replication;
use nagare_client::{
    Acks, AlterConfigOp, Client, Compression, ConfigResource, PartitionMetadata, ProduceRecord,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const READY: Duration = Duration::from_secs(60);

/// Fast failure detection and replication for the tests.
const FAST: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=300",
    "replica.lag.time.max.ms=2000",
    "replica.fetch.backoff.ms=100",
    "replica.fetch.wait.max.ms=200",
];

fn props(extra: &[&'static str]) -> Vec<&'static str> {
    FAST.iter().chain(extra.iter()).copied().collect()
}

fn eventually<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    replication::eventually_every(timeout, Duration::from_millis(100), what, f)
}

/// Every partition of `topic` as `bootstrap` sees it.
fn partitions(bootstrap: &str, topic: &str) -> Option<Vec<PartitionMetadata>> {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        let md = c.metadata(Some(&[topic])).await.ok()?;
        let t = md.topics.into_iter().find(|t| t.name == topic)?;
        (!t.partitions.is_empty()).then_some(t.partitions)
    })
}

fn partition(bootstrap: &str, topic: &str, p: i32) -> Option<PartitionMetadata> {
    partitions(bootstrap, topic)?
        .into_iter()
        .find(|x| x.partition == p)
}

fn create_topic(bootstrap: &str, name: &str, parts: i32, rf: i16, configs: &[(&str, &str)]) {
    replication::create_topic(bootstrap, name, parts, rf, configs);
    eventually(Duration::from_secs(30), "a full ISR everywhere", || {
        partitions(bootstrap, name).filter(|ps| {
            ps.len() == parts as usize
                && ps
                    .iter()
                    .all(|p| p.leader >= 0 && p.isr.len() == rf as usize)
        })
    });
}

fn produce(bootstrap: &str, topic: &str, values: &[String]) -> Result<i64, nagare_client::Error> {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await?;
        let records = values
            .iter()
            .map(|v| ProduceRecord::new(v.clone().into_bytes()))
            .collect();
        c.produce(topic, 0, records, Acks::All, Compression::None)
            .await
    })
}

fn elect(
    bootstrap: &str,
    election_type: i8,
    parts: Option<&[(&str, Vec<i32>)]>,
) -> Vec<(String, i32, i16)> {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await.expect("connect");
        c.elect_leaders(election_type, parts)
            .await
            .expect("ElectLeaders")
            .into_iter()
            .map(|r| (r.topic, r.partition, r.error_code))
            .collect()
    })
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn unclean_election_only_when_enabled() {
    let mut cluster = TestCluster::new(1, 2, &props(&["auto.leader.rebalance.enable=false"]));
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    for t in ["dirty", "manual"] {
        create_topic(&all, t, 1, 2, &[]);
        produce(&all, t, &values("before", 20)).expect("produce with a full ISR");
    }
    // 102 dies: 101 leads with ISR [101] (fenced, or shrunk by AlterPartition).
    cluster.node(102).kill9();
    let b101 = cluster.node(101).bootstrap();
    for t in ["dirty", "manual"] {
        eventually(Duration::from_secs(30), "ISR [101]", || {
            partition(&b101, t, 0).filter(|p| p.leader == 101 && p.isr == vec![101])
        });
        // Acknowledged by the ISR [101] only: an unclean election will lose these.
        produce(&b101, t, &values("stale", 10)).expect("produce with ISR [101]");
    }
    let epoch_before = partition(&b101, "dirty", 0).map(|p| p.leader_epoch);
    // 101 dies too; 102 (out of sync) comes back.
    cluster.node(101).kill9();
    cluster.start_nodes(&[102], READY);
    let b102 = cluster.node(102).bootstrap();
    for t in ["dirty", "manual"] {
        eventually(Duration::from_secs(30), "a leaderless partition", || {
            partition(&b102, t, 0).filter(|p| p.leader == -1 && p.isr == vec![101])
        });
    }
    let seg_len = |cluster: &mut TestCluster, id: i32, t: &str| {
        std::fs::metadata(
            cluster
                .node(id)
                .log_dir()
                .join(format!("{t}-0"))
                .join("00000000000000000000.log"),
        )
        .map(|m| m.len())
        .ok()
    };
    eprintln!(
        "segment bytes on 102 before the election: dirty {:?}, manual {:?}",
        seg_len(&mut cluster, 102, "dirty"),
        seg_len(&mut cluster, 102, "manual")
    );
    // Clean elections only (the default): it stays leaderless, producing fails retriably.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(partition(&b102, "dirty", 0).map(|p| p.leader), Some(-1));
    let err = produce(&b102, "dirty", &values("refused", 1)).expect_err("no leader");
    eprintln!("produce to a leaderless partition: {err}");
    assert!(err.is_retriable(), "not retriable: {err:?}");

    // Enable it on the topic: the controller elects 102 with ISR [102] and a new epoch.
    let t0 = Instant::now();
    block_on(async {
        let mut c = Client::connect_to(&b102).await.expect("connect");
        c.incremental_alter_configs(
            &ConfigResource::Topic("dirty".into()),
            &[AlterConfigOp::Set(
                "unclean.leader.election.enable".into(),
                "true".into(),
            )],
            false,
        )
        .await
        .expect("alter config");
    });
    let p = eventually(Duration::from_secs(20), "an unclean election", || {
        partition(&b102, "dirty", 0).filter(|p| p.leader == 102)
    });
    eprintln!(
        "unclean election {} ms after the config change; segment bytes on 102: {:?}",
        t0.elapsed().as_millis(),
        seg_len(&mut cluster, 102, "dirty")
    );
    assert_eq!(p.isr, vec![102]);
    assert!(
        Some(p.leader_epoch) > epoch_before,
        "{p:?} vs {epoch_before:?}"
    );
    // The other topic still has no leader.
    assert_eq!(partition(&b102, "manual", 0).map(|p| p.leader), Some(-1));
    // ElectLeaders: PREFERRED cannot help (the preferred replica is dead or out of sync),
    // UNCLEAN elects 102 whatever the topic config says; unknown partitions are reported.
    assert_eq!(
        elect(&b102, 0, Some(&[("manual", vec![0])])),
        vec![("manual".to_string(), 0, 80)]
    );
    assert_eq!(
        elect(
            &b102,
            1,
            Some(&[("manual", vec![0]), ("nope", vec![0]), ("dirty", vec![7])])
        ),
        vec![
            ("manual".to_string(), 0, 0),
            ("nope".to_string(), 0, 3),
            ("dirty".to_string(), 7, 3)
        ]
    );
    let m = eventually(Duration::from_secs(10), "ElectLeaders UNCLEAN", || {
        partition(&b102, "manual", 0).filter(|p| p.leader == 102)
    });
    assert_eq!(m.isr, vec![102]);
    assert_eq!(
        elect(&b102, 1, Some(&[("manual", vec![0])])),
        vec![("manual".to_string(), 0, 84)]
    );
    // Writes work again; the new leader's log continues after what it had (the records
    // only 101 had are gone: that is what unclean means).
    for t in ["dirty", "manual"] {
        let offset = eventually(
            Duration::from_secs(20),
            "produce after the election",
            || match produce(&b102, t, &values("after", 5)) {
                Ok(o) => Some(o),
                Err(e) => {
                    eprintln!("{t}: produce after the election: {e}");
                    None
                }
            },
        );
        let got = replication::consume_all(&b102, t, 25);
        // (A produce retried after an ambiguous error may have appended twice: check the
        // log rather than the offset alone.)
        let want: Vec<(i64, String)> = values("before", 20)
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v))
            .collect();
        assert!(
            offset >= 20 && got.len() >= 25 && got[..20] == want[..],
            "{t}: the new leader keeps the 20 records it had (first new offset {offset}); log: {got:?}"
        );
        assert!(
            got[20..].iter().all(|(_, v)| v.starts_with("after")),
            "{t}: records only the old leader had are gone: {got:?}"
        );
    }
    // The old leader returns: it truncates the records only it had (a divergent tail, by
    // leader epoch), follows 102 and rejoins the ISR with an identical log.
    cluster.start_nodes(&[101], READY);
    let segment = |id: i32| {
        std::fs::read(
            cluster
                .nodes
                .iter()
                .find(|n| n.id == id)
                .map(|n| n.log_dir().join("dirty-0").join("00000000000000000000.log"))
                .expect("node"),
        )
        .unwrap_or_default()
    };
    eventually(Duration::from_secs(30), "101 back in the ISR", || {
        partition(&b102, "dirty", 0).filter(|p| p.isr.len() == 2)
    });
    eventually(
        Duration::from_secs(20),
        "identical logs after truncation",
        || {
            let (a, b) = (segment(101), segment(102));
            (!a.is_empty() && a == b).then_some(())
        },
    );
}

fn preferred_everywhere(bootstrap: &str, topic: &str) -> Option<Vec<PartitionMetadata>> {
    partitions(bootstrap, topic).filter(|ps| {
        ps.iter()
            .all(|p| p.replicas.first() == Some(&p.leader) && p.isr.len() == p.replicas.len())
    })
}

/// Kills 101, waits until 102 leads everything, restarts 101 and waits until it is back in
/// every ISR. Returns the partitions whose preferred leader is 101.
fn bounce_101(cluster: &mut TestCluster, topic: &str) -> Vec<i32> {
    let all = cluster.bootstrap();
    let ps = eventually(Duration::from_secs(30), "preferred leaders", || {
        preferred_everywhere(&all, topic)
    });
    let on_101: Vec<i32> = ps
        .iter()
        .filter(|p| p.leader == 101)
        .map(|p| p.partition)
        .collect();
    assert!(!on_101.is_empty(), "101 leads nothing: {ps:?}");
    cluster.node(101).kill9();
    let b102 = cluster.node(102).bootstrap();
    eventually(Duration::from_secs(30), "102 leading everything", || {
        partitions(&b102, topic).filter(|ps| ps.iter().all(|p| p.leader == 102))
    });
    cluster.start_nodes(&[101], READY);
    eventually(Duration::from_secs(30), "101 back in every ISR", || {
        partitions(&b102, topic).filter(|ps| ps.iter().all(|p| p.isr.len() == 2))
    });
    on_101
}

#[test]
fn preferred_election_via_elect_leaders_and_cli() {
    let mut cluster = TestCluster::new(1, 2, &props(&["auto.leader.rebalance.enable=false"]));
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    create_topic(&all, "pref", 4, 2, &[]);
    let on_101 = bounce_101(&mut cluster, "pref");
    let all = cluster.bootstrap();
    // No automatic rebalance: 102 keeps leading.
    std::thread::sleep(Duration::from_secs(2));
    assert!(partitions(&all, "pref").is_some_and(|ps| ps.iter().all(|p| p.leader == 102)));
    // ElectLeaders PREFERRED for every partition: the ones preferring 101 are elected, the
    // others need no election and are left out (as in Kafka).
    let t0 = Instant::now();
    let res = elect(&all, 0, None);
    let elected: Vec<i32> = res
        .iter()
        .filter(|(t, _, code)| t == "pref" && *code == 0)
        .map(|(_, p, _)| *p)
        .collect();
    assert_eq!(elected, on_101, "{res:?}");
    assert!(res.iter().all(|(_, _, code)| *code == 0), "{res:?}");
    eventually(Duration::from_secs(10), "preferred leaders again", || {
        preferred_everywhere(&all, "pref")
    });
    eprintln!(
        "preferred election via ElectLeaders visible after {} ms",
        t0.elapsed().as_millis()
    );
    // ApiVersions advertises ElectLeaders 0-2 on the broker and the CONTROLLER listener; v0
    // (no election type: preferred) works too, and the answer is forwarded unchanged.
    let controller = format!("127.0.0.1:{}", cluster.node(1).cport);
    block_on(async {
        use nagare_client::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        use nagare_client::kafka_protocol::messages::{ElectLeadersRequest, TopicName};
        use nagare_client::kafka_protocol::protocol::StrBytes;
        for addr in [cluster.nodes[1].bootstrap(), controller.clone()] {
            let mut conn = nagare_client::Connection::connect(&addr, "elections-test")
                .await
                .expect("connect");
            let v = conn
                .broker_versions()
                .get(&43)
                .copied()
                .expect("ElectLeaders advertised");
            assert_eq!((v.min, v.max), (0, 2), "{addr}");
            let mut tp = TopicPartitions::default();
            tp.topic = TopicName(StrBytes::from_static_str("pref"));
            tp.partitions = vec![0];
            let mut req = ElectLeadersRequest::default();
            req.topic_partitions = Some(vec![tp]);
            req.timeout_ms = 10_000;
            let resp = conn.send_version(&req, 0).await.expect("ElectLeaders v0");
            let codes: Vec<i16> = resp
                .replica_election_results
                .iter()
                .flat_map(|t| t.partition_result.iter().map(|p| p.error_code))
                .collect();
            assert_eq!(codes, vec![84], "{addr}");
        }
    });
    // Nothing left to do: ELECTION_NOT_NEEDED per named partition, through the CLI too.
    let res = elect(&all, 0, Some(&[("pref", vec![0, 1, 2, 3])]));
    assert!(res.iter().all(|(_, _, c)| *c == 84), "{res:?}");
    let (ok, out, err) = cluster.cli(&[
        "topic",
        "elect-leaders",
        "--election-type",
        "preferred",
        "--topic",
        "pref",
        "--partition",
        "0",
        "-b",
        &all,
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Valid replica already elected for partition pref-0"),
        "{out}"
    );
    let elect_all = |cluster: &TestCluster, all: &str| {
        let (ok, out, err) = cluster.cli(&[
            "topic",
            "elect-leaders",
            "--election-type",
            "preferred",
            "--all-topic-partitions",
            "-b",
            all,
        ]);
        assert!(ok, "{out}{err}");
        out
    };
    let out = elect_all(&cluster, &all);
    assert!(
        out.contains("No partition needed a leader election"),
        "{out}"
    );
    // Bounce again and elect through the CLI.
    let on_101 = bounce_101(&mut cluster, "pref");
    let all = cluster.bootstrap();
    let out = elect_all(&cluster, &all);
    for p in on_101 {
        assert!(
            out.contains(&format!(
                "Successfully completed leader election (PREFERRED) for partition pref-{p}"
            )),
            "{out}"
        );
    }
    eventually(Duration::from_secs(10), "preferred leaders again", || {
        preferred_everywhere(&all, "pref")
    });
}

#[test]
fn auto_leader_rebalance_moves_leaders_back() {
    let mut cluster = TestCluster::new(
        1,
        2,
        &props(&[
            "auto.leader.rebalance.enable=true",
            "leader.imbalance.check.interval.seconds=1",
            "leader.imbalance.per.broker.percentage=10",
        ]),
    );
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    create_topic(&all, "auto", 4, 2, &[]);
    bounce_101(&mut cluster, "auto");
    let t0 = Instant::now();
    let all = cluster.bootstrap();
    eventually(Duration::from_secs(15), "the automatic rebalance", || {
        preferred_everywhere(&all, "auto")
    });
    eprintln!(
        "automatic preferred rebalance {} ms after 101 rejoined the ISRs",
        t0.elapsed().as_millis()
    );
}

type Acked = Arc<Mutex<Vec<(i32, i64, String)>>>;

/// Produces `v-<n>` to partitions round-robin with acks=all until `stop`, 20 in flight at a
/// time; records every acknowledged (partition, offset, value) and every delivery error.
fn spawn_producer(
    bootstrap: String,
    topic: &'static str,
    partitions: i32,
    stop: Arc<AtomicBool>,
    acked: Acked,
    errors: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "120000")
            .set("request.timeout.ms", "10000")
            .set("retry.backoff.ms", "50")
            .set("reconnect.backoff.ms", "20")
            .set("reconnect.backoff.max.ms", "200")
            .set("topic.metadata.refresh.interval.ms", "500")
            .create()
            .expect("producer");
        let mut n = 0u64;
        block_on(async {
            while !stop.load(Ordering::SeqCst) {
                let futs: Vec<_> = (0..20)
                    .map(|_| {
                        n += 1;
                        let v = format!("v-{n}");
                        let part = (n % partitions as u64) as i32;
                        let p = &p;
                        async move {
                            let r = p
                                .send(
                                    FutureRecord::to(topic).partition(part).payload(&v).key(&v),
                                    Duration::from_secs(0),
                                )
                                .await;
                            (v, r)
                        }
                    })
                    .collect();
                for f in futs {
                    let (v, r) = f.await;
                    match r {
                        Ok(d) => acked.lock().expect("lock").push((d.partition, d.offset, v)),
                        Err((e, _)) => errors.lock().expect("lock").push(format!("{v}: {e}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    })
}

#[test]
fn controlled_shutdown_rolling_restart_loses_no_acked_record() {
    const TOPIC: &str = "rolling";
    const PARTS: i32 = 3;
    let mut cluster = TestCluster::new(3, 3, &props(&["auto.leader.rebalance.enable=false"]));
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    create_topic(&all, TOPIC, PARTS, 3, &[("min.insync.replicas", "2")]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Default::default();
    let errors: Arc<Mutex<Vec<String>>> = Default::default();
    let producer = spawn_producer(
        all.clone(),
        TOPIC,
        PARTS,
        stop.clone(),
        acked.clone(),
        errors.clone(),
    );
    std::thread::sleep(Duration::from_secs(2));
    for id in [101, 102, 103] {
        // Spread leadership first (every broker leads its preferred partitions).
        let _ = elect(&all, 0, None);
        let ps = eventually(Duration::from_secs(30), "preferred leaders", || {
            preferred_everywhere(&all, TOPIC)
        });
        let led: Vec<i32> = ps
            .iter()
            .filter(|p| p.leader == id)
            .map(|p| p.partition)
            .collect();
        assert!(!led.is_empty(), "{id} leads nothing: {ps:?}");
        let others: String = [101, 102, 103]
            .iter()
            .filter(|b| **b != id)
            .map(|b| cluster.node(*b).bootstrap())
            .collect::<Vec<_>>()
            .join(",");
        let acked_before = acked.lock().expect("lock").len();
        let exited = AtomicBool::new(false);
        let t0 = Instant::now();
        let (moved_ms, moved_while_running, exit_ms) = std::thread::scope(|s| {
            let node = cluster.node(id);
            let exited = &exited;
            let stopper = s.spawn(move || {
                node.stop(Duration::from_secs(60));
                exited.store(true, Ordering::SeqCst);
                t0.elapsed().as_millis()
            });
            // Watch the metadata of the other brokers: leadership must leave `id` while its
            // process still runs.
            let (moved_ms, running) = block_on(async {
                let mut c: Option<Client> = None;
                loop {
                    if c.is_none() {
                        c = Client::connect_to(&others).await.ok();
                    }
                    if let Some(cl) = c.as_mut() {
                        match cl.metadata(Some(&[TOPIC])).await {
                            Ok(md) => {
                                let moved =
                                    md.topics.iter().find(|t| t.name == TOPIC).is_some_and(|t| {
                                        t.partitions.iter().all(|p| {
                                            p.leader != id && p.leader >= 0 && !p.isr.contains(&id)
                                        })
                                    });
                                if moved {
                                    return (
                                        t0.elapsed().as_millis(),
                                        !exited.load(Ordering::SeqCst),
                                    );
                                }
                            }
                            Err(_) => c = None,
                        }
                    }
                    assert!(
                        t0.elapsed() < Duration::from_secs(60),
                        "leadership never left {id}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            let exit_ms = stopper.join().expect("stopper");
            (moved_ms, running, exit_ms)
        });
        eprintln!(
            "broker {id}: SIGTERM -> leadership of {led:?} moved in {moved_ms} ms, process exited after {exit_ms} ms"
        );
        assert!(
            moved_while_running,
            "leadership left {id} only after its process exited"
        );
        let out = cluster.node(id).current_output();
        assert!(out.contains("controlled shutdown complete"), "{out}");
        assert!(out.contains("clean shutdown complete"), "{out}");
        assert!(!out.contains("controlled shutdown timed out"), "{out}");
        cluster.start_nodes(&[id], READY);
        eventually(Duration::from_secs(60), "a full ISR again", || {
            partitions(&all, TOPIC).filter(|ps| ps.iter().all(|p| p.isr.len() == 3))
        });
        eprintln!(
            "broker {id}: {} records acknowledged while it restarted",
            acked.lock().expect("lock").len() - acked_before
        );
    }
    // The producer goes on after the last restart.
    let at_end = acked.lock().expect("lock").len();
    eventually(Duration::from_secs(60), "the producer going on", || {
        (acked.lock().expect("lock").len() > at_end + 100).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    producer.join().expect("producer thread");
    let errors = errors.lock().expect("lock").clone();
    assert!(errors.is_empty(), "delivery failures: {errors:?}");
    let acked = acked.lock().expect("lock").clone();
    eprintln!(
        "{} records acknowledged during the rolling restart",
        acked.len()
    );
    // Every acknowledged record is at its offset.
    let mut want: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
    for (p, o, v) in &acked {
        want.entry(*p).or_default().insert(*o, v.clone());
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .set("group.id", "rolling-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
    let max: BTreeMap<i32, i64> = want
        .iter()
        .map(|(p, m)| (*p, m.keys().next_back().copied().unwrap_or(0)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while max
        .iter()
        .any(|(p, o)| got.get(p).and_then(|m| m.keys().next_back()) < Some(o))
    {
        assert!(
            Instant::now() < deadline,
            "could not read back every record"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            got.entry(m.partition()).or_default().insert(
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            );
        }
    }
    for (p, m) in &want {
        for (o, v) in m {
            assert_eq!(
                got.get(p).and_then(|g| g.get(o)),
                Some(v),
                "acknowledged {v} at {p}/{o} lost"
            );
        }
    }
}
