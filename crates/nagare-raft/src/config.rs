//! Node configuration and the `controller.quorum.voters` parser.

use std::collections::BTreeSet;

use crate::types::NodeId;

/// Timing and limits of one node. Times are in the shell's milliseconds (`tick(now_ms)`).
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// This node's `node.id`.
    pub node_id: NodeId,
    /// The voters (`controller.quorum.voters`); a node not in the set is an observer.
    pub voters: BTreeSet<NodeId>,
    /// `controller.quorum.election.timeout.ms`: how long a node without a leader waits
    /// before it starts a (pre-)election.
    pub election_timeout_ms: u64,
    /// Random extra wait added to every election timeout so that voters do not all run at once
    /// (`controller.quorum.election.backoff.max.ms`).
    pub election_jitter_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`: a follower that has not fetched successfully from
    /// the leader for this long starts an election; a voter that has, rejects pre-votes
    /// (KIP-996); a leader not fetched from by a majority for 1.5 times this resigns.
    pub fetch_timeout_ms: u64,
    /// How long a caught-up follower waits between fetches (the long-poll wait of Kafka's
    /// fetch; the core does not park fetches, the follower polls instead).
    pub fetch_interval_ms: u64,
    /// `controller.quorum.request.timeout.ms`: when to resend a request that got no answer.
    pub request_timeout_ms: u64,
    /// Most entries in one fetch response.
    pub max_fetch_entries: usize,
    /// Most entries in one `propose` call.
    pub max_propose_entries: usize,
    /// Most bytes in one FetchSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Most observers a leader tracks for DescribeQuorum (a limit on everything).
    pub max_observers: usize,
}

impl RaftConfig {
    /// Kafka's defaults for `node_id` in a quorum of `voters`.
    pub fn new(node_id: NodeId, voters: BTreeSet<NodeId>) -> Self {
        RaftConfig {
            node_id,
            voters,
            election_timeout_ms: 1000,
            election_jitter_ms: 1000,
            fetch_timeout_ms: 2000,
            fetch_interval_ms: 100,
            request_timeout_ms: 2000,
            max_fetch_entries: 1024,
            max_propose_entries: 10_000,
            snapshot_chunk_bytes: 1 << 20,
            max_observers: 1024,
        }
    }
}

/// One entry of `controller.quorum.voters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterAddress {
    /// The voter's `node.id`.
    pub node_id: NodeId,
    /// Host name or address.
    pub host: String,
    /// Port of its controller listener.
    pub port: u16,
}

/// Why `controller.quorum.voters` could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VotersError {
    /// The value names no voter.
    #[error("controller.quorum.voters is empty")]
    Empty,
    /// An entry is not `id@host:port`.
    #[error("controller.quorum.voters entry {0:?} is not id@host:port")]
    Malformed(String),
    /// An id appears twice.
    #[error("controller.quorum.voters names node {0} twice")]
    Duplicate(NodeId),
}

/// Parses `controller.quorum.voters` (`1@host1:9093,2@[::1]:9093,...`).
pub fn parse_voters(value: &str) -> Result<Vec<VoterAddress>, VotersError> {
    let mut out: Vec<VoterAddress> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || VotersError::Malformed(part.to_string());
        let (id, addr) = part.split_once('@').ok_or_else(bad)?;
        let node_id: NodeId = id.trim().parse().map_err(|_| bad())?;
        if node_id < 0 {
            return Err(bad());
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        if out.iter().any(|v| v.node_id == node_id) {
            return Err(VotersError::Duplicate(node_id));
        }
        out.push(VoterAddress {
            node_id,
            host: host.to_string(),
            port,
        });
    }
    if out.is_empty() {
        return Err(VotersError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_voters() {
        let v = parse_voters("1@localhost:9093, 2@[::1]:9094").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].host, "::1");
        assert_eq!(v[1].port, 9094);
        assert_eq!(parse_voters(""), Err(VotersError::Empty));
        assert!(matches!(
            parse_voters("x@h:1"),
            Err(VotersError::Malformed(_))
        ));
        assert!(matches!(
            parse_voters("1@h"),
            Err(VotersError::Malformed(_))
        ));
        assert!(matches!(
            parse_voters("-1@h:1"),
            Err(VotersError::Malformed(_))
        ));
        assert_eq!(parse_voters("1@h:1,1@g:2"), Err(VotersError::Duplicate(1)));
    }
}
