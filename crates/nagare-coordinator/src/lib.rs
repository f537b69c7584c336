//! The group coordinator of Nagare as a sans-I/O state machine.
//!
//! Kafka shards group coordination by the partitions of the internal `__consumer_offsets`
//! topic: a group's coordinator is the leader of partition [`partition_for`]`(group_id, n)`.
//! One [`GroupCoordinatorShard`] owns the groups of one such partition. It is a plain state
//! machine, modelled on Kafka 4.x's `GroupCoordinatorShard` (`GroupMetadataManager`,
//! `ClassicGroup`, `OffsetMetadataManager`):
//!
//! * requests go in with the current time ([`GroupCoordinatorShard::handle`]), and a
//!   [`CoordinatorResult`] comes out: records to append to the partition, the reply (now, or
//!   deferred under a [`RequestToken`] for JoinGroup/SyncGroup, which wait for the rebalance),
//!   and replies to earlier deferred requests that this call completed;
//! * time goes in through [`GroupCoordinatorShard::tick`], which fires session expiry,
//!   rebalance timeouts, the initial rebalance delay, pending-sync expiry and offset
//!   retention; [`GroupCoordinatorShard::next_deadline_ms`] says when to call it next;
//! * [`GroupCoordinatorShard::replay`] rebuilds the state from the partition's records (the
//!   live path applies offset commits and tombstones through the same function).
//!
//! Two group protocols share the shard and the group-id space: the classic one
//! (JoinGroup/SyncGroup/Heartbeat, `classic.rs`) and KIP-848's `consumer` protocol
//! (ConsumerGroupHeartbeat with server-side `uniform`/`range` assignors and incremental,
//! revocation-first reconciliation, `consumer.rs`, `assignor.rs`). The shell gives the shard the
//! cluster's topics ([`GroupCoordinatorShard::set_topics`]) so that consumer groups follow
//! topic changes.
//!
//! The shard implements [`runtime::CoordinatorShard`], the contract with the broker's generic
//! coordinator runtime (loading, writes, commit waits, timers), which the transaction
//! coordinator shares.
//!
//! No clocks, sockets, files or async inside: the broker's shell moves bytes and time.

mod admin;
mod assignor;
mod classic;
mod config;
mod consumer;
mod find_coordinator;
mod group;
mod offsets;
pub mod record;
pub mod runtime;
mod shard;
mod timer;

pub use assignor::{RANGE as RANGE_ASSIGNOR, UNIFORM as UNIFORM_ASSIGNOR};
pub use config::{GroupConfigOverrides, GroupCoordinatorConfig, GroupOverride};
pub use consumer::{
    ConsumerGroupState, ConsumerGroupView, ConsumerMemberView, MemberState, TopicsImage,
    LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};
pub use find_coordinator::{find_coordinator_response, partition_for, CoordinatorLocation};
pub use group::{GroupState, GroupView, MemberView};
pub use offsets::CommittedOffset;
pub use record::{
    ConsumerMemberMetadataValue, CoordinatorRecord, CurrentMemberAssignmentValue,
    GroupMetadataValue, MemberMetadataValue, OffsetCommitValue, RecordError, TopicPartitions,
};
pub use runtime::{CoordinatorShard, RequestContext, RequestToken};
pub use shard::{
    error_response, CoordinatorResult, DurableState, GroupCoordinatorShard, GroupRequest,
    GroupResponse, Reply,
};
