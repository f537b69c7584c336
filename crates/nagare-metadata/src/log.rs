//! The metadata log `__cluster_metadata-0`: metadata records stored as Kafka record batches
//! on the ordinary partition log, fsynced before they count as committed. On start every
//! record is replayed into a [`MetadataImage`]. (KRaft replication of this log and snapshots
//! (KIP-595, KIP-630) build on this same log.)

use std::path::Path;

use bytes::Bytes;
use nagare_protocol::batch_builder::build_batch;
use nagare_storage::{replay_records, Log, LogConfig, StorageError, TopicPartition};

use crate::image::MetadataImage;
use crate::records::{MetadataRecord, RecordError};

/// Name of the metadata topic (KIP-500).
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// Errors of the metadata log.
#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    /// The underlying log failed.
    #[error("metadata log storage: {0}")]
    Storage(#[from] StorageError),
    /// A batch could not be encoded or decoded.
    #[error("metadata log batch: {0}")]
    Batch(String),
    /// A record could not be decoded.
    #[error("metadata log record at offset {offset}: {source}")]
    Record {
        /// Offset of the bad record.
        offset: i64,
        /// Why.
        source: RecordError,
    },
}

/// The local metadata log.
pub struct MetadataLog {
    log: Log,
}

impl MetadataLog {
    /// Opens (creating if needed) the metadata log under `metadata_dir` and replays it,
    /// returning the log and the image it describes.
    pub fn open(
        metadata_dir: &Path,
        now_ms: i64,
    ) -> Result<(Self, MetadataImage), MetadataLogError> {
        let tp = TopicPartition {
            topic: METADATA_TOPIC.to_string(),
            partition: 0,
        };
        let dir = metadata_dir.join(tp.to_string());
        let config = LogConfig {
            // Metadata is small; keep it in few segments and never expire it (snapshots will).
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes: 64 * 1024 * 1024,
            max_message_bytes: 8 * 1024 * 1024,
            ..LogConfig::default()
        };
        // Scan from the start on every open: the metadata log is small, and a full scan
        // needs no checkpoint file of its own.
        let log = Log::open(dir, tp, config, 0, false, now_ms)?;
        let mut image = MetadataImage::empty();
        let mut failure = None;
        replay_records(&log, |r| {
            if failure.is_some() {
                return;
            }
            let value = r.value.unwrap_or_default();
            match MetadataRecord::decode(&value) {
                Ok(rec) => image.apply(r.offset, &rec),
                Err(source) => {
                    failure = Some(MetadataLogError::Record {
                        offset: r.offset,
                        source,
                    })
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok((MetadataLog { log }, image))
    }

    /// Appends `records` as one batch and fsyncs it; returns the offset of the first record.
    /// Only after this returns are the records committed and may be applied.
    pub fn append(
        &self,
        records: &[MetadataRecord],
        epoch: i32,
        now_ms: i64,
    ) -> Result<i64, MetadataLogError> {
        if records.is_empty() {
            return Ok(self.log.log_end_offset());
        }
        let buf = build_batch(
            records
                .iter()
                .map(|r| (None, Some(Bytes::from(r.encode())))),
            epoch,
            now_ms,
        )
        .map_err(|e| MetadataLogError::Batch(e.to_string()))?;
        let info = self.log.append_as_leader(buf, epoch, now_ms)?;
        self.log.flush()?;
        Ok(info.first_offset)
    }

    /// Offset the next record will get.
    pub fn end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// Flushes and closes the log.
    pub fn close(&self) -> Result<(), MetadataLogError> {
        Ok(self.log.close()?)
    }
}
