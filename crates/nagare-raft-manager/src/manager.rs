//! The driver (Kafka's `KafkaRaftClient` poll loop plus `KafkaRaftManager`'s network side).
//!
//! One task owns the [`RaftNode`]. It ticks it from a clock, steps inbound requests and the
//! answers to its own requests, and for every `Ready`: (1) writes and fsyncs the quorum state,
//! (2) installs a fetched snapshot, truncates or appends the log and fsyncs it, (3) sends the
//! messages — answers to inbound requests go back to their caller, requests go to the peer's
//! connection — and (4) advances. Then every entry below the high watermark that is durable
//! here is delivered to the [`RaftListener`], in order, exactly once.
//!
//! Every `max_record_bytes_between_snapshots` bytes of delivered records the listener's state
//! is written as a snapshot and the log before it deleted (KIP-630).
//!
//! Fetch is long-polled as in Kafka: the leader holds an answer with nothing new up to the
//! request's `max_wait_ms`, and answers at once when its log grows, the high watermark moves
//! or the epoch changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot, watch};

use nagare_raft::{
    EntryPayload, Epoch, Message, NodeId, Offset, PersistedState, QuorumInfo, RaftConfig, RaftNode,
    Role, Snapshot, SnapshotId, StepError, VoterAddress,
};

use crate::log_store::{partition_dir, LogStore};
use crate::quorum_state::QuorumStateStore;
use crate::snapshot::{self, SnapshotStore};
use crate::wire::{self, Outbound, ResponseCtx};
use crate::{
    CommittedEntry, LeaderAndEpoch, ProposeError, RaftListener, RaftManagerConfig,
    RaftManagerError, RaftRequestError,
};

/// How often the core's clock is advanced.
const TICK: Duration = Duration::from_millis(10);
/// Messages queued per peer lane before new ones are dropped (the core resends).
const PEER_QUEUE: usize = 64;
/// The longest a leader holds a fetch, whatever the request asks.
const MAX_FETCH_HOLD_MS: u64 = 5_000;

/// What the rest of the node can observe of the quorum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Status {
    role: Option<Role>,
    leader: LeaderAndEpoch,
    /// Set while this node leads `leader.epoch` and has delivered its own LeaderChange entry
    /// (so everything committed before its epoch is in the listener's state).
    ready_epoch: Option<Epoch>,
    /// End of the delivered prefix (exclusive).
    applied: Offset,
    high_watermark: Offset,
    /// The largest high watermark a leader sent this node (`None` before the first).
    leader_high_watermark: Option<Offset>,
    log_start_offset: Offset,
    log_end_offset: Offset,
    /// The driver has stopped (shutdown, abort or storage failure).
    stopped: bool,
}

type Reply = oneshot::Sender<Result<Bytes, String>>;

enum Event {
    Cmd(Cmd),
    Response(NodeId, Message),
    /// A peer task could not reach its voter (connect or request failed).
    Unreachable(NodeId),
    Tick,
}

/// What a peer task reports: an answer, or `None` when its voter could not be reached.
type PeerReport = (NodeId, Option<Message>);

enum Cmd {
    Inbound {
        req: wire::InboundRequest,
        reply: Reply,
    },
    Propose {
        epoch: Epoch,
        data: Vec<Bytes>,
        done: oneshot::Sender<Result<Offset, ProposeError>>,
    },
    SnapshotNow {
        done: oneshot::Sender<Option<SnapshotId>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

struct Shared {
    config: RaftManagerConfig,
    voter_ids: Vec<NodeId>,
    status: watch::Sender<Status>,
    info: parking_lot::Mutex<QuorumInfo>,
    driver: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The running quorum shell of one node. Cheap to clone (an `Arc` inside); the driver stops
/// on [`RaftManager::shutdown`] or [`RaftManager::abort`], or when every clone is dropped.
#[derive(Clone)]
pub struct RaftManager {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl std::fmt::Debug for RaftManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftManager")
            .field("node_id", &self.shared.config.node_id)
            .field("status", &*self.shared.status.borrow())
            .finish()
    }
}

impl RaftManager {
    /// Loads the quorum state, the newest snapshot (into `listener`, via
    /// [`RaftListener::handle_load_snapshot`]) and the log, and starts the driver task (so it
    /// must be called inside a tokio runtime). A corrupt quorum-state file is refused: guessing
    /// could mean voting twice in an epoch.
    pub fn start(
        config: RaftManagerConfig,
        listener: Arc<dyn RaftListener>,
    ) -> Result<RaftManager, RaftManagerError> {
        if config.voters.is_empty() {
            return Err(RaftManagerError::Config(
                "controller.quorum.voters is empty".into(),
            ));
        }
        let voter_ids: BTreeSet<NodeId> = config.voters.iter().map(|v| v.node_id).collect();
        if voter_ids.len() != config.voters.len() {
            return Err(RaftManagerError::Config(
                "controller.quorum.voters names a node twice".into(),
            ));
        }
        let voter_list: Vec<NodeId> = voter_ids.iter().copied().collect();
        let dir = partition_dir(&config.metadata_log_dir);
        let snaps = SnapshotStore::open(&dir)?;
        // The quorum state first: a corrupt file must stop us before anything else happens.
        let qs = QuorumStateStore::new(&dir, &config.cluster_id, voter_list.clone());
        let quorum = qs.read()?;
        let latest = snaps.latest()?;
        let snapshot_end = latest.as_ref().map_or(0, |(s, _)| s.id.end_offset);
        let store = LogStore::open(&dir, snapshot_end, voter_list.clone())?;
        let entries = store.load_entries(snapshot_end)?;
        if latest.is_none() && store.start_offset() > 0 {
            tracing::warn!(
                log_start = store.start_offset(),
                "the metadata log starts above 0 but there is no snapshot; fetching from the leader"
            );
        }
        let mut applied = 0;
        let mut last_applied_epoch = 0;
        let snapshot = match latest {
            Some((s, records)) => {
                tracing::info!(
                    end_offset = s.id.end_offset,
                    epoch = s.id.epoch,
                    records = records.len(),
                    "loading metadata snapshot"
                );
                listener.handle_load_snapshot(s.id, records);
                applied = s.id.end_offset;
                last_applied_epoch = s.id.epoch;
                Some(s)
            }
            None => None,
        };

        let mut rc = RaftConfig::new(config.node_id, voter_ids.clone());
        rc.election_timeout_ms = config.election_timeout_ms.max(1);
        rc.election_jitter_ms = config.election_backoff_max_ms;
        rc.fetch_timeout_ms = config.fetch_timeout_ms.max(1);
        rc.request_timeout_ms = config.request_timeout_ms.max(1);
        // The leader holds fetches that have nothing new (long poll), so a follower refetches
        // right after an answer; the retry backoff only spaces out refused fetches.
        rc.fetch_interval_ms = config.retry_backoff_ms;
        // One CreateTopics of many partitions is one proposal of as many records (it must
        // commit atomically), and a lagging replica catches up in fewer, larger fetches.
        rc.max_propose_entries = 1_000_000;
        rc.max_fetch_entries = 10_000;
        if voter_ids.len() == 1 && voter_ids.contains(&config.node_id) {
            // A single voter has nobody to wait for: it elects itself at once.
            rc.election_timeout_ms = 1;
            rc.election_jitter_ms = 0;
        }
        tracing::info!(
            node = config.node_id,
            epoch = quorum.epoch,
            voted_for = ?quorum.voted_for,
            leader = ?quorum.leader_id,
            snapshot_end,
            log_end = store.end_offset(),
            voters = ?voter_ids,
            "starting the metadata quorum"
        );
        let node = RaftNode::new(
            rc,
            PersistedState {
                quorum,
                snapshot,
                entries,
            },
            rand::random(),
        );
        let status = Status {
            applied,
            high_watermark: node.high_watermark(),
            log_start_offset: node.log_start_offset(),
            log_end_offset: node.log_end_offset(),
            leader: LeaderAndEpoch {
                leader_id: node.leader_id(),
                epoch: node.epoch(),
            },
            role: Some(node.role()),
            ..Default::default()
        };
        let (status, _) = watch::channel(status);
        let shared = Arc::new(Shared {
            config: config.clone(),
            voter_ids: voter_list,
            status,
            info: parking_lot::Mutex::new(node.quorum_info()),
            driver: parking_lot::Mutex::new(None),
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (resp_tx, resp_rx) = mpsc::unbounded_channel();
        // The leader may hold a fetch this long: well inside the fetch timeout (or the
        // follower would think the leader gone) and the request timeout.
        let fetch_max_wait_ms = config
            .fetch_max_wait_ms
            .min(config.fetch_timeout_ms / 4)
            .min(config.request_timeout_ms / 2);
        let mut peers = HashMap::new();
        for v in &config.voters {
            if v.node_id == config.node_id {
                continue;
            }
            let mut lanes = Vec::new();
            for fetch_lane in [false, true] {
                let (ptx, prx) = mpsc::channel(PEER_QUEUE);
                lanes.push(ptx);
                tokio::spawn(peer_task(PeerTask {
                    peer: v.clone(),
                    node_id: config.node_id,
                    cluster_id: config.cluster_id.clone(),
                    fetch_max_wait_ms,
                    request_timeout: Duration::from_millis(
                        config.request_timeout_ms + if fetch_lane { fetch_max_wait_ms } else { 0 },
                    ),
                    backoff: Duration::from_millis(config.retry_backoff_ms.max(1)),
                    tls: config.tls.clone(),
                    sasl: config.sasl.clone(),
                    rx: prx,
                    out: resp_tx.clone(),
                }));
            }
            let fetch = lanes.pop();
            let control = lanes.pop();
            if let (Some(control), Some(fetch)) = (control, fetch) {
                peers.insert(v.node_id, PeerLanes { control, fetch });
            }
        }
        let now = Instant::now();
        let wall_at_start_ms = crate::log_store::now_ms().max(0) as u64;
        let durable_end = node.log_end_offset();
        let driver = Driver {
            node,
            store,
            snaps,
            qs,
            shared: shared.clone(),
            listener,
            peers,
            applied,
            durable_end,
            last_applied_epoch,
            proposals: Vec::new(),
            bytes_since_snapshot: 0,
            leader_change_offset: None,
            notified_leader: None,
            start: now,
            wall_at_start_ms,
            pending: None,
            parked: Vec::new(),
            failed: None,
            stopping: false,
            _responses_open: resp_tx,
        };
        let handle = tokio::spawn(driver.run(cmd_rx, resp_rx));
        *shared.driver.lock() = Some(handle);
        Ok(RaftManager {
            shared,
            cmd: cmd_tx,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    /// Whether this node is a voter (else an observer).
    pub fn is_voter(&self) -> bool {
        self.shared.config.is_voter()
    }

    /// Answers one quorum RPC from a peer — Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch,
    /// FetchSnapshot or DescribeQuorum at a version in [`crate::SUPPORTED`] — with the encoded
    /// response body (no header: the caller frames it). A Fetch with nothing new is held up
    /// to its `max_wait_ms`. `Err` for an unsupported or undecodable request (Kafka closes
    /// the connection).
    pub async fn handle(
        &self,
        api_key: ApiKey,
        version: i16,
        body: Bytes,
    ) -> Result<Bytes, RaftRequestError> {
        if !wire::supported(api_key, version) {
            return Err(RaftRequestError::Unsupported {
                api: api_key,
                version,
            });
        }
        let voters = &self.shared.voter_ids;
        let decode_err = |reason: String| RaftRequestError::Decode {
            api: api_key,
            version,
            reason,
        };
        if api_key == ApiKey::DescribeQuorum {
            let code = match wire::decode_describe_quorum(version, body).map_err(decode_err)? {
                Ok(_) => 0,
                Err(code) => code,
            };
            let info = self.describe_quorum();
            let is_leader = info.leader_id == Some(self.node_id())
                && self.shared.status.borrow().role == Some(Role::Leader);
            return wire::encode_describe_quorum(
                version,
                &info,
                is_leader,
                code,
                &self.shared.config.voters,
            )
            .map_err(RaftRequestError::Encode);
        }
        let req = match wire::decode_request(api_key, version, body, &self.shared.config.cluster_id)
            .map_err(decode_err)?
        {
            Ok(r) => r,
            Err(refusal) => {
                return wire::encode_response(&refusal.ctx, None, refusal.code, voters)
                    .map_err(RaftRequestError::Encode)
            }
        };
        let ctx = req.ctx.clone();
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Inbound { req, reply }).is_err() {
            return wire::encode_response(
                &ctx,
                None,
                ResponseError::NotLeaderOrFollower.code(),
                voters,
            )
            .map_err(RaftRequestError::Encode);
        }
        let limit = Duration::from_millis(
            self.shared.config.request_timeout_ms + ctx.max_wait_ms.min(MAX_FETCH_HOLD_MS),
        );
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(b))) => Ok(b),
            Ok(Ok(Err(e))) => Err(RaftRequestError::Encode(e)),
            // The driver stopped with the request pending.
            Ok(Err(_)) => wire::encode_response(
                &ctx,
                None,
                ResponseError::NotLeaderOrFollower.code(),
                voters,
            )
            .map_err(RaftRequestError::Encode),
            Err(_) => {
                wire::encode_response(&ctx, None, ResponseError::RequestTimedOut.code(), voters)
                    .map_err(RaftRequestError::Encode)
            }
        }
    }

    /// Leader, epoch, high watermark and replica progress (DescribeQuorum, KIP-595); the
    /// timestamps are wall-clock milliseconds. Only the leader knows the other replicas.
    pub fn describe_quorum(&self) -> QuorumInfo {
        self.shared.info.lock().clone()
    }

    /// The leader and epoch as this node knows them.
    pub fn leader(&self) -> LeaderAndEpoch {
        self.shared.status.borrow().leader
    }

    /// This node's role in the quorum.
    pub fn role(&self) -> Option<Role> {
        self.shared.status.borrow().role
    }

    /// `Some(epoch)` while this node leads `epoch` and its listener has every record committed
    /// before the epoch (its own LeaderChange entry is delivered) — only then may a new
    /// controller decide on its state.
    pub fn ready_epoch(&self) -> Option<Epoch> {
        self.shared.status.borrow().ready_epoch
    }

    /// Waits until [`RaftManager::ready_epoch`] is set, at most `timeout`. `None` when it
    /// times out, when another node is (or becomes) the leader, or when the driver stops.
    pub async fn wait_ready_epoch(&self, timeout: Duration) -> Option<Epoch> {
        let mut rx = self.shared.status.subscribe();
        let me = self.node_id();
        tokio::time::timeout(timeout, async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if let Some(e) = s.ready_epoch {
                        return Some(e);
                    }
                    if s.stopped || s.leader.leader_id.is_some_and(|l| l != me) {
                        return None;
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Waits until some leader is known and this node has delivered everything up to the high
    /// watermark learned from it (a broker must not serve from a partial image), at most
    /// `timeout`.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.status.subscribe();
        let me = self.node_id();
        // Caught up: as the leader, once its own LeaderChange entry is delivered (everything
        // committed before its epoch is applied); otherwise once the delivered prefix reaches
        // the leader's high watermark. Our own high watermark is capped by our log end, so a
        // node that has fetched only part of the log would look caught up by it.
        let done = |s: &Status| match s.leader.leader_id {
            None => false,
            Some(l) if l == me => s.ready_epoch.is_some() && s.applied >= s.high_watermark,
            Some(_) => s.leader_high_watermark.is_some_and(|hw| s.applied >= hw),
        };
        tokio::time::timeout(timeout, async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if done(&s) {
                        return true;
                    }
                    if s.stopped {
                        return false;
                    }
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// The high watermark as this node knows it.
    pub fn high_watermark(&self) -> Offset {
        self.shared.status.borrow().high_watermark
    }

    /// End (exclusive) of the prefix delivered to the listener.
    pub fn applied_offset(&self) -> Offset {
        self.shared.status.borrow().applied
    }

    /// The first offset of the log (the newest snapshot's end offset, or 0).
    pub fn log_start_offset(&self) -> Offset {
        self.shared.status.borrow().log_start_offset
    }

    /// The log end offset.
    pub fn log_end_offset(&self) -> Offset {
        self.shared.status.borrow().log_end_offset
    }

    /// Whether the driver has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.status.borrow().stopped
    }

    /// Appends `records` as one proposal if this node leads `epoch`. Resolves with the offset
    /// of the last record once they are committed and delivered to the listener (so the
    /// caller's next read of its state includes them); fails when this node does not lead
    /// `epoch` or loses leadership before the records commit (the caller answers
    /// NOT_CONTROLLER / retries).
    pub async fn propose(&self, epoch: Epoch, records: Vec<Bytes>) -> Result<Offset, ProposeError> {
        let (done, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Propose {
                epoch,
                data: records,
                done,
            })
            .map_err(|_| ProposeError::ShutDown)?;
        rx.await.map_err(|_| ProposeError::ShutDown)?
    }

    /// Writes a snapshot of everything delivered so far now (tests, operators); `None` when
    /// there is nothing newer than the current snapshot.
    pub async fn snapshot_now(&self) -> Option<SnapshotId> {
        let (done, rx) = oneshot::channel();
        self.cmd.send(Cmd::SnapshotNow { done }).ok()?;
        rx.await.ok().flatten()
    }

    /// Resigns if leading (EndQuorumEpoch, so the others elect at once), flushes the log and
    /// stops the driver.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Shutdown { done }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        let handle = self.shared.driver.lock().take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }

    /// Stops the driver at once, like a crash: no resignation, nothing written beyond what
    /// is already durable. For tests of failover and recovery.
    pub async fn abort(&self) {
        let handle = self.shared.driver.lock().take();
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
        self.shared.status.send_modify(|s| s.stopped = true);
    }
}

struct Proposal {
    last: Offset,
    epoch: Epoch,
    done: oneshot::Sender<Result<Offset, ProposeError>>,
}

/// The inbound request whose answer the core is producing.
struct PendingReply {
    from: NodeId,
    ctx: ResponseCtx,
    request: Message,
    reply: Reply,
    /// Whether an empty Fetch answer may be held (false when re-answering a held fetch).
    may_hold: bool,
}

/// A Fetch held by the leader until something changes or its wait ends (long poll).
struct HeldFetch {
    from: NodeId,
    ctx: ResponseCtx,
    request: Message,
    reply: Reply,
    deadline: Instant,
    end: Offset,
    hw: Offset,
    epoch: Epoch,
}

struct PeerLanes {
    /// Vote, BeginQuorumEpoch, EndQuorumEpoch.
    control: mpsc::Sender<Message>,
    /// Fetch and FetchSnapshot, which the leader may hold: on their own connection so they
    /// never delay an election message.
    fetch: mpsc::Sender<Message>,
}

struct Driver {
    node: RaftNode,
    store: LogStore,
    snaps: SnapshotStore,
    qs: QuorumStateStore,
    shared: Arc<Shared>,
    listener: Arc<dyn RaftListener>,
    peers: HashMap<NodeId, PeerLanes>,
    /// End of the delivered prefix (exclusive).
    applied: Offset,
    /// End of the fsynced log.
    durable_end: Offset,
    last_applied_epoch: Epoch,
    proposals: Vec<Proposal>,
    bytes_since_snapshot: u64,
    /// (epoch, offset) of this node's LeaderChange entry while it leads that epoch.
    leader_change_offset: Option<(Epoch, Offset)>,
    notified_leader: Option<LeaderAndEpoch>,
    start: Instant,
    wall_at_start_ms: u64,
    pending: Option<PendingReply>,
    parked: Vec<HeldFetch>,
    /// A storage failure seen while answering a request; the loop stops on it.
    failed: Option<RaftManagerError>,
    /// Shutting down: the core's timers no longer run.
    stopping: bool,
    /// Keeps the response channel open when there are no peers (a single voter), so that
    /// receiving from it waits instead of returning `None` in a loop.
    _responses_open: mpsc::UnboundedSender<PeerReport>,
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut responses: mpsc::UnboundedReceiver<PeerReport>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The first tick starts the core's timers (a single voter elects itself on it).
        self.node.tick(self.now_ms());
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = loop {
            let event = tokio::select! {
                c = cmds.recv() => match c {
                    Some(c) => Event::Cmd(c),
                    // Every handle is gone: stop without resigning (like a crash).
                    None => break Ok(()),
                },
                r = responses.recv() => match r {
                    Some((from, Some(msg))) => Event::Response(from, msg),
                    Some((from, None)) => Event::Unreachable(from),
                    None => Event::Tick,
                },
                _ = tick.tick() => Event::Tick,
            };
            // Stepping, fsyncing and the listener's callbacks are synchronous work: on a
            // multi-threaded runtime they run in `block_in_place`, so other tasks move off
            // this worker meanwhile. A tick with nothing to do stays inline.
            let heavy = !matches!(event, Event::Tick) || self.stopping || {
                self.node.tick(self.now_ms());
                self.node.has_ready() || !self.parked.is_empty()
            };
            let outcome = if heavy && multi_thread {
                tokio::task::block_in_place(|| self.process(event, &mut shutdown))
            } else {
                self.process(event, &mut shutdown)
            };
            if let Err(e) = outcome {
                break Err(e);
            }
            if let Some(done) = shutdown.take() {
                // Let the peer tasks deliver EndQuorumEpoch before the process goes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.release_held_fetches(true);
                let _ = self.store.flush();
                let _ = self.store.close();
                self.stop();
                let _ = done.send(());
                return;
            }
        };
        if let Err(e) = result {
            // The log or the quorum state cannot be written: going on could break the
            // quorum's guarantees, so this node leaves the quorum (Kafka halts the process).
            tracing::error!(error = %e, "metadata quorum storage failed; leaving the quorum");
        } else {
            let _ = self.store.flush();
            let _ = self.store.close();
        }
        self.stop();
    }

    /// Handles one event, then ticks, persists and sends what the core produced, and
    /// answers held fetches that are due.
    fn process(
        &mut self,
        event: Event,
        shutdown: &mut Option<oneshot::Sender<()>>,
    ) -> Result<(), RaftManagerError> {
        match event {
            Event::Cmd(c) => self.command(c, shutdown),
            // An observer whose leader is gone asks the other voters at once (KIP-595).
            Event::Unreachable(from) => self.node.peer_unreachable(from),
            Event::Response(from, msg) => {
                if let Err(e) = self.node.step(from, msg) {
                    tracing::trace!(from, error = %e, "quorum response ignored");
                }
            }
            Event::Tick => {}
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if !self.stopping {
            // Not after a resignation on shutdown: the timers could start a new election
            // (at once for a single voter) in an epoch this node would then abandon.
            let now = self.now_ms();
            self.node.tick(now);
        }
        self.drain()?;
        self.release_held_fetches(false);
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.publish();
        Ok(())
    }

    fn stop(&mut self) {
        for p in self.proposals.drain(..) {
            let _ = p.done.send(Err(ProposeError::ShutDown));
        }
        self.parked.clear();
        self.pending = None;
        self.shared.status.send_modify(|s| {
            s.stopped = true;
            s.ready_epoch = None;
        });
    }

    fn command(&mut self, cmd: Cmd, shutdown: &mut Option<oneshot::Sender<()>>) {
        match cmd {
            Cmd::Inbound { req, reply } => {
                let held_same = self
                    .parked
                    .iter()
                    .position(|h| h.from == req.from && h.ctx.key == req.ctx.key);
                if let Some(i) = held_same {
                    // A newer fetch from the same replica replaces the held one; answer
                    // the old one now (the replica has given up on it).
                    let h = self.parked.swap_remove(i);
                    self.restep(h.from, h.ctx, h.request, h.reply);
                }
                self.step_inbound(req.from, req.ctx, req.message, reply, true);
            }
            Cmd::Propose { epoch, data, done } => {
                let leader = LeaderAndEpoch {
                    leader_id: self.node.leader_id(),
                    epoch: self.node.epoch(),
                };
                if self.node.role() != Role::Leader || self.node.epoch() != epoch {
                    let _ = done.send(Err(ProposeError::NotLeader {
                        requested: epoch,
                        leader,
                    }));
                    return;
                }
                match self.node.propose(data) {
                    Ok(range) => self.proposals.push(Proposal {
                        last: range.end - 1,
                        epoch,
                        done,
                    }),
                    Err(nagare_raft::ProposeError::NotLeader {
                        leader_id,
                        epoch: e,
                    }) => {
                        let _ = done.send(Err(ProposeError::NotLeader {
                            requested: epoch,
                            leader: LeaderAndEpoch {
                                leader_id,
                                epoch: e,
                            },
                        }));
                    }
                    Err(e) => {
                        let _ = done.send(Err(ProposeError::Invalid(e.to_string())));
                    }
                }
            }
            Cmd::SnapshotNow { done } => {
                let r = match self.take_snapshot() {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(error = %e, "metadata snapshot failed");
                        None
                    }
                };
                let _ = done.send(r);
            }
            Cmd::Shutdown { done } => {
                self.stopping = true;
                if self.node.resign().is_ok() {
                    tracing::info!("resigning as metadata quorum leader (EndQuorumEpoch)");
                }
                *shutdown = Some(done);
            }
        }
    }

    /// Steps an inbound request and answers it with whatever the core says (or holds an
    /// empty Fetch answer when `may_hold`).
    fn step_inbound(
        &mut self,
        from: NodeId,
        ctx: ResponseCtx,
        request: Message,
        reply: Reply,
        may_hold: bool,
    ) {
        if !self.stopping {
            let now = self.now_ms();
            self.node.tick(now);
        }
        match self.node.step(from, request.clone()) {
            Ok(()) => {
                self.pending = Some(PendingReply {
                    from,
                    ctx,
                    request,
                    reply,
                    may_hold,
                })
            }
            Err(e) => {
                let code = match e {
                    StepError::Invalid(_) => ResponseError::InvalidRequest.code(),
                    StepError::Stale(_) => ResponseError::FencedLeaderEpoch.code(),
                };
                tracing::debug!(from, error = %e, "quorum request refused");
                let _ = reply.send(wire::encode_response(
                    &ctx,
                    None,
                    code,
                    &self.shared.voter_ids,
                ));
                return;
            }
        }
        if let Err(e) = self.drain() {
            // The loop stops on it.
            self.failed.get_or_insert(e);
        }
        if let Some(p) = self.pending.take() {
            // The core had nothing to say to this request (e.g. this node is not the leader
            // and knows none).
            let _ = p.reply.send(wire::encode_response(
                &p.ctx,
                None,
                ResponseError::NotLeaderOrFollower.code(),
                &self.shared.voter_ids,
            ));
        }
    }

    fn restep(&mut self, from: NodeId, ctx: ResponseCtx, request: Message, reply: Reply) {
        self.step_inbound(from, ctx, request, reply, false);
    }

    /// Answers held fetches whose wait is over or for which something changed (new entries,
    /// a new high watermark, another epoch or role); all of them when `all`.
    fn release_held_fetches(&mut self, all: bool) {
        if self.parked.is_empty() {
            return;
        }
        let now = Instant::now();
        let end = self.node.log_end_offset();
        let hw = self.node.high_watermark();
        let epoch = self.node.epoch();
        let leading = self.node.role() == Role::Leader;
        let (due, keep): (Vec<HeldFetch>, Vec<HeldFetch>) =
            std::mem::take(&mut self.parked).into_iter().partition(|h| {
                all || !leading
                    || now >= h.deadline
                    || h.end != end
                    || h.hw != hw
                    || h.epoch != epoch
            });
        self.parked = keep;
        for h in due {
            self.restep(h.from, h.ctx, h.request, h.reply);
        }
    }

    fn drain(&mut self) -> Result<(), RaftManagerError> {
        while let Some(ready) = self.node.ready() {
            // (1) The vote and epoch are durable before any message of this batch leaves.
            if let Some(q) = &ready.quorum_state {
                self.qs.write(q)?;
            }
            // (2) The log.
            if let Some(snap) = &ready.snapshot_to_install {
                self.install_snapshot(snap)?;
            }
            if let Some(t) = ready.truncate_to {
                self.store.truncate_to(t)?;
                self.durable_end = self.durable_end.min(t);
            }
            if !ready.entries.is_empty() {
                let me = self.shared.config.node_id;
                for e in &ready.entries {
                    if let EntryPayload::LeaderChange { leader_id } = e.payload {
                        if leader_id == me
                            && self.node.role() == Role::Leader
                            && e.epoch == self.node.epoch()
                        {
                            self.leader_change_offset = Some((e.epoch, e.offset));
                        }
                    }
                }
                self.store.append(&ready.entries)?;
                self.store.flush()?;
            }
            self.durable_end = self.store.end_offset();
            // (3) Messages.
            for (to, msg) in ready.messages {
                self.route(to, msg);
            }
            // (4) Advance.
            if let Err(e) = self.node.advance(ready.id) {
                tracing::error!(error = %e, "cannot advance the quorum core");
            }
            if let Some(rc) = ready.role {
                if rc.role != Role::Leader {
                    self.leader_change_offset = None;
                }
                tracing::info!(
                    node = self.shared.config.node_id,
                    role = ?rc.role,
                    epoch = rc.epoch,
                    leader = ?rc.leader_id,
                    "metadata quorum state changed"
                );
            }
            self.fail_lost_proposals();
            self.deliver_committed()?;
        }
        // Advancing can move the high watermark without a new Ready.
        self.deliver_committed()?;
        self.notify_leader_change();
        self.update_status();
        Ok(())
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), RaftManagerError> {
        let records = snapshot::decode(&snap.data)?;
        self.snaps.write(snap)?;
        self.store.restart_at(snap.id.end_offset)?;
        self.snaps.delete_older_than(snap.id)?;
        tracing::info!(
            end_offset = snap.id.end_offset,
            epoch = snap.id.epoch,
            records = records.len(),
            "installing metadata snapshot fetched from the leader"
        );
        self.listener.handle_load_snapshot(snap.id, records);
        self.applied = snap.id.end_offset;
        self.last_applied_epoch = snap.id.epoch;
        self.durable_end = snap.id.end_offset;
        self.bytes_since_snapshot = 0;
        Ok(())
    }

    fn route(&mut self, to: NodeId, msg: Message) {
        let answers_pending = self
            .pending
            .as_ref()
            .is_some_and(|p| p.from == to && wire::answers(p.ctx.key, &msg));
        if answers_pending {
            if let Some(p) = self.pending.take() {
                let hold_ms = p.ctx.max_wait_ms.min(MAX_FETCH_HOLD_MS);
                if p.may_hold
                    && hold_ms > 0
                    && p.ctx.key == ApiKey::Fetch
                    && self.node.role() == Role::Leader
                    && wire::fetch_is_empty(&msg)
                {
                    self.parked.push(HeldFetch {
                        from: p.from,
                        ctx: p.ctx,
                        request: p.request,
                        reply: p.reply,
                        deadline: Instant::now() + Duration::from_millis(hold_ms),
                        end: self.node.log_end_offset(),
                        hw: self.node.high_watermark(),
                        epoch: self.node.epoch(),
                    });
                    return;
                }
                let _ = p.reply.send(wire::encode_response(
                    &p.ctx,
                    Some(&msg),
                    0,
                    &self.shared.voter_ids,
                ));
            }
            return;
        }
        let lane = match &msg {
            Message::VoteRequest(_)
            | Message::BeginQuorumEpochRequest(_)
            | Message::EndQuorumEpochRequest(_) => false,
            Message::FetchRequest(_) | Message::FetchSnapshotRequest(_) => true,
            // An answer whose request is gone (the requester timed out): drop it.
            _ => return,
        };
        if let Some(p) = self.peers.get(&to) {
            let q = if lane { &p.fetch } else { &p.control };
            // A full queue means the peer is slow or down; the core resends on its timers.
            let _ = q.try_send(msg);
        }
    }

    /// Delivers every committed, locally durable entry not yet delivered.
    fn deliver_committed(&mut self) -> Result<(), RaftManagerError> {
        let limit = self.node.high_watermark().min(self.durable_end);
        if self.applied >= limit {
            return Ok(());
        }
        let mut batch: Vec<CommittedEntry> = Vec::new();
        let mut o = self.applied.max(self.node.log_start_offset());
        while o < limit {
            let Some(e) = self.node.entry(o) else { break };
            self.last_applied_epoch = e.epoch;
            if let EntryPayload::Data(d) = &e.payload {
                self.bytes_since_snapshot += d.len() as u64;
                batch.push(CommittedEntry {
                    offset: o,
                    epoch: e.epoch,
                    data: d.clone(),
                });
            }
            o += 1;
        }
        if !batch.is_empty() {
            self.listener.handle_commit(&batch);
        }
        self.applied = o;
        let applied = self.applied;
        // Published before the proposals resolve, so a caller sees its own commit.
        self.update_status();
        let (done, still): (Vec<Proposal>, Vec<Proposal>) = std::mem::take(&mut self.proposals)
            .into_iter()
            .partition(|p| p.last < applied);
        self.proposals = still;
        for p in done {
            let _ = p.done.send(Ok(p.last));
        }
        if self.bytes_since_snapshot >= self.shared.config.max_record_bytes_between_snapshots {
            self.take_snapshot()?;
        }
        Ok(())
    }

    /// Snapshots the listener's state at the delivered offset (KIP-630), then deletes older
    /// snapshots and the log below it.
    fn take_snapshot(&mut self) -> Result<Option<SnapshotId>, RaftManagerError> {
        let end = self.applied;
        if end <= 0
            || end <= self.node.log_start_offset()
            || self
                .node
                .latest_snapshot()
                .is_some_and(|s| s.id.end_offset >= end)
        {
            return Ok(None);
        }
        let id = SnapshotId {
            end_offset: end,
            epoch: self
                .node
                .entry(end - 1)
                .map_or(self.last_applied_epoch, |e| e.epoch),
        };
        let records = self.listener.snapshot_records();
        let data = snapshot::encode(id, &records)?;
        let snapshot = Snapshot { id, data };
        self.snaps.write(&snapshot)?;
        match self.node.snapshot_taken(snapshot) {
            Ok(()) => {
                self.store.delete_before(id.end_offset)?;
                self.snaps.delete_older_than(id)?;
                self.bytes_since_snapshot = 0;
                tracing::info!(
                    end_offset = id.end_offset,
                    epoch = id.epoch,
                    records = records.len(),
                    "wrote metadata snapshot"
                );
                self.update_status();
                Ok(Some(id))
            }
            Err(e) => {
                tracing::warn!(error = %e, "metadata snapshot not taken");
                let _ = std::fs::remove_file(self.snaps.path(id));
                Ok(None)
            }
        }
    }

    fn fail_lost_proposals(&mut self) {
        let leading = (self.node.role() == Role::Leader).then(|| self.node.epoch());
        let (keep, lost): (Vec<Proposal>, Vec<Proposal>) = std::mem::take(&mut self.proposals)
            .into_iter()
            .partition(|p| leading == Some(p.epoch));
        self.proposals = keep;
        if !lost.is_empty() {
            // Publish the lost leadership first: a caller told "leadership lost" must not
            // still see this node's ready epoch.
            self.update_status();
        }
        for p in lost {
            let _ = p.done.send(Err(ProposeError::LeadershipLost(p.epoch)));
        }
    }

    fn ready_epoch(&self) -> Option<Epoch> {
        match self.leader_change_offset {
            Some((e, off))
                if self.node.role() == Role::Leader
                    && self.node.epoch() == e
                    && self.applied > off =>
            {
                Some(e)
            }
            _ => None,
        }
    }

    /// Tells the listener about a new leader or epoch. As in Kafka, a node that leads hears
    /// of it only once its listener has caught up with the epoch's start (its own
    /// LeaderChange entry is delivered).
    fn notify_leader_change(&mut self) {
        let current = LeaderAndEpoch {
            leader_id: self.node.leader_id(),
            epoch: self.node.epoch(),
        };
        if self.notified_leader == Some(current) {
            return;
        }
        if current.leader_id == Some(self.shared.config.node_id) && self.ready_epoch().is_none() {
            return;
        }
        self.notified_leader = Some(current);
        self.listener.handle_leader_change(current);
    }

    fn update_status(&mut self) {
        let ready_epoch = self.ready_epoch();
        let leader = LeaderAndEpoch {
            leader_id: self.node.leader_id(),
            epoch: self.node.epoch(),
        };
        let next = Status {
            role: Some(self.node.role()),
            leader,
            ready_epoch,
            applied: self.applied,
            high_watermark: self.node.high_watermark(),
            leader_high_watermark: self.node.leader_high_watermark(),
            log_start_offset: self.node.log_start_offset(),
            log_end_offset: self.node.log_end_offset(),
            stopped: false,
        };
        self.shared.status.send_if_modified(|s| {
            if *s == next {
                return false;
            }
            *s = next.clone();
            true
        });
    }

    fn publish(&self) {
        let mut info = self.node.quorum_info();
        // The core's clock starts at 0; DescribeQuorum reports wall-clock milliseconds.
        let wall = |t: Option<u64>| t.map(|t| t + self.wall_at_start_ms);
        for r in info.voters.iter_mut().chain(info.observers.iter_mut()) {
            r.last_fetch_ms = wall(r.last_fetch_ms);
            r.last_caught_up_ms = wall(r.last_caught_up_ms);
        }
        *self.shared.info.lock() = info;
    }
}

struct PeerTask {
    peer: VoterAddress,
    node_id: NodeId,
    cluster_id: String,
    fetch_max_wait_ms: u64,
    request_timeout: Duration,
    backoff: Duration,
    tls: Option<nagare_client::TlsOptions>,
    sasl: Option<nagare_client::SaslCredentials>,
    rx: mpsc::Receiver<Message>,
    out: mpsc::UnboundedSender<PeerReport>,
}

/// Sends the core's requests to one voter (one connection per lane) and feeds the answers
/// back; a down peer only loses its own messages (the core retries on its timers), and the
/// task ends with the driver.
async fn peer_task(mut t: PeerTask) {
    let host = if t.peer.host.contains(':') {
        format!("[{}]", t.peer.host)
    } else {
        t.peer.host.clone()
    };
    let addr = format!("{host}:{}", t.peer.port);
    let client_id = format!("nagare-raft-{}", t.node_id);
    let mut conn: Option<nagare_client::Connection> = None;
    let mut down_until: Option<Instant> = None;
    while let Some(msg) = t.rx.recv().await {
        if down_until.is_some_and(|d| Instant::now() < d) {
            // Still down: say so, so an observer does not wait for its fetch timeout.
            if t.out.send((t.peer.node_id, None)).is_err() {
                return;
            }
            continue;
        }
        let Some(out) =
            wire::build_request(&msg, t.peer.node_id, &t.cluster_id, t.fetch_max_wait_ms)
        else {
            continue;
        };
        if conn.as_ref().is_none_or(|c| c.is_broken()) {
            let opts = nagare_client::ConnectionOptions {
                connect_timeout: t.request_timeout.min(Duration::from_secs(1)),
                request_timeout: t.request_timeout,
                tls: t.tls.clone(),
                sasl: t.sasl.clone(),
                ..Default::default()
            };
            match nagare_client::Connection::connect_with(&addr, &client_id, opts).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(peer = t.peer.node_id, error = %e, "cannot reach quorum peer");
                    down_until = Some(Instant::now() + t.backoff);
                    if t.out.send((t.peer.node_id, None)).is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let answer = match (&out, &msg) {
            (Outbound::Vote(r), Message::VoteRequest(sent)) => c
                .send_version(r, wire::VOTE_VERSION)
                .await
                .map(|resp| wire::vote_response(&resp, sent)),
            (Outbound::Begin(r), _) => c
                .send_version(r, wire::BEGIN_VERSION)
                .await
                .map(|resp| wire::begin_response(&resp)),
            (Outbound::End(r), _) => c
                .send_version(r, wire::END_VERSION)
                .await
                .map(|resp| wire::end_response(&resp)),
            (Outbound::Fetch(r), Message::FetchRequest(sent)) => c
                .send_version(r, wire::FETCH_VERSION)
                .await
                .map(|resp| wire::fetch_response(&resp, sent)),
            (Outbound::FetchSnapshot(r), _) => c
                .send_version(r, wire::FETCH_SNAPSHOT_VERSION)
                .await
                .map(|resp| wire::fetch_snapshot_response(&resp)),
            _ => continue,
        };
        match answer {
            Ok(Some(m)) => {
                if t.out.send((t.peer.node_id, Some(m))).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(peer = t.peer.node_id, error = %e, "quorum request failed");
                conn = None;
                down_until = Some(Instant::now() + t.backoff);
                if t.out.send((t.peer.node_id, None)).is_err() {
                    return;
                }
            }
        }
    }
}
