//! Connections: one task per client reading size-prefixed frames, handling requests in
//! arrival order (as Kafka does, so a producer's pipelined batches append in order), and a
//! writer that sends responses in request order. A reply may be deferred (an `acks=all`
//! produce waiting for its fsync, a fetch waiting for data) without blocking the reading of
//! further requests. Record sets in fetch responses go to the socket with `sendfile`.
//!
//! Each connection owns a [`ConnectionContext`] (listener, peer, principal, client
//! software) that every request's context refers to; when a response has been written, the
//! request's timing goes to the metrics hook ([`RequestMetrics`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use nagare_protocol::fetch::Chunk;
use nagare_protocol::frame::{self, FrameError};
use nagare_storage::FileSlice;

use crate::context::{ConnectionContext, SecurityProtocol};
use crate::handlers::{self, Dispatched, ListenerKind};
use crate::request_metrics::RequestMetrics;
use crate::Broker;

/// A record set in a segment file, sent with `sendfile`.
#[derive(Clone)]
pub struct Region(pub FileSlice);

impl nagare_protocol::fetch::RecordsRegion for Region {
    fn len(&self) -> usize {
        self.0.len
    }
}

/// An encoded response ready to write.
pub struct Response {
    /// Pieces in wire order (the first starts with the size prefix).
    pub chunks: Vec<Chunk<Region>>,
}

impl Response {
    /// A response made of one in-memory buffer.
    pub fn bytes(b: Bytes) -> Self {
        Response {
            chunks: vec![Chunk::Bytes(b)],
        }
    }

    /// Its size on the wire (with the size prefix).
    pub fn len(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| match c {
                Chunk::Bytes(b) => b.len(),
                Chunk::Records(r) => r.0.len,
            })
            .sum()
    }

    /// Whether it has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What handling a request produced.
pub enum Reply {
    /// Send this now (in order).
    Now(Response),
    /// Send this when the future completes (still in order).
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
    /// No response (Produce with acks=0).
    Nothing,
    /// Close the connection (malformed request), after the replies already queued.
    Close,
}

/// Most replies a connection may have outstanding before reading pauses (back-pressure).
const MAX_IN_FLIGHT: usize = 64;

/// Handles one request frame (header and body) that arrived on a connection at an instant.
pub type FrameHandler = Arc<
    dyn Fn(
            Bytes,
            Arc<ConnectionContext>,
            Instant,
        ) -> Pin<Box<dyn Future<Output = Dispatched> + Send>>
        + Send
        + Sync,
>;

/// What a listener's connections share: the request handler, the listener's identity, the
/// limits and the metrics hook.
#[derive(Clone)]
pub struct ServeContext {
    /// Routes each request.
    pub handler: FrameHandler,
    /// The listener's name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub listener_name: String,
    /// Which role of listener.
    pub listener: ListenerKind,
    /// The listener's security protocol (`listener.security.protocol.map`).
    pub security_protocol: SecurityProtocol,
    /// `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// `connections.max.idle.ms`.
    pub idle: Duration,
    /// Where completed requests are recorded.
    pub metrics: Option<Arc<RequestMetrics>>,
}

impl ServeContext {
    /// The context of `broker`'s listener `listener_name` of the given kind.
    pub fn for_broker(
        broker: Arc<Broker>,
        listener_name: impl Into<String>,
        listener: ListenerKind,
    ) -> Self {
        let max_request_bytes = broker.config.socket_request_max_bytes;
        let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
        let metrics = Some(broker.request_metrics.clone());
        let listener_name = listener_name.into();
        let security_protocol = broker.config.security_protocol(&listener_name);
        ServeContext {
            handler: Arc::new(move |frame, conn, received| {
                let b = broker.clone();
                Box::pin(async move { handlers::dispatch(&b, frame, &conn, received).await })
            }),
            listener_name,
            listener,
            security_protocol,
            max_request_bytes,
            idle,
            metrics,
        }
    }
}

/// Serves one connection with `ctx`'s handler until it closes or sends something malformed.
pub async fn serve_with(ctx: ServeContext, stream: TcpStream, peer: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(ConnectionContext::new(
        ctx.listener_name.clone(),
        ctx.listener,
        ctx.security_protocol,
        stream.local_addr().ok(),
        peer,
    ));
    let stream = Arc::new(stream);
    let (tx, rx) = mpsc::channel::<Dispatched>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_loop(stream.clone(), rx, peer, ctx.metrics.clone()));
    let max = ctx.max_request_bytes;
    let idle = ctx.idle;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        // Quota hook: a throttled connection reads nothing until its mute ends (KIP-219).
        if let Some(until) = conn.muted_until() {
            tokio::time::sleep_until(until.into()).await;
        }
        // connections.max.idle.ms: like Kafka, close a connection that sends nothing (or
        // never finishes a request) for that long.
        let frame = match tokio::time::timeout(idle, read_frame(&stream, &mut buf, max)).await {
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)");
                break;
            }
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => break,
            Ok(Err(ReadError::Frame(e))) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                break;
            }
            Ok(Err(ReadError::Io(e))) => {
                tracing::debug!(%peer, error = %e, "connection read error");
                break;
            }
        };
        let received = Instant::now();
        let dispatched = (ctx.handler)(frame, conn.clone(), received).await;
        // A failed SASL authentication is answered, then the connection closes.
        let close = matches!(dispatched.reply, Reply::Close) || conn.sasl.close_requested();
        if tx.send(dispatched).await.is_err() || close {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

enum ReadError {
    Frame(FrameError),
    Io(std::io::Error),
}

async fn fill(stream: &TcpStream, buf: &mut BytesMut, need: usize) -> Result<bool, std::io::Error> {
    while buf.len() < need {
        stream.readable().await?;
        // Grow with the data actually arriving (at most 1 MiB ahead), so a client that
        // announces a large frame and then stalls does not pin the whole size in memory.
        buf.reserve((need - buf.len()).min(1 << 20));
        match stream.try_read_buf(buf) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads one frame; `Ok(None)` on a clean close between frames. The size is checked
/// against `socket.request.max.bytes` before any buffer is grown for the frame.
async fn read_frame(
    stream: &TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, ReadError> {
    if !fill(stream, buf, 4).await.map_err(ReadError::Io)? {
        if buf.is_empty() {
            return Ok(None);
        }
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let prefix = [buf[0], buf[1], buf[2], buf[3]];
    let size = frame::check_frame_size(prefix, max).map_err(ReadError::Frame)?;
    if !fill(stream, buf, 4 + size).await.map_err(ReadError::Io)? {
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let mut frame = buf.split_to(4 + size);
    let _ = frame.split_to(4);
    Ok(Some(frame.freeze()))
}

async fn write_loop(
    stream: Arc<TcpStream>,
    mut rx: mpsc::Receiver<Dispatched>,
    peer: std::net::SocketAddr,
    metrics: Option<Arc<RequestMetrics>>,
) {
    while let Some(Dispatched { reply, timing }) = rx.recv().await {
        // When the reply became ready: a deferred one when its future completes (its wait is
        // the request's "remote" time); an immediate one when the handler returned it.
        let (resp, ready) = match reply {
            Reply::Now(r) => (r, timing.as_ref().and_then(|t| t.local_done_at())),
            Reply::Later(f) => {
                let r = f.await;
                (r, Some(Instant::now()))
            }
            Reply::Nothing => {
                if let (Some(m), Some(t)) = (&metrics, timing) {
                    let now = Instant::now();
                    m.record(&t.finish(now, now, now, 0));
                }
                continue;
            }
            Reply::Close => break,
        };
        let write_start = Instant::now();
        let bytes = resp.len();
        if let Err(e) = write_response(&stream, resp).await {
            tracing::debug!(%peer, error = %e, "connection write error");
            break;
        }
        if let (Some(m), Some(t)) = (&metrics, timing) {
            let ready = ready.unwrap_or(write_start);
            m.record(&t.finish(ready, write_start, Instant::now(), bytes));
        }
    }
    // Dropping `rx` makes the reader's next send fail, which ends the connection.
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

async fn write_response(stream: &TcpStream, resp: Response) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, async {
        for chunk in resp.chunks {
            match chunk {
                Chunk::Bytes(b) => write_all(stream, &b).await?,
                Chunk::Records(Region(slice)) => send_file(stream, &slice).await?,
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}

async fn write_all(stream: &TcpStream, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        stream.writable().await?;
        match stream.try_write(b) {
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn send_file(stream: &TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    let mut offset = slice.position;
    let end = slice.position + slice.len as u64;
    while offset < end {
        stream.writable().await?;
        let remaining = (end - offset) as usize;
        match stream.try_io(Interest::WRITABLE, || {
            crate::sendfile::sendfile(stream, &slice.file, &mut offset, remaining)
        }) {
            Ok(0) => {
                // The file is shorter than the slice (truncated underneath us): fail the
                // connection rather than send a response with a wrong length.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment shorter than fetch slice",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
