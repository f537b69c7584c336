//! Connections: one task per client reading size-prefixed frames, handling requests in
//! arrival order (as Kafka does, so a producer's pipelined batches append in order), and a
//! writer that sends responses in request order. A reply may be deferred (an `acks=all`
//! produce waiting for its fsync, a fetch waiting for data) without blocking the reading of
//! further requests. Record sets in fetch responses go to the socket with `sendfile`.
//!
//! Each connection owns a [`ConnectionContext`] (listener, peer, principal, client
//! software) that every request's context refers to; when a response has been written, the
//! request's timing goes to the metrics hook ([`RequestMetrics`]).
//!
//! On SSL and SASL_SSL listeners the same loop runs over a rustls stream after the TLS
//! handshake; record regions are then read from the segment and encrypted, since `sendfile`
//! would bypass TLS (see [`TlsWriter`]).

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use nagare_protocol::fetch::Chunk;
use nagare_protocol::frame::{self, FrameError};
use nagare_storage::FileSlice;

use crate::context::{ConnectionContext, ConnectionEnd, SecurityProtocol};
use crate::handlers::{self, Dispatched, ListenerKind};
use crate::request_metrics::RequestMetrics;
use crate::tls::ServerTls;
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
    /// Its error codes, for `kafka_network_requestmetrics_errors_total`.
    pub errors: crate::response_errors::ErrorCounts,
}

impl Response {
    /// A response made of one in-memory buffer.
    pub fn bytes(b: Bytes) -> Self {
        Response {
            chunks: vec![Chunk::Bytes(b)],
            errors: Default::default(),
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
    /// The TLS configuration of an SSL or SASL_SSL listener (a TLS listener without one
    /// refuses every connection rather than serve in the clear).
    pub tls: Option<Arc<ServerTls>>,
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
        // `metrics.enabled=false`: no request metrics recorded (BENCHMARKS.md measures the cost).
        let metrics = broker
            .config
            .metrics_enabled
            .then(|| broker.request_metrics.clone());
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
            tls: None,
        }
    }

    /// The same context serving TLS with `tls`.
    pub fn with_tls(mut self, tls: Arc<ServerTls>) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Serves one connection with `ctx`'s handler until it closes or sends something malformed.
/// On a TLS listener (SSL, SASL_SSL) the TLS handshake comes first, bounded by
/// [`TLS_HANDSHAKE_TIMEOUT`]; on SSL the client certificate (if any) sets the principal.
pub async fn serve_with(ctx: ServeContext, stream: TcpStream, peer: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let conn = ConnectionContext::new(
        ctx.listener_name.clone(),
        ctx.listener,
        ctx.security_protocol,
        stream.local_addr().ok(),
        peer,
    );
    if !ctx.security_protocol.uses_tls() {
        // PLAINTEXT: reads and writes straight on the socket, fetched records with sendfile.
        let stream = Arc::new(stream);
        let reader = PlainSocket(stream.clone());
        run_connection(ctx, Arc::new(conn), reader, PlainSocket(stream), peer).await;
        return;
    }
    // Never serve a TLS listener in the clear, whatever built the context.
    let Some(tls) = ctx.tls.clone() else {
        tracing::error!(%peer, listener = %ctx.listener_name, "TLS listener without a TLS configuration; closing the connection");
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, listener = %ctx.listener_name, error = %e, "TLS handshake failed; closing the connection");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, listener = %ctx.listener_name, "TLS handshake timed out; closing the connection");
            return;
        }
    };
    // On SASL_SSL the principal comes from SASL; on SSL from the certificate (Kafka's
    // DefaultKafkaPrincipalBuilder), or ANONYMOUS without one.
    if ctx.security_protocol == SecurityProtocol::Ssl {
        match tls.principal(stream.get_ref().1.peer_certificates()) {
            Ok(p) => {
                tracing::debug!(%peer, principal = %p, "TLS client authenticated");
                conn.set_principal(p);
            }
            Err(e) => {
                tracing::warn!(%peer, listener = %ctx.listener_name, error = %e, "TLS client authentication failed; closing the connection");
                return;
            }
        }
    }
    let (r, w) = tokio::io::split(stream);
    let writer = TlsWriter {
        stream: w,
        scratch: Vec::new(),
    };
    run_connection(ctx, Arc::new(conn), TlsReader(r), writer, peer).await;
}

/// How long a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The frame loop, the same over a plain socket or TLS.
async fn run_connection<R: FrameSource, W: ResponseSink>(
    ctx: ServeContext,
    conn: Arc<ConnectionContext>,
    mut reader: R,
    sink: W,
    peer: std::net::SocketAddr,
) {
    // Counted while the frame loop runs (Kafka's per-listener `connection-count`).
    let _counted = ctx
        .metrics
        .as_ref()
        .map(|m| m.connection_opened(&ctx.listener_name));
    let (tx, rx) = mpsc::channel::<Dispatched>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        peer,
        ctx.metrics.clone(),
        conn.clone(),
    ));
    let max = ctx.max_request_bytes;
    let idle = ctx.idle;
    let mut buf = BytesMut::with_capacity(FRESH_READ_BUFFER);
    // How the loop ended: the controller fences a broker whose heartbeat connection the peer
    // closed (`crate::liveness`), so end-of-stream and resets are told apart from our closes.
    let mut end = ConnectionEnd::ClosedHere;
    loop {
        // Quota hook: a throttled connection reads nothing until its mute ends (KIP-219).
        if let Some(until) = conn.muted_until() {
            tokio::time::sleep_until(until.into()).await;
        }
        // connections.max.idle.ms: like Kafka, close a connection that sends nothing (or
        // never finishes a request) for that long.
        let frame = match tokio::time::timeout(idle, read_frame(&mut reader, &mut buf, max)).await {
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)");
                break;
            }
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => {
                end = ConnectionEnd::ClosedByPeer;
                break;
            }
            Ok(Err(ReadError::Frame(e))) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                break;
            }
            Ok(Err(ReadError::Io(e))) => {
                tracing::debug!(%peer, error = %e, "connection read error");
                end = ConnectionEnd::ClosedByPeer;
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
    conn.set_end(end);
    drop(tx);
    let _ = writer.await;
}

/// Where request bytes come from: the socket, or the TLS stream's read half.
trait FrameSource: Send {
    /// Reads until `buf` holds `need` bytes; `Ok(false)` on end of stream first. With
    /// `exact`, reads nothing past `need` (see [`read_frame`]).
    fn fill(
        &mut self,
        buf: &mut BytesMut,
        need: usize,
        exact: bool,
    ) -> impl Future<Output = std::io::Result<bool>> + Send;
}

/// Where responses go: the socket (records with `sendfile`), or the TLS stream's write half.
trait ResponseSink: Send + 'static {
    /// Writes one whole response.
    fn write_response(
        &mut self,
        resp: Response,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// A plain TCP connection (both halves share the socket).
struct PlainSocket(Arc<TcpStream>);

impl FrameSource for PlainSocket {
    async fn fill(
        &mut self,
        buf: &mut BytesMut,
        need: usize,
        exact: bool,
    ) -> std::io::Result<bool> {
        fill(&self.0, buf, need, exact).await
    }
}

impl ResponseSink for PlainSocket {
    async fn write_response(&mut self, resp: Response) -> std::io::Result<()> {
        write_response(&self.0, resp).await
    }
}

type ServerTlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The read half of a TLS connection.
struct TlsReader(tokio::io::ReadHalf<ServerTlsStream>);

impl FrameSource for TlsReader {
    async fn fill(
        &mut self,
        buf: &mut BytesMut,
        need: usize,
        exact: bool,
    ) -> std::io::Result<bool> {
        while buf.len() < need {
            // As for plain sockets: grow with the data arriving, at most 1 MiB ahead.
            let missing = need - buf.len();
            buf.reserve(missing.min(1 << 20));
            let n = if exact {
                self.0.read_buf(&mut (&mut *buf).limit(missing)).await?
            } else {
                self.0.read_buf(buf).await?
            };
            if n == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Bytes of a fetched record region read from the segment per TLS write: large enough to
/// fill many TLS records per syscall, small enough to bound a connection's memory.
pub(crate) const TLS_RECORDS_CHUNK: usize = 256 * 1024;

/// The write half of a TLS connection. Fetched records cannot go through `sendfile` (the
/// kernel would send them unencrypted), so they are read from the segment (`pread`, at most
/// [`TLS_RECORDS_CHUNK`] at a time, usually from the page cache; a blocking read, as Kafka's
/// network threads do for SSL) and encrypted by rustls.
struct TlsWriter {
    stream: tokio::io::WriteHalf<ServerTlsStream>,
    scratch: Vec<u8>,
}

impl ResponseSink for TlsWriter {
    async fn write_response(&mut self, resp: Response) -> std::io::Result<()> {
        // Header bytes and record regions are gathered into one buffer of up to
        // TLS_RECORDS_CHUNK and written together: full TLS records and few syscalls, rather
        // than a small record per header piece of a many-partition fetch.
        let write = async {
            // A fixed buffer (allocated once per connection) and how much of it is filled:
            // no re-zeroing per piece.
            if self.scratch.len() < TLS_RECORDS_CHUNK {
                self.scratch = vec![0u8; TLS_RECORDS_CHUNK];
            }
            let out = &mut self.scratch[..TLS_RECORDS_CHUNK];
            let mut filled = 0usize;
            for chunk in resp.chunks {
                match chunk {
                    Chunk::Bytes(b) => {
                        if filled + b.len() > TLS_RECORDS_CHUNK && filled > 0 {
                            self.stream.write_all(&out[..filled]).await?;
                            filled = 0;
                        }
                        if b.len() >= TLS_RECORDS_CHUNK {
                            self.stream.write_all(&b).await?;
                        } else {
                            out[filled..filled + b.len()].copy_from_slice(&b);
                            filled += b.len();
                        }
                    }
                    Chunk::Records(Region(slice)) => {
                        let mut pos = slice.position;
                        let end = slice.position + slice.len as u64;
                        while pos < end {
                            if filled == TLS_RECORDS_CHUNK {
                                self.stream.write_all(out).await?;
                                filled = 0;
                            }
                            let n = ((end - pos) as usize).min(TLS_RECORDS_CHUNK - filled);
                            slice
                                .file
                                .read_exact_at(&mut out[filled..filled + n], pos)
                                .map_err(|e| {
                                    // As with sendfile: a segment truncated underneath the
                                    // response fails the connection, never a wrong length.
                                    std::io::Error::new(
                                        e.kind(),
                                        format!("reading fetched records from the segment: {e}"),
                                    )
                                })?;
                            filled += n;
                            pos += n as u64;
                        }
                    }
                }
            }
            if filled > 0 {
                self.stream.write_all(&out[..filled]).await?;
            }
            self.stream.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
    }
}

/// The capacity a connection's read buffer starts with (and restarts with after a large
/// frame took its allocation).
const FRESH_READ_BUFFER: usize = 64 * 1024;

enum ReadError {
    Frame(FrameError),
    Io(std::io::Error),
}

async fn fill(
    stream: &TcpStream,
    buf: &mut BytesMut,
    need: usize,
    exact: bool,
) -> Result<bool, std::io::Error> {
    while buf.len() < need {
        stream.readable().await?;
        // Grow with the data actually arriving (at most 1 MiB ahead), so a client that
        // announces a large frame and then stalls does not pin the whole size in memory.
        let missing = need - buf.len();
        buf.reserve(missing.min(1 << 20));
        let read = if exact {
            stream.try_read_buf(&mut (&mut *buf).limit(missing))
        } else {
            stream.try_read_buf(buf)
        };
        match read {
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
async fn read_frame<R: FrameSource>(
    stream: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, ReadError> {
    if !stream.fill(buf, 4, false).await.map_err(ReadError::Io)? {
        if buf.is_empty() {
            return Ok(None);
        }
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let prefix = [buf[0], buf[1], buf[2], buf[3]];
    let size = frame::check_frame_size(prefix, max).map_err(ReadError::Frame)?;
    // A large frame (a produce request, usually) is read up to its end and nothing further,
    // and the read buffer then starts afresh: the frame's allocation is its own, so the
    // produce handler can hand its records to the log without copying them
    // (`handlers::produce_frame`). Small frames keep sharing the buffer (cheaper to copy).
    let large = size >= crate::handlers::produce_frame::OWN_FRAME_MIN_BYTES;
    if !stream
        .fill(buf, 4 + size, large)
        .await
        .map_err(ReadError::Io)?
    {
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let mut frame = buf.split_to(4 + size);
    if large && buf.is_empty() {
        *buf = BytesMut::with_capacity(FRESH_READ_BUFFER);
    }
    let _ = frame.split_to(4);
    Ok(Some(frame.freeze()))
}

async fn write_loop<S: ResponseSink>(
    mut sink: S,
    mut rx: mpsc::Receiver<Dispatched>,
    peer: std::net::SocketAddr,
    metrics: Option<Arc<RequestMetrics>>,
    conn: Arc<ConnectionContext>,
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
        let mut resp = resp;
        let errors = std::mem::take(&mut resp.errors);
        if let Err(e) = sink.write_response(resp).await {
            tracing::debug!(%peer, error = %e, "connection write error");
            break;
        }
        if let (Some(m), Some(t)) = (&metrics, timing) {
            let ready = ready.unwrap_or(write_start);
            let end = Instant::now();
            // Kafka's ThrottleTimeMs: a quota mutes the connection after the response.
            let throttle = conn
                .muted_until()
                .map(|u| u.saturating_duration_since(end))
                .unwrap_or_default();
            m.record(
                &t.finish(ready, write_start, end, bytes)
                    .with_throttle(throttle)
                    .with_errors(errors),
            );
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
