//! The transaction coordinator (Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`): the sans-I/O state of the transactional ids whose
//! `__transaction_state` partition this broker leads, run by the broker's coordinator runtime
//! like the group coordinator.
//!
//! [`api`] holds the contract with the broker: the requests a shard handles, its responses,
//! and the transaction markers it asks the broker to write once its records are committed.

pub mod api;

pub use api::{
    TopicPartition, TransactionDescription, TransactionListing, TransactionState, TxnMarkerRequest,
    TxnRequest, TxnResponse,
};
