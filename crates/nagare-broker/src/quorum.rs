//! The node's metadata quorum as the rest of the node sees it. The KRaft shell
//! ([`nagare_raft_manager::RaftManager`]) replicates `__cluster_metadata`; here it is plugged
//! into the node: committed records and snapshots go to the node's [`MetadataPublisher`]
//! ([`MetadataListener`]), and the controller commits through it ([`KraftQuorum`], the
//! controller's [`Quorum`]), for the single-node default (one voter) as for many.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use nagare_controller::shell::{BoxFuture, Quorum};
use nagare_metadata::MetadataPublisher;
use nagare_raft_manager::{CommittedEntry, LeaderAndEpoch, RaftListener, RaftManager, SnapshotId};

/// The node's metadata quorum: what the controller commits through, plus what DescribeQuorum
/// reports.
pub trait NodeQuorum: Quorum {
    /// Leader, epoch, high watermark and replica progress, as this node knows them.
    fn quorum_info(&self) -> nagare_raft::QuorumInfo;
}

/// Applies what the quorum commits to the node's image. The image is swapped at once (the
/// publisher runs its listeners on their own thread), so the quorum's driver never waits on
/// slow listener work and a snapshot is exactly the delivered prefix.
pub struct MetadataListener {
    publisher: Arc<MetadataPublisher>,
}

impl MetadataListener {
    /// A listener feeding `publisher`.
    pub fn new(publisher: Arc<MetadataPublisher>) -> Self {
        MetadataListener { publisher }
    }
}

impl RaftListener for MetadataListener {
    fn handle_commit(&self, entries: &[CommittedEntry]) {
        self.publisher
            .apply_committed(entries.iter().map(|e| (e.offset, e.data.as_ref())));
    }

    fn handle_load_snapshot(&self, id: SnapshotId, records: Vec<Bytes>) {
        tracing::info!(
            end_offset = id.end_offset,
            epoch = id.epoch,
            records = records.len(),
            "loaded metadata snapshot"
        );
        self.publisher.load_snapshot(id.end_offset - 1, &records);
    }

    fn handle_leader_change(&self, leader: LeaderAndEpoch) {
        tracing::info!(leader = ?leader.leader_id, epoch = leader.epoch, "metadata quorum leader");
    }

    fn snapshot_records(&self) -> Vec<Bytes> {
        self.publisher.snapshot_records()
    }
}

/// The KRaft shell as the controller's quorum.
pub struct KraftQuorum {
    raft: RaftManager,
}

impl KraftQuorum {
    /// Wraps the shell.
    pub fn new(raft: RaftManager) -> Self {
        KraftQuorum { raft }
    }
}

impl Quorum for KraftQuorum {
    fn leader_id(&self) -> Option<i32> {
        self.raft.leader().leader_id
    }

    fn ready_epoch(&self) -> BoxFuture<'_, Option<i32>> {
        // A node just elected needs its LeaderChange entry committed before it may decide.
        Box::pin(self.raft.wait_ready_epoch(Duration::from_secs(5)))
    }

    fn propose(&self, epoch: i32, records: Vec<Bytes>) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            self.raft
                .propose(epoch, records)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl NodeQuorum for KraftQuorum {
    fn quorum_info(&self) -> nagare_raft::QuorumInfo {
        self.raft.describe_quorum()
    }
}
