//! Real `RaftManager`s talking Kafka RPCs over TCP on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{Cluster, Timing, CLUSTER_ID};
use kafka_protocol::messages::{
    vote_request, ApiKey, BrokerId, DescribeQuorumResponse, TopicName, VoteRequest, VoteResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use nagare_raft::Role;
use nagare_raft_manager::{RaftManagerError, QUORUM_STATE_FILE};

fn fast() -> Timing {
    Timing {
        election_timeout_ms: 300,
        fetch_timeout_ms: 600,
        election_backoff_max_ms: 300,
        request_timeout_ms: 500,
        ..Timing::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_commit_fail_over_and_catch_up() {
    // Kafka's default timings.
    let mut c = Cluster::new(3, 0, Timing::default()).await;
    c.start_all(&[1, 2, 3]);
    let t0 = Instant::now();
    let (leader, epoch) = c.wait_leader(Duration::from_secs(15)).await;
    println!(
        "leader {leader} elected in epoch {epoch} after {:?}",
        t0.elapsed()
    );

    let last = c.propose_n("a", 50, 0).await;
    let state = c.wait_converged(last, Duration::from_secs(10)).await;
    assert_eq!(state.len(), 50);
    assert_eq!(state[0], Bytes::from_static(b"a-0"));
    for n in c.nodes.values() {
        // Exactly once: as many deliveries as records.
        assert_eq!(n.recorder.offsets.lock().len(), 50, "node {}", n.id);
        assert_eq!(n.m().leader().leader_id, Some(leader));
    }
    // A proposal in the wrong epoch, or on a follower, is refused.
    let follower = if leader == 1 { 2 } else { 1 };
    assert!(c
        .node(follower)
        .m()
        .propose(epoch, vec![Bytes::from_static(b"x")])
        .await
        .is_err());
    assert!(c
        .node(leader)
        .m()
        .propose(epoch + 1, vec![Bytes::from_static(b"x")])
        .await
        .is_err());

    // DescribeQuorum on the leader: every voter caught up.
    let info = c.node(leader).m().describe_quorum();
    assert_eq!(info.leader_id, Some(leader));
    assert_eq!(info.voters.len(), 3);
    assert!(info.voters.iter().all(|v| v.log_end_offset >= last));

    // Crash the leader: a new one within a few seconds, and proposals work again.
    c.node(leader).kill().await;
    let t1 = Instant::now();
    let (new_leader, new_epoch) = c.wait_leader(Duration::from_secs(15)).await;
    let failover = t1.elapsed();
    println!("failover: node {new_leader} leads epoch {new_epoch} after {failover:?}");
    assert_ne!(new_leader, leader);
    assert!(new_epoch > epoch);
    assert!(failover < Duration::from_secs(8), "{failover:?}");
    let last = c.propose_n("b", 20, 0).await;
    c.wait_converged(last, Duration::from_secs(10)).await;

    // Restart the old leader from its directory: it rejoins as a follower and catches up,
    // its listener seeing the whole history once.
    c.node_mut(leader).start().expect("restart");
    let state = c.wait_converged(last, Duration::from_secs(15)).await;
    assert_eq!(state.len(), 70);
    let old = c.node(leader).m();
    assert_eq!(old.leader().leader_id, Some(new_leader));
    assert_eq!(old.role(), Some(Role::Follower));
    assert_eq!(c.node(leader).recorder.offsets.lock().len(), 70);
    let changes = c.node(leader).recorder.leader_changes.lock().clone();
    assert_eq!(changes.last().map(|l| l.leader_id), Some(Some(new_leader)));

    // A graceful leader shutdown (EndQuorumEpoch) hands over faster than a crash.
    let (leader, _) = c.wait_leader(Duration::from_secs(5)).await;
    let t2 = Instant::now();
    c.node(leader).stop().await;
    let (next, _) = c.wait_leader(Duration::from_secs(15)).await;
    println!("graceful handover to {next} after {:?}", t2.elapsed());
    assert_ne!(next, leader);
    let last = c.propose_n("c", 5, 0).await;
    c.wait_converged(last, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_behind_a_snapshot_loads_it_and_catches_up() {
    let timing = Timing {
        max_record_bytes_between_snapshots: 4096,
        ..fast()
    };
    let mut c = Cluster::new(3, 0, timing).await;
    c.start_all(&[1, 2, 3]);
    let (leader, _) = c.wait_leader(Duration::from_secs(10)).await;
    let last = c.propose_n("a", 20, 100).await;
    c.wait_converged(last, Duration::from_secs(10)).await;
    let down = if leader == 3 { 2 } else { 3 };
    c.node(down).kill().await;
    // More than one snapshot's worth while it is down.
    let last = c.propose_n("b", 120, 100).await;
    let state = c.wait_converged(last, Duration::from_secs(10)).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(5)).await;
    let lm = c.node(leader).m();
    assert!(
        lm.log_start_offset() > 0,
        "the leader snapshotted and deleted its log prefix"
    );
    let part = nagare_raft_manager::partition_dir(c.node(leader).dir.path());
    let snaps: Vec<String> = std::fs::read_dir(&part)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".checkpoint"))
        .collect();
    assert_eq!(snaps.len(), 1, "older snapshots are deleted: {snaps:?}");

    c.node_mut(down).start().expect("restart");
    let state2 = c.wait_converged(last, Duration::from_secs(15)).await;
    assert_eq!(state, state2);
    let n = c.node(down);
    let loaded = n.recorder.snapshots_loaded.lock().clone();
    assert!(!loaded.is_empty(), "the restarted node loaded a snapshot");
    assert!(n.m().log_start_offset() > 0);
    println!(
        "restarted node loaded snapshots {loaded:?}, log start {}",
        n.m().log_start_offset()
    );
    // The restarted node's state is the leader's, record for record.
    assert_eq!(n.recorder.state().len(), 140);

    // Restarted again, it loads its own newest snapshot at start (before any commit), then
    // gets the tail.
    let own = n.m().snapshot_now().await.or(loaded.last().copied());
    c.node(down).kill().await;
    let last = c.propose_n("c", 5, 100).await;
    c.node_mut(down).start().expect("restart");
    let n = c.node(down);
    let at_start = n.recorder.snapshots_loaded.lock().clone();
    assert_eq!(at_start.len(), 1, "loaded at start: {at_start:?}");
    assert_eq!(Some(at_start[0]), own);
    assert!(
        n.recorder.offsets.lock().is_empty()
            || n.recorder.offsets.lock()[0] >= own.map_or(0, |s| s.end_offset)
    );
    let state3 = c.wait_converged(last, Duration::from_secs(15)).await;
    assert_eq!(state3.len(), 145);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_observer_gets_a_snapshot_and_the_tail() {
    let timing = Timing {
        max_record_bytes_between_snapshots: 2048,
        ..fast()
    };
    let mut c = Cluster::new(3, 1, timing).await;
    c.start_all(&[1, 2, 3]);
    let last = c.propose_n("a", 60, 100).await;
    c.wait_converged(last, Duration::from_secs(10)).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(5)).await;
    let snap = c.node(leader).m().snapshot_now().await;
    let start = c.node(leader).m().log_start_offset();
    assert!(start > 0, "leader log start {start}, snapshot {snap:?}");
    let last = c.propose_n("b", 3, 10).await;

    // Observer 101, empty directory: FetchSnapshot, then Fetch from the snapshot's end.
    c.node_mut(101).start().expect("observer");
    let state = c.wait_converged(last, Duration::from_secs(15)).await;
    assert_eq!(state.len(), 63);
    let obs = c.node(101);
    let loaded = obs.recorder.snapshots_loaded.lock().clone();
    assert_eq!(
        loaded.len(),
        1,
        "observer installed one snapshot: {loaded:?}"
    );
    assert!(loaded[0].end_offset >= start);
    assert_eq!(obs.m().role(), Some(Role::Follower));
    assert!(!obs.m().is_voter());
    // The observer only received what the snapshot did not cover as commits.
    assert!(obs.recorder.offsets.lock().len() < 63);
    // The leader reports it as an observer.
    let (leader, _) = c.wait_leader(Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = c.node(leader).m().describe_quorum();
        if info.observers.iter().any(|o| o.replica_id == 101) {
            break;
        }
        assert!(Instant::now() < deadline, "observer not reported: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And DescribeQuorum over the wire (v2) says the same.
    let mut req = BytesMut::new();
    nagare_raft_manager::describe_quorum_request()
        .encode(&mut req, 2)
        .expect("encode");
    let mut body = c
        .node(leader)
        .m()
        .handle(ApiKey::DescribeQuorum, 2, req.freeze())
        .await
        .expect("describe");
    let resp = DescribeQuorumResponse::decode(&mut body, 2).expect("decode");
    let info = nagare_raft_manager::describe_quorum_info(&resp).expect("no error");
    assert_eq!(info.leader_id, Some(leader));
    assert!(info.observers.iter().any(|o| o.replica_id == 101));
    assert_eq!(resp.nodes.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_elects_itself_at_once_and_keeps_its_state() {
    let mut c = Cluster::new(1, 0, Timing::default()).await;
    let t0 = Instant::now();
    c.start_all(&[1]);
    let m = c.node(1).m();
    let epoch = m
        .wait_ready_epoch(Duration::from_secs(5))
        .await
        .expect("leader");
    let took = t0.elapsed();
    println!("single voter ready as leader of epoch {epoch} after {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let o = m
        .propose(
            epoch,
            vec![Bytes::from_static(b"r0"), Bytes::from_static(b"r1")],
        )
        .await
        .expect("commit");
    // Resolved only once delivered.
    assert_eq!(c.node(1).recorder.state().len(), 2);
    assert_eq!(m.applied_offset(), o + 1);
    let t = Instant::now();
    for i in 0..100 {
        m.propose(epoch, vec![Bytes::from(format!("x{i}"))])
            .await
            .expect("commit");
    }
    println!("100 sequential single-voter commits took {:?}", t.elapsed());
    c.node(1).stop().await;

    // The quorum-state file survives the restart, and the log is delivered again.
    let qs_path = nagare_raft_manager::partition_dir(c.node(1).dir.path()).join(QUORUM_STATE_FILE);
    let text = std::fs::read_to_string(&qs_path).expect("quorum-state");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["leaderEpoch"], epoch);
    assert_eq!(json["clusterId"], CLUSTER_ID);
    assert!(json["crc"].is_u64(), "{text}");
    let t0 = Instant::now();
    c.node_mut(1).start().expect("restart");
    let m = c.node(1).m();
    let epoch2 = m
        .wait_ready_epoch(Duration::from_secs(5))
        .await
        .expect("leader again");
    println!("restarted single voter ready after {:?}", t0.elapsed());
    assert!(epoch2 > epoch);
    let state = c.node(1).recorder.state();
    assert_eq!(state.len(), 102);
    assert_eq!(state[0], Bytes::from_static(b"r0"));
    c.node(1).stop().await;

    // A damaged quorum-state file is refused rather than risking a second vote.
    let text = std::fs::read_to_string(&qs_path).expect("quorum-state");
    std::fs::write(
        &qs_path,
        text.replace("\"leaderEpoch\":", "\"leaderEpoch\":1"),
    )
    .expect("tamper");
    match c.node_mut(1).start() {
        Err(RaftManagerError::QuorumState(e)) => println!("refused: {e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(()) => panic!("a corrupt quorum-state file was accepted"),
    }
    std::fs::write(&qs_path, &text[..text.len() / 2]).expect("tear");
    assert!(matches!(
        c.node_mut(1).start(),
        Err(RaftManagerError::QuorumState(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_another_cluster_are_refused() {
    let mut c = Cluster::new(1, 0, Timing::default()).await;
    c.start_all(&[1]);
    let m = c.node(1).m();
    m.wait_ready_epoch(Duration::from_secs(5))
        .await
        .expect("leader");
    let vote = |cluster: &str| {
        let r = VoteRequest::default()
            .with_cluster_id(Some(StrBytes::from_string(cluster.to_string())))
            .with_topics(vec![vote_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
                .with_partitions(vec![vote_request::PartitionData::default()
                    .with_replica_id(BrokerId(7))
                    .with_replica_epoch(100)
                    .with_last_offset(1000)
                    .with_last_offset_epoch(99)])]);
        let mut b = BytesMut::new();
        r.encode(&mut b, 1).expect("encode");
        b.freeze()
    };
    let mut resp = m
        .handle(ApiKey::Vote, 1, vote("another-cluster"))
        .await
        .expect("answer");
    let r = VoteResponse::decode(&mut resp, 1).expect("decode");
    assert_eq!(r.topics[0].partitions[0].error_code, 104);
    // Same cluster, but node 7 is no voter: refused (INVALID_REQUEST), epoch unchanged.
    let before = m.leader();
    let mut resp = m
        .handle(ApiKey::Vote, 1, vote(CLUSTER_ID))
        .await
        .expect("answer");
    let r = VoteResponse::decode(&mut resp, 1).expect("decode");
    assert!(!r.topics[0].partitions[0].vote_granted);
    assert_eq!(m.leader(), before);
    // Unsupported versions and garbage are errors for the network layer.
    assert!(m.handle(ApiKey::Vote, 9, Bytes::new()).await.is_err());
    assert!(m
        .handle(ApiKey::Vote, 1, Bytes::from_static(b"\x01"))
        .await
        .is_err());
    assert!(m.handle(ApiKey::Produce, 9, Bytes::new()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voter_commit_latency() {
    let mut c = Cluster::new(3, 0, Timing::default()).await;
    c.start_all(&[1, 2, 3]);
    let (leader, epoch) = c.wait_leader(Duration::from_secs(15)).await;
    // Let the followers settle into long-polled fetches.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = c.node(leader).m();
    let n = 200;
    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let t1 = Instant::now();
        m.propose(epoch, vec![Bytes::from(format!("r{i}"))])
            .await
            .expect("commit");
        lat.push(t1.elapsed());
    }
    let total = t.elapsed();
    lat.sort();
    println!(
        "3 voters: {n} sequential commits in {total:?}: p50 {:?} p99 {:?} max {:?}",
        lat[n / 2],
        lat[n * 99 / 100],
        lat[n - 1]
    );
    // A commit needs a fetch round trip to a follower and back: the leader answers held
    // fetches as soon as it appends, so this is fsync-bound, never the 500 ms fetch wait.
    assert!(lat[n / 2] < Duration::from_millis(100), "{:?}", lat[n / 2]);
    let state = c
        .wait_converged(m.applied_offset() - 1, Duration::from_secs(10))
        .await;
    assert_eq!(state.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_quorum_fails_pending_proposals() {
    let mut c = Cluster::new(3, 0, fast()).await;
    c.start_all(&[1, 2, 3]);
    let (leader, epoch) = c.wait_leader(Duration::from_secs(10)).await;
    let last = c.propose_n("a", 5, 0).await;
    c.wait_converged(last, Duration::from_secs(10)).await;
    for id in [1, 2, 3] {
        if id != leader {
            c.node(id).kill().await;
        }
    }
    let m = c.node(leader).m();
    let t = Instant::now();
    // No majority: the proposal cannot commit, and check-quorum makes the leader resign,
    // which fails it (the caller answers NOT_CONTROLLER and retries elsewhere).
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        m.propose(epoch, vec![Bytes::from_static(b"lost")]),
    )
    .await
    .expect("resolved");
    println!(
        "proposal without a quorum failed after {:?}: {r:?}",
        t.elapsed()
    );
    assert_eq!(
        r,
        Err(nagare_raft_manager::ProposeError::LeadershipLost(epoch))
    );
    assert_eq!(m.ready_epoch(), None);
    assert!(!c
        .node(leader)
        .recorder
        .state()
        .contains(&Bytes::from_static(b"lost")));
    // The followers come back: a leader again. The failed record may still commit (the old
    // leader's log is the longest, so it can win the next election and commit it in its new
    // epoch) — "may or may not", as the error says — but never out of order.
    for id in [1, 2, 3] {
        if id != leader {
            c.node_mut(id).start().expect("restart");
        }
    }
    let last = c.propose_n("b", 3, 0).await;
    let state = c.wait_converged(last, Duration::from_secs(15)).await;
    let mut expected: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("a-{i}"))).collect();
    if state.len() == 9 {
        expected.push(Bytes::from_static(b"lost"));
    }
    expected.extend((0..3).map(|i| Bytes::from(format!("b-{i}"))));
    assert_eq!(state, expected);
}
