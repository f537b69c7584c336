//! A deterministic timer wheel keyed like Kafka's coordinator timer: scheduling a key again
//! replaces its previous deadline, and `cancel` forgets it.

use std::collections::{BTreeSet, HashMap};

/// What a timer is for; one timer per key (as Kafka's `classicGroupHeartbeatKey`,
/// `classicGroupJoinKey`, `classicGroupSyncKey`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// Session (or pending-member, or new-member join) expiry of one member.
    Heartbeat { group_id: String, member_id: String },
    /// Completion of the join phase (initial delay or rebalance timeout).
    Join { group_id: String },
    /// Expiry of members that did not send SyncGroup in time.
    Sync { group_id: String },
    /// Periodic offset retention and empty-group cleanup.
    Cleanup,
    /// Session expiry of a KIP-848 consumer-group member.
    ConsumerSession { group_id: String, member_id: String },
    /// Rebalance (revocation) timeout of a KIP-848 consumer-group member.
    ConsumerRebalance { group_id: String, member_id: String },
}

/// What to do when a timer fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimerAction {
    /// Expire the member's heartbeat.
    ExpireHeartbeat,
    /// `tryCompleteInitialRebalanceElseSchedule(delay, remaining)`.
    InitialRebalance { delay_ms: i32, remaining_ms: i32 },
    /// `completeClassicGroupJoin`.
    CompleteJoin,
    /// `expirePendingSync(generation)`.
    ExpirePendingSync { generation_id: i32 },
    /// `cleanupGroupMetadata`.
    Cleanup,
    /// Fence a consumer-group member still revoking at `member_epoch`.
    ExpireConsumerRebalance { member_epoch: i32 },
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_key: HashMap<TimerKey, (i64, u64, TimerAction)>,
    queue: BTreeSet<(i64, u64, TimerKey)>,
    seq: u64,
}

impl Timers {
    pub(crate) fn schedule(&mut self, key: TimerKey, deadline_ms: i64, action: TimerAction) {
        self.cancel(&key);
        self.seq += 1;
        self.queue.insert((deadline_ms, self.seq, key.clone()));
        self.by_key.insert(key, (deadline_ms, self.seq, action));
    }

    pub(crate) fn cancel(&mut self, key: &TimerKey) {
        if let Some((deadline, seq, _)) = self.by_key.remove(key) {
            self.queue.remove(&(deadline, seq, key.clone()));
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<i64> {
        self.queue.first().map(|(d, _, _)| *d)
    }

    /// Removes and returns the earliest timer due at `now_ms`, if any.
    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<(TimerKey, TimerAction)> {
        let first = self.queue.first()?.clone();
        if first.0 > now_ms {
            return None;
        }
        self.queue.remove(&first);
        let (_, _, action) = self.by_key.remove(&first.2)?;
        Some((first.2, action))
    }

    pub(crate) fn clear(&mut self) {
        self.by_key.clear();
        self.queue.clear();
    }
}
