//! The metadata log `__cluster_metadata-0`: metadata records stored as Kafka record batches
//! on the ordinary partition log, fsynced before they count as committed. On start every
//! record is replayed into a [`MetadataImage`]. (KRaft replication of this log and snapshots
//! (KIP-595, KIP-630) build on this same log.)

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KTimestampType,
};
use nagare_storage::{Log, LogConfig, StorageError, TopicPartition};

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
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let data = log.read(offset, 1 << 20, true, end)?;
            let Some(slice) = data.slice else { break };
            let mut bytes: Bytes = slice.read_to_bytes().map_err(StorageError::Io)?;
            let sets = RecordBatchDecoder::decode_all(&mut bytes)
                .map_err(|e| MetadataLogError::Batch(e.to_string()))?;
            let mut next = offset;
            for set in sets {
                for r in set.records {
                    next = r.offset + 1;
                    if r.offset < offset {
                        continue;
                    }
                    let value = r.value.unwrap_or_default();
                    let rec = MetadataRecord::decode(&value).map_err(|source| {
                        MetadataLogError::Record {
                            offset: r.offset,
                            source,
                        }
                    })?;
                    image.apply(r.offset, &rec);
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
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
        let recs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: epoch,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: KTimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: None,
                value: Some(Bytes::from(r.encode())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
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
