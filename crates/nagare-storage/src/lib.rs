//! The partition log on disk, in Apache Kafka's layout and with its semantics.
//!
//! A [`Log`] is one partition replica's log: a directory `<topic>-<partition>` of segments
//! (`<20-digit base offset>.log` with sparse `.index` and `.timeindex` files), producer-state
//! snapshots (`<offset>.snapshot`) and a `leader-epoch-checkpoint`. A [`LogManager`] owns every
//! log of one log directory together with its checkpoint files and clean-shutdown marker.
//!
//! Record batches are stored exactly as produced: the leader assigns offsets by patching batch
//! headers in place (see [`nagare_protocol::record_batch`]), so a fetch can hand file regions
//! ([`FileSlice`]) straight to `sendfile`. All I/O is synchronous `std` I/O; every type is
//! `Send + Sync` and internally synchronized. Durability is the caller's decision: appends go to
//! the page cache and [`Log::flush`] fsyncs them (group commit) without blocking appends.

mod checkpoint;
mod cleaner;
mod config;
mod epoch_cache;
mod error;
mod index;
mod log;
mod manager;
mod producer_state;
mod records;
mod replay;
mod scan;
mod segment;

pub use checkpoint::{read_offset_checkpoint, write_offset_checkpoint};
pub use cleaner::{CleanStats, Cleaner, CleanerConfig, CLEANER_CHECKPOINT_FILE};
pub use config::{LogConfig, TimestampType, TopicPartition};
pub use epoch_cache::EpochEntry;
pub use error::StorageError;
pub use log::{AppendInfo, AppendOrigin, FetchData, FileSlice, Log, TimestampOffset};
pub use manager::{
    LogManager, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE,
};
pub use producer_state::{ProducerBatchMetadata, ProducerStateEntry};
pub use replay::{replay_records, ReplayedRecord};

/// Internals exposed for the criterion benches only; not a stable API.
#[doc(hidden)]
pub mod bench_support {
    use std::path::PathBuf;

    /// A sparse offset index held in memory, as a segment holds it.
    pub struct OffsetIndexBench(crate::index::OffsetIndex);

    impl OffsetIndexBench {
        /// An index of `entries` entries for a segment at `base`, one per `spacing` offsets
        /// and 4096 bytes.
        pub fn new(base: i64, entries: u32, spacing: u32) -> Self {
            let mut idx = crate::index::OffsetIndex::new(PathBuf::from("bench.index"), base);
            for i in 1..=entries {
                idx.append(base + i64::from(i * spacing), u64::from(i) * 4096);
            }
            OffsetIndexBench(idx)
        }

        /// Kafka's `lookup`: (offset, position) of the last entry at or below `target`.
        pub fn lookup(&self, target: i64) -> (i64, u64) {
            self.0.lookup(target)
        }
    }
}
