//! The transaction coordinator (Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`): the sans-I/O state of the transactional ids whose
//! `__transaction_state` partition this broker leads, run by the broker's coordinator runtime
//! like the group coordinator.
//!
//! * [`api`] holds the contract with the broker: the requests a shard handles, its responses,
//!   and the transaction markers it asks the broker to write once its records are committed.
//! * [`record`] is the `__transaction_state` record format (Kafka's `TransactionLogKey` and
//!   `TransactionLogValue` v0/v1).
//! * [`TransactionCoordinatorShard`] is the state machine of one partition: InitProducerId
//!   (KIP-360 recovery, zombie fencing), AddPartitionsToTxn (and KIP-890's verification),
//!   AddOffsetsToTxn, EndTxn (KIP-890 part 2's epoch bump under transaction version 2),
//!   marker completion, DescribeTransactions/ListTransactions, and the timers that abort
//!   transactions past their timeout and expire idle transactional ids.
//!
//! No clocks, sockets, files or async inside: the broker's shell moves bytes and time.

pub mod api;
mod config;
pub mod record;
mod shard;

pub use api::{
    TopicPartition, TransactionDescription, TransactionListing, TransactionState, TxnMarkerRequest,
    TxnRequest, TxnResponse,
};
pub use config::TransactionCoordinatorConfig;
pub use record::{TransactionLogValue, TxnRecord, TxnRecordError};
pub use shard::{
    error_response, is_epoch_exhausted, TransactionCoordinatorShard, TransactionMetadata,
    TxnResult, CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC,
};

#[cfg(test)]
mod tests;
