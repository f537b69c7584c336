//! The broker's channel to the active controller (Kafka's `NodeToControllerChannelManager`):
//! broker registration and heartbeats, AlterPartition, producer-id blocks, topic
//! auto-creation, and the forwarding of admin requests (CreateTopics, DeleteTopics, ...) that
//! clients send to any broker. The active controller is the KRaft leader, which every node
//! learns from the metadata quorum.
//!
//! **One code path per RPC.** [`ControllerChannel::send`] takes a typed request and returns
//! its typed response, wherever the active controller is. On the active controller itself the
//! request is handed in-process to [`ControllerRequest::handle`] — the same typed function the
//! `CONTROLLER` listener runs for that API (`controller_requests`), with no encoding and
//! no socket; elsewhere it goes over the wire to the leader's `CONTROLLER` listener
//! (`controller.quorum.voters`). Callers never ask which.
//!
//! **One lane per purpose.** Kafka's broker keeps separate channel managers — "heartbeat"
//! (`BrokerLifecycleManager`), "alter-partition" and "forwarding" — so that a slow CreateTopics
//! or a batch of ISR changes never holds a heartbeat back past `broker.session.timeout.ms`
//! (the controller would fence the broker). Each [`Purpose`] here has its own connections
//! and its own in-flight limit; a request waits only behind requests of its own purpose.
//!
//! **Controller changes.** A request in flight to a controller that stops being the leader is
//! abandoned (its connection dropped) and sent to the new one, as Kafka's
//! `NodeToControllerRequestThread` disconnects from the old controller when the active one
//! changes. Without that, a heartbeat waiting on a paused or partitioned old controller for
//! the whole request timeout kept every broker from reaching the new controller, which fences
//! brokers that have not heartbeated within `broker.session.timeout.ms` of its activation —
//! all of them, leaving every partition leaderless and clients with a broker-less metadata
//! answer.
//!
//! Connection failures and unknown leadership are retried with backoff until the deadline;
//! error codes inside a response (NOT_CONTROLLER, ...) are the caller's to act on.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use nagare_client::{Connection, ConnectionOptions};
use nagare_raft::VoterAddress;

use crate::Broker;

/// Why a request could not be delivered to the active controller.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// No controller answered before the deadline.
    #[error("no active controller answered within {0:?}: {1}")]
    Timeout(Duration, String),
}

/// How often a request in flight checks whether the active controller changed.
const LEADER_POLL: Duration = Duration::from_millis(50);
/// How long a TCP connect (plus the ApiVersions exchange) to a controller may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may wait for its answer before the connection is dropped and the
/// request sent again (on a fresh connection, to whoever leads then).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Who the active controller is, as this node knows it (the KRaft leader).
pub type LeaderSource = Arc<dyn Fn() -> Option<i32> + Send + Sync>;

/// What a request is for, which decides the connections it travels on (Kafka's separate
/// `NodeToControllerChannelManager`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// BrokerRegistration and BrokerHeartbeat, also the controlled-shutdown heartbeats
    /// (Kafka's "heartbeat" channel): never behind anything else, since a late heartbeat gets
    /// the broker fenced.
    Heartbeat,
    /// AlterPartition (Kafka's "alter-partition" channel; `AlterPartitionManager` keeps one
    /// request in flight and batches what queues meanwhile).
    AlterPartition,
    /// Forwarded client admin requests, topic auto-creation and producer-id blocks (Kafka's
    /// "forwarding" channel).
    Forwarding,
}

impl Purpose {
    const ALL: [Purpose; 3] = [
        Purpose::Heartbeat,
        Purpose::AlterPartition,
        Purpose::Forwarding,
    ];

    /// Kafka's name for the channel manager of this purpose.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Heartbeat => "heartbeat",
            Purpose::AlterPartition => "alter-partition",
            Purpose::Forwarding => "forwarding",
        }
    }

    /// How many requests of this purpose may be in flight at once (each on its own
    /// connection: `nagare_client::Connection` does not pipeline). One heartbeat at a time
    /// as Kafka's lifecycle manager; one AlterPartition as its `AlterPartitionManager`; a few
    /// forwarded admin requests, so one slow CreateTopics does not hold up the rest.
    pub fn max_in_flight(self) -> usize {
        match self {
            Purpose::Heartbeat | Purpose::AlterPartition => 1,
            Purpose::Forwarding => 4,
        }
    }

    fn index(self) -> usize {
        match self {
            Purpose::Heartbeat => 0,
            Purpose::AlterPartition => 1,
            Purpose::Forwarding => 2,
        }
    }
}

pub use crate::controller_requests::ControllerRequest;

/// The connections of one [`Purpose`].
struct Lane {
    purpose: Purpose,
    /// One permit per request in flight (local or on the wire).
    in_flight: Semaphore,
    /// Connections with no request on them, with the controller they lead to.
    idle: parking_lot::Mutex<Vec<(i32, Connection)>>,
    /// Raw connections for forwarded frames, idle, with their controller.
    idle_raw: parking_lot::Mutex<Vec<(i32, RawStream)>>,
}

impl Lane {
    fn new(purpose: Purpose) -> Self {
        Lane {
            purpose,
            in_flight: Semaphore::new(purpose.max_in_flight()),
            idle: parking_lot::Mutex::new(Vec::new()),
            idle_raw: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// An idle connection to controller `id`; connections to any other node are closed (the
    /// leadership moved away from it).
    fn take_idle(&self, id: i32) -> Option<Connection> {
        let mut idle = self.idle.lock();
        idle.retain(|(c, conn)| *c == id && !conn.is_broken());
        idle.pop().map(|(_, conn)| conn)
    }

    fn take_idle_raw(&self, id: i32) -> Option<RawStream> {
        let mut idle = self.idle_raw.lock();
        idle.retain(|(c, _)| *c == id);
        idle.pop().map(|(_, s)| s)
    }
}

/// A channel to the active controller.
pub struct ControllerChannel {
    voters: Vec<VoterAddress>,
    leader: LeaderSource,
    node_id: i32,
    client_id: String,
    /// This node's broker state, for answering in-process when this node is the active
    /// controller (unset: always over the wire).
    local: OnceLock<Weak<Broker>>,
    lanes: [Lane; 3],
    timeout: Duration,
    retry_backoff: Duration,
    max_response_bytes: usize,
    /// TLS towards the controllers, when the controller listener is SSL.
    tls: Option<nagare_client::TlsOptions>,
    /// The SASL login towards the controllers, when the controller listener is a SASL one.
    sasl: Option<nagare_client::SaslCredentials>,
}

/// A raw forwarding connection: plain TCP, or TLS over it (authenticated first when the
/// controller listener is a SASL one).
trait RawIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawIo for T {}
type RawStream = Box<dyn RawIo>;

impl ControllerChannel {
    /// A channel to whichever of `voters` `leader` names; each request is retried for up to
    /// `timeout`.
    pub fn new(
        voters: Vec<VoterAddress>,
        leader: LeaderSource,
        node_id: i32,
        timeout: Duration,
        retry_backoff: Duration,
    ) -> Self {
        ControllerChannel {
            voters,
            leader,
            node_id,
            client_id: format!("nagare-broker-{node_id}"),
            local: OnceLock::new(),
            lanes: Purpose::ALL.map(Lane::new),
            timeout,
            retry_backoff: retry_backoff.max(Duration::from_millis(10)),
            max_response_bytes: 256 * 1024 * 1024,
            tls: None,
            sasl: None,
        }
    }

    /// Speaks TLS to the controllers with `tls` (the controller listener is SSL).
    pub fn with_tls(mut self, tls: Option<nagare_client::TlsOptions>) -> Self {
        self.tls = tls;
        self
    }

    /// Logs in with `sasl` on every connection to the controllers, typed and raw (the
    /// controller listener is SASL_PLAINTEXT or SASL_SSL).
    pub fn with_sasl(mut self, sasl: Option<nagare_client::SaslCredentials>) -> Self {
        self.sasl = sasl;
        self
    }

    /// Lets requests reach this node's own controller in-process while it is the active one
    /// (a weak reference: the broker owns the channel).
    pub fn with_local(self, broker: Weak<Broker>) -> Self {
        let _ = self.local.set(broker);
        self
    }

    fn lane(&self, purpose: Purpose) -> &Lane {
        &self.lanes[purpose.index()]
    }

    /// Resolves once the active controller is no longer `id` (another node or unknown).
    async fn leader_moved_from(&self, id: i32) {
        loop {
            if (self.leader)() != Some(id) {
                return;
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// The active controller's id and `host:port`, if known.
    fn target(&self) -> Option<(i32, String)> {
        let id = (self.leader)()?;
        let v = self.voters.iter().find(|v| v.node_id == id)?;
        let host = if v.host.contains(':') {
            format!("[{}]", v.host)
        } else {
            v.host.clone()
        };
        Some((id, format!("{host}:{}", v.port)))
    }

    /// This node's broker, when it is `id` and the channel may answer in-process.
    fn local_for(&self, id: i32) -> Option<Arc<Broker>> {
        if id != self.node_id {
            return None;
        }
        self.local.get().and_then(Weak::upgrade)
    }

    /// A permit of `lane`, waiting at most until `deadline`.
    async fn permit<'a>(
        &self,
        lane: &'a Lane,
        deadline: Instant,
    ) -> Result<SemaphorePermit<'a>, String> {
        match tokio::time::timeout_at(deadline, lane.in_flight.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(format!("the {} lane is closed", lane.purpose.name())),
            Err(_) => Err(format!(
                "{} earlier {} requests still in flight",
                lane.purpose.max_in_flight(),
                lane.purpose.name()
            )),
        }
    }

    /// Sends a typed request to the active controller and returns its answer, retrying on
    /// connection failures, unknown leadership and leader changes until the channel's
    /// deadline. The caller inspects the response's error codes (NOT_CONTROLLER is retried
    /// by calling again).
    pub async fn send<R: ControllerRequest>(&self, req: &R) -> Result<R::Response, ChannelError> {
        self.send_with_timeout(req, self.timeout).await
    }

    /// [`ControllerChannel::send`] with its own deadline.
    pub async fn send_with_timeout<R: ControllerRequest>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ChannelError> {
        let deadline = Instant::now() + timeout;
        let lane = self.lane(R::PURPOSE);
        let mut last = String::from("the active controller is not known yet");
        loop {
            let permit = self
                .permit(lane, deadline)
                .await
                .map_err(|e| ChannelError::Timeout(timeout, e))?;
            if let Some((id, addr)) = self.target() {
                let attempt = async {
                    match self.local_for(id) {
                        // The active controller is this node: its handler, in-process.
                        Some(broker) => {
                            let version = crate::controller_requests::local_version::<R>();
                            Ok(R::handle(&broker, req.clone(), version).await)
                        }
                        None => self.exchange_typed(lane, id, &addr, req).await,
                    }
                };
                tokio::select! {
                    answered = attempt => match answered {
                        Ok(resp) => return Ok(resp),
                        Err(e) => last = e,
                    },
                    _ = self.leader_moved_from(id) => {
                        last = format!(
                            "controller {id} lost leadership with a {} request in flight",
                            lane.purpose.name()
                        );
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(ChannelError::Timeout(
                            timeout,
                            format!("controller {id} did not answer"),
                        ));
                    }
                }
            }
            drop(permit);
            if Instant::now() + self.retry_backoff >= deadline {
                return Err(ChannelError::Timeout(timeout, last));
            }
            tokio::time::sleep(self.retry_backoff).await;
        }
    }

    /// One typed exchange with controller `id` at `addr` on an idle connection of `lane` or
    /// a new one; the connection goes back to the lane only after a complete exchange (a
    /// dropped future drops it, so no half-read stream is ever reused).
    async fn exchange_typed<R: ControllerRequest>(
        &self,
        lane: &Lane,
        id: i32,
        addr: &str,
        req: &R,
    ) -> Result<R::Response, String> {
        let mut conn = match lane.take_idle(id) {
            Some(c) => c,
            None => {
                let opts = ConnectionOptions {
                    connect_timeout: CONNECT_TIMEOUT,
                    request_timeout: REQUEST_TIMEOUT,
                    tls: self.tls.clone(),
                    sasl: self.sasl.clone(),
                    ..Default::default()
                };
                Connection::connect_with(addr, &self.client_id, opts)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let resp = conn.send(req).await.map_err(|e| e.to_string())?;
        lane.idle.lock().push((id, conn));
        Ok(resp)
    }

    /// Forwards one client request frame (header and body, without the size prefix) to the
    /// active controller unchanged, on the forwarding lane, and returns its response frame
    /// (without the size prefix). The client's correlation id travels with the frame, so the
    /// answer needs no rewriting.
    pub async fn forward_raw(&self, api: ApiKey, frame: &Bytes) -> Result<Bytes, ChannelError> {
        let deadline = Instant::now() + self.timeout;
        let lane = self.lane(Purpose::Forwarding);
        let mut last = String::from("the active controller is not known yet");
        loop {
            let permit = self
                .permit(lane, deadline)
                .await
                .map_err(|e| ChannelError::Timeout(self.timeout, e))?;
            if let Some((id, addr)) = self.target() {
                tokio::select! {
                    answered = self.exchange_raw(lane, id, &addr, api, frame) => match answered {
                        Ok(resp) => return Ok(resp),
                        Err(e) => last = e,
                    },
                    _ = self.leader_moved_from(id) => {
                        last = format!("controller {id} lost leadership with {api:?} in flight");
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(ChannelError::Timeout(
                            self.timeout,
                            format!("controller {id} did not answer {api:?}"),
                        ));
                    }
                }
            }
            drop(permit);
            if Instant::now() + self.retry_backoff >= deadline {
                return Err(ChannelError::Timeout(self.timeout, last));
            }
            tokio::time::sleep(self.retry_backoff).await;
        }
    }

    /// A new raw connection to `addr`, with the TLS handshake when the channel speaks TLS and
    /// the SASL login when it has one.
    async fn connect_raw(&self, addr: &str) -> std::io::Result<RawStream> {
        if self.sasl.is_some() {
            // A SASL listener serves nothing before the login: let the typed client do
            // ApiVersions + SaslHandshake + SaslAuthenticate, then forward raw frames on it.
            let opts = ConnectionOptions {
                connect_timeout: CONNECT_TIMEOUT,
                request_timeout: REQUEST_TIMEOUT,
                tls: self.tls.clone(),
                sasl: self.sasl.clone(),
                ..Default::default()
            };
            let conn = Connection::connect_with(addr, &self.client_id, opts)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let stream = conn
                .into_stream()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            return Ok(Box::new(stream));
        }
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(tls.connect(addr, tcp).await?),
        })
    }

    /// One raw exchange with controller `id` at `addr`, on an idle raw connection of `lane`
    /// or a new one (returned to the lane only after a complete exchange).
    async fn exchange_raw(
        &self,
        lane: &Lane,
        id: i32,
        addr: &str,
        api: ApiKey,
        frame: &Bytes,
    ) -> Result<Bytes, String> {
        let mut stream = match lane.take_idle_raw(id) {
            Some(s) => s,
            None => match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_raw(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("{addr}: {e}")),
                Err(_) => return Err(format!("{addr}: connect timed out")),
            },
        };
        let exchange = write_then_read(&mut stream, frame, self.max_response_bytes);
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(resp)) => {
                lane.idle_raw.lock().push((id, stream));
                Ok(resp)
            }
            Ok(Err(e)) => Err(format!("{addr}: {e}")),
            Err(_) => Err(format!("{addr}: no answer to {api:?}")),
        }
    }
}

async fn write_then_read(
    stream: &mut RawStream,
    frame: &Bytes,
    max_response_bytes: usize,
) -> std::io::Result<Bytes> {
    let len = i32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(frame).await?;
    // TLS buffers records until flushed (a no-op on TCP).
    stream.flush().await?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await?;
    let size = i32::from_be_bytes(size);
    if size < 4 || size as usize > max_response_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response size {size}"),
        ));
    }
    let mut buf = BytesMut::zeroed(size as usize);
    stream.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI32, Ordering};

    use bytes::BufMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{
        ApiVersionsResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId,
        CreateTopicsRequest,
    };
    use kafka_protocol::protocol::Encodable;
    use tokio::net::TcpListener;
    use tokio::sync::Notify;

    use super::*;

    /// A response frame (with its size prefix) for `key` at `version`.
    fn frame_of<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        nagare_protocol::frame::put_response_header(
            &mut buf,
            correlation_id,
            key.response_header_version(version),
        );
        body.encode(&mut buf, version).expect("encode");
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf.freeze()
    }

    /// A fake controller listener: answers ApiVersions and BrokerHeartbeat (not fenced); a
    /// request of API `stall` is never answered (its connection just waits, as on a paused
    /// process) and reported on `stalled`; any other request closes the connection.
    async fn fake_controller(listener: TcpListener, stall: ApiKey, stalled: Arc<Notify>) {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let stalled = stalled.clone();
            tokio::spawn(async move {
                loop {
                    let mut size = [0u8; 4];
                    if stream.read_exact(&mut size).await.is_err() {
                        return;
                    }
                    let mut buf = BytesMut::zeroed(i32::from_be_bytes(size) as usize);
                    if stream.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let mut frame = buf.freeze();
                    let (key, header) =
                        nagare_protocol::frame::decode_request_header(&mut frame).expect("header");
                    let (v, id) = (header.request_api_version, header.correlation_id);
                    if key == stall {
                        stalled.notify_one();
                        std::future::pending::<()>().await;
                    }
                    let answer = match key {
                        ApiKey::ApiVersions => {
                            let keys = [
                                (ApiKey::ApiVersions, 0, 3),
                                (ApiKey::BrokerHeartbeat, 0, 1),
                                (ApiKey::CreateTopics, 2, 7),
                            ];
                            let resp = ApiVersionsResponse::default().with_api_keys(
                                keys.iter()
                                    .map(|(k, min, max)| {
                                        ApiVersion::default()
                                            .with_api_key(*k as i16)
                                            .with_min_version(*min)
                                            .with_max_version(*max)
                                    })
                                    .collect(),
                            );
                            frame_of(key, v, id, &resp)
                        }
                        ApiKey::BrokerHeartbeat => frame_of(
                            key,
                            v,
                            id,
                            &BrokerHeartbeatResponse::default().with_is_fenced(false),
                        ),
                        _ => return,
                    };
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    /// A fake controller on a free port; returns its voter address.
    async fn start_fake(node_id: i32, stall: ApiKey, stalled: Arc<Notify>) -> VoterAddress {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(fake_controller(listener, stall, stalled));
        VoterAddress {
            node_id,
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn heartbeat() -> BrokerHeartbeatRequest {
        BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(1))
            .with_broker_epoch(5)
    }

    #[tokio::test]
    async fn a_heartbeat_is_answered_while_an_admin_request_is_stuck() {
        let stalled = Arc::new(Notify::new());
        let voter = start_fake(9, ApiKey::CreateTopics, stalled.clone()).await;
        let channel = Arc::new(ControllerChannel::new(
            vec![voter],
            Arc::new(|| Some(9)),
            1,
            Duration::from_secs(30),
            Duration::from_millis(10),
        ));
        let admin = tokio::spawn({
            let channel = channel.clone();
            async move { channel.send(&CreateTopicsRequest::default()).await }
        });
        tokio::time::timeout(Duration::from_secs(5), stalled.notified())
            .await
            .expect("the CreateTopics reached the controller");
        // The controller holds the CreateTopics; a heartbeat on the same node gets through
        // on its own lane, well within a session timeout.
        let resp = tokio::time::timeout(Duration::from_secs(3), channel.send(&heartbeat()))
            .await
            .expect("a heartbeat answered while CreateTopics is stuck")
            .expect("heartbeat");
        assert!(!resp.is_fenced);
        assert!(!admin.is_finished(), "the CreateTopics is still waiting");
        admin.abort();
    }

    #[tokio::test]
    async fn a_request_in_flight_follows_a_change_of_active_controller() {
        let stalled = Arc::new(Notify::new());
        // Controller 8 never answers a heartbeat (paused); controller 9 does.
        let old = start_fake(8, ApiKey::BrokerHeartbeat, stalled.clone()).await;
        let new = start_fake(9, ApiKey::CreateTopics, Arc::new(Notify::new())).await;
        let leader = Arc::new(AtomicI32::new(8));
        let source = leader.clone();
        let channel = Arc::new(ControllerChannel::new(
            vec![old, new],
            Arc::new(move || Some(source.load(Ordering::SeqCst))),
            1,
            Duration::from_secs(30),
            Duration::from_millis(10),
        ));
        let sent = tokio::spawn({
            let channel = channel.clone();
            async move { channel.send(&heartbeat()).await }
        });
        tokio::time::timeout(Duration::from_secs(5), stalled.notified())
            .await
            .expect("the heartbeat reached controller 8");
        let moved = Instant::now();
        leader.store(9, Ordering::SeqCst);
        // Abandoned on 8 and answered by 9, long before the 10 s request timeout.
        let resp = tokio::time::timeout(Duration::from_secs(3), sent)
            .await
            .expect("the heartbeat was resent to the new controller")
            .expect("task")
            .expect("heartbeat");
        assert!(!resp.is_fenced);
        assert!(moved.elapsed() < REQUEST_TIMEOUT);
    }
}
