//! Replaying a whole log record by record — how internal state (the metadata image, group
//! coordinator shards) is rebuilt from its log on start or failover. Not a hot path: batches
//! are decompressed and walked with Nagare's own record parser.

use bytes::Bytes;
use nagare_protocol::record_batch;

use crate::error::StorageError;
use crate::log::Log;
use crate::records;

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
///
/// Records are walked by Nagare's own record parser (`crate::records`), not
/// `kafka-protocol`'s decoder: that one reserves and initialises whatever header count (and
/// snappy length) a record claims before reading it, so ~200 stored bytes could make it
/// allocate gigabytes (found by the `record_batch` fuzz target). Here every allocation is
/// bounded by the bytes read: a batch's records section, and one entry per record present.
pub fn replay_records(log: &Log, mut f: impl FnMut(ReplayedRecord)) -> Result<(), StorageError> {
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let corrupt =
        |e: String| StorageError::CorruptRecord(format!("replaying {}: {e}", log.dir().display()));
    while offset < end {
        let data = log.read(offset, 4 << 20, true, end)?;
        let Some(slice) = data.slice else { break };
        let bytes: Bytes = slice.read_to_bytes()?;
        // Batch headers decide where the next read starts: compaction can leave batches
        // without records (a producer's last batch) that records alone would not move past.
        let mut next = offset;
        for item in record_batch::batches(&bytes) {
            let (h, range) = item.map_err(|e| corrupt(e.to_string()))?;
            next = next.max(h.next_offset());
            let batch = &bytes[range];
            // As the decoder this replaces: a batch whose CRC does not match is refused.
            record_batch::validate_crc(batch)
                .map_err(|e| corrupt(format!("batch at offset {}: {e}", h.base_offset)))?;
            let section = records::records_section(&h, batch)
                .map_err(|e| corrupt(format!("batch at offset {}: {e}", h.base_offset)))?;
            let recs = records::parse_records(&section, h.records_count)
                .map_err(|e| corrupt(format!("batch at offset {}: {e}", h.base_offset)))?;
            for r in recs {
                let record_offset = h.base_offset.wrapping_add(i64::from(r.offset_delta));
                // A read starts at the batch holding `offset`: skip what was already seen.
                if record_offset < offset {
                    continue;
                }
                let value = match (r.has_value, r.value) {
                    (false, _) => None,
                    (true, Some(v)) => Some(section.slice_ref(v)),
                    (true, None) => {
                        return Err(corrupt(format!(
                            "record at offset {record_offset}: value runs past the record"
                        )))
                    }
                };
                f(ReplayedRecord {
                    offset: record_offset,
                    key: r.key.map(|k| section.slice_ref(k)),
                    value,
                    control: h.is_control(),
                    transactional: h.is_transactional(),
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
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
