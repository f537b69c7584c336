//! Shared helpers for the integration tests: a real `nagare` process on free 127.0.0.1
//! ports ([`TestServer`]), rdkafka client configurations, and a fault-injecting TCP proxy
//! ([`proxy`]).
//!
//! Every test binary compiles this module and uses only part of it, hence the `dead_code` allow.
#![allow(dead_code)]

pub mod cluster;
pub mod fault_proxy;
pub mod proxy;
pub mod replication;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How long a server may take to print `listening on` and accept connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the `nagare` binary Cargo built for this test run (same profile as the tests), or
/// `NAGARE_TEST_BIN` if set (a long run pinned to a copy that later builds do not replace).
pub fn nagare_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("NAGARE_TEST_BIN")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_nagare").to_string())
    })
}

/// Returns a port that was free a moment ago, below Linux's ephemeral range (32768–60999).
/// A port from `bind 127.0.0.1:0` is an ephemeral one: between releasing it and the server
/// binding it, any outgoing connection (another node, a client) may take it as its local
/// port, and the server then fails to start with "address in use". Ports are handed out in
/// turn from a per-process starting point, so tests in one binary never get the same one and
/// concurrent test processes rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// How to start a [`TestServer`].
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Extra `--override key=value` properties, appended after the defaults (so they win).
    pub overrides: Vec<String>,
    /// Port to advertise instead of the listener port (e.g. a proxy in front of the broker).
    pub advertised_port: Option<u16>,
    /// A `server.properties` template passed with `--config`. `{PORT}`, `{CPORT}`,
    /// `{ADVERTISED_PORT}` and `{LOG_DIR}` are substituted. When set, no default overrides
    /// are passed (only `overrides`).
    pub config_template: Option<String>,
}

/// A `nagare server` child process with its own temporary directory and ports.
///
/// stdout and stderr go to `server.log` in the temporary directory; the log is printed when the
/// test panics (from `Drop`), so a failing test shows what the server said.
pub struct TestServer {
    dir: tempfile::TempDir,
    /// The PLAINTEXT listener port.
    pub port: u16,
    /// The CONTROLLER listener port.
    pub cport: u16,
    /// The advertised PLAINTEXT port (equals `port` unless a proxy sits in front).
    pub advertised_port: u16,
    options: ServerOptions,
    child: Option<Child>,
    /// Byte offset in the log file where the current incarnation's output starts.
    log_start: u64,
    /// How many times the process was started (1 after `start`).
    pub incarnation: u32,
}

impl TestServer {
    /// Starts a single-node server with the default overrides plus `extra_overrides`
    /// (`"key=value"` strings) and waits until it accepts connections.
    pub fn start(extra_overrides: &[&str]) -> TestServer {
        TestServer::start_with(ServerOptions {
            overrides: extra_overrides.iter().map(|s| s.to_string()).collect(),
            ..ServerOptions::default()
        })
    }

    /// Starts a server as described by `options` and waits until it is ready.
    pub fn start_with(options: ServerOptions) -> TestServer {
        // A port picked by `free_port` can be taken (say, by a client's ephemeral port) before
        // the server binds it; then start over with fresh ports.
        for attempt in 1.. {
            let mut server = TestServer::spawn_with(options.clone());
            match server.try_wait_ready() {
                Ok(()) => return server,
                Err(output) if attempt < 3 && output.to_lowercase().contains("in use") => {
                    eprintln!("nagare could not bind its ports (attempt {attempt}); retrying");
                }
                Err(output) => panic!("nagare exited during startup; output:\n{output}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Starts the process without waiting for it to be ready (for tests that expect it to fail).
    pub fn spawn_with(options: ServerOptions) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("nagare-it-")
            .tempdir()
            .expect("create temp dir");
        let port = free_port();
        let mut cport = free_port();
        while cport == port {
            cport = free_port();
        }
        let advertised_port = options.advertised_port.unwrap_or(port);
        let mut server = TestServer {
            dir,
            port,
            cport,
            advertised_port,
            options,
            child: None,
            log_start: 0,
            incarnation: 0,
        };
        std::fs::create_dir_all(server.log_dir()).expect("create log dir");
        server.spawn();
        server
    }

    /// The temporary directory that holds the data and the log file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `log.dirs` directory (partition directories live here).
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that receives the server's stdout and stderr (all incarnations).
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// `host:port` for clients' `bootstrap.servers` (the advertised address).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// `host:port` of the broker's own PLAINTEXT listener (bypassing any proxy).
    pub fn direct_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec!["server".to_string()];
        if let Some(template) = &self.options.config_template {
            let path = self.dir.path().join("server.properties");
            std::fs::write(&path, self.substitute(template)).expect("write server.properties");
            args.push("--config".into());
            args.push(path.display().to_string());
        } else {
            let defaults = [
                "node.id=1".to_string(),
                format!(
                    "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    self.port, self.cport
                ),
                format!(
                    "advertised.listeners=PLAINTEXT://127.0.0.1:{}",
                    self.advertised_port
                ),
                format!("log.dirs={}", self.log_dir().display()),
            ];
            for d in defaults {
                args.push("--override".into());
                args.push(d);
            }
        }
        for o in &self.options.overrides {
            args.push("--override".into());
            args.push(self.substitute(o));
        }
        args
    }

    fn substitute(&self, s: &str) -> String {
        s.replace("{PORT}", &self.port.to_string())
            .replace("{CPORT}", &self.cport.to_string())
            .replace("{ADVERTISED_PORT}", &self.advertised_port.to_string())
            .replace("{LOG_DIR}", &self.log_dir().display().to_string())
    }

    /// Starts the process (again) with the same directory, ports and arguments, without
    /// waiting for it (for tests that expect a restart to fail).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .expect("open server log");
        self.log_start = log.seek(SeekFrom::End(0)).expect("seek log");
        self.incarnation += 1;
        let args = self.args();
        writeln!(
            log,
            "===== test harness: start #{}: {} {}",
            self.incarnation,
            nagare_bin(),
            args.join(" ")
        )
        .expect("write server log");
        let stderr = log.try_clone().expect("clone log handle");
        let child = Command::new(nagare_bin())
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn nagare");
        self.child = Some(child);
    }

    /// The output of the current incarnation so far.
    pub fn current_output(&self) -> String {
        let mut f = File::open(self.log_file()).expect("open server log");
        f.seek(SeekFrom::Start(self.log_start)).expect("seek log");
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).expect("read server log");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Everything the server printed, all incarnations.
    pub fn full_output(&self) -> String {
        let bytes = std::fs::read(self.log_file()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether the process has exited; returns its status if so.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `listening on` in this incarnation's output and for the port to accept.
    pub fn wait_ready(&mut self) {
        if let Err(output) = self.try_wait_ready() {
            panic!("nagare exited during startup; output:\n{output}");
        }
    }

    /// Like [`TestServer::wait_ready`], but returns the output if the process exits instead.
    pub fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut announced = false;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Err(format!("[exit status {status}]\n{}", self.current_output()));
            }
            if !announced {
                announced = self.current_output().contains("listening on");
            }
            if announced
                && TcpStream::connect_timeout(
                    &format!("127.0.0.1:{}", self.port)
                        .parse()
                        .expect("socket addr"),
                    Duration::from_millis(500),
                )
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "nagare not ready after {STARTUP_TIMEOUT:?} (announced: {announced}); output:\n{}",
                    self.current_output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL (no shutdown hooks, no flush) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's Child::kill sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
            let _ = OpenOptions::new()
                .append(true)
                .open(self.log_file())
                .and_then(|mut f| writeln!(f, "===== test harness: SIGKILL sent"));
        }
    }

    /// Starts the process again with the same directory, ports and arguments, and waits for it.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    /// Resident set size of the server in KiB (Linux `/proc`), if it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    /// Virtual memory size of the server in KiB: unlike RSS it also counts allocations whose
    /// pages were never touched (a buffer reserved for an announced frame size).
    pub fn vm_size_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmSize:")
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Panics (with the server output) unless the process is still running.
    pub fn assert_running(&mut self, context: &str) {
        if let Some(status) = self.try_exit_status() {
            panic!(
                "{context}: nagare exited with {status}; output:\n{}",
                self.full_output()
            );
        }
    }

    /// An rdkafka configuration pointing at this server, with test-friendly timeouts.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", self.bootstrap())
            .set("socket.timeout.ms", "10000")
            .set("broker.address.family", "v4");
        cfg
    }

    /// An admin client for this server.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("create admin client")
    }

    /// A producer with acks=all and the given extra settings.
    pub fn producer(&self, extra: &[(&str, &str)]) -> BaseProducer {
        let mut cfg = self.client_config();
        cfg.set("acks", "all").set("linger.ms", "5");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        cfg.create().expect("create producer")
    }

    /// A consumer for `assign` (librdkafka needs a `group.id` for that, but it never joins or
    /// commits), reading from the beginning.
    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        let mut cfg = self.client_config();
        let group = format!("nagare-it-{}", rand::random::<u64>());
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        cfg.create().expect("create consumer")
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1) and `configs`,
    /// asserting success and waiting until the metadata shows every partition.
    pub fn create_topic(&self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin = self.admin();
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            new_topic = new_topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = block_on(admin.create_topics([&new_topic], &opts))
            .expect("CreateTopics request failed");
        assert_eq!(results.len(), 1, "one CreateTopics result per topic");
        match &results[0] {
            Ok(name) => assert_eq!(name, topic),
            Err((name, code)) => panic!("CreateTopics({name}) failed: {code:?}"),
        }
        self.wait_for_partitions(topic, partitions as usize);
    }

    /// Polls metadata until `topic` has `partitions` partitions, each with a leader.
    pub fn wait_for_partitions(&self, topic: &str, partitions: usize) {
        let consumer = self.consumer(&[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        loop {
            match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => {
                    if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                        let ready = t.error().is_none()
                            && t.partitions().len() == partitions
                            && t.partitions()
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none());
                        if ready {
                            return;
                        }
                        last = format!(
                            "error {:?}, {} partitions, leaders {:?}",
                            t.error(),
                            t.partitions().len(),
                            t.partitions()
                                .iter()
                                .map(|p| p.leader())
                                .collect::<Vec<_>>()
                        );
                    }
                }
                Err(e) => last = e.to_string(),
            }
            assert!(
                Instant::now() < deadline,
                "topic {topic} never showed {partitions} partitions with leaders: {last}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Produces one record and reads it back with a fresh consumer: the server is healthy.
    pub fn assert_healthy(&mut self, context: &str) {
        self.assert_running(context);
        let topic = "health-check";
        let producer = self.producer(&[("message.timeout.ms", "20000")]);
        let value = format!("healthy after {context}");
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(value.as_bytes()))
            .map_err(|(e, _)| e)
            .expect("enqueue health record");
        producer
            .flush(Duration::from_secs(25))
            .unwrap_or_else(|e| panic!("{context}: health produce not acknowledged: {e}"));
        let consumer = self.consumer(&[]);
        let (_, high) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .expect("watermarks of health topic");
        assert!(high >= 1, "{context}: health topic is empty after produce");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(high - 1))
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                Instant::now() < deadline,
                "{context}: health record not consumed"
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    assert_eq!(m.offset(), high - 1, "{context}");
                    assert_eq!(m.payload(), Some(value.as_bytes()), "{context}");
                    return;
                }
                Some(Err(e)) => panic!("{context}: consume error {e}"),
                None => {}
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let out = self.full_output();
            // The tail is what matters; keep huge logs readable.
            let tail: String = if out.len() > 64 * 1024 {
                let mut start = out.len() - 64 * 1024;
                while !out.is_char_boundary(start) {
                    start += 1;
                }
                format!("[... {} bytes cut ...]\n{}", start, &out[start..])
            } else {
                out
            };
            eprintln!(
                "----- nagare output ({}) -----\n{tail}\n----- end of nagare output -----",
                self.log_file().display()
            );
        }
    }
}

/// Runs a future to completion on a small current-thread runtime (for rdkafka's admin API).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Consumes partitions `0..partitions` of `topic` from `start` until each reaches its high
/// watermark (read once, before consuming), returning `(partition, message)` pairs per partition
/// in the order received.
pub fn consume_to_end(
    server: &TestServer,
    topic: &str,
    partitions: i32,
    start: Offset,
    timeout: Duration,
) -> Vec<Vec<rdkafka::message::OwnedMessage>> {
    let consumer = server.consumer(&[]);
    let mut marks = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("fetch watermarks");
        marks.push((low, high));
        tpl.add_partition_offset(topic, p, start).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: Vec<Vec<rdkafka::message::OwnedMessage>> = vec![Vec::new(); partitions as usize];
    let done = |out: &Vec<Vec<rdkafka::message::OwnedMessage>>| {
        out.iter().zip(&marks).all(|(msgs, &(low, high))| {
            high <= low || msgs.last().map(|m| m.offset() + 1).unwrap_or(-1) >= high
        })
    };
    let deadline = Instant::now() + timeout;
    while !done(&out) {
        assert!(
            Instant::now() < deadline,
            "consuming {topic} timed out; received {:?} of watermarks {marks:?}",
            out.iter().map(|v| v.len()).collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition() as usize;
                out[p].push(m.detach());
            }
            Some(Err(e)) => panic!("consume error on {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// What a producer's delivery report said about one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Acknowledged at `(partition, offset)`.
    Acked {
        /// The caller's id for the record (its delivery opaque).
        id: usize,
        /// Partition it was written to.
        partition: i32,
        /// Offset the broker assigned.
        offset: i64,
    },
    /// Failed with an error.
    Failed {
        /// The caller's id for the record.
        id: usize,
        /// The error, as text.
        error: String,
    },
}

/// A producer context that records every delivery report, keyed by the `usize` opaque.
#[derive(Clone, Default)]
pub struct RecordingContext {
    /// Every report received so far, in callback order.
    pub reports: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
}

impl rdkafka::ClientContext for RecordingContext {}

impl rdkafka::producer::ProducerContext for RecordingContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, id: Self::DeliveryOpaque) {
        let report = match result {
            Ok(m) => Delivery::Acked {
                id,
                partition: m.partition(),
                offset: m.offset(),
            },
            Err((e, _)) => Delivery::Failed {
                id,
                error: e.to_string(),
            },
        };
        self.reports.lock().expect("reports lock").push(report);
    }
}

impl TestServer {
    /// A producer (acks=all) whose delivery reports are recorded in the returned context.
    pub fn recording_producer(
        &self,
        extra: &[(&str, &str)],
    ) -> (BaseProducer<RecordingContext>, RecordingContext) {
        let mut cfg = self.client_config();
        cfg.set("acks", "all").set("linger.ms", "5");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        let ctx = RecordingContext::default();
        let producer = cfg
            .create_with_context(ctx.clone())
            .expect("create recording producer");
        (producer, ctx)
    }
}

/// Enqueues `record`, polling the producer while its local queue is full.
pub fn send_retrying_queue_full<C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) where
    C: rdkafka::producer::ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                assert!(Instant::now() < deadline, "producer queue stayed full");
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("enqueue failed: {e}"),
        }
    }
}
