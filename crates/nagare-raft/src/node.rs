//! [`RaftNode`]: the KRaft quorum state machine (KIP-595, KIP-996, KIP-630) without I/O.
//!
//! Inputs: [`RaftNode::tick`], [`RaftNode::step`], [`RaftNode::propose`],
//! [`RaftNode::snapshot_taken`], [`RaftNode::resign`] and [`RaftNode::advance`].
//! Output: numbered [`Ready`] batches. The shell must, for each `Ready` in order:
//!
//! 1. write and fsync `quorum_state` (a vote or an epoch must never be forgotten);
//! 2. install `snapshot_to_install`, then truncate the log to `truncate_to`, then append
//!    `entries`, and fsync;
//! 3. only then send `messages` (they may promise what step 1 and 2 made durable: a granted
//!    vote, a fetch offset that the leader counts towards the high watermark);
//! 4. apply committed entries below `high_watermark` to the state machine;
//! 5. call [`RaftNode::advance`] with the `Ready`'s id.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::RaftConfig;
use crate::log::MemLog;
use crate::types::*;

/// Number of a [`Ready`]; passed back to [`RaftNode::advance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadyId(pub u64);

/// The role, epoch and leader after a change, reported in a [`Ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleChange {
    /// The new role.
    pub role: Role,
    /// The current epoch.
    pub epoch: Epoch,
    /// The leader of that epoch, if known.
    pub leader_id: Option<NodeId>,
}

/// A batch of work for the shell; see the module documentation for the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Pass to [`RaftNode::advance`] once the batch is done.
    pub id: ReadyId,
    /// Quorum state to write and fsync BEFORE sending any message of this batch.
    pub quorum_state: Option<QuorumStateRecord>,
    /// A snapshot fetched from the leader: it replaces the whole log (KIP-630).
    pub snapshot_to_install: Option<Snapshot>,
    /// Remove every log entry at or above this offset (divergence, KIP-595).
    pub truncate_to: Option<Offset>,
    /// Entries to append after the truncation, contiguous, with offsets and epochs.
    pub entries: Vec<Entry>,
    /// Messages to send once everything above is durable.
    pub messages: Vec<(NodeId, Message)>,
    /// New high watermark: entries below it are committed and may be applied.
    pub high_watermark: Option<Offset>,
    /// Set when the role, epoch or leader changed.
    pub role: Option<RoleChange>,
}

/// Why a proposal was refused; the node is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader appends; the hint says where to go.
    #[error("not the leader (epoch {epoch}, leader {leader_id:?})")]
    NotLeader {
        /// The leader this node knows, if any.
        leader_id: Option<NodeId>,
        /// This node's epoch.
        epoch: Epoch,
    },
    /// Nothing to append.
    #[error("empty proposal")]
    Empty,
    /// More entries than `max_propose_entries`.
    #[error("proposal of {count} entries exceeds the limit of {max}")]
    TooMany {
        /// Entries proposed.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Why [`RaftNode::advance`] was refused; the node is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvanceError {
    /// The id was never handed out or is already advanced.
    #[error("ready {0} is not outstanding")]
    UnknownReady(u64),
}

/// Why [`RaftNode::snapshot_taken`] was refused; the node is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A snapshot may only contain committed, persisted entries.
    #[error("snapshot end {end_offset} is above the high watermark {high_watermark} or the persisted log")]
    NotCommitted {
        /// The snapshot's end offset.
        end_offset: Offset,
        /// This node's high watermark.
        high_watermark: Offset,
    },
    /// The id does not name a prefix of the log newer than the current snapshot.
    #[error("snapshot {0:?} does not match the log")]
    Mismatch(SnapshotId),
}

/// Why [`RaftNode::resign`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResignError {
    /// Only a leader resigns.
    #[error("not the leader")]
    NotLeader,
}

/// Why a message was ignored by [`RaftNode::step`]; the node's state is unchanged (only
/// [`RaftStats`] counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Malformed or impossible content (untrusted input).
    #[error("invalid message: {0}")]
    Invalid(&'static str),
    /// A valid message that no longer matters (old epoch, unexpected response).
    #[error("stale message: {0}")]
    Stale(&'static str),
}

/// The leader's view of one replica.
#[derive(Clone, Debug)]
struct ReplicaState {
    /// Fetch offset of the last valid fetch in this epoch, -1 before.
    end_offset: Offset,
    last_fetch_ms: Option<u64>,
    last_caught_up_ms: Option<u64>,
    /// Whether the replica knows this leader (acknowledged BeginQuorumEpoch or fetched).
    acked: bool,
}

impl ReplicaState {
    fn new() -> Self {
        ReplicaState {
            end_offset: -1,
            last_fetch_ms: None,
            last_caught_up_ms: None,
            acked: false,
        }
    }
}

#[derive(Clone, Debug)]
struct LeaderState {
    /// Offset of this epoch's LeaderChange entry; the high watermark must pass it.
    epoch_start_offset: Offset,
    /// When this node became leader (the check-quorum grace period starts here).
    since_ms: u64,
    voters: BTreeMap<NodeId, ReplicaState>,
    observers: BTreeMap<NodeId, ReplicaState>,
    /// When BeginQuorumEpoch is next resent to voters that have not acknowledged it.
    begin_resend_ms: u64,
}

/// A snapshot being fetched chunk by chunk (KIP-630).
#[derive(Clone, Debug)]
struct SnapshotFetch {
    id: SnapshotId,
    size: Option<u64>,
    buf: Vec<u8>,
}

#[derive(Clone, Debug)]
enum RoleState {
    Unattached {
        deadline_ms: u64,
    },
    Prospective {
        deadline_ms: u64,
        granted: BTreeSet<NodeId>,
        rejected: BTreeSet<NodeId>,
    },
    Candidate {
        deadline_ms: u64,
        granted: BTreeSet<NodeId>,
    },
    Leader(Box<LeaderState>),
    Follower {
        /// Fetch timeout base: the transition or the last successful fetch.
        timer_ms: u64,
        next_fetch_ms: u64,
        in_flight_since_ms: Option<u64>,
        snapshot: Option<SnapshotFetch>,
    },
    Resigned {
        deadline_ms: u64,
    },
}

impl RoleState {
    fn role(&self) -> Role {
        match self {
            RoleState::Unattached { .. } => Role::Unattached,
            RoleState::Prospective { .. } => Role::Prospective,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
            RoleState::Follower { .. } => Role::Follower,
            RoleState::Resigned { .. } => Role::Resigned,
        }
    }
}

/// Output accumulated since the last [`Ready`].
#[derive(Clone, Debug, Default)]
struct Pending {
    snapshot: Option<Snapshot>,
    truncate_to: Option<Offset>,
    messages: Vec<(NodeId, Message)>,
}

/// One member of the quorum (voter or observer) as a pure state machine.
#[derive(Debug)]
pub struct RaftNode {
    cfg: RaftConfig,
    rng: StdRng,
    /// The shell's clock as of the last tick.
    now_ms: u64,
    /// Timers are rebased on the first tick (the constructor has no clock).
    started: bool,
    epoch: Epoch,
    voted_for: Option<NodeId>,
    leader_id: Option<NodeId>,
    role: RoleState,
    /// Last successful contact with the leader of the current epoch (KIP-996 pre-vote rule).
    last_leader_contact_ms: Option<u64>,
    /// Voters the shell could not reach, and when (an observer does not follow such a voter
    /// again, nor ask it, for `fetch_timeout_ms`; see [`RaftNode::peer_unreachable`]).
    unreachable: BTreeMap<NodeId, u64>,
    log: MemLog,
    high_watermark: Offset,
    /// The largest high watermark a leader has sent this node (not capped by this node's log
    /// end): how far a follower or observer must apply to be caught up.
    leader_high_watermark: Option<Offset>,
    /// Log end offset the shell has made durable (set by `advance`); the leader counts only
    /// this towards the high watermark.
    durable_end: Offset,
    /// Entries below this offset were handed out in a `Ready`.
    handed_end: Offset,
    pending: Pending,
    next_ready_id: u64,
    /// Outstanding readies and the log end each will make durable.
    in_flight: VecDeque<(u64, Offset)>,
    reported_quorum: QuorumStateRecord,
    reported_role: RoleChange,
    reported_hw: Offset,
    stats: RaftStats,
}

impl RaftNode {
    /// Restores a node from what its disk holds. `rng_seed` drives election jitter, so a
    /// simulation replays exactly.
    pub fn new(config: RaftConfig, persisted: PersistedState, rng_seed: u64) -> Self {
        let (log, dropped) = MemLog::recover(persisted.snapshot, persisted.entries);
        if dropped > 0 {
            tracing::warn!(
                node = config.node_id,
                dropped,
                "persisted log has entries that do not continue it; ignoring them"
            );
        }
        let q = persisted.quorum;
        let epoch = q.epoch.max(0);
        let id = config.node_id;
        let is_voter = config.voters.contains(&id);
        let role = match q.leader_id {
            // A leader that restarts lost its replica tracking: it resigns (Kafka does the same).
            Some(l) if l == id && is_voter => RoleState::Resigned { deadline_ms: 0 },
            Some(_) => RoleState::Follower {
                timer_ms: 0,
                next_fetch_ms: 0,
                in_flight_since_ms: None,
                snapshot: None,
            },
            None => RoleState::Unattached { deadline_ms: 0 },
        };
        let start = log.start();
        let end = log.end();
        let reported_role = RoleChange {
            role: role.role(),
            epoch,
            leader_id: q.leader_id,
        };
        RaftNode {
            rng: StdRng::seed_from_u64(rng_seed),
            now_ms: 0,
            started: false,
            epoch,
            voted_for: q.voted_for,
            leader_id: q.leader_id,
            role,
            last_leader_contact_ms: None,
            unreachable: BTreeMap::new(),
            log,
            // The high watermark is not persisted (as in Kafka); everything in a snapshot is
            // committed, the rest is re-learned from the leader.
            high_watermark: start,
            leader_high_watermark: None,
            durable_end: end,
            handed_end: end,
            pending: Pending::default(),
            next_ready_id: 1,
            in_flight: VecDeque::new(),
            reported_quorum: QuorumStateRecord {
                epoch,
                voted_for: q.voted_for,
                leader_id: q.leader_id,
            },
            reported_role,
            reported_hw: start,
            stats: RaftStats::default(),
            cfg: config,
        }
    }

    /// Everything but the counters, to prove a refused input changed nothing.
    #[cfg(test)]
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "{:?}",
            (
                self.now_ms,
                self.started,
                self.quorum_state(),
                &self.role,
                self.last_leader_contact_ms,
                &self.log,
                self.high_watermark,
                (self.durable_end, self.handed_end, &self.pending),
                (self.next_ready_id, &self.in_flight),
                (self.reported_quorum, self.reported_role, self.reported_hw),
            )
        )
    }

    // ----- accessors -------------------------------------------------------------------

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    /// Whether this node is a voter (otherwise an observer).
    pub fn is_voter(&self) -> bool {
        self.cfg.voters.contains(&self.cfg.node_id)
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role.role()
    }

    /// Current epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Leader of the current epoch, if known.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }

    /// The quorum state as it must be persisted.
    pub fn quorum_state(&self) -> QuorumStateRecord {
        QuorumStateRecord {
            epoch: self.epoch,
            voted_for: self.voted_for,
            leader_id: self.leader_id,
        }
    }

    /// High watermark: entries below it are committed.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The largest high watermark received from a leader that had established one in its
    /// epoch (`None` before the first): a follower or observer that has applied up to it is
    /// caught up with the quorum, whatever its own log holds.
    pub fn leader_high_watermark(&self) -> Option<Offset> {
        self.leader_high_watermark
    }

    /// Log end offset (including entries not yet handed out or persisted).
    pub fn log_end_offset(&self) -> Offset {
        self.log.end()
    }

    /// Log start offset (the latest snapshot's end offset, or 0).
    pub fn log_start_offset(&self) -> Offset {
        self.log.start()
    }

    /// Epoch of the last log entry.
    pub fn last_log_epoch(&self) -> Epoch {
        self.log.last_epoch()
    }

    /// Entry at `offset`, if still in the log (above the latest snapshot).
    pub fn entry(&self, offset: Offset) -> Option<&Entry> {
        self.log.get(offset)
    }

    /// The latest snapshot (taken locally or fetched from the leader).
    pub fn latest_snapshot(&self) -> Option<&Snapshot> {
        self.log.snapshot()
    }

    /// Counters of ignored input.
    pub fn stats(&self) -> RaftStats {
        self.stats
    }

    /// DescribeQuorum data (KIP-595). Only the leader knows other replicas' progress.
    pub fn quorum_info(&self) -> QuorumInfo {
        let me = self.cfg.node_id;
        let info = |id: NodeId, r: &ReplicaState| ReplicaInfo {
            replica_id: id,
            log_end_offset: r.end_offset,
            last_fetch_ms: r.last_fetch_ms,
            last_caught_up_ms: r.last_caught_up_ms,
        };
        let mut voters = Vec::with_capacity(self.cfg.voters.len());
        let mut observers = Vec::new();
        for &v in &self.cfg.voters {
            if v == me {
                voters.push(ReplicaInfo {
                    replica_id: me,
                    log_end_offset: self.log.end(),
                    last_fetch_ms: Some(self.now_ms),
                    last_caught_up_ms: Some(self.now_ms),
                });
            } else if let RoleState::Leader(ls) = &self.role {
                match ls.voters.get(&v) {
                    Some(r) => voters.push(info(v, r)),
                    None => voters.push(info(v, &ReplicaState::new())),
                }
            } else {
                voters.push(info(v, &ReplicaState::new()));
            }
        }
        if let RoleState::Leader(ls) = &self.role {
            observers.extend(ls.observers.iter().map(|(&id, r)| info(id, r)));
        }
        QuorumInfo {
            leader_id: self.leader_id,
            epoch: self.epoch,
            high_watermark: self.high_watermark,
            voters,
            observers,
        }
    }

    // ----- ready / advance -------------------------------------------------------------

    fn current_role_change(&self) -> RoleChange {
        RoleChange {
            role: self.role.role(),
            epoch: self.epoch,
            leader_id: self.leader_id,
        }
    }

    /// Whether [`RaftNode::ready`] has something to hand out.
    pub fn has_ready(&self) -> bool {
        self.reported_quorum != self.quorum_state()
            || self.pending.snapshot.is_some()
            || self.pending.truncate_to.is_some()
            || self.handed_end < self.log.end()
            || !self.pending.messages.is_empty()
            || self.reported_hw != self.high_watermark
            || self.reported_role != self.current_role_change()
    }

    /// Takes the work accumulated since the last call, if any.
    pub fn ready(&mut self) -> Option<Ready> {
        if !self.has_ready() {
            return None;
        }
        let id = self.next_ready_id;
        self.next_ready_id += 1;
        let quorum = self.quorum_state();
        let quorum_state = (quorum != self.reported_quorum).then_some(quorum);
        self.reported_quorum = quorum;
        let role_change = self.current_role_change();
        let role = (role_change != self.reported_role).then_some(role_change);
        self.reported_role = role_change;
        let high_watermark =
            (self.high_watermark != self.reported_hw).then_some(self.high_watermark);
        self.reported_hw = self.high_watermark;
        let entries = self.log.entries_from(self.handed_end, usize::MAX);
        self.handed_end = self.log.end();
        self.in_flight.push_back((id, self.log.end()));
        let pending = std::mem::take(&mut self.pending);
        Some(Ready {
            id: ReadyId(id),
            quorum_state,
            snapshot_to_install: pending.snapshot,
            truncate_to: pending.truncate_to,
            entries,
            messages: pending.messages,
            high_watermark,
            role,
        })
    }

    /// Reports that the `Ready` numbered `id` (and every earlier one) is persisted and sent.
    /// The leader then counts its own durable log towards the high watermark.
    pub fn advance(&mut self, id: ReadyId) -> Result<(), AdvanceError> {
        let id = id.0;
        match (self.in_flight.front(), self.in_flight.back()) {
            (Some(&(first, _)), Some(&(last, _))) if first <= id && id <= last => {}
            _ => return Err(AdvanceError::UnknownReady(id)),
        }
        while let Some(&(rid, end)) = self.in_flight.front() {
            if rid > id {
                break;
            }
            self.durable_end = end;
            self.in_flight.pop_front();
        }
        self.maybe_advance_high_watermark();
        Ok(())
    }

    // ----- inputs ----------------------------------------------------------------------

    /// Advances the clock and fires due timers (elections, fetches, resends, check-quorum).
    pub fn tick(&mut self, now_ms: u64) {
        if !self.started {
            self.started = true;
            self.now_ms = now_ms;
            self.restart_timers();
        }
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        let is_voter = self.is_voter();
        match &mut self.role {
            RoleState::Unattached { deadline_ms } | RoleState::Resigned { deadline_ms } => {
                if now >= *deadline_ms {
                    if is_voter {
                        self.become_prospective();
                    } else {
                        // An observer finds the leader by asking any voter (Kafka's bootstrap
                        // fetch); the answer names the leader. Right after an unreachable
                        // leader, it asks again every fetch interval.
                        let searching = self
                            .unreachable
                            .values()
                            .any(|t| now < t + self.cfg.fetch_timeout_ms);
                        *deadline_ms = now
                            + if searching {
                                self.cfg.fetch_interval_ms.max(1)
                            } else {
                                self.cfg.request_timeout_ms
                            };
                        self.send_discovery_fetch();
                    }
                }
            }
            RoleState::Prospective { deadline_ms, .. } => {
                if now >= *deadline_ms {
                    self.prospective_lost();
                }
            }
            RoleState::Candidate { deadline_ms, .. } => {
                // KIP-996: a candidate whose election timed out goes back to pre-voting.
                if now >= *deadline_ms {
                    self.become_prospective();
                }
            }
            RoleState::Follower { timer_ms, .. } => {
                if now >= *timer_ms + self.cfg.fetch_timeout_ms {
                    // KIP-595: no successful fetch within fetch.timeout.ms ⇒ election
                    // (prospective first, KIP-996). Observers just look for a leader again.
                    if is_voter {
                        self.become_prospective();
                    } else {
                        self.become_unattached(self.epoch, self.voted_for);
                    }
                }
            }
            RoleState::Leader(_) => self.leader_tick(),
        }
        self.maybe_send_fetch();
    }

    /// The shell could not reach `peer` (connection refused, reset, or no answer). An observer
    /// that follows `peer` stops waiting for `fetch_timeout_ms` and asks the other voters who
    /// leads now, every `fetch_interval_ms` until one names a leader it can reach (KIP-595's
    /// `RequestManager`: on a connection error, try another voter) — so a broker learns a
    /// newly elected controller as soon as the voters have one, not a fetch timeout later.
    /// Voters ignore it: their fetch timeout is what starts an election.
    pub fn peer_unreachable(&mut self, peer: NodeId) {
        if !self.cfg.voters.contains(&peer) || peer == self.cfg.node_id {
            return;
        }
        self.unreachable.insert(peer, self.now_ms);
        if self.is_voter() || self.leader_id != Some(peer) {
            return;
        }
        if matches!(self.role, RoleState::Follower { .. }) {
            tracing::debug!(
                node = self.cfg.node_id,
                leader = peer,
                epoch = self.epoch,
                "the leader is unreachable; asking the other voters who leads"
            );
            self.become_unattached(self.epoch, self.voted_for);
            self.role = RoleState::Unattached {
                deadline_ms: self.now_ms,
            };
        }
    }

    /// Whether `peer` was found unreachable within the last `fetch_timeout_ms`.
    fn recently_unreachable(&self, peer: NodeId) -> bool {
        self.unreachable
            .get(&peer)
            .is_some_and(|t| self.now_ms < t + self.cfg.fetch_timeout_ms)
    }

    /// Appends `data` as new entries of the current epoch (leader only).
    pub fn propose(&mut self, data: Vec<Bytes>) -> Result<Range<Offset>, ProposeError> {
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(ProposeError::NotLeader {
                leader_id: self.leader_id.filter(|&l| l != self.cfg.node_id),
                epoch: self.epoch,
            });
        }
        if data.is_empty() {
            return Err(ProposeError::Empty);
        }
        if data.len() > self.cfg.max_propose_entries {
            return Err(ProposeError::TooMany {
                count: data.len(),
                max: self.cfg.max_propose_entries,
            });
        }
        let first = self.log.end();
        for d in data {
            let offset = self.log.end();
            self.log.append(Entry {
                offset,
                epoch: self.epoch,
                payload: EntryPayload::Data(d),
            });
        }
        Ok(first..self.log.end())
    }

    /// The shell took a snapshot of its state up to `snapshot.id.end_offset` (KIP-630): the
    /// log before it may be deleted, and lagging replicas will be sent the snapshot.
    pub fn snapshot_taken(&mut self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let id = snapshot.id;
        if id.end_offset > self.high_watermark || id.end_offset > self.durable_end {
            return Err(SnapshotError::NotCommitted {
                end_offset: id.end_offset,
                high_watermark: self.high_watermark,
            });
        }
        if !self.log.matches_snapshot_id(id) {
            return Err(SnapshotError::Mismatch(id));
        }
        self.log.compact(snapshot);
        Ok(())
    }

    /// Graceful resignation (KIP-595 EndQuorumEpoch), e.g. on shutdown: the voters are told
    /// to elect a successor now, the most up-to-date ones first.
    pub fn resign(&mut self) -> Result<(), ResignError> {
        let RoleState::Leader(ls) = &self.role else {
            return Err(ResignError::NotLeader);
        };
        let mut successors: Vec<(Offset, NodeId)> = ls
            .voters
            .iter()
            .map(|(&id, r)| (r.end_offset, id))
            .collect();
        successors.sort_by(|a, b| b.cmp(a));
        let preferred: Vec<NodeId> = successors.into_iter().map(|(_, id)| id).collect();
        self.resign_with(preferred);
        Ok(())
    }

    fn resign_with(&mut self, preferred_successors: Vec<NodeId>) {
        let req = EndQuorumEpochRequest {
            epoch: self.epoch,
            leader_id: self.cfg.node_id,
            preferred_successors,
        };
        for v in self.other_voters() {
            self.send(v, Message::EndQuorumEpochRequest(req.clone()));
        }
        let deadline_ms = self.election_deadline();
        self.role = RoleState::Resigned { deadline_ms };
    }

    /// Handles one message from `from`. Invalid or stale input is counted and ignored; an
    /// `Err` guarantees the node's state is unchanged.
    pub fn step(&mut self, from: NodeId, msg: Message) -> Result<(), StepError> {
        // Whatever it says, the peer is reachable again.
        self.unreachable.remove(&from);
        let r = match msg {
            Message::VoteRequest(m) => self.on_vote_request(from, m),
            Message::VoteResponse(m) => self.on_vote_response(from, m),
            Message::BeginQuorumEpochRequest(m) => self.on_begin_epoch(from, m),
            Message::BeginQuorumEpochResponse(m) => self.on_begin_epoch_response(from, m),
            Message::EndQuorumEpochRequest(m) => self.on_end_epoch(from, m),
            Message::EndQuorumEpochResponse(m) => self.on_end_epoch_response(from, m),
            Message::FetchRequest(m) => self.on_fetch(from, m),
            Message::FetchResponse(m) => self.on_fetch_response(from, m),
            Message::FetchSnapshotRequest(m) => self.on_fetch_snapshot(from, m),
            Message::FetchSnapshotResponse(m) => self.on_fetch_snapshot_response(from, m),
        };
        match r {
            Err(StepError::Invalid(why)) => {
                self.stats.invalid_messages += 1;
                tracing::debug!(
                    node = self.cfg.node_id,
                    from,
                    why,
                    "ignoring invalid message"
                );
            }
            Err(StepError::Stale(_)) => self.stats.stale_messages += 1,
            Ok(()) => self.maybe_send_fetch(),
        }
        r
    }

    // ----- helpers ---------------------------------------------------------------------

    fn majority(&self) -> usize {
        self.cfg.voters.len() / 2 + 1
    }

    fn other_voters(&self) -> Vec<NodeId> {
        let me = self.cfg.node_id;
        self.cfg
            .voters
            .iter()
            .copied()
            .filter(|&v| v != me)
            .collect()
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.pending.messages.push((to, msg));
    }

    fn election_deadline(&mut self) -> u64 {
        let jitter = if self.cfg.election_jitter_ms > 0 {
            self.rng.gen_range(0..=self.cfg.election_jitter_ms)
        } else {
            0
        };
        self.now_ms + self.cfg.election_timeout_ms + jitter
    }

    fn restart_timers(&mut self) {
        let now = self.now_ms;
        let deadline = self.election_deadline();
        match &mut self.role {
            RoleState::Unattached { deadline_ms }
            | RoleState::Resigned { deadline_ms }
            | RoleState::Prospective { deadline_ms, .. }
            | RoleState::Candidate { deadline_ms, .. } => *deadline_ms = deadline,
            RoleState::Follower {
                timer_ms,
                next_fetch_ms,
                in_flight_since_ms,
                ..
            } => {
                *timer_ms = now;
                *next_fetch_ms = now;
                *in_flight_since_ms = None;
            }
            RoleState::Leader(ls) => ls.since_ms = now,
        }
    }

    /// KIP-996: a voter that fetched from a live leader within fetch.timeout.ms rejects
    /// pre-votes, so a node returning from a partition cannot disrupt a healthy quorum.
    fn has_recent_leader_contact(&self) -> bool {
        if matches!(self.role, RoleState::Leader(_)) {
            return true;
        }
        self.last_leader_contact_ms
            .is_some_and(|t| self.now_ms < t + self.cfg.fetch_timeout_ms)
    }

    fn set_quorum(&mut self, epoch: Epoch, voted_for: Option<NodeId>, leader_id: Option<NodeId>) {
        if epoch != self.epoch {
            self.last_leader_contact_ms = None;
        }
        self.epoch = epoch;
        self.voted_for = voted_for;
        self.leader_id = leader_id;
    }

    /// The leader named in responses: a resigned leader no longer names itself, or the
    /// voters it told to elect a successor would go back to following it.
    fn advertised_leader(&self) -> Option<NodeId> {
        match self.role {
            RoleState::Resigned { .. } => None,
            _ => self.leader_id,
        }
    }

    fn log_is_up_to_date(&self, last_epoch: Epoch, end_offset: Offset) -> bool {
        (last_epoch, end_offset) >= (self.log.last_epoch(), self.log.end())
    }

    /// Adopts what a message says about the epoch and its leader. KIP-595: a larger epoch is
    /// always adopted; a leader for the current epoch is adopted if none is known.
    /// Returns whether the state changed.
    fn observe(&mut self, epoch: Epoch, leader: Option<NodeId>) -> bool {
        let me = self.cfg.node_id;
        let leader = leader.filter(|l| *l != me && self.cfg.voters.contains(l));
        if epoch > self.epoch {
            match leader {
                Some(l) => self.become_follower(epoch, l),
                None => self.become_unattached(epoch, None),
            }
            return true;
        }
        if epoch == self.epoch && self.leader_id.is_none() {
            if let Some(l) = leader {
                // An observer that just failed to reach that leader keeps asking the other
                // voters until they elect a new one (or it is reachable again).
                if !self.is_voter() && self.recently_unreachable(l) {
                    return false;
                }
                self.become_follower(epoch, l);
                return true;
            }
        }
        false
    }

    // ----- transitions -----------------------------------------------------------------

    fn become_unattached(&mut self, epoch: Epoch, voted_for: Option<NodeId>) {
        self.set_quorum(epoch, voted_for, None);
        let mut deadline_ms = self.election_deadline();
        // An observer looking for a new leader after an unreachable one asks again soon.
        if !self.is_voter()
            && self
                .unreachable
                .values()
                .any(|t| self.now_ms < t + self.cfg.fetch_timeout_ms)
        {
            deadline_ms = deadline_ms.min(self.now_ms + self.cfg.fetch_interval_ms.max(1));
        }
        self.role = RoleState::Unattached { deadline_ms };
    }

    fn become_follower(&mut self, epoch: Epoch, leader: NodeId) {
        let voted = if epoch == self.epoch {
            self.voted_for
        } else {
            None
        };
        self.set_quorum(epoch, voted, Some(leader));
        self.role = RoleState::Follower {
            timer_ms: self.now_ms,
            next_fetch_ms: self.now_ms,
            in_flight_since_ms: None,
            snapshot: None,
        };
    }

    /// KIP-996: ask the voters whether they would vote, without touching any epoch.
    fn become_prospective(&mut self) {
        let deadline_ms = self.election_deadline();
        let mut granted = BTreeSet::new();
        granted.insert(self.cfg.node_id);
        self.role = RoleState::Prospective {
            deadline_ms,
            granted,
            rejected: BTreeSet::new(),
        };
        let Some(next_epoch) = self.epoch.checked_add(1) else {
            tracing::error!(node = self.cfg.node_id, "epoch exhausted");
            return;
        };
        let req = VoteRequest {
            epoch: next_epoch,
            candidate_id: self.cfg.node_id,
            last_offset_epoch: self.log.last_epoch(),
            last_offset: self.log.end(),
            pre_vote: true,
        };
        for v in self.other_voters() {
            self.send(v, Message::VoteRequest(req.clone()));
        }
        self.check_prospective();
    }

    fn check_prospective(&mut self) {
        let majority = self.majority();
        if let RoleState::Prospective {
            granted, rejected, ..
        } = &self.role
        {
            if granted.len() >= majority {
                self.become_candidate();
            } else if rejected.len() >= majority {
                self.prospective_lost();
            }
        }
    }

    /// KIP-996: a failed pre-vote goes back to following the leader it knew, else unattached.
    fn prospective_lost(&mut self) {
        match self.leader_id {
            Some(l) if l != self.cfg.node_id => self.become_follower(self.epoch, l),
            _ => self.become_unattached(self.epoch, self.voted_for),
        }
    }

    /// KIP-595: bump the epoch, vote for ourselves (persisted before the requests go out).
    fn become_candidate(&mut self) {
        let Some(epoch) = self.epoch.checked_add(1) else {
            return;
        };
        let me = self.cfg.node_id;
        self.set_quorum(epoch, Some(me), None);
        self.stats.elections_started += 1;
        let deadline_ms = self.election_deadline();
        let mut granted = BTreeSet::new();
        granted.insert(me);
        self.role = RoleState::Candidate {
            deadline_ms,
            granted,
        };
        let req = VoteRequest {
            epoch,
            candidate_id: me,
            last_offset_epoch: self.log.last_epoch(),
            last_offset: self.log.end(),
            pre_vote: false,
        };
        for v in self.other_voters() {
            self.send(v, Message::VoteRequest(req.clone()));
        }
        self.check_candidate();
    }

    fn check_candidate(&mut self) {
        if let RoleState::Candidate { granted, .. } = &self.role {
            if granted.len() >= self.majority() {
                self.become_leader();
            }
        }
    }

    fn become_leader(&mut self) {
        let me = self.cfg.node_id;
        self.set_quorum(self.epoch, self.voted_for, Some(me));
        let epoch_start_offset = self.log.end();
        // Like Kafka's LeaderChangeMessage: an entry of the new epoch that lets the high
        // watermark advance past the previous epochs' entries (only current-epoch entries
        // are committed by counting replicas).
        self.log.append(Entry {
            offset: epoch_start_offset,
            epoch: self.epoch,
            payload: EntryPayload::LeaderChange { leader_id: me },
        });
        let voters = self
            .other_voters()
            .into_iter()
            .map(|v| (v, ReplicaState::new()))
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            epoch_start_offset,
            since_ms: self.now_ms,
            voters,
            observers: BTreeMap::new(),
            begin_resend_ms: self.now_ms + self.cfg.request_timeout_ms,
        }));
        let req = BeginQuorumEpochRequest {
            epoch: self.epoch,
            leader_id: me,
        };
        for v in self.other_voters() {
            self.send(v, Message::BeginQuorumEpochRequest(req.clone()));
        }
        tracing::debug!(node = me, epoch = self.epoch, "elected leader");
        self.maybe_advance_high_watermark();
    }

    fn leader_tick(&mut self) {
        let now = self.now_ms;
        let majority = self.majority();
        let check_quorum_ms = self.cfg.fetch_timeout_ms.saturating_mul(3) / 2;
        let me = self.cfg.node_id;
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        // Kafka's check-quorum: a leader that no majority fetched from within 1.5 times the
        // fetch timeout is probably partitioned away; it resigns so clients find the new one.
        if now >= ls.since_ms + check_quorum_ms {
            let recent = 1 + ls
                .voters
                .values()
                .filter(|r| r.last_fetch_ms.is_some_and(|t| now < t + check_quorum_ms))
                .count();
            if recent < majority {
                tracing::info!(
                    node = me,
                    epoch = self.epoch,
                    "lost quorum contact; resigning"
                );
                self.resign_with(Vec::new());
                return;
            }
        }
        if now >= ls.begin_resend_ms {
            ls.begin_resend_ms = now + self.cfg.request_timeout_ms;
            // Resent to voters that never acknowledged and to voters that stopped fetching:
            // a live voter that does not fetch does not know this leader, possibly because it
            // sits in a higher epoch (a failed election); its FENCED_LEADER_EPOCH answer then
            // moves this leader to that epoch, otherwise such a voter could never rejoin
            // (pre-votes cannot raise anyone's epoch, KIP-996).
            let fetch_timeout = self.cfg.fetch_timeout_ms;
            let unacked: Vec<NodeId> = ls
                .voters
                .iter()
                .filter(|(_, r)| {
                    !r.acked || r.last_fetch_ms.is_none_or(|t| now >= t + fetch_timeout)
                })
                .map(|(&id, _)| id)
                .collect();
            let req = BeginQuorumEpochRequest {
                epoch: self.epoch,
                leader_id: me,
            };
            for v in unacked {
                self.send(v, Message::BeginQuorumEpochRequest(req.clone()));
            }
        }
    }

    /// HW = the largest offset a majority of voters has durably, provided it is past this
    /// epoch's LeaderChange entry (KIP-595; Raft's commit rule). Never moves back.
    fn maybe_advance_high_watermark(&mut self) {
        let RoleState::Leader(ls) = &self.role else {
            return;
        };
        let mut ends: Vec<Offset> = ls.voters.values().map(|r| r.end_offset).collect();
        ends.push(self.durable_end.min(self.log.end()));
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&candidate) = ends.get(self.majority() - 1) else {
            return;
        };
        if candidate > ls.epoch_start_offset && candidate > self.high_watermark {
            self.high_watermark = candidate;
        }
    }

    fn truncate_log(&mut self, offset: Offset) {
        self.log.truncate(offset);
        if offset < self.handed_end {
            self.pending.truncate_to =
                Some(self.pending.truncate_to.map_or(offset, |t| t.min(offset)));
            self.handed_end = offset;
        }
        self.durable_end = self.durable_end.min(offset);
        for (_, end) in self.in_flight.iter_mut() {
            *end = (*end).min(offset);
        }
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let end = snapshot.id.end_offset;
        self.log.install(snapshot.clone());
        self.pending.snapshot = Some(snapshot);
        self.pending.truncate_to = None;
        self.handed_end = end;
        self.durable_end = self.durable_end.min(end);
        for (_, e) in self.in_flight.iter_mut() {
            *e = (*e).min(end);
        }
        self.high_watermark = self.high_watermark.max(end);
    }

    fn send_discovery_fetch(&mut self) {
        let all = self.other_voters();
        // Not a voter found unreachable lately, unless every one was.
        let reachable: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|v| !self.recently_unreachable(*v))
            .collect();
        let voters = if reachable.is_empty() { all } else { reachable };
        if voters.is_empty() {
            return;
        }
        let to = voters[self.rng.gen_range(0..voters.len())];
        let req = self.fetch_request();
        self.send(to, Message::FetchRequest(req));
    }

    fn fetch_request(&self) -> FetchRequest {
        FetchRequest {
            epoch: self.epoch,
            replica_id: self.cfg.node_id,
            fetch_offset: self.log.end(),
            last_fetched_epoch: self.log.last_epoch(),
        }
    }

    /// Sends the next fetch (or snapshot chunk request) when due and none is outstanding
    /// (a lost one is resent after the request timeout).
    fn maybe_send_fetch(&mut self) {
        let now = self.now_ms;
        let request_timeout = self.cfg.request_timeout_ms;
        let (
            Some(leader),
            RoleState::Follower {
                next_fetch_ms,
                in_flight_since_ms,
                snapshot,
                ..
            },
        ) = (self.leader_id, &mut self.role)
        else {
            return;
        };
        match *in_flight_since_ms {
            Some(since) if now < since + request_timeout => return,
            None if now < *next_fetch_ms => return,
            _ => {}
        }
        *in_flight_since_ms = Some(now);
        let msg = match snapshot {
            Some(sf) => Message::FetchSnapshotRequest(FetchSnapshotRequest {
                epoch: self.epoch,
                replica_id: self.cfg.node_id,
                snapshot_id: sf.id,
                position: sf.buf.len() as u64,
            }),
            None => Message::FetchRequest(self.fetch_request()),
        };
        self.send(leader, msg);
    }

    fn follower_fetch_done(&mut self, next_in_ms: u64, contact: bool) {
        let now = self.now_ms;
        if let RoleState::Follower {
            timer_ms,
            next_fetch_ms,
            in_flight_since_ms,
            ..
        } = &mut self.role
        {
            if contact {
                *timer_ms = now;
                self.last_leader_contact_ms = Some(now);
            }
            *next_fetch_ms = now + next_in_ms;
            *in_flight_since_ms = None;
        }
    }

    // ----- handlers --------------------------------------------------------------------

    fn on_vote_request(&mut self, from: NodeId, req: VoteRequest) -> Result<(), StepError> {
        if req.candidate_id != from || from == self.cfg.node_id {
            return Err(StepError::Invalid(
                "vote request candidate is not the sender",
            ));
        }
        if !self.cfg.voters.contains(&from) {
            return Err(StepError::Invalid("vote request from a non-voter"));
        }
        if req.epoch < 0 || req.last_offset < 0 || req.last_offset_epoch < 0 {
            return Err(StepError::Invalid("negative epoch or offset"));
        }
        if req.last_offset_epoch > req.epoch {
            return Err(StepError::Invalid(
                "last offset epoch above the election epoch",
            ));
        }
        let up_to_date = self.log_is_up_to_date(req.last_offset_epoch, req.last_offset);
        if req.pre_vote {
            // KIP-996: a pre-vote changes nothing here; granted only for a newer epoch, an
            // up-to-date log, and when no leader has been heard from recently.
            let granted = self.is_voter()
                && req.epoch > self.epoch
                && up_to_date
                && !self.has_recent_leader_contact();
            let resp = self.vote_response(granted, true);
            self.send(from, resp);
            return Ok(());
        }
        if req.epoch < self.epoch || !self.is_voter() {
            let resp = self.vote_response(false, false);
            self.send(from, resp);
            return Ok(());
        }
        if req.epoch > self.epoch {
            self.become_unattached(req.epoch, None);
        }
        // KIP-595: one vote per epoch (persisted before the response is sent), none once a
        // leader is known, and only for a log at least as up to date as ours.
        let granted =
            self.leader_id.is_none() && self.voted_for.is_none_or(|v| v == from) && up_to_date;
        if granted {
            self.voted_for = Some(from);
            let deadline_ms = self.election_deadline();
            self.role = RoleState::Unattached { deadline_ms };
        }
        let resp = self.vote_response(granted, false);
        self.send(from, resp);
        Ok(())
    }

    fn vote_response(&self, granted: bool, pre_vote: bool) -> Message {
        Message::VoteResponse(VoteResponse {
            epoch: self.epoch,
            leader_id: self.advertised_leader(),
            vote_granted: granted,
            pre_vote,
        })
    }

    fn on_vote_response(&mut self, from: NodeId, resp: VoteResponse) -> Result<(), StepError> {
        if from == self.cfg.node_id || !self.cfg.voters.contains(&from) {
            return Err(StepError::Invalid("vote response from a non-voter"));
        }
        if resp.epoch < 0 {
            return Err(StepError::Invalid("negative epoch"));
        }
        if self.observe(resp.epoch, resp.leader_id) {
            return Ok(());
        }
        match &mut self.role {
            RoleState::Prospective {
                granted, rejected, ..
            } if resp.pre_vote && resp.epoch <= self.epoch => {
                if resp.vote_granted {
                    granted.insert(from);
                } else {
                    rejected.insert(from);
                }
                self.check_prospective();
                Ok(())
            }
            RoleState::Candidate { granted, .. } if !resp.pre_vote && resp.epoch == self.epoch => {
                if resp.vote_granted {
                    granted.insert(from);
                    self.check_candidate();
                }
                Ok(())
            }
            _ => Err(StepError::Stale("vote response not expected")),
        }
    }

    fn on_begin_epoch(
        &mut self,
        from: NodeId,
        req: BeginQuorumEpochRequest,
    ) -> Result<(), StepError> {
        if req.leader_id != from || from == self.cfg.node_id || !self.cfg.voters.contains(&from) {
            return Err(StepError::Invalid(
                "begin epoch leader is not a voter sender",
            ));
        }
        if req.epoch < 0 {
            return Err(StepError::Invalid("negative epoch"));
        }
        let error = if req.epoch < self.epoch {
            Some(ResponseError::FencedLeaderEpoch)
        } else if req.epoch > self.epoch || self.leader_id.is_none() {
            self.become_follower(req.epoch, from);
            None
        } else if self.leader_id == Some(from) {
            if !matches!(self.role, RoleState::Follower { .. }) {
                // A prospective that lost contact: the leader is alive after all.
                self.become_follower(req.epoch, from);
            }
            None
        } else {
            tracing::error!(
                node = self.cfg.node_id,
                epoch = req.epoch,
                claimed = from,
                known = ?self.leader_id,
                "two leaders claim the same epoch"
            );
            return Err(StepError::Invalid("conflicting leader for the epoch"));
        };
        let resp = Message::BeginQuorumEpochResponse(BeginQuorumEpochResponse {
            epoch: self.epoch,
            leader_id: self.advertised_leader(),
            error,
        });
        self.send(from, resp);
        Ok(())
    }

    fn on_begin_epoch_response(
        &mut self,
        from: NodeId,
        resp: BeginQuorumEpochResponse,
    ) -> Result<(), StepError> {
        if from == self.cfg.node_id || !self.cfg.voters.contains(&from) || resp.epoch < 0 {
            return Err(StepError::Invalid("begin epoch response from a non-voter"));
        }
        if self.observe(resp.epoch, resp.leader_id) {
            return Ok(());
        }
        match &mut self.role {
            RoleState::Leader(ls) if resp.epoch == self.epoch && resp.error.is_none() => {
                if let Some(r) = ls.voters.get_mut(&from) {
                    r.acked = true;
                }
                Ok(())
            }
            _ => Err(StepError::Stale("begin epoch response not expected")),
        }
    }

    fn on_end_epoch(&mut self, from: NodeId, req: EndQuorumEpochRequest) -> Result<(), StepError> {
        if req.leader_id != from || from == self.cfg.node_id || !self.cfg.voters.contains(&from) {
            return Err(StepError::Invalid("end epoch leader is not a voter sender"));
        }
        if req.epoch < 0 || req.preferred_successors.len() > self.cfg.voters.len() {
            return Err(StepError::Invalid("malformed end epoch"));
        }
        if req.epoch > self.epoch {
            self.become_unattached(req.epoch, None);
        }
        if req.epoch == self.epoch
            && self.leader_id.is_none_or(|l| l == from)
            && self.is_voter()
            && !matches!(
                self.role,
                RoleState::Leader(_) | RoleState::Candidate { .. }
            )
        {
            // KIP-595: the leader resigned; start an election soon, sooner for the preferred
            // successors (the most up-to-date voters), so the likely winner runs first.
            let me = self.cfg.node_id;
            let position = req
                .preferred_successors
                .iter()
                .position(|&v| v == me)
                .unwrap_or(self.cfg.voters.len()) as u64;
            let step_ms = self.cfg.election_jitter_ms.max(1) / self.cfg.voters.len().max(1) as u64;
            let deadline_ms = self.now_ms + position * step_ms;
            self.set_quorum(self.epoch, self.voted_for, None);
            self.last_leader_contact_ms = None;
            self.role = RoleState::Unattached { deadline_ms };
        }
        let resp = Message::EndQuorumEpochResponse(EndQuorumEpochResponse {
            epoch: self.epoch,
            leader_id: self.advertised_leader(),
        });
        self.send(from, resp);
        Ok(())
    }

    fn on_end_epoch_response(
        &mut self,
        from: NodeId,
        resp: EndQuorumEpochResponse,
    ) -> Result<(), StepError> {
        if from == self.cfg.node_id || resp.epoch < 0 {
            return Err(StepError::Invalid("malformed end epoch response"));
        }
        if self.observe(resp.epoch, resp.leader_id) {
            return Ok(());
        }
        Err(StepError::Stale("end epoch response needs no action"))
    }

    fn fetch_error(&self, req: &FetchRequest, error: ResponseError) -> FetchResponse {
        FetchResponse {
            epoch: self.epoch,
            leader_id: self.advertised_leader(),
            error: Some(error),
            fetch_offset: req.fetch_offset,
            last_fetched_epoch: req.last_fetched_epoch,
            high_watermark: self.high_watermark,
            diverging_epoch: None,
            snapshot_id: None,
            records: Vec::new(),
        }
    }

    fn on_fetch(&mut self, from: NodeId, req: FetchRequest) -> Result<(), StepError> {
        if req.replica_id != from || from == self.cfg.node_id {
            return Err(StepError::Invalid("fetch replica is not the sender"));
        }
        if req.fetch_offset < 0 || req.last_fetched_epoch < 0 || req.epoch < 0 {
            return Err(StepError::Invalid("negative offset or epoch"));
        }
        let error = if req.epoch < self.epoch {
            Some(ResponseError::FencedLeaderEpoch)
        } else if req.epoch > self.epoch {
            Some(ResponseError::UnknownLeaderEpoch)
        } else if !matches!(self.role, RoleState::Leader(_)) {
            Some(ResponseError::NotLeader)
        } else {
            None
        };
        if let Some(e) = error {
            let resp = self.fetch_error(&req, e);
            self.send(from, Message::FetchResponse(resp));
            return Ok(());
        }
        let mut resp = FetchResponse {
            epoch: self.epoch,
            leader_id: Some(self.cfg.node_id),
            error: None,
            fetch_offset: req.fetch_offset,
            last_fetched_epoch: req.last_fetched_epoch,
            high_watermark: self.high_watermark,
            diverging_epoch: None,
            snapshot_id: None,
            records: Vec::new(),
        };
        let snapshot_id = self.log.snapshot().map(|s| s.id);
        let valid = if req.fetch_offset < self.log.start() {
            // KIP-630: below the log start the replica must fetch the snapshot first.
            resp.snapshot_id = snapshot_id;
            false
        } else {
            match self.log.end_offset_for_epoch(req.last_fetched_epoch) {
                None => {
                    resp.snapshot_id = snapshot_id;
                    false
                }
                Some((epoch, end_offset))
                    if epoch != req.last_fetched_epoch || end_offset < req.fetch_offset =>
                {
                    // KIP-595: tell the follower where our logs agree at most; it truncates.
                    resp.diverging_epoch = Some(DivergingEpoch { epoch, end_offset });
                    false
                }
                Some(_) => true,
            }
        };
        if valid {
            let now = self.now_ms;
            let end = self.log.end();
            let is_voter = self.cfg.voters.contains(&from);
            let max_observers = self.cfg.max_observers;
            if let RoleState::Leader(ls) = &mut self.role {
                let r = if is_voter {
                    ls.voters.get_mut(&from)
                } else if ls.observers.len() < max_observers || ls.observers.contains_key(&from) {
                    Some(ls.observers.entry(from).or_insert_with(ReplicaState::new))
                } else {
                    None
                };
                if let Some(r) = r {
                    r.end_offset = req.fetch_offset;
                    r.last_fetch_ms = Some(now);
                    if req.fetch_offset >= end {
                        r.last_caught_up_ms = Some(now);
                    }
                    r.acked = true;
                }
            }
            if is_voter {
                self.maybe_advance_high_watermark();
            }
            // KIP-595: a leader that has not committed an entry of its own epoch does not
            // know the high watermark yet and sends -1 (as Kafka's KafkaRaftClient), so no
            // follower takes its stale in-memory value for the quorum's commit point.
            let established = matches!(&self.role,
                RoleState::Leader(ls) if self.high_watermark > ls.epoch_start_offset);
            resp.high_watermark = if established { self.high_watermark } else { -1 };
            resp.records = self
                .log
                .entries_from(req.fetch_offset, self.cfg.max_fetch_entries);
        }
        self.send(from, Message::FetchResponse(resp));
        Ok(())
    }

    /// Structural checks of a fetch response, before anything changes.
    fn validate_fetch_response(resp: &FetchResponse) -> Result<(), StepError> {
        if resp.epoch < 0 || resp.fetch_offset < 0 || resp.last_fetched_epoch < 0 {
            return Err(StepError::Invalid("negative epoch or offset"));
        }
        let kinds = usize::from(!resp.records.is_empty())
            + usize::from(resp.diverging_epoch.is_some())
            + usize::from(resp.snapshot_id.is_some());
        if kinds > 1 {
            return Err(StepError::Invalid(
                "records, divergence and snapshot are exclusive",
            ));
        }
        let mut last_epoch = resp.last_fetched_epoch;
        for (expected, e) in (resp.fetch_offset..).zip(resp.records.iter()) {
            if e.offset != expected || e.epoch < last_epoch || e.epoch > resp.epoch {
                return Err(StepError::Invalid("records are not a continuation"));
            }
            last_epoch = e.epoch;
        }
        if let Some(d) = resp.diverging_epoch {
            if d.epoch < 0 || d.end_offset < 0 || d.epoch > resp.last_fetched_epoch {
                return Err(StepError::Invalid("malformed diverging epoch"));
            }
        }
        if let Some(s) = resp.snapshot_id {
            if s.end_offset <= 0 || s.epoch < 0 || s.epoch > resp.epoch {
                return Err(StepError::Invalid("malformed snapshot id"));
            }
        }
        Ok(())
    }

    fn on_fetch_response(&mut self, from: NodeId, resp: FetchResponse) -> Result<(), StepError> {
        if from == self.cfg.node_id {
            return Err(StepError::Invalid("fetch response from self"));
        }
        Self::validate_fetch_response(&resp)?;
        if resp.epoch < self.epoch {
            return Err(StepError::Stale("fetch response from an old epoch"));
        }
        if let Some(err) = resp.error {
            if self.observe(resp.epoch, resp.leader_id) {
                return Ok(());
            }
            if self.leader_id == Some(from) && matches!(self.role, RoleState::Follower { .. }) {
                // The leader refused; retry after the poll interval (it may have resigned, in
                // which case the fetch timeout starts an election).
                let _ = err;
                self.follower_fetch_done(self.cfg.fetch_interval_ms, false);
                return Ok(());
            }
            return Err(StepError::Stale("fetch error from a non-leader"));
        }
        if resp.leader_id != Some(from) || !self.cfg.voters.contains(&from) {
            return Err(StepError::Invalid(
                "successful fetch response not from its leader",
            ));
        }
        // Decide everything that can fail before changing anything.
        let current =
            resp.fetch_offset == self.log.end() && resp.last_fetched_epoch == self.log.last_epoch();
        let truncation = match resp.diverging_epoch {
            Some(d) if current => {
                let local_end = self
                    .log
                    .end_offset_for_epoch(d.epoch)
                    .map_or(d.end_offset, |(_, end)| end);
                let to = d.end_offset.min(local_end);
                if to < self.high_watermark || to < self.log.start() {
                    tracing::error!(
                        node = self.cfg.node_id,
                        to,
                        hw = self.high_watermark,
                        "leader asks to truncate committed entries; ignoring"
                    );
                    return Err(StepError::Invalid("divergence below the high watermark"));
                }
                Some(to)
            }
            _ => None,
        };
        if let Some(s) = resp.snapshot_id {
            if current && s.end_offset < self.high_watermark {
                return Err(StepError::Invalid("snapshot behind the high watermark"));
            }
        }
        let follows_from = self.leader_id == Some(from)
            && matches!(self.role, RoleState::Follower { .. })
            && resp.epoch == self.epoch;
        if !follows_from {
            // A newer epoch, a leader we did not know, or the leader we gave up on: follow it.
            if resp.epoch > self.epoch || self.leader_id.is_none() || self.leader_id == Some(from) {
                self.become_follower(resp.epoch, from);
            } else {
                return Err(StepError::Invalid("fetch response from a second leader"));
            }
            if !current {
                return Ok(());
            }
        }
        if !current {
            // A delayed or duplicated response to a fetch our log has moved past.
            self.follower_fetch_done(0, true);
            return Ok(());
        }
        if let Some(s) = resp.snapshot_id {
            if let RoleState::Follower { snapshot, .. } = &mut self.role {
                *snapshot = Some(SnapshotFetch {
                    id: s,
                    size: None,
                    buf: Vec::new(),
                });
            }
            self.follower_fetch_done(0, true);
            return Ok(());
        }
        if let Some(to) = truncation {
            self.truncate_log(to);
            self.follower_fetch_done(0, true);
            return Ok(());
        }
        let got_records = !resp.records.is_empty();
        for e in resp.records {
            self.log.append(e);
        }
        if resp.high_watermark >= 0 {
            self.leader_high_watermark = Some(
                self.leader_high_watermark
                    .map_or(resp.high_watermark, |h| h.max(resp.high_watermark)),
            );
        }
        let hw = resp.high_watermark.min(self.log.end());
        if hw > self.high_watermark {
            self.high_watermark = hw;
        }
        let next = if got_records {
            0
        } else {
            self.cfg.fetch_interval_ms
        };
        self.follower_fetch_done(next, true);
        Ok(())
    }

    fn on_fetch_snapshot(
        &mut self,
        from: NodeId,
        req: FetchSnapshotRequest,
    ) -> Result<(), StepError> {
        if req.replica_id != from || from == self.cfg.node_id || req.epoch < 0 {
            return Err(StepError::Invalid(
                "fetch snapshot replica is not the sender",
            ));
        }
        let mut resp = FetchSnapshotResponse {
            epoch: self.epoch,
            leader_id: self.advertised_leader(),
            error: None,
            snapshot_id: req.snapshot_id,
            size: 0,
            position: req.position,
            bytes: Bytes::new(),
        };
        resp.error = if req.epoch < self.epoch {
            Some(ResponseError::FencedLeaderEpoch)
        } else if req.epoch > self.epoch {
            Some(ResponseError::UnknownLeaderEpoch)
        } else if !matches!(self.role, RoleState::Leader(_)) {
            Some(ResponseError::NotLeader)
        } else {
            match self.log.snapshot() {
                Some(s) if s.id == req.snapshot_id => {
                    let size = s.data.len() as u64;
                    if req.position > size {
                        Some(ResponseError::InvalidRequest)
                    } else {
                        let start = usize::try_from(req.position).unwrap_or(usize::MAX);
                        let end = start
                            .saturating_add(self.cfg.snapshot_chunk_bytes.max(1))
                            .min(s.data.len());
                        resp.size = size;
                        resp.bytes = s.data.slice(start..end);
                        None
                    }
                }
                _ => Some(ResponseError::SnapshotNotFound),
            }
        };
        if resp.error.is_none() {
            let now = self.now_ms;
            if let RoleState::Leader(ls) = &mut self.role {
                if let Some(r) = ls.voters.get_mut(&from) {
                    r.last_fetch_ms = Some(now);
                    r.acked = true;
                }
            }
        }
        self.send(from, Message::FetchSnapshotResponse(resp));
        Ok(())
    }

    fn on_fetch_snapshot_response(
        &mut self,
        from: NodeId,
        resp: FetchSnapshotResponse,
    ) -> Result<(), StepError> {
        if from == self.cfg.node_id || resp.epoch < 0 {
            return Err(StepError::Invalid("malformed fetch snapshot response"));
        }
        if resp.epoch < self.epoch {
            return Err(StepError::Stale(
                "fetch snapshot response from an old epoch",
            ));
        }
        if resp.error.is_some() {
            if self.observe(resp.epoch, resp.leader_id) {
                return Ok(());
            }
            if self.leader_id != Some(from) {
                return Err(StepError::Stale("fetch snapshot error from a non-leader"));
            }
            if let RoleState::Follower { snapshot, .. } = &mut self.role {
                // The leader has a newer snapshot (or none): start over with a plain fetch.
                *snapshot = None;
                self.follower_fetch_done(self.cfg.fetch_interval_ms, false);
                return Ok(());
            }
            return Err(StepError::Stale("fetch snapshot error not expected"));
        }
        if resp.epoch != self.epoch || self.leader_id != Some(from) {
            return Err(StepError::Stale(
                "fetch snapshot response not from the leader",
            ));
        }
        let RoleState::Follower {
            snapshot: Some(sf), ..
        } = &mut self.role
        else {
            return Err(StepError::Stale("no snapshot fetch in progress"));
        };
        let len = resp.bytes.len() as u64;
        if sf.id != resp.snapshot_id
            || resp.position != sf.buf.len() as u64
            || sf.size.is_some_and(|s| s != resp.size)
            || resp.position.saturating_add(len) > resp.size
            || (len == 0 && resp.position < resp.size)
        {
            return Err(StepError::Stale(
                "snapshot chunk does not continue the fetch",
            ));
        }
        sf.size = Some(resp.size);
        sf.buf.extend_from_slice(&resp.bytes);
        let done = sf.buf.len() as u64 == resp.size;
        if done {
            let id = sf.id;
            let data = Bytes::from(std::mem::take(&mut sf.buf));
            if let RoleState::Follower { snapshot, .. } = &mut self.role {
                *snapshot = None;
            }
            if id.end_offset >= self.high_watermark {
                self.install_snapshot(Snapshot { id, data });
            }
        }
        self.follower_fetch_done(0, true);
        Ok(())
    }
}
