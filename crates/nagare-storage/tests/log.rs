//! Behaviour of `Log` and `LogManager` against real files.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use common::*;
use kafka_protocol::records::Compression;
use nagare_protocol::record_batch::{self, RecordBatchHeader, TimestampType as BatchTs};
use nagare_storage::{
    AppendOrigin, Log, LogConfig, LogManager, StorageError, TimestampType, TopicPartition,
    CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT_FILE, RECOVERY_POINT_CHECKPOINT_FILE,
};

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir.to_path_buf(), tp(), config, 0, false, 0).expect("open log")
}

fn reopen(dir: &Path, config: LogConfig, clean: bool, recovery_point: i64) -> Log {
    Log::open(dir.to_path_buf(), tp(), config, recovery_point, clean, 0).expect("reopen log")
}

fn read_all(log: &Log, offset: i64) -> Vec<u8> {
    let data = log.read(offset, usize::MAX, true, i64::MAX).expect("read");
    match data.slice {
        Some(s) => s.read_to_bytes().expect("pread").to_vec(),
        None => Vec::new(),
    }
}

/// Reads every record from `from` to the end, one fetch at a time.
fn records_from(log: &Log, from: i64) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let bytes = read_all(log, offset);
        assert!(!bytes.is_empty(), "no data at {offset}");
        let recs = decode(&bytes);
        offset = recs.last().expect("records").0 + 1;
        out.extend(recs.into_iter().filter(|r| r.0 >= from));
    }
    out
}

fn headers(bytes: &[u8]) -> Vec<RecordBatchHeader> {
    record_batch::batches(bytes)
        .map(|r| r.expect("valid batch").0)
        .collect()
}

fn segment_files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn active_log_path(dir: &Path) -> std::path::PathBuf {
    dir.join(segment_files(dir, ".log").last().expect("a segment"))
}

#[test]
fn log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<LogManager>();
}

#[test]
fn append_assigns_offsets_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let a = log.append_as_leader(batch(3, 100), 7, 1).expect("append");
    assert_eq!((a.first_offset, a.last_offset, a.record_count), (0, 2, 3));
    assert_eq!(a.max_timestamp, 102);
    assert_eq!(a.log_append_time, -1);
    assert!(!a.duplicate);
    let b = log.append_as_leader(batch(2, 200), 7, 2).expect("append");
    assert_eq!((b.first_offset, b.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);

    let bytes = read_all(&log, 0);
    let hs = headers(&bytes);
    assert_eq!(hs.len(), 2);
    assert_eq!((hs[0].base_offset, hs[1].base_offset), (0, 3));
    assert!(hs.iter().all(|h| h.partition_leader_epoch == 7));
    for r in record_batch::batches(&bytes) {
        let (_, range) = r.expect("batch");
        record_batch::validate_crc(&bytes[range]).expect("crc still valid");
    }
    let recs = decode(&bytes);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(recs[3].1, 200);

    // The on-disk layout is Kafka's.
    assert_eq!(
        segment_files(dir.path(), ".log"),
        vec!["00000000000000000000.log"]
    );
    assert_eq!(segment_files(dir.path(), ".index").len(), 1);
    assert_eq!(segment_files(dir.path(), ".timeindex").len(), 1);
    let on_disk = fs::read(active_log_path(dir.path())).expect("read segment");
    assert_eq!(on_disk, bytes);
}

#[test]
fn several_batches_in_one_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    log.append_as_leader(batch(1, 1), 0, 0).expect("append");
    let mut buf = batch(2, 10);
    buf.extend_from_slice(&batch(3, 20));
    buf.extend_from_slice(&batch(1, 30));
    let info = log.append_as_leader(buf, 0, 0).expect("append");
    assert_eq!(
        (info.first_offset, info.last_offset, info.record_count),
        (1, 6, 6)
    );
    assert_eq!(info.max_timestamp, 30);
    let hs = headers(&read_all(&log, 0));
    assert_eq!(
        hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 1, 3, 6]
    );
}

#[test]
fn empty_append_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    let info = log.append_as_leader(BytesMut::new(), 0, 0).expect("append");
    assert_eq!(
        (info.first_offset, info.last_offset, info.record_count),
        (-1, -1, 0)
    );
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn read_from_the_middle_of_a_batch_returns_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    for i in 0..20 {
        log.append_as_leader(batch(5, i * 10), 0, 0)
            .expect("append");
    }
    for offset in 0..100 {
        let bytes = read_all(&log, offset);
        let hs = headers(&bytes);
        assert_eq!(hs[0].base_offset, offset / 5 * 5, "offset {offset}");
        assert!(hs[0].last_offset() >= offset);
    }
    // Offsets a consumer skips are still in the batch.
    assert_eq!(records_from(&log, 42)[0].0, 42);
}

#[test]
fn read_limits_min_one_batch_and_max_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    let mut sizes = Vec::new();
    for _ in 0..5 {
        let b = batch(2, 0);
        sizes.push(b.len());
        log.append_as_leader(b, 0, 0).expect("append");
    }
    let size = sizes[0];
    // Exactly two batches fit.
    let d = log
        .read(0, size * 2 + size / 2, false, i64::MAX)
        .expect("read");
    assert_eq!(d.slice.expect("data").len, size * 2);
    assert_eq!((d.log_start_offset, d.log_end_offset), (0, 10));
    // Too small for one batch: nothing, unless min_one_batch (KIP-74).
    let d = log.read(0, size - 1, false, i64::MAX).expect("read");
    assert!(d.slice.is_none());
    let d = log.read(3, 1, true, i64::MAX).expect("read");
    let s = d.slice.expect("one batch");
    assert_eq!(s.len, size);
    assert_eq!(
        headers(&s.read_to_bytes().expect("pread"))[0].base_offset,
        2
    );
    // max_offset is exclusive and only whole batches below it are returned.
    let d = log.read(0, usize::MAX, true, 6).expect("read");
    let hs = headers(&d.slice.expect("data").read_to_bytes().expect("pread"));
    assert_eq!(hs.last().expect("batch").last_offset(), 5);
    let d = log.read(0, usize::MAX, true, 5).expect("read");
    let hs = headers(&d.slice.expect("data").read_to_bytes().expect("pread"));
    assert_eq!(hs.len(), 2, "the batch 4..5 straddles max_offset 5");
    assert!(log
        .read(6, usize::MAX, true, 6)
        .expect("read")
        .slice
        .is_none());
    // The end of the log is empty, beyond it is out of range.
    assert!(log
        .read(10, usize::MAX, true, i64::MAX)
        .expect("read")
        .slice
        .is_none());
    assert!(matches!(
        log.read(11, 100, true, i64::MAX),
        Err(StorageError::OffsetOutOfRange {
            offset: 11,
            log_start: 0,
            log_end: 10
        })
    ));
    assert!(matches!(
        log.read(-1, 100, true, i64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 3,
        ..small_config()
    };
    let log = open(dir.path(), config.clone());
    for i in 0..10 {
        log.append_as_leader(batch(1, i), 0, 0).expect("append");
    }
    assert_eq!(log.segment_count(), 4);
    assert_eq!(log.segment_base_offsets(), vec![0, 3, 6, 9]);
    assert_eq!(
        segment_files(dir.path(), ".log"),
        vec![
            "00000000000000000000.log",
            "00000000000000000003.log",
            "00000000000000000006.log",
            "00000000000000000009.log"
        ]
    );
    // A read stays within one segment.
    let d = log.read(1, usize::MAX, true, i64::MAX).expect("read");
    assert_eq!(d.slice.expect("data").len as u64, one * 2);
    assert_eq!(records_from(&log, 0).len(), 10);
    assert_eq!(log.size_bytes(), one * 10);
    // Producer snapshots are taken at rolls; only the latest two are kept.
    assert_eq!(log.producer_snapshot_offsets(), vec![6, 9]);
    assert_eq!(
        segment_files(dir.path(), ".snapshot"),
        vec![
            "00000000000000000006.snapshot",
            "00000000000000000009.snapshot"
        ]
    );
    // A set bigger than a segment is refused.
    let mut big = BytesMut::new();
    for _ in 0..4 {
        big.extend_from_slice(&batch(1, 0));
    }
    assert!(matches!(
        log.append_as_leader(big, 0, 0),
        Err(StorageError::RecordListTooLarge { .. })
    ));
}

#[test]
fn rolls_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: 1_000,
        ..small_config()
    };
    let log = open(dir.path(), config);
    log.append_as_leader(batch(1, 0), 0, 10_000)
        .expect("append");
    log.append_as_leader(batch(1, 0), 0, 10_900)
        .expect("append");
    assert_eq!(log.segment_count(), 1);
    log.append_as_leader(batch(1, 0), 0, 11_001)
        .expect("append");
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    // Retention rolls a due segment even without appends; never an empty one.
    assert_eq!(log.enforce_retention(11_500).expect("retention"), 0);
    assert_eq!(log.segment_count(), 2);
    log.enforce_retention(12_002).expect("retention");
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 3]);
    log.enforce_retention(20_000).expect("retention");
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn rolls_when_the_index_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_index_bytes: 24, // 3 offset entries, 2 time entries
        index_interval_bytes: 0,
        ..small_config()
    };
    let log = open(dir.path(), config);
    for i in 0..10 {
        log.append_as_leader(batch(1, i * 10), 0, 0)
            .expect("append");
    }
    assert!(
        log.segment_count() >= 3,
        "segments: {:?}",
        log.segment_base_offsets()
    );
    assert_eq!(records_from(&log, 0).len(), 10);
    log.close().expect("close");
    for name in segment_files(dir.path(), ".timeindex") {
        let len = fs::metadata(dir.path().join(name)).expect("meta").len();
        // Two regular entries plus the final max-timestamp entry at most.
        assert!(len <= 36, "time index of {len} bytes");
        assert_eq!(len % 12, 0);
    }
    for name in segment_files(dir.path(), ".index") {
        let len = fs::metadata(dir.path().join(name)).expect("meta").len();
        assert!(len <= 24, "offset index of {len} bytes");
        assert_eq!(len % 8, 0);
    }
}

#[test]
fn sparse_index_entries_follow_kafka_spacing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        index_interval_bytes: one * 2,
        ..small_config()
    };
    let log = open(dir.path(), config);
    for i in 0..10 {
        log.append_as_leader(batch(1, i), 0, 0).expect("append");
    }
    log.close().expect("close");
    let index = fs::read(dir.path().join("00000000000000000000.index")).expect("index");
    let entries: Vec<(u32, u32)> = index
        .chunks(8)
        .map(|c| {
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    // An entry whenever more than index.interval.bytes were appended since the last one:
    // (batch last offset, batch position).
    assert_eq!(
        entries,
        vec![
            (3, 3 * one as u32),
            (6, 6 * one as u32),
            (9, 9 * one as u32)
        ]
    );
    let time = fs::read(dir.path().join("00000000000000000000.timeindex")).expect("timeindex");
    assert_eq!(time.len() % 12, 0);
    let last = &time[time.len() - 12..];
    assert_eq!(i64::from_be_bytes(last[0..8].try_into().expect("8")), 9);
    assert_eq!(u32::from_be_bytes(last[8..12].try_into().expect("4")), 9);
}

#[test]
fn validation_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        max_message_bytes: 200,
        ..small_config()
    };
    let log = open(dir.path(), config);
    let big = build(&Spec {
        records: 1,
        value_size: 300,
        ..Spec::default()
    });
    assert!(matches!(
        log.append_as_leader(big, 0, 0),
        Err(StorageError::RecordTooLarge { max: 200, .. })
    ));
    let mut bad_crc = batch(1, 0);
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 1;
    assert!(matches!(
        log.append_as_leader(bad_crc, 0, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut bad_magic = batch(1, 0);
    bad_magic[16] = 1;
    assert!(matches!(
        log.append_as_leader(bad_magic, 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    let mut truncated = batch(2, 0);
    truncated.truncate(truncated.len() - 3);
    assert!(matches!(
        log.append_as_leader(truncated, 0, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut short_len = batch(1, 0);
    short_len[8..12].copy_from_slice(&40i32.to_be_bytes());
    assert!(matches!(
        log.append_as_leader(short_len, 0, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    // Record count inconsistent with the offset range.
    let mut count = batch(2, 0);
    count[57..61].copy_from_slice(&5i32.to_be_bytes());
    record_batch::update_crc(&mut count).expect("crc");
    assert!(matches!(
        log.append_as_leader(count, 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    // Clients may not write control batches.
    let mut control = batch(1, 0);
    control[22] |= 1 << 5;
    record_batch::update_crc(&mut control).expect("crc");
    assert!(matches!(
        log.append_as_leader(control.clone(), 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    // The broker itself may, if it is a transaction marker (a producer's one control
    // record).
    assert!(matches!(
        log.append_as_leader_with_origin(control, 0, 0, AppendOrigin::Coordinator),
        Err(StorageError::InvalidRecord(_))
    ));
    let marker =
        nagare_protocol::batch_builder::build_control_batch(3, 0, 0, true, 0, 0).expect("marker");
    log.append_as_leader_with_origin(BytesMut::from(&marker[..]), 0, 0, AppendOrigin::Coordinator)
        .expect("coordinator control batch");
    // Nothing invalid was written.
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn timestamps_too_far_in_the_future_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        message_timestamp_after_max_ms: 3_600_000,
        message_timestamp_before_max_ms: 10_000,
        ..small_config()
    };
    let log = open(dir.path(), config);
    let now = 1_700_000_000_000;
    log.append_as_leader(batch(1, now + 1_000), 0, now)
        .expect("slightly ahead is fine");
    // Refused as Kafka does (KIP-467): INVALID_TIMESTAMP naming the record.
    for ts in [now + 3_600_001, now - 10_001] {
        match log.append_as_leader(batch(1, ts), 0, now) {
            Err(StorageError::RejectedRecords(r)) => {
                assert!(r.invalid_timestamp);
                assert_eq!(r.records.len(), 1);
                assert_eq!(r.records[0].batch_index, 0);
                assert!(r.records[0]
                    .message
                    .starts_with(&format!("Timestamp {ts} ")));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let log = open(dir.path(), config);
    let info = log
        .append_as_leader(batch(3, 5), 0, 777_000)
        .expect("append");
    assert_eq!(info.log_append_time, 777_000);
    assert_eq!(info.max_timestamp, 777_000);
    let bytes = read_all(&log, 0);
    let h = headers(&bytes)[0];
    assert_eq!(h.timestamp_type(), BatchTs::LogAppendTime);
    assert_eq!(h.max_timestamp, 777_000);
    record_batch::validate_crc(&bytes).expect("crc recomputed");
    let found = log
        .offset_for_timestamp(700_000)
        .expect("search")
        .expect("found");
    assert_eq!((found.offset, found.timestamp), (0, 777_000));
    assert!(log.offset_for_timestamp(777_001).expect("search").is_none());
}

#[test]
fn offset_for_timestamp_uncompressed_and_gzip() {
    for compression in [Compression::None, Compression::Gzip] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            segment_bytes: 2_000,
            index_interval_bytes: 0,
            ..small_config()
        };
        let log = open(dir.path(), config);
        // Batch i holds 10 records with timestamps 1000*i .. 1000*i + 9.
        for i in 0..30 {
            log.append_as_leader(
                build(&Spec {
                    records: 10,
                    timestamp: 1_000 * i,
                    compression,
                    leader_epoch: 0,
                    ..Spec::default()
                }),
                3,
                0,
            )
            .expect("append");
        }
        assert!(log.segment_count() > 1);
        for (ts, offset) in [
            (0, 0),
            (5, 5),
            (9, 9),
            (10, 10),
            (999, 10),
            (1_000, 10),
            (17_004, 174),
            (29_009, 299),
        ] {
            let found = log
                .offset_for_timestamp(ts)
                .expect("search")
                .expect("found");
            assert_eq!(found.offset, offset, "ts {ts} ({compression:?})");
            assert!(found.timestamp >= ts);
            assert_eq!(found.leader_epoch, 3);
        }
        assert!(log.offset_for_timestamp(29_010).expect("search").is_none());
        let max = log.max_timestamp_offset().expect("max").expect("found");
        assert_eq!((max.timestamp, max.offset), (29_009, 299));
        // Records below the log start offset are not answered.
        log.delete_records_before(155).expect("delete records");
        let found = log.offset_for_timestamp(0).expect("search").expect("found");
        assert_eq!(found.offset, 155);
    }
}

#[test]
fn max_timestamp_offset_is_the_first_record_with_the_largest_timestamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    assert!(log.max_timestamp_offset().expect("max").is_none());
    log.append_as_leader(batch(3, 100), 0, 0).expect("append"); // 100..102
    log.append_as_leader(batch(3, 500), 0, 0).expect("append"); // 500..502
    log.append_as_leader(batch(3, 50), 0, 0).expect("append"); // 50..52
    let max = log.max_timestamp_offset().expect("max").expect("found");
    assert_eq!((max.timestamp, max.offset), (502, 5));
}

#[test]
fn retention_by_bytes_moves_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        retention_bytes: (one * 5) as i64,
        ..small_config()
    };
    let log = open(dir.path(), config.clone());
    for i in 0..10 {
        log.append_as_leader(batch(1, i), 0, 0).expect("append");
    }
    assert_eq!(log.segment_count(), 5);
    let deleted = log.enforce_retention(0).expect("retention");
    // 10 batches, at most 5 kept: delete whole segments while the excess allows.
    assert_eq!(deleted, 2);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.segment_base_offsets(), vec![4, 6, 8]);
    assert!(matches!(
        log.read(3, 100, true, i64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(records_from(&log, 4).len(), 6);
    // The active segment is never deleted.
    log.update_config(LogConfig {
        retention_bytes: 0,
        ..config
    });
    log.enforce_retention(0).expect("retention");
    assert_eq!(log.segment_base_offsets(), vec![8]);
    assert_eq!(log.log_start_offset(), 8);
    assert!(!dir.path().join("00000000000000000000.log").exists());
}

/// Kafka's `deletableSegments` bound: retention of a replicated log deletes only segments
/// entirely below the high watermark, so unreplicated records survive whatever
/// `retention.bytes`/`retention.ms` say, and the log start never passes the high watermark.
#[test]
fn retention_stops_at_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        retention_bytes: 0,
        retention_ms: 1,
        ..small_config()
    };
    let log = open(dir.path(), config);
    for i in 0..10 {
        log.append_as_leader(batch(1, i), 0, 0).expect("append");
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6, 8]);
    // HW 5: segments [0,1] and [2,3] end below it, [4,5] does not.
    assert_eq!(
        log.enforce_retention_below(10_000, 5).expect("retention"),
        2
    );
    assert_eq!(log.segment_base_offsets(), vec![4, 6, 8]);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(
        log.enforce_retention_below(10_000, 5).expect("retention"),
        0
    );
    // HW 6: [4,5] ends at it and goes.
    assert_eq!(
        log.enforce_retention_below(10_000, 6).expect("retention"),
        1
    );
    assert_eq!(log.log_start_offset(), 6);
}

#[test]
fn retention_by_time_moves_log_start_and_respects_delete_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        retention_ms: 1_000,
        file_delete_delay_ms: 500,
        ..small_config()
    };
    let log = open(dir.path(), config.clone());
    // Segment [0,1] has timestamps ~100, [2,3] ~2000, [4,5] ~5000.
    for ts in [100, 101, 2_000, 2_001, 5_000, 5_001] {
        log.append_as_leader(batch(1, ts), 0, 0).expect("append");
    }
    assert_eq!(log.enforce_retention(1_000).expect("retention"), 0);
    assert_eq!(log.enforce_retention(2_500).expect("retention"), 1);
    assert_eq!(log.log_start_offset(), 2);
    // Renamed, not yet removed: in-flight reads of the segment still work.
    assert!(dir.path().join("00000000000000000000.log.deleted").exists());
    assert!(!dir.path().join("00000000000000000000.log").exists());
    log.enforce_retention(3_001).expect("retention");
    assert!(!dir.path().join("00000000000000000000.log.deleted").exists());
    // cleanup.policy=compact only: no time retention.
    log.update_config(LogConfig {
        cleanup_policy_delete: false,
        ..config.clone()
    });
    assert_eq!(log.enforce_retention(100_000).expect("retention"), 0);
    log.update_config(config);
    // The active segment [4,5] is never deleted.
    assert_eq!(log.enforce_retention(100_000).expect("retention"), 1);
    assert_eq!(log.segment_base_offsets(), vec![4]);
    assert_eq!(log.log_start_offset(), 4);
}

#[test]
fn delete_records_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2 * 3,
        ..small_config()
    };
    let log = open(dir.path(), config);
    for i in 0..10 {
        log.append_as_leader(batch(2, i), 0, 0).expect("append"); // larger batches
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 2);
    assert_eq!(log.delete_records_before(3).expect("delete"), 3);
    assert_eq!(log.log_start_offset(), 3);
    // The batch containing the start offset is still served whole.
    let bytes = read_all(&log, 3);
    assert_eq!(headers(&bytes)[0].base_offset, 2);
    // Moving backwards is a no-op.
    assert_eq!(log.delete_records_before(1).expect("delete"), 3);
    assert!(matches!(
        log.delete_records_before(21),
        Err(StorageError::OffsetOutOfRange { offset: 21, .. })
    ));
    let before = log.segment_count();
    assert_eq!(log.delete_records_before(13).expect("delete"), 13);
    assert!(log.segment_count() < before);
    assert!(log.segment_base_offsets()[0] <= 13);
    // Up to the log end: everything goes, offsets continue.
    assert_eq!(log.delete_records_before(20).expect("delete"), 20);
    assert_eq!(log.segment_base_offsets(), vec![20]);
    assert_eq!(log.size_bytes(), 0);
    let info = log.append_as_leader(batch(1, 0), 0, 0).expect("append");
    assert_eq!(info.first_offset, 20);
}

#[test]
fn crash_recovery_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config();
    let mut sizes = Vec::new();
    {
        let log = open(dir.path(), config.clone());
        for i in 0..5 {
            let b = batch(2, i);
            sizes.push(b.len() as u64);
            log.append_as_leader(b, 0, 0).expect("append");
        }
        // Dropped without close(): a crash.
    }
    let seg = active_log_path(dir.path());
    let full: u64 = sizes.iter().sum();
    // Tear the last batch in half.
    let f = fs::OpenOptions::new().write(true).open(&seg).expect("open");
    f.set_len(full - sizes[4] / 2).expect("truncate");
    drop(f);
    {
        let log = reopen(dir.path(), config.clone(), false, 0);
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(fs::metadata(&seg).expect("meta").len(), full - sizes[4]);
        assert_eq!(records_from(&log, 0).len(), 8);
        let info = log.append_as_leader(batch(2, 9), 0, 0).expect("append");
        assert_eq!(info.first_offset, 8);
    }
    // Garbage after the last batch.
    let len = fs::metadata(&seg).expect("meta").len();
    let f = fs::OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(&[0xAB; 100], len).expect("garbage");
    drop(f);
    {
        let log = reopen(dir.path(), config.clone(), false, 0);
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(fs::metadata(&seg).expect("meta").len(), len);
    }
    // A flipped bit in the middle: everything from that batch on goes.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open");
    let mut byte = [0u8; 1];
    let pos = sizes[0] + sizes[1] + 70;
    f.read_exact_at(&mut byte, pos).expect("read");
    f.write_all_at(&[byte[0] ^ 0x10], pos).expect("flip");
    drop(f);
    let log = reopen(dir.path(), config, false, 0);
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(records_from(&log, 0).len(), 4);
}

#[test]
fn crash_recovery_verifies_crcs_from_the_recovery_point_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config();
    let mut sizes = Vec::new();
    let rp;
    {
        let log = open(dir.path(), config.clone());
        for i in 0..6 {
            let b = batch(2, i);
            sizes.push(b.len() as u64);
            log.append_as_leader(b, 0, 0).expect("append");
            if i == 2 {
                log.flush().expect("flush");
            }
        }
        rp = log.recovery_point();
        assert_eq!(rp, 6);
        // Dropped without close(): a crash.
    }
    let seg = active_log_path(dir.path());
    let flip = |pos: u64| {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .expect("open");
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, pos).expect("read");
        f.write_all_at(&[byte[0] ^ 0x10], pos).expect("flip");
    };
    // A record byte of the fifth batch (unflushed) flips: the log ends before it.
    flip(sizes[..4].iter().sum::<u64>() + 70);
    // One of the second batch (fsynced, below the recovery point) too: its CRC is not read,
    // like those of every flushed segment; only headers are checked there.
    flip(sizes[0] + 70);
    let log = reopen(dir.path(), config, false, rp);
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.recovery_point(), 6);
    let info = log.append_as_leader(batch(1, 9), 0, 0).expect("append");
    assert_eq!(info.first_offset, 8);
}

#[test]
fn crash_recovery_deletes_segments_after_a_corrupt_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        ..small_config()
    };
    {
        let log = open(dir.path(), config.clone());
        for i in 0..6 {
            log.append_as_leader(batch(1, i), 0, 0).expect("append");
        }
        // Segments 0, 2 and 4 are flushed up to offset 2.
        log.flush().expect("flush");
        assert_eq!(log.recovery_point(), 6);
    }
    // Corrupt the second segment (offsets 2..3) in its second batch.
    let seg = dir.path().join("00000000000000000002.log");
    let f = fs::OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(&[0xFF; 4], one + 30).expect("corrupt");
    drop(f);
    // Recovery point 2: the segment holding it and all later ones are scanned.
    let log = reopen(dir.path(), config, false, 2);
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    assert!(!dir.path().join("00000000000000000004.log").exists());
    assert_eq!(log.recovery_point(), 2);
    let info = log.append_as_leader(batch(1, 0), 0, 0).expect("append");
    assert_eq!(info.first_offset, 3);
}

#[test]
fn recovery_survives_garbage_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config();
    {
        let log = open(dir.path(), config.clone());
        log.append_as_leader(batch(2, 0), 0, 0).expect("append");
    }
    // A segment that is pure garbage, a stray index, a stale temp file.
    fs::write(dir.path().join("00000000000000000002.log"), [7u8; 33]).expect("write");
    fs::write(dir.path().join("00000000000000000099.index"), [1u8; 5]).expect("write");
    fs::write(dir.path().join("leader-epoch-checkpoint.tmp"), b"junk").expect("write");
    let log = reopen(dir.path(), config, false, 0);
    assert_eq!(log.log_end_offset(), 2);
    assert!(!dir.path().join("00000000000000000099.index").exists());
    assert!(!dir.path().join("leader-epoch-checkpoint.tmp").exists());
    let info = log.append_as_leader(batch(1, 0), 0, 0).expect("append");
    assert_eq!(info.first_offset, 2);
    assert_eq!(records_from(&log, 0).len(), 3);
}

#[test]
fn clean_shutdown_trusts_files_and_rebuilds_bad_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 4,
        index_interval_bytes: 0,
        ..small_config()
    };
    {
        let log = open(dir.path(), config.clone());
        for i in 0..10 {
            log.append_as_leader(batch(1, i * 100), 0, 0)
                .expect("append");
        }
        log.close().expect("close");
        assert_eq!(log.recovery_point(), 10);
        assert!(matches!(
            log.append_as_leader(batch(1, 0), 0, 0),
            Err(StorageError::Closed)
        ));
    }
    {
        let log = reopen(dir.path(), config.clone(), true, 0);
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(log.recovery_point(), 10);
        assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
        assert_eq!(records_from(&log, 0).len(), 10);
        assert_eq!(
            log.offset_for_timestamp(450)
                .expect("search")
                .expect("found")
                .offset,
            5
        );
        log.close().expect("close");
    }
    // Corrupt one index, delete another: both are rebuilt.
    fs::write(dir.path().join("00000000000000000004.index"), [0u8; 12]).expect("write");
    fs::remove_file(dir.path().join("00000000000000000000.timeindex")).expect("rm");
    let log = reopen(dir.path(), config, true, 0);
    assert_eq!(log.log_end_offset(), 10);
    for offset in 0..10 {
        assert_eq!(headers(&read_all(&log, offset))[0].base_offset, offset);
    }
    assert_eq!(
        log.offset_for_timestamp(150)
            .expect("search")
            .expect("found")
            .offset,
        2
    );
    assert_eq!(
        fs::metadata(dir.path().join("00000000000000000004.index"))
            .expect("meta")
            .len()
            % 8,
        0
    );
}

#[test]
fn flush_advances_the_recovery_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    assert_eq!(log.flush().expect("flush"), 0);
    log.append_as_leader(batch(3, 0), 0, 0).expect("append");
    assert_eq!(log.recovery_point(), 0);
    assert_eq!(log.flush().expect("flush"), 3);
    assert_eq!(log.recovery_point(), 3);
    assert_eq!(log.flush().expect("flush"), 3);
}

#[test]
fn idempotent_producer_dedup_and_sequence_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    let pid = 1000;
    let a = log
        .append_as_leader(idempotent(pid, 0, 0, 3), 0, 0)
        .expect("append");
    let b = log
        .append_as_leader(idempotent(pid, 0, 3, 2), 0, 0)
        .expect("append");
    assert_eq!((b.first_offset, b.last_offset), (3, 4));
    // A retry of either of the cached batches is a duplicate with the original offsets.
    let dup = log
        .append_as_leader(idempotent(pid, 0, 0, 3), 0, 0)
        .expect("append");
    assert!(dup.duplicate);
    assert_eq!(
        (dup.first_offset, dup.last_offset),
        (a.first_offset, a.last_offset)
    );
    let dup = log
        .append_as_leader(idempotent(pid, 0, 3, 2), 0, 0)
        .expect("append");
    assert!(dup.duplicate);
    assert_eq!((dup.first_offset, dup.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5, "duplicates write nothing");
    // Gaps and overlaps are out of order.
    assert!(matches!(
        log.append_as_leader(idempotent(pid, 0, 6, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert!(matches!(
        log.append_as_leader(idempotent(pid, 0, 4, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    log.append_as_leader(idempotent(pid, 0, 5, 1), 0, 0)
        .expect("in sequence");
    // A new epoch must start at 0.
    assert!(matches!(
        log.append_as_leader(idempotent(pid, 1, 6, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    log.append_as_leader(idempotent(pid, 1, 0, 1), 0, 0)
        .expect("new epoch");
    // The old epoch is fenced.
    assert!(matches!(
        log.append_as_leader(idempotent(pid, 0, 6, 1), 0, 0),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    // Kafka 4: an unknown producer may start at any sequence.
    log.append_as_leader(idempotent(2000, 0, 42, 1), 0, 0)
        .expect("unknown pid");
    log.append_as_leader(idempotent(2000, 0, 43, 1), 0, 0)
        .expect("next");
    let state = log.producer_state(pid).expect("state");
    assert_eq!(state.producer_epoch, 1);
    assert_eq!(state.last_seq(), 0);
    assert_eq!(log.producer_states().len(), 2);
}

#[test]
fn only_the_last_five_batches_are_deduplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    for seq in 0..7 {
        log.append_as_leader(idempotent(1, 0, seq, 1), 0, 0)
            .expect("append");
    }
    for seq in 2..7 {
        assert!(
            log.append_as_leader(idempotent(1, 0, seq, 1), 0, 0)
                .expect("dup")
                .duplicate
        );
    }
    assert!(matches!(
        log.append_as_leader(idempotent(1, 0, 1, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
}

#[test]
fn sequence_numbers_wrap_at_i32_max() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    log.append_as_leader(idempotent(1, 0, i32::MAX - 1, 2), 0, 0)
        .expect("append");
    log.append_as_leader(idempotent(1, 0, 0, 1), 0, 0)
        .expect("wraps to 0");
    assert!(
        log.append_as_leader(idempotent(1, 0, i32::MAX - 1, 2), 0, 0)
            .expect("dup")
            .duplicate
    );
}

#[test]
fn producer_state_survives_clean_restart_and_crash() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = idempotent(1, 0, 0, 1).len() as u64;
        let config = LogConfig {
            segment_bytes: one * 3,
            ..small_config()
        };
        {
            let log = open(dir.path(), config.clone());
            for seq in 0..8 {
                log.append_as_leader(idempotent(1, 0, seq, 1), 0, 0)
                    .expect("append");
            }
            log.append_as_leader(idempotent(2, 4, 0, 1), 0, 0)
                .expect("append");
            if clean {
                log.close().expect("close");
            }
        }
        let log = reopen(dir.path(), config, clean, 0);
        assert_eq!(log.log_end_offset(), 9);
        let dup = log
            .append_as_leader(idempotent(1, 0, 7, 1), 0, 0)
            .expect("dup");
        assert!(dup.duplicate, "clean={clean}");
        assert_eq!(dup.first_offset, 7);
        assert!(matches!(
            log.append_as_leader(idempotent(1, 0, 9, 1), 0, 0),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            log.append_as_leader(idempotent(2, 3, 0, 1), 0, 0),
            Err(StorageError::InvalidProducerEpoch(_))
        ));
        log.append_as_leader(idempotent(1, 0, 8, 1), 0, 0)
            .expect("in sequence");
    }
}

#[test]
fn corrupt_producer_snapshot_falls_back_to_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config();
    {
        let log = open(dir.path(), config.clone());
        log.append_as_leader(idempotent(9, 0, 0, 2), 0, 0)
            .expect("append");
        log.close().expect("close");
    }
    let snap = dir.path().join("00000000000000000002.snapshot");
    let mut bytes = fs::read(&snap).expect("snapshot");
    assert_eq!(&bytes[..4], b"NGPS");
    let n = bytes.len();
    bytes[n - 1] ^= 0xFF;
    fs::write(&snap, &bytes).expect("write");
    let log = reopen(dir.path(), config.clone(), true, 0);
    assert!(
        log.append_as_leader(idempotent(9, 0, 0, 2), 0, 0)
            .expect("dup")
            .duplicate
    );
    assert!(!snap.exists(), "the corrupt snapshot is removed");
    log.close().expect("close");
    // An unknown version is rejected the same way.
    let mut bytes = fs::read(&snap).expect("snapshot");
    bytes[4..6].copy_from_slice(&99u16.to_be_bytes());
    fs::write(&snap, &bytes).expect("write");
    let log = reopen(dir.path(), config, true, 0);
    assert!(
        log.append_as_leader(idempotent(9, 0, 0, 2), 0, 0)
            .expect("dup")
            .duplicate
    );
}

#[test]
fn leader_epoch_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config();
    {
        let log = open(dir.path(), config.clone());
        assert_eq!(log.latest_epoch(), None);
        assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
        log.append_as_leader(batch(2, 0), 0, 0).expect("append"); // 0..1 epoch 0
        log.append_as_leader(batch(2, 0), 0, 0).expect("append"); // 2..3 epoch 0
        log.append_as_leader(batch(2, 0), 2, 0).expect("append"); // 4..5 epoch 2
        log.append_as_leader(batch(2, 0), 5, 0).expect("append"); // 6..7 epoch 5
        assert_eq!(log.latest_epoch(), Some(5));
        assert_eq!(log.end_offset_for_epoch(5), (5, 8));
        assert_eq!(log.end_offset_for_epoch(0), (0, 4));
        assert_eq!(log.end_offset_for_epoch(1), (0, 4));
        assert_eq!(log.end_offset_for_epoch(2), (2, 6));
        assert_eq!(log.end_offset_for_epoch(4), (2, 6));
        assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
        assert_eq!(log.epoch_for_offset(5), Some(2));
        let text = fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).expect("read");
        assert_eq!(text, "0\n3\n0 0\n2 4\n5 6\n");
        // The broker assigns the start of a new epoch when it becomes leader.
        log.assign_epoch_start(6, 8).expect("assign");
        assert_eq!(log.end_offset_for_epoch(5), (5, 8));
    }
    // Survives a crash; entries past the recovered end are dropped.
    let seg = active_log_path(dir.path());
    let len = fs::metadata(&seg).expect("meta").len();
    let f = fs::OpenOptions::new().write(true).open(&seg).expect("open");
    f.set_len(len - 10).expect("tear the last batch");
    drop(f);
    let log = reopen(dir.path(), config.clone(), false, 0);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(log.end_offset_for_epoch(2), (2, 6));
    // A follower append assigns epochs from the batches.
    let b = build(&Spec {
        records: 2,
        base_offset: 6,
        leader_epoch: 7,
        ..Spec::default()
    });
    log.append_as_follower(b, 0).expect("follower append");
    assert_eq!(log.latest_epoch(), Some(7));
    assert_eq!(log.end_offset_for_epoch(3), (2, 6));
    drop(log);
    // A corrupt checkpoint is rebuilt from the batches.
    fs::write(dir.path().join("leader-epoch-checkpoint"), "0\nzzz\n").expect("write");
    let log = reopen(dir.path(), config, true, 0);
    assert_eq!(
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(0, 0), (2, 4), (7, 6)]
    );
}

#[test]
fn follower_append_keeps_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    let mut buf = build(&Spec {
        records: 3,
        base_offset: 0,
        leader_epoch: 1,
        ..Spec::default()
    });
    buf.extend_from_slice(&build(&Spec {
        records: 2,
        base_offset: 3,
        leader_epoch: 1,
        ..Spec::default()
    }));
    let info = log.append_as_follower(buf, 0).expect("append");
    assert_eq!((info.first_offset, info.last_offset), (0, 4));
    assert!(matches!(
        log.append_as_follower(
            build(&Spec {
                base_offset: 3,
                ..Spec::default()
            }),
            0
        ),
        Err(StorageError::UnexpectedAppendOffset {
            first_offset: 3,
            log_end_offset: 5
        })
    ));
    // A gap (compacted leader) is allowed.
    log.append_as_follower(
        build(&Spec {
            base_offset: 9,
            ..Spec::default()
        }),
        0,
    )
    .expect("gap");
    assert_eq!(log.log_end_offset(), 10);
    // Reading an offset in the gap returns the next batch.
    assert_eq!(headers(&read_all(&log, 6))[0].base_offset, 9);
    // Idempotent state is applied from replicated batches too.
    let b = build(&Spec {
        base_offset: 10,
        producer_id: 5,
        producer_epoch: 0,
        base_sequence: 0,
        ..Spec::default()
    });
    log.append_as_follower(b, 0).expect("append");
    assert!(
        log.append_as_leader(idempotent(5, 0, 0, 1), 0, 0)
            .expect("dup")
            .duplicate
    );
}

#[test]
fn truncate_to_fixes_indexes_producer_state_and_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = idempotent(1, 0, 0, 2).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 3,
        index_interval_bytes: 0,
        ..small_config()
    };
    let log = open(dir.path(), config.clone());
    for i in 0..10 {
        let epoch = if i < 5 { 1 } else { 2 };
        log.append_as_leader(idempotent(1, 0, i * 2, 2), epoch, 0)
            .expect("append");
    }
    assert_eq!(log.log_end_offset(), 20);
    log.flush().expect("flush");
    assert_eq!(log.segment_count(), 4);
    // Truncating into the middle of batch 6..7 drops the whole batch.
    log.truncate_to(7).expect("truncate");
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.recovery_point(), 6);
    assert_eq!(log.segment_base_offsets(), vec![0, 6]);
    assert_eq!(log.end_offset_for_epoch(1), (1, 6));
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(records_from(&log, 0).len(), 6);
    // The producer state went back: sequence 6 is next again, 4..5 is a duplicate.
    assert!(
        log.append_as_leader(idempotent(1, 0, 4, 2), 1, 0)
            .expect("dup")
            .duplicate
    );
    assert!(matches!(
        log.append_as_leader(idempotent(1, 0, 8, 2), 1, 0),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    let info = log
        .append_as_leader(idempotent(1, 0, 6, 2), 3, 0)
        .expect("append");
    assert_eq!(info.first_offset, 6);
    assert_eq!(log.end_offset_for_epoch(1), (1, 6));
    assert_eq!(log.end_offset_for_epoch(2), (1, 6));
    // Truncating at a segment boundary, then below the start offset.
    log.truncate_to(6).expect("truncate");
    assert_eq!(log.log_end_offset(), 6);
    log.truncate_to(100).expect("no-op");
    assert_eq!(log.log_end_offset(), 6);
    // A leader epoch claimed at the log end without data (this broker became leader and lost
    // the leadership before writing) goes with a truncation at or past the log end, as in
    // Kafka's `truncateTo`; epochs with data stay.
    log.assign_epoch_start(9, 6).expect("assign");
    assert_eq!(log.latest_epoch(), Some(9));
    log.truncate_to(6).expect("truncate at the end");
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.log_end_offset(), 6);
    log.delete_records_before(4).expect("delete records");
    log.truncate_to(2).expect("truncate below log start");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 2));
    assert_eq!(log.segment_base_offsets(), vec![2]);
    assert_eq!(log.latest_epoch(), None);
    assert!(log.producer_state(1).is_none());
    log.append_as_leader(batch(1, 0), 4, 0).expect("append");
    drop(log);
    // And it all reopens consistently after a crash.
    let log = reopen(dir.path(), config, false, 0);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 3));
}

#[test]
fn a_failed_write_poisons_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("p-0");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one,
        ..small_config()
    };
    let log = Log::open(log_dir.clone(), tp(), config, 0, false, 0).expect("open");
    log.append_as_leader(batch(1, 0), 0, 0).expect("append");
    fs::remove_dir_all(&log_dir).expect("pull the disk");
    // The next append must roll, which fails to create the segment.
    assert!(matches!(
        log.append_as_leader(batch(1, 0), 0, 0),
        Err(StorageError::Io(_))
    ));
    assert!(log.is_poisoned());
    assert!(matches!(
        log.append_as_leader(batch(1, 0), 0, 0),
        Err(StorageError::LogDirFailed)
    ));
    assert!(matches!(log.flush(), Err(StorageError::LogDirFailed)));
    assert!(matches!(log.close(), Err(StorageError::LogDirFailed)));
}

#[test]
fn concurrent_appends_reads_and_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 4_096,
        ..small_config()
    };
    let log = Arc::new(open(dir.path(), config));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for _ in 0..200 {
                    log.append_as_leader(batch(3, 0), 0, 0).expect("append");
                }
            })
        })
        .collect();
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut offset = 0;
            while offset < 1_200 {
                let end = log.log_end_offset();
                if offset < end {
                    let data = log.read(offset, 10_000, true, end).expect("read");
                    let bytes = data.slice.expect("data").read_to_bytes().expect("pread");
                    let hs = headers(&bytes);
                    assert!(hs[0].base_offset <= offset);
                    offset = hs.last().expect("batch").next_offset();
                }
            }
        })
    };
    let flusher = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            while log.log_end_offset() < 1_200 {
                let rp = log.flush().expect("flush");
                assert!(rp <= log.log_end_offset());
            }
        })
    };
    for w in writers {
        w.join().expect("writer");
    }
    reader.join().expect("reader");
    flusher.join().expect("flusher");
    assert_eq!(log.flush().expect("flush"), 1_200);
    assert_eq!(records_from(&log, 0).len(), 1_200);
}

#[test]
fn log_manager_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let config = small_config();
    let a = TopicPartition::new("orders", 0);
    let b = TopicPartition::new("my-topic", 11);
    {
        let mgr = LogManager::open(root.clone(), |_| config.clone(), 0).expect("open");
        assert!(mgr.all().is_empty());
        let la = mgr.get_or_create(&a, config.clone(), 0).expect("create");
        let lb = mgr.get_or_create(&b, config.clone(), 0).expect("create");
        assert!(Arc::ptr_eq(
            &la,
            &mgr.get_or_create(&a, config.clone(), 0).expect("get")
        ));
        assert!(root.join("orders-0").is_dir() && root.join("my-topic-11").is_dir());
        la.append_as_leader(batch(4, 0), 0, 0).expect("append");
        lb.append_as_leader(batch(2, 0), 0, 0).expect("append");
        lb.delete_records_before(1).expect("delete records");
        la.flush().expect("flush");
        mgr.checkpoint().expect("checkpoint");
        let rp = fs::read_to_string(root.join(RECOVERY_POINT_CHECKPOINT_FILE)).expect("read");
        assert_eq!(rp, "0\n2\nmy-topic 11 0\norders 0 4\n");
        mgr.shutdown().expect("shutdown");
        assert!(root.join(CLEAN_SHUTDOWN_FILE).exists());
        let ls = fs::read_to_string(root.join(LOG_START_OFFSET_CHECKPOINT_FILE)).expect("read");
        assert_eq!(ls, "0\n2\nmy-topic 11 1\norders 0 0\n");
    }
    {
        let mgr = LogManager::open(root.clone(), |_| config.clone(), 0).expect("reopen");
        assert!(!root.join(CLEAN_SHUTDOWN_FILE).exists(), "marker consumed");
        assert_eq!(mgr.all().len(), 2);
        let lb = mgr.get(&b).expect("b");
        assert_eq!((lb.log_start_offset(), lb.log_end_offset()), (1, 2));
        assert_eq!(lb.recovery_point(), 2);
        let la = mgr.get(&a).expect("a");
        la.append_as_leader(batch(1, 0), 0, 0).expect("append");
        mgr.remove(&b).expect("remove");
        assert!(mgr.get(&b).is_none());
        assert!(!root.join("my-topic-11").exists());
        // Crash: no shutdown, so no marker, and a torn tail.
    }
    let seg = root.join("orders-0").join("00000000000000000000.log");
    let len = fs::metadata(&seg).expect("meta").len();
    let f = fs::OpenOptions::new().write(true).open(&seg).expect("open");
    f.set_len(len - 5).expect("tear");
    drop(f);
    fs::create_dir(root.join("orders-1.0123abcd-delete")).expect("mkdir");
    let mgr = LogManager::open(root.clone(), |_| config.clone(), 0).expect("recover");
    assert!(!root.join("orders-1.0123abcd-delete").exists());
    let la = mgr.get(&a).expect("a");
    assert_eq!(la.log_end_offset(), 4);
    assert_eq!(records_from(&la, 0).len(), 4);
    mgr.enforce_retention(0);
    mgr.shutdown().expect("shutdown");
}

/// Index entries damaged in place but still sorted and inside the file (the fuzz finding of
/// the `log_recovery` target): Kafka's sanity check passes them and Kafka trusts the indexes
/// of a cleanly shut down log, but a read guided by one must still return the right batch,
/// never a later one (records skipped) or an error, and ListOffsets by timestamp must not
/// skip records either.
#[test]
fn damaged_index_entries_that_pass_the_sanity_check_are_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u32;
    let config = LogConfig {
        index_interval_bytes: 0,
        ..small_config()
    };
    {
        let log = open(dir.path(), config.clone());
        for i in 0..10 {
            log.append_as_leader(batch(1, 1_000 + i), 0, 0)
                .expect("append");
        }
        log.close().expect("close");
    }
    let index_path = dir.path().join("00000000000000000000.index");
    let time_path = dir.path().join("00000000000000000000.timeindex");
    let index = fs::read(&index_path).expect("index");
    // index.interval.bytes 0: an entry (i, i * one) for every batch after the first.
    assert_eq!(index.len(), 9 * 8);
    let put_offset_entry = |file: &mut Vec<u8>, at: usize, rel: u32, pos: u32| {
        file[at * 8..at * 8 + 4].copy_from_slice(&rel.to_be_bytes());
        file[at * 8 + 4..at * 8 + 8].copy_from_slice(&pos.to_be_bytes());
    };
    let mut damaged = index.clone();
    // Entry 4 claims to start at batch 6 (offsets 5 and 6 would read batch 6... or 7).
    put_offset_entry(&mut damaged, 3, 4, 6 * one);
    put_offset_entry(&mut damaged, 4, 5, 6 * one + 1);
    // Entry 7 points into the middle of batch 7.
    put_offset_entry(&mut damaged, 5, 6, 7 * one - 9);
    put_offset_entry(&mut damaged, 6, 7, 7 * one + 5);
    fs::write(&index_path, &damaged).expect("write index");
    let mut time = fs::read(&time_path).expect("timeindex");
    assert_eq!(time.len(), 9 * 12);
    // Time entries (1000 + i, i): entries for 1004 to 1006 now claim offset 7 (still sorted).
    for (at, ts, rel) in [(3usize, 1_004i64, 7u32), (4, 1_005, 7), (5, 1_006, 7)] {
        time[at * 12..at * 12 + 8].copy_from_slice(&ts.to_be_bytes());
        time[at * 12 + 8..at * 12 + 12].copy_from_slice(&rel.to_be_bytes());
    }
    fs::write(&time_path, &time).expect("write timeindex");

    let log = reopen(dir.path(), config, true, 0);
    assert_eq!(log.log_end_offset(), 10);
    for offset in 0..10 {
        let bytes = read_all(&log, offset);
        assert_eq!(headers(&bytes)[0].base_offset, offset, "read at {offset}");
    }
    assert_eq!(
        records_from(&log, 0)
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    // A small budget: the walk may not jump through a damaged entry either.
    for offset in 0..10 {
        let data = log
            .read(offset, one as usize * 3, true, i64::MAX)
            .expect("read");
        let bytes = data.slice.expect("data").read_to_bytes().expect("pread");
        let hs = headers(&bytes);
        assert_eq!(hs[0].base_offset, offset);
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(h.base_offset, offset + i as i64);
        }
    }
    for ts in 1_000..1_010 {
        let found = log
            .offset_for_timestamp(ts)
            .expect("search")
            .expect("found");
        assert_eq!(found.offset, ts - 1_000, "timestamp {ts}");
    }
}

/// Replay (coordinators loading `__consumer_offsets` / `__transaction_state`) allocates from
/// the bytes it reads, not from counts a record claims: a record claiming 2³¹−1 headers in
/// a few bytes (the `record_batch` fuzz finding, through `kafka-protocol`'s decoder, which
/// reserved a header map of that capacity and aborted the process) replays as a record.
#[test]
fn replay_does_not_allocate_from_a_claimed_header_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    log.append_as_leader(batch(1, 1_000), 0, 0).expect("append");
    let mut b = nagare_protocol::batch_builder::build_batch(
        [(
            Some(bytes::Bytes::from_static(b"k")),
            Some(bytes::Bytes::from_static(b"v")),
        )],
        0,
        2_000,
    )
    .expect("batch")
    .to_vec();
    let hs = record_batch::HEADER_SIZE;
    // One record: length, attributes, deltas, key "k", value "v", header count 0 (last).
    let record_len = b.len() - hs - 1;
    assert_eq!(
        usize::from(b[hs]),
        record_len * 2,
        "one-byte zigzag record length"
    );
    assert_eq!(*b.last().expect("byte"), 0, "no headers");
    b.pop();
    // Header count i32::MAX (zigzag varint, 5 bytes) and nothing else.
    b.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    b[hs] = ((record_len + 4) * 2) as u8;
    let batch_length = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&batch_length.to_be_bytes());
    record_batch::update_crc(&mut b).expect("crc");
    log.append_as_leader(BytesMut::from(&b[..]), 0, 0)
        .expect("append");
    let mut seen = Vec::new();
    nagare_storage::replay_records(&log, |r| seen.push((r.offset, r.key, r.value)))
        .expect("replay");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0, 1);
    assert_eq!(seen[1].1.as_deref(), Some(&b"k"[..]));
    assert_eq!(seen[1].2.as_deref(), Some(&b"v"[..]));
}

/// KIP-405's follower path: a follower restarted at a tiered leader's local log start takes
/// the producer state (the snapshot uploaded beside the remote segment ending below it) and
/// the leader epochs of the remote log, so idempotent sequences and OffsetForLeaderEpoch
/// answers continue as on the leader.
#[test]
fn truncate_fully_and_start_with_state_restores_producers_and_epochs() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let one = idempotent(1, 0, 0, 2).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 3,
        index_interval_bytes: 0,
        ..small_config()
    };
    let leader = open(leader_dir.path(), config.clone());
    for i in 0..6 {
        let epoch = if i < 2 { 1 } else { 3 };
        leader
            .append_as_leader(idempotent(1, 0, i * 2, 2), epoch, 0)
            .expect("append");
    }
    leader.flush().expect("flush");
    // The leader rolled at offset 6: the snapshot taken there is what it uploads.
    assert!(leader.producer_snapshot_offsets().contains(&6));
    let snapshot = fs::read(leader_dir.path().join(format!("{:020}.snapshot", 6))).expect("snap");

    let dir = tempfile::tempdir().expect("tempdir");
    let follower = open(dir.path(), config.clone());
    follower
        .append_as_leader(batch(1, 0), 0, 0)
        .expect("stale data");
    follower
        .truncate_fully_and_start_with_state(6, Some(&snapshot), &[(1, 0), (3, 4), (7, 9)])
        .expect("start with state");
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (6, 6)
    );
    let state = follower
        .producer_state(1)
        .expect("producer state from the snapshot");
    assert_eq!(state.last_seq(), 5);
    assert_eq!(
        follower.latest_epoch(),
        Some(3),
        "entries past the start are ignored"
    );
    assert_eq!(follower.end_offset_for_epoch(1), (1, 4));
    // The next batch of the producer continues its sequence; a replay is a duplicate.
    assert!(
        follower
            .append_as_leader(idempotent(1, 0, 4, 2), 3, 0)
            .expect("dup")
            .duplicate
    );
    let info = follower
        .append_as_leader(idempotent(1, 0, 6, 2), 3, 0)
        .expect("append");
    assert_eq!(info.first_offset, 6);
    drop(follower);
    // It survives a crash.
    let follower = reopen(dir.path(), config.clone(), false, 0);
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (6, 8)
    );
    // Recovery cuts the epoch entries at the log start, as Kafka's `truncateFromStart`.
    assert_eq!(follower.latest_epoch(), Some(3));
    assert!(follower
        .producer_state(1)
        .is_some_and(|s| s.last_seq() == 7));

    // A snapshot of another offset is dropped: empty producer state, as without one.
    let other = tempfile::tempdir().expect("tempdir");
    let log = open(other.path(), config);
    log.truncate_fully_and_start_with_state(8, Some(&snapshot), &[])
        .expect("start");
    assert!(log.producer_state(1).is_none());
    assert_eq!(log.log_start_offset(), 8);
}

/// Tiered storage uploads each segment's end producer snapshot (KIP-405): snapshots at or
/// above the retention bound (the first offset not uploaded) outlive the keep-the-latest-two
/// pruning, and go back to that pruning once the bound passes them.
#[test]
fn producer_snapshots_at_or_above_the_retention_bound_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = idempotent(1, 0, 0, 2).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        index_interval_bytes: 0,
        ..small_config()
    };
    let log = open(dir.path(), config);
    // Nothing uploaded yet: the bound is 0.
    log.enforce_retention_below(0, 0).expect("retention");
    for i in 0..10 {
        log.append_as_leader(idempotent(1, 0, i * 2, 2), 1, 0)
            .expect("append");
    }
    let kept = log.producer_snapshot_offsets();
    assert!(kept.len() > 2, "one per roll kept: {kept:?}");
    let on_disk = |o: i64| dir.path().join(format!("{o:020}.snapshot")).exists();
    assert!(kept.iter().all(|o| on_disk(*o)));
    // Everything uploaded: the next roll prunes back to the latest two.
    log.enforce_retention_below(0, log.log_end_offset())
        .expect("retention");
    for i in 10..14 {
        log.append_as_leader(idempotent(1, 0, i * 2, 2), 1, 0)
            .expect("append");
    }
    let after = log.producer_snapshot_offsets();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(kept.iter().all(|o| !on_disk(*o) || after.contains(o)));
}
