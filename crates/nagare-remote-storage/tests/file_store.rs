//! The remote storage manager against a `file://` store, with segments written by the real
//! `nagare-storage` log: upload every rolled segment through the state machine, read every
//! offset back byte-for-byte against the local log, reload the manifest as a new leader
//! would, delete by retention, then delete the partition.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use nagare_remote_storage::metadata::{
    RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteSegmentState, TopicIdPartition,
};
use nagare_remote_storage::plan::{self, LocalSegment};
use nagare_remote_storage::{
    RemoteLogState, RemoteStorageConfig, RemoteStorageManager, SegmentFiles,
};
use nagare_storage::{Log, LogConfig, TopicPartition};

fn seg_file(dir: &Path, base: i64, suffix: &str) -> std::path::PathBuf {
    dir.join(format!("{base:020}{suffix}"))
}

/// Writes `n` one-record batches into a log with ~1 KiB segments; returns the log.
fn write_log(dir: &Path, n: usize) -> Log {
    let config = LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..Default::default()
    };
    let log = Log::open(
        dir.to_path_buf(),
        TopicPartition::new("t", 0),
        config,
        0,
        true,
        1_000,
    )
    .expect("open");
    for i in 0..n {
        let value = Bytes::from(format!("value-{i:05}-{}", "x".repeat(i % 50)));
        let batch = nagare_protocol::batch_builder::build_batch(
            [(Some(Bytes::from(format!("k{i}"))), Some(value))],
            0,
            1_000 + i as i64,
        )
        .expect("batch");
        log.append_as_leader(batch, 0, 1_000 + i as i64)
            .expect("append");
    }
    log.flush().expect("flush");
    log
}

fn local_segments(log: &Log) -> Vec<LocalSegment> {
    let bases = log.segment_base_offsets();
    bases
        .iter()
        .enumerate()
        .map(|(i, &base)| {
            let next = bases.get(i + 1).copied().unwrap_or(log.log_end_offset());
            let size = std::fs::metadata(seg_file(log.dir(), base, ".log"))
                .map(|m| m.len())
                .unwrap_or(0);
            LocalSegment {
                base_offset: base,
                next_offset: next,
                size_bytes: size,
                max_timestamp_ms: 1_000 + next - 1,
            }
        })
        .collect()
}

fn read_local(log: &Log, offset: i64, max_bytes: usize) -> Vec<u8> {
    let data = log
        .read(offset, max_bytes, true, log.log_end_offset())
        .expect("local read");
    data.slice
        .map(|s| s.read_to_bytes().expect("bytes").to_vec())
        .unwrap_or_default()
}

#[tokio::test]
async fn upload_read_reload_retain_and_delete() {
    let local_dir = tempfile::tempdir().expect("tmp");
    let store_dir = tempfile::tempdir().expect("tmp");
    let log = write_log(local_dir.path(), 300);
    // Close so every index file is written out exactly sized.
    log.close().expect("close");
    let log = Log::open(
        local_dir.path().to_path_buf(),
        TopicPartition::new("t", 0),
        log.config(),
        log.log_end_offset(),
        true,
        2_000,
    )
    .expect("reopen");
    let url = format!("file://{}", store_dir.path().display());
    let config = RemoteStorageConfig::from_lookup(|k| (k == "rsm.config.url").then(|| url.clone()))
        .expect("config");
    let (store, root) = config.build().expect("store");
    let rsm = RemoteStorageManager::new(store.clone(), root.clone(), 1 << 20);
    let tp = TopicIdPartition {
        topic: "t".into(),
        topic_id: uuid::Uuid::from_u128(42),
        partition: 0,
    };
    assert!(rsm.load_state(&tp).await.expect("load").is_none());

    // The leader's copy loop: every rolled segment below the HW, once, persisting each step.
    let mut state = RemoteLogState::new(tp.clone());
    assert!(state.claim(0).expect("claim").is_empty());
    let segments = local_segments(&log);
    assert!(segments.len() > 5, "small segments: {}", segments.len());
    let hw = log.log_end_offset();
    let candidates = plan::upload_candidates(&segments, hw, state.next_copy_offset());
    assert_eq!(
        candidates.len(),
        segments.len() - 1,
        "all but the active segment"
    );
    for s in &candidates {
        let m = RemoteLogSegmentMetadata {
            id: RemoteLogSegmentId::generate(tp.clone()),
            start_offset: s.base_offset,
            end_offset: s.next_offset - 1,
            max_timestamp_ms: s.max_timestamp_ms,
            broker_id: 1,
            event_timestamp_ms: 0,
            segment_size_bytes: s.size_bytes,
            segment_leader_epochs: BTreeMap::from([(0, s.base_offset)]),
            txn_index_present: false,
            producer_snapshot_present: false,
            state: RemoteSegmentState::CopyStarted,
        };
        state.begin_copy(m.clone(), 0).expect("begin");
        rsm.save_state(&state).await.expect("save");
        let files = SegmentFiles {
            log: seg_file(log.dir(), s.base_offset, ".log"),
            offset_index: seg_file(log.dir(), s.base_offset, ".index"),
            time_index: seg_file(log.dir(), s.base_offset, ".timeindex"),
            txn_index: None,
            producer_snapshot: None,
        };
        let n = rsm.copy_log_segment_data(&m, &files).await.expect("copy");
        assert!(n >= s.size_bytes);
        state.finish_copy(&m.id, 1, 0).expect("finish");
        rsm.save_state(&state).await.expect("save");
    }
    // Nothing left to upload; local retention may now delete all rolled segments.
    assert!(plan::upload_candidates(&segments, hw, state.next_copy_offset()).is_empty());
    assert_eq!(
        plan::local_retention_count(&segments, state.copied_end_offset(), 10_000, 0, -1),
        segments.len() - 1
    );

    // A new leader reloads the manifest and sees the same remote log.
    let rsm2 = RemoteStorageManager::new(store.clone(), root.clone(), 1 << 20);
    let reloaded = rsm2.load_state(&tp).await.expect("load").expect("present");
    assert_eq!(reloaded, state);

    // Every offset read remotely starts with the same bytes as the local read (same
    // batches), and each whole segment reads back byte-for-byte.
    let copied_end = state.copied_end_offset().expect("copied");
    for offset in 0..=copied_end {
        let m = reloaded.segment_for_fetch(offset).expect("segment");
        let remote = rsm2.read(m, offset, 300).await.expect("read");
        assert!(!remote.is_empty(), "offset {offset}");
        let local = read_local(&log, offset, remote.len());
        assert_eq!(remote.as_ref(), &local[..], "offset {offset}");
    }
    for m in reloaded.finished() {
        let all = rsm2
            .read(m, m.start_offset, usize::MAX / 2)
            .await
            .expect("read");
        let file = std::fs::read(seg_file(log.dir(), m.start_offset, ".log")).expect("file");
        assert_eq!(all.as_ref(), &file[..]);
    }
    assert!(rsm2.index_cache().used_bytes() > 0, "indexes are cached");

    // Retention by size removes the oldest remote segments, objects first, then the entry.
    let before = rsm2.list_partition(&tp).await.expect("list").len();
    let doomed = state.retention_candidates(10_000, -1, (state.size_bytes() / 2) as i64, 0);
    assert!(!doomed.is_empty());
    for m in &doomed {
        state.begin_delete(&m.id, 2, 0).expect("begin delete");
        rsm.save_state(&state).await.expect("save");
        rsm.delete_log_segment_data(m).await.expect("delete");
        // A repeated deletion (retry after a crash) succeeds too.
        rsm.delete_log_segment_data(m).await.expect("delete again");
        state.finish_delete(&m.id, 3, 0).expect("finish delete");
        rsm.save_state(&state).await.expect("save");
    }
    let after = rsm.list_partition(&tp).await.expect("list");
    assert_eq!(
        after.len(),
        before - doomed.len() * 4,
        "log, index, timeindex, leader-epoch slice each"
    );
    assert!(state.log_start_offset() > Some(0));

    // Topic deletion: nothing of the partition remains.
    let n = rsm.delete_partition(&tp).await.expect("delete partition");
    assert_eq!(n, after.len());
    assert!(rsm.list_partition(&tp).await.expect("list").is_empty());
    assert!(rsm.load_state(&tp).await.expect("load").is_none());
}
