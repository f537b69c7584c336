//! Log recovery from corrupted files: a valid log directory (several segments with their
//! offset, time and transaction indexes, producer snapshots, a leader-epoch checkpoint, the
//! recovery-point, log-start-offset and cleaner checkpoints, the clean-shutdown marker) is
//! written once; each input copies it, then overwrites, truncates, extends or deletes bytes
//! of its files, and opens it again with `LogManager::open`, the broker's startup path.
//! Recovery must succeed (truncating what is invalid) or refuse with an error, never panic,
//! and never lose a record the damage did not reach: every batch below the first damaged
//! `.log` byte (and at or above the log start offset) must still be read back unchanged.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Input;
use bytes::{Bytes, BytesMut};
use nagare_protocol::batch_builder::build_batch;
use nagare_protocol::record_batch::update_crc;
use nagare_storage::{
    LogConfig, LogManager, TopicPartition, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE,
};

/// One batch of the template log: where it is and what it holds.
struct Batch {
    base_offset: i64,
    /// Relative path of its segment file.
    segment: String,
    /// Byte range in that file.
    start: u64,
    end: u64,
    bytes: Bytes,
}

struct Template {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Every file of the template, relative to `root`, sorted.
    files: Vec<String>,
    batches: Vec<Batch>,
}

fn tp() -> TopicPartition {
    TopicPartition::new("fuzz", 0)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        segment_index_bytes: 4096,
        index_interval_bytes: 64,
        retention_ms: -1,
        message_timestamp_after_max_ms: i64::MAX,
        message_timestamp_before_max_ms: i64::MAX,
        ..LogConfig::default()
    }
}

/// Byte offsets in a v2 batch header.
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = crate::scratch_dir();
        let root = dir.path().join("logs");
        let manager = LogManager::open(root.clone(), |_| config(), 1_000).expect("open");
        let log = manager
            .get_or_create(&tp(), config(), 1_000)
            .expect("create");
        let mut batches = Vec::new();
        for i in 0..12i64 {
            // Leader epochs 0, 1, 2 (a leader-epoch checkpoint with three entries).
            let epoch = (i / 4) as i32;
            if i % 4 == 0 {
                log.assign_epoch_start(epoch, i).expect("epoch");
            }
            let key = Bytes::from(format!("key-{}", i % 5));
            let value = Bytes::from(format!("value-{i}-{}", "x".repeat((i % 7) as usize * 9)));
            let mut b: BytesMut =
                build_batch([(Some(key), Some(value))], epoch, 1_000 + i).expect("batch");
            if i % 3 == 0 {
                // An idempotent producer's batch: producer state and snapshots to recover.
                b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&7i64.to_be_bytes());
                b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&0i16.to_be_bytes());
                b[BASE_SEQUENCE..BASE_SEQUENCE + 4]
                    .copy_from_slice(&((i / 3) as i32).to_be_bytes());
                update_crc(&mut b).expect("crc");
            }
            let info = log.append_as_leader(b, epoch, 1_000 + i).expect("append");
            assert_eq!(info.first_offset, i);
        }
        log.flush().expect("flush");
        manager.shutdown().expect("shutdown");
        drop(log);
        drop(manager);
        // Locate every batch in the segment files.
        let part = root.join(tp().dir_name());
        let mut segments: Vec<(i64, String)> = fs::read_dir(&part)
            .expect("read dir")
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let base = name.strip_suffix(".log")?.parse().ok()?;
                Some((base, format!("{}/{name}", tp().dir_name())))
            })
            .collect();
        segments.sort();
        for (_, seg) in &segments {
            let bytes = fs::read(root.join(seg)).expect("read segment");
            let mut pos = 0usize;
            for r in nagare_protocol::record_batch::batches(&bytes) {
                let (h, range) = r.expect("template batch");
                pos = range.end;
                batches.push(Batch {
                    base_offset: h.base_offset,
                    segment: seg.clone(),
                    start: range.start as u64,
                    end: range.end as u64,
                    bytes: Bytes::copy_from_slice(&bytes[range]),
                });
            }
            assert_eq!(pos, bytes.len());
        }
        assert_eq!(batches.len(), 12);
        let mut files = Vec::new();
        collect(&root, &root, &mut files);
        files.sort();
        Template {
            _dir: dir,
            root,
            files,
            batches,
        }
    })
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            fs::copy(&p, &dest).expect("copy");
        }
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let t = template();
    let dir = crate::scratch_dir();
    let root = dir.path().join("logs");
    copy_tree(&t.root, &root);
    let mut input = Input(data);
    // The first damaged byte of each segment file (`u64::MAX`: undamaged).
    let mut damage: std::collections::HashMap<&str, u64> = Default::default();
    let mut start_checkpoint_touched = false;
    // The recovery-point checkpoint damaged or deleted, and the clean-shutdown marker deleted.
    let mut recovery_point_touched = false;
    let mut unclean = false;
    let mut ops = 0;
    while !input.is_empty() && ops < 16 {
        ops += 1;
        let file = &t.files[input.u8() as usize % t.files.len()];
        let path = root.join(file);
        let op = input.u8();
        let at = u64::from(input.u16());
        let Ok(mut contents) = fs::read(&path) else {
            continue;
        };
        let len = contents.len() as u64;
        let first_damaged = match op % 4 {
            // Overwrite bytes at `at` (within the file).
            0 => {
                let n = (input.u8() as usize % 16) + 1;
                let bytes = input.take(n);
                let at = if len == 0 { 0 } else { at % len };
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = contents.get_mut(at as usize + i) {
                        *slot = *b;
                    }
                }
                at
            }
            // Truncate to `at`.
            1 => {
                let at = at.min(len);
                contents.truncate(at as usize);
                at
            }
            // Append garbage (a torn write past the end).
            2 => {
                let n = input.u8() as usize % 64;
                contents.extend_from_slice(input.take(n));
                len
            }
            // Delete the file.
            _ => {
                let _ = fs::remove_file(&path);
                if file.ends_with(".log") {
                    damage.insert(file.as_str(), 0);
                }
                if file.as_str() == LOG_START_OFFSET_CHECKPOINT_FILE {
                    start_checkpoint_touched = true;
                }
                recovery_point_touched |= file.as_str() == RECOVERY_POINT_CHECKPOINT_FILE;
                unclean |= file.as_str() == CLEAN_SHUTDOWN_FILE;
                continue;
            }
        };
        fs::write(&path, &contents).expect("write");
        if file.ends_with(".log") {
            let d = damage.entry(file.as_str()).or_insert(u64::MAX);
            *d = (*d).min(first_damaged);
        }
        if file.as_str() == LOG_START_OFFSET_CHECKPOINT_FILE {
            start_checkpoint_touched = true;
        }
        recovery_point_touched |= file.as_str() == RECOVERY_POINT_CHECKPOINT_FILE;
    }
    let Ok(manager) = LogManager::open(root.clone(), |_| config(), 2_000) else {
        // Refused with an error: allowed.
        return;
    };
    let Some(log) = manager.get(&tp()) else {
        // The partition directory itself is always there; a log that does not open is an
        // error above, not a silently missing partition.
        panic!("the partition log is missing after a successful open");
    };
    // The first batch the damage reached, in offset order.
    let lost_from = t
        .batches
        .iter()
        .find(|b| damage.get(b.segment.as_str()).is_some_and(|&d| d < b.end))
        .map_or(i64::MAX, |b| b.base_offset);
    // After an unclean shutdown without a valid recovery point every segment counts as
    // unflushed, and Kafka deletes every segment after a corrupt unflushed one (even one whose
    // damage lies past its last batch): batches after a damaged segment may go.
    let lost_from = if unclean && recovery_point_touched {
        t.batches
            .iter()
            .position(|b| damage.contains_key(b.segment.as_str()))
            .and_then(|first| {
                let seg = &t.batches[first].segment;
                t.batches[first..].iter().find(|b| &b.segment != seg)
            })
            .map_or(lost_from, |b| lost_from.min(b.base_offset))
    } else {
        lost_from
    };
    let floor = if start_checkpoint_touched {
        log.log_start_offset()
    } else {
        0
    };
    let end = log.log_end_offset();
    for b in t
        .batches
        .iter()
        .filter(|b| b.base_offset < lost_from && b.base_offset >= floor)
    {
        let data = log
            .read(b.base_offset, 1 << 16, true, end)
            .unwrap_or_else(|e| panic!("batch at {} lost: {e}", b.base_offset));
        let slice = data
            .slice
            .unwrap_or_else(|| panic!("batch at {} lost: nothing read", b.base_offset));
        let got = slice.read_to_bytes().expect("read");
        assert!(
            got.starts_with(&b.bytes),
            "batch at {} changed (segment {} bytes {}..{})",
            b.base_offset,
            b.segment,
            b.start,
            b.end
        );
    }
    // The recovered log must take appends again.
    let more = build_batch([(None, Some(Bytes::from_static(b"after")))], 5, 3_000).expect("batch");
    let _ = log.append_as_leader(more, 5, 3_000);
    let _ = manager.shutdown();
}
