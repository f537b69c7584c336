//! Configuration of the group coordinator, with Kafka's names and defaults.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One group's KIP-848 overrides (Kafka's `GroupConfig`, the GROUP config resource): unset
/// fields fall back to the broker's `group.consumer.*` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupOverride {
    /// `consumer.session.timeout.ms` of the group.
    pub consumer_session_timeout_ms: Option<i32>,
    /// `consumer.heartbeat.interval.ms` of the group.
    pub consumer_heartbeat_interval_ms: Option<i32>,
}

/// The per-group overrides, shared by the broker (which replaces them when the metadata log
/// changes a GROUP config) and every shard (which reads them at each heartbeat, as Kafka's
/// `GroupConfigManager` is consulted per heartbeat, so a change applies from the next one).
#[derive(Debug, Clone, Default)]
pub struct GroupConfigOverrides(Arc<RwLock<HashMap<String, GroupOverride>>>);

impl GroupConfigOverrides {
    /// Replaces every group's overrides.
    pub fn replace(&self, all: HashMap<String, GroupOverride>) {
        match self.0.write() {
            Ok(mut g) => *g = all,
            Err(poisoned) => *poisoned.into_inner() = all,
        }
    }

    /// The overrides of `group_id` (none set: all `None`).
    pub fn get(&self, group_id: &str) -> GroupOverride {
        let read =
            |m: &HashMap<String, GroupOverride>| m.get(group_id).copied().unwrap_or_default();
        match self.0.read() {
            Ok(g) => read(&g),
            Err(poisoned) => read(&poisoned.into_inner()),
        }
    }
}

impl PartialEq for GroupConfigOverrides {
    /// Two handles are equal when they share the same table.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for GroupConfigOverrides {}

/// Settings of the group coordinator. Field names follow Kafka's broker configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCoordinatorConfig {
    /// `group.min.session.timeout.ms`: smaller JoinGroup session timeouts get
    /// INVALID_SESSION_TIMEOUT.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: larger JoinGroup session timeouts get
    /// INVALID_SESSION_TIMEOUT.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members, extended by each new member up to the rebalance timeout.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`: joins beyond this many members get GROUP_MAX_SIZE_REACHED.
    pub max_size: usize,
    /// Kafka's internal new-member join timeout (5 minutes): a parked JoinGroup of a new
    /// member expires after this, since its socket is muted and its session cannot be tracked.
    pub new_member_join_timeout_ms: i32,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets and empty groups are
    /// cleaned up.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// The largest group metadata record the `__consumer_offsets` partition accepts
    /// (`message.max.bytes`, 1048588 by default). A JoinGroup whose protocol metadata alone
    /// exceeds it is refused with the error Kafka returns when such a write fails
    /// (UNKNOWN_SERVER_ERROR), instead of poisoning every later write of the group.
    pub max_record_bytes: usize,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member that does not heartbeat for this
    /// long is removed.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: the interval KIP-848 members are told to
    /// heartbeat at.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.assignors`: the server-side assignors, the first being the default
    /// (`uniform`, `range`).
    pub consumer_assignors: Vec<String>,
    /// `group.consumer.max.size`: KIP-848 joins beyond this many members get
    /// GROUP_MAX_SIZE_REACHED.
    pub consumer_max_size: usize,
    /// `offsets.commit.timeout.ms`: how long a coordinator write waits for the
    /// `__consumer_offsets` partition's high watermark before the request fails with
    /// COORDINATOR_NOT_AVAILABLE (Kafka: REQUEST_TIMED_OUT, mapped).
    pub offsets_commit_timeout_ms: u64,
    /// Per-group `consumer.session.timeout.ms` / `consumer.heartbeat.interval.ms` overrides
    /// (KIP-848 GROUP config resources), kept current by the broker.
    pub group_overrides: GroupConfigOverrides,
}

impl GroupCoordinatorConfig {
    /// The session timeout of a KIP-848 member of `group_id`: the group's
    /// `consumer.session.timeout.ms`, else `group.consumer.session.timeout.ms`.
    pub fn consumer_session_timeout_for(&self, group_id: &str) -> i32 {
        self.group_overrides
            .get(group_id)
            .consumer_session_timeout_ms
            .unwrap_or(self.consumer_session_timeout_ms)
    }

    /// The heartbeat interval told to KIP-848 members of `group_id`: the group's
    /// `consumer.heartbeat.interval.ms`, else `group.consumer.heartbeat.interval.ms`.
    pub fn consumer_heartbeat_interval_for(&self, group_id: &str) -> i32 {
        self.group_overrides
            .get(group_id)
            .consumer_heartbeat_interval_ms
            .unwrap_or(self.consumer_heartbeat_interval_ms)
    }
}

impl Default for GroupCoordinatorConfig {
    fn default() -> Self {
        GroupCoordinatorConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offsets_retention_ms: 10_080 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            max_record_bytes: 1_048_588,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_assignors: vec!["uniform".to_owned(), "range".to_owned()],
            consumer_max_size: i32::MAX as usize,
            offsets_commit_timeout_ms: 5_000,
            group_overrides: GroupConfigOverrides::default(),
        }
    }
}
