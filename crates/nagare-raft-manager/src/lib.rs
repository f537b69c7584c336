//! The I/O shell around the pure KRaft core ([`nagare_raft`]): Kafka's `KafkaRaftManager`.
//!
//! It persists the quorum state and the metadata log `__cluster_metadata-0`, writes and loads
//! snapshots (KIP-630), maps the core's messages to the Kafka wire RPCs (Vote,
//! BeginQuorumEpoch, EndQuorumEpoch, Fetch, FetchSnapshot, DescribeQuorum) and drives the core
//! with a clock.
//!
//! The replicated state is opaque here: a [`RaftListener`] receives the committed records (in
//! order, exactly once per process lifetime), loads snapshots and, when a snapshot is due,
//! hands back the records of its state.
//!
//! Wiring it into a node:
//!
//! ```ignore
//! let mgr = RaftManager::start(RaftManagerConfig::new(node_id, cluster_id, voters, dir), image)?;
//! // CONTROLLER listener: for (key, version) in SUPPORTED, frame the body `handle` returns.
//! let body = mgr.handle(api_key, version, request_body).await?;
//! // Controller: decide only as a ready leader, then commit.
//! if let Some(epoch) = mgr.wait_ready_epoch(timeout).await {
//!     let offset = mgr.propose(epoch, records).await?; // delivered to `image` already
//! }
//! mgr.shutdown().await; // resigns (EndQuorumEpoch) if leading
//! ```
//!
//! On disk, under `metadata.log.dir`:
//!
//! ```text
//! __cluster_metadata-0/quorum-state                       epoch, vote, leader (+ CRC-32C)
//! __cluster_metadata-0/<offset>.log, .index, .timeindex   the log (Kafka record batches)
//! __cluster_metadata-0/<end offset>-<epoch>.checkpoint    snapshots (KIP-630)
//! ```

mod log_store;
mod manager;
mod quorum_state;
mod snapshot;
mod wire;

use std::path::PathBuf;

use bytes::Bytes;

pub use log_store::partition_dir;
pub use log_store::{LogStore, LogStoreError, METADATA_TOPIC};
pub use manager::RaftManager;
pub use nagare_raft::{
    Epoch, NodeId, Offset, QuorumInfo, ReplicaInfo, Role, SnapshotId, VoterAddress,
};
pub use quorum_state::{QuorumStateError, QuorumStateStore, QUORUM_STATE_FILE};
pub use snapshot::{
    decode as decode_snapshot, encode as encode_snapshot, SnapshotError, SnapshotStore,
};
pub use wire::{describe_quorum_info, describe_quorum_request, METADATA_TOPIC_ID, SUPPORTED};

/// How the shell is set up: Kafka's `controller.quorum.*` and `metadata.log.*` settings.
#[derive(Debug, Clone)]
pub struct RaftManagerConfig {
    /// `node.id`.
    pub node_id: NodeId,
    /// The cluster id from `meta.properties`; every quorum RPC carries it.
    pub cluster_id: String,
    /// `controller.quorum.voters`; a node not among them is an observer (a broker-only node)
    /// that fetches from the leader.
    pub voters: Vec<VoterAddress>,
    /// `metadata.log.dir`: `__cluster_metadata-0` lives under it.
    pub metadata_log_dir: PathBuf,
    /// `controller.quorum.election.timeout.ms` (1000).
    pub election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms` (2000).
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.election.backoff.max.ms` (1000).
    pub election_backoff_max_ms: u64,
    /// `controller.quorum.request.timeout.ms` (2000).
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms` (20): wait before reconnecting to a peer.
    pub retry_backoff_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots` (20 MiB): committed record bytes
    /// after which a new snapshot is written.
    pub max_record_bytes_between_snapshots: u64,
    /// How long the leader holds a Fetch that has nothing new (Kafka's
    /// `controller.quorum.fetch.max.wait.ms`-like long poll, 500).
    pub fetch_max_wait_ms: u64,
    /// TLS towards the other voters, when the controller listener is SSL (`None`: plaintext).
    pub tls: Option<nagare_client::TlsOptions>,
    /// The SASL login towards the other voters, when the controller listener is
    /// SASL_PLAINTEXT or SASL_SSL (`sasl.mechanism.controller.protocol`; `None`: none).
    pub sasl: Option<nagare_client::SaslCredentials>,
}

impl RaftManagerConfig {
    /// Kafka's defaults for the timing settings.
    pub fn new(
        node_id: NodeId,
        cluster_id: impl Into<String>,
        voters: Vec<VoterAddress>,
        metadata_log_dir: impl Into<PathBuf>,
    ) -> Self {
        RaftManagerConfig {
            node_id,
            cluster_id: cluster_id.into(),
            voters,
            metadata_log_dir: metadata_log_dir.into(),
            election_timeout_ms: 1000,
            fetch_timeout_ms: 2000,
            election_backoff_max_ms: 1000,
            request_timeout_ms: 2000,
            retry_backoff_ms: 20,
            max_record_bytes_between_snapshots: 20 * 1024 * 1024,
            fetch_max_wait_ms: 500,
            tls: None,
            sasl: None,
        }
    }

    /// Whether this node is one of the voters.
    pub fn is_voter(&self) -> bool {
        self.voters.iter().any(|v| v.node_id == self.node_id)
    }
}

/// One committed application record, delivered to [`RaftListener::handle_commit`].
/// Control entries (LeaderChange) are not delivered, as Kafka's readers skip control batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEntry {
    /// Its offset in the metadata log.
    pub offset: Offset,
    /// The epoch of the leader that appended it.
    pub epoch: Epoch,
    /// The record value as proposed.
    pub data: Bytes,
}

/// The leader of an epoch as this node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaderAndEpoch {
    /// The leader, if known.
    pub leader_id: Option<NodeId>,
    /// The epoch.
    pub epoch: Epoch,
}

/// What the replicated state machine (the metadata image) implements. Every call comes from
/// the driver task, in log order; a call must not block for long (the quorum waits on it).
pub trait RaftListener: Send + Sync + 'static {
    /// Committed records, in offset order, each delivered once per process lifetime.
    fn handle_commit(&self, entries: &[CommittedEntry]);
    /// Replaces the whole state by a snapshot's records (at start, or when a snapshot is
    /// fetched from the leader because this node is too far behind). Commits that follow
    /// continue from `id.end_offset`.
    fn handle_load_snapshot(&self, id: SnapshotId, records: Vec<Bytes>);
    /// The leader or epoch changed.
    fn handle_leader_change(&self, leader: LeaderAndEpoch);
    /// The state's records for a snapshot. Called right after every commit up to the
    /// snapshot's end offset was delivered, so the state is exactly that prefix.
    fn snapshot_records(&self) -> Vec<Bytes>;
}

/// Why the shell could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RaftManagerError {
    /// The quorum-state file could not be used.
    #[error(transparent)]
    QuorumState(#[from] QuorumStateError),
    /// The metadata log could not be used.
    #[error(transparent)]
    Log(#[from] LogStoreError),
    /// A snapshot could not be used.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The configuration is inconsistent.
    #[error("invalid quorum configuration: {0}")]
    Config(String),
}

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead the requested epoch; `leader` is what it knows (Kafka:
    /// NOT_CONTROLLER for the caller).
    #[error("not the leader of epoch {requested} (leader {:?} in epoch {})", leader.leader_id, leader.epoch)]
    NotLeader {
        /// The epoch the caller believed it leads.
        requested: Epoch,
        /// The leader and epoch as this node knows them.
        leader: LeaderAndEpoch,
    },
    /// Leadership was lost before the records committed; they may or may not commit under
    /// the next leader, so the caller must re-read the state before retrying.
    #[error("leadership of epoch {0} was lost before the records committed")]
    LeadershipLost(Epoch),
    /// The proposal itself is unacceptable (empty, too many records).
    #[error("invalid proposal: {0}")]
    Invalid(String),
    /// The shell is shut down or failed.
    #[error("the metadata quorum is shut down")]
    ShutDown,
}

/// Why an inbound quorum request got no Kafka answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftRequestError {
    /// Not one of the quorum APIs, or a version outside [`SUPPORTED`].
    #[error("{api:?} v{version} is not served by the metadata quorum")]
    Unsupported {
        /// The API.
        api: kafka_protocol::messages::ApiKey,
        /// The version.
        version: i16,
    },
    /// The body does not decode (the connection should be closed, as Kafka does).
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        /// The API.
        api: kafka_protocol::messages::ApiKey,
        /// The version.
        version: i16,
        /// Why.
        reason: String,
    },
    /// Our own answer failed to encode (a bug).
    #[error("cannot encode the answer: {0}")]
    Encode(String),
}
