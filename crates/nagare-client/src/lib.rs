//! `nagare-client`: a small async Kafka client on tokio, built on the `kafka-protocol` crate's
//! message structs. It is used by the `nagare` CLI, tests, benchmarks and replication between
//! clusters, and speaks to any Kafka-compatible broker.
//!
//! - [`Connection`]: one TCP connection; negotiates API versions (ApiVersions, with the KIP-511
//!   fallback) and sends any `kafka-protocol` request at the highest common version.
//! - [`Client`]: cluster metadata, a connection per broker, topic administration, offsets,
//!   produce and fetch, with retries after stale metadata; consumer group administration
//!   (list, describe, committed offsets, commit, delete) at the group's coordinator;
//!   transaction administration (list, describe, active producers, abort a hanging one).
//! - [`records`]: record batches (v2) to and from [`ProduceRecord`] / [`ConsumedRecord`].
//! - [`partitioner`]: Kafka's murmur2 key partitioner.
//!
//! ```no_run
//! # async fn demo() -> nagare_client::Result<()> {
//! use nagare_client::{Acks, Client, Compression, NewTopic, ProduceRecord};
//! let mut client = Client::connect_to("127.0.0.1:9092").await?;
//! client.create_topics(&[NewTopic::new("events").with_partitions(3)], false).await?;
//! let base = client
//!     .produce("events", 0, vec![ProduceRecord::new("hello")], Acks::All, Compression::None)
//!     .await?;
//! let records = client.fetch("events", 0, base, 500, 1 << 20).await?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```

mod client;
mod cluster;
mod connection;
mod error;
mod group;
pub mod partitioner;
pub mod records;
mod scram;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod transactions;
mod types;

pub use client::{
    acl_code, acl_name, AclBinding, AclBindingFilter, Client, ConfigDescription,
    DeleteRecordsResult, ElectionResult, LogDirDescription, QuotaEntityComponent, QuotaEntry,
    QuotaFilter, QuotaMatch, OPERATIONS, PATTERN_TYPES, PERMISSION_TYPES, RESOURCE_TYPES,
};
pub use cluster::{ClusterDescription, ClusterNode, QuorumDescription, QuorumReplica};
pub use connection::{
    Connection, ConnectionOptions, ConnectionStream, PeerClosedProbe, SaslCredentials, TlsOptions,
};
pub use error::{kafka_error_name, Error, ResponseError, Result};
pub use group::{decode_assignment, GroupDescription, GroupListing, GroupMember};
pub use records::{Compression, ConsumedRecord, ProduceRecord, TimestampType};
pub use scram::{ScramAlteration, ScramMechanism, UserScramCredentials};
pub use transactions::{
    abort_marker_request, abort_spec, coordinator_covers, hanging_suspect, ProducerState,
    TransactionDescription, TransactionListing,
};
pub use types::{
    Acks, AlterConfigOp, BrokerMetadata, ClientConfig, ConfigEntry, ConfigResource, ConfigSource,
    FetchOptions, FetchPosition, FetchedPartition, Metadata, NewTopic, OffsetSpec,
    PartitionMetadata, TopicMetadata, TopicPartition,
};

/// The `kafka-protocol` crate this client is built on, for callers sending raw requests
/// through [`Connection::send`].
pub use kafka_protocol;
