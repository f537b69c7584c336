//! Broker lifecycle on the controller, as pure decisions (Kafka's `ClusterControlManager`,
//! `BrokerHeartbeatManager` and the fencing half of `ReplicationControlManager`):
//! registration (BrokerRegistration), heartbeats (BrokerHeartbeat) that unfence a broker once
//! it has caught up with the metadata log, fencing after `broker.session.timeout.ms` without a
//! heartbeat, controlled shutdown, and the leader and ISR changes fencing implies.
//!
//! **Fencing on a closed heartbeat connection (Nagare, beyond Kafka).** A broker process that
//! dies (SIGKILL, crash, OOM kill) has its sockets closed by the kernel, so the controller reads
//! end-of-stream (FIN) or a reset on the connection the broker heartbeated on; a broker that is
//! merely slow (stopped, paging, behind a saturated disk) keeps its sockets open. So a peer
//! close of the connection that carried the broker's *latest* heartbeat, for the broker epoch
//! still registered, fences the broker after a short grace period
//! ([`HeartbeatTracker::connection_closed`]) instead of after the whole
//! `broker.session.timeout.ms`; any heartbeat or registration in the grace period (on a new
//! connection) cancels it, and a close for an older epoch, an already fenced broker, or a
//! connection that no longer carries its heartbeats is ignored. Silence without a close (a
//! stopped process, a network partition, a machine that lost power) is still governed by the
//! session timeout alone.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use nagare_metadata::records::{Endpoint, MetadataRecord};
use nagare_metadata::{MetadataImage, Uuid};

use crate::elections::{self, Election};
use crate::logic::ApiError;

/// The last heartbeat of every broker, kept by the active controller only (Kafka's
/// `BrokerHeartbeatManager`): a controller that just became active gives every broker a full
/// session before fencing it, since it cannot know when they last heartbeated its predecessor.
#[derive(Debug, Default, Clone)]
pub struct HeartbeatTracker {
    last_contact_ms: BTreeMap<i32, u64>,
    /// Brokers that really heartbeated this controller (not just the grace period).
    heard: std::collections::BTreeSet<i32>,
    /// The metadata offset each broker reported in its last heartbeat.
    reported_offset: BTreeMap<i32, i64>,
    /// Brokers in controlled shutdown: the offset of the records that moved their leadership
    /// away (Kafka's `controlledShutdownOffset`).
    shutdown_offset: BTreeMap<i32, i64>,
    /// The connection each broker's latest heartbeat arrived on (absent: in-process, or no
    /// heartbeat since its registration).
    heartbeat_connection: BTreeMap<i32, u64>,
    /// Brokers whose heartbeat connection the peer closed: the broker epoch and when (ms).
    disconnected: BTreeMap<i32, (i64, u64)>,
}

impl HeartbeatTracker {
    /// Starts a tracker at `now_ms` with a fresh session for every broker of `image`.
    pub fn new(image: &MetadataImage, now_ms: u64) -> Self {
        HeartbeatTracker {
            last_contact_ms: image.brokers.keys().map(|id| (*id, now_ms)).collect(),
            heard: Default::default(),
            reported_offset: Default::default(),
            shutdown_offset: Default::default(),
            heartbeat_connection: Default::default(),
            disconnected: Default::default(),
        }
    }

    /// Records the metadata offset `broker_id` reported as applied.
    pub fn report_offset(&mut self, broker_id: i32, offset: i64) {
        self.reported_offset.insert(broker_id, offset);
    }

    /// Marks `broker_id` as in controlled shutdown once the records moving its leadership
    /// away are committed at `offset`.
    pub fn begin_controlled_shutdown(&mut self, broker_id: i32, offset: i64) {
        self.shutdown_offset.insert(broker_id, offset);
    }

    /// Forgets a finished or abandoned controlled shutdown (a new registration).
    pub fn end_controlled_shutdown(&mut self, broker_id: i32) {
        self.shutdown_offset.remove(&broker_id);
    }

    /// Whether `broker_id`'s controlled shutdown may complete (Kafka's `BrokerHeartbeatManager`:
    /// the lowest metadata offset applied by the other active — unfenced — brokers has passed
    /// its controlled-shutdown offset, so the new leaders know they lead before it stops). A
    /// broker with no controlled shutdown recorded here (fenced before it asked, or under a
    /// previous controller) may stop at once.
    pub fn controlled_shutdown_done(&self, image: &MetadataImage, broker_id: i32) -> bool {
        let Some(&target) = self.shutdown_offset.get(&broker_id) else {
            return true;
        };
        image
            .brokers
            .values()
            .filter(|b| b.id != broker_id && !b.fenced)
            .all(|b| {
                self.reported_offset
                    .get(&b.id)
                    .is_some_and(|o| *o >= target)
            })
    }

    /// Records contact from `broker_id` (in-process, or a registration): renews its session
    /// and cancels a pending disconnect fencing.
    pub fn touch(&mut self, broker_id: i32, now_ms: u64) {
        self.touch_via(broker_id, now_ms, None);
    }

    /// Records a heartbeat from `broker_id` that arrived on `connection` (`None`: in-process):
    /// renews its session, cancels a pending disconnect fencing, and makes `connection` the
    /// one whose close counts ([`HeartbeatTracker::connection_closed`]).
    pub fn touch_via(&mut self, broker_id: i32, now_ms: u64, connection: Option<u64>) {
        self.last_contact_ms.insert(broker_id, now_ms);
        self.heard.insert(broker_id);
        self.disconnected.remove(&broker_id);
        match connection {
            Some(c) => self.heartbeat_connection.insert(broker_id, c),
            None => self.heartbeat_connection.remove(&broker_id),
        };
    }

    /// The peer closed `connection`, on which `broker_id` heartbeated with `broker_epoch`
    /// (end-of-stream or a reset: its process died, or it dropped the connection). Returns
    /// whether this arms disconnect fencing: only when `connection` carried the broker's
    /// latest heartbeat to this controller, `broker_epoch` is its registered epoch and it is
    /// not fenced yet. A heartbeat or registration before the grace period ends cancels it.
    pub fn connection_closed(
        &mut self,
        image: &MetadataImage,
        broker_id: i32,
        broker_epoch: i64,
        connection: u64,
        now_ms: u64,
    ) -> bool {
        if self.heartbeat_connection.get(&broker_id) != Some(&connection) {
            return false;
        }
        let Some(reg) = image.brokers.get(&broker_id) else {
            return false;
        };
        if reg.epoch != broker_epoch || reg.fenced {
            return false;
        }
        self.heartbeat_connection.remove(&broker_id);
        self.disconnected.insert(broker_id, (broker_epoch, now_ms));
        true
    }

    /// Whether `broker_id`, registered with `broker_epoch`, lost its heartbeat connection at
    /// least `grace_ms` ago with no contact since.
    pub fn disconnect_expired(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        now_ms: u64,
        grace_ms: u64,
    ) -> bool {
        self.disconnected
            .get(&broker_id)
            .is_some_and(|(e, at)| *e == broker_epoch && now_ms.saturating_sub(*at) >= grace_ms)
    }

    /// Whether `broker_id` itself heartbeated this controller within the session timeout
    /// (the grace period a new controller gives every broker does not count).
    pub fn has_live_session(&self, broker_id: i32, now_ms: u64, session_timeout_ms: u64) -> bool {
        self.heard.contains(&broker_id) && self.is_alive(broker_id, now_ms, session_timeout_ms)
    }

    /// Whether `broker_id` heartbeated within `session_timeout_ms`.
    pub fn is_alive(&self, broker_id: i32, now_ms: u64, session_timeout_ms: u64) -> bool {
        self.last_contact_ms
            .get(&broker_id)
            .is_some_and(|t| now_ms.saturating_sub(*t) < session_timeout_ms)
    }
}

/// A BrokerRegistration request, reduced to what the decision needs.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `node.id` of the broker.
    pub broker_id: i32,
    /// The cluster id the broker was formatted with.
    pub cluster_id: String,
    /// Unique per process start.
    pub incarnation_id: Uuid,
    /// Its advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

/// Registers (or re-registers) a broker. A new registration starts fenced and gets a new broker
/// epoch; the same incarnation registering again (a retry) gets its existing epoch back; a
/// different incarnation while the old one is still heartbeating is refused
/// (DUPLICATE_BROKER_REGISTRATION), as in Kafka.
pub fn register_broker(
    image: &MetadataImage,
    cluster_id: &str,
    heartbeats: &HeartbeatTracker,
    reg: Registration,
    now_ms: u64,
    session_timeout_ms: u64,
) -> Result<(Vec<MetadataRecord>, i64), ApiError> {
    if reg.cluster_id != cluster_id {
        return Err(ApiError {
            code: ResponseError::InconsistentClusterId.code(),
            message: format!(
                "Expected cluster ID {cluster_id}, but got cluster ID {}",
                reg.cluster_id
            ),
        });
    }
    if let Some(existing) = image.brokers.get(&reg.broker_id) {
        if existing.incarnation_id == reg.incarnation_id {
            return Ok((Vec::new(), existing.epoch));
        }
        if !existing.fenced
            && heartbeats.has_live_session(reg.broker_id, now_ms, session_timeout_ms)
        {
            return Err(ApiError {
                code: ResponseError::DuplicateBrokerRegistration.code(),
                message: format!(
                    "Another broker is registered with that broker id {}",
                    reg.broker_id
                ),
            });
        }
    }
    // The epoch is the offset the record will most likely get; what matters is that it is
    // larger than every epoch handed out before, which `image.offset + 1` is because
    // decisions are serialized over the latest image.
    let broker_epoch = image.offset + 1;
    Ok((
        vec![MetadataRecord::RegisterBroker {
            broker_id: reg.broker_id,
            broker_epoch,
            incarnation_id: reg.incarnation_id,
            endpoints: reg.endpoints,
            rack: reg.rack,
            fenced: true,
        }],
        broker_epoch,
    ))
}

/// A BrokerHeartbeat request.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// The broker.
    pub broker_id: i32,
    /// The epoch its registration returned.
    pub broker_epoch: i64,
    /// The highest metadata offset it has applied.
    pub current_metadata_offset: i64,
    /// It wants to be fenced (it cannot serve, e.g. its log dirs failed).
    pub want_fence: bool,
    /// It is shutting down: move leadership away, then fence it.
    pub want_shut_down: bool,
}

/// The BrokerHeartbeat answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Whether it has caught up with the metadata log (its registration is applied).
    pub is_caught_up: bool,
    /// Whether it is fenced after this heartbeat.
    pub is_fenced: bool,
    /// Whether it may finish its controlled shutdown now.
    pub should_shut_down: bool,
}

/// Handles a heartbeat: unfences a caught-up broker, fences one that asks, and for a
/// controlled shutdown moves leadership away and fences it; `should_shut_down` is granted only
/// once those records are known to the other brokers ([`HeartbeatTracker::controlled_shutdown_done`];
/// the caller records the offset with [`HeartbeatTracker::begin_controlled_shutdown`] when
/// this returns records for a `want_shut_down` heartbeat). `unclean_default` is the
/// controller's `unclean.leader.election.enable`.
pub fn heartbeat(
    image: &MetadataImage,
    hb: Heartbeat,
    tracker: &HeartbeatTracker,
    unclean_default: bool,
) -> Result<(Vec<MetadataRecord>, HeartbeatReply), ApiError> {
    let Some(reg) = image.brokers.get(&hb.broker_id) else {
        return Err(ApiError {
            code: ResponseError::BrokerIdNotRegistered.code(),
            message: format!("Broker {} is not registered", hb.broker_id),
        });
    };
    if reg.epoch != hb.broker_epoch {
        return Err(ApiError {
            code: ResponseError::StaleBrokerEpoch.code(),
            message: format!(
                "Expected broker epoch {}, but got broker epoch {}",
                reg.epoch, hb.broker_epoch
            ),
        });
    }
    let caught_up = hb.current_metadata_offset >= reg.epoch;
    let mut records = Vec::new();
    if hb.want_shut_down {
        // Kafka's controlled shutdown: leadership moves to other ISR members and the broker
        // leaves every ISR (unless it is the last member), then it may stop.
        let should_shut_down = if !reg.fenced {
            records.extend(fence_broker(image, hb.broker_id, unclean_default));
            false
        } else {
            tracker.controlled_shutdown_done(image, hb.broker_id)
        };
        return Ok((
            records,
            HeartbeatReply {
                is_caught_up: caught_up,
                is_fenced: true,
                should_shut_down,
            },
        ));
    }
    let mut fenced = reg.fenced;
    if hb.want_fence && !fenced {
        records.extend(fence_broker(image, hb.broker_id, unclean_default));
        fenced = true;
    } else if !hb.want_fence && fenced && caught_up {
        records.extend(unfence_broker(image, hb.broker_id, unclean_default));
        fenced = false;
    }
    Ok((
        records,
        HeartbeatReply {
            is_caught_up: caught_up,
            is_fenced: fenced,
            should_shut_down: false,
        },
    ))
}

/// Fences every unfenced broker whose session expired, and (with `disconnect_grace_ms`) every
/// one whose heartbeat connection the peer closed that long ago with no contact since. Each
/// fencing is decided on the image after the previous ones, so a broker fenced in the same
/// batch is never elected.
pub fn fence_expired(
    image: &MetadataImage,
    heartbeats: &HeartbeatTracker,
    now_ms: u64,
    session_timeout_ms: u64,
    disconnect_grace_ms: Option<u64>,
    unclean_default: bool,
) -> Vec<MetadataRecord> {
    let expired: Vec<(i32, bool)> = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            if !heartbeats.is_alive(b.id, now_ms, session_timeout_ms) {
                Some((b.id, false))
            } else {
                disconnect_grace_ms
                    .filter(|g| heartbeats.disconnect_expired(b.id, b.epoch, now_ms, *g))
                    .map(|_| (b.id, true))
            }
        })
        .collect();
    let mut out = Vec::new();
    let mut scratch: Option<MetadataImage> = None;
    for (id, disconnected) in expired {
        if disconnected {
            tracing::info!(
                broker = id,
                grace_ms = disconnect_grace_ms,
                "fencing broker: its heartbeat connection was closed by the peer and it has not heartbeated since"
            );
        } else {
            tracing::info!(
                broker = id,
                session_timeout_ms,
                "fencing broker: no heartbeat within the session timeout"
            );
        }
        let img = scratch.get_or_insert_with(|| image.clone());
        let recs = fence_broker(img, id, unclean_default);
        for r in &recs {
            let o = img.offset + 1;
            img.apply(o, r);
        }
        out.extend(recs);
    }
    out
}

/// Fences `broker_id`: removes it from every ISR it is in (keeping the last member, so the
/// partition still knows who has the data) and moves leadership of the partitions it led to
/// another in-sync, unfenced replica. If there is none, the partition goes leaderless (-1) —
/// unless the topic allows unclean elections (`unclean.leader.election.enable`, else
/// `unclean_default`), in which case an unfenced replica outside the ISR leads and becomes
/// the whole ISR.
pub fn fence_broker(
    image: &MetadataImage,
    broker_id: i32,
    unclean_default: bool,
) -> Vec<MetadataRecord> {
    let mut out = vec![MetadataRecord::BrokerFencing {
        broker_id,
        fenced: true,
    }];
    let acceptable = |id: i32| id != broker_id && elections::is_unfenced(image, id);
    for t in elections::sorted_topics(image) {
        let mut unclean: Option<bool> = None;
        for (pid, p) in &t.partitions {
            if !p.replicas.contains(&broker_id) {
                continue;
            }
            let mut isr: Vec<i32> = if p.isr.len() > 1 {
                p.isr.iter().copied().filter(|r| *r != broker_id).collect()
            } else {
                p.isr.clone()
            };
            let mut leader = p.leader;
            if p.leader == broker_id {
                let election = if *unclean.get_or_insert_with(|| {
                    elections::unclean_enabled(image, &t.name, unclean_default)
                }) {
                    Election::Unclean
                } else {
                    Election::Online
                };
                let (l, was_unclean) = elections::elect_leader(p, &isr, &acceptable, election);
                leader = l;
                if was_unclean {
                    tracing::warn!(
                        topic = %t.name,
                        partition = pid,
                        leader = l,
                        old_isr = ?p.isr,
                        "unclean leader election: no in-sync replica is alive, electing an out-of-sync replica (records may be lost)"
                    );
                    isr = vec![l];
                }
            }
            out.extend(elections::partition_change(t.id, *pid, p, leader, isr));
        }
    }
    out
}

/// Removes `broker_id`'s registration (UnregisterBroker, `kafka-cluster unregister`), as
/// Kafka's `ReplicationControlManager.unregisterBroker`: the broker leaves every ISR and the
/// partitions it led elect another leader (the fencing rules), then an UnregisterBrokerRecord
/// drops it from the cluster. BROKER_ID_NOT_REGISTERED when it is not registered. A broker
/// still running registers again with its next heartbeat's refusal.
pub fn unregister_broker(
    image: &MetadataImage,
    broker_id: i32,
    unclean_default: bool,
) -> Result<Vec<MetadataRecord>, ApiError> {
    let Some(reg) = image.brokers.get(&broker_id) else {
        return Err(ApiError {
            code: ResponseError::BrokerIdNotRegistered.code(),
            message: format!("Broker ID {broker_id} is not currently registered"),
        });
    };
    let mut out: Vec<MetadataRecord> = fence_broker(image, broker_id, unclean_default)
        .into_iter()
        .filter(|r| !matches!(r, MetadataRecord::BrokerFencing { .. }))
        .collect();
    out.push(MetadataRecord::UnregisterBroker {
        broker_id,
        broker_epoch: reg.epoch,
    });
    Ok(out)
}

/// Unfences `broker_id` and elects leaders for the leaderless partitions it can now lead
/// (Kafka's `handleBrokerUnfenced`: every leaderless partition is re-elected, uncleanly where
/// the topic allows it).
pub fn unfence_broker(
    image: &MetadataImage,
    broker_id: i32,
    unclean_default: bool,
) -> Vec<MetadataRecord> {
    let mut out = vec![MetadataRecord::BrokerFencing {
        broker_id,
        fenced: false,
    }];
    out.extend(elections::elect_leaderless(
        image,
        unclean_default,
        Some(broker_id),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(img: &mut MetadataImage, recs: &[MetadataRecord]) {
        for r in recs {
            let o = img.offset + 1;
            img.apply(o, r);
        }
    }

    fn reg(id: i32, inc: u8) -> Registration {
        Registration {
            broker_id: id,
            cluster_id: "c".into(),
            incarnation_id: Uuid::from_bytes([inc; 16]),
            endpoints: vec![],
            rack: None,
        }
    }

    fn hb(id: i32, epoch: i64, offset: i64) -> Heartbeat {
        Heartbeat {
            broker_id: id,
            broker_epoch: epoch,
            current_metadata_offset: offset,
            want_fence: false,
            want_shut_down: false,
        }
    }

    #[test]
    fn registration_heartbeat_fencing_and_election() {
        let mut img = MetadataImage::empty();
        let mut hbs = HeartbeatTracker::new(&img, 0);
        let mut epochs = BTreeMap::new();
        for id in 1..=3 {
            let (recs, epoch) =
                register_broker(&img, "c", &hbs, reg(id, id as u8), 0, 9000).expect("register");
            apply(&mut img, &recs);
            assert!(img.brokers[&id].fenced, "new registrations start fenced");
            // Not caught up yet: stays fenced.
            let (recs, r) = heartbeat(&img, hb(id, epoch, epoch - 1), &hbs, false).expect("hb");
            assert!(recs.is_empty() && r.is_fenced && !r.is_caught_up);
            let (recs, r) = heartbeat(&img, hb(id, epoch, img.offset), &hbs, false).expect("hb");
            apply(&mut img, &recs);
            assert!(!r.is_fenced && !img.brokers[&id].fenced);
            hbs.touch(id, 0);
            epochs.insert(id, epoch);
        }
        // Wrong cluster, stale epoch, unknown broker.
        let mut bad = reg(4, 4);
        bad.cluster_id = "x".into();
        assert_eq!(
            register_broker(&img, "c", &hbs, bad, 0, 9000)
                .map(|_| ())
                .unwrap_err()
                .code,
            ResponseError::InconsistentClusterId.code()
        );
        assert_eq!(
            heartbeat(&img, hb(1, epochs[&1] - 1, img.offset), &hbs, false)
                .map(|_| ())
                .unwrap_err()
                .code,
            ResponseError::StaleBrokerEpoch.code()
        );
        assert_eq!(
            heartbeat(&img, hb(9, 0, 0), &hbs, false)
                .map(|_| ())
                .unwrap_err()
                .code,
            ResponseError::BrokerIdNotRegistered.code()
        );
        // A second process with the same id while the first heartbeats is refused; the same
        // incarnation retrying gets its epoch back.
        assert_eq!(
            register_broker(&img, "c", &hbs, reg(1, 42), 100, 9000)
                .map(|_| ())
                .unwrap_err()
                .code,
            ResponseError::DuplicateBrokerRegistration.code()
        );
        let (recs, e) = register_broker(&img, "c", &hbs, reg(1, 1), 100, 9000).expect("retry");
        assert!(recs.is_empty());
        assert_eq!(e, epochs[&1]);

        // A partition led by 1 with ISR [1,2] and one only on 1.
        let t = Uuid::from_bytes([7; 16]);
        apply(
            &mut img,
            &[
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: t,
                },
                MetadataRecord::Partition {
                    topic_id: t,
                    partition_id: 0,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
                MetadataRecord::Partition {
                    topic_id: t,
                    partition_id: 1,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            ],
        );
        // Brokers 2 and 3 heartbeat, 1 goes silent: 1 is fenced after the session timeout.
        hbs.touch(2, 8000);
        hbs.touch(3, 8000);
        assert!(fence_expired(&img, &hbs, 8999, 9000, None, false).is_empty());
        let recs = fence_expired(&img, &hbs, 9000, 9000, None, false);
        apply(&mut img, &recs);
        assert!(img.brokers[&1].fenced);
        let p = |img: &MetadataImage, i: i32| img.topic("t").map(|t| t.partitions[&i].clone());
        let p0 = p(&img, 0).expect("p0");
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (2, 1, vec![2])
        );
        let p1 = p(&img, 1).expect("p1");
        assert_eq!((p1.leader, p1.isr.clone()), (-1, vec![1]));
        // Broker 1 comes back: re-registers (fenced), catches up, is unfenced and leads its
        // leaderless partition again with a new leader epoch.
        let (recs, epoch) =
            register_broker(&img, "c", &hbs, reg(1, 11), 20_000, 9000).expect("re-register");
        apply(&mut img, &recs);
        let (recs, r) = heartbeat(&img, hb(1, epoch, img.offset), &hbs, false).expect("hb");
        apply(&mut img, &recs);
        assert!(!r.is_fenced);
        let p1 = p(&img, 1).expect("p1");
        assert_eq!((p1.leader, p1.leader_epoch), (1, 2));
        // Controlled shutdown of 2: leadership moves to 1 (back in the ISR only via
        // replication, so p0 has no other in-sync replica: it goes leaderless).
        let shut = Heartbeat {
            want_shut_down: true,
            ..hb(2, epochs[&2], img.offset)
        };
        let (recs, r) = heartbeat(&img, shut, &hbs, false).expect("hb");
        apply(&mut img, &recs);
        assert!(!r.should_shut_down, "not before the records are committed");
        assert!(img.brokers[&2].fenced);
        assert_eq!(p(&img, 0).map(|p| p.leader), Some(-1));
        hbs.begin_controlled_shutdown(2, img.offset);
        // The other unfenced brokers (1 and 3) have to apply those records first.
        hbs.report_offset(1, img.offset);
        hbs.report_offset(3, img.offset - 1);
        let (recs, r) = heartbeat(&img, shut, &hbs, false).expect("hb");
        assert!(recs.is_empty() && !r.should_shut_down);
        hbs.report_offset(3, img.offset);
        let (_, r) = heartbeat(&img, shut, &hbs, false).expect("hb");
        assert!(r.should_shut_down && r.is_fenced);
    }

    /// Disconnect fencing: the peer closing the connection of a broker's latest heartbeat
    /// fences it after the grace period (leadership moves at once, long before the session
    /// timeout); a heartbeat on a new connection within the grace cancels it; closes of an
    /// older connection, of a stale broker epoch or of an already fenced broker are ignored;
    /// and silence without a close waits for the whole session.
    #[test]
    fn a_closed_heartbeat_connection_fences_after_the_grace_period() {
        const SESSION: u64 = 9000;
        const GRACE: Option<u64> = Some(300);
        let mut img = MetadataImage::empty();
        let mut hbs = HeartbeatTracker::new(&img, 0);
        let mut epochs = BTreeMap::new();
        for id in 1..=3 {
            let (recs, epoch) =
                register_broker(&img, "c", &hbs, reg(id, id as u8), 0, SESSION).expect("register");
            apply(&mut img, &recs);
            let (recs, _) = heartbeat(&img, hb(id, epoch, img.offset), &hbs, false).expect("hb");
            apply(&mut img, &recs);
            epochs.insert(id, epoch);
        }
        let t = Uuid::from_bytes([5; 16]);
        apply(
            &mut img,
            &[
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: t,
                },
                MetadataRecord::Partition {
                    topic_id: t,
                    partition_id: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            ],
        );
        // Each broker heartbeats on its own connection (ids 10 + broker) at t=1000.
        for id in 1..=3 {
            hbs.touch_via(id, 1000, Some(10 + id as u64));
        }
        let fence = |img: &MetadataImage, hbs: &HeartbeatTracker, now| {
            fence_expired(img, hbs, now, SESSION, GRACE, false)
        };

        // A close of a connection that is not broker 1's heartbeat connection, or with a
        // stale epoch, arms nothing.
        assert!(!hbs.connection_closed(&img, 1, epochs[&1], 99, 1500));
        assert!(!hbs.connection_closed(&img, 1, epochs[&1] - 1, 11, 1500));
        assert!(fence(&img, &hbs, 5000).is_empty());

        // Broker 2's connection closes, but it heartbeats again on a new connection within
        // the grace (a live broker that dropped the connection): not fenced, and the old
        // connection's close no longer counts.
        assert!(hbs.connection_closed(&img, 2, epochs[&2], 12, 2000));
        assert!(
            fence(&img, &hbs, 2299).is_empty(),
            "fenced inside the grace"
        );
        hbs.touch_via(2, 2200, Some(22));
        assert!(
            fence(&img, &hbs, 2400).is_empty(),
            "the re-heartbeat did not cancel"
        );
        assert!(!hbs.connection_closed(&img, 2, epochs[&2], 12, 2500));
        // A heartbeat that arrives on a new connection before the old one's close is seen
        // makes that close stale as well.
        hbs.touch_via(3, 2600, Some(23));
        assert!(!hbs.connection_closed(&img, 3, epochs[&3], 13, 2601));

        // Broker 1's process dies: its connection closes at 3000 and nothing follows. It is
        // fenced once the grace has passed — 300 ms, not the 9 s session — and leadership
        // moves to an in-sync replica.
        assert!(hbs.connection_closed(&img, 1, epochs[&1], 11, 3000));
        assert!(fence(&img, &hbs, 3299).is_empty());
        let recs = fence(&img, &hbs, 3300);
        apply(&mut img, &recs);
        assert!(img.brokers[&1].fenced);
        let p = img.topic("t").expect("t").partitions[&0].clone();
        assert_eq!((p.leader, p.isr, p.leader_epoch), (2, vec![2, 3], 1));
        // Fenced now: a further close (e.g. the grace elapsing again) changes nothing.
        assert!(!hbs.connection_closed(&img, 1, epochs[&1], 11, 3400));
        assert!(fence(&img, &hbs, 3500).is_empty());

        // Without the feature (grace None) a close does not fence before the session ends.
        hbs.touch_via(2, 4000, Some(22));
        hbs.touch_via(3, 4000, Some(33));
        assert!(hbs.connection_closed(&img, 3, epochs[&3], 33, 4000));
        assert!(fence_expired(&img, &hbs, 12_999, SESSION, None, false).is_empty());
        // A stopped broker (2) keeps its connection open: only the session timeout fences it.
        let late = fence_expired(&img, &hbs, 12_999, SESSION, GRACE, false);
        apply(&mut img, &late);
        assert!(
            !img.brokers[&2].fenced,
            "a silent but connected broker was fenced early"
        );
        assert!(
            img.brokers[&3].fenced,
            "broker 3's close was armed with the grace on"
        );
        let recs = fence_expired(&img, &hbs, 13_000, SESSION, GRACE, false);
        apply(&mut img, &recs);
        assert!(img.brokers[&2].fenced, "the session timeout still fences");

        // A new incarnation (new epoch) of broker 1 is not affected by the old epoch's close.
        let (recs, e1) =
            register_broker(&img, "c", &hbs, reg(1, 111), 20_000, SESSION).expect("re-register");
        apply(&mut img, &recs);
        hbs.touch(1, 20_000);
        let (recs, r) = heartbeat(&img, hb(1, e1, img.offset), &hbs, false).expect("hb");
        apply(&mut img, &recs);
        assert!(!r.is_fenced);
        hbs.touch_via(1, 20_000, Some(41));
        assert!(!hbs.connection_closed(&img, 1, epochs[&1], 41, 20_100));
        assert!(fence(&img, &hbs, 21_000).is_empty());
    }

    #[test]
    fn unregister_removes_the_broker_from_isrs_leadership_and_the_cluster() {
        let mut img = MetadataImage::empty();
        let hbs = HeartbeatTracker::new(&img, 0);
        for id in 1..=3 {
            let (recs, epoch) =
                register_broker(&img, "c", &hbs, reg(id, id as u8), 0, 9000).expect("register");
            apply(&mut img, &recs);
            let (recs, _) = heartbeat(&img, hb(id, epoch, img.offset), &hbs, false).expect("hb");
            apply(&mut img, &recs);
        }
        let t = Uuid::from_bytes([7; 16]);
        apply(
            &mut img,
            &[
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: t,
                },
                MetadataRecord::Partition {
                    topic_id: t,
                    partition_id: 0,
                    replicas: vec![2, 1, 3],
                    isr: vec![2, 1, 3],
                    leader: 2,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            ],
        );
        let recs = unregister_broker(&img, 2, false).expect("unregister");
        assert!(matches!(
            recs.last(),
            Some(MetadataRecord::UnregisterBroker { broker_id: 2, .. })
        ));
        apply(&mut img, &recs);
        assert!(!img.brokers.contains_key(&2));
        let p = &img.topic("t").expect("topic").partitions[&0];
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 3]));
        assert_eq!(
            unregister_broker(&img, 2, false)
                .map(|_| ())
                .map_err(|e| e.code),
            Err(ResponseError::BrokerIdNotRegistered.code())
        );
        // A stale UnregisterBrokerRecord (an older epoch) leaves a new registration alone.
        let (recs, epoch) =
            register_broker(&img, "c", &hbs, reg(2, 22), 0, 9000).expect("register again");
        apply(&mut img, &recs);
        apply(
            &mut img,
            &[MetadataRecord::UnregisterBroker {
                broker_id: 2,
                broker_epoch: epoch - 1,
            }],
        );
        assert!(img.brokers.contains_key(&2));
    }

    #[test]
    fn controlled_shutdown_moves_leadership_to_an_isr_member_and_leaves_the_isr() {
        let mut img = MetadataImage::empty();
        let hbs = HeartbeatTracker::new(&img, 0);
        let mut epochs = BTreeMap::new();
        for id in 1..=3 {
            let (recs, epoch) =
                register_broker(&img, "c", &hbs, reg(id, id as u8), 0, 9000).expect("register");
            apply(&mut img, &recs);
            let (recs, _) = heartbeat(&img, hb(id, epoch, img.offset), &hbs, false).expect("hb");
            apply(&mut img, &recs);
            epochs.insert(id, epoch);
        }
        let t = Uuid::from_bytes([9; 16]);
        apply(
            &mut img,
            &[
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: t,
                },
                MetadataRecord::Partition {
                    topic_id: t,
                    partition_id: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
                MetadataRecord::Partition {
                    topic_id: t,
                    partition_id: 1,
                    replicas: vec![2, 1],
                    isr: vec![2, 1],
                    leader: 2,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            ],
        );
        let shut = Heartbeat {
            want_shut_down: true,
            ..hb(1, epochs[&1], img.offset)
        };
        let (recs, r) = heartbeat(&img, shut, &hbs, false).expect("hb");
        assert!(!r.should_shut_down);
        apply(&mut img, &recs);
        let t0 = img.topic("t").expect("t").partitions[&0].clone();
        assert_eq!((t0.leader, t0.isr, t0.leader_epoch), (2, vec![2, 3], 1));
        let t1 = img.topic("t").expect("t").partitions[&1].clone();
        assert_eq!((t1.leader, t1.isr, t1.leader_epoch), (2, vec![2], 0));
    }

    #[test]
    fn fencing_elects_uncleanly_only_when_the_topic_allows_it() {
        let mut img = MetadataImage::empty();
        let hbs = HeartbeatTracker::new(&img, 0);
        for id in 1..=2 {
            let (recs, epoch) =
                register_broker(&img, "c", &hbs, reg(id, id as u8), 0, 9000).expect("register");
            apply(&mut img, &recs);
            let (recs, _) = heartbeat(&img, hb(id, epoch, img.offset), &hbs, false).expect("hb");
            apply(&mut img, &recs);
        }
        for (name, b) in [("clean", 1u8), ("dirty", 2u8)] {
            let id = Uuid::from_bytes([b; 16]);
            apply(
                &mut img,
                &[
                    MetadataRecord::Topic {
                        name: name.into(),
                        topic_id: id,
                    },
                    MetadataRecord::Partition {
                        topic_id: id,
                        partition_id: 0,
                        replicas: vec![1, 2],
                        isr: vec![1],
                        leader: 1,
                        leader_epoch: 0,
                        partition_epoch: 0,
                    },
                ],
            );
        }
        apply(
            &mut img,
            &[MetadataRecord::Config {
                resource: nagare_metadata::ConfigResource::Topic,
                resource_name: "dirty".into(),
                name: elections::UNCLEAN_LEADER_ELECTION_ENABLE.into(),
                value: Some("true".into()),
            }],
        );
        let recs = fence_broker(&img, 1, false);
        apply(&mut img, &recs);
        let c = img.topic("clean").expect("t").partitions[&0].clone();
        assert_eq!((c.leader, c.isr), (-1, vec![1]));
        let d = img.topic("dirty").expect("t").partitions[&0].clone();
        assert_eq!((d.leader, d.isr, d.leader_epoch), (2, vec![2], 1));
        // With the broker default on, the clean topic is elected when 2 unfences... it is
        // already unfenced: the periodic check elects it.
        let recs = elections::elect_leaderless(&img, true, None);
        apply(&mut img, &recs);
        let c = img.topic("clean").expect("t").partitions[&0].clone();
        assert_eq!((c.leader, c.isr), (2, vec![2]));
    }
}
