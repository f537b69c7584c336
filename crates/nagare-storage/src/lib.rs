//! The partition log on disk, in Apache Kafka's layout and with its semantics.
//!
//! A [`Log`] is one partition replica's log: a directory `<topic>-<partition>` of segments
//! (`<20-digit base offset>.log` with sparse `.index` and `.timeindex` files and, once a
//! transaction was aborted in it, a `.txnindex`), producer-state snapshots (`<offset>.snapshot`,
//! open transactions included) and a `leader-epoch-checkpoint`. Transactions follow Kafka's
//! `ProducerStateManager`: markers end them, the oldest open one bounds the last stable
//! offset ([`Log::last_stable_offset`]), and aborted ones are indexed for `read_committed`
//! fetches ([`Log::collect_aborted_transactions`]). A [`LogManager`] owns every
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
pub mod io;
mod log;
mod manager;
mod producer_state;
mod records;
mod replay;
mod scan;
mod segment;
mod txn_index;

pub use checkpoint::{read_offset_checkpoint, write_offset_checkpoint};
pub use cleaner::{CleanStats, Cleaner, CleanerConfig, CLEANER_CHECKPOINT_FILE};
pub use config::{LogConfig, TimestampType, TopicPartition};
pub use epoch_cache::EpochEntry;
pub use error::{RecordError, RejectedRecords, StorageError};
pub use log::{
    offset_for_timestamp_in, AppendInfo, AppendOrigin, FetchData, FileSlice, Log, TimestampOffset,
};
pub use manager::{
    LogManager, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE,
};
pub use producer_state::{
    ProducerBatchMetadata, ProducerStateEntry, TxnVerification, VerificationGuard,
};
pub use replay::{replay_records, ReplayedRecord};
pub use txn_index::AbortedTxn;

/// Internals exposed for the criterion benches only; not a stable API.
#[doc(hidden)]
pub mod bench_support {
    use std::io;
    use std::path::{Path, PathBuf};

    use crate::index::{Loaded, OffsetIndex, TimeIndex, OFFSET_ENTRY_SIZE};

    /// A sparse offset index held in memory, as a segment holds it: `entries` entries for a
    /// segment at `base`, one per `spacing` offsets and 4096 bytes.
    pub struct OffsetIndexBench {
        index: OffsetIndex,
        time: TimeIndex,
    }

    impl OffsetIndexBench {
        /// Builds the offset index and a time index of as many entries.
        pub fn new(base: i64, entries: u32, spacing: u32) -> Self {
            let mut index = OffsetIndex::new(PathBuf::from("bench.index"), base);
            let mut time = TimeIndex::new(PathBuf::from("bench.timeindex"), base);
            for i in 1..=entries {
                let offset = base + i64::from(i * spacing);
                index.append(offset, u64::from(i) * 4096);
                time.maybe_append(1_700_000_000_000 + i64::from(i), offset);
            }
            OffsetIndexBench { index, time }
        }

        /// Kafka's `lookup`: (offset, position) of the last entry at or below `target`.
        pub fn lookup(&self, target: i64) -> (i64, u64) {
            self.index.lookup(target)
        }

        /// Writes both indexes as `bench.index` and `bench.timeindex` into `dir`.
        pub fn write_files(&mut self, dir: &Path) -> io::Result<()> {
            self.index.set_path(dir.join("bench.index"));
            self.time.set_path(dir.join("bench.timeindex"));
            self.index.reset_persisted();
            self.time.reset_persisted();
            self.index.write()?;
            self.time.write()
        }
    }

    /// Loads and sanity-checks the files of [`OffsetIndexBench::write_files`], as opening a
    /// flushed segment does; returns the number of offset index entries.
    pub fn load_files(dir: &Path, base: i64, log_size: u64) -> io::Result<usize> {
        let n = match OffsetIndex::load(dir.join("bench.index"), base, log_size)? {
            Loaded::Ok(i) => i.size_bytes() as usize / OFFSET_ENTRY_SIZE,
            Loaded::Rebuild(why) => return Err(io::Error::other(why)),
        };
        match TimeIndex::load(dir.join("bench.timeindex"), base)? {
            Loaded::Ok(_) => Ok(n),
            Loaded::Rebuild(why) => Err(io::Error::other(why)),
        }
    }
}
