//! A fault-injecting network for multi-node tests: one proxy port per destination node and
//! listener, so every connection (inter-node and client) crosses the proxy and can be held.
//!
//! The proxy reads the first request frame of every accepted connection to learn who opened
//! it: Nagare's inter-node clients send a Kafka `client_id` ending in their node id
//! (`nagare-replica-fetcher-{id}`, `nagare-raft-{id}`, `nagare-broker-{id}`,
//! `nagare-txn-marker-sender-{id}`); anything else is a
//! test client ([`CLIENT`]). A connection opened by `src` towards `dst` belongs to the directed
//! link `src → dst`. While that link is cut, the connection stalls: bytes already read are held
//! in both directions and nothing more is read (so TCP back-pressure stops the sender), and new
//! connections on the link are accepted but not forwarded. Healing the link lets held
//! connections continue; by then the peers have usually timed out and closed them, and the
//! held bytes arrive late, like delayed packets.
//!
//! An asymmetric cut is a cut of `src → dst` only (`dst` can still open connections to
//! `src`); [`FaultNet::isolate`] cuts both directions between one node and every other node.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The source id of connections that are not from a Nagare node (test clients).
pub const CLIENT: i32 = 0;

/// Counters of what the network did.
#[derive(Default, Debug)]
pub struct NetStats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections held by a cut link (counted once per direction that was held).
    pub held: AtomicUsize,
}

struct Shared {
    /// Cut directed links `(src, dst)`.
    cuts: Mutex<HashSet<(i32, i32)>>,
    /// Bumped on every change of `cuts`, to wake held connections.
    generation: watch::Sender<u64>,
    stats: NetStats,
}

impl Shared {
    fn is_cut(&self, src: i32, dst: i32) -> bool {
        self.cuts.lock().expect("cuts lock").contains(&(src, dst))
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Waits until `src → dst` is not cut; returns whether it had to wait.
    async fn wait_open(&self, src: i32, dst: i32) -> bool {
        // Subscribe before checking, so a heal between the check and the wait is not missed.
        let mut rx = self.generation.subscribe();
        let mut waited = false;
        while self.is_cut(src, dst) {
            waited = true;
            if rx.changed().await.is_err() {
                return waited;
            }
        }
        waited
    }
}

/// The proxies of one cluster; stops when dropped.
pub struct FaultNet {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Default for FaultNet {
    fn default() -> Self {
        FaultNet::new()
    }
}

impl FaultNet {
    /// A network without routes and without cuts.
    pub fn new() -> FaultNet {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-net")
            .enable_all()
            .build()
            .expect("fault-net runtime");
        let (generation, _) = watch::channel(0u64);
        FaultNet {
            shared: Arc::new(Shared {
                cuts: Mutex::new(HashSet::new()),
                generation,
                stats: NetStats::default(),
            }),
            runtime: Some(runtime),
        }
    }

    /// Binds a proxy port on 127.0.0.1 whose connections go to node `dst` at `target_port`;
    /// returns the proxy port (what the other nodes and the clients are told to use).
    pub fn route(&self, dst: i32, target_port: u16) -> u16 {
        let rt = self.runtime.as_ref().expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy port");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = self.shared.clone();
        rt.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = handle(conn, dst, target_port, shared).await;
                });
            }
        });
        port
    }

    /// Cuts the directed link `src → dst` (connections `src` opens to `dst`).
    pub fn cut(&self, src: i32, dst: i32) {
        self.shared
            .cuts
            .lock()
            .expect("cuts lock")
            .insert((src, dst));
        self.shared.changed();
    }

    /// Heals the directed link `src → dst`.
    pub fn heal(&self, src: i32, dst: i32) {
        self.shared
            .cuts
            .lock()
            .expect("cuts lock")
            .remove(&(src, dst));
        self.shared.changed();
    }

    /// Cuts every link between `node` and each of `others` in both directions; with
    /// `clients`, also the clients' links to `node`.
    pub fn isolate(&self, node: i32, others: &[i32], clients: bool) {
        {
            let mut cuts = self.shared.cuts.lock().expect("cuts lock");
            for &o in others.iter().filter(|o| **o != node) {
                cuts.insert((node, o));
                cuts.insert((o, node));
            }
            if clients {
                cuts.insert((CLIENT, node));
            }
        }
        self.shared.changed();
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        self.shared.cuts.lock().expect("cuts lock").clear();
        self.shared.changed();
    }

    /// The links cut now, sorted.
    pub fn cuts(&self) -> Vec<(i32, i32)> {
        let mut v: Vec<_> = self
            .shared
            .cuts
            .lock()
            .expect("cuts lock")
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Counters.
    pub fn stats(&self) -> &NetStats {
        &self.shared.stats
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// The source node of a connection from the client id of its first request.
fn source_of(client_id: &str) -> i32 {
    for prefix in [
        "nagare-replica-fetcher-",
        "nagare-raft-",
        "nagare-broker-",
        "nagare-txn-marker-sender-",
    ] {
        if let Some(id) = client_id
            .strip_prefix(prefix)
            .and_then(|s| s.parse::<i32>().ok())
        {
            return id;
        }
    }
    CLIENT
}

/// Reads from `conn` until the request header's client id is buffered (Kafka request header
/// v1+: i32 size, i16 api key, i16 version, i32 correlation id, i16-length client id).
async fn read_first_header(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if buf.len() >= 14 {
            let len = i16::from_be_bytes([buf[12], buf[13]]);
            if len < 0 {
                return Ok(String::new());
            }
            let end = 14 + len as usize;
            if buf.len() >= end {
                return Ok(String::from_utf8_lossy(&buf[14..end]).into_owned());
            }
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(
    mut conn: TcpStream,
    dst: i32,
    target_port: u16,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    conn.set_nodelay(true)?;
    let mut first = Vec::new();
    let src = source_of(&read_first_header(&mut conn, &mut first).await?);
    let mut held = shared.wait_open(src, dst).await;
    let server = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], target_port))).await?;
    server.set_nodelay(true)?;
    let (cr, cw) = conn.into_split();
    let (sr, mut sw) = server.into_split();
    held |= shared.wait_open(src, dst).await;
    sw.write_all(&first).await?;
    if held {
        shared.stats.held.fetch_add(1, Ordering::Relaxed);
    }
    let up = pump(cr, sw, src, dst, held, shared.clone());
    let down = pump(sr, cw, src, dst, held, shared);
    // Whichever direction ends first ends the connection: both halves are dropped here.
    tokio::select! {
        r = up => r?,
        r = down => r?,
    }
    Ok(())
}

/// Copies `r` to `w`, holding each chunk while `src → dst` is cut.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    src: i32,
    dst: i32,
    mut counted: bool,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if shared.wait_open(src, dst).await && !counted {
            counted = true;
            shared.stats.held.fetch_add(1, Ordering::Relaxed);
        }
        w.write_all(&buf[..n]).await?;
    }
}
