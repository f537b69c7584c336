//! Metadata answers held across a leader's death (Nagare, beyond Kafka; issue 17).
//!
//! When a partition leader's process dies, a client's connection to it is closed by the
//! kernel and librdkafka refreshes the metadata of its topics AT ONCE ("broker down",
//! `rd_kafka_broker_fail` → `rd_kafka_metadata_refresh_known_topics`). That refresh reaches
//! a live broker before the controller has fenced the dead one (it does so
//! `nagare.broker.disconnect.fence.grace.ms` after the FIN on the heartbeat connection), so
//! the answer still names the dead broker as leader, and librdkafka asks again only on its
//! once-a-second topic scan: the failover then costs up to 1–2 s of client time although
//! the cluster moved the leadership ~0.1 s after the kill.
//!
//! So a broker that has itself just seen broker N close or refuse a connection (its replica
//! fetcher's connection to N — end-of-stream, reset, refused: what a dead process's socket
//! answers, never what a slow or stopped one does), and not re-established it, holds a
//! Metadata answer naming N as leader of a requested partition until
//!
//! - its metadata image no longer names N as leader of those partitions (the fencing moved
//!   them: the answer then carries the new leaders), or
//! - N is reachable again (the fetcher reconnected), or
//! - `nagare.metadata.leader.failover.wait.ms` have passed since it first saw N go
//!   ([`DEFAULT_WAIT_MS`]; `0` answers at once, as Kafka does).
//!
//! The client's refresh often arrives within a millisecond of the death, before the fetcher
//! task has read the end-of-stream; so the check also looks at the fetcher's connection
//! itself (a non-blocking `MSG_PEEK`, [`nagare_client::PeerClosedProbe`]): what the kernel
//! already holds counts as seen.
//!
//! The bound runs from the moment N was seen to go, not from the request: when N is down but
//! never fenced (`nagare.broker.disconnect.fence.grace.ms=-1`), only requests in the first
//! `wait` after its death are held, none for longer than `wait`, and later ones are answered
//! at once as in Kafka. An outage is keyed by N's broker epoch, so a restarted N (which
//! registers with a new epoch) is never held against. A broker that is only slow (SIGSTOP, a
//! saturated disk) keeps its connections open: nothing is held for it.
//!
//! The hold is a delayed response ([`crate::network::Reply::Later`]): the connection goes on
//! reading and dispatching requests; only the responses after it wait, since Kafka answers a
//! connection's requests in order anyway.
//!
//! [`hold_deadline`] is the sans-I/O decision; [`PeerReachability`] is what the replica
//! fetchers report; [`wait_for_failover`] is the waiting shell the Metadata handler calls.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nagare_client::PeerClosedProbe;
use nagare_metadata::{MetadataImage, TopicImage};
use parking_lot::Mutex;

use crate::Broker;

/// Default of `nagare.metadata.leader.failover.wait.ms`: the default fence grace (100 ms)
/// plus 500 ms for the fencing to be committed by the controller quorum and to reach this
/// broker's image on a loaded machine (it takes a few ms when idle).
pub const DEFAULT_WAIT_MS: u64 = 600;

/// An ongoing outage of a peer broker, as this broker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unreachable {
    /// The peer's broker epoch (registration) in this broker's image when it was seen.
    epoch: i64,
    /// When this broker first saw the peer close or refuse a connection.
    since: Instant,
}

/// Which peer brokers this broker has seen close or refuse its connections (and not
/// reconnected to since), with a watch that ticks on every change.
pub struct PeerReachability {
    unreachable: Mutex<HashMap<i32, Unreachable>>,
    /// Per peer: its epoch and a probe of the replica fetcher's current connection to it,
    /// looked at when a Metadata answer names it (closes the race between a client's
    /// "broker down" refresh and the fetcher task noticing the same death).
    probes: Mutex<HashMap<i32, (i64, Weak<PeerClosedProbe>)>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for PeerReachability {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerReachability {
    /// Every peer reachable.
    pub fn new() -> Self {
        PeerReachability {
            unreachable: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            changed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Broker `node`, registered with `epoch`, closed, reset or refused a connection at
    /// `at`. An outage already noted for the same epoch keeps its start: retries against a
    /// dead peer must not move the bound of the hold.
    pub fn peer_closed(&self, node: i32, epoch: i64, at: Instant) {
        let mut m = self.unreachable.lock();
        match m.get(&node) {
            Some(u) if u.epoch == epoch => return,
            _ => {
                m.insert(node, Unreachable { epoch, since: at });
            }
        }
        drop(m);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A connection to broker `node` was established: its outage (if any) is over.
    pub fn peer_reachable(&self, node: i32) {
        if self.unreachable.lock().remove(&node).is_some() {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A connection to broker `node`, registered with `epoch`, was established (a replica
    /// fetcher's): its outage (if any) is over, and the connection is watched from now on.
    pub fn connected(&self, node: i32, epoch: i64, conn: &mut nagare_client::Connection) {
        if let Some(probe) = conn.peer_closed_probe() {
            self.probes.lock().insert(node, (epoch, probe));
        }
        self.peer_reachable(node);
    }

    /// When an ongoing outage of broker `node` in its registration `epoch` began. A peer
    /// not (yet) noted as gone whose watched connection the kernel already holds closed
    /// or reset counts as gone from now.
    pub fn unreachable_since(&self, node: i32, epoch: i64) -> Option<Instant> {
        if let Some(since) = self
            .unreachable
            .lock()
            .get(&node)
            .filter(|u| u.epoch == epoch)
            .map(|u| u.since)
        {
            return Some(since);
        }
        let probe = self
            .probes
            .lock()
            .get(&node)
            .filter(|(e, _)| *e == epoch)
            .and_then(|(_, p)| p.upgrade())?;
        if !probe.peer_closed() {
            return None;
        }
        let now = Instant::now();
        self.peer_closed(node, epoch, now);
        tracing::info!(
            node,
            epoch,
            "peer broker closed or refused our connection (seen answering Metadata): holding Metadata answers that name it leader"
        );
        Some(now)
    }

    /// Notes a failed exchange with broker `node` (a replica fetcher's): only an error that
    /// says the peer's process is gone ([`nagare_client::Error::is_peer_gone`]) counts; a
    /// timeout (a slow or stopped broker) does not.
    pub fn note_error(&self, image: &MetadataImage, node: i32, error: &nagare_client::Error) {
        if !error.is_peer_gone() {
            return;
        }
        // An unregistered node leads nothing: nothing could be held for it.
        let Some(reg) = image.brokers.get(&node) else {
            return;
        };
        let first = self.unreachable_since(node, reg.epoch).is_none();
        self.peer_closed(node, reg.epoch, Instant::now());
        if first {
            tracing::info!(node, epoch = reg.epoch, error = %error,
                "peer broker closed or refused our connection: holding Metadata answers that name it leader");
        }
    }

    /// Ticks on every change (for waiters).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The sans-I/O decision: `None` when a Metadata answer about `topics` may go out now;
/// otherwise the instant until which it is held at most (re-check earlier on any change of
/// the image or of the peers' reachability). It is held while some partition's leader in
/// `image` is a registered broker this broker saw go (`unreachable_since(id, epoch)`) less
/// than `wait` ago.
pub fn hold_deadline<'a>(
    image: &MetadataImage,
    topics: impl IntoIterator<Item = &'a TopicImage>,
    unreachable_since: impl Fn(i32, i64) -> Option<Instant>,
    wait: Duration,
    now: Instant,
) -> Option<Instant> {
    gone_leaders(image, topics, unreachable_since, wait, now)
        .into_iter()
        .map(|(_, until)| until)
        .min()
}

/// The leaders of `topics`' partitions that [`hold_deadline`] holds for, each with the end
/// of its bound.
pub fn gone_leaders<'a>(
    image: &MetadataImage,
    topics: impl IntoIterator<Item = &'a TopicImage>,
    unreachable_since: impl Fn(i32, i64) -> Option<Instant>,
    wait: Duration,
    now: Instant,
) -> Vec<(i32, Instant)> {
    let mut gone = Vec::new();
    if wait.is_zero() {
        return gone;
    }
    let mut checked: Vec<i32> = Vec::new();
    for t in topics {
        for p in t.partitions.values() {
            if p.leader < 0 || checked.contains(&p.leader) {
                continue;
            }
            checked.push(p.leader);
            let Some(reg) = image.brokers.get(&p.leader) else {
                continue;
            };
            let Some(since) = unreachable_since(p.leader, reg.epoch) else {
                continue;
            };
            let until = since + wait;
            if until > now {
                gone.push((p.leader, until));
            }
        }
    }
    gone
}

/// Which topics a Metadata request asks about: all of them, or these names and ids (names
/// and ids the image lacks are ignored: their answers do not depend on a leader).
pub enum Requested<'a> {
    /// Every topic.
    All,
    /// Named or identified topics.
    Some(&'a [(Option<String>, nagare_metadata::Uuid)]),
}

fn requested_topics<'i>(
    image: &'i MetadataImage,
    requested: &Requested<'_>,
) -> Vec<&'i TopicImage> {
    match requested {
        // Order does not matter here: no need for `topic_names`' sorted copy.
        Requested::All => image.topics_by_id.values().map(|t| &**t).collect(),
        Requested::Some(list) => list
            .iter()
            .filter_map(|(name, id)| match name {
                Some(n) => image.topic(n),
                None => image.topic_by_id(id),
            })
            .map(|t| &**t)
            .collect(),
    }
}

/// The configured bound (`nagare.metadata.leader.failover.wait.ms`).
fn wait_of(broker: &Broker) -> Duration {
    Duration::from_millis(broker.config.metadata_leader_failover_wait_ms)
}

/// Whether an answer about `requested` must be held now (checked before deferring the
/// response, so that the usual answer stays immediate).
pub fn must_hold(broker: &Broker, image: &MetadataImage, requested: &Requested<'_>) -> bool {
    let wait = wait_of(broker);
    if wait.is_zero() {
        return false;
    }
    hold_deadline(
        image,
        requested_topics(image, requested),
        |id, epoch| broker.peers.unreachable_since(id, epoch),
        wait,
        Instant::now(),
    )
    .is_some()
}

/// Waits until an answer about `requested` may go out (see the module docs) and returns the
/// image to answer from.
///
/// The answer lists the brokers of that image, so a dead leader fenced meanwhile is left
/// out, as Kafka does. (Keeping it listed in the held answer avoids librdkafka's race
/// between decommissioning it and migrating the partitions away from it — "Reverting from
/// preferred replica … to leader -1", one more 1 s topic scan — but was measured worse: the
/// migration then waits for the requests queued to the dead broker, whose reconnect backoff
/// reaches seconds; 2.3 and 3.3 s in 20 kills.)
pub async fn wait_for_failover(
    broker: &Arc<Broker>,
    requested: &Requested<'_>,
) -> Arc<MetadataImage> {
    let wait = wait_of(broker);
    // Subscribed before the first check, so no change between check and wait is missed.
    let mut applied = broker.metadata.applied_offset();
    let mut peers = broker.peers.subscribe();
    let started = Instant::now();
    let mut held_for: Vec<i32> = Vec::new();
    loop {
        let image = broker.image();
        let now = Instant::now();
        let gone = gone_leaders(
            &image,
            requested_topics(&image, requested),
            |id, epoch| broker.peers.unreachable_since(id, epoch),
            wait,
            now,
        );
        for (id, _) in &gone {
            if !held_for.contains(id) {
                held_for.push(*id);
            }
        }
        let Some(deadline) = gone.iter().map(|(_, until)| *until).min() else {
            if now > started + Duration::from_millis(1) {
                tracing::info!(
                    held_ms = (now - started).as_millis() as u64,
                    gone = ?held_for,
                    "Metadata answer held while a leader this broker saw die was still named"
                );
            }
            return image;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {}
            r = applied.changed() => if r.is_err() { return broker.image() },
            r = peers.changed() => if r.is_err() { return broker.image() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_metadata::{BrokerRegistration, PartitionRegistration, Uuid};

    /// Brokers 1..=3 (epochs 10, 20, 30) and a topic whose partition i is led by
    /// `leaders[i]`.
    fn setup(leaders: &[i32]) -> (MetadataImage, TopicImage) {
        let mut img = MetadataImage::empty();
        for id in 1..=3 {
            img.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    epoch: id as i64 * 10,
                    incarnation_id: Uuid::nil(),
                    endpoints: vec![],
                    rack: None,
                    fenced: false,
                },
            );
        }
        let t = TopicImage {
            name: "t".into(),
            id: Uuid::from_bytes([7; 16]),
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let p = PartitionRegistration {
                        replicas: vec![1, 2, 3],
                        isr: vec![1, 2, 3],
                        leader: *l,
                        leader_epoch: 5,
                        partition_epoch: 5,
                    };
                    (i as i32, p)
                })
                .collect(),
        };
        (img, t)
    }

    const WAIT: Duration = Duration::from_millis(600);

    #[test]
    fn nothing_is_held_while_every_leader_is_reachable() {
        let (img, t) = setup(&[1, 2, 3]);
        let peers = PeerReachability::new();
        let now = Instant::now();
        let f = |id, e| peers.unreachable_since(id, e);
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, now), None);
    }

    #[test]
    fn an_answer_naming_a_gone_leader_is_held_until_the_bound_from_its_death() {
        let (img, t) = setup(&[1, 2, 2]);
        let peers = PeerReachability::new();
        let died = Instant::now();
        peers.peer_closed(2, 20, died);
        let f = |id, e| peers.unreachable_since(id, e);
        // Held right after, and until `died + WAIT`, not `request + WAIT`.
        let later = died + Duration::from_millis(400);
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, died), Some(died + WAIT));
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, later), Some(died + WAIT));
        // A request arriving after the bound is answered at once (Kafka's behaviour): a
        // broker that is down but never fenced (grace -1) delays nothing for long.
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, died + WAIT), None);
        // Retries against the dead peer do not move the start of its outage.
        peers.peer_closed(2, 20, later);
        let f = |id, e| peers.unreachable_since(id, e);
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, later), Some(died + WAIT));
    }

    #[test]
    fn the_hold_ends_when_the_leader_moves_or_the_peer_is_reachable_again() {
        let (img, t) = setup(&[2]);
        let peers = PeerReachability::new();
        let died = Instant::now();
        peers.peer_closed(2, 20, died);
        // The fencing moved the partition to broker 3: answered at once.
        let (img2, moved) = setup(&[3]);
        let f = |id, e| peers.unreachable_since(id, e);
        assert!(hold_deadline(&img, [&t], f, WAIT, died).is_some());
        assert_eq!(hold_deadline(&img2, [&moved], f, WAIT, died), None);
        // Or broker 2 came back: answered at once.
        let ticks = peers.subscribe();
        peers.peer_reachable(2);
        assert!(ticks.has_changed().unwrap_or(false));
        let f = |id, e| peers.unreachable_since(id, e);
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, died), None);
    }

    #[test]
    fn a_restarted_peer_with_a_new_epoch_is_not_held_against() {
        let (mut img, t) = setup(&[2]);
        let peers = PeerReachability::new();
        let died = Instant::now();
        peers.peer_closed(2, 20, died);
        if let Some(b) = img.brokers.get_mut(&2) {
            b.epoch = 21;
        }
        let f = |id, e| peers.unreachable_since(id, e);
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, died), None);
    }

    #[test]
    fn zero_wait_is_kafkas_behaviour_and_leaderless_partitions_are_not_held() {
        let (img, t) = setup(&[2, -1]);
        let peers = PeerReachability::new();
        let died = Instant::now();
        peers.peer_closed(2, 20, died);
        let f = |id, e| peers.unreachable_since(id, e);
        assert_eq!(hold_deadline(&img, [&t], f, Duration::ZERO, died), None);
        let (img, t) = setup(&[-1, 1]);
        assert_eq!(hold_deadline(&img, [&t], f, WAIT, died), None);
    }

    #[test]
    fn only_errors_that_say_the_peer_is_gone_count() {
        let (img, _) = setup(&[2]);
        let peers = PeerReachability::new();
        let timeout = nagare_client::Error::Timeout {
            addr: "127.0.0.1:1".into(),
            api: kafka_protocol::messages::ApiKey::Fetch,
            timeout: Duration::from_secs(1),
        };
        peers.note_error(&img, 2, &timeout);
        assert_eq!(
            peers.unreachable_since(2, 20),
            None,
            "a timeout is a slow peer"
        );
        let eof = nagare_client::Error::io(
            "127.0.0.1:1",
            &std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        );
        peers.note_error(&img, 2, &eof);
        assert!(peers.unreachable_since(2, 20).is_some());
        let refused = nagare_client::Error::io(
            "127.0.0.1:1",
            &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        peers.note_error(&img, 3, &refused);
        assert!(peers.unreachable_since(3, 30).is_some());
        // An unregistered node is ignored.
        peers.note_error(&img, 9, &refused);
        assert_eq!(peers.unreachable_since(9, 0), None);
    }

    // The hold through the real request pipeline (an in-memory broker, node 1; broker 2 is
    // registered through the controller and leads the topic's partition, with 1 in its ISR).

    mod pipeline {
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
        use kafka_protocol::protocol::StrBytes;
        use nagare_controller::cluster_control::{Heartbeat, Registration};

        use crate::testing::TestBroker;

        /// A broker with `wait_ms` as the bound, broker 2 (returned: its epoch) registered
        /// and unfenced, and topic `f` whose partition 0 is led by 2 (replicas [2, 1]).
        async fn cluster(wait_ms: u64) -> (Arc<TestBroker>, i64) {
            let wait = wait_ms.to_string();
            let tb = TestBroker::build(
                &[("nagare.metadata.leader.failover.wait.ms", wait.as_str())],
                None,
            )
            .await;
            let epoch = tb
                .controller
                .register_broker(Registration {
                    broker_id: 2,
                    cluster_id: "test-cluster".into(),
                    incarnation_id: nagare_metadata::Uuid::from_bytes([2; 16]),
                    endpoints: vec![nagare_metadata::records::Endpoint {
                        name: "PLAINTEXT".into(),
                        host: "127.0.0.1".into(),
                        port: 9093,
                        security_protocol: "PLAINTEXT".into(),
                    }],
                    rack: None,
                })
                .await
                .expect("register broker 2");
            heartbeat(&tb, epoch, false).await;
            tb.broker
                .create_topics_internal(vec![nagare_controller::logic::NewTopic {
                    name: "f".into(),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: vec![(0, vec![2, 1])],
                    configs: vec![],
                }])
                .await
                .expect("create f");
            let tb = Arc::new(tb);
            assert_eq!(leader(&metadata(&tb).await), 2, "broker 2 leads f-0");
            (tb, epoch)
        }

        async fn heartbeat(tb: &TestBroker, epoch: i64, want_fence: bool) {
            tb.controller
                .heartbeat(Heartbeat {
                    broker_id: 2,
                    broker_epoch: epoch,
                    current_metadata_offset: tb.broker.image().offset,
                    want_fence,
                    want_shut_down: false,
                })
                .await
                .expect("heartbeat of broker 2");
        }

        async fn metadata(tb: &TestBroker) -> MetadataResponse {
            let req = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("f"))))]));
            tb.send(&req, 12).await.expect("metadata")
        }

        /// [`metadata`], answered without a hold (in under 200 ms).
        async fn metadata_at_once(tb: &TestBroker) -> MetadataResponse {
            let t = Instant::now();
            let r = metadata(tb).await;
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "{:?}",
                t.elapsed()
            );
            r
        }

        fn leader(r: &MetadataResponse) -> i32 {
            r.topics[0].partitions[0].leader_id.0
        }

        /// Sends Metadata in a task of its own; returns it with when it was sent.
        fn spawn_metadata(
            tb: &Arc<TestBroker>,
        ) -> (tokio::task::JoinHandle<MetadataResponse>, Instant) {
            let tb = tb.clone();
            (
                tokio::spawn(async move { metadata(&tb).await }),
                Instant::now(),
            )
        }

        #[tokio::test]
        async fn the_answer_waits_for_the_fencing_and_names_the_new_leader() {
            let (tb, epoch) = cluster(5_000).await;
            tb.broker.peers.peer_closed(2, epoch, Instant::now());
            let (answer, sent) = spawn_metadata(&tb);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !answer.is_finished(),
                "the answer naming the dead leader is held"
            );
            // The controller fences broker 2: partition 0 moves to broker 1.
            heartbeat(&tb, epoch, true).await;
            let r = tokio::time::timeout(Duration::from_secs(3), answer)
                .await
                .expect("answered once the leadership moved")
                .expect("task");
            assert_eq!(leader(&r), 1, "the held answer carries the new leader");
            assert!(
                sent.elapsed() < Duration::from_secs(3),
                "{:?}",
                sent.elapsed()
            );
            assert!(
                r.brokers.iter().all(|b| b.node_id.0 != 2),
                "the fenced broker is not listed"
            );
        }

        #[tokio::test]
        async fn a_dead_but_unfenced_leader_delays_answers_only_within_the_bound() {
            // As with nagare.broker.disconnect.fence.grace.ms=-1: nobody fences broker 2.
            let (tb, epoch) = cluster(400).await;
            let died = Instant::now();
            tb.broker.peers.peer_closed(2, epoch, died);
            let (answer, _) = spawn_metadata(&tb);
            let r = tokio::time::timeout(Duration::from_secs(3), answer)
                .await
                .expect("answered within the bound")
                .expect("task");
            let held = died.elapsed();
            assert!(
                held >= Duration::from_millis(390) && held < Duration::from_millis(1_500),
                "held {held:?}, bound 400 ms"
            );
            assert_eq!(leader(&r), 2, "Kafka's answer once the bound passed");
            // The bound runs from the death: later requests are answered at once.
            assert_eq!(leader(&metadata_at_once(&tb).await), 2);
        }

        #[tokio::test]
        async fn the_hold_ends_when_the_leader_is_reachable_again() {
            let (tb, epoch) = cluster(5_000).await;
            tb.broker.peers.peer_closed(2, epoch, Instant::now());
            let (answer, sent) = spawn_metadata(&tb);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!answer.is_finished());
            tb.broker.peers.peer_reachable(2);
            let r = tokio::time::timeout(Duration::from_secs(2), answer)
                .await
                .expect("answered once the peer was reachable")
                .expect("task");
            assert_eq!(leader(&r), 2);
            assert!(sent.elapsed() < Duration::from_secs(2));
        }

        /// A peer that answers ApiVersions, then keeps the connection open until told to
        /// drop it (as the kernel does when the peer's process dies).
        async fn fake_peer() -> (String, tokio::sync::oneshot::Sender<()>) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                nagare_client::testing::answer_api_versions(&mut s)
                    .await
                    .expect("ApiVersions");
                let _ = rx.await;
            });
            (addr, tx)
        }

        #[tokio::test]
        async fn a_closed_watched_connection_holds_before_the_fetcher_noticed() {
            // The race the probe closes: a client's "broker down" refresh arrives before the
            // replica fetcher's task has read the dead leader's end-of-stream.
            let (tb, epoch) = cluster(5_000).await;
            let (addr, kill) = fake_peer().await;
            let mut conn = nagare_client::Connection::connect(&addr, "fetcher")
                .await
                .expect("connect");
            tb.broker.peers.connected(2, epoch, &mut conn);
            // Alive: answered at once.
            assert_eq!(leader(&metadata_at_once(&tb).await), 2);
            // The peer dies; nobody reads the connection.
            let _ = kill.send(());
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (answer, _) = spawn_metadata(&tb);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!answer.is_finished(), "held on the probe's evidence");
            heartbeat(&tb, epoch, true).await;
            let r = tokio::time::timeout(Duration::from_secs(3), answer)
                .await
                .expect("answered once the leadership moved")
                .expect("task");
            assert_eq!(leader(&r), 1);
            drop(conn);
        }

        #[tokio::test]
        async fn an_all_topics_request_is_held_too() {
            let (tb, epoch) = cluster(5_000).await;
            tb.broker.peers.peer_closed(2, epoch, Instant::now());
            let all = {
                let tb = tb.clone();
                tokio::spawn(async move {
                    let r: MetadataResponse = tb
                        .send(&MetadataRequest::default().with_topics(None), 12)
                        .await
                        .expect("metadata");
                    r
                })
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!all.is_finished(), "held");
            heartbeat(&tb, epoch, true).await;
            let r = tokio::time::timeout(Duration::from_secs(3), all)
                .await
                .expect("answered")
                .expect("task");
            let f = r
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "f"));
            assert_eq!(f.map(|t| t.partitions[0].leader_id.0), Some(1));
        }

        #[tokio::test]
        async fn zero_wait_answers_at_once_as_kafka() {
            let (tb, epoch) = cluster(0).await;
            tb.broker.peers.peer_closed(2, epoch, Instant::now());
            assert_eq!(leader(&metadata_at_once(&tb).await), 2);
        }

        #[tokio::test]
        async fn a_held_answer_does_not_stop_the_connection_reading_requests() {
            // The hold is a delayed response: a request after it is dispatched at once (its
            // answer is still sent after the held one, in order, as Kafka does).
            let (tb, epoch) = cluster(5_000).await;
            tb.broker.peers.peer_closed(2, epoch, Instant::now());
            let req = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("f"))))]));
            let frame = tb.frame(&req, 12);
            let t = Instant::now();
            let dispatched = tokio::time::timeout(
                Duration::from_millis(500),
                crate::handlers::dispatch(&tb.broker, frame, &tb.connection, t),
            )
            .await
            .expect("dispatch returns without waiting for the hold");
            assert!(matches!(dispatched.reply, crate::network::Reply::Later(_)));
        }
    }
}
