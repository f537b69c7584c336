//! Configuration of the transaction coordinator, with Kafka's names and defaults.

/// Settings of the transaction coordinator. Field names follow Kafka's broker configs
/// (`TransactionStateManagerConfigs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionCoordinatorConfig {
    /// `transaction.max.timeout.ms`: InitProducerId with a larger (or non-positive)
    /// `transaction.timeout.ms` gets INVALID_TRANSACTION_TIMEOUT.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction in progress
    /// that has not been updated for this long is removed (a tombstone is written).
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often transactions
    /// running past their timeout are looked for and aborted.
    pub abort_timed_out_transaction_cleanup_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often expired
    /// transactional ids are looked for and removed.
    pub remove_expired_transaction_cleanup_interval_ms: i64,
}

impl Default for TransactionCoordinatorConfig {
    /// Kafka 4.x's defaults: 15 minutes, 7 days, 10 seconds, 1 hour.
    fn default() -> Self {
        TransactionCoordinatorConfig {
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            remove_expired_transaction_cleanup_interval_ms: 3_600_000,
        }
    }
}
