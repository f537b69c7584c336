//! ISR changes are batched (issue 5): when a broker dies, each leader sends the ISR shrinks of
//! all its partitions to the controller in one AlterPartition request (Kafka's
//! `AlterPartitionManager`), not one request per partition. 3 controllers, 3 brokers, a
//! 30-partition RF=3 topic; one broker is SIGKILLed.

mod common;

use std::time::Duration;

use common::block_on;
use common::cluster::TestCluster;
use common::replication;
use common::replication::eventually;
use nagare_client::{Client, TopicMetadata};
use rdkafka::producer::FutureRecord;

const TOPIC: &str = "many";
const PARTITIONS: i32 = 30;
const READY: Duration = Duration::from_secs(60);

fn topic(bootstrap: &str) -> Option<TopicMetadata> {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        c.topic_metadata(TOPIC).await.ok()
    })
}

/// `partitions=N` of every "AlterPartition sent" line of `output`.
fn batches(output: &str) -> Vec<usize> {
    output
        .lines()
        .filter(|l| l.contains("AlterPartition sent"))
        .filter_map(|l| {
            let rest = &l[l.find("partitions=")? + "partitions=".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[test]
fn a_broker_failure_shrinks_every_isr_with_one_request_per_leader() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.session.timeout.ms=30000",
            // Only the session fences (Kafka's behaviour): the closed-connection fencing
            // would fence the killed broker at once, and the controller, not its leaders,
            // would shrink the ISRs.
            "nagare.broker.disconnect.fence.grace.ms=-1",
            "broker.heartbeat.interval.ms=300",
            "replica.lag.time.max.ms=2000",
            "replica.fetch.backoff.ms=100",
            "replica.fetch.wait.max.ms=200",
        ],
    );
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    replication::create_topic(&all, TOPIC, PARTITIONS, 3, &[]);
    let full = eventually(Duration::from_secs(30), "full ISRs", || {
        topic(&all).filter(|t| {
            t.partitions.len() == PARTITIONS as usize
                && t.partitions
                    .iter()
                    .all(|p| p.leader >= 0 && p.isr.len() == 3)
        })
    });
    let before: Vec<usize> = [101, 102, 103]
        .iter()
        .map(|id| batches(&cluster.node(*id).current_output()).len())
        .collect();

    // A broker dies without being fenced (long session timeout, no fencing on its closed
    // heartbeat connection): its leaders' ISRs shrink
    // through AlterPartition after replica.lag.time.max.ms, leadership stays put.
    cluster.node(103).kill9();
    let live = format!(
        "{},{}",
        cluster.node(101).bootstrap(),
        cluster.node(102).bootstrap()
    );
    // Kafka counts a follower whose log end equals the leader's as caught up however long
    // ago it fetched (`Replica.isCaughtUp`), so an idle partition keeps a dead follower in its
    // ISR until the broker is fenced. One record per partition the live brokers lead makes
    // 103 fall behind everywhere.
    let producer = replication::producer(&live, "1", false);
    block_on(async {
        for p in full.partitions.iter().filter(|p| p.leader != 103) {
            producer
                .send(
                    FutureRecord::<(), _>::to(TOPIC)
                        .partition(p.partition)
                        .payload("after the kill"),
                    Duration::from_secs(0),
                )
                .await
                .expect("acks=1 write to a live leader");
        }
    });
    let t = eventually(Duration::from_secs(30), "ISRs without 103", || {
        topic(&live).filter(|t| {
            t.partitions
                .iter()
                .filter(|p| p.leader != 103)
                .all(|p| !p.isr.contains(&103))
        })
    });
    for (i, id) in [101, 102].iter().enumerate() {
        let led = t.partitions.iter().filter(|p| p.leader == *id).count();
        let sent: Vec<usize> = batches(&cluster.node(*id).current_output())
            .into_iter()
            .skip(before[i])
            .collect();
        eprintln!("broker {id} leads {led} partitions; AlterPartition batches {sent:?}");
        assert!(sent.iter().sum::<usize>() >= led, "a shrink per partition");
        assert!(
            led <= 1 || sent.len() < led,
            "broker {id} sent one request per partition: {sent:?}"
        );
    }
}
