//! The broker's channel to the active controller (Kafka's `NodeToControllerChannelManager`):
//! broker registration and heartbeats, producer-id blocks, topic auto-creation, and the
//! forwarding of admin requests (CreateTopics, DeleteTopics, ...) that clients send to any
//! broker. The active controller is the KRaft leader, which every node learns from the
//! metadata quorum; requests go to its `CONTROLLER` listener (`controller.quorum.voters`).
//! Connection failures and leader changes are retried until the deadline.
//!
//! A request in flight to a controller that stops being the leader is abandoned (its
//! connection dropped) and sent to the new one, as Kafka's `NodeToControllerRequestThread`
//! disconnects from the old controller when the active one changes. Without that, a heartbeat
//! waiting on a paused or partitioned old controller for the whole request timeout kept every
//! broker from reaching the new controller, which fences brokers that have not heartbeated
//! within `broker.session.timeout.ms` of its activation — all of them, leaving every partition
//! leaderless and clients with a broker-less metadata answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use nagare_client::{Connection, ConnectionOptions};
use nagare_raft::VoterAddress;

/// Why a request could not be delivered to the active controller.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// No controller answered before the deadline.
    #[error("no active controller answered within {0:?}: {1}")]
    Timeout(Duration, String),
}

/// How often a request in flight checks whether the active controller changed.
const LEADER_POLL: Duration = Duration::from_millis(50);

/// Who the active controller is, as this node knows it (the KRaft leader).
pub type LeaderSource = Arc<dyn Fn() -> Option<i32> + Send + Sync>;

/// A channel to the active controller.
pub struct ControllerChannel {
    voters: Vec<VoterAddress>,
    leader: LeaderSource,
    client_id: String,
    typed: tokio::sync::Mutex<Option<(i32, Connection)>>,
    raw: tokio::sync::Mutex<Option<(i32, TcpStream)>>,
    timeout: Duration,
    retry_backoff: Duration,
    max_response_bytes: usize,
}

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
            client_id: format!("nagare-broker-{node_id}"),
            typed: tokio::sync::Mutex::new(None),
            raw: tokio::sync::Mutex::new(None),
            timeout,
            retry_backoff: retry_backoff.max(Duration::from_millis(10)),
            max_response_bytes: 256 * 1024 * 1024,
        }
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

    /// Sends a typed request at the highest version both sides support, retrying on
    /// connection failures and unknown leadership until the deadline. The caller inspects the
    /// response's error codes (NOT_CONTROLLER is retried by calling again).
    pub async fn send<R: Request + Clone>(&self, req: &R) -> Result<R::Response, ChannelError> {
        self.send_with_timeout(req, self.timeout).await
    }

    /// [`ControllerChannel::send`] with its own deadline.
    pub async fn send_with_timeout<R: Request + Clone>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ChannelError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("the active controller is not known yet");
        loop {
            if let Some((id, addr)) = self.target() {
                let mut slot = self.typed.lock().await;
                if slot
                    .as_ref()
                    .is_some_and(|(c, conn)| *c != id || conn.is_broken())
                {
                    *slot = None;
                }
                if slot.is_none() {
                    let opts = ConnectionOptions {
                        connect_timeout: Duration::from_secs(2),
                        request_timeout: Duration::from_secs(10),
                        ..Default::default()
                    };
                    match Connection::connect_with(&addr, &self.client_id, opts).await {
                        Ok(c) => *slot = Some((id, c)),
                        Err(e) => last = e.to_string(),
                    }
                }
                if let Some((_, conn)) = slot.as_mut() {
                    tokio::select! {
                        sent = conn.send(req) => match sent {
                            Ok(resp) => return Ok(resp),
                            Err(e) => {
                                last = e.to_string();
                                *slot = None;
                            }
                        },
                        _ = self.leader_moved_from(id) => {
                            last = format!("controller {id} lost leadership with the request in flight");
                            *slot = None;
                        }
                    }
                }
            }
            if Instant::now() + self.retry_backoff >= deadline {
                return Err(ChannelError::Timeout(timeout, last));
            }
            tokio::time::sleep(self.retry_backoff).await;
        }
    }

    /// Forwards one client request frame (header and body, without the size prefix) to the
    /// active controller unchanged and returns its response frame (without the size prefix).
    /// The client's correlation id travels with the frame, so the answer needs no rewriting.
    pub async fn forward_raw(&self, api: ApiKey, frame: &Bytes) -> Result<Bytes, ChannelError> {
        let deadline = Instant::now() + self.timeout;
        let mut last = String::from("the active controller is not known yet");
        loop {
            if let Some((id, addr)) = self.target() {
                let mut slot = self.raw.lock().await;
                if slot.as_ref().is_some_and(|(c, _)| *c != id) {
                    *slot = None;
                }
                if slot.is_none() {
                    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr))
                        .await
                    {
                        Ok(Ok(s)) => {
                            let _ = s.set_nodelay(true);
                            *slot = Some((id, s));
                        }
                        Ok(Err(e)) => last = format!("{addr}: {e}"),
                        Err(_) => last = format!("{addr}: connect timed out"),
                    }
                }
                if let Some((_, stream)) = slot.as_mut() {
                    let exchange = exchange_raw(stream, frame, self.max_response_bytes);
                    tokio::select! {
                        answered = tokio::time::timeout(Duration::from_secs(10), exchange) => match answered {
                            Ok(Ok(resp)) => return Ok(resp),
                            Ok(Err(e)) => {
                                last = format!("{addr}: {e}");
                                *slot = None;
                            }
                            Err(_) => {
                                last = format!("{addr}: no answer to {api:?}");
                                *slot = None;
                            }
                        },
                        _ = self.leader_moved_from(id) => {
                            last = format!("controller {id} lost leadership with {api:?} in flight");
                            *slot = None;
                        }
                    }
                }
            }
            if Instant::now() + self.retry_backoff >= deadline {
                return Err(ChannelError::Timeout(self.timeout, last));
            }
            tokio::time::sleep(self.retry_backoff).await;
        }
    }
}

async fn exchange_raw(
    stream: &mut TcpStream,
    frame: &Bytes,
    max_response_bytes: usize,
) -> std::io::Result<Bytes> {
    let len = i32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(frame).await?;
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
