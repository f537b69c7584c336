//! A fault-injecting TCP proxy: forwards bytes between clients and the broker and, on a seeded
//! schedule, cuts connections abruptly, either in the middle of a request (only part of it
//! reaches the broker) or after a request reached the broker but before its response reaches
//! the client (the case idempotent producers exist for).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// When and how connections are cut.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Seed of the schedule (printed by the test so a failure replays).
    pub seed: u64,
    /// How many connections get cut in total; later connections pass through untouched.
    pub cuts: usize,
    /// Each cut connection forwards between `min_budget` and `max_budget` client bytes first.
    pub min_budget: usize,
    /// See `min_budget`.
    pub max_budget: usize,
}

/// What the proxy did, for the test's assertions.
#[derive(Default, Debug)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections cut with a request only partly forwarded.
    pub request_cuts: AtomicUsize,
    /// Connections cut with a response dropped.
    pub response_cuts: AtomicUsize,
}

struct Shared {
    target_port: AtomicU16,
    cuts_left: AtomicUsize,
    faults_enabled: AtomicBool,
    rng: Mutex<StdRng>,
    plan: FaultPlan,
    stats: ProxyStats,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Clone, Copy, Debug)]
enum CutMode {
    /// Forward only part of the chunk that crosses the budget, then close both sides.
    MidRequest,
    /// Forward the crossing chunk entirely, then drop whatever the broker answers and close.
    DropResponse,
}

impl Proxy {
    /// Binds a listener on 127.0.0.1 and starts accepting; connections are forwarded once
    /// [`Proxy::set_target`] names the broker's port. Faults begin with [`Proxy::start_faults`].
    pub fn start(plan: FaultPlan) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            target_port: AtomicU16::new(0),
            cuts_left: AtomicUsize::new(plan.cuts),
            faults_enabled: AtomicBool::new(false),
            rng: Mutex::new(StdRng::seed_from_u64(plan.seed)),
            plan,
            stats: ProxyStats::default(),
        });
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let shared = accept_shared.clone();
                tokio::spawn(async move {
                    let _ = handle(client, shared).await;
                });
            }
        });
        Proxy {
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Sets the broker port connections are forwarded to.
    pub fn set_target(&self, port: u16) {
        self.shared.target_port.store(port, Ordering::SeqCst);
    }

    /// Starts injecting faults into new connections (the proxy starts as a plain forwarder).
    pub fn start_faults(&self) {
        self.shared.faults_enabled.store(true, Ordering::SeqCst);
    }

    /// Stops injecting faults into new connections (existing cut schedules still apply).
    pub fn stop_faults(&self) {
        self.shared.faults_enabled.store(false, Ordering::SeqCst);
    }

    /// Counters of what happened so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.shared.stats
    }

    /// Connections that were cut so far (both kinds).
    pub fn cuts_done(&self) -> usize {
        self.shared.stats.request_cuts.load(Ordering::SeqCst)
            + self.shared.stats.response_cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

async fn handle(client: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    shared.stats.connections.fetch_add(1, Ordering::SeqCst);
    let port = shared.target_port.load(Ordering::SeqCst);
    let server = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;

    // Decide this connection's fate up front.
    let cut: Option<(usize, CutMode)> = if shared.faults_enabled.load(Ordering::SeqCst)
        && shared
            .cuts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let mut rng = shared.rng.lock().expect("rng lock");
        let budget = rng.gen_range(shared.plan.min_budget..=shared.plan.max_budget);
        let mode = if rng.gen_bool(0.5) {
            CutMode::MidRequest
        } else {
            CutMode::DropResponse
        };
        Some((budget, mode))
    } else {
        None
    };

    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let drop_responses = Arc::new(AtomicBool::new(false));

    let upstream = {
        let drop_responses = drop_responses.clone();
        let shared = shared.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut forwarded = 0usize;
            loop {
                let n = client_read.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                match cut {
                    Some((budget, CutMode::MidRequest)) if forwarded + n > budget => {
                        // Forward a strict prefix of this chunk, then hang up on both sides.
                        let part = (budget - forwarded).clamp(1, n.saturating_sub(1).max(1));
                        if part < n {
                            server_write.write_all(&buf[..part]).await?;
                        }
                        shared.stats.request_cuts.fetch_add(1, Ordering::SeqCst);
                        return Ok(());
                    }
                    Some((budget, CutMode::DropResponse)) if forwarded + n > budget => {
                        drop_responses.store(true, Ordering::SeqCst);
                        server_write.write_all(&buf[..n]).await?;
                        forwarded += n;
                    }
                    _ => {
                        server_write.write_all(&buf[..n]).await?;
                        forwarded += n;
                    }
                }
            }
        }
    };
    let downstream = {
        let drop_responses = drop_responses.clone();
        let shared = shared.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = server_read.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                if drop_responses.load(Ordering::SeqCst) {
                    // The broker processed the request; the client never hears about it.
                    shared.stats.response_cuts.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                client_write.write_all(&buf[..n]).await?;
            }
        }
    };
    // Whichever direction ends first ends the connection: both halves are dropped here.
    tokio::select! {
        r = upstream => r?,
        r = downstream => r?,
    }
    Ok(())
}
