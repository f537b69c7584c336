//! Connections: one task per client reading size-prefixed frames, handling requests in
//! arrival order (as Kafka does, so a producer's pipelined batches append in order), and a
//! writer that sends responses in request order. A reply may be deferred (an `acks=all`
//! produce waiting for its fsync, a fetch waiting for data) without blocking the reading of
//! further requests. Record sets in fetch responses go to the socket with `sendfile`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use nagare_protocol::fetch::Chunk;
use nagare_protocol::frame::{self, FrameError};
use nagare_storage::FileSlice;

use crate::handlers;
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

/// Handles one request frame (header and body) from `peer`.
pub type FrameHandler = Arc<
    dyn Fn(Bytes, std::net::SocketAddr) -> Pin<Box<dyn Future<Output = Reply> + Send>>
        + Send
        + Sync,
>;

/// What a listener's connections share: the request handler and the limits.
#[derive(Clone)]
pub struct ServeContext {
    /// Routes each request.
    pub handler: FrameHandler,
    /// `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// `connections.max.idle.ms`.
    pub idle: Duration,
}

impl ServeContext {
    /// The context of a listener of `broker` of the given kind.
    pub fn for_broker(broker: Arc<Broker>, listener: handlers::ListenerKind) -> Self {
        let max_request_bytes = broker.config.socket_request_max_bytes;
        let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
        ServeContext {
            handler: Arc::new(move |frame, peer| {
                let b = broker.clone();
                Box::pin(async move { handlers::dispatch(&b, frame, peer, listener).await })
            }),
            max_request_bytes,
            idle,
        }
    }
}

/// Serves one client connection until it closes or sends something malformed.
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    listener: handlers::ListenerKind,
) {
    serve_with(ServeContext::for_broker(broker, listener), stream, peer).await
}

/// Serves one connection with `ctx`'s handler.
pub async fn serve_with(ctx: ServeContext, stream: TcpStream, peer: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    let (tx, rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_loop(stream.clone(), rx, peer));
    let max = ctx.max_request_bytes;
    let idle = ctx.idle;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
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
        let reply = (ctx.handler)(frame, peer).await;
        let close = matches!(reply, Reply::Close);
        if tx.send(reply).await.is_err() || close {
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
    mut rx: mpsc::Receiver<Reply>,
    peer: std::net::SocketAddr,
) {
    while let Some(reply) = rx.recv().await {
        let resp = match reply {
            Reply::Now(r) => r,
            Reply::Later(f) => f.await,
            Reply::Nothing => continue,
            Reply::Close => break,
        };
        if let Err(e) = write_response(&stream, resp).await {
            tracing::debug!(%peer, error = %e, "connection write error");
            break;
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
