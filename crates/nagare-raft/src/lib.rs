//! KRaft consensus (KIP-595) as a pure state machine, in the style of etcd raft and raft-rs.
//!
//! [`RaftNode`] takes ticks, messages and proposals in, and hands out numbered [`Ready`]
//! batches: quorum state to fsync, log entries to append (or a truncation, or a snapshot to
//! install), messages to send, and the high watermark. It has no clock, no sockets and no
//! files; the server's shell does the I/O, and `tests/simulation.rs` drives thousands of
//! seeded schedules of lost, duplicated, delayed and reordered messages, partitions and
//! crashes through it.
//!
//! What comes from where:
//! - election with Vote, BeginQuorumEpoch, EndQuorumEpoch, and pull-based Fetch with
//!   diverging-epoch truncation and the high watermark: KIP-595 (Kafka's `KafkaRaftClient`,
//!   `QuorumState`, `LeaderState`);
//! - pre-vote, so a node returning from a partition does not disrupt the quorum: KIP-996;
//! - snapshots and FetchSnapshot: KIP-630;
//! - check-quorum (a leader not fetched from by a majority resigns): Kafka's
//!   `LeaderState.timeUntilCheckQuorumExpires`.

mod config;
mod log;
mod node;
mod types;

#[cfg(test)]
mod tests;

pub use config::{parse_voters, RaftConfig, VoterAddress, VotersError};
pub use node::{
    AdvanceError, ProposeError, RaftNode, Ready, ReadyId, ResignError, RoleChange, SnapshotError,
    StepError,
};
pub use types::*;
