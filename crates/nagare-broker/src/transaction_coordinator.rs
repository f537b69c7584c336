//! The transaction coordinator of this broker: the [coordinator runtime](crate::coordinator_runtime)
//! over the transaction shards of `nagare-transaction-coordinator` (Kafka's
//! `TransactionCoordinator` and `TransactionStateManager`), for the partitions of
//! `__transaction_state` this broker leads.

/// The internal topic holding the transactions' state (Kafka's `TRANSACTION_STATE_TOPIC_NAME`).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
