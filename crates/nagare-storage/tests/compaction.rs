//! The log cleaner (compaction) against real files: semantics, crash recovery of the segment
//! swap, and a property test against a "latest value per key" model.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use nagare_protocol::record_batch::{self, RecordBatchHeader};
use nagare_storage::{
    CleanStats, Cleaner, CleanerConfig, Log, LogConfig, LogManager, StorageError, TopicPartition,
    CLEANER_CHECKPOINT_FILE,
};
use proptest::prelude::*;

/// One record to write: key (None = no key) and value (None = tombstone).
type Kv = (Option<String>, Option<String>);

fn tp() -> TopicPartition {
    TopicPartition::new("compacted", 0)
}

fn compact_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        retention_ms: -1,
        file_delete_delay_ms: 0,
        message_timestamp_after_max_ms: i64::MAX,
        cleanup_policy_delete: false,
        cleanup_policy_compact: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

struct ProducerFields {
    id: i64,
    epoch: i16,
    seq: i32,
}

fn encode(
    records: &[Kv],
    ts: i64,
    compression: Compression,
    p: Option<&ProducerFields>,
) -> BytesMut {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: p.map_or(-1, |p| p.id),
            producer_epoch: p.map_or(-1, |p| p.epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol keeps records in one batch while offset - sequence is constant.
            sequence: p.map_or(-1, |p| p.seq).wrapping_add(i as i32),
            timestamp: ts + i as i64,
            key: k.as_ref().map(|k| Bytes::from(k.clone())),
            value: v.as_ref().map(|v| Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf
}

fn kv(k: &str, v: Option<&str>) -> Kv {
    (Some(k.to_string()), v.map(str::to_string))
}

/// Every record of the log: (offset, key, value).
fn contents(log: &Log) -> Vec<(i64, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, true, i64::MAX).expect("read");
        let Some(slice) = data.slice else { break };
        let bytes = slice.read_to_bytes().expect("pread");
        let mut next = offset;
        for item in record_batch::batches(&bytes) {
            let (h, range) = item.expect("valid batch");
            record_batch::validate_crc(&bytes[range.clone()]).expect("crc");
            next = next.max(h.next_offset());
            let mut b = Bytes::copy_from_slice(&bytes[range]);
            for set in RecordBatchDecoder::decode_all(&mut b).expect("decode") {
                for r in set.records {
                    if r.offset >= offset && r.key.as_deref() != Some(MARKER.as_bytes()) {
                        out.push((
                            r.offset,
                            r.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                            r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                        ));
                    }
                }
            }
        }
        assert!(next > offset, "no progress at {offset}");
        offset = next;
    }
    out
}

fn batch_headers(log: &Log) -> Vec<RecordBatchHeader> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, true, i64::MAX).expect("read");
        let Some(slice) = data.slice else { break };
        let bytes = slice.read_to_bytes().expect("pread");
        for item in record_batch::batches(&bytes) {
            let h = item.expect("batch").0;
            offset = h.next_offset();
            out.push(h);
        }
    }
    out
}

fn open_log(dir: &Path, config: LogConfig, clean: bool) -> Log {
    Log::open(dir.to_path_buf(), tp(), config, 0, clean, 0).expect("open")
}

fn clean(cleaner: &Cleaner, log: &Log, now: i64) -> Option<CleanStats> {
    cleaner
        .clean_log(&tp(), log, &CleanerConfig::default(), now, false)
        .expect("clean")
}

/// Appends one record per batch (so segments roll often) and rolls at the end so that
/// everything written is cleanable.
fn write(log: &Log, records: &[Kv], now: i64) {
    for r in records {
        log.append_as_leader(
            encode(std::slice::from_ref(r), now, Compression::None, None),
            0,
            now,
        )
        .expect("append");
    }
}

/// Rolls the active segment and appends a marker record (key [`MARKER`]) to the new one: the
/// cleaner, like Kafka's, never cleans the segment holding the last record, so this makes
/// everything before the marker cleanable. [`contents`] leaves markers out.
fn roll(log: &Log, now: i64) {
    let mut c = log.config();
    let saved = c.segment_ms;
    c.segment_ms = 0;
    log.update_config(c.clone());
    log.enforce_retention(now + 1).expect("roll");
    c.segment_ms = saved;
    log.update_config(c);
    write(log, &[kv(MARKER, Some("active"))], now);
}

const MARKER: &str = "~active";

#[test]
fn keeps_the_latest_value_per_key_with_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(300), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    let mut recs = Vec::new();
    for i in 0..30 {
        recs.push(kv(&format!("k{}", i % 3), Some(&format!("v{i}"))));
    }
    write(&log, &recs, 1_000);
    write(&log, &[kv("tail", Some("active"))], 1_000);
    let before = log.size_bytes();
    let segments_before = log.segment_count();
    assert!(segments_before > 3);
    let stats = clean(&cleaner, &log, 2_000).expect("cleaned");
    assert!(stats.records_kept < stats.records_read);
    let got = contents(&log);
    // Only the active segment is left alone: keys k0..k2 keep their last values.
    // The map covers the rolled segments only, so k1 and k2 keep their last value below the
    // active segment too.
    let expect: Vec<(i64, Option<String>, Option<String>)> = vec![
        (25, Some("k1".into()), Some("v25".into())),
        (26, Some("k2".into()), Some("v26".into())),
        (27, Some("k0".into()), Some("v27".into())),
        (28, Some("k1".into()), Some("v28".into())),
        (29, Some("k2".into()), Some("v29".into())),
        (30, Some("tail".into()), Some("active".into())),
    ];
    assert_eq!(got, expect);
    assert!(log.size_bytes() < before);
    // Groups are formed from the segments' sizes before cleaning (Kafka's
    // groupSegmentsBySize), so the now small segments merge at the next cleaning.
    cleaner
        .clean_log(&tp(), &log, &CleanerConfig::default(), 2_000, true)
        .expect("clean");
    assert!(
        log.segment_count() < segments_before,
        "small cleaned segments merge"
    );
    assert_eq!(contents(&log), expect);
    assert_eq!(
        log.log_start_offset(),
        0,
        "compaction never moves the log start"
    );
    assert_eq!(log.log_end_offset(), 31);
    assert_eq!(cleaner.checkpoint(&tp()), Some(stats.end_offset));
    let cp = fs::read_to_string(dir.path().join(CLEANER_CHECKPOINT_FILE)).expect("checkpoint");
    assert_eq!(cp, format!("0\n1\ncompacted 0 {}\n", stats.end_offset));
    // Reading from a removed offset returns the next surviving batch.
    let data = log.read(5, 1 << 20, true, i64::MAX).expect("read");
    let first = record_batch::batches(&data.slice.expect("data").read_to_bytes().expect("pread"))
        .next()
        .expect("batch")
        .expect("valid")
        .0;
    assert_eq!(first.base_offset, 25);
    // Nothing dirty any more: another pass does nothing.
    assert!(clean(&cleaner, &log, 2_000).is_none());
    // The cleaned log survives a restart (clean and unclean).
    log.close().expect("close");
    drop(log);
    for clean_shutdown in [true, false] {
        let log = open_log(dir.path(), compact_config(300), clean_shutdown);
        assert_eq!(contents(&log), expect);
        assert_eq!(log.log_end_offset(), 31);
        log.close().expect("close");
    }
}

#[test]
fn tombstones_live_until_delete_retention_after_cleaning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(300), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    write(
        &log,
        &[
            kv("a", Some("1")),
            kv("b", Some("1")),
            kv("a", None),
            kv("c", Some("1")),
            kv("b", Some("2")),
        ],
        1_000,
    );
    roll(&log, 1_000);
    clean(&cleaner, &log, 10_000).expect("cleaned");
    // The tombstone stays (with a delete horizon of now + delete.retention.ms).
    assert_eq!(
        contents(&log),
        vec![
            (2, Some("a".into()), None),
            (3, Some("c".into()), Some("1".into())),
            (4, Some("b".into()), Some("2".into())),
        ]
    );
    let tomb = batch_headers(&log)
        .into_iter()
        .find(|h| h.base_offset == 2)
        .expect("tombstone batch");
    assert!(tomb.has_delete_horizon());
    assert_eq!(tomb.base_timestamp, 11_000);
    // Before the horizon: nothing to do. After it: the cleaner runs by itself and drops it.
    assert!(clean(&cleaner, &log, 10_500).is_none());
    clean(&cleaner, &log, 11_000).expect("horizon passed");
    assert_eq!(
        contents(&log),
        vec![
            (3, Some("c".into()), Some("1".into())),
            (4, Some("b".into()), Some("2".into())),
        ]
    );
    assert!(clean(&cleaner, &log, 20_000).is_none(), "no busy loop");
}

#[test]
fn compressed_batches_are_filtered_and_recompressed_with_their_codec() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_log(dir.path(), compact_config(1 << 20), true);
        let cleaner = Cleaner::open(dir.path().to_path_buf());
        let batch: Vec<Kv> = (0..10)
            .map(|i| kv(&format!("k{}", i % 4), Some(&format!("value-{i}"))))
            .collect();
        log.append_as_leader(encode(&batch, 5_000, codec, None), 0, 5_000)
            .expect("append");
        roll(&log, 5_000);
        clean(&cleaner, &log, 6_000).expect("cleaned");
        let hs = batch_headers(&log);
        assert_eq!(hs.len(), 2, "the batch and the marker");
        let h = hs[0];
        assert_eq!(
            h.compression().expect("codec").id(),
            codec as u8,
            "{codec:?}"
        );
        assert_eq!((h.base_offset, h.last_offset()), (0, 9), "offsets kept");
        assert_eq!(h.records_count, 4);
        assert_eq!(h.base_timestamp, 5_006, "first kept record's timestamp");
        assert_eq!(h.max_timestamp, 5_009);
        let got = contents(&log);
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![6, 7, 8, 9],
            "{codec:?}"
        );
        assert_eq!(got[0].2.as_deref(), Some("value-6"));
    }
}

#[test]
fn a_producers_last_batch_survives_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(1 << 20), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    let p = |seq| ProducerFields {
        id: 7,
        epoch: 0,
        seq,
    };
    log.append_as_leader(
        encode(
            &[kv("x", Some("1")), kv("y", Some("1"))],
            1_000,
            Compression::None,
            Some(&p(0)),
        ),
        0,
        1_000,
    )
    .expect("append");
    log.append_as_leader(
        encode(&[kv("x", Some("2"))], 1_000, Compression::None, Some(&p(2))),
        0,
        1_000,
    )
    .expect("append");
    // A plain producer overwrites both keys: the idempotent producer's batches become empty.
    write(&log, &[kv("x", Some("3")), kv("y", Some("3"))], 1_000);
    roll(&log, 1_000);
    clean(&cleaner, &log, 2_000).expect("cleaned");
    let hs = batch_headers(&log);
    // The first batch of producer 7 is gone; its last one stays without records (then the
    // plain batches and the marker).
    assert_eq!(hs.len(), 4);
    assert_eq!(
        (hs[0].producer_id, hs[0].base_offset, hs[0].records_count),
        (7, 2, 0)
    );
    assert_eq!(hs[0].base_sequence, 2);
    assert_eq!(hs[0].last_offset(), 2);
    assert_eq!(
        contents(&log).into_iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![3, 4]
    );
    // The producer's state is intact: its next sequence is accepted, a duplicate detected.
    let dup = log
        .append_as_leader(
            encode(&[kv("x", Some("2"))], 1_000, Compression::None, Some(&p(2))),
            0,
            1_000,
        )
        .expect("dup");
    assert!(dup.duplicate);
    log.append_as_leader(
        encode(&[kv("z", Some("1"))], 1_000, Compression::None, Some(&p(3))),
        0,
        1_000,
    )
    .expect("next sequence");
}

#[test]
fn keyless_records_are_rejected_on_compacted_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(1 << 20), true);
    let err = log
        .append_as_leader(
            encode(
                &[kv("a", Some("1")), (None, Some("x".into()))],
                1_000,
                Compression::Lz4,
                None,
            ),
            0,
            1_000,
        )
        .expect_err("keyless");
    // KIP-467: the keyless record (index 1) is named, the batch is INVALID_RECORD.
    match &err {
        StorageError::RejectedRecords(r) => {
            assert!(!r.invalid_timestamp);
            assert_eq!(r.records.len(), 1, "{err}");
            assert_eq!(r.records[0].batch_index, 1);
            assert!(r.records[0].message.contains("without key"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    // The same batch is fine for a delete-only topic.
    let mut c = compact_config(1 << 20);
    c.cleanup_policy_compact = false;
    log.update_config(c);
    log.append_as_leader(
        encode(
            &[kv("a", Some("1")), (None, Some("x".into()))],
            1_000,
            Compression::Lz4,
            None,
        ),
        0,
        1_000,
    )
    .expect("delete policy takes keyless records");
}

#[test]
fn bounds_min_lag_ratio_and_delete_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = compact_config(300);
    config.min_compaction_lag_ms = 10_000;
    let log = open_log(dir.path(), config.clone(), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    let recs: Vec<Kv> = (0..20).map(|i| kv("k", Some(&format!("{i}")))).collect();
    write(&log, &recs, 1_000);
    roll(&log, 1_000);
    // Younger than min.compaction.lag.ms: not cleanable.
    assert!(clean(&cleaner, &log, 5_000).is_none());
    assert_eq!(contents(&log).len(), 20);
    // Ratio threshold: with a high min.cleanable.dirty.ratio nothing happens either.
    config.min_compaction_lag_ms = 0;
    config.min_cleanable_dirty_ratio = 1.0;
    log.update_config(config.clone());
    assert!(clean(&cleaner, &log, 20_000).is_none());
    config.min_cleanable_dirty_ratio = 0.5;
    log.update_config(config.clone());
    clean(&cleaner, &log, 20_000).expect("cleaned");
    assert_eq!(
        contents(&log),
        vec![(19, Some("k".into()), Some("19".into()))]
    );
    // compact only: time retention does not delete segments.
    config.retention_ms = 1;
    log.update_config(config.clone());
    // (Far in the future: the empty cleaned segments are aged by their files' mtime.)
    let later = 4_000_000_000_000;
    assert_eq!(log.enforce_retention(later).expect("retention"), 0);
    // compact,delete: both apply.
    config.cleanup_policy_delete = true;
    log.update_config(config);
    assert!(log.enforce_retention(later).expect("retention") > 0);
}

#[test]
fn max_compaction_lag_forces_cleaning_and_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = compact_config(1 << 20);
    config.min_cleanable_dirty_ratio = 1.0;
    config.max_compaction_lag_ms = 5_000;
    let log = open_log(dir.path(), config, true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    write(&log, &[kv("k", Some("1")), kv("k", Some("2"))], 1_000);
    // KIP-354: the active segment rolls once max.compaction.lag.ms passed.
    log.enforce_retention(7_000).expect("roll");
    assert_eq!(log.segment_count(), 2);
    write(&log, &[kv("k", Some("3"))], 7_000);
    // The dirty ratio can never exceed 1.0: only the lag can trigger a cleaning.
    assert!(
        clean(&cleaner, &log, 5_500).is_none(),
        "lag not reached yet"
    );
    clean(&cleaner, &log, 7_000).expect("lag forces cleaning");
    assert_eq!(contents(&log).len(), 2);
}

#[test]
fn log_manager_drives_the_cleaner_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = compact_config(300);
    let manager = LogManager::open(dir.path().to_path_buf(), |_| config.clone(), 0).expect("open");
    let log = manager
        .get_or_create(&tp(), config.clone(), 0)
        .expect("create");
    let other = TopicPartition::new("plain", 0);
    let mut plain = config.clone();
    plain.cleanup_policy_compact = false;
    plain.cleanup_policy_delete = true;
    let plain_log = manager.get_or_create(&other, plain, 0).expect("create");
    let recs: Vec<Kv> = (0..20).map(|i| kv("k", Some(&format!("{i}")))).collect();
    write(&log, &recs, 1_000);
    write(&plain_log, &recs, 1_000);
    roll(&log, 1_000);
    roll(&plain_log, 1_000);
    let done = manager.clean_logs(&CleanerConfig::default(), 2_000);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, tp());
    assert_eq!(
        contents(&plain_log).len(),
        20,
        "delete-policy logs are not compacted"
    );
    let end = done[0].1.end_offset;
    manager.shutdown().expect("shutdown");
    drop((log, plain_log, manager));
    let manager =
        LogManager::open(dir.path().to_path_buf(), |_| config.clone(), 0).expect("reopen");
    assert_eq!(manager.cleaner().checkpoint(&tp()), Some(end));
    manager.remove(&tp()).expect("remove");
    assert_eq!(manager.cleaner().checkpoint(&tp()), None);
}

/// A log with several segments and its cleaned twin, to stage crashes in the swap.
fn staged_crash(stage: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let a = root.path().join("a");
    let b = root.path().join("b");
    let config = compact_config(300);
    let recs: Vec<Kv> = (0..24)
        .map(|i| kv(&format!("k{}", i % 4), Some(&format!("v{i}"))))
        .collect();
    {
        let log = open_log(&a, config.clone(), true);
        write(&log, &recs, 1_000);
        roll(&log, 1_000);
        write(&log, &[kv("k0", Some("tail"))], 1_000);
        log.close().expect("close");
    }
    fs::create_dir_all(&b).expect("mkdir");
    for e in fs::read_dir(&a).expect("ls") {
        let e = e.expect("entry");
        fs::copy(e.path(), b.join(e.file_name())).expect("copy");
    }
    let old_bases: Vec<String> = segment_names(&a, ".log");
    let (expected, cleaned_base) = {
        let log = open_log(&a, config.clone(), true);
        let cleaner = Cleaner::open(root.path().to_path_buf());
        // Merge everything into one group.
        let mut big = config.clone();
        big.segment_bytes = 1 << 20;
        log.update_config(big);
        let stats = clean(&cleaner, &log, 2_000).expect("cleaned");
        assert_eq!(stats.segments_written, 1);
        let bases = log.segment_base_offsets();
        log.close().expect("close");
        (contents(&open_log(&a, config.clone(), true)), bases[0])
    };
    let name = |suffix: &str| format!("{cleaned_base:020}{suffix}");
    let original = contents(&open_log(&b, config.clone(), true));
    assert_ne!(original, expected, "the cleaning removed records");
    // Stage the crash in b.
    let cleaned_files = [".log", ".index", ".timeindex"];
    let expect_cleaned = match stage {
        "cleaned" => {
            for s in cleaned_files {
                fs::copy(a.join(name(s)), b.join(format!("{}.cleaned", name(s)))).expect("copy");
            }
            false
        }
        "swap" => {
            for s in cleaned_files {
                fs::copy(a.join(name(s)), b.join(format!("{}.swap", name(s)))).expect("copy");
            }
            true
        }
        "swap-log-only" => {
            fs::copy(
                a.join(name(".log")),
                b.join(format!("{}.swap", name(".log"))),
            )
            .expect("copy");
            true
        }
        "half-deleted" => {
            for s in cleaned_files {
                fs::copy(a.join(name(s)), b.join(format!("{}.swap", name(s)))).expect("copy");
            }
            // Some replaced segments were already renamed to .deleted.
            let rolled: Vec<&String> = old_bases.iter().take(old_bases.len() - 1).collect();
            for n in rolled.iter().step_by(2) {
                for s in [".log", ".index", ".timeindex"] {
                    let f = n.replace(".log", s);
                    let _ = fs::rename(b.join(&f), b.join(format!("{f}.deleted")));
                }
            }
            true
        }
        "renamed-log" => {
            // The data file got its final name; the index swaps did not.
            for n in old_bases.iter().take(old_bases.len() - 1) {
                for s in [".log", ".index", ".timeindex"] {
                    let _ = fs::remove_file(b.join(n.replace(".log", s)));
                }
            }
            fs::copy(a.join(name(".log")), b.join(name(".log"))).expect("copy");
            for s in [".index", ".timeindex"] {
                fs::copy(a.join(name(s)), b.join(format!("{}.swap", name(s)))).expect("copy");
            }
            true
        }
        other => panic!("unknown stage {other}"),
    };
    let log = Log::open(b.clone(), tp(), config.clone(), 0, false, 0).expect("recover");
    let got = contents(&log);
    if expect_cleaned {
        assert_eq!(got, expected, "stage {stage}");
    } else {
        assert_eq!(got, original, "stage {stage}");
    }
    assert_eq!(log.log_end_offset(), 26);
    let leftovers: Vec<String> = fs::read_dir(&b)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned") || n.ends_with(".deleted"))
        .collect();
    assert!(leftovers.is_empty(), "stage {stage}: {leftovers:?}");
    // The recovered log keeps working and cleans to the same result.
    log.close().expect("close");
    let log = open_log(&b, config, true);
    let cleaner = Cleaner::open(root.path().join("b"));
    let _ = clean(&cleaner, &log, 3_000);
    assert_eq!(contents(&log), expected, "stage {stage} after cleaning");
}

fn segment_names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn crash_before_the_swap_keeps_the_old_segments() {
    staged_crash("cleaned");
}

#[test]
fn crash_after_the_swap_files_completes_the_swap() {
    staged_crash("swap");
    staged_crash("swap-log-only");
}

#[test]
fn crash_while_deleting_old_segments_completes_the_swap() {
    staged_crash("half-deleted");
}

#[test]
fn crash_while_renaming_the_swap_files_recovers() {
    staged_crash("renamed-log");
}

fn arb_ops() -> impl Strategy<Value = Vec<(u8, bool, u8, bool)>> {
    // (key, tombstone, codec, clean after this batch)
    proptest::collection::vec(
        (
            0u8..6,
            prop::bool::weighted(0.15),
            0u8..5,
            prop::bool::weighted(0.2),
        ),
        1..80,
    )
}

fn codec(i: u8) -> Compression {
    match i {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Whatever the sequence of writes and cleanings: every key's latest record is what the
    /// model says (a tombstone may be gone), offsets only increase, nothing is invented, and
    /// below the cleaner checkpoint each key appears at most once.
    #[test]
    fn cleaned_log_matches_latest_value_model(ops in arb_ops(), seg in 400u64..1500, batch in 1usize..4) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = compact_config(seg);
        config.delete_retention_ms = 50;
        let log = open_log(dir.path(), config, true);
        let cleaner = Cleaner::open(dir.path().to_path_buf());
        let mut written: BTreeMap<i64, (String, Option<String>)> = BTreeMap::new();
        let mut now = 1_000;
        for chunk in ops.chunks(batch) {
            let recs: Vec<Kv> = chunk.iter().enumerate().map(|(i, &(k, tomb, _, _))| {
                let v = (!tomb).then(|| format!("v{now}-{i}"));
                (Some(format!("key{k}")), v)
            }).collect();
            let info = log.append_as_leader(encode(&recs, now, codec(chunk[0].2), None), 0, now).expect("append");
            for (i, r) in recs.iter().enumerate() {
                written.insert(info.first_offset + i as i64, (r.0.clone().expect("key"), r.1.clone()));
            }
            now += 10;
            if chunk.iter().any(|c| c.3) {
                roll(&log, now);
                cleaner.clean_log(&tp(), &log, &CleanerConfig::default(), now, true).expect("clean");
            }
        }
        let got = contents(&log);
        // Offsets strictly increase and every record is one that was written, unchanged.
        for w in got.windows(2) {
            prop_assert!(w[0].0 < w[1].0);
        }
        for (off, k, v) in &got {
            let (wk, wv) = &written[off];
            prop_assert_eq!(Some(wk), k.as_ref());
            prop_assert_eq!(wv, v);
        }
        // The latest record of every key survives (tombstones may have expired).
        let mut latest: BTreeMap<&str, (i64, &Option<String>)> = BTreeMap::new();
        for (off, (k, v)) in &written {
            latest.insert(k, (*off, v));
        }
        for (k, (off, v)) in &latest {
            let present = got.iter().any(|r| r.0 == *off);
            if v.is_some() {
                prop_assert!(present, "latest value of {} at {} missing", k, off);
            }
            // No older record of a key outlives its latest one... unless it is past the
            // cleaned section.
        }
        let checkpoint = cleaner.checkpoint(&tp()).unwrap_or(0);
        let mut seen = std::collections::HashSet::new();
        for (off, k, _) in got.iter().filter(|r| r.0 < checkpoint) {
            prop_assert!(seen.insert(k.clone()), "key {:?} twice below the checkpoint (at {})", k, off);
        }
        // Restart without a clean shutdown: same contents.
        log.close().expect("close");
        drop(log);
        let log = open_log(dir.path(), compact_config(seg), false);
        prop_assert_eq!(contents(&log), got);
    }
}

#[test]
fn replay_moves_past_empty_batches_and_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(1 << 20), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    let p = ProducerFields {
        id: 9,
        epoch: 0,
        seq: 0,
    };
    write(&log, &[kv("a", Some("1")), kv("b", Some("1"))], 1_000);
    log.append_as_leader(
        encode(&[kv("a", Some("2"))], 1_000, Compression::None, Some(&p)),
        0,
        1_000,
    )
    .expect("append");
    write(&log, &[kv("a", Some("3")), kv("c", Some("1"))], 1_000);
    roll(&log, 1_000);
    clean(&cleaner, &log, 2_000).expect("cleaned");
    // Offset 2 is now an empty batch of producer 9; offset 0 is gone.
    let mut seen = Vec::new();
    nagare_storage::replay_records(&log, |r| seen.push(r.offset)).expect("replay");
    assert_eq!(seen, vec![1, 3, 4, 5], "5 is the marker");
}

#[test]
fn the_segment_holding_the_last_record_is_never_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(1 << 20), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    write(
        &log,
        &[kv("a", Some("1")), kv("a", Some("2")), kv("a", None)],
        1_000,
    );
    // segment.ms rolled the active segment without an append: it is empty, and the segment
    // with the data acts as the active one (in Kafka it would still be the active segment).
    let mut c = log.config();
    c.segment_ms = 0;
    log.update_config(c);
    log.enforce_retention(1_001).expect("roll");
    assert_eq!(log.segment_count(), 2);
    assert!(cleaner
        .clean_log(&tp(), &log, &CleanerConfig::default(), 1_000_000, true)
        .expect("clean")
        .is_none());
    assert_eq!(contents(&log).len(), 3);
    // Once something follows, it is cleaned: the tombstone gets its horizon, then goes, and
    // the log ends with the new record, not with a gap.
    write(&log, &[kv("b", Some("1"))], 2_000);
    clean(&cleaner, &log, 2_000).expect("cleaned");
    assert_eq!(
        contents(&log),
        vec![
            (2, Some("a".into()), None),
            (3, Some("b".into()), Some("1".into()))
        ]
    );
}

#[test]
fn a_truncation_lowers_the_cleaner_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(400), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    let recs: Vec<Kv> = (0..20).map(|i| kv(&format!("k{i}"), Some("old"))).collect();
    write(&log, &recs, 1_000);
    roll(&log, 1_000);
    let stats = clean(&cleaner, &log, 2_000).expect("cleaned");
    assert_eq!(stats.end_offset, 20);
    // A follower-style truncation rewrites offsets 10.. with new data: x three times, then
    // keys that never come back.
    log.truncate_to(10).expect("truncate");
    let mut new: Vec<Kv> = vec![kv("x", Some("1")), kv("x", Some("2")), kv("x", Some("3"))];
    new.extend((0..20).map(|i| kv(&format!("y{i}"), Some("new"))));
    write(&log, &new, 3_000);
    roll(&log, 3_000);
    clean(&cleaner, &log, 4_000).expect("cleaned");
    let xs: Vec<i64> = contents(&log)
        .into_iter()
        .filter(|r| r.1.as_deref() == Some("x"))
        .map(|r| r.0)
        .collect();
    assert_eq!(xs, vec![12], "the rewritten section was dirty again");
    assert_eq!(cleaner.checkpoint(&tp()), Some(33));
}

/// A transactional batch of producer `p`.
fn txn_batch(records: &[Kv], ts: i64, p: &ProducerFields) -> BytesMut {
    let mut b = encode(records, ts, Compression::None, Some(p));
    // Set the transactional attribute (bit 4) and fix the CRC.
    b[22] |= 0x10;
    record_batch::update_crc(&mut b).expect("crc");
    b
}

fn txn_write(log: &Log, r: Kv, pid: i64, seq: i32, now: i64) {
    let p = ProducerFields {
        id: pid,
        epoch: 0,
        seq,
    };
    log.append_as_leader(txn_batch(&[r], now, &p), 0, now)
        .expect("transactional append");
}

fn end_txn(log: &Log, pid: i64, commit: bool, now: i64) -> i64 {
    let b = nagare_protocol::batch_builder::build_control_batch(pid, 0, 0, commit, 0, now)
        .expect("marker");
    log.append_as_leader_with_origin(
        BytesMut::from(&b[..]),
        0,
        now,
        nagare_storage::AppendOrigin::Coordinator,
    )
    .expect("marker append")
    .first_offset
}

/// Data records (offset, key, value) and the offsets of control batches still holding a
/// marker record.
/// A data record: (offset, key, value).
type DataRec = (i64, String, Option<String>);

fn data_and_markers(log: &Log) -> (Vec<DataRec>, Vec<i64>) {
    let (mut data, mut markers) = (Vec::new(), Vec::new());
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20, true, i64::MAX).expect("read");
        let Some(slice) = read.slice else { break };
        let bytes = slice.read_to_bytes().expect("pread");
        for item in record_batch::batches(&bytes) {
            let (h, range) = item.expect("valid batch");
            record_batch::validate_crc(&bytes[range.clone()]).expect("crc");
            offset = h.next_offset();
            if h.is_control() {
                if h.records_count > 0 {
                    markers.push(h.base_offset);
                }
                continue;
            }
            let mut b = Bytes::copy_from_slice(&bytes[range]);
            for set in RecordBatchDecoder::decode_all(&mut b).expect("decode") {
                for r in set.records {
                    let key = String::from_utf8_lossy(&r.key.expect("key")).into_owned();
                    if key != MARKER {
                        data.push((
                            r.offset,
                            key,
                            r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                        ));
                    }
                }
            }
        }
    }
    (data, markers)
}

fn rec(offset: i64, k: &str, v: &str) -> DataRec {
    (offset, k.to_string(), Some(v.to_string()))
}

#[test]
fn aborted_data_goes_and_markers_follow_after_delete_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One segment before the active one: one group, so the markers meet their data.
    let log = open_log(dir.path(), compact_config(4_000), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    let now = 1_000;
    txn_write(&log, kv("a", Some("aborted")), 1, 0, now); // 0
    txn_write(&log, kv("b", Some("aborted")), 1, 1, now); // 1
    assert_eq!(end_txn(&log, 1, false, now), 2); // ABORT
    txn_write(&log, kv("a", Some("2")), 2, 0, now); // 3
    txn_write(&log, kv("c", Some("2")), 2, 1, now); // 4
    assert_eq!(end_txn(&log, 2, true, now), 5); // COMMIT
    txn_write(&log, kv("e", Some("1")), 1, 2, now); // 6
    assert_eq!(end_txn(&log, 1, true, now), 7); // COMMIT
    write(&log, &[kv("d", Some("1"))], now); // 8
    roll(&log, now);
    let end = log.log_end_offset();
    assert_eq!(
        log.collect_aborted_transactions(0, end)
            .expect("collect")
            .len(),
        1
    );

    // Pass 1: the aborted records go; every marker stays (their data was met).
    clean(&cleaner, &log, 10_000).expect("cleaned");
    let (data, markers) = data_and_markers(&log);
    assert_eq!(
        data,
        vec![
            rec(3, "a", "2"),
            rec(4, "c", "2"),
            rec(6, "e", "1"),
            rec(8, "d", "1")
        ]
    );
    assert_eq!(markers, vec![2, 5, 7]);
    // The cleaned segment still indexes the abort (its marker is kept).
    assert_eq!(
        log.collect_aborted_transactions(0, end).expect("collect"),
        vec![nagare_storage::AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 2,
            last_stable_offset: 3,
        }]
    );

    // Pass 2: no data of the aborted transaction is left: its marker gets a delete horizon
    // (now + delete.retention.ms) and is kept until then.
    cleaner
        .clean_log(&tp(), &log, &CleanerConfig::default(), 20_000, true)
        .expect("clean")
        .expect("cleaned");
    let abort = batch_headers(&log)
        .into_iter()
        .find(|h| h.base_offset == 2)
        .expect("abort marker");
    assert!(abort.has_delete_horizon());
    assert_eq!(abort.base_timestamp, 21_000);
    assert_eq!(data_and_markers(&log).1, vec![2, 5, 7]);
    assert!(clean(&cleaner, &log, 20_500).is_none());
    // Pass 3, due by itself once the horizon passed: the marker goes; the commit markers,
    // whose transactions still have data, stay.
    clean(&cleaner, &log, 21_000).expect("horizon passed");
    let (data, markers) = data_and_markers(&log);
    assert_eq!(markers, vec![5, 7]);
    assert_eq!(data.len(), 4);
    // Everything survives a reopen (the cleaned segments' indexes included).
    log.close().expect("close");
    drop(log);
    let log = open_log(dir.path(), compact_config(4_000), true);
    assert_eq!(data_and_markers(&log), (data, markers));
    assert!(log
        .collect_aborted_transactions(0, end)
        .expect("collect")
        .is_empty());
    assert_eq!(log.first_unstable_offset(), None);
}

#[test]
fn aborted_records_never_shadow_committed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(400), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    write(&log, &[kv("a", Some("committed"))], 1_000); // 0
    txn_write(&log, kv("a", Some("aborted")), 1, 0, 1_000); // 1
    end_txn(&log, 1, false, 1_000); // 2
    write(&log, &[kv("b", Some("1"))], 1_000); // 3: producer 1's aborted batch is its last
    roll(&log, 1_000);
    clean(&cleaner, &log, 10_000).expect("cleaned");
    let (data, _) = data_and_markers(&log);
    assert_eq!(data, vec![rec(0, "a", "committed"), rec(3, "b", "1")]);
    // The producer's last batch survives empty (its sequence state).
    let h = batch_headers(&log)
        .into_iter()
        .find(|h| h.base_offset == 1)
        .expect("empty batch");
    assert_eq!((h.records_count, h.producer_id), (0, 1));
}

#[test]
fn an_open_transaction_is_never_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path(), compact_config(300), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    write(&log, &[kv("a", Some("1")), kv("a", Some("2"))], 1_000); // 0, 1
    txn_write(&log, kv("b", Some("open")), 1, 0, 1_000); // 2: stays open
    write(&log, &[kv("a", Some("3")), kv("b", Some("2"))], 1_000); // 3, 4
    roll(&log, 1_000);
    assert_eq!(log.first_unstable_offset(), Some(2));
    cleaner
        .clean_log(&tp(), &log, &CleanerConfig::default(), 10_000, true)
        .expect("clean");
    // Nothing at or above the first unstable offset was cleaned: the open transaction's
    // record and the later ones are untouched, and a=3 did not shadow a=2 below it.
    let (data, _) = data_and_markers(&log);
    assert!(data.contains(&rec(2, "b", "open")), "{data:?}");
    assert!(data.contains(&rec(3, "a", "3")));
    assert!(data.contains(&rec(4, "b", "2")));
    assert!(data.contains(&rec(1, "a", "2")), "{data:?}");
}

#[test]
fn commit_markers_stay_while_their_data_does_across_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small segments: data and markers fall in different groups of one pass.
    let config = compact_config(200);
    let log = open_log(dir.path(), config.clone(), true);
    let cleaner = Cleaner::open(dir.path().to_path_buf());
    let now = 1_000;
    let mut markers = Vec::new();
    for (i, pid) in [1i64, 2, 3, 4].into_iter().enumerate() {
        txn_write(&log, kv(&format!("k{i}"), Some("x")), pid, 0, now);
        txn_write(&log, kv(&format!("j{i}"), Some("y")), pid, 1, now);
        markers.push(end_txn(&log, pid, true, now));
    }
    roll(&log, now);
    assert!(log.segment_count() > 3, "{:?}", log.segment_base_offsets());
    for t in [10_000, 20_000, 30_000] {
        cleaner
            .clean_log(&tp(), &log, &CleanerConfig::default(), t, true)
            .expect("clean");
    }
    let (data, kept) = data_and_markers(&log);
    assert_eq!(data.len(), 8);
    assert_eq!(kept, markers, "every transaction still has data");
    // A producer-state replay from the log start (no snapshot, unclean shutdown) sees every
    // transaction end.
    log.close().expect("close");
    drop(log);
    for f in segment_names(dir.path(), ".snapshot") {
        fs::remove_file(dir.path().join(f)).expect("rm");
    }
    let log = Log::open(dir.path().to_path_buf(), tp(), config, 0, false, 0).expect("open");
    assert_eq!(log.first_unstable_offset(), None);
}

#[derive(Debug, Clone)]
enum TxnOp {
    /// Producer `p` writes key `k` (value or tombstone) in its transaction.
    Data(usize, u8, bool),
    /// A plain write of key `k`.
    Plain(u8, bool),
    /// Producer `p`'s transaction ends.
    End(usize, bool),
    /// A cleaning pass at the next time step.
    Clean,
}

fn arb_txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        6 => (0usize..3, 0u8..5, prop::bool::weighted(0.85)).prop_map(|(p, k, v)| TxnOp::Data(p, k, v)),
        2 => (0u8..5, prop::bool::weighted(0.85)).prop_map(|(k, v)| TxnOp::Plain(k, v)),
        3 => (0usize..3, any::<bool>()).prop_map(|(p, c)| TxnOp::End(p, c)),
        1 => Just(TxnOp::Clean),
    ]
}

/// What a `read_committed` consumer sees, per key the last visible record's value, using
/// the aborted-transaction index as librdkafka does (a transactional batch of a producer
/// inside one of its aborted transactions is skipped; markers are not records).
fn committed_view(log: &Log) -> BTreeMap<String, Option<String>> {
    let end = log.log_end_offset();
    let aborted = log.collect_aborted_transactions(0, end).expect("collect");
    let mut view = BTreeMap::new();
    let mut offset = log.log_start_offset();
    while offset < end {
        let data = log.read(offset, 1 << 20, true, i64::MAX).expect("read");
        let Some(slice) = data.slice else { break };
        let bytes = slice.read_to_bytes().expect("pread");
        for item in record_batch::batches(&bytes) {
            let (h, range) = item.expect("batch");
            offset = h.next_offset();
            let in_aborted = h.is_transactional()
                && aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && a.first_offset <= h.base_offset
                        && h.base_offset < a.last_offset
                });
            if h.is_control() || in_aborted {
                continue;
            }
            let mut b = Bytes::copy_from_slice(&bytes[range]);
            for set in RecordBatchDecoder::decode_all(&mut b).expect("decode") {
                for r in set.records {
                    let k = String::from_utf8_lossy(&r.key.expect("key")).into_owned();
                    if k != MARKER {
                        let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                        view.insert(k, v);
                    }
                }
            }
        }
    }
    view.retain(|_, v| v.is_some());
    view
}

/// A write of the model: key, value, and its producer's transaction number if any.
type ModelWrite = (String, Option<String>, Option<(usize, u32)>);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Cleaning a log of transactions never changes what a `read_committed` consumer sees
    /// (the latest committed value per key), never brings an aborted record back, and
    /// leaves a log whose replay from the start ends every transaction.
    #[test]
    fn cleaning_keeps_the_committed_view(
        ops in proptest::collection::vec(arb_txn_op(), 1..50),
        segment_bytes in 150u64..600,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = compact_config(segment_bytes);
        let log = open_log(dir.path(), config.clone(), true);
        let cleaner = Cleaner::open(dir.path().to_path_buf());
        let mut seqs = [0i32; 3];
        // Writes in offset order: key, value, and the producer's transaction number.
        let mut writes: Vec<ModelWrite> = Vec::new();
        let mut txn_no = [0u32; 3];
        let mut aborted: std::collections::HashSet<(usize, u32)> = Default::default();
        let mut now = 1_000;
        for (i, op) in ops.iter().enumerate() {
            let value = |live: bool| live.then(|| format!("v{i}"));
            match *op {
                TxnOp::Data(p, k, live) => {
                    let r = (Some(format!("k{k}")), value(live));
                    txn_write(&log, r.clone(), 10 + p as i64, seqs[p], now);
                    seqs[p] += 1;
                    writes.push((format!("k{k}"), value(live), Some((p, txn_no[p]))));
                }
                TxnOp::Plain(k, live) => {
                    write(&log, &[(Some(format!("k{k}")), value(live))], now);
                    writes.push((format!("k{k}"), value(live), None));
                }
                TxnOp::End(p, commit) => {
                    end_txn(&log, 10 + p as i64, commit, now);
                    if !commit {
                        aborted.insert((p, txn_no[p]));
                    }
                    txn_no[p] += 1;
                }
                TxnOp::Clean => {
                    roll(&log, now);
                    now += 700;
                    cleaner
                        .clean_log(&tp(), &log, &CleanerConfig::default(), now, true)
                        .expect("clean");
                }
            }
        }
        for p in 0..3 {
            end_txn(&log, 10 + p as i64, true, now);
        }
        // The committed view: the last committed write per key, in offset order.
        let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (k, v, t) in writes {
            if t.is_none_or(|t| !aborted.contains(&t)) {
                model.insert(k, v);
            }
        }
        model.retain(|_, v| v.is_some());
        roll(&log, now);
        for step in 0..4 {
            now += 700;
            cleaner
                .clean_log(&tp(), &log, &CleanerConfig::default(), now, true)
                .expect("clean");
            prop_assert_eq!(&committed_view(&log), &model, "after pass {}", step);
        }
        prop_assert_eq!(log.first_unstable_offset(), None);
        log.close().expect("close");
        drop(log);
        for f in segment_names(dir.path(), ".snapshot") {
            fs::remove_file(dir.path().join(f)).expect("rm");
        }
        let log = Log::open(dir.path().to_path_buf(), tp(), config, 0, false, 0).expect("open");
        prop_assert_eq!(log.first_unstable_offset(), None);
        prop_assert_eq!(&committed_view(&log), &model);
    }
}

/// A cleaning of a log with transactions interrupted after the cleaned files were renamed
/// to `.swap`: the swap completes at open and the swapped-in segment's aborted-transaction
/// index is rebuilt from its batches, leaving what `read_committed` sees unchanged.
#[test]
fn an_interrupted_swap_rebuilds_the_transaction_index() {
    let root = tempfile::tempdir().expect("tempdir");
    let a = root.path().join("a");
    let b = root.path().join("b");
    let config = compact_config(300);
    {
        let log = open_log(&a, config.clone(), true);
        txn_write(&log, kv("a", Some("aborted")), 1, 0, 1_000);
        txn_write(&log, kv("b", Some("aborted")), 1, 1, 1_000);
        end_txn(&log, 1, false, 1_000);
        write(&log, &[kv("a", Some("1")), kv("c", Some("1"))], 1_000);
        txn_write(&log, kv("b", Some("2")), 1, 2, 1_000);
        end_txn(&log, 1, true, 1_000);
        roll(&log, 1_000);
        log.close().expect("close");
    }
    fs::create_dir_all(&b).expect("mkdir");
    for e in fs::read_dir(&a).expect("ls") {
        let e = e.expect("entry");
        fs::copy(e.path(), b.join(e.file_name())).expect("copy");
    }
    let before = committed_view(&open_log(&b, config.clone(), true));
    let base = {
        let log = open_log(&a, config.clone(), true);
        let mut big = config.clone();
        big.segment_bytes = 1 << 20;
        log.update_config(big);
        let cleaner = Cleaner::open(root.path().to_path_buf());
        let stats = clean(&cleaner, &log, 10_000).expect("cleaned");
        assert_eq!(stats.segments_written, 1);
        assert_eq!(
            log.collect_aborted_transactions(0, log.log_end_offset())
                .expect("collect")
                .len(),
            1,
            "the abort's marker is kept with its index entry"
        );
        let base = log.segment_base_offsets()[0];
        log.close().expect("close");
        base
    };
    let name = |suffix: &str| format!("{base:020}{suffix}");
    assert!(a.join(name(".txnindex")).exists());
    for s in [".log", ".index", ".timeindex", ".txnindex"] {
        fs::copy(a.join(name(s)), b.join(format!("{}.swap", name(s)))).expect("copy");
    }
    let log = Log::open(b.clone(), tp(), config, 0, false, 0).expect("recover");
    assert_eq!(committed_view(&log), before);
    assert_eq!(log.first_unstable_offset(), None);
    // The aborted data is gone, so the rebuilt index needs no entry for it; what it holds
    // must still describe real aborts of this log.
    for t in log
        .collect_aborted_transactions(0, log.log_end_offset())
        .expect("collect")
    {
        assert_eq!((t.producer_id, t.first_offset, t.last_offset), (1, 0, 2));
    }
}
