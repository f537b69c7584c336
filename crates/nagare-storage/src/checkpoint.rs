//! Kafka's text checkpoint files and atomic file replacement.
//!
//! Format (Kafka's `CheckpointFile`): a version line `0`, a count line, then one entry per
//! line. Files are replaced atomically: write a temp file, fsync it, rename it over the old
//! one and fsync the directory, so a crash leaves either the old or the new contents.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

use crate::config::TopicPartition;
use crate::error::StorageError;

/// Fsyncs a directory so that creates, renames and deletes in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    crate::io::sync_dir(dir)
}

/// Replaces `path` atomically with `contents` (temp file, fsync, rename, fsync dir). If any
/// step fails (a full disk included) the temp file is removed and the old file is untouched:
/// a failed checkpoint write never corrupts the previous checkpoint.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let staged = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        let f = crate::io::open(tmp, &opts)?;
        crate::io::write_at(tmp, &f, contents, 0)?;
        crate::io::sync_all(tmp, &f)?;
        crate::io::rename(tmp, path)
    })();
    if let Err(e) = staged {
        let _ = crate::io::remove_if_exists(tmp);
        return Err(e);
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
        _ => Ok(()),
    }
}

/// Parses a checkpoint file's text into its entry lines, each split on spaces.
pub(crate) fn parse_checkpoint(text: &str, fields: usize) -> Result<Vec<Vec<&str>>, String> {
    let mut lines = text.lines();
    let version = lines.next().ok_or("missing version line")?;
    if version.trim() != "0" {
        return Err(format!("unsupported checkpoint version {version:?}"));
    }
    let count: usize = lines
        .next()
        .ok_or("missing count line")?
        .trim()
        .parse()
        .map_err(|e| format!("bad count line: {e}"))?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() != fields {
            return Err(format!("malformed entry line {line:?}"));
        }
        entries.push(parts);
    }
    if entries.len() != count {
        return Err(format!("expected {count} entries, found {}", entries.len()));
    }
    Ok(entries)
}

/// Reads a Kafka offset checkpoint file (`0`, count, `<topic> <partition> <offset>` lines), as
/// used for `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` and
/// `replication-offset-checkpoint`. A missing file reads as empty.
pub fn read_offset_checkpoint(path: &Path) -> Result<HashMap<TopicPartition, i64>, StorageError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e.into()),
    };
    let corrupt = |reason: String| StorageError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = HashMap::new();
    for parts in parse_checkpoint(&text, 3).map_err(corrupt)? {
        let partition: i32 = parts[1]
            .parse()
            .map_err(|e| corrupt(format!("bad partition {:?}: {e}", parts[1])))?;
        let offset: i64 = parts[2]
            .parse()
            .map_err(|e| corrupt(format!("bad offset {:?}: {e}", parts[2])))?;
        out.insert(TopicPartition::new(parts[0], partition), offset);
    }
    Ok(out)
}

/// Writes a Kafka offset checkpoint file atomically (entries sorted for stable output).
pub fn write_offset_checkpoint(
    path: &Path,
    offsets: &HashMap<TopicPartition, i64>,
) -> Result<(), StorageError> {
    let mut entries: Vec<(&TopicPartition, &i64)> = offsets.iter().collect();
    entries.sort();
    let mut text = format!("0\n{}\n", entries.len());
    for (tp, offset) in entries {
        text.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, offset));
    }
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        assert!(read_offset_checkpoint(&path)
            .expect("missing is empty")
            .is_empty());
        let mut m = HashMap::new();
        m.insert(TopicPartition::new("a-b", 0), 5);
        m.insert(TopicPartition::new("c", 3), 1 << 40);
        write_offset_checkpoint(&path, &m).expect("write");
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text, "0\n2\na-b 0 5\nc 3 1099511627776\n");
        assert_eq!(read_offset_checkpoint(&path).expect("read"), m);
    }

    #[test]
    fn corrupt_checkpoints_are_typed_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        for bad in [
            "",
            "1\n0\n",
            "0\n2\na 0 1\n",
            "0\n1\na x 1\n",
            "0\n1\na 0\n",
        ] {
            fs::write(&path, bad).expect("write");
            assert!(matches!(
                read_offset_checkpoint(&path),
                Err(StorageError::CorruptFile { .. })
            ));
        }
    }
}
