//! Replaying a whole log record by record — how internal state (the metadata image, group
//! coordinator shards) is rebuilt from its log on start or failover. Not a hot path: batches
//! are decoded (and decompressed) with `kafka-protocol`.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use nagare_protocol::record_batch;

use crate::error::StorageError;
use crate::log::Log;

/// One record met while replaying.
#[derive(Debug, Clone)]
pub struct ReplayedRecord {
    /// Offset in the log.
    pub offset: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Whether it belongs to a control batch (transaction markers).
    pub control: bool,
    /// Whether it belongs to a transactional batch (control batches are transactional too).
    pub transactional: bool,
    /// The batch's producer id (-1: none).
    pub producer_id: i64,
    /// The batch's producer epoch (-1: none).
    pub producer_epoch: i16,
}

/// Calls `f` for every record from the log start offset to the log end, in order.
pub fn replay_records(log: &Log, mut f: impl FnMut(ReplayedRecord)) -> Result<(), StorageError> {
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let data = log.read(offset, 4 << 20, true, end)?;
        let Some(slice) = data.slice else { break };
        let mut bytes: Bytes = slice.read_to_bytes()?;
        // Batch headers decide where the next read starts: compaction can leave batches
        // without records (a producer's last batch) that records alone would not move past.
        let mut next = offset;
        for item in record_batch::batches(&bytes) {
            let (h, _) = item.map_err(|e| {
                StorageError::CorruptRecord(format!("replaying {}: {e}", log.dir().display()))
            })?;
            next = next.max(h.next_offset());
        }
        let sets = RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| {
            StorageError::CorruptRecord(format!("replaying {}: {e}", log.dir().display()))
        })?;
        for set in sets {
            for r in set.records {
                // A read starts at the batch holding `offset`: skip what was already seen.
                if r.offset < offset {
                    continue;
                }
                f(ReplayedRecord {
                    offset: r.offset,
                    key: r.key,
                    value: r.value,
                    control: r.control,
                    transactional: r.transactional,
                    producer_id: r.producer_id,
                    producer_epoch: r.producer_epoch,
                });
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}
