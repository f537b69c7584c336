//! A test cluster of `RaftManager`s in one process: each node has a directory, a tiny TCP
//! server on 127.0.0.1 (frames decoded with `nagare_protocol::frame`, ApiVersions answered,
//! everything else passed to `RaftManager::handle`) and a listener recording what it sees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use nagare_raft_manager::{
    CommittedEntry, Epoch, LeaderAndEpoch, NodeId, Offset, RaftListener, RaftManager,
    RaftManagerConfig, RaftManagerError, SnapshotId, VoterAddress,
};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a node's state machine saw: the state is the sequence of record values.
#[derive(Default)]
pub struct Recorder {
    pub state: Mutex<Vec<Bytes>>,
    /// Offsets delivered, to check order and exactly-once.
    pub offsets: Mutex<Vec<Offset>>,
    pub snapshots_loaded: Mutex<Vec<SnapshotId>>,
    pub leader_changes: Mutex<Vec<LeaderAndEpoch>>,
}

impl RaftListener for Recorder {
    fn handle_commit(&self, entries: &[CommittedEntry]) {
        let mut offs = self.offsets.lock();
        for e in entries {
            if let Some(last) = offs.last() {
                assert!(e.offset > *last, "offset {} after {}", e.offset, last);
            }
            offs.push(e.offset);
        }
        self.state
            .lock()
            .extend(entries.iter().map(|e| e.data.clone()));
    }

    fn handle_load_snapshot(&self, id: SnapshotId, records: Vec<Bytes>) {
        *self.state.lock() = records;
        self.offsets.lock().clear();
        self.snapshots_loaded.lock().push(id);
    }

    fn handle_leader_change(&self, leader: LeaderAndEpoch) {
        self.leader_changes.lock().push(leader);
    }

    fn snapshot_records(&self) -> Vec<Bytes> {
        self.state.lock().clone()
    }
}

impl Recorder {
    pub fn state(&self) -> Vec<Bytes> {
        self.state.lock().clone()
    }
}

/// Timings for a test cluster.
#[derive(Clone, Copy)]
pub struct Timing {
    pub election_timeout_ms: u64,
    pub fetch_timeout_ms: u64,
    pub election_backoff_max_ms: u64,
    pub request_timeout_ms: u64,
    pub max_record_bytes_between_snapshots: u64,
}

impl Default for Timing {
    /// Kafka's defaults, except a snapshot threshold tests can reach.
    fn default() -> Self {
        Timing {
            election_timeout_ms: 1000,
            fetch_timeout_ms: 2000,
            election_backoff_max_ms: 1000,
            request_timeout_ms: 2000,
            max_record_bytes_between_snapshots: 20 * 1024 * 1024,
        }
    }
}

pub const CLUSTER_ID: &str = "raft-manager-test-cluster";

pub struct TestNode {
    pub id: NodeId,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub voters: Vec<VoterAddress>,
    pub timing: Timing,
    pub manager: Arc<Mutex<Option<RaftManager>>>,
    pub recorder: Arc<Recorder>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestNode {
    /// Binds the node's port (so voters can be listed before anything starts).
    pub async fn bind(id: NodeId) -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let _ = id;
        (l, addr)
    }

    pub fn new(
        id: NodeId,
        listener: TcpListener,
        addr: SocketAddr,
        voters: Vec<VoterAddress>,
        timing: Timing,
    ) -> TestNode {
        let manager: Arc<Mutex<Option<RaftManager>>> = Arc::new(Mutex::new(None));
        let server = tokio::spawn(serve(listener, manager.clone()));
        TestNode {
            id,
            dir: tempfile::tempdir().expect("dir"),
            addr,
            voters,
            timing,
            manager,
            recorder: Arc::new(Recorder::default()),
            server,
        }
    }

    pub fn config(&self) -> RaftManagerConfig {
        let mut c = RaftManagerConfig::new(
            self.id,
            CLUSTER_ID,
            self.voters.clone(),
            self.dir.path().to_path_buf(),
        );
        c.election_timeout_ms = self.timing.election_timeout_ms;
        c.fetch_timeout_ms = self.timing.fetch_timeout_ms;
        c.election_backoff_max_ms = self.timing.election_backoff_max_ms;
        c.request_timeout_ms = self.timing.request_timeout_ms;
        c.max_record_bytes_between_snapshots = self.timing.max_record_bytes_between_snapshots;
        c
    }

    /// Starts (or restarts) the node with a fresh recorder (a restarted process).
    pub fn start(&mut self) -> Result<(), RaftManagerError> {
        self.recorder = Arc::new(Recorder::default());
        let m = RaftManager::start(self.config(), self.recorder.clone())?;
        *self.manager.lock() = Some(m);
        Ok(())
    }

    pub fn m(&self) -> RaftManager {
        self.manager.lock().clone().expect("node is running")
    }

    pub fn running(&self) -> bool {
        self.manager.lock().is_some()
    }

    /// Crash: the driver stops at once, the server drops connections.
    pub async fn kill(&self) {
        let m = self.manager.lock().take();
        if let Some(m) = m {
            m.abort().await;
        }
    }

    /// Graceful stop (resigns if leader).
    pub async fn stop(&self) {
        let m = self.manager.lock().clone();
        if let Some(m) = m {
            m.shutdown().await;
        }
        self.manager.lock().take();
    }
}

async fn serve(listener: TcpListener, manager: Arc<Mutex<Option<RaftManager>>>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        if manager.lock().is_none() {
            // A dead node: the connection is dropped at once.
            drop(sock);
            continue;
        }
        tokio::spawn(connection(sock, manager.clone()));
    }
}

fn api_versions(version: i16) -> Bytes {
    let mut keys: Vec<ApiVersion> = nagare_raft_manager::SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect();
    keys.push(
        ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(0)
            .with_max_version(4),
    );
    let resp = ApiVersionsResponse::default().with_api_keys(keys);
    let mut b = BytesMut::new();
    resp.encode(&mut b, version).expect("encode ApiVersions");
    b.freeze()
}

async fn connection(mut sock: TcpStream, manager: Arc<Mutex<Option<RaftManager>>>) {
    let _ = sock.set_nodelay(true);
    loop {
        let mut prefix = [0u8; 4];
        if sock.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let Ok(size) = nagare_protocol::frame::check_frame_size(prefix, 64 << 20) else {
            return;
        };
        let mut buf = vec![0u8; size];
        if sock.read_exact(&mut buf).await.is_err() {
            return;
        }
        let mut frame = Bytes::from(buf);
        let Ok((key, header)) = nagare_protocol::frame::decode_request_header(&mut frame) else {
            return;
        };
        let version = header.request_api_version;
        let body = if key == ApiKey::ApiVersions {
            api_versions(version.min(4))
        } else {
            let Some(m) = manager.lock().clone() else {
                return;
            };
            match m.handle(key, version, frame).await {
                Ok(b) => b,
                Err(_) => return,
            }
        };
        let header_version = if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(version)
        };
        let mut out = BytesMut::new();
        out.extend_from_slice(&[0, 0, 0, 0]);
        nagare_protocol::frame::put_response_header(
            &mut out,
            header.correlation_id,
            header_version,
        );
        out.extend_from_slice(&body);
        let len = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        if sock.write_all(&out).await.is_err() {
            return;
        }
        if manager.lock().is_none() {
            return;
        }
    }
}

/// A cluster of `voters` voter nodes (ids 1..=n) plus `observers` observers (ids 101..).
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, TestNode>,
}

impl Cluster {
    pub async fn new(voters: usize, observers: usize, timing: Timing) -> Cluster {
        let mut bound = Vec::new();
        for i in 0..voters + observers {
            let id = if i < voters {
                i as NodeId + 1
            } else {
                101 + (i - voters) as NodeId
            };
            let (l, addr) = TestNode::bind(id).await;
            bound.push((id, l, addr));
        }
        let voter_addrs: Vec<VoterAddress> = bound
            .iter()
            .take(voters)
            .map(|(id, _, addr)| VoterAddress {
                node_id: *id,
                host: "127.0.0.1".into(),
                port: addr.port(),
            })
            .collect();
        let nodes = bound
            .into_iter()
            .map(|(id, l, addr)| (id, TestNode::new(id, l, addr, voter_addrs.clone(), timing)))
            .collect();
        Cluster { nodes }
    }

    pub fn node(&self, id: NodeId) -> &TestNode {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut TestNode {
        self.nodes.get_mut(&id).expect("node")
    }

    pub fn start_all(&mut self, ids: &[NodeId]) {
        for id in ids {
            self.node_mut(*id).start().expect("start");
        }
    }

    /// Waits for a running node that leads and is ready; returns (id, epoch).
    pub async fn wait_leader(&self, timeout: Duration) -> (NodeId, Epoch) {
        let deadline = Instant::now() + timeout;
        loop {
            for n in self.nodes.values() {
                if let Some(m) = n.manager.lock().clone() {
                    if let Some(e) = m.ready_epoch() {
                        return (n.id, e);
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Proposes `n` single-record proposals `"{prefix}-{i}"` through the current leader,
    /// retrying across leader changes. Returns the last offset.
    pub async fn propose_n(&self, prefix: &str, n: usize, size: usize) -> Offset {
        let mut last = -1;
        for i in 0..n {
            let mut value = format!("{prefix}-{i}").into_bytes();
            value.resize(value.len().max(size), b'.');
            let value = Bytes::from(value);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (leader, epoch) = self.wait_leader(Duration::from_secs(20)).await;
                match self
                    .node(leader)
                    .m()
                    .propose(epoch, vec![value.clone()])
                    .await
                {
                    Ok(o) => {
                        last = o;
                        break;
                    }
                    Err(e) => {
                        // A lost leadership may or may not have committed it; the test's
                        // values are only checked for agreement, so retry.
                        assert!(Instant::now() < deadline, "proposal failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        last
    }

    /// Waits until every running node has delivered up to `offset` and all their states are
    /// equal; returns that state.
    pub async fn wait_converged(&self, offset: Offset, timeout: Duration) -> Vec<Bytes> {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<&TestNode> = self.nodes.values().filter(|n| n.running()).collect();
            let all_applied = running.iter().all(|n| n.m().applied_offset() > offset);
            if all_applied {
                let states: Vec<Vec<Bytes>> = running.iter().map(|n| n.recorder.state()).collect();
                if states.windows(2).all(|w| w[0] == w[1]) {
                    return states.into_iter().next().unwrap_or_default();
                }
            }
            if Instant::now() >= deadline {
                let desc: Vec<String> = running
                    .iter()
                    .map(|n| {
                        let m = n.m();
                        format!(
                            "node {} role {:?} leader {:?} applied {} hw {} end {} state {}",
                            n.id,
                            m.role(),
                            m.leader(),
                            m.applied_offset(),
                            m.high_watermark(),
                            m.log_end_offset(),
                            n.recorder.state().len()
                        )
                    })
                    .collect();
                panic!("not converged on {offset} within {timeout:?}: {desc:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
