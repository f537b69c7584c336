//! The node's metadata quorum as the rest of the node sees it: what the controller commits
//! through ([`nagare_controller::shell::Quorum`]) plus what DescribeQuorum reports. The KRaft
//! shell ([`crate::raft_manager::RaftManager`]) implements it, for the single-node default (one
//! voter) as for a quorum of many.

use nagare_controller::shell::Quorum;

/// The node's metadata quorum: what the controller commits through, plus what DescribeQuorum
/// reports.
pub trait NodeQuorum: Quorum {
    /// Leader, epoch, high watermark and replica progress, as this node knows them.
    fn quorum_info(&self) -> nagare_raft::QuorumInfo;
}
