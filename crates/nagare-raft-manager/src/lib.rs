//! The I/O shell around the pure KRaft core ([`nagare_raft`]): Kafka's `KafkaRaftManager`.
//!
//! It persists the quorum state and the metadata log `__cluster_metadata-0`, writes and loads
//! snapshots (KIP-630), maps the core's messages to the Kafka wire RPCs (Vote,
//! BeginQuorumEpoch, EndQuorumEpoch, Fetch, FetchSnapshot, DescribeQuorum) and drives the core
//! with a clock.
