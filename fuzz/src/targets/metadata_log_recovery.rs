//! KRaft metadata log recovery from corrupted files: a `__cluster_metadata-0` directory
//! (log segments with indexes, two snapshots, the `quorum-state` file) is written once;
//! each input copies it, damages its files (overwrite, truncate, extend, delete) and
//! reopens it the way a node starts: quorum state, latest snapshot, log from the
//! snapshot's end. Each must load or refuse with an error, never panic, and never return
//! something the damage did not explain: an undamaged quorum-state reads back unchanged
//! (a damaged one is refused, or reads as it was), the latest snapshot read is one of the
//! written ones with its records intact, and every log entry below the first damaged
//! segment byte is loaded unchanged.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Input;
use bytes::Bytes;
use nagare_raft::{Entry, EntryPayload, QuorumStateRecord, Snapshot, SnapshotId};
use nagare_raft_manager::{
    encode_snapshot, partition_dir, LogStore, QuorumStateStore, SnapshotStore,
};

const VOTERS: [i32; 3] = [1, 2, 3];
const CLUSTER: &str = "fuzz-cluster";

struct Template {
    _dir: tempfile::TempDir,
    part: PathBuf,
    files: Vec<String>,
    quorum: QuorumStateRecord,
    entries: Vec<Entry>,
    /// (segment file, byte where each entry's batch ends), per entry.
    ends: Vec<(String, u64)>,
    snapshots: Vec<(SnapshotId, Vec<Bytes>)>,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = crate::scratch_dir();
        let part = partition_dir(dir.path());
        fs::create_dir_all(&part).expect("mkdir");
        let store = LogStore::open(&part, 0, VOTERS.to_vec()).expect("open");
        let mut entries = Vec::new();
        for i in 0..40i64 {
            let epoch = 1 + (i / 15) as i32;
            let payload = if i % 15 == 0 {
                EntryPayload::LeaderChange { leader_id: epoch }
            } else {
                EntryPayload::Data(Bytes::from(format!(
                    "record-{i}-{}",
                    "m".repeat(i as usize % 9)
                )))
            };
            entries.push(Entry {
                offset: i,
                epoch,
                payload,
            });
        }
        for chunk in entries.chunks(3) {
            store.append(chunk).expect("append");
        }
        store.flush().expect("flush");
        store.close().expect("close");
        drop(store);
        let snaps = SnapshotStore::open(&part).expect("snapshots");
        let mut snapshots = Vec::new();
        for end in [10i64, 25] {
            let id = SnapshotId {
                end_offset: end,
                epoch: 1 + (end as i32 - 1) / 15,
            };
            let records: Vec<Bytes> = (0..end)
                .map(|i| Bytes::from(format!("state-{i}")))
                .collect();
            let data = encode_snapshot(id, &records).expect("encode");
            snaps.write(&Snapshot { id, data }).expect("write snapshot");
            snapshots.push((id, records));
        }
        let quorum = QuorumStateRecord {
            epoch: 3,
            voted_for: Some(2),
            leader_id: Some(3),
        };
        QuorumStateStore::new(&part, CLUSTER, VOTERS.to_vec())
            .write(&quorum)
            .expect("quorum state");
        // Where each entry's batch ends in its segment.
        let mut ends = Vec::new();
        let mut segs: Vec<String> = fs::read_dir(&part)
            .expect("read dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".log"))
            .collect();
        segs.sort();
        for seg in &segs {
            let bytes = fs::read(part.join(seg)).expect("segment");
            for r in nagare_protocol::record_batch::batches(&bytes) {
                let (h, range) = r.expect("template batch");
                for _ in h.base_offset..=h.last_offset() {
                    ends.push((seg.clone(), range.end as u64));
                }
            }
        }
        assert_eq!(ends.len(), entries.len());
        let mut files: Vec<String> = fs::read_dir(&part)
            .expect("read dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        files.sort();
        Template {
            _dir: dir,
            part,
            files,
            quorum,
            entries,
            ends,
            snapshots,
        }
    })
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir").flatten() {
        fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let t = template();
    let dir = crate::scratch_dir();
    let part = partition_dir(dir.path());
    copy_dir(&t.part, &part);
    let mut input = Input(data);
    let mut damage: std::collections::HashMap<&str, u64> = Default::default();
    let mut ops = 0;
    while !input.is_empty() && ops < 16 {
        ops += 1;
        let file = t.files[input.u8() as usize % t.files.len()].as_str();
        let path = part.join(file);
        let op = input.u8();
        let at = u64::from(input.u16());
        let Ok(mut contents) = fs::read(&path) else {
            continue;
        };
        let len = contents.len() as u64;
        let first = match op % 4 {
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
            1 => {
                let at = at.min(len);
                contents.truncate(at as usize);
                at
            }
            2 => {
                let n = input.u8() as usize % 64;
                contents.extend_from_slice(input.take(n));
                len
            }
            _ => {
                let _ = fs::remove_file(&path);
                damage.insert(file, 0);
                continue;
            }
        };
        fs::write(&path, &contents).expect("write");
        let d = damage.entry(file).or_insert(u64::MAX);
        *d = (*d).min(first);
    }

    // Quorum state: unchanged if undamaged; refused or unchanged if damaged; the default
    // (a fresh voter) only when the file is gone.
    let qs = QuorumStateStore::new(&part, CLUSTER, VOTERS.to_vec());
    let qpath = qs.path().to_path_buf();
    let qname = qpath
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match (qs.read(), damage.get(qname)) {
        (Ok(r), None) => assert_eq!(r, t.quorum, "undamaged quorum-state changed"),
        (Err(e), None) => panic!("undamaged quorum-state refused: {e}"),
        (Ok(r), Some(_)) if !qpath.exists() => assert_eq!(r, QuorumStateRecord::default()),
        (Ok(r), Some(_)) => assert_eq!(r, t.quorum, "damaged quorum-state read as another state"),
        (Err(_), Some(_)) => {}
    }

    // Snapshots: the latest readable one is one that was written, records intact.
    let mut log_start = 0;
    if let Ok(snaps) = SnapshotStore::open(&part) {
        if let Ok(Some((snap, records))) = snaps.latest() {
            let Some((_, written)) = t.snapshots.iter().find(|(id, _)| *id == snap.id) else {
                panic!("a snapshot that was never written: {:?}", snap.id);
            };
            assert_eq!(&records, written, "snapshot {:?} records changed", snap.id);
            log_start = snap.id.end_offset;
        }
    }

    // The log, from the snapshot's end (as the node opens it).
    let Ok(store) = LogStore::open(&part, log_start, VOTERS.to_vec()) else {
        return;
    };
    let Ok(loaded) = store.load_entries(0) else {
        return;
    };
    let lost_from = t
        .ends
        .iter()
        .position(|(seg, end)| damage.get(seg.as_str()).is_some_and(|&d| d < *end))
        .unwrap_or(t.entries.len()) as i64;
    let start = store.start_offset();
    for e in t
        .entries
        .iter()
        .filter(|e| e.offset >= start && e.offset < lost_from)
    {
        let got = loaded.iter().find(|l| l.offset == e.offset);
        assert_eq!(got, Some(e), "entry {} lost or changed", e.offset);
    }
    let _ = store.close();
}
