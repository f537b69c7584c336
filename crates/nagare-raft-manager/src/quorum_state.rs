//! The `quorum-state` file (Kafka's `FileQuorumStateStore`): the epoch, the vote and the
//! leader, as JSON with Kafka's field names plus a CRC-32C of the content. It is written to a
//! temporary file, fsynced and renamed (then the directory fsynced) before any vote is granted
//! or an epoch acted on, so a restarted voter never votes twice in one epoch. A file whose CRC
//! does not match is refused: guessing could mean a second vote.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use nagare_raft::QuorumStateRecord;

/// File name, in the metadata partition directory.
pub const QUORUM_STATE_FILE: &str = "quorum-state";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    cluster_id: String,
    leader_id: i32,
    leader_epoch: i32,
    voted_id: i32,
    applied_offset: i64,
    current_voters: Vec<Voter>,
    #[serde(rename = "data_version")]
    data_version: i16,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Voter {
    voter_id: i32,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    crc: u32,
    #[serde(flatten)]
    content: serde_json::Value,
}

/// Errors reading or writing the quorum state.
#[derive(Debug, thiserror::Error)]
pub enum QuorumStateError {
    /// I/O failed.
    #[error("quorum-state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is damaged.
    #[error("quorum-state file {path} is corrupt ({reason}); refusing to start rather than risk voting twice in an epoch")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads and writes one node's quorum state.
#[derive(Debug, Clone)]
pub struct QuorumStateStore {
    path: PathBuf,
    cluster_id: String,
    voters: Vec<i32>,
}

impl QuorumStateStore {
    /// The store in `dir` (the `__cluster_metadata-0` directory); `voters` are written as
    /// `currentVoters`, as Kafka does.
    pub fn new(dir: &Path, cluster_id: &str, voters: Vec<i32>) -> Self {
        QuorumStateStore {
            path: dir.join(QUORUM_STATE_FILE),
            cluster_id: cluster_id.to_string(),
            voters,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> QuorumStateError {
        QuorumStateError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> QuorumStateError {
        QuorumStateError::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// The stored state; the default (epoch 0, no vote, no leader) when there is no file.
    pub fn read(&self) -> Result<QuorumStateRecord, QuorumStateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(QuorumStateRecord::default())
            }
            Err(e) => return Err(self.io(e)),
        };
        let env: Envelope =
            serde_json::from_str(&text).map_err(|e| self.corrupt(format!("not JSON: {e}")))?;
        let canonical =
            serde_json::to_vec(&env.content).map_err(|e| self.corrupt(e.to_string()))?;
        if crc32c::crc32c(&canonical) != env.crc {
            return Err(self.corrupt("CRC mismatch"));
        }
        let c: Content = serde_json::from_value(env.content)
            .map_err(|e| self.corrupt(format!("bad fields: {e}")))?;
        if !c.cluster_id.is_empty() && c.cluster_id != self.cluster_id {
            return Err(self.corrupt(format!(
                "it belongs to cluster {}, not {}",
                c.cluster_id, self.cluster_id
            )));
        }
        Ok(QuorumStateRecord {
            epoch: c.leader_epoch,
            voted_for: (c.voted_id >= 0).then_some(c.voted_id),
            leader_id: (c.leader_id >= 0).then_some(c.leader_id),
        })
    }

    /// Writes `state` durably (temp file, fsync, rename, directory fsync).
    pub fn write(&self, state: &QuorumStateRecord) -> Result<(), QuorumStateError> {
        let content = Content {
            cluster_id: self.cluster_id.clone(),
            leader_id: state.leader_id.unwrap_or(-1),
            leader_epoch: state.epoch,
            voted_id: state.voted_for.unwrap_or(-1),
            applied_offset: 0,
            current_voters: self.voters.iter().map(|v| Voter { voter_id: *v }).collect(),
            data_version: 0,
        };
        let value = serde_json::to_value(&content).map_err(|e| self.corrupt(e.to_string()))?;
        let canonical = serde_json::to_vec(&value).map_err(|e| self.corrupt(e.to_string()))?;
        let env = Envelope {
            crc: crc32c::crc32c(&canonical),
            content: value,
        };
        let text = serde_json::to_vec(&env).map_err(|e| self.corrupt(e.to_string()))?;
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
        f.write_all(&text).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let s = QuorumStateStore::new(dir.path(), "c", vec![1, 2, 3]);
        assert_eq!(s.read().expect("empty"), QuorumStateRecord::default());
        let st = QuorumStateRecord {
            epoch: 7,
            voted_for: Some(2),
            leader_id: Some(3),
        };
        s.write(&st).expect("write");
        assert_eq!(s.read().expect("read"), st);
        let text = std::fs::read_to_string(dir.path().join(QUORUM_STATE_FILE)).expect("text");
        assert!(text.contains("\"leaderEpoch\":7"), "{text}");
        std::fs::write(
            dir.path().join(QUORUM_STATE_FILE),
            text.replace("\"leaderEpoch\":7", "\"leaderEpoch\":8"),
        )
        .expect("tamper");
        assert!(matches!(s.read(), Err(QuorumStateError::Corrupt { .. })));
        std::fs::write(dir.path().join(QUORUM_STATE_FILE), "{trunc").expect("tear");
        assert!(matches!(s.read(), Err(QuorumStateError::Corrupt { .. })));
        let other = QuorumStateStore::new(dir.path(), "other", vec![1]);
        s.write(&st).expect("write");
        assert!(other.read().is_err());
    }

    #[test]
    fn kafka_fields_a_missing_crc_and_a_leftover_temp_file() {
        let dir = tempfile::tempdir().expect("dir");
        let s = QuorumStateStore::new(dir.path(), "c", vec![1, 2]);
        let st = QuorumStateRecord {
            epoch: 3,
            voted_for: None,
            leader_id: Some(1),
        };
        s.write(&st).expect("write");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(s.path()).expect("read")).expect("json");
        assert_eq!(v["clusterId"], "c");
        assert_eq!(v["leaderId"], 1);
        assert_eq!(v["votedId"], -1);
        assert_eq!(v["appliedOffset"], 0);
        assert_eq!(v["data_version"], 0);
        assert_eq!(v["currentVoters"][1]["voterId"], 2);
        // A torn write of the temporary file never reaches the real one.
        std::fs::write(dir.path().join("quorum-state.tmp"), "{\"crc\":").expect("tmp");
        assert_eq!(s.read().expect("read"), st);
        // A file without its CRC (e.g. Kafka's own) is not trusted blindly.
        let mut obj = v.clone();
        if let Some(m) = obj.as_object_mut() {
            m.remove("crc");
        }
        std::fs::write(s.path(), obj.to_string()).expect("write");
        assert!(matches!(s.read(), Err(QuorumStateError::Corrupt { .. })));
    }
}
