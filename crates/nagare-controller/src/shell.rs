//! The controller's thin shell (Kafka's `QuorumController`): on the node that leads the
//! KRaft quorum it runs each decision of [`crate::logic`] / [`crate::cluster_control`]
//! against the latest image, one at a time, and proposes the resulting records to the quorum;
//! an operation completes once its records are committed and applied to this node's image.
//! Every other controller answers NOT_CONTROLLER, and brokers retry on the new leader.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use kafka_protocol::ResponseError;
use nagare_metadata::records::MetadataRecord;
use nagare_metadata::{MetadataImage, MetadataPublisher};

use crate::cluster_control::{self, Heartbeat, HeartbeatReply, HeartbeatTracker, Registration};
use crate::elections::{self, ElectionConfig, ElectionType, TopicElectionResult};
use crate::logic::ApiError;

/// The `metadata.version` feature.
pub const METADATA_VERSION: &str = "metadata.version";
/// The `metadata.version` level a new cluster starts at (Kafka 4.0's IBP_4_0_IV3 is 27).
pub const METADATA_VERSION_LEVEL: i16 = 27;

/// A boxed future, so that [`Quorum`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the controller needs from the metadata quorum (implemented over the KRaft shell by
/// the server; by a fake in tests).
pub trait Quorum: Send + Sync + 'static {
    /// The current leader as this node knows it.
    fn leader_id(&self) -> Option<i32>;
    /// Resolves to `Some(epoch)` once this node leads the quorum in `epoch` and has applied
    /// everything committed before it (a new controller must not decide on a stale image),
    /// or `None` if it does not lead (after a short wait for a pending election).
    fn ready_epoch(&self) -> BoxFuture<'_, Option<i32>>;
    /// Appends `records` in `epoch`; resolves with the offset of the last one once they are
    /// committed and applied to the local image. Fails if leadership is lost first.
    fn propose(&self, epoch: i32, records: Vec<Bytes>) -> BoxFuture<'_, Result<i64, String>>;
}

/// Errors of a controller operation.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The request was refused with a Kafka error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// This node is not the active controller.
    #[error("this node is not the active controller (the leader is {leader:?})")]
    NotController {
        /// The active controller, if known.
        leader: Option<i32>,
    },
    /// The records could not be committed (leadership lost, quorum unavailable).
    #[error("the metadata quorum did not commit the change: {0}")]
    Quorum(String),
}

impl ControllerError {
    /// The Kafka error code to answer with.
    pub fn code(&self) -> i16 {
        match self {
            ControllerError::Api(e) => e.code,
            ControllerError::NotController { .. } => ResponseError::NotController.code(),
            // Kafka answers NOT_CONTROLLER when a proposal loses its leader; clients retry.
            ControllerError::Quorum(_) => ResponseError::NotController.code(),
        }
    }
    /// The message to answer with.
    pub fn message(&self) -> String {
        match self {
            ControllerError::Api(e) => e.message.clone(),
            other => other.to_string(),
        }
    }
}

struct ActiveState {
    /// The epoch the heartbeat state belongs to; a new epoch starts every session afresh.
    epoch: Option<i32>,
    heartbeats: HeartbeatTracker,
    /// When the last automatic preferred-leader rebalance ran (ms since the epoch).
    last_rebalance_ms: u64,
    /// The image offset the last check for leaderless partitions looked at.
    leaderless_checked_offset: i64,
}

/// The controller of one node (active when its node leads the quorum).
pub struct Controller {
    node_id: i32,
    cluster_id: String,
    quorum: Arc<dyn Quorum>,
    publisher: Arc<MetadataPublisher>,
    state: tokio::sync::Mutex<ActiveState>,
    session_timeout_ms: u64,
    /// How long after the peer closed a broker's heartbeat connection the broker is fenced
    /// unless it heartbeats again (`None`: only the session timeout fences).
    disconnect_grace_ms: Option<u64>,
    elections: ElectionConfig,
    /// The feature levels a new cluster's first controller finalizes.
    bootstrap_features: BTreeMap<String, i16>,
    /// Other records a new cluster starts with (`storage format --add-scram` credentials).
    bootstrap_records: Vec<MetadataRecord>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Controller {
    /// A controller for `node_id` of `cluster_id` deciding over `publisher`'s image and
    /// committing through `quorum`. Brokers are fenced after `session_timeout_ms`
    /// (`broker.session.timeout.ms`) without a heartbeat.
    pub fn new(
        node_id: i32,
        cluster_id: String,
        quorum: Arc<dyn Quorum>,
        publisher: Arc<MetadataPublisher>,
        session_timeout_ms: u64,
    ) -> Self {
        Controller {
            node_id,
            cluster_id,
            quorum,
            publisher,
            state: tokio::sync::Mutex::new(ActiveState {
                epoch: None,
                heartbeats: HeartbeatTracker::default(),
                last_rebalance_ms: 0,
                leaderless_checked_offset: -1,
            }),
            session_timeout_ms,
            disconnect_grace_ms: None,
            elections: ElectionConfig::default(),
            bootstrap_features: nagare_metadata::features::bootstrap_levels(&[])
                .unwrap_or_default(),
            bootstrap_records: Vec::new(),
        }
    }

    /// The feature levels a new cluster starts at (chosen at `storage format` time, as
    /// Kafka's bootstrap metadata; by default every feature at its default level).
    pub fn with_bootstrap_features(mut self, levels: BTreeMap<String, i16>) -> Self {
        self.bootstrap_features = levels;
        self
    }

    /// Records a new cluster starts with besides its features (Kafka's bootstrap metadata:
    /// the SCRAM credentials of `kafka-storage format --add-scram`), committed with them.
    pub fn with_bootstrap_records(mut self, records: Vec<MetadataRecord>) -> Self {
        self.bootstrap_records = records;
        self
    }

    /// Fences a broker `grace_ms` after the peer closed the connection its latest heartbeat
    /// arrived on, unless it heartbeats again meanwhile (`None`: only
    /// `broker.session.timeout.ms` fences, as in Kafka); see [`cluster_control`].
    pub fn with_disconnect_grace(mut self, grace_ms: Option<u64>) -> Self {
        self.disconnect_grace_ms = grace_ms;
        self
    }

    /// Sets the election settings (`unclean.leader.election.enable`,
    /// `auto.leader.rebalance.enable`, `leader.imbalance.*`).
    pub fn with_elections(mut self, elections: ElectionConfig) -> Self {
        self.elections = elections;
        self
    }

    /// Whether this node currently leads the quorum.
    pub fn is_active(&self) -> bool {
        self.quorum.leader_id() == Some(self.node_id)
    }

    /// The latest image applied on this node.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.publisher.image()
    }

    /// Waits to be the ready leader and locks the decision state for that epoch.
    async fn lock_active(
        &self,
    ) -> Result<(i32, tokio::sync::MutexGuard<'_, ActiveState>), ControllerError> {
        let Some(epoch) = self.quorum.ready_epoch().await else {
            return Err(ControllerError::NotController {
                leader: self.quorum.leader_id(),
            });
        };
        let mut st = self.state.lock().await;
        if st.epoch != Some(epoch) {
            st.heartbeats = HeartbeatTracker::new(&self.publisher.image(), now_ms());
            st.last_rebalance_ms = now_ms();
            st.leaderless_checked_offset = -1;
            tracing::info!(node = self.node_id, epoch, "became the active controller");
            // A new cluster's first controller finalizes the bootstrap feature levels
            // (Kafka writes them in the bootstrap snapshot at format time): metadata.version
            // first, so the records after it are gated by it, then the other features
            // (transaction.version, KIP-1022), each only when finalized (level 0 is "off").
            if !self
                .publisher
                .image()
                .features
                .contains_key(METADATA_VERSION)
            {
                let metadata_version = self
                    .bootstrap_features
                    .get(METADATA_VERSION)
                    .copied()
                    .unwrap_or(METADATA_VERSION_LEVEL);
                let mut records = vec![MetadataRecord::FeatureLevel {
                    name: METADATA_VERSION.into(),
                    level: metadata_version,
                }];
                records.extend(
                    self.bootstrap_features
                        .iter()
                        .filter(|(name, level)| name.as_str() != METADATA_VERSION && **level > 0)
                        .map(|(name, level)| MetadataRecord::FeatureLevel {
                            name: name.clone(),
                            level: *level,
                        }),
                );
                records.extend(self.bootstrap_records.iter().cloned());
                self.propose(epoch, &records).await?;
            }
            st.epoch = Some(epoch);
        }
        Ok((epoch, st))
    }

    /// Proposes `records`; returns the offset of the last one once committed and applied.
    async fn propose(
        &self,
        epoch: i32,
        records: &[MetadataRecord],
    ) -> Result<i64, ControllerError> {
        // Only record versions the finalized metadata.version allows (every node can read
        // them); a refusal is a controller bug, answered as UNKNOWN_SERVER_ERROR.
        let finalized = self
            .publisher
            .image()
            .features
            .get(METADATA_VERSION)
            .copied();
        let encoded = nagare_metadata::metadata_version::encode_gated(records, finalized)
            .map_err(|e| {
                tracing::error!(error = %e, "refusing to write a record version metadata.version does not allow");
                ControllerError::Api(ApiError {
                    code: -1,
                    message: e.to_string(),
                })
            })?
            .into_iter()
            .map(Bytes::from)
            .collect();
        self.quorum
            .propose(epoch, encoded)
            .await
            .map_err(ControllerError::Quorum)
    }

    /// Runs `decide` against the current image; commits the records it returns (unless
    /// `dry_run`) and returns its answer once they are applied. Decisions are serialized, so
    /// each sees the effect of the previous one.
    pub async fn commit<T>(
        &self,
        dry_run: bool,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ApiError>,
    ) -> Result<T, ControllerError> {
        let (epoch, _st) = self.lock_active().await?;
        let (records, answer) = decide(&self.publisher.image())?;
        if !dry_run && !records.is_empty() {
            self.propose(epoch, &records).await?;
        }
        Ok(answer)
    }

    /// BrokerRegistration: returns the broker epoch.
    pub async fn register_broker(&self, reg: Registration) -> Result<i64, ControllerError> {
        let (epoch, mut st) = self.lock_active().await?;
        let broker_id = reg.broker_id;
        let now = now_ms();
        let (records, broker_epoch) = cluster_control::register_broker(
            &self.publisher.image(),
            &self.cluster_id,
            &st.heartbeats,
            reg,
            now,
            self.session_timeout_ms,
        )?;
        if !records.is_empty() {
            self.propose(epoch, &records).await?;
            tracing::info!(broker = broker_id, broker_epoch, "registered broker");
            st.heartbeats.end_controlled_shutdown(broker_id);
        }
        st.heartbeats.touch(broker_id, now);
        Ok(broker_epoch)
    }

    /// BrokerHeartbeat: keeps the broker's session alive, unfences it once caught up, and runs
    /// its controlled shutdown.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, ControllerError> {
        self.heartbeat_via(hb, None).await
    }

    /// [`Controller::heartbeat`] of a heartbeat that arrived on `connection` (a process-unique
    /// id; `None`: in-process): the peer closing that connection later fences the broker
    /// after the grace period ([`Controller::broker_connection_closed`]).
    pub async fn heartbeat_via(
        &self,
        hb: Heartbeat,
        connection: Option<u64>,
    ) -> Result<HeartbeatReply, ControllerError> {
        let (epoch, mut st) = self.lock_active().await?;
        st.heartbeats
            .report_offset(hb.broker_id, hb.current_metadata_offset);
        let (records, mut reply) = cluster_control::heartbeat(
            &self.publisher.image(),
            hb,
            &st.heartbeats,
            self.elections.unclean_leader_election_enable,
        )?;
        if !records.is_empty() {
            let offset = self.propose(epoch, &records).await?;
            if hb.want_shut_down {
                st.heartbeats
                    .begin_controlled_shutdown(hb.broker_id, offset);
                // With no other active broker (a single node) it may stop at once.
                reply.should_shut_down = st
                    .heartbeats
                    .controlled_shutdown_done(&self.publisher.image(), hb.broker_id);
            }
            tracing::info!(
                broker = hb.broker_id,
                fenced = reply.is_fenced,
                controlled_shutdown = hb.want_shut_down,
                offset,
                "broker state changed"
            );
        } else if reply.should_shut_down {
            tracing::info!(broker = hb.broker_id, "controlled shutdown granted");
        }
        st.heartbeats.touch_via(hb.broker_id, now_ms(), connection);
        Ok(reply)
    }

    /// The peer closed `connection`, on which broker `broker_id` heartbeated with
    /// `broker_epoch` (the listener saw end-of-stream or a reset, as when the broker's process
    /// died). Returns how long to wait before calling [`Controller::fence_expired_brokers`]
    /// when this armed disconnect fencing; `None` when it did not (not the active controller,
    /// the feature off, or the close is stale: see [`HeartbeatTracker::connection_closed`]).
    pub async fn broker_connection_closed(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        connection: u64,
    ) -> Option<std::time::Duration> {
        let grace = self.disconnect_grace_ms?;
        if !self.is_active() {
            return None;
        }
        let (_, mut st) = self.lock_active().await.ok()?;
        let armed = st.heartbeats.connection_closed(
            &self.publisher.image(),
            broker_id,
            broker_epoch,
            connection,
            now_ms(),
        );
        if !armed {
            return None;
        }
        tracing::info!(
            broker = broker_id,
            broker_epoch,
            grace_ms = grace,
            "the broker's heartbeat connection was closed by the peer; fencing it unless it heartbeats again"
        );
        Some(std::time::Duration::from_millis(grace))
    }

    /// UnregisterBroker (key 64): removes a broker's registration
    /// ([`cluster_control::unregister_broker`]).
    pub async fn unregister_broker(&self, broker_id: i32) -> Result<(), ControllerError> {
        let (epoch, _st) = self.lock_active().await?;
        let records = cluster_control::unregister_broker(
            &self.publisher.image(),
            broker_id,
            self.elections.unclean_leader_election_enable,
        )?;
        let offset = self.propose(epoch, &records).await?;
        tracing::info!(broker = broker_id, offset, "broker unregistered");
        Ok(())
    }

    /// Fences brokers whose session expired; call periodically. Does nothing unless active.
    pub async fn fence_expired_brokers(&self) -> Result<(), ControllerError> {
        if !self.is_active() {
            return Ok(());
        }
        let (epoch, st) = self.lock_active().await?;
        let records = cluster_control::fence_expired(
            &self.publisher.image(),
            &st.heartbeats,
            now_ms(),
            self.session_timeout_ms,
            self.disconnect_grace_ms,
            self.elections.unclean_leader_election_enable,
        );
        if !records.is_empty() {
            self.propose(epoch, &records).await?;
        }
        Ok(())
    }

    /// ElectLeaders (key 43): preferred or unclean elections for the given partitions (`None`
    /// = all); commits the new leaders and answers per partition.
    pub async fn elect_leaders(
        &self,
        election_type: ElectionType,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicElectionResult>, ControllerError> {
        self.commit(false, move |img| {
            let (records, results) =
                elections::elect_leaders(img, election_type, partitions.as_deref());
            if !records.is_empty() {
                tracing::info!(
                    ?election_type,
                    elected = records.len(),
                    "ElectLeaders: new leaders"
                );
            }
            Ok((records, results))
        })
        .await
    }

    /// The active controller's periodic elections; call often (every few hundred ms). Elects
    /// leaders for leaderless partitions whenever the image changed since the last check
    /// (uncleanly where `unclean.leader.election.enable` allows, so enabling it on a topic
    /// takes effect at once — Kafka's periodic unclean-election check), and every
    /// `leader.imbalance.check.interval.seconds` runs the preferred-leader rebalance when
    /// `auto.leader.rebalance.enable` is on. Does nothing unless active.
    pub async fn periodic_elections(&self) -> Result<(), ControllerError> {
        if !self.is_active() {
            return Ok(());
        }
        let (epoch, mut st) = self.lock_active().await?;
        let image = self.publisher.image();
        if image.offset != st.leaderless_checked_offset {
            let records = elections::elect_leaderless(
                &image,
                self.elections.unclean_leader_election_enable,
                None,
            );
            if !records.is_empty() {
                self.propose(epoch, &records).await?;
            }
            st.leaderless_checked_offset = self.publisher.image().offset;
        }
        let now = now_ms();
        if self.elections.auto_leader_rebalance_enable
            && now.saturating_sub(st.last_rebalance_ms)
                >= self.elections.leader_imbalance_check_interval_ms
        {
            st.last_rebalance_ms = now;
            let records = elections::rebalance_preferred_leaders(
                &self.publisher.image(),
                self.elections.leader_imbalance_per_broker_percentage,
            );
            if !records.is_empty() {
                self.propose(epoch, &records).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A single-voter quorum that commits at once: enough to test the shell's sequencing.
    struct Instant {
        publisher: Arc<MetadataPublisher>,
        leader: Mutex<Option<i32>>,
        next: Mutex<i64>,
    }

    impl Quorum for Instant {
        fn leader_id(&self) -> Option<i32> {
            *self.leader.lock()
        }
        fn ready_epoch(&self) -> BoxFuture<'_, Option<i32>> {
            let l = *self.leader.lock();
            Box::pin(async move { (l == Some(1)).then_some(1) })
        }
        fn propose(&self, _epoch: i32, records: Vec<Bytes>) -> BoxFuture<'_, Result<i64, String>> {
            Box::pin(async move {
                let mut next = self.next.lock();
                let first = *next;
                self.publisher.apply_committed(
                    records
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (first + i as i64, r.as_ref())),
                );
                *next += records.len() as i64;
                Ok(*next - 1)
            })
        }
    }

    fn instant_controller(elections: ElectionConfig) -> Controller {
        let publisher = Arc::new(MetadataPublisher::new());
        let quorum = Arc::new(Instant {
            publisher: publisher.clone(),
            leader: Mutex::new(Some(1)),
            next: Mutex::new(0),
        });
        Controller::new(1, "c".into(), quorum, publisher, 9000).with_elections(elections)
    }

    /// Registers and unfences `id`; returns its broker epoch.
    async fn join(c: &Controller, id: i32) -> i64 {
        let epoch = c
            .register_broker(Registration {
                broker_id: id,
                cluster_id: "c".into(),
                incarnation_id: nagare_metadata::Uuid::from_bytes([id as u8; 16]),
                endpoints: vec![],
                rack: None,
            })
            .await
            .expect("register");
        let r = c
            .heartbeat(Heartbeat {
                broker_id: id,
                broker_epoch: epoch,
                current_metadata_offset: c.image().offset,
                want_fence: false,
                want_shut_down: false,
            })
            .await
            .expect("heartbeat");
        assert!(!r.is_fenced);
        epoch
    }

    async fn add_partition(c: &Controller, replicas: Vec<i32>, isr: Vec<i32>, leader: i32) {
        let t = nagare_metadata::Uuid::from_bytes([7; 16]);
        let records = vec![
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: t,
            },
            MetadataRecord::Partition {
                topic_id: t,
                partition_id: 0,
                replicas,
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            },
        ];
        c.commit(false, move |_| Ok((records, ())))
            .await
            .expect("commit");
    }

    #[tokio::test]
    async fn controlled_shutdown_waits_for_the_other_brokers_to_apply_the_move() {
        let c = instant_controller(ElectionConfig::default());
        let e1 = join(&c, 1).await;
        let e2 = join(&c, 2).await;
        add_partition(&c, vec![1, 2], vec![1, 2], 1).await;
        let shut = Heartbeat {
            broker_id: 1,
            broker_epoch: e1,
            current_metadata_offset: c.image().offset,
            want_fence: false,
            want_shut_down: true,
        };
        let r = c.heartbeat(shut).await.expect("hb");
        assert!(!r.should_shut_down);
        let p = c.image().topic("t").expect("t").partitions[&0].clone();
        assert_eq!((p.leader, p.isr), (2, vec![2]));
        // Broker 2 has not reported the new offset yet.
        assert!(!c.heartbeat(shut).await.expect("hb").should_shut_down);
        c.heartbeat(Heartbeat {
            broker_id: 2,
            broker_epoch: e2,
            current_metadata_offset: c.image().offset,
            want_fence: false,
            want_shut_down: false,
        })
        .await
        .expect("hb");
        assert!(c.heartbeat(shut).await.expect("hb").should_shut_down);
    }

    /// The shell's side of disconnect fencing: a heartbeat on a connection, that connection
    /// closed by the peer, then the fencing check moves leadership away; a close reported for
    /// another connection or with the feature off arms nothing.
    #[tokio::test]
    async fn a_closed_heartbeat_connection_fences_through_the_shell() {
        let c = instant_controller(ElectionConfig::default()).with_disconnect_grace(Some(0));
        let e1 = join(&c, 1).await;
        join(&c, 2).await;
        add_partition(&c, vec![1, 2], vec![1, 2], 1).await;
        let hb = Heartbeat {
            broker_id: 1,
            broker_epoch: e1,
            current_metadata_offset: c.image().offset,
            want_fence: false,
            want_shut_down: false,
        };
        c.heartbeat_via(hb, Some(7)).await.expect("hb");
        assert_eq!(c.broker_connection_closed(1, e1, 8).await, None);
        assert_eq!(
            c.broker_connection_closed(1, e1, 7).await,
            Some(std::time::Duration::ZERO)
        );
        c.fence_expired_brokers().await.expect("fence");
        assert!(c.image().brokers[&1].fenced);
        let p = c.image().topic("t").expect("t").partitions[&0].clone();
        assert_eq!((p.leader, p.isr), (2, vec![2]));

        let off = instant_controller(ElectionConfig::default());
        let e1 = join(&off, 1).await;
        off.heartbeat_via(
            Heartbeat {
                broker_epoch: e1,
                ..hb
            },
            Some(7),
        )
        .await
        .expect("hb");
        assert_eq!(off.broker_connection_closed(1, e1, 7).await, None);
        off.fence_expired_brokers().await.expect("fence");
        assert!(!off.image().brokers[&1].fenced);
    }

    #[tokio::test]
    async fn periodic_elections_elect_leaderless_and_rebalance() {
        let c = instant_controller(ElectionConfig {
            unclean_leader_election_enable: true,
            leader_imbalance_check_interval_ms: 0,
            ..Default::default()
        });
        join(&c, 1).await;
        join(&c, 2).await;
        // Leaderless, ISR [3] (never registered): unclean election of 1 by the broker default.
        add_partition(&c, vec![3, 1], vec![3], -1).await;
        c.periodic_elections().await.expect("periodic");
        let p = c.image().topic("t").expect("t").partitions[&0].clone();
        assert_eq!((p.leader, p.isr), (1, vec![1]));
        // Preferred 2 in the ISR but 1 leads: the rebalance moves it back.
        add_partition(&c, vec![2, 1], vec![1, 2], 1).await;
        c.periodic_elections().await.expect("periodic");
        let p = c.image().topic("t").expect("t").partitions[&0].clone();
        assert_eq!((p.leader, p.leader_epoch), (2, 1));
    }

    #[tokio::test]
    async fn commits_through_the_quorum_and_refuses_when_not_leader() {
        let publisher = Arc::new(MetadataPublisher::new());
        let quorum = Arc::new(Instant {
            publisher: publisher.clone(),
            leader: Mutex::new(Some(1)),
            next: Mutex::new(0),
        });
        let c = Controller::new(1, "c".into(), quorum.clone(), publisher.clone(), 9000);
        let epoch = c
            .register_broker(Registration {
                broker_id: 1,
                cluster_id: "c".into(),
                incarnation_id: nagare_metadata::Uuid::from_bytes([1; 16]),
                endpoints: vec![],
                rack: None,
            })
            .await
            .expect("register");
        assert!(c.image().brokers[&1].fenced);
        let reply = c
            .heartbeat(Heartbeat {
                broker_id: 1,
                broker_epoch: epoch,
                current_metadata_offset: c.image().offset,
                want_fence: false,
                want_shut_down: false,
            })
            .await
            .expect("heartbeat");
        assert!(!reply.is_fenced);
        assert!(!c.image().brokers[&1].fenced);
        // Dry runs commit nothing.
        let before = c.image().offset;
        c.commit(true, |_| {
            Ok((
                vec![MetadataRecord::FeatureLevel {
                    name: "x".into(),
                    level: 1,
                }],
                (),
            ))
        })
        .await
        .expect("dry run");
        assert_eq!(c.image().offset, before);
        *quorum.leader.lock() = Some(2);
        let e = c
            .commit(false, |_| Ok((vec![], ())))
            .await
            .expect_err("not leader");
        assert_eq!(e.code(), 41);
    }

    /// A new cluster's first controller finalizes transaction.version (KIP-1022) next to
    /// metadata.version, at the default level, and a snapshot of the image carries both.
    #[tokio::test]
    async fn a_new_cluster_bootstraps_transaction_version() {
        let c = instant_controller(ElectionConfig::default());
        join(&c, 1).await;
        let image = c.image();
        assert_eq!(
            image.features.get(METADATA_VERSION),
            Some(&METADATA_VERSION_LEVEL)
        );
        assert_eq!(
            nagare_metadata::features::transaction_version(&image.features),
            nagare_metadata::features::TRANSACTION_VERSION_DEFAULT
        );
        let rebuilt = MetadataImage::from_records(image.offset, &image.to_records());
        assert_eq!(rebuilt.features, image.features);
        // A second leadership term does not finalize anything again.
        let before = c.image().offset;
        join(&c, 2).await;
        assert_eq!(
            nagare_metadata::features::transaction_version(&c.image().features),
            nagare_metadata::features::TRANSACTION_VERSION_DEFAULT
        );
        assert!(c.image().offset > before);
    }

    /// `storage format --feature transaction.version=0` leaves the feature unfinalized
    /// (level 0 writes no record); 2 is finalized as 2.
    #[tokio::test]
    async fn bootstrap_features_chosen_at_format_time() {
        for (level, finalized) in [(0, None), (2, Some(&2))] {
            let levels = nagare_metadata::features::bootstrap_levels(&[(
                nagare_metadata::features::TRANSACTION_VERSION.into(),
                level,
            )])
            .expect("supported level");
            let c = instant_controller(ElectionConfig::default()).with_bootstrap_features(levels);
            join(&c, 1).await;
            let image = c.image();
            assert_eq!(
                image
                    .features
                    .get(nagare_metadata::features::TRANSACTION_VERSION),
                finalized
            );
            assert_eq!(
                image.features.get(METADATA_VERSION),
                Some(&METADATA_VERSION_LEVEL)
            );
        }
    }

    /// `storage format --add-scram` credentials are committed with the bootstrap features,
    /// once: the first admin exists before any client connects.
    #[tokio::test]
    async fn bootstrap_records_commit_with_a_new_cluster() {
        let record = MetadataRecord::UserScramCredential {
            name: "admin".into(),
            mechanism: 2,
            salt: vec![1; 16],
            stored_key: vec![2; 64],
            server_key: vec![3; 64],
            iterations: 4096,
        };
        let c = instant_controller(ElectionConfig::default()).with_bootstrap_records(vec![record]);
        join(&c, 1).await;
        let image = c.image();
        assert_eq!(
            image.scram.credential("admin", 2).map(|c| c.iterations),
            Some(4096)
        );
        assert_eq!(
            image.features.get(METADATA_VERSION),
            Some(&METADATA_VERSION_LEVEL)
        );
    }

    /// The controller writes only record versions the finalized metadata.version allows:
    /// with the level moved to one that allows no TopicRecord, creating a topic is refused
    /// and nothing is written.
    #[tokio::test]
    async fn record_versions_are_gated_by_the_finalized_metadata_version() {
        let c = instant_controller(ElectionConfig::default());
        join(&c, 1).await;
        assert_eq!(
            c.image().features.get(METADATA_VERSION),
            Some(&METADATA_VERSION_LEVEL)
        );
        assert!(
            nagare_metadata::metadata_version::max_record_version(
                METADATA_VERSION_LEVEL,
                nagare_metadata::RecordType::Topic
            )
            .is_some(),
            "the bootstrap level must be one this code knows"
        );
        add_partition(&c, vec![1], vec![1], 1).await;
        let unknown_level = nagare_metadata::metadata_version::LATEST_LEVEL + 1;
        c.commit(false, move |_| {
            Ok((
                vec![MetadataRecord::FeatureLevel {
                    name: METADATA_VERSION.into(),
                    level: unknown_level,
                }],
                (),
            ))
        })
        .await
        .expect("the level record itself is gated by the level before it");
        let before = c.image().offset;
        let e = c
            .commit(false, |_| {
                Ok((
                    vec![MetadataRecord::RemoveTopic {
                        topic_id: nagare_metadata::Uuid::from_bytes([7; 16]),
                    }],
                    (),
                ))
            })
            .await
            .expect_err("not allowed at that level");
        assert_eq!(e.code(), -1);
        assert!(e.message().contains("RemoveTopicRecord"), "{}", e.message());
        assert_eq!(c.image().offset, before, "a refused record was written");
        assert!(c.image().topic("t").is_some());
    }
}
