//! A multi-process cluster on 127.0.0.1 for the KRaft tests: controllers and brokers
//! configured with Kafka's property names (`process.roles`, `node.id`, `listeners`,
//! `controller.listener.names`, `controller.quorum.voters`, `log.dirs`), formatted with
//! `nagare storage format`, each a `nagare server` child process whose output goes to a file
//! that is printed if the test panics.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, nagare_bin};

/// One node of a [`TestCluster`].
pub struct Node {
    /// `node.id`.
    pub id: i32,
    /// `process.roles`.
    pub roles: &'static str,
    /// The client listener port (brokers).
    pub port: u16,
    /// The CONTROLLER listener port (controllers).
    pub cport: u16,
    /// The client port other nodes and clients are told about (`advertised.listeners`);
    /// `port` unless a proxy sits in front.
    pub adv_port: u16,
    /// The controller port in `controller.quorum.voters`; `cport` unless a proxy sits in front.
    pub adv_cport: u16,
    dir: PathBuf,
    child: Option<Child>,
    log_start: u64,
}

impl Node {
    /// The node's directory (config, data, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its data directory (`log.dirs`).
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The file holding its output (every incarnation).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Its `server.properties`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    /// Whether it has the broker role.
    pub fn is_broker(&self) -> bool {
        self.roles.contains("broker")
    }

    /// Whether it has the controller role.
    pub fn is_controller(&self) -> bool {
        self.roles.contains("controller")
    }

    /// `127.0.0.1:port` of its client listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:adv_port`: its client listener as advertised (through a proxy, if any).
    pub fn adv_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.adv_port)
    }

    /// Everything it printed.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_file()).unwrap_or_default()).into_owned()
    }

    /// What the current incarnation printed.
    pub fn current_output(&self) -> String {
        let all = std::fs::read(self.log_file()).unwrap_or_default();
        let start = (self.log_start as usize).min(all.len());
        String::from_utf8_lossy(&all[start..]).into_owned()
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process (it must be formatted first).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already runs", self.id);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .expect("open node log");
        self.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        writeln!(log, "===== test harness: start node {}", self.id).expect("write log");
        let err = log.try_clone().expect("clone log");
        let child = Command::new(nagare_bin())
            .args(["server", "--config"])
            .arg(self.config_file())
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn nagare");
        self.child = Some(child);
    }

    /// Waits until it announced its listener and (for brokers) accepts connections.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                panic!(
                    "node {} exited during startup:\n{}",
                    self.id,
                    self.current_output()
                );
            }
            let port = if self.is_broker() {
                self.port
            } else {
                self.cport
            };
            if self.current_output().contains("listening on")
                && TcpStream::connect_timeout(
                    &format!("127.0.0.1:{port}").parse().expect("addr"),
                    Duration::from_millis(200),
                )
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready after {timeout:?}:\n{}",
                self.id,
                self.current_output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of the running incarnation.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` (a `kill` name such as `STOP` or `CONT`) to the running process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .status();
            let _ = OpenOptions::new()
                .append(true)
                .open(self.log_file())
                .and_then(|mut f| writeln!(f, "===== test harness: SIG{signal}"));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = OpenOptions::new()
                .append(true)
                .open(self.log_file())
                .and_then(|mut f| writeln!(f, "===== test harness: SIGKILL"));
        }
    }

    /// SIGTERM (clean shutdown) and wait up to `timeout` for the exit.
    pub fn stop(&mut self, timeout: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Controllers and brokers as separate processes.
pub struct TestCluster {
    _root: tempfile::TempDir,
    /// Every node, controllers first.
    pub nodes: Vec<Node>,
    /// The cluster id every node was formatted with.
    pub cluster_id: String,
}

/// Maps `(node id, real port)` to the port the other nodes and clients use for that listener
/// (a proxy port); see [`TestCluster::with_layout`].
pub type AddressMap<'a> = &'a dyn Fn(i32, u16) -> u16;

/// The shape of a [`TestCluster`] beyond [`TestCluster::new`].
pub struct ClusterLayout<'a> {
    /// Controller-only nodes (ids 1..).
    pub controllers: usize,
    /// Broker-only nodes (ids 101..).
    pub brokers: usize,
    /// Combined `broker,controller` nodes (ids 1.., after any controller-only ones).
    pub combined: usize,
    /// Properties appended to every node's file.
    pub extra: &'a [&'a str],
    /// Where each client listener is advertised (`advertised.listeners`); identity if `None`.
    pub client_address: Option<AddressMap<'a>>,
    /// Where each controller listener is listed in `controller.quorum.voters`; identity if
    /// `None`.
    pub controller_address: Option<AddressMap<'a>>,
}

impl TestCluster {
    /// `controllers` controller-only nodes (ids 1..) and `brokers` broker-only nodes (ids
    /// 101..), with `extra` properties appended to every node's file. Formats every node;
    /// does not start them.
    pub fn new(controllers: usize, brokers: usize, extra: &[&str]) -> TestCluster {
        TestCluster::with_layout(ClusterLayout {
            controllers,
            brokers,
            combined: 0,
            extra,
            client_address: None,
            controller_address: None,
        })
    }

    /// A cluster as `layout` describes; formats every node, does not start them.
    pub fn with_layout(layout: ClusterLayout<'_>) -> TestCluster {
        let ClusterLayout {
            controllers,
            brokers,
            combined,
            extra,
            client_address,
            controller_address,
        } = layout;
        let root = tempfile::Builder::new()
            .prefix("nagare-cluster-")
            .tempdir()
            .expect("temp dir");
        let mut nodes = Vec::new();
        for i in 0..controllers {
            nodes.push((i as i32 + 1, "controller"));
        }
        for i in 0..combined {
            nodes.push(((controllers + i) as i32 + 1, "broker,controller"));
        }
        for i in 0..brokers {
            nodes.push((i as i32 + 101, "broker"));
        }
        let mut nodes: Vec<Node> = nodes
            .into_iter()
            .map(|(id, roles)| {
                let dir = root.path().join(format!("node-{id}"));
                std::fs::create_dir_all(&dir).expect("node dir");
                let port = free_port();
                let cport = free_port();
                Node {
                    id,
                    roles,
                    port,
                    cport,
                    adv_port: client_address.map_or(port, |f| f(id, port)),
                    adv_cport: controller_address.map_or(cport, |f| f(id, cport)),
                    dir,
                    child: None,
                    log_start: 0,
                }
            })
            .collect();
        let voters = nodes
            .iter()
            .filter(|n| n.is_controller())
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.adv_cport))
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new(nagare_bin())
            .args(["storage", "random-uuid"])
            .output()
            .expect("random-uuid");
        let cluster_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(cluster_id.len(), 22, "random-uuid printed {cluster_id:?}");
        for n in &mut nodes {
            let listeners = match n.roles {
                "controller" => format!("CONTROLLER://127.0.0.1:{}", n.cport),
                "broker" => format!("PLAINTEXT://127.0.0.1:{}", n.port),
                _ => format!(
                    "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    n.port, n.cport
                ),
            };
            let mut text = format!(
                "process.roles={}\nnode.id={}\ncontroller.quorum.voters={voters}\nlisteners={listeners}\ncontroller.listener.names=CONTROLLER\nlistener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\ninter.broker.listener.name=PLAINTEXT\nlog.dirs={}\noffsets.topic.replication.factor=1\n",
                n.roles,
                n.id,
                n.log_dir().display()
            );
            if n.is_broker() {
                text.push_str(&format!(
                    "advertised.listeners=PLAINTEXT://127.0.0.1:{}\n",
                    n.adv_port
                ));
            }
            for e in extra {
                text.push_str(e);
                text.push('\n');
            }
            std::fs::write(n.config_file(), text).expect("write config");
        }
        let cluster = TestCluster {
            _root: root,
            nodes,
            cluster_id,
        };
        for n in &cluster.nodes {
            cluster.format(n);
        }
        cluster
    }

    /// Runs `nagare storage format` for `n`.
    pub fn format(&self, n: &Node) {
        let out = Command::new(nagare_bin())
            .args([
                "storage",
                "format",
                "--cluster-id",
                &self.cluster_id,
                "--config",
            ])
            .arg(n.config_file())
            .output()
            .expect("storage format");
        assert!(
            out.status.success(),
            "format node {} failed: {}",
            n.id,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Formats node `id` again from scratch with `extra` arguments of `nagare storage format`
    /// (for example `--add-scram ...` for the SCRAM users a secured cluster starts with).
    pub fn reformat(&self, id: i32, extra: &[&str]) {
        let n = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node");
        let _ = std::fs::remove_dir_all(n.log_dir());
        let out = Command::new(nagare_bin())
            .args([
                "storage",
                "format",
                "--cluster-id",
                &self.cluster_id,
                "--config",
            ])
            .arg(n.config_file())
            .args(extra)
            .output()
            .expect("storage format");
        assert!(
            out.status.success(),
            "format node {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every node's id.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Starts every node and waits until all are ready.
    pub fn start_all(&mut self, timeout: Duration) {
        for n in &mut self.nodes {
            n.start();
        }
        for n in &mut self.nodes {
            n.wait_ready(timeout);
        }
    }

    /// Starts the nodes with these ids and waits until they are ready.
    pub fn start_nodes(&mut self, ids: &[i32], timeout: Duration) {
        for n in self.nodes.iter_mut().filter(|n| ids.contains(&n.id)) {
            n.start();
        }
        for n in self.nodes.iter_mut().filter(|n| ids.contains(&n.id)) {
            n.wait_ready(timeout);
        }
    }

    /// The node with `id`.
    pub fn node(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// `host:port` of every running broker, comma-separated.
    pub fn bootstrap(&mut self) -> String {
        let mut v = Vec::new();
        for n in &mut self.nodes {
            if n.is_broker() && n.is_running() {
                v.push(n.bootstrap());
            }
        }
        v.join(",")
    }

    /// Runs the `nagare` CLI with `args`; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(nagare_bin())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run nagare");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        // NAGARE_TEST_KEEP_LOGS=dir: every node's output is kept there, pass or fail.
        if let Ok(d) = std::env::var("NAGARE_TEST_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&d);
            for n in &self.nodes {
                let _ = std::fs::write(format!("{d}/node-{}.log", n.id), n.output());
            }
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("===== node {} ({}) output:\n{}", n.id, n.roles, n.output());
            }
        }
    }
}
