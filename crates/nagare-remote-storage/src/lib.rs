//! Tiered storage (KIP-405): old segments in an object store, the recent tail on local disk.
//!
//! Named after Kafka's two plugin interfaces, both built in here:
//!
//! - the **RemoteStorageManager** ([`rsm`]): copies a rolled segment with its offset and time
//!   indexes, producer snapshot, leader-epoch slice and transaction index to an
//!   [`object_store`] (S3 or a local directory, chosen by the `rsm.config.*` keys, see
//!   [`config`]), reads ranges back for fetches below the local log start, deletes them;
//! - the **RemoteLogMetadataManager**: the remote segment metadata ([`metadata`]) and its
//!   per-partition state machine ([`state`]), persisted as a manifest object beside the
//!   segments so that whichever replica leads next continues without gaps or duplicates.
//!
//! The leader's tiering decisions (what to upload, what local retention may delete, the
//! copy rate limit, retry backoff) are pure functions in [`plan`]; the broker drives them.

pub mod config;
pub mod fault;
pub mod metadata;
pub mod plan;
pub mod rsm;
pub mod state;

/// The object store crate, re-exported so users name the same `ObjectStore` trait.
pub use object_store;

pub use config::{RemoteStorageConfig, StoreLocation};
pub use metadata::{
    RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteSegmentState, TopicIdPartition,
};
pub use plan::{Backoff, LocalSegment, RateLimiter};
pub use rsm::{ObjectKind, RemoteStorageError, RemoteStorageManager, SegmentFiles};
pub use state::{RemoteLogState, StateError};
