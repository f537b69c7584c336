//! Domain numbers, log entries, persisted state and the messages voters and observers exchange.
//!
//! The message structs mirror the KRaft RPCs of KIP-595 (Vote, BeginQuorumEpoch,
//! EndQuorumEpoch, Fetch), KIP-996 (the `pre_vote` flag of Vote) and KIP-630 (FetchSnapshot),
//! reduced to the fields the state machine needs. The network shell maps them to and from the
//! Kafka wire structs.

use bytes::Bytes;

/// A node's `node.id`, as in `controller.quorum.voters` (`id@host:port`).
pub type NodeId = i32;

/// A leader epoch: raised by every election; at most one leader is elected per epoch.
pub type Epoch = i32;

/// A position in the replicated log. An "end offset" is exclusive (the next offset to write).
pub type Offset = i64;

/// Identifies a snapshot by the log it replaces (KIP-630): every entry below `end_offset` is
/// included, and the entry at `end_offset - 1` has epoch `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    /// Exclusive end offset covered by the snapshot; the log continues from here.
    pub end_offset: Offset,
    /// Epoch of the last entry included in the snapshot.
    pub epoch: Epoch,
}

/// A snapshot: its id and its opaque content (the metadata image, encoded by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Which prefix of the log the snapshot replaces.
    pub id: SnapshotId,
    /// The encoded state; the core never interprets it.
    pub data: Bytes,
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryPayload {
    /// Application data (a metadata record batch), opaque to the core.
    Data(Bytes),
    /// Control entry a new leader appends at the start of its epoch, like Kafka's
    /// `LeaderChangeMessage`: once it is replicated on a majority the high watermark can move
    /// in the new epoch (KIP-595; Raft's rule that only current-epoch entries commit by count).
    LeaderChange {
        /// The leader that wrote it.
        leader_id: NodeId,
    },
}

/// One log entry with its offset and the epoch of the leader that appended it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log.
    pub offset: Offset,
    /// Epoch of the leader that wrote the entry.
    pub epoch: Epoch,
    /// Content.
    pub payload: EntryPayload,
}

/// The quorum state file's content (Kafka's `quorum-state`): it must be fsynced before a vote is
/// granted or a new epoch is acted on, otherwise a restarted voter could vote twice in an epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuorumStateRecord {
    /// The latest epoch this node knows.
    pub epoch: Epoch,
    /// The candidate this node voted for in `epoch`, if any.
    pub voted_for: Option<NodeId>,
    /// The leader of `epoch`, if known.
    pub leader_id: Option<NodeId>,
}

/// Everything a node recovers from its disk when it starts.
#[derive(Clone, Debug, Default)]
pub struct PersistedState {
    /// The last fsynced quorum state.
    pub quorum: QuorumStateRecord,
    /// The latest snapshot, if any; the log starts at its end offset.
    pub snapshot: Option<Snapshot>,
    /// The fsynced log entries after the snapshot (or from offset 0), in offset order.
    pub entries: Vec<Entry>,
}

/// Errors carried in responses (mapped to Kafka error codes by the network shell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The requester's epoch is older than the responder's (`FENCED_LEADER_EPOCH`).
    FencedLeaderEpoch,
    /// The requester's epoch is newer than the responder's (`UNKNOWN_LEADER_EPOCH`).
    UnknownLeaderEpoch,
    /// The responder is not the leader (`NOT_LEADER_OR_FOLLOWER`); see `leader_id`.
    NotLeader,
    /// The requested snapshot does not exist any more (`SNAPSHOT_NOT_FOUND`, KIP-630).
    SnapshotNotFound,
    /// The request was malformed or inconsistent with the quorum (`INVALID_REQUEST`).
    InvalidRequest,
}

/// Vote request (KIP-595), or pre-vote when `pre_vote` is set (KIP-996).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    /// The epoch the candidate is (or, for a pre-vote, would be) running in.
    pub epoch: Epoch,
    /// The candidate.
    pub candidate_id: NodeId,
    /// Epoch of the candidate's last log entry.
    pub last_offset_epoch: Epoch,
    /// The candidate's log end offset.
    pub last_offset: Offset,
    /// KIP-996: a pre-vote asks "would you vote for me?" without changing anyone's epoch.
    pub pre_vote: bool,
}

/// Vote response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    /// The voter's current epoch.
    pub epoch: Epoch,
    /// The leader of that epoch, if the voter knows it.
    pub leader_id: Option<NodeId>,
    /// Whether the vote (or pre-vote) was granted.
    pub vote_granted: bool,
    /// Echo of the request's flag.
    pub pre_vote: bool,
}

/// A new leader announces itself to every voter (KIP-595 BeginQuorumEpoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginQuorumEpochRequest {
    /// The new epoch.
    pub epoch: Epoch,
    /// The new leader (the sender).
    pub leader_id: NodeId,
}

/// Acknowledges a BeginQuorumEpoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginQuorumEpochResponse {
    /// The responder's epoch.
    pub epoch: Epoch,
    /// The leader the responder follows in that epoch.
    pub leader_id: Option<NodeId>,
    /// Why it was refused, if it was.
    pub error: Option<ResponseError>,
}

/// A leader resigns gracefully (KIP-595 EndQuorumEpoch), e.g. on shutdown, so that the
/// voters start an election at once instead of waiting for their fetch timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndQuorumEpochRequest {
    /// The epoch that ends.
    pub epoch: Epoch,
    /// The resigning leader (the sender).
    pub leader_id: NodeId,
    /// Voters ordered by how up to date their logs are; the first ones should run first.
    pub preferred_successors: Vec<NodeId>,
}

/// Acknowledges an EndQuorumEpoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndQuorumEpochResponse {
    /// The responder's epoch.
    pub epoch: Epoch,
    /// The leader it knows for that epoch.
    pub leader_id: Option<NodeId>,
}

/// A follower or observer pulls the log from the leader (KIP-595 Fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The epoch the replica believes current.
    pub epoch: Epoch,
    /// The fetching replica (must equal the sender).
    pub replica_id: NodeId,
    /// The replica's log end offset: everything below is durably on its disk.
    pub fetch_offset: Offset,
    /// Epoch of the replica's last entry, so the leader can detect divergence.
    pub last_fetched_epoch: Epoch,
}

/// Where the follower's log diverges from the leader's: the leader's largest epoch not above the
/// follower's `last_fetched_epoch`, and where that epoch ends in the leader's log (KIP-595).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DivergingEpoch {
    /// Epoch in the leader's log.
    pub epoch: Epoch,
    /// End offset of that epoch in the leader's log.
    pub end_offset: Offset,
}

/// Fetch response: records, or a divergence, or a snapshot to fetch first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    /// The responder's epoch.
    pub epoch: Epoch,
    /// The leader of that epoch as the responder knows it.
    pub leader_id: Option<NodeId>,
    /// Set when the fetch was refused (not leader, fenced epoch, ...).
    pub error: Option<ResponseError>,
    /// Echo of the request's fetch offset: the follower ignores a response to a fetch that no
    /// longer matches its log (a delayed or duplicated response).
    pub fetch_offset: Offset,
    /// Echo of the request's last fetched epoch.
    pub last_fetched_epoch: Epoch,
    /// The leader's high watermark.
    pub high_watermark: Offset,
    /// Set when the follower's log diverges: it must truncate and fetch again.
    pub diverging_epoch: Option<DivergingEpoch>,
    /// Set when `fetch_offset` is below the leader's log start: fetch this snapshot (KIP-630).
    pub snapshot_id: Option<SnapshotId>,
    /// Entries from `fetch_offset` on.
    pub records: Vec<Entry>,
}

/// Requests a chunk of a snapshot, starting at byte `position` (KIP-630 FetchSnapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSnapshotRequest {
    /// The requester's epoch.
    pub epoch: Epoch,
    /// The fetching replica.
    pub replica_id: NodeId,
    /// The snapshot the leader announced in a fetch response.
    pub snapshot_id: SnapshotId,
    /// Byte position of the chunk to send.
    pub position: u64,
}

/// A chunk of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSnapshotResponse {
    /// The responder's epoch.
    pub epoch: Epoch,
    /// The leader of that epoch as the responder knows it.
    pub leader_id: Option<NodeId>,
    /// Set when refused.
    pub error: Option<ResponseError>,
    /// The snapshot the chunk belongs to.
    pub snapshot_id: SnapshotId,
    /// Total size of the snapshot in bytes.
    pub size: u64,
    /// Byte position of `bytes` within the snapshot.
    pub position: u64,
    /// The chunk.
    pub bytes: Bytes,
}

/// Every message of the quorum protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// See [`VoteRequest`].
    VoteRequest(VoteRequest),
    /// See [`VoteResponse`].
    VoteResponse(VoteResponse),
    /// See [`BeginQuorumEpochRequest`].
    BeginQuorumEpochRequest(BeginQuorumEpochRequest),
    /// See [`BeginQuorumEpochResponse`].
    BeginQuorumEpochResponse(BeginQuorumEpochResponse),
    /// See [`EndQuorumEpochRequest`].
    EndQuorumEpochRequest(EndQuorumEpochRequest),
    /// See [`EndQuorumEpochResponse`].
    EndQuorumEpochResponse(EndQuorumEpochResponse),
    /// See [`FetchRequest`].
    FetchRequest(FetchRequest),
    /// See [`FetchResponse`].
    FetchResponse(FetchResponse),
    /// See [`FetchSnapshotRequest`].
    FetchSnapshotRequest(FetchSnapshotRequest),
    /// See [`FetchSnapshotResponse`].
    FetchSnapshotResponse(FetchSnapshotResponse),
}

/// The role of a node in the quorum (Kafka's `QuorumState` states, with KIP-996's prospective).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Knows an epoch but no leader (and may have voted in it).
    Unattached,
    /// Running a pre-vote round (KIP-996) before becoming a candidate.
    Prospective,
    /// Asking for votes in a new epoch it voted itself into.
    Candidate,
    /// Elected for the current epoch.
    Leader,
    /// Fetching from the known leader of the current epoch (voters and observers).
    Follower,
    /// Was leader of the current epoch and gave it up (shutdown, restart or lost quorum).
    Resigned,
}

/// What a leader (or any node, for itself) knows about one replica, for DescribeQuorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// The replica.
    pub replica_id: NodeId,
    /// Its log end offset as last reported in a valid fetch, `-1` if unknown.
    pub log_end_offset: Offset,
    /// When it last fetched (the shell's clock, ms), if ever in this epoch.
    pub last_fetch_ms: Option<u64>,
    /// When it last fetched up to the leader's end offset, if ever in this epoch.
    pub last_caught_up_ms: Option<u64>,
}

/// The DescribeQuorum answer (KIP-595): leader, epoch, high watermark and replica progress.
/// Only a leader knows the other replicas' progress; other nodes report just themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumInfo {
    /// The leader of `epoch`, if known.
    pub leader_id: Option<NodeId>,
    /// The current epoch.
    pub epoch: Epoch,
    /// The high watermark this node knows.
    pub high_watermark: Offset,
    /// Every voter, in id order.
    pub voters: Vec<ReplicaInfo>,
    /// Observers that fetched from this leader in the current epoch.
    pub observers: Vec<ReplicaInfo>,
}

/// Counters of things the node refused or ignored; they never change the quorum state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftStats {
    /// Messages rejected as malformed or impossible (wrong sender, negative offsets, ...).
    pub invalid_messages: u64,
    /// Responses that arrived too late to matter (old epoch, no longer expected).
    pub stale_messages: u64,
    /// Elections this node started as a candidate.
    pub elections_started: u64,
}
