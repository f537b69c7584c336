//! Transactions in the log: markers, the last stable offset, the aborted-transaction index
//! (`.txnindex`), their validation, and their survival across reopen, recovery and
//! truncation.

mod common;

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use common::*;
use nagare_protocol::batch_builder::build_control_batch;
use nagare_storage::{AbortedTxn, AppendOrigin, Log, LogConfig, StorageError};

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir.to_path_buf(), tp(), config, 0, false, 0).expect("open log")
}

fn reopen(dir: &Path, config: LogConfig, clean: bool, recovery_point: i64) -> Log {
    Log::open(dir.to_path_buf(), tp(), config, recovery_point, clean, 0).expect("reopen log")
}

/// A transactional batch of `records` records.
fn txn(pid: i64, epoch: i16, seq: i32, records: usize) -> BytesMut {
    build(&Spec {
        records,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        transactional: true,
        ..Spec::default()
    })
}

/// Appends a client batch; returns its first offset.
fn produce(log: &Log, b: BytesMut) -> i64 {
    log.append_as_leader(b, 0, 0).expect("append").first_offset
}

/// Appends a marker as the coordinator; returns its offset.
fn marker(log: &Log, pid: i64, epoch: i16, coord_epoch: i32, commit: bool) -> i64 {
    try_marker(log, pid, epoch, coord_epoch, commit).expect("marker")
}

fn try_marker(
    log: &Log,
    pid: i64,
    epoch: i16,
    coord_epoch: i32,
    commit: bool,
) -> Result<i64, StorageError> {
    let b = build_control_batch(pid, epoch, coord_epoch, commit, 0, 0).expect("build");
    log.append_as_leader_with_origin(BytesMut::from(&b[..]), 0, 0, AppendOrigin::Coordinator)
        .map(|i| i.first_offset)
}

fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
        last_stable_offset: lso,
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn markers_end_transactions_and_bound_the_lso() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    produce(&log, batch(2, 0)); // 0-1 plain
    assert_eq!(log.last_stable_offset(2), 2);
    assert_eq!(produce(&log, txn(7, 0, 0, 2)), 2); // 2-3 txn of 7
    assert_eq!(log.first_unstable_offset(), Some(2));
    assert_eq!(log.last_stable_offset(4), 2);
    assert_eq!(log.last_stable_offset(1), 1, "the HW bounds it too");
    assert_eq!(produce(&log, txn(8, 0, 0, 1)), 4); // 4 txn of 8
    assert_eq!(produce(&log, txn(7, 0, 2, 1)), 5); // 5 continues 7
    let st = log.producer_state(7).expect("state");
    assert_eq!(st.current_txn_first_offset, 2);
    // Commit 7: the LSO moves to 8's transaction.
    assert_eq!(marker(&log, 7, 0, 3, true), 6);
    let st = log.producer_state(7).expect("state");
    assert_eq!((st.current_txn_first_offset, st.coordinator_epoch), (-1, 3));
    assert_eq!(log.first_unstable_offset(), Some(4));
    assert_eq!(log.last_stable_offset(100), 4);
    // Abort 8: everything stable; the index has 8's transaction with the LSO after it.
    assert_eq!(marker(&log, 8, 0, 3, false), 7);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.last_stable_offset(8), 8);
    assert_eq!(
        log.collect_aborted_transactions(0, 8).expect("collect"),
        vec![aborted(8, 4, 7, 8)]
    );
    // A marker for a producer without a transaction is still appended (Kafka does), and
    // indexes nothing.
    assert_eq!(marker(&log, 9, 0, 3, false), 8);
    assert_eq!(
        log.collect_aborted_transactions(0, 9)
            .expect("collect")
            .len(),
        1
    );
    // A read from the data path returns the markers as control batches.
    let data = log.read(6, usize::MAX, true, i64::MAX).expect("read");
    let bytes = data.slice.expect("slice").read_to_bytes().expect("pread");
    let h = nagare_protocol::record_batch::RecordBatchHeader::parse(&bytes).expect("header");
    assert!(h.is_control() && h.is_transactional());
    assert_eq!((h.base_offset, h.producer_id), (6, 7));
}

#[test]
fn aborted_lso_accounts_for_other_open_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    produce(&log, txn(1, 0, 0, 1)); // 0
    produce(&log, txn(2, 0, 0, 1)); // 1
                                    // Abort 2 while 1 is open: its entry's LSO is 1's first offset.
    assert_eq!(marker(&log, 2, 0, 0, false), 2);
    assert_eq!(marker(&log, 1, 0, 0, false), 3);
    assert_eq!(
        log.collect_aborted_transactions(0, 4).expect("collect"),
        vec![aborted(2, 1, 2, 0), aborted(1, 0, 3, 4)]
    );
    // Overlap rule: marker at or after the start, first offset below the bound.
    assert_eq!(
        log.collect_aborted_transactions(3, 4).expect("collect"),
        vec![aborted(1, 0, 3, 4)]
    );
    assert_eq!(
        log.collect_aborted_transactions(0, 1).expect("collect"),
        vec![aborted(1, 0, 3, 4)],
        "2's transaction starts at the bound"
    );
    assert!(log
        .collect_aborted_transactions(4, 10)
        .expect("collect")
        .is_empty());
}

#[test]
fn validation_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    // A client may not write a marker (INVALID_RECORD).
    let b = build_control_batch(5, 0, 0, true, 0, 0).expect("build");
    assert!(matches!(
        log.append_as_leader(BytesMut::from(&b[..]), 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    produce(&log, txn(5, 2, 0, 1));
    // A non-transactional batch while the transaction is open: INVALID_TXN_STATE.
    assert!(matches!(
        log.append_as_leader(idempotent(5, 2, 1, 1), 0, 0),
        Err(StorageError::InvalidTxnState(_))
    ));
    // An older producer epoch on a marker: INVALID_PRODUCER_EPOCH.
    assert!(matches!(
        try_marker(&log, 5, 1, 0, false),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    assert_eq!(marker(&log, 5, 2, 4, false), 1);
    // An older coordinator epoch: TRANSACTION_COORDINATOR_FENCED; the same one is fine.
    assert!(matches!(
        try_marker(&log, 5, 2, 3, true),
        Err(StorageError::TransactionCoordinatorFenced(_))
    ));
    assert_eq!(marker(&log, 5, 2, 4, true), 2);
    // KIP-890 part 2: a marker with a bumped epoch moves the producer to it.
    assert_eq!(marker(&log, 5, 3, 4, true), 3);
    assert_eq!(log.producer_state(5).expect("state").producer_epoch, 3);
    assert!(matches!(
        log.append_as_leader(txn(5, 2, 0, 1), 0, 0),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    // The coordinator's own transactional batches (TxnOffsetCommit) carry no sequence.
    let offsets = build(&Spec {
        producer_id: 11,
        producer_epoch: 0,
        base_sequence: -1,
        transactional: true,
        ..Spec::default()
    });
    let first = log
        .append_as_leader_with_origin(offsets.clone(), 0, 0, AppendOrigin::Coordinator)
        .expect("coordinator append")
        .first_offset;
    assert_eq!(log.first_unstable_offset(), Some(first));
    log.append_as_leader_with_origin(offsets.clone(), 0, 0, AppendOrigin::Coordinator)
        .expect("continues the transaction");
    assert_eq!(log.first_unstable_offset(), Some(first));
    // From a client, a producer batch without a sequence is refused.
    assert!(matches!(
        log.append_as_leader(offsets, 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    marker(&log, 11, 0, 0, true);
    assert_eq!(log.first_unstable_offset(), None);
    // Nothing refused was written.
    assert_eq!(log.log_end_offset(), first + 3);
}

#[test]
fn aborted_transactions_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = txn(1, 0, 0, 1).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 3,
        ..small_config()
    };
    let log = open(dir.path(), config);
    // Producer 1 aborts 0..=3 spanning segments; producer 2 aborts later ones.
    let mut seq1 = 0;
    for _ in 0..3 {
        produce(&log, txn(1, 0, seq1, 1));
        seq1 += 1;
    }
    let m1 = marker(&log, 1, 0, 0, false);
    let f2 = produce(&log, txn(2, 0, 0, 1));
    produce(&log, batch(1, 0));
    let m2 = marker(&log, 2, 0, 0, false);
    let f3 = produce(&log, txn(1, 0, seq1, 1));
    let m3 = marker(&log, 1, 0, 0, false);
    assert!(log.segment_count() >= 3, "{:?}", log.segment_base_offsets());
    let all = vec![
        aborted(1, 0, m1, m1 + 1),
        aborted(2, f2, m2, m2 + 1),
        aborted(1, f3, m3, m3 + 1),
    ];
    let end = log.log_end_offset();
    assert_eq!(
        log.collect_aborted_transactions(0, end).expect("collect"),
        all
    );
    assert_eq!(
        log.collect_aborted_transactions(m1 + 1, end)
            .expect("collect"),
        all[1..].to_vec()
    );
    // Reading [1, m1] needs only the first (collection stops at the first entry whose LSO
    // reaches the bound).
    assert_eq!(
        log.collect_aborted_transactions(1, m1 + 1)
            .expect("collect"),
        all[..1].to_vec()
    );
    // The index files exist and hold Kafka's 34-byte entries.
    log.close().expect("close");
    let sizes: u64 = files(dir.path(), ".txnindex")
        .iter()
        .map(|f| fs::metadata(dir.path().join(f)).expect("meta").len())
        .sum();
    assert_eq!(sizes, 3 * 34);
}

/// Builds a log with a committed, an aborted and an open transaction and a few segments.
fn mixed_log(dir: &Path, config: LogConfig) -> (Log, Vec<AbortedTxn>, i64) {
    let log = open(dir, config);
    produce(&log, txn(1, 0, 0, 2)); // 0-1
    produce(&log, txn(2, 0, 0, 2)); // 2-3
    let m = marker(&log, 1, 0, 0, false); // 4: abort 1 while 2 is open
    produce(&log, batch(2, 0)); // 5-6
    marker(&log, 2, 0, 0, true); // 7
    let open_first = produce(&log, txn(3, 0, 0, 1)); // 8: stays open
    produce(&log, txn(1, 0, 2, 1)); // 9
    let m2 = marker(&log, 1, 0, 0, false); // 10
    produce(&log, batch(1, 0)); // 11
    let expected = vec![aborted(1, 0, m, 2), aborted(1, 9, m2, open_first)];
    (log, expected, open_first)
}

#[test]
fn reopen_restores_lso_and_index_after_a_clean_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = txn(1, 0, 0, 2).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        ..small_config()
    };
    let (log, expected, open_first) = mixed_log(dir.path(), config.clone());
    let end = log.log_end_offset();
    assert_eq!(
        log.collect_aborted_transactions(0, end).expect("c"),
        expected
    );
    log.close().expect("close");
    drop(log);
    let log = reopen(dir.path(), config, true, end);
    assert_eq!(log.first_unstable_offset(), Some(open_first));
    assert_eq!(log.last_stable_offset(end), open_first);
    assert_eq!(
        log.collect_aborted_transactions(0, end).expect("c"),
        expected
    );
    assert_eq!(
        log.producer_state(3)
            .expect("open producer")
            .current_txn_first_offset,
        open_first
    );
    // The open transaction can still be ended after the reopen.
    marker(&log, 3, 0, 0, true);
    assert_eq!(log.first_unstable_offset(), None);
}

#[test]
fn recovery_without_clean_shutdown_rebuilds_lso_and_index() {
    for (recovery_point, drop_snapshots) in
        [(0, true), (5, true), (9, true), (0, false), (5, false)]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = txn(1, 0, 0, 2).len() as u64;
        let config = LogConfig {
            segment_bytes: one * 2,
            ..small_config()
        };
        let (log, expected, open_first) = mixed_log(dir.path(), config.clone());
        let end = log.log_end_offset();
        if recovery_point > 0 {
            assert!(log.flush().expect("flush") >= recovery_point);
        }
        // kill -9: no close, no snapshot at the end, indexes of the active segment unwritten;
        // stale index files of recovered segments are replaced.
        drop(log);
        if drop_snapshots {
            for f in files(dir.path(), ".snapshot") {
                fs::remove_file(dir.path().join(f)).expect("rm snapshot");
            }
        } else {
            assert!(!files(dir.path(), ".snapshot").is_empty(), "roll snapshots");
        }
        let log = reopen(dir.path(), config.clone(), false, recovery_point);
        assert_eq!(log.log_end_offset(), end, "rp {recovery_point}");
        assert_eq!(log.first_unstable_offset(), Some(open_first));
        assert_eq!(
            log.collect_aborted_transactions(0, end).expect("c"),
            expected,
            "rp {recovery_point}"
        );
        log.close().expect("close");
        drop(log);
        // And the rebuilt index was written: a clean reopen reads it back.
        let log = reopen(dir.path(), config, true, end);
        assert_eq!(
            log.collect_aborted_transactions(0, end).expect("c"),
            expected
        );
    }
}

#[test]
fn a_corrupt_txn_index_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = txn(1, 0, 0, 2).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        ..small_config()
    };
    let (log, expected, _) = mixed_log(dir.path(), config.clone());
    let end = log.log_end_offset();
    log.close().expect("close");
    drop(log);
    let idx = files(dir.path(), ".txnindex");
    assert!(!idx.is_empty());
    for f in &idx {
        fs::write(dir.path().join(f), b"garbage").expect("corrupt");
    }
    let log = reopen(dir.path(), config, true, end);
    assert_eq!(
        log.collect_aborted_transactions(0, end).expect("c"),
        expected
    );
}

#[test]
fn truncation_drops_index_entries_and_reopens_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, expected, _) = mixed_log(dir.path(), small_config());
    // Truncate to 10: the second abort's marker goes, so 1's transaction (from 9) and 3's
    // (from 8) are open again.
    log.truncate_to(10).expect("truncate");
    assert_eq!(
        log.collect_aborted_transactions(0, 10).expect("c"),
        expected[..1].to_vec()
    );
    assert_eq!(log.first_unstable_offset(), Some(8));
    assert_eq!(
        log.producer_state(1).expect("1").current_txn_first_offset,
        9
    );
    // Truncate to 4: the first abort goes; 1 and 2 are open from 0 and 2.
    log.truncate_to(4).expect("truncate");
    assert!(log
        .collect_aborted_transactions(0, 4)
        .expect("c")
        .is_empty());
    assert_eq!(log.first_unstable_offset(), Some(0));
    log.close().expect("close");
    drop(log);
    let log = reopen(dir.path(), small_config(), true, 4);
    assert!(log
        .collect_aborted_transactions(0, 4)
        .expect("c")
        .is_empty());
    assert_eq!(log.first_unstable_offset(), Some(0));
}

#[test]
fn followers_track_transactions_from_replicated_batches() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (leader, expected, open_first) = mixed_log(leader_dir.path(), small_config());
    let follower = open(follower_dir.path(), small_config());
    let end = leader.log_end_offset();
    let data = leader.read(0, usize::MAX, true, i64::MAX).expect("read");
    let bytes = data.slice.expect("slice").read_to_bytes().expect("pread");
    follower
        .append_as_follower(BytesMut::from(&bytes[..]), 0)
        .expect("replicate");
    assert_eq!(follower.log_end_offset(), end);
    assert_eq!(follower.first_unstable_offset(), Some(open_first));
    assert_eq!(
        follower.collect_aborted_transactions(0, end).expect("c"),
        expected
    );
}

#[test]
fn retention_stops_at_the_first_unstable_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        retention_bytes: 0,
        retention_ms: 1,
        ..small_config()
    };
    let log = open(dir.path(), config);
    produce(&log, batch(1, 0)); // 0
    produce(&log, batch(1, 0)); // 1
    produce(&log, txn(4, 0, 0, 1)); // 2: open
    for _ in 0..5 {
        produce(&log, batch(1, 0)); // 3..7
    }
    let end = log.log_end_offset();
    assert_eq!(log.segment_base_offsets()[..2], [0, 2]);
    // Only [0, 1] ends at or below the first unstable offset 2.
    assert_eq!(
        log.enforce_retention_below(10_000, end).expect("retention"),
        1
    );
    assert_eq!(log.log_start_offset(), 2);
    assert_eq!(
        log.enforce_retention_below(10_000, end).expect("retention"),
        0
    );
    // Once the transaction ends the rest may go (up to the high watermark).
    marker(&log, 4, 0, 0, true);
    assert!(log.enforce_retention_below(10_000, 6).expect("retention") >= 1);
    assert!(log.log_start_offset() > 2 && log.log_start_offset() <= 6);
}

#[test]
fn delete_records_may_pass_an_open_transaction_as_in_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    produce(&log, txn(4, 0, 0, 2)); // 0-1: open
    produce(&log, batch(3, 0)); // 2-4
    assert_eq!(log.last_stable_offset(5), 0);
    assert_eq!(log.delete_records_before(1).expect("delete"), 1);
    // The first unstable offset is clamped to the log start (Kafka's
    // updateFirstUnstableOffset); the transaction is still open.
    assert_eq!(log.first_unstable_offset(), Some(1));
    assert_eq!(log.last_stable_offset(5), 1);
    marker(&log, 4, 0, 0, false);
    assert_eq!(log.last_stable_offset(6), 6);
}

#[test]
fn a_full_truncation_forgets_open_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = txn(1, 0, 0, 1).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 2,
        ..small_config()
    };
    let log = open(dir.path(), config);
    produce(&log, txn(1, 0, 0, 1)); // 0: open
    for _ in 0..4 {
        produce(&log, batch(1, 0)); // rolls take snapshots holding the open transaction
    }
    assert_eq!(log.first_unstable_offset(), Some(0));
    // A follower whose leader's log starts past its end starts over there.
    log.truncate_fully_and_start_at(100).expect("truncate");
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.last_stable_offset(100), 100);
    assert!(log.producer_state(1).is_none());
}

#[test]
fn the_coordinator_epoch_survives_reopen() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path(), small_config());
        produce(&log, txn(1, 0, 0, 1));
        marker(&log, 1, 0, 5, false);
        let end = log.log_end_offset();
        if clean {
            log.close().expect("close");
        }
        drop(log);
        let log = reopen(
            dir.path(),
            small_config(),
            clean,
            if clean { end } else { 0 },
        );
        let st = log.producer_state(1).expect("state");
        assert_eq!((st.coordinator_epoch, st.current_txn_first_offset), (5, -1));
        assert!(matches!(
            try_marker(&log, 1, 0, 4, true),
            Err(StorageError::TransactionCoordinatorFenced(_))
        ));
    }
}

// ---------------------------------------------------------------------------------------
// A model check: random transactional workloads against a model of Kafka's rules, across
// truncations and reopens with and without a clean shutdown.

use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A transactional batch of producer `p` (starts its transaction if none is open).
    Data(usize, usize),
    /// A plain batch.
    Plain(usize),
    /// A marker for producer `p` (commit or abort), as the coordinator writes it.
    End(usize, bool),
    /// Replication truncation to `fraction` of the log end.
    Truncate(u8),
    /// Close (clean) or drop (kill -9) and reopen; `flush` before a kill moves the
    /// recovery point; `drop_snapshots` removes every producer snapshot first.
    Reopen {
        clean: bool,
        flush: bool,
        drop_snapshots: bool,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 1usize..4).prop_map(|(p, n)| Op::Data(p, n)),
        2 => (1usize..3).prop_map(Op::Plain),
        4 => (0usize..3, any::<bool>()).prop_map(|(p, c)| Op::End(p, c)),
        1 => (0u8..100).prop_map(Op::Truncate),
        1 => (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(clean, flush, drop_snapshots)| Op::Reopen { clean, flush, drop_snapshots }),
    ]
}

/// What is in the log, in offset order: batches as (first offset, last offset, kind).
#[derive(Debug, Clone, Copy)]
enum Written {
    Data(i64),
    Plain,
    End(i64, bool),
}

/// Kafka's rules over the batches in the log: the aborted transactions (with their LSO)
/// and the open transactions' first offsets.
fn model(log: &[(i64, i64, Written)]) -> (Vec<AbortedTxn>, Option<i64>) {
    let mut open: std::collections::BTreeMap<i64, i64> = Default::default(); // pid -> first
    let mut aborted = Vec::new();
    for &(first, _last, w) in log {
        match w {
            Written::Data(pid) => {
                open.entry(pid).or_insert(first);
            }
            Written::Plain => {}
            Written::End(pid, commit) => {
                if let Some(f) = open.remove(&pid) {
                    if !commit {
                        let lso = open.values().min().copied().unwrap_or(first + 1);
                        aborted.push(aborted_entry(pid, f, first, lso));
                    }
                }
            }
        }
    }
    (aborted, open.values().min().copied())
}

fn aborted_entry(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
        last_stable_offset: lso,
    }
}

fn check(log: &Log, written: &[(i64, i64, Written)], ctx: &str) {
    let end = log.log_end_offset();
    let (aborted, fuo) = model(written);
    assert_eq!(log.first_unstable_offset(), fuo, "{ctx}");
    assert_eq!(log.last_stable_offset(end), fuo.unwrap_or(end), "{ctx}");
    assert_eq!(
        log.collect_aborted_transactions(0, end).expect("collect"),
        aborted,
        "{ctx}"
    );
    // Every range: exactly the overlapping aborted transactions.
    for start in (0..end).step_by(3) {
        for upper in (start + 1..=end).step_by(4) {
            let want: Vec<AbortedTxn> = aborted
                .iter()
                .copied()
                .filter(|a| a.last_offset >= start && a.first_offset < upper)
                .collect();
            assert_eq!(
                log.collect_aborted_transactions(start, upper)
                    .expect("collect"),
                want,
                "{ctx}: [{start}, {upper})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn transactions_match_the_model_across_truncation_and_reopen(
        ops in proptest::collection::vec(arb_op(), 1..60),
        segment_batches in 2u64..6,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = txn(1, 0, 0, 1).len() as u64;
        let config = LogConfig {
            segment_bytes: one * segment_batches,
            ..small_config()
        };
        let mut log = open(dir.path(), config.clone());
        let mut written: Vec<(i64, i64, Written)> = Vec::new();
        let mut seqs = [0i32; 3];
        for (i, op) in ops.iter().enumerate() {
            let ctx = format!("op {i} {op:?}");
            match *op {
                Op::Data(p, n) => {
                    let pid = 100 + p as i64;
                    let info = log
                        .append_as_leader(txn(pid, 0, seqs[p], n), 0, 0)
                        .expect("append");
                    seqs[p] += n as i32;
                    written.push((info.first_offset, info.last_offset, Written::Data(pid)));
                }
                Op::Plain(n) => {
                    let info = log.append_as_leader(batch(n, 0), 0, 0).expect("append");
                    written.push((info.first_offset, info.last_offset, Written::Plain));
                }
                Op::End(p, commit) => {
                    let pid = 100 + p as i64;
                    let at = marker(&log, pid, 0, 0, commit);
                    written.push((at, at, Written::End(pid, commit)));
                }
                Op::Truncate(f) => {
                    let end = log.log_end_offset();
                    let to = end * i64::from(f) / 100;
                    log.truncate_to(to).expect("truncate");
                    written.retain(|w| w.1 < to);
                    // A truncated producer may continue at any sequence: its state is gone or
                    // older; restart its sequences at what the log still has.
                    seqs = [0; 3];
                    for &(f0, l0, w) in &written {
                        if let Written::Data(pid) = w {
                            seqs[(pid - 100) as usize] += (l0 - f0 + 1) as i32;
                        }
                    }
                }
                Op::Reopen { clean, flush, drop_snapshots } => {
                    let end = log.log_end_offset();
                    let rp = if clean {
                        log.close().expect("close");
                        end
                    } else if flush {
                        log.flush().expect("flush")
                    } else {
                        0
                    };
                    drop(log);
                    if drop_snapshots {
                        for f in files(dir.path(), ".snapshot") {
                            fs::remove_file(dir.path().join(f)).expect("rm");
                        }
                    }
                    log = reopen(dir.path(), config.clone(), clean, rp);
                    prop_assert_eq!(log.log_end_offset(), end);
                }
            }
            prop_assert_eq!(log.log_end_offset(), written.last().map_or(0, |w| w.1 + 1).max(log.log_start_offset()));
            check(&log, &written, &ctx);
        }
    }
}

/// KIP-890 part 1: a transactional write that would start its producer's transaction on this
/// partition needs a verification guard that is still current.
#[test]
fn verification_guard_admits_the_first_write_and_a_marker_in_between_invalidates_it() {
    use nagare_storage::TxnVerification::{NotRequired, Required};
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_config());
    let append = |b: BytesMut, v| log.append_as_leader_verified(b, 0, 0, AppendOrigin::Client, v);

    // Without a guard (or with a made-up one) the first write is refused; nothing is written.
    let refused = append(txn(7, 0, 0, 2), Required(None));
    assert!(
        matches!(refused, Err(StorageError::InvalidTxnState(_))),
        "{refused:?}"
    );
    assert_eq!(log.log_end_offset(), 0);
    let other = log
        .start_txn_verification(8, 0, 0)
        .expect("guard of producer 8");
    let refused = append(txn(7, 0, 0, 2), Required(Some(other)));
    assert!(
        matches!(refused, Err(StorageError::InvalidTxnState(_))),
        "{refused:?}"
    );
    assert_eq!(log.log_end_offset(), 0);

    // Verified: appended; the transaction is now ongoing and later writes need no guard.
    let g = log.start_txn_verification(7, 0, 0).expect("guard");
    assert_eq!(
        log.start_txn_verification(7, 0, 0),
        Some(g),
        "same verification, same guard"
    );
    assert_eq!(
        append(txn(7, 0, 0, 2), Required(Some(g)))
            .expect("verified")
            .first_offset,
        0
    );
    assert_eq!(log.start_txn_verification(7, 0, 0), None);
    assert_eq!(
        append(txn(7, 0, 2, 1), Required(None))
            .expect("ongoing")
            .first_offset,
        2
    );
    // The guard was used up: it does not start a second transaction after the marker.
    marker(&log, 7, 0, 0, false);
    let stale = append(txn(7, 0, 3, 1), Required(Some(g)));
    assert!(
        matches!(stale, Err(StorageError::InvalidTxnState(_))),
        "{stale:?}"
    );

    // A marker landing between the verification and the append (the transaction was aborted
    // meanwhile): the late write is refused instead of opening a hanging transaction.
    let g = log.start_txn_verification(7, 0, 0).expect("guard");
    let end = marker(&log, 7, 0, 0, false) + 1;
    let late = append(txn(7, 0, 3, 1), Required(Some(g)));
    assert!(
        matches!(late, Err(StorageError::InvalidTxnState(_))),
        "{late:?}"
    );
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.first_unstable_offset(), None);

    // A newer epoch replaces the verification of an older one.
    let old = log.start_txn_verification(7, 0, 0).expect("guard");
    let new = log.start_txn_verification(7, 1, 0).expect("guard");
    assert_ne!(old, new);
    assert!(append(txn(7, 1, 0, 1), Required(Some(old))).is_err());
    append(txn(7, 1, 0, 1), Required(Some(new))).expect("verified at epoch 1");

    // Verification off: the storage's own checks only.
    append(txn(9, 0, 0, 1), NotRequired).expect("unverified append allowed when off");
}
