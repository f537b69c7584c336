//! The node's metadata quorum as the controller sees it ([`nagare_controller::shell::Quorum`]).
//!
//! [`LocalQuorum`] is the single-voter quorum of the single-node default: a record is
//! committed once it is fsynced on this node's `__cluster_metadata-0`, then applied to the
//! node's [`MetadataPublisher`]. The KRaft shell (`nagare-raft-manager`) replaces it for
//! multi-node quorums.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use nagare_controller::shell::{BoxFuture, Quorum};
use nagare_metadata::log::{MetadataLog, MetadataLogError};
use nagare_metadata::records::MetadataRecord;
use nagare_metadata::MetadataPublisher;

use crate::replica_manager::now_ms;

/// The node's metadata quorum: what the controller commits through, plus what DescribeQuorum
/// reports.
pub trait NodeQuorum: Quorum {
    /// Leader, epoch, high watermark and replica progress, as this node knows them.
    fn quorum_info(&self) -> nagare_raft::QuorumInfo;
}

/// A single-voter quorum over the local metadata log.
pub struct LocalQuorum {
    node_id: i32,
    log: Arc<Mutex<MetadataLog>>,
    publisher: Arc<MetadataPublisher>,
}

impl LocalQuorum {
    /// Opens the metadata log under `metadata_dir`, replays it into `publisher`.
    pub fn open(
        node_id: i32,
        metadata_dir: &Path,
        publisher: Arc<MetadataPublisher>,
    ) -> Result<Self, MetadataLogError> {
        let (log, image) = MetadataLog::open(metadata_dir, now_ms())?;
        let records = image.to_records();
        let encoded: Vec<Bytes> = records.iter().map(|r| Bytes::from(r.encode())).collect();
        publisher.load_snapshot(image.offset, &encoded);
        Ok(LocalQuorum {
            node_id,
            log: Arc::new(Mutex::new(log)),
            publisher,
        })
    }

    /// Flushes and closes the log.
    pub fn close(&self) -> Result<(), MetadataLogError> {
        self.log.lock().close()
    }
}

impl NodeQuorum for LocalQuorum {
    fn quorum_info(&self) -> nagare_raft::QuorumInfo {
        let end = self.log.lock().end_offset();
        let now = now_ms() as u64;
        let me = nagare_raft::ReplicaInfo {
            replica_id: self.node_id,
            log_end_offset: end,
            last_fetch_ms: Some(now),
            last_caught_up_ms: Some(now),
        };
        nagare_raft::QuorumInfo {
            leader_id: Some(self.node_id),
            epoch: 0,
            high_watermark: end,
            voters: vec![me],
            observers: vec![],
        }
    }
}

impl Quorum for LocalQuorum {
    fn leader_id(&self) -> Option<i32> {
        Some(self.node_id)
    }

    fn ready_epoch(&self) -> BoxFuture<'_, Option<i32>> {
        Box::pin(async { Some(0) })
    }

    fn propose(&self, _epoch: i32, records: Vec<Bytes>) -> BoxFuture<'_, Result<i64, String>> {
        let log = self.log.clone();
        let publisher = self.publisher.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // One writer at a time: the log lock also orders the publications.
                let log = log.lock();
                let decoded: Vec<MetadataRecord> = records
                    .iter()
                    .map(|r| MetadataRecord::decode(r))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let first = log
                    .append(&decoded, 0, now_ms())
                    .map_err(|e| e.to_string())?;
                publisher.apply_committed(
                    records
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (first + i as i64, r.as_ref())),
                );
                Ok(first + records.len() as i64 - 1)
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }
}
