//! The KRaft shell (Kafka's `KafkaRaftManager`/`KafkaRaftClient` I/O side): drives the pure
//! [`nagare_raft::RaftNode`] with a clock, persists what it hands out, moves its messages over
//! the network as Kafka RPCs, applies committed metadata records to the node's
//! [`MetadataPublisher`] and takes snapshots.
//!
//! One task owns the node. For each `Ready` it (1) writes and fsyncs the quorum state, (2)
//! installs a fetched snapshot, truncates or appends and fsyncs the log, (3) sends the messages
//! — answers to inbound requests go back on their connection, requests go to the peer's
//! `CONTROLLER` listener — and (4) advances; then every entry below the high watermark is
//! applied, in order, exactly once. Every `metadata.log.max.record.bytes.between.snapshots`
//! bytes of applied records the image is written as a snapshot and the log before it deleted.

mod log_store;
mod quorum_state;
mod wire;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::sync::{mpsc, oneshot, watch};

use nagare_controller::shell::{BoxFuture, Quorum};
use nagare_metadata::MetadataPublisher;
use nagare_raft::{
    EntryPayload, Message, NodeId, PersistedState, QuorumInfo, RaftConfig, RaftNode, Role,
    Snapshot, SnapshotId, VoterAddress,
};

pub use log_store::{LogStoreError, METADATA_TOPIC};
pub use quorum_state::QuorumStateError;
pub use wire::SUPPORTED;

use crate::quorum::NodeQuorum;
use log_store::LogStore;
use quorum_state::QuorumStateStore;
use wire::{InboundRequest, Outbound};

/// How the shell is set up (Kafka's `controller.quorum.*` settings).
#[derive(Debug, Clone)]
pub struct RaftManagerConfig {
    /// `node.id`.
    pub node_id: NodeId,
    /// The cluster id from `meta.properties`; every RPC carries it.
    pub cluster_id: String,
    /// `controller.quorum.voters`; a node not among them is an observer.
    pub voters: Vec<VoterAddress>,
    /// `metadata.log.dir`: `__cluster_metadata-0` lives under it.
    pub metadata_dir: PathBuf,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout_ms: u64,
    /// `controller.quorum.election.backoff.max.ms`.
    pub election_backoff_max_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`.
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms`.
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms`.
    pub retry_backoff_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`.
    pub max_record_bytes_between_snapshots: u64,
}

/// Errors starting the shell.
#[derive(Debug, thiserror::Error)]
pub enum RaftManagerError {
    /// The quorum state file could not be used.
    #[error(transparent)]
    QuorumState(#[from] QuorumStateError),
    /// The metadata log or a snapshot could not be used.
    #[error(transparent)]
    Log(#[from] LogStoreError),
}

/// What the rest of the node can observe of the quorum.
#[derive(Debug, Clone, Default)]
struct Status {
    role: Option<Role>,
    epoch: i32,
    leader_id: Option<NodeId>,
    /// Set while this node leads `epoch` and has applied its own LeaderChange entry.
    ready_epoch: Option<i32>,
    /// End of the applied prefix (exclusive).
    applied: i64,
    /// The high watermark as last learned.
    high_watermark: i64,
    /// Whether a high watermark has been learned from a leader (or as leader) since start.
    hw_known: bool,
}

enum Cmd {
    Inbound {
        req: InboundRequest,
        reply: oneshot::Sender<Bytes>,
    },
    Response {
        from: NodeId,
        msg: Message,
    },
    Propose {
        epoch: i32,
        data: Vec<Bytes>,
        done: oneshot::Sender<Result<i64, String>>,
    },
    SnapshotNow,
    /// The applier published everything below `end`.
    Applied {
        end: i64,
    },
    /// The applier captured the image at `id` for a snapshot.
    SnapshotReady {
        id: SnapshotId,
        records: Vec<Bytes>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

struct Shared {
    node_id: NodeId,
    cluster_id: String,
    status: watch::Sender<Status>,
    info: parking_lot::Mutex<QuorumInfo>,
}

/// The running shell. Cheap to clone.
#[derive(Clone)]
pub struct RaftManager {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl RaftManager {
    /// Loads the quorum state, the newest snapshot (into `publisher`) and the log, and starts
    /// the driver task.
    pub fn start(
        cfg: RaftManagerConfig,
        publisher: Arc<MetadataPublisher>,
    ) -> Result<RaftManager, RaftManagerError> {
        let store = LogStore::open(&cfg.metadata_dir)?;
        let voter_ids: BTreeSet<NodeId> = cfg.voters.iter().map(|v| v.node_id).collect();
        let qs = QuorumStateStore::new(
            store.dir(),
            &cfg.cluster_id,
            voter_ids.iter().copied().collect(),
        );
        let quorum = qs.read()?;
        let snapshot = store.latest_snapshot()?;
        let from = snapshot.as_ref().map(|s| s.id.end_offset).unwrap_or(0);
        let entries = store.load_entries(from)?;
        let mut applied = store.start_offset().min(from);
        if let Some(s) = &snapshot {
            let records = log_store::decode_snapshot_records(&s.data)?;
            publisher.load_snapshot(s.id.end_offset - 1, &records);
            applied = s.id.end_offset;
            tracing::info!(
                end_offset = s.id.end_offset,
                epoch = s.id.epoch,
                records = records.len(),
                "loaded metadata snapshot"
            );
        }
        let mut rc = RaftConfig::new(cfg.node_id, voter_ids.clone());
        rc.election_timeout_ms = cfg.election_timeout_ms;
        rc.election_jitter_ms = cfg.election_backoff_max_ms;
        rc.fetch_timeout_ms = cfg.fetch_timeout_ms;
        rc.request_timeout_ms = cfg.request_timeout_ms;
        // One CreateTopics of many partitions is one proposal of as many records.
        rc.max_propose_entries = 1_000_000;
        rc.max_fetch_entries = 10_000;
        if voter_ids.len() == 1 && voter_ids.contains(&cfg.node_id) {
            // A single voter has nobody to wait for: elect at once (Kafka does the same).
            rc.election_timeout_ms = 1;
            rc.election_jitter_ms = 0;
        }
        let log_end = store.end_offset();
        tracing::info!(
            node = cfg.node_id,
            epoch = quorum.epoch,
            log_start = applied,
            log_end,
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
        let (status, _) = watch::channel(Status {
            applied,
            ..Default::default()
        });
        let shared = Arc::new(Shared {
            node_id: cfg.node_id,
            cluster_id: cfg.cluster_id.clone(),
            status,
            info: parking_lot::Mutex::new(node.quorum_info()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let mut peers = HashMap::new();
        for v in &cfg.voters {
            if v.node_id == cfg.node_id {
                continue;
            }
            let (ptx, prx) = mpsc::channel(64);
            peers.insert(v.node_id, ptx);
            tokio::spawn(peer_task(
                v.clone(),
                cfg.node_id,
                cfg.cluster_id.clone(),
                Duration::from_millis(cfg.request_timeout_ms),
                Duration::from_millis(cfg.retry_backoff_ms.max(10)),
                prx,
                tx.clone(),
            ));
        }
        let (apply_tx, apply_rx) = std::sync::mpsc::channel();
        {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("metadata-applier".into())
                .spawn(move || applier(publisher, apply_rx, tx))
                .map_err(|e| {
                    RaftManagerError::Log(LogStoreError::Io {
                        path: cfg.metadata_dir.clone(),
                        source: e,
                    })
                })?;
        }
        let driver = Driver {
            node,
            store,
            qs,
            shared: shared.clone(),
            apply: apply_tx,
            peers,
            applied,
            published: applied,
            snapshot_pending: false,
            last_applied_epoch: 0,
            proposals: Vec::new(),
            bytes_since_snapshot: 0,
            max_bytes_between_snapshots: cfg.max_record_bytes_between_snapshots.max(1),
            leader_change_offset: None,
            start: Instant::now(),
            wall_at_start_ms: crate::replica_manager::now_ms() as u64,
            pending_reply: None,
        };
        tokio::spawn(driver.run(rx));
        Ok(RaftManager { shared, cmd: tx })
    }

    /// Answers one quorum RPC from a peer (Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch,
    /// FetchSnapshot) with the encoded response body. `Err` for an undecodable request.
    pub async fn handle(&self, key: ApiKey, version: i16, body: Bytes) -> Result<Bytes, String> {
        let req = match wire::decode_request(key, version, body, &self.shared.cluster_id)? {
            Ok(r) => r,
            Err(refusal) => return wire::encode_response(&refusal.ctx, None, refusal.code),
        };
        let ctx = req.ctx.clone();
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Inbound { req, reply }).is_err() {
            return wire::encode_response(&ctx, None, 6);
        }
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(b)) => Ok(b),
            _ => wire::encode_response(&ctx, None, 7), // REQUEST_TIMED_OUT
        }
    }

    /// The leader as this node knows it.
    pub fn leader(&self) -> (Option<NodeId>, i32) {
        let s = self.shared.status.borrow();
        (s.leader_id, s.epoch)
    }

    /// Waits until this node has applied the metadata log up to the high watermark a leader
    /// told it (a broker must not act on a partial image), at most `timeout`.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.status.subscribe();
        let me = self.shared.node_id;
        let done = |s: &Status| {
            s.hw_known
                && s.leader_id.is_some()
                && s.applied >= s.high_watermark
                && (s.leader_id != Some(me) || s.ready_epoch.is_some())
        };
        tokio::time::timeout(timeout, async {
            loop {
                if done(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Takes a snapshot now (tests, operators).
    pub fn snapshot_now(&self) {
        let _ = self.cmd.send(Cmd::SnapshotNow);
    }

    /// Resigns if leading (EndQuorumEpoch), flushes and stops the driver.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Shutdown { done }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

impl Quorum for RaftManager {
    fn leader_id(&self) -> Option<i32> {
        self.shared.status.borrow().leader_id
    }

    fn ready_epoch(&self) -> BoxFuture<'_, Option<i32>> {
        Box::pin(async move {
            let mut rx = self.shared.status.subscribe();
            let me = self.shared.node_id;
            // A leader that was just elected needs its LeaderChange entry committed first.
            let r = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    let s = rx.borrow_and_update().clone();
                    if s.leader_id != Some(me) && s.role != Some(Role::Candidate) {
                        return None;
                    }
                    if let Some(e) = s.ready_epoch {
                        return Some(e);
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            })
            .await;
            r.ok().flatten()
        })
    }

    fn propose(&self, epoch: i32, records: Vec<Bytes>) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            let (done, rx) = oneshot::channel();
            self.cmd
                .send(Cmd::Propose {
                    epoch,
                    data: records,
                    done,
                })
                .map_err(|_| "the metadata quorum is shut down".to_string())?;
            rx.await
                .map_err(|_| "the metadata quorum is shut down".to_string())?
        })
    }
}

impl NodeQuorum for RaftManager {
    fn quorum_info(&self) -> QuorumInfo {
        self.shared.info.lock().clone()
    }
}

/// Work for the applier thread, in commit order.
enum Apply {
    /// Committed records (offset, value); `end` is the exclusive end of the batch. With
    /// `snapshot`, capture the image afterwards for a snapshot ending at `end` (epoch `epoch`).
    Batch {
        records: Vec<(i64, Bytes)>,
        end: i64,
        epoch: i32,
        snapshot: bool,
    },
    /// Replace the image by a snapshot's.
    Snapshot { end: i64, records: Vec<Bytes> },
}

/// Applies committed records to the image on its own thread: listeners do blocking work
/// (creating partition logs), which must never stall the quorum's timers and RPCs.
fn applier(
    publisher: Arc<MetadataPublisher>,
    rx: std::sync::mpsc::Receiver<Apply>,
    cmd: mpsc::UnboundedSender<Cmd>,
) {
    while let Ok(work) = rx.recv() {
        match work {
            Apply::Batch {
                records,
                end,
                epoch,
                snapshot,
            } => {
                if !records.is_empty() {
                    publisher.apply_committed(records.iter().map(|(o, d)| (*o, d.as_ref())));
                }
                if snapshot {
                    let snap = publisher.snapshot_records();
                    let _ = cmd.send(Cmd::SnapshotReady {
                        id: SnapshotId {
                            end_offset: end,
                            epoch,
                        },
                        records: snap,
                    });
                }
                if cmd.send(Cmd::Applied { end }).is_err() {
                    return;
                }
            }
            Apply::Snapshot { end, records } => {
                publisher.load_snapshot(end - 1, &records);
                if cmd.send(Cmd::Applied { end }).is_err() {
                    return;
                }
            }
        }
    }
}

struct Proposal {
    last: i64,
    epoch: i32,
    done: oneshot::Sender<Result<i64, String>>,
}

struct Driver {
    node: RaftNode,
    store: LogStore,
    qs: QuorumStateStore,
    shared: Arc<Shared>,
    apply: std::sync::mpsc::Sender<Apply>,
    peers: HashMap<NodeId, mpsc::Sender<Message>>,
    /// End of the prefix handed to the applier (exclusive).
    applied: i64,
    /// End of the prefix the applier has published (exclusive).
    published: i64,
    /// A snapshot capture is on its way from the applier.
    snapshot_pending: bool,
    last_applied_epoch: i32,
    proposals: Vec<Proposal>,
    bytes_since_snapshot: u64,
    max_bytes_between_snapshots: u64,
    /// Offset of this node's LeaderChange entry in its current epoch as leader.
    leader_change_offset: Option<(i32, i64)>,
    start: Instant,
    wall_at_start_ms: u64,
    /// The inbound request being answered: (from, API, reply).
    pending_reply: Option<(NodeId, wire::ResponseCtx, oneshot::Sender<Bytes>)>,
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let cmd = tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => Some(c),
                    None => return,
                },
                _ = tick.tick() => None,
            };
            let mut shutdown = None;
            match cmd {
                None => {
                    let now = self.now_ms();
                    self.node.tick(now);
                }
                Some(Cmd::Inbound { req, reply }) => {
                    let now = self.now_ms();
                    self.node.tick(now);
                    let from = req.from;
                    let ctx = req.ctx.clone();
                    match self.node.step(from, req.message) {
                        Ok(()) => self.pending_reply = Some((from, ctx, reply)),
                        Err(e) => {
                            let code = match e {
                                nagare_raft::StepError::Invalid(_) => wire::INVALID_REQUEST,
                                nagare_raft::StepError::Stale(_) => 74,
                            };
                            tracing::debug!(from, error = %e, "quorum request refused");
                            if let Ok(b) = wire::encode_response(&ctx, None, code) {
                                let _ = reply.send(b);
                            }
                        }
                    }
                }
                Some(Cmd::Response { from, msg }) => {
                    if let Err(e) = self.node.step(from, msg) {
                        tracing::trace!(from, error = %e, "quorum response ignored");
                    }
                }
                Some(Cmd::Propose { epoch, data, done }) => {
                    if self.node.epoch() != epoch || self.node.role() != Role::Leader {
                        let _ = done.send(Err(format!(
                            "not the leader of epoch {epoch} (epoch {}, leader {:?})",
                            self.node.epoch(),
                            self.node.leader_id()
                        )));
                    } else {
                        match self.node.propose(data) {
                            Ok(range) => self.proposals.push(Proposal {
                                last: range.end - 1,
                                epoch,
                                done,
                            }),
                            Err(e) => {
                                let _ = done.send(Err(e.to_string()));
                            }
                        }
                    }
                }
                Some(Cmd::SnapshotNow) => {
                    self.bytes_since_snapshot = self.max_bytes_between_snapshots;
                }
                Some(Cmd::Applied { end }) => {
                    self.published = self.published.max(end);
                    self.resolve_proposals();
                }
                Some(Cmd::SnapshotReady { id, records }) => {
                    self.snapshot_pending = false;
                    if let Err(e) = self.write_snapshot(id, records) {
                        tracing::error!(error = %e, "cannot write the metadata snapshot");
                    }
                }
                Some(Cmd::Shutdown { done }) => {
                    if self.node.resign().is_ok() {
                        tracing::info!("resigning as metadata quorum leader (EndQuorumEpoch)");
                    }
                    shutdown = Some(done);
                }
            }
            if let Err(e) = self.drain() {
                // The log or the quorum state cannot be written: going on could break the
                // quorum's guarantees, so this node stops taking part (Kafka halts).
                tracing::error!(error = %e, "metadata quorum storage failed; leaving the quorum");
                return;
            }
            if let Some((_, ctx, reply)) = self.pending_reply.take() {
                // The core had nothing to say to this request (e.g. not the leader).
                if let Ok(b) = wire::encode_response(&ctx, None, 6) {
                    let _ = reply.send(b);
                }
            }
            self.publish_info();
            if let Some(done) = shutdown {
                // Give the transport a moment to deliver EndQuorumEpoch.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = self.store.flush();
                let _ = self.store.close();
                let _ = done.send(());
                return;
            }
        }
    }

    fn drain(&mut self) -> Result<(), RaftManagerError> {
        while let Some(ready) = self.node.ready() {
            if let Some(q) = &ready.quorum_state {
                self.qs.write(q)?;
            }
            if let Some(snap) = &ready.snapshot_to_install {
                self.store.install_snapshot(snap)?;
                let records = log_store::decode_snapshot_records(&snap.data)?;
                let count = records.len();
                let _ = self.apply.send(Apply::Snapshot {
                    end: snap.id.end_offset,
                    records,
                });
                self.applied = snap.id.end_offset;
                self.last_applied_epoch = snap.id.epoch;
                self.bytes_since_snapshot = 0;
                tracing::info!(
                    end_offset = snap.id.end_offset,
                    epoch = snap.id.epoch,
                    records = count,
                    "installed metadata snapshot fetched from the leader"
                );
            }
            if let Some(t) = ready.truncate_to {
                self.store.truncate_to(t)?;
            }
            if !ready.entries.is_empty() {
                if let Some(role) = self.node_role_leader_epoch() {
                    for e in &ready.entries {
                        if let EntryPayload::LeaderChange { leader_id } = e.payload {
                            if leader_id == self.shared.node_id && e.epoch == role {
                                self.leader_change_offset = Some((e.epoch, e.offset));
                            }
                        }
                    }
                }
                self.store.append(&ready.entries)?;
                self.store.flush()?;
            }
            for (to, msg) in ready.messages {
                self.route(to, msg);
            }
            let _ = self.node.advance(ready.id);
            if let Some(rc) = ready.role {
                if rc.role != Role::Leader {
                    self.leader_change_offset = None;
                }
                tracing::info!(role = ?rc.role, epoch = rc.epoch, leader = ?rc.leader_id, "metadata quorum state changed");
            }
            if ready.high_watermark.is_some() {
                self.shared.status.send_modify(|s| s.hw_known = true);
            }
            self.apply_committed()?;
            self.fail_stale_proposals();
        }
        // Advancing can move the high watermark without a new Ready.
        self.apply_committed()?;
        self.update_status();
        Ok(())
    }

    fn node_role_leader_epoch(&self) -> Option<i32> {
        (self.node.role() == Role::Leader).then(|| self.node.epoch())
    }

    fn route(&mut self, to: NodeId, msg: Message) {
        if let Some((from, ctx, _)) = &self.pending_reply {
            if *from == to && wire::answers(ctx.key, &msg) {
                if let Some((_, ctx, reply)) = self.pending_reply.take() {
                    match wire::encode_response(&ctx, Some(&msg), 0) {
                        Ok(b) => {
                            let _ = reply.send(b);
                        }
                        Err(e) => tracing::error!(error = %e, "cannot encode quorum response"),
                    }
                }
                return;
            }
        }
        if wire::build_request(&msg, to, "").is_none() {
            // A response whose request is gone (the requester timed out): drop it.
            return;
        }
        if let Some(p) = self.peers.get(&to) {
            // A full queue means the peer is slow or down; the core resends on its timers.
            let _ = p.try_send(msg);
        }
    }

    fn apply_committed(&mut self) -> Result<(), RaftManagerError> {
        let hw = self.node.high_watermark();
        if self.applied >= hw {
            return Ok(());
        }
        let mut batch: Vec<(i64, Bytes)> = Vec::new();
        let mut o = self.applied.max(self.node.log_start_offset());
        while o < hw {
            let Some(e) = self.node.entry(o) else { break };
            self.last_applied_epoch = e.epoch;
            if let EntryPayload::Data(d) = &e.payload {
                self.bytes_since_snapshot += d.len() as u64;
                batch.push((o, d.clone()));
            }
            o += 1;
        }
        self.applied = o;
        let snapshot = !self.snapshot_pending
            && self.bytes_since_snapshot >= self.max_bytes_between_snapshots
            && self
                .node
                .latest_snapshot()
                .is_none_or(|s| s.id.end_offset < o);
        if snapshot {
            self.snapshot_pending = true;
            self.bytes_since_snapshot = 0;
        }
        let _ = self.apply.send(Apply::Batch {
            records: batch,
            end: o,
            epoch: self.last_applied_epoch,
            snapshot,
        });
        Ok(())
    }

    fn resolve_proposals(&mut self) {
        let published = self.published;
        let mut still = Vec::new();
        for p in self.proposals.drain(..) {
            if p.last < published {
                let _ = p.done.send(Ok(p.last));
            } else {
                still.push(p);
            }
        }
        self.proposals = still;
    }

    /// Writes the image the applier captured at `id` as a snapshot, then lets the core and the
    /// log forget what it covers.
    fn write_snapshot(
        &mut self,
        id: SnapshotId,
        records: Vec<Bytes>,
    ) -> Result<(), RaftManagerError> {
        if self
            .node
            .latest_snapshot()
            .is_some_and(|s| s.id.end_offset >= id.end_offset)
        {
            return Ok(());
        }
        let data = log_store::encode_snapshot_records(&records)?;
        let snapshot = Snapshot { id, data };
        self.store.write_snapshot(&snapshot)?;
        match self.node.snapshot_taken(snapshot) {
            Ok(()) => {
                self.store.clean_before(id)?;
                tracing::info!(
                    end_offset = id.end_offset,
                    epoch = id.epoch,
                    records = records.len(),
                    "wrote metadata snapshot"
                );
            }
            Err(e) => tracing::warn!(error = %e, "metadata snapshot not taken"),
        }
        Ok(())
    }

    fn fail_stale_proposals(&mut self) {
        let leading = self.node_role_leader_epoch();
        let mut still = Vec::new();
        for p in self.proposals.drain(..) {
            if leading == Some(p.epoch) {
                still.push(p);
            } else {
                let _ = p.done.send(Err(format!(
                    "leadership of epoch {} was lost before the change committed",
                    p.epoch
                )));
            }
        }
        self.proposals = still;
    }

    fn update_status(&mut self) {
        let me = self.shared.node_id;
        let ready_epoch = match (self.node_role_leader_epoch(), self.leader_change_offset) {
            (Some(e), Some((le, off))) if le == e && self.published > off => Some(e),
            _ => None,
        };
        let next = Status {
            role: Some(self.node.role()),
            epoch: self.node.epoch(),
            leader_id: self.node.leader_id(),
            ready_epoch,
            applied: self.published,
            high_watermark: self.node.high_watermark(),
            hw_known: self.shared.status.borrow().hw_known
                || self.node.leader_id() == Some(me) && ready_epoch.is_some(),
        };
        self.shared.status.send_if_modified(|s| {
            let changed = s.role != next.role
                || s.epoch != next.epoch
                || s.leader_id != next.leader_id
                || s.ready_epoch != next.ready_epoch
                || s.applied != next.applied
                || s.high_watermark != next.high_watermark
                || s.hw_known != next.hw_known;
            *s = next.clone();
            changed
        });
    }

    fn publish_info(&self) {
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

/// Sends the core's requests to one voter over its `CONTROLLER` listener and feeds the
/// answers back; a down peer only loses its own messages (the core retries on its timers).
async fn peer_task(
    peer: VoterAddress,
    node_id: NodeId,
    cluster_id: String,
    request_timeout: Duration,
    backoff: Duration,
    mut rx: mpsc::Receiver<Message>,
    cmd: mpsc::UnboundedSender<Cmd>,
) {
    let host = if peer.host.contains(':') {
        format!("[{}]", peer.host)
    } else {
        peer.host.clone()
    };
    let addr = format!("{host}:{}", peer.port);
    let client_id = format!("nagare-raft-{node_id}");
    let mut conn: Option<nagare_client::Connection> = None;
    let mut down_until: Option<Instant> = None;
    while let Some(msg) = rx.recv().await {
        if down_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let Some(out) = wire::build_request(&msg, peer.node_id, &cluster_id) else {
            continue;
        };
        if conn.as_ref().is_none_or(|c| c.is_broken()) {
            let opts = nagare_client::ConnectionOptions {
                connect_timeout: Duration::from_millis(1000),
                request_timeout,
                ..Default::default()
            };
            match nagare_client::Connection::connect_with(&addr, &client_id, opts).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(peer = peer.node_id, error = %e, "cannot reach voter");
                    down_until = Some(Instant::now() + backoff);
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
                if cmd
                    .send(Cmd::Response {
                        from: peer.node_id,
                        msg: m,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(peer = peer.node_id, error = %e, "quorum request failed");
                conn = None;
            }
        }
    }
}
