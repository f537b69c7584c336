//! Record batch parsing and validation, every codec (none, gzip, snappy, lz4, zstd): the
//! input (after a flags byte) is the records field of a Produce request, appended to a real
//! log as a leader or a follower, on a compacted topic (whose key check decompresses and
//! walks every record) or not. What was accepted is then read back the ways the broker
//! reads it: fetch, ListOffsets by timestamp (decodes the batch), the log cleaner
//! (decompress, filter, recompress) and record replay (a coordinator loading its partition).
//! Errors are fine; a panic, an abort or memory beyond libFuzzer's `-rss_limit_mb` is not.

use crate::Input;
use bytes::{Bytes, BytesMut};
use nagare_protocol::record_batch::{batches, update_crc};
use nagare_storage::{Cleaner, CleanerConfig, Log, LogConfig, TopicPartition};

/// Attributes byte offset within a batch (the low 3 bits are the codec).
const ATTRIBUTES_LOW: usize = 22;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.u8();
    let mut records = BytesMut::from(input.rest());
    // Mutated batches almost never carry a valid CRC; most runs fix the CRCs up so the
    // fuzzer gets past the checksum into the codecs and record parsing.
    if flags & 0x01 == 0 {
        let ranges: Vec<_> = batches(&records)
            .filter_map(Result::ok)
            .map(|(_, r)| r)
            .collect();
        for r in ranges {
            if flags & 0x70 != 0 {
                // Force a codec (1..=4 gzip, snappy, lz4, zstd; 5..7 invalid).
                let codec = (flags >> 4) & 0x07;
                let b = &mut records[r.start + ATTRIBUTES_LOW];
                *b = (*b & !0x07) | codec;
            }
            let _ = update_crc(&mut records[r]);
        }
    }
    let compacted = flags & 0x02 != 0;
    let follower = flags & 0x04 != 0;
    let dir = crate::scratch_dir();
    let config = LogConfig {
        // Tiny segments: the fixed batch appended after the input rolls the segment, so
        // the cleaner gets to the input's batches.
        segment_bytes: 512,
        segment_index_bytes: 4096,
        index_interval_bytes: 64,
        retention_ms: -1,
        message_timestamp_after_max_ms: i64::MAX,
        message_timestamp_before_max_ms: i64::MAX,
        cleanup_policy_delete: !compacted,
        cleanup_policy_compact: compacted,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    };
    let tp = TopicPartition::new("fuzz", 0);
    let log = Log::open(
        dir.path().join("fuzz-0"),
        tp.clone(),
        config,
        0,
        true,
        1_000,
    )
    .expect("open an empty log");
    let appended = if follower {
        log.append_as_follower(records, 1_000)
    } else {
        log.append_as_leader(records, 0, 1_000)
    };
    if appended.is_err() {
        return;
    }
    // A well-formed batch after the input: rolls the segment (segment_bytes is tiny).
    let tail = nagare_protocol::batch_builder::build_batch(
        [(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"v")),
        )],
        0,
        1_000,
    )
    .expect("build");
    let _ = log.append_as_leader(tail, 0, 1_000);
    let end = log.log_end_offset();
    let _ = log.read(log.log_start_offset(), 1 << 20, true, end);
    let _ = log.offset_for_timestamp(0);
    let _ = log.offset_for_timestamp(i64::MAX);
    let _ = log.max_timestamp_offset();
    // Replay (a coordinator loading its partition): walks and decompresses every record.
    let _ = nagare_storage::replay_records(&log, |_| {});
    if compacted {
        let cleaner = Cleaner::open(dir.path().to_path_buf());
        let _ = cleaner.clean_log(&tp, &log, &CleanerConfig::default(), 2_000, true);
    }
    let _ = log.close();
}
