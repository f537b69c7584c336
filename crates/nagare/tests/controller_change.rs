//! Brokers follow a change of active controller at once: a request in flight to the old
//! controller is abandoned when the KRaft leader changes (Kafka's `NodeToControllerRequestThread`
//! disconnects from the old controller), so heartbeats reach the new controller within its
//! `broker.session.timeout.ms`, counted from its activation.
//!
//! 3 combined nodes; the active controller is SIGSTOPped (a paused process keeps its TCP
//! connections open, so a heartbeat sent to it just waits) until a new controller has been
//! active for longer than the session timeout. The new controller fences the paused node and
//! none of the live ones. Before the fix, every broker's heartbeat waited out the 10 s request
//! timeout on the paused node, and the new controller fenced all three brokers — every
//! partition leaderless, every Metadata answer without brokers (librdkafka then drops all its
//! brokers and waits for `metadata.recovery.rebootstrap.trigger.ms`, 5 minutes).

mod common;

use std::time::Duration;

use common::cluster::{ClusterLayout, TestCluster};
use common::replication::eventually;

const READY: Duration = Duration::from_secs(60);
const SESSION_MS: u64 = 3000;

/// The node that logged "became the active controller" last in `outputs` (one per node).
fn active_in(outputs: &[(i32, String)]) -> Option<i32> {
    outputs
        .iter()
        .filter_map(|(id, out)| {
            let line = out
                .lines()
                .rfind(|l| l.contains("became the active controller"))?;
            Some((line.split_whitespace().next()?.to_string(), *id))
        })
        .max()
        .map(|(_, id)| id)
}

fn fenced_lines(output: &str, broker: i32) -> usize {
    let needle = format!("no heartbeat within the session timeout broker={broker} ");
    output.lines().filter(|l| l.contains(&needle)).count()
}

#[test]
fn live_brokers_heartbeat_a_new_controller_while_the_old_one_is_paused() {
    let session = format!("broker.session.timeout.ms={SESSION_MS}");
    let extra = [session.as_str(), "broker.heartbeat.interval.ms=300"];
    let mut cluster = TestCluster::with_layout(ClusterLayout {
        controllers: 0,
        brokers: 0,
        combined: 3,
        extra: &extra,
        client_address: None,
        controller_address: None,
    });
    cluster.start_all(READY);
    let ids = [1, 2, 3];
    let outputs = |c: &mut TestCluster| -> Vec<(i32, String)> {
        ids.iter()
            .map(|id| (*id, c.node(*id).current_output()))
            .collect()
    };
    let old = eventually(Duration::from_secs(30), "an active controller", || {
        active_in(&outputs(&mut cluster))
    });
    // Heartbeats every 300 ms: one is in flight to `old` or about to be when it stops.
    std::thread::sleep(Duration::from_secs(1));
    let live: Vec<i32> = ids.iter().copied().filter(|id| *id != old).collect();
    let before: Vec<usize> = live
        .iter()
        .map(|id| cluster.node(*id).current_output().len())
        .collect();

    cluster.node(old).signal("STOP");
    let new = eventually(Duration::from_secs(20), "a new active controller", || {
        live.iter()
            .zip(&before)
            .find(|(id, from)| {
                cluster.node(**id).current_output()[**from..]
                    .contains("became the active controller")
            })
            .map(|(id, _)| *id)
    });
    // Well past the new controller's session timeout (counted from its activation).
    std::thread::sleep(Duration::from_millis(SESSION_MS + 3000));
    let idx = live.iter().position(|id| *id == new).unwrap_or(0);
    let since = cluster.node(new).current_output()[before[idx]..].to_string();
    cluster.node(old).signal("CONT");

    eprintln!("active controller {old} paused; {new} took over");
    assert!(
        fenced_lines(&since, old) >= 1,
        "the paused node {old} was not fenced: the test did not wait out the session timeout"
    );
    for id in &live {
        assert_eq!(
            fenced_lines(&since, *id),
            0,
            "live broker {id} was fenced by the new controller {new}"
        );
    }
}
