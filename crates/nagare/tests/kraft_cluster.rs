//! KRaft with real processes (issue 4): 3 controllers and 3 brokers on 127.0.0.1, configured
//! with Kafka's property names and formatted with `nagare storage format`.
//!
//! - the quorum elects a leader; brokers register, are unfenced and serve CreateTopics
//!   (forwarded to the active controller);
//! - SIGKILL of the active controller: a new one is elected and CreateTopics works again
//!   within a few seconds; the old one restarts and rejoins as a follower;
//! - a controller restarted after more than one snapshot's worth of records loads a snapshot
//!   and catches up;
//! - a killed broker is fenced after `broker.session.timeout.ms`;
//! - a broker started after many topics exist gets the metadata from a snapshot plus the tail;
//! - an unformatted node of a multi-node cluster refuses to start with a clear error.

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use nagare_client::{Client, NewTopic};

const READY: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Retries `f` every 200 ms until it returns `Some` or `timeout` passes.
fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The active controller as a broker reports it (`nagare quorum describe`).
fn quorum(cluster: &TestCluster, bootstrap: &str) -> Option<nagare_client::QuorumDescription> {
    runtime()
        .block_on(async {
            let mut c = Client::connect_to(bootstrap).await.ok()?;
            c.describe_quorum().await.ok()
        })
        .filter(|q| q.leader_id >= 0)
        .filter(|_| !cluster.cluster_id.is_empty())
}

fn create_topics(bootstrap: &str, names: &[String], partitions: i32) -> Result<(), String> {
    runtime().block_on(async {
        let mut c = Client::connect_to(bootstrap)
            .await
            .map_err(|e| e.to_string())?;
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic {
                name: n.clone(),
                partitions: Some(partitions),
                replication_factor: Some(1),
                configs: vec![],
            })
            .collect();
        match c.create_topics(&topics, false).await {
            Ok(()) => Ok(()),
            // The client retries a request whose answer it missed (a slow machine, a
            // failover): the first attempt may have created the topics already. That is
            // success once they are all there.
            Err(e) if e.to_string().contains("TOPIC_ALREADY_EXISTS") => {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let listed = c.list_topics().await.map_err(|e| e.to_string())?;
                    if names.iter().all(|n| listed.contains(n)) {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(e.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

fn cluster_state(bootstrap: &str) -> Option<Vec<(i32, bool)>> {
    runtime().block_on(async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        let d = c.describe_cluster(true, false).await.ok()?;
        let mut v: Vec<(i32, bool)> = d.nodes.iter().map(|n| (n.id, n.fenced)).collect();
        v.sort();
        Some(v)
    })
}

fn checkpoints(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data").join("__cluster_metadata-0"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".checkpoint"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn controllers_elect_fail_over_snapshot_and_fence_brokers() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=300",
            "metadata.log.max.record.bytes.between.snapshots=16384",
        ],
    );
    cluster.start_all(READY);
    let b1 = cluster.node(101).bootstrap();

    // Every broker registered and unfenced.
    eventually(Duration::from_secs(30), "three unfenced brokers", || {
        let s = cluster_state(&b1)?;
        (s == vec![(101, false), (102, false), (103, false)]).then_some(())
    });
    let q = eventually(Duration::from_secs(30), "a quorum leader", || {
        quorum(&cluster, &b1)
    });
    assert!((1..=3).contains(&q.leader_id), "{q:?}");
    let mut voters: Vec<i32> = q.voters.iter().map(|v| v.id).collect();
    voters.sort();
    assert_eq!(voters, vec![1, 2, 3]);

    // The operator's view: `nagare quorum describe` and `nagare cluster describe`.
    let (ok, out, err) = cluster.cli(&["quorum", "describe", "--status", "-b", &b1]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("LeaderId:               {}", q.leader_id)),
        "{out}"
    );
    assert!(out.contains("CurrentVoters:          [1,2,3]"), "{out}");
    let (ok, out, err) = cluster.cli(&["quorum", "describe", "--replication", "-b", &b1]);
    assert!(
        ok && out.contains("Leader") && out.contains("Follower"),
        "{out}{err}"
    );
    let (ok, out, err) = cluster.cli(&["cluster", "describe", "-b", &b1]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("unfenced").count(), 3, "{out}");
    assert!(out.contains(&cluster.cluster_id), "{out}");

    // CreateTopics through a broker (forwarded to the active controller).
    create_topics(&b1, &["t0".into()], 6).expect("create t0");

    // A client quota set through a broker-only node (AlterClientQuotas forwarded to the
    // active controller) reaches every broker's image; it is checked again on broker 103
    // after its restart below (snapshot plus tail).
    let (ok, _, err) = cluster.cli(&[
        "quota",
        "set",
        "--user",
        "alice",
        "--producer-byte-rate",
        "1024",
        "-b",
        &b1,
    ]);
    assert!(ok, "{err}");
    let b2 = cluster.node(102).bootstrap();
    eventually(Duration::from_secs(10), "the quota on broker 102", || {
        let (ok, out, _) = cluster.cli(&["quota", "describe", "--user", "alice", "-b", &b2]);
        (ok && out.contains("user-principal 'alice' are producer_byte_rate=1024.0")).then_some(())
    });

    // Kill the active controller: a new leader, and CreateTopics works again soon.
    let old = q.leader_id;
    cluster.node(old).kill9();
    let killed_at = Instant::now();
    eventually(
        Duration::from_secs(20),
        "CreateTopics after failover",
        || create_topics(&b1, &["t1".into()], 3).ok(),
    );
    let failover = killed_at.elapsed();
    let q2 = eventually(Duration::from_secs(10), "the new leader", || {
        quorum(&cluster, &b1).filter(|q| q.leader_id != old)
    });
    assert!(q2.leader_epoch > q.leader_epoch);
    eprintln!(
        "failover: leader {old} killed, {} leads epoch {}; CreateTopics ok after {failover:?}",
        q2.leader_id, q2.leader_epoch
    );
    assert!(
        failover < Duration::from_secs(15),
        "failover took {failover:?}"
    );

    // Enough records for several snapshots while the old leader is down.
    let names: Vec<String> = (0..300).map(|i| format!("bulk-{i}")).collect();
    for chunk in names.chunks(100) {
        create_topics(&b1, chunk, 1).expect("bulk create");
    }
    let leader_dir = cluster.node(q2.leader_id).dir().to_path_buf();
    eventually(Duration::from_secs(20), "a snapshot on the leader", || {
        (checkpoints(&leader_dir) > 0).then_some(())
    });

    // The old leader restarts, loads its snapshot (or fetches one) and catches up as a
    // follower.
    let n = cluster.node(old);
    n.start();
    n.wait_ready(READY);
    eventually(Duration::from_secs(30), "the old leader caught up", || {
        let q = quorum(&cluster, &b1)?;
        let me = q.voters.iter().find(|v| v.id == old)?;
        (q.leader_id != old && me.log_end_offset >= q.high_watermark).then_some(())
    });
    let out = cluster.node(old).current_output();
    assert!(
        out.contains("loaded metadata snapshot"),
        "the restarted controller did not load a snapshot:\n{out}"
    );

    // A killed broker is fenced after the session timeout.
    cluster.node(103).kill9();
    let fenced = eventually(Duration::from_secs(20), "broker 103 fenced", || {
        let s = cluster_state(&b1)?;
        s.contains(&(103, true)).then_some(Instant::now())
    });
    let _ = fenced;
    let (_, out, _) = cluster.cli(&["cluster", "describe", "-b", &b1]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("103") && l.ends_with("fenced") && !l.ends_with("unfenced")),
        "{out}"
    );

    // UnregisterBroker (`kafka-cluster unregister`), sent to a broker-only node and forwarded:
    // the killed broker leaves the cluster; a second attempt is BROKER_ID_NOT_REGISTERED.
    let (ok, out, err) = cluster.cli(&["cluster", "unregister", "--id", "103", "-b", &b1]);
    assert!(ok, "unregister 103: {out}{err}");
    eventually(Duration::from_secs(10), "broker 103 unregistered", || {
        let s = cluster_state(&b1)?;
        (!s.iter().any(|(id, _)| *id == 103)).then_some(())
    });
    let (ok, out, err) = cluster.cli(&["cluster", "unregister", "--id", "103", "-b", &b1]);
    assert!(
        !ok && format!("{out}{err}").contains("not currently registered"),
        "{out}{err}"
    );
    // Log levels (BROKER_LOGGER) are answered by the broker-only node itself, not forwarded.
    runtime().block_on(async {
        use nagare_client::{AlterConfigOp, ConfigResource};
        let mut c = Client::connect_to(&b1).await.expect("connect 101");
        let loggers = ConfigResource::BrokerLogger(101);
        c.incremental_alter_configs(
            &loggers,
            &[AlterConfigOp::Set("nagare_raft".into(), "DEBUG".into())],
            false,
        )
        .await
        .expect("set a log level on broker 101");
        let levels = c
            .describe_configs(&loggers, Some(&["nagare_raft", "root"]))
            .await
            .expect("describe broker 101's loggers");
        let level = |n: &str| {
            levels
                .iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(level("nagare_raft").as_deref(), Some("DEBUG"));
        assert_eq!(level("root").as_deref(), Some("INFO"));
    });

    // A new broker that joins now gets everything (snapshot plus tail); it registers again.
    cluster.node(103).start();
    cluster.node(103).wait_ready(READY);
    let b3 = cluster.node(103).bootstrap();
    let topics = runtime().block_on(async {
        let mut c = Client::connect_to(&b3).await.expect("connect 103");
        c.list_topics().await.expect("list")
    });
    assert!(topics.iter().filter(|t| t.starts_with("bulk-")).count() == 300);
    let (ok, out, err) = cluster.cli(&["quota", "describe", "-b", &b3]);
    assert!(
        ok && out.contains("user-principal 'alice' are producer_byte_rate=1024.0"),
        "{out}{err}"
    );
}

#[test]
fn a_broker_joining_after_10000_topics_gets_them_from_a_snapshot_and_the_tail() {
    let mut cluster = TestCluster::new(
        1,
        4,
        &[
            "metadata.log.max.record.bytes.between.snapshots=1048576",
            "broker.heartbeat.interval.ms=500",
        ],
    );
    cluster.start_nodes(&[1, 101, 102, 103], READY);
    let b1 = cluster.node(101).bootstrap();
    eventually(Duration::from_secs(30), "three unfenced brokers", || {
        let s = cluster_state(&b1)?;
        (s.iter().filter(|(_, fenced)| !fenced).count() == 3).then_some(())
    });
    let started = Instant::now();
    let names: Vec<String> = (0..10_000).map(|i| format!("topic-{i:05}")).collect();
    for chunk in names.chunks(1000) {
        create_topics(&b1, chunk, 1).expect("create 1000 topics");
    }
    eprintln!("created 10,000 topics in {:?}", started.elapsed());
    let controller_dir = cluster.node(1).dir().to_path_buf();
    eventually(
        Duration::from_secs(30),
        "a snapshot on the controller",
        || (checkpoints(&controller_dir) > 0).then_some(()),
    );
    // A few more after the snapshot: the new broker needs the tail too.
    create_topics(&b1, &["after-snapshot".into()], 1).expect("create");

    let joined = Instant::now();
    cluster.node(104).start();
    cluster.node(104).wait_ready(READY);
    let b4 = cluster.node(104).bootstrap();
    let topics = runtime().block_on(async {
        let mut c = Client::connect_to(&b4).await.expect("connect 104");
        c.list_topics().await.expect("list")
    });
    eprintln!(
        "broker 104 served the full metadata {:?} after its start",
        joined.elapsed()
    );
    assert_eq!(
        topics.iter().filter(|t| t.starts_with("topic-")).count(),
        10_000
    );
    assert!(topics.iter().any(|t| t == "after-snapshot"));
    let out = cluster.node(104).current_output();
    assert!(
        out.contains("loaded metadata snapshot"),
        "broker 104 did not get a snapshot:\n{out}"
    );
}

#[test]
fn unformatted_node_of_a_cluster_refuses_to_start() {
    let cluster = TestCluster::new(3, 0, &[]);
    let n = &cluster.nodes[0];
    std::fs::remove_file(n.log_dir().join("meta.properties")).expect("unformat");
    let out = std::process::Command::new(common::nagare_bin())
        .args(["server", "--config"])
        .arg(n.config_file())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nagare storage format"), "{err}");
}
