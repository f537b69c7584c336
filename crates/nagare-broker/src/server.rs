//! Starting and stopping a node: format-or-check the log dir (`meta.properties`), open the
//! metadata log and the partition logs (with recovery), register the broker, start the
//! background tasks (group commit, periodic flush, retention, checkpoints) and the listeners,
//! and shut down cleanly (flush, checkpoints, clean-shutdown marker) on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::{bail, Context};
use kafka_protocol::messages::ApiKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use nagare_controller::Controller;
use nagare_metadata::{MetadataPublisher, ProcessTerminatingFaultHandler};
use nagare_storage::LogManager;

use crate::broker_lifecycle::BrokerLifecycle;
use crate::config::BrokerConfig;
use crate::controller_channel::ControllerChannel;
use crate::handlers::ListenerKind;
use crate::network::Reply;
use crate::quorum::{KraftQuorum, MetadataListener};
use crate::replica_manager::{now_ms, ReplicaManager};
use crate::Broker;
use nagare_raft_manager::{RaftManager, RaftManagerConfig};

/// A started node; dropping it does not stop it, call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// Broker state.
    pub broker: Arc<Broker>,
    /// Address the broker listener is bound to.
    pub local_addr: std::net::SocketAddr,
    /// Addresses the `http.listeners` are bound to (metrics and health checks).
    pub http_addrs: Vec<std::net::SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    raft: RaftManager,
    lifecycle: Option<Arc<BrokerLifecycle>>,
}

/// Kafka's `meta.properties` file in each log dir.
const META_PROPERTIES: &str = "meta.properties";

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding. Like Kafka's
/// `Uuid.randomUuid`, never one starting with `-`, which a command line (`storage format
/// --cluster-id -x...`) would take for an option.
pub fn random_cluster_id() -> String {
    loop {
        let id = base64url(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// What `meta.properties` says about a log dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// `cluster.id`.
    pub cluster_id: String,
    /// `node.id`.
    pub node_id: i32,
}

/// Reads a log dir's `meta.properties`; `None` when the dir is not formatted.
pub fn read_meta_properties(dir: &Path) -> anyhow::Result<Option<MetaProperties>> {
    let path = dir.join(META_PROPERTIES);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let props: BTreeMap<String, String> = crate::config::parse_properties(&text, &path)?
        .into_iter()
        .collect();
    let cluster_id = props
        .get("cluster.id")
        .cloned()
        .with_context(|| format!("{} has no cluster.id", path.display()))?;
    let node_id = props
        .get("node.id")
        .with_context(|| format!("{} has no node.id", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} has an invalid node.id", path.display()))?;
    Ok(Some(MetaProperties {
        cluster_id,
        node_id,
    }))
}

/// Formats one log dir for `node_id` of cluster `cluster_id`, like `kafka-storage format`:
/// writes `meta.properties` (fsynced, atomically). Refuses a dir that is already formatted
/// unless `ignore_formatted`, in which case it leaves it alone.
pub fn format_dir(
    dir: &Path,
    node_id: i32,
    cluster_id: &str,
    ignore_formatted: bool,
) -> anyhow::Result<bool> {
    validate_cluster_id(cluster_id)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create log dir {}", dir.display()))?;
    if let Some(existing) = read_meta_properties(dir)? {
        if ignore_formatted {
            return Ok(false);
        }
        bail!(
            "log directory {} is already formatted (cluster {}, node {}); use --ignore-formatted to skip it",
            dir.display(),
            existing.cluster_id,
            existing.node_id
        );
    }
    let text = format!(
        "#\n#Written by nagare\ncluster.id={cluster_id}\ndirectory.id={}\nnode.id={node_id}\nversion=1\n",
        random_cluster_id()
    );
    let path = dir.join(META_PROPERTIES);
    let tmp = dir.join("meta.properties.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir).and_then(|f| f.sync_all())?;
    tracing::info!(dir = %dir.display(), cluster = %cluster_id, node_id, "formatted log dir");
    Ok(true)
}

/// The file in `metadata.log.dir` holding the feature levels a new cluster starts at, written
/// by `storage format` (Kafka writes them as `bootstrap.checkpoint`, a metadata snapshot).
const BOOTSTRAP_FEATURES: &str = "bootstrap.features";

/// Writes the feature levels `storage format --feature` chose for a new cluster into the
/// metadata log dir (fsynced, atomically); the first controller finalizes them. `features`
/// are checked against the supported ranges first, so a bad level fails the format.
pub fn write_bootstrap_features(dir: &Path, features: &[(String, i16)]) -> anyhow::Result<()> {
    let levels = nagare_metadata::features::bootstrap_levels(features)?;
    let mut text = String::from(
        "#\n#Feature levels a new cluster starts at, written by nagare storage format\n",
    );
    for (name, level) in &levels {
        text.push_str(&format!("{name}={level}\n"));
    }
    let path = dir.join(BOOTSTRAP_FEATURES);
    let tmp = dir.join("bootstrap.features.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir).and_then(|f| f.sync_all())?;
    Ok(())
}

/// The file in `metadata.log.dir` holding the other records a new cluster starts with (the
/// SCRAM credentials of `storage format --add-scram`), one encoded record per line in hex.
const BOOTSTRAP_RECORDS: &str = "bootstrap.records";

/// Writes the records `storage format --add-scram` chose into the metadata log dir
/// (fsynced, atomically); the first controller commits them with the feature levels.
pub fn write_bootstrap_records(
    dir: &Path,
    records: &[nagare_metadata::MetadataRecord],
) -> anyhow::Result<()> {
    let mut text = String::new();
    for r in records {
        for b in r.encode() {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
    }
    let path = dir.join(BOOTSTRAP_RECORDS);
    let tmp = dir.join("bootstrap.records.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir).and_then(|f| f.sync_all())?;
    Ok(())
}

/// The records [`write_bootstrap_records`] wrote (none when the file does not exist).
pub fn read_bootstrap_records(dir: &Path) -> anyhow::Result<Vec<nagare_metadata::MetadataRecord>> {
    let path = dir.join(BOOTSTRAP_RECORDS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let line = line.trim();
            let bytes = (0..line.len())
                .step_by(2)
                .map(|at| {
                    line.get(at..at + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .with_context(|| format!("{} line {}: not hex", path.display(), i + 1))?;
            nagare_metadata::MetadataRecord::decode(&bytes)
                .with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

/// The feature levels a new cluster starts at: those `storage format` wrote into the
/// metadata log dir, or every feature's default when the dir has none (a single-node
/// default that formatted itself, or a dir formatted before features could be chosen).
pub fn read_bootstrap_features(dir: &Path) -> anyhow::Result<BTreeMap<String, i16>> {
    let path = dir.join(BOOTSTRAP_FEATURES);
    if !path.exists() {
        return Ok(nagare_metadata::features::bootstrap_levels(&[])?);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut overrides = Vec::new();
    for (name, value) in crate::config::parse_properties(&text, &path)? {
        let level = value
            .trim()
            .parse::<i16>()
            .with_context(|| format!("{} has an invalid level for {name}", path.display()))?;
        overrides.push((name.to_string(), level));
    }
    nagare_metadata::features::bootstrap_levels(&overrides)
        .with_context(|| format!("{} names an unsupported feature level", path.display()))
}

/// Kafka's cluster ids are 16 bytes in URL-safe base64 without padding (22 characters).
pub fn validate_cluster_id(id: &str) -> anyhow::Result<()> {
    if id.len() != 22
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("cluster id {id:?} is not a base64url-encoded UUID (as from `nagare storage random-uuid`)");
    }
    Ok(())
}

/// Checks a formatted dir, or formats it when this is the single-node default (the only
/// setup that formats itself). Returns the cluster id.
fn format_or_check(
    dir: &Path,
    config: &BrokerConfig,
    cluster_id: Option<&str>,
) -> anyhow::Result<String> {
    let node_id = config.node_id;
    match read_meta_properties(dir)? {
        Some(meta) => {
            if meta.node_id != node_id {
                bail!(
                    "log dir {} belongs to node.id {}, but this node is node.id {node_id}",
                    dir.display(),
                    meta.node_id
                );
            }
            if let Some(c) = cluster_id {
                if c != meta.cluster_id {
                    bail!(
                        "log dir {} belongs to cluster {}, not cluster {c}",
                        dir.display(),
                        meta.cluster_id
                    );
                }
            }
            Ok(meta.cluster_id)
        }
        None if config.is_single_node_default() => {
            let cluster = cluster_id
                .map(str::to_string)
                .unwrap_or_else(random_cluster_id);
            format_dir(dir, node_id, &cluster, false)?;
            Ok(cluster)
        }
        None => bail!(
            "log directory {} is not formatted; format every node of a cluster first with \
             `nagare storage format --cluster-id <ID> --config <server.properties>` \
             (get an id from `nagare storage random-uuid`)",
            dir.display()
        ),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A listener must never be served with less security than its configuration asks for.
/// Every protocol is served on every listener (this node's own connections speak TLS and
/// log in with SASL when the listener they reach asks for it); the SASL settings of the SASL
/// listeners and this node's own logins towards SASL inter-node listeners
/// ([`inter_node_sasl`]) must be valid.
pub fn check_listener_security(config: &BrokerConfig) -> anyhow::Result<()> {
    crate::sasl::SaslSettings::from_config(config).map_err(|e| anyhow::anyhow!(e))?;
    inter_node_sasl(config)?;
    Ok(())
}

/// This node's SASL logins towards the controllers' listener (the first of
/// `controller.listener.names`, with `sasl.mechanism.controller.protocol`) and towards other
/// brokers' inter-broker listener (with `sasl.mechanism.inter.broker.protocol`); `None` where
/// that listener is not a SASL one.
pub fn inter_node_sasl(
    config: &BrokerConfig,
) -> anyhow::Result<(
    Option<nagare_client::SaslCredentials>,
    Option<nagare_client::SaslCredentials>,
)> {
    let controller = match config.controller_listener_names.first() {
        Some(name) => {
            crate::sasl::inter_node_credentials(config, name, crate::sasl::CONTROLLER_MECHANISM_KEY)
                .map_err(|e| anyhow::anyhow!(e))?
        }
        None => None,
    };
    let broker = match config.broker_listener() {
        Some(l) => crate::sasl::inter_node_credentials(
            config,
            &l.name,
            crate::sasl::INTER_BROKER_MECHANISM_KEY,
        )
        .map_err(|e| anyhow::anyhow!(e))?,
        None => None,
    };
    Ok((controller, broker))
}

/// Starts a node and returns once it is serving.
pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningServer> {
    check_listener_security(&config)?;
    let (controller_sasl, inter_broker_sasl) = inter_node_sasl(&config)?;
    let tls_of = tls_listeners(&config)?;
    // The connections this node opens speak the protocol of the listener they reach, with
    // that listener's `ssl.*` settings (Kafka: the inter-broker and controller listeners').
    // Their key and trust store files are watched like the listeners' (see tls::client).
    let controller_client_tls = match config.controller_listener_names.first() {
        Some(name) => crate::tls::client_tls(&config, name)
            .with_context(|| format!("TLS towards the controllers (listener {name})"))?,
        None => None,
    };
    let inter_broker_client_tls = match config.broker_listener() {
        Some(l) => crate::tls::client_tls(&config, &l.name)
            .with_context(|| format!("TLS towards other brokers (listener {})", l.name))?,
        None => None,
    };
    let controller_tls = controller_client_tls
        .as_ref()
        .map(|c| c.options())
        .transpose()
        .context("TLS towards the controllers")?;
    let inter_broker_tls = inter_broker_client_tls
        .as_ref()
        .map(|c| c.options())
        .transpose()
        .context("TLS towards other brokers")?;

    let log_dir = absolute(&config.log_dirs[0]);
    let metadata_dir = absolute(&config.metadata_log_dir);
    let cluster_id = format_or_check(&log_dir, &config, config.cluster_id.as_deref())?;
    if metadata_dir != log_dir {
        format_or_check(&metadata_dir, &config, Some(&cluster_id))?;
    }
    let started = std::time::Instant::now();
    if let Some(n) = crate::limits::raise_open_files_limit() {
        tracing::info!(open_files_limit = n, "file descriptor limit");
    }

    // The metadata quorum first: every node replicates `__cluster_metadata` (voters vote,
    // brokers observe) and applies it to its image.
    // A committed record this binary cannot read stops the process (Kafka's
    // ProcessTerminatingFaultHandler) rather than leaving it with a wrong image.
    let metadata = Arc::new(
        MetadataPublisher::with_notifier()
            .context("cannot start the metadata publisher")?
            .with_fault_handler(Arc::new(ProcessTerminatingFaultHandler)),
    );
    let q = &config.quorum;
    let raft = RaftManager::start(
        RaftManagerConfig {
            node_id: config.node_id,
            cluster_id: cluster_id.clone(),
            voters: q.voters.clone(),
            metadata_log_dir: metadata_dir.clone(),
            election_timeout_ms: q.election_timeout_ms,
            election_backoff_max_ms: q.election_backoff_max_ms,
            fetch_timeout_ms: q.fetch_timeout_ms,
            request_timeout_ms: q.request_timeout_ms,
            retry_backoff_ms: q.retry_backoff_ms,
            max_record_bytes_between_snapshots: q.max_record_bytes_between_snapshots,
            fetch_max_wait_ms: 500,
            tls: controller_tls.clone(),
            sasl: controller_sasl.clone(),
        },
        Arc::new(MetadataListener::new(metadata.clone())),
    )
    .with_context(|| format!("cannot open the metadata log in {}", metadata_dir.display()))?;
    let quorum = Arc::new(KraftQuorum::new(raft.clone()));
    let bootstrap_features = if config.is_controller() {
        read_bootstrap_features(&metadata_dir)?
    } else {
        BTreeMap::new()
    };
    let bootstrap_records = if config.is_controller() {
        read_bootstrap_records(&metadata_dir)?
    } else {
        Vec::new()
    };
    let controller = config.is_controller().then(|| {
        Arc::new(
            Controller::new(
                config.node_id,
                cluster_id.clone(),
                quorum.clone(),
                metadata.clone(),
                q.broker_session_timeout_ms,
            )
            .with_elections(config.elections())
            .with_disconnect_grace(q.broker_disconnect_fence_grace_ms)
            .with_bootstrap_features(bootstrap_features.clone())
            .with_bootstrap_records(bootstrap_records.clone()),
        )
    });

    // The CONTROLLER listener serves the quorum RPCs from the start: the other voters need
    // them to elect a leader, which this node waits for below.
    let broker_cell: Arc<OnceLock<Arc<Broker>>> = Arc::new(OnceLock::new());
    // One metrics hook for every listener, the controller's included (it serves before the
    // broker state exists).
    let request_metrics = Arc::new(crate::request_metrics::RequestMetrics::new());
    let mut tasks = Vec::new();
    for c in controller_client_tls
        .iter()
        .chain(inter_broker_client_tls.iter())
    {
        tasks.push(tokio::spawn(c.clone().watch()));
    }
    // The HTTP listeners serve from here on: live at once, ready once caught up and
    // unfenced (Kubernetes' probes, Prometheus scraping a starting node).
    let mut http_addrs = Vec::new();
    if !config.http_listeners.is_empty() || !config.https_listeners.is_empty() {
        let src = Arc::new(crate::metrics::MetricsSource {
            request_metrics: request_metrics.clone(),
            broker: broker_cell.clone(),
            console: Arc::new(crate::console::Console::new()),
            metrics_token: config.http_metrics_bearer_token.clone(),
        });
        for addr in &config.http_listeners {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (http.listeners)"))?;
            http_addrs.push(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "serving /metrics and /health over HTTP");
            tasks.push(tokio::spawn(crate::metrics::http::serve(l, src.clone())));
        }
        // https:// entries: the `listener.name.http.ssl.*` settings (else the node's
        // `ssl.*`), as a Kafka listener named HTTP would have them.
        if !config.https_listeners.is_empty() {
            let tls = crate::tls::ServerTls::for_listener(&config.props, "http")
                .map_err(|e| anyhow::anyhow!("http.listeners (https): {e}"))?;
            tasks.push(tokio::spawn(tls.clone().watch()));
            for addr in &config.https_listeners {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (http.listeners)"))?;
                http_addrs.push(l.local_addr()?);
                tracing::info!(addr = %l.local_addr()?, "serving /metrics and /health over HTTPS");
                tasks.push(tokio::spawn(crate::metrics::http::serve_tls(
                    l,
                    src.clone(),
                    Some(tls.clone()),
                )));
            }
        }
    }
    let mut controller_addr = None;
    if let Some(l) = config
        .controller_listener()
        .filter(|_| config.is_controller())
    {
        let cl = TcpListener::bind(l.bind_addr())
            .await
            .with_context(|| format!("cannot listen on {} (controller)", l.bind_addr()))?;
        controller_addr = Some(cl.local_addr()?);
        let mut ctx = controller_listener_context(
            &config,
            l.name.clone(),
            raft.clone(),
            broker_cell.clone(),
            request_metrics.clone(),
            metadata.clone(),
        )?;
        if let Some(tls) = tls_of(&l.name) {
            tasks.push(tokio::spawn(tls.clone().watch()));
            ctx = ctx.with_tls(tls);
        }
        tasks.push(tokio::spawn(accept_loop_with(
            ctx,
            cl,
            config.max_connections,
            None,
        )));
    }

    // A broker acts on the metadata only once it has caught up with the quorum: applying a
    // partial image would, for example, delete the logs of topics it has not seen yet.
    let mut waited = Duration::ZERO;
    while !raft.wait_caught_up(Duration::from_secs(10)).await {
        waited += Duration::from_secs(10);
        tracing::warn!(
            waited_s = waited.as_secs(),
            "waiting for the metadata quorum (a leader and the committed metadata)"
        );
        if waited >= Duration::from_secs(300) {
            bail!("the metadata quorum did not become available within 5 minutes");
        }
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        offset = metadata.image().offset,
        "metadata caught up"
    );

    let image = metadata.image();
    let dyn_overrides = {
        let mut m = image.config_overrides(nagare_metadata::records::ConfigResource::Broker, "");
        m.extend(image.config_overrides(
            nagare_metadata::records::ConfigResource::Broker,
            &config.node_id.to_string(),
        ));
        m
    };
    let defaults = config.topic_defaults(&dyn_overrides);
    let img2 = image.clone();
    install_disk_faults(&log_dir)?;
    let opened = std::time::Instant::now();
    let logs =
        tokio::task::spawn_blocking(move || {
            LogManager::open(
                log_dir,
                move |tp| {
                    defaults.log_config(&img2.config_overrides(
                        nagare_metadata::records::ConfigResource::Topic,
                        &tp.topic,
                    ))
                },
                now_ms(),
            )
        })
        .await?
        .context("cannot open the partition logs")?;
    tracing::info!(
        elapsed_ms = opened.elapsed().as_millis() as u64,
        partitions = logs.all().len(),
        "logs loaded"
    );
    let replicas = Arc::new(ReplicaManager::open(config.node_id, logs));
    // Logs of topics the metadata lacks are deleted only once the image has replayed the
    // whole local metadata log (a partial image lacks topics it simply has not reached).
    replicas.delete_strays_from(raft.log_end_offset() - 1);
    let mut broker_state = Broker::new(
        config.clone(),
        cluster_id.clone(),
        controller.clone(),
        metadata.clone(),
        replicas.clone(),
    );
    broker_state.request_metrics = request_metrics.clone();
    if let Some(tls) = inter_broker_tls {
        let _ = broker_state.inter_broker_tls.set(tls);
    }
    if let Some(sasl) = inter_broker_sasl {
        let _ = broker_state.inter_broker_sasl.set(sasl);
    }
    // Tiered storage (KIP-405): the object store is set up before serving, so a bad
    // `rsm.config.*` stops startup naming the key.
    if let Some(rlm) =
        crate::remote_log_manager::RemoteLogManager::from_config(config.node_id, &config.tiered)
            .map_err(|e| anyhow::anyhow!("tiered storage: {e}"))?
    {
        let _ = broker_state.replicas.remote_log.set(rlm.clone());
        let _ = broker_state.remote_log.set(rlm);
    }
    let broker = Arc::new(broker_state);
    let _ = broker.quorum.set(quorum.clone());
    let leader_raft = raft.clone();
    let _ = broker.channel.set(Arc::new(
        ControllerChannel::new(
            q.voters.clone(),
            Arc::new(move || leader_raft.leader().leader_id),
            config.node_id,
            Duration::from_millis(q.request_timeout_ms.max(1000) * 15),
            Duration::from_millis(q.retry_backoff_ms.max(20) * 5),
        )
        .with_local(Arc::downgrade(&broker))
        .with_tls(controller_tls.clone())
        .with_sasl(controller_sasl.clone()),
    ));
    let _ = broker_cell.set(broker.clone());

    // React to every committed image (topic creation, deletion, config changes): first to
    // the current one, as a whole, then to each change, in order on the publisher's thread.
    let weak: Weak<Broker> = Arc::downgrade(&broker);
    metadata.install(Box::new(move |delta, new| {
        if let Some(b) = weak.upgrade() {
            b.on_image(delta, new);
        }
    }));

    if let Some(c) = &controller {
        tasks.push(tokio::spawn({
            // The active controller fences brokers whose heartbeats stopped.
            let controller = c.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = controller.fence_expired_brokers().await {
                        tracing::debug!(error = %e, "fencing check failed");
                    }
                    // Leaderless partitions (unclean elections) and the preferred-leader
                    // rebalance.
                    if let Err(e) = controller.periodic_elections().await {
                        tracing::debug!(error = %e, "election check failed");
                    }
                }
            }
        }));
    }

    let mut lifecycle = None;
    let mut local_addr = controller_addr;
    if config.is_broker() {
        // Register with the controller and wait to be unfenced (caught up with the metadata
        // log) before serving clients, as Kafka's brokers do.
        let lc = Arc::new(BrokerLifecycle::new(&broker));
        let _ = broker.lifecycle.set(lc.clone());
        let mut attempt = 0;
        loop {
            match lc.register(&broker).await {
                Ok(_) => break,
                Err(e) => {
                    attempt += 1;
                    if attempt >= 60 {
                        bail!(
                            "cannot register the broker: {} (error {})",
                            e.message,
                            e.code
                        );
                    }
                    tracing::warn!(code = e.code, error = %e.message, "broker registration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if !lc.wait_unfenced(&broker, Duration::from_secs(30)).await {
            tracing::warn!("the controller has not unfenced this broker yet; serving anyway");
        }
        let listener_cfg = config
            .broker_listener()
            .context("no broker listener configured")?
            .clone();
        let listener = TcpListener::bind(listener_cfg.bind_addr())
            .await
            .with_context(|| format!("cannot listen on {}", listener_cfg.bind_addr()))?;
        local_addr = Some(listener.local_addr()?);
        tasks.push(tokio::spawn(replicas.clone().run_group_commit()));
        if let Some(rlm) = broker.remote_log.get().cloned() {
            let (b1, b2) = (Arc::downgrade(&broker), Arc::downgrade(&broker));
            tasks.push(tokio::spawn(rlm.run(
                replicas.clone(),
                move |topic| {
                    match b1.upgrade() {
                        Some(b) => crate::remote_log_manager::topic_tiered_config(
                            &b.image(),
                            &b.topic_defaults(),
                            topic,
                        ),
                        None => nagare_metadata::topic_config::TopicDefaults::default()
                            .tiered_config(&Default::default()),
                    }
                },
                // While shutting down, nothing counts as deleted.
                move |id| {
                    b2.upgrade()
                        .is_none_or(|b| b.image().topic_by_id(&id).is_some())
                },
            )));
        }
        tasks.push(spawn_periodic(config.log_flush_interval_ms, {
            let r = replicas.clone();
            move || {
                r.flush_all();
                // Checkpoint the recovery points the flush moved (identical files are not
                // rewritten): a restart after a crash then scans only what was written since
                // the last flush, not since the last checkpoint interval.
                if let Err(e) = r.checkpoint() {
                    tracing::error!(error = %e, "cannot write checkpoints");
                }
            }
        }));
        tasks.push(spawn_periodic(config.log_retention_check_interval_ms, {
            let r = replicas.clone();
            // Read at each pass: a dynamic broker config may change it.
            let settings = broker.runtime_settings.clone();
            move || r.enforce_retention(settings.producer_id_expiration_ms())
        }));
        tasks.push(spawn_periodic(
            config.log_flush_offset_checkpoint_interval_ms.max(1000),
            {
                let r = replicas.clone();
                move || {
                    if let Err(e) = r.checkpoint() {
                        tracing::error!(error = %e, "cannot write checkpoints");
                    }
                }
            },
        ));
        // High watermarks survive restarts (`replication-offset-checkpoint`), so an RF>1
        // leader serves consumers at once instead of waiting for its ISR's first fetches.
        tasks.push(spawn_periodic(
            config.replication.hw_checkpoint_interval_ms,
            {
                let r = replicas.clone();
                move || {
                    if let Err(e) = r.checkpoint_high_watermarks() {
                        tracing::error!(error = %e, "cannot write the high-watermark checkpoint");
                    }
                }
            },
        ));
        // The log cleaner (compaction, Kafka's CleanerThread): a pass over the compacted logs,
        // again at once if it cleaned something, else after `log.cleaner.backoff.ms`.
        let cleaner_settings = config.log_cleaner();
        if cleaner_settings.enabled {
            let r = replicas.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let (r, s) = (r.clone(), cleaner_settings.storage.clone());
                    let cleaned = tokio::task::spawn_blocking(move || r.clean_logs(&s, now_ms()))
                        .await
                        .unwrap_or(0);
                    if cleaned == 0 {
                        let backoff = cleaner_settings.backoff_ms.max(1);
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                    }
                }
            }));
        }
        // The group coordinator's timers (session expiry, rebalance timeouts, ...), each
        // fired at its deadline.
        tasks.push(tokio::spawn(
            crate::coordinator_runtime::CoordinatorRuntime::run_timers(Arc::downgrade(
                broker.groups.runtime(),
            )),
        ));
        // The transaction coordinator's timers and its marker sender.
        broker.transactions.start(&broker);
        tasks.push(tokio::spawn(lc.clone().run(broker.clone())));
        // Replication: followers fetch from their leaders; leaders keep their ISRs.
        tasks.push(tokio::spawn(crate::replica_fetcher::run_fetchers(
            broker.clone(),
        )));
        tasks.push(tokio::spawn(crate::replica_fetcher::run_isr_upkeep(
            broker.clone(),
        )));
        let tls = tls_of(&listener_cfg.name);
        if let Some(tls) = &tls {
            tasks.push(tokio::spawn(tls.clone().watch()));
        }
        tasks.push(tokio::spawn(accept_loop(
            broker.clone(),
            listener,
            listener_cfg.name.clone(),
            tls,
        )));
        // Every other client listener (e.g. SASL_PLAINTEXT beside PLAINTEXT) is served too,
        // each connection knowing its listener's name and security protocol.
        for extra in config.listeners.iter().filter(|l| {
            !config.controller_listener_names.contains(&l.name) && l.name != listener_cfg.name
        }) {
            let l = TcpListener::bind(extra.bind_addr())
                .await
                .with_context(|| format!("cannot listen on {}", extra.bind_addr()))?;
            let tls = tls_of(&extra.name);
            if let Some(tls) = &tls {
                tasks.push(tokio::spawn(tls.clone().watch()));
            }
            tasks.push(tokio::spawn(accept_loop(
                broker.clone(),
                l,
                extra.name.clone(),
                tls,
            )));
        }
        lifecycle = Some(lc);
    }

    let local_addr = local_addr.context("no listener")?;
    let advertised = config
        .advertised_broker_listener()
        .filter(|_| config.is_broker())
        .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
        .unwrap_or_else(|| {
            format!(
                "{}://{local_addr}",
                config.controller_listener_names.join(",")
            )
        });
    println!(
        "nagare node {} ({}; cluster {}) listening on {} (advertised {}), data in {}",
        config.node_id,
        config.process_roles.join(","),
        cluster_id,
        local_addr,
        advertised,
        absolute(&config.log_dirs[0]).display()
    );
    Ok(RunningServer {
        broker,
        local_addr,
        http_addrs,
        tasks,
        raft,
        lifecycle,
    })
}

/// The CONTROLLER listener's request handler: the quorum RPCs go to the raft shell (they are
/// served before the rest of the node exists), ApiVersions is answered directly until then,
/// and the controller's other APIs go to the handlers once the node is up. Which API is which
/// comes from the declarations in [`crate::handlers::apis`].
fn controller_listener_context(
    config: &BrokerConfig,
    listener_name: String,
    raft: RaftManager,
    broker: Arc<OnceLock<Arc<Broker>>>,
    metrics: Arc<crate::request_metrics::RequestMetrics>,
    metadata: Arc<MetadataPublisher>,
) -> anyhow::Result<crate::network::ServeContext> {
    use crate::handlers::{apis, Dispatched, Handler};
    let max_request_bytes = config.socket_request_max_bytes;
    let idle = Duration::from_millis(config.connections_max_idle_ms);
    let security_protocol = config.security_protocol(&listener_name);
    // A SASL controller listener authenticates from startup on: the quorum's voters and the
    // brokers log in before their first Vote or Fetch, when the node's state (and its SASL
    // handlers) does not exist yet.
    let sasl =
        Arc::new(crate::sasl::SaslSettings::from_config(config).map_err(|e| anyhow::anyhow!(e))?);
    Ok(crate::network::ServeContext {
        handler: Arc::new(move |frame, conn, received| {
            let raft = raft.clone();
            let broker = broker.clone();
            let sasl = sasl.clone();
            let metadata = metadata.clone();
            Box::pin(async move {
                let peer = conn.peer;
                // Raw tokens after a v0 SaslHandshake are no Kafka requests: never read
                // them as one (a quorum RPC key), before or after the node is up.
                if conn.security_protocol.uses_sasl() && conn.sasl.expects_raw_token() {
                    return crate::sasl::raw_token(&sasl, &metadata.image(), &conn, frame)
                        .await
                        .into();
                }
                let Ok(prefix) = nagare_protocol::frame::peek_header_prefix(&frame) else {
                    return Reply::Close.into();
                };
                let spec = apis::spec_for_code(ListenerKind::Controller, prefix.api_key);
                let sasl_api = spec
                    .filter(|s| matches!(s.key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate));
                if let Some(spec) = sasl_api.filter(|_| broker.get().is_none()) {
                    if !spec.supports(prefix.api_version) {
                        return Reply::Close.into();
                    }
                    let mut body = frame;
                    let Ok((_, header)) = nagare_protocol::frame::decode_request_header(&mut body)
                    else {
                        return Reply::Close.into();
                    };
                    let ctx = crate::context::RequestContext {
                        connection: conn.clone(),
                        request_bytes: body.len(),
                        header,
                        api: spec,
                        received,
                        forwarded: None,
                    };
                    let req = crate::handlers::Request { ctx, body };
                    let reply = if spec.key == ApiKey::SaslHandshake {
                        crate::handlers::sasl::handle_handshake_with(&sasl, req)
                    } else {
                        crate::handlers::sasl::handle_authenticate_with(
                            &sasl,
                            &metadata.image(),
                            req,
                        )
                    };
                    return reply.unwrap_or(Reply::Close).into();
                }
                if let Some(spec) = spec.filter(|s| matches!(s.handler, Handler::Quorum)) {
                    let key = spec.key;
                    if !spec.supports(prefix.api_version) {
                        tracing::warn!(%peer, ?key, version = prefix.api_version, "closing controller connection: unsupported version");
                        return Reply::Close.into();
                    }
                    // On a SASL listener the quorum RPCs, like every API, need an
                    // authenticated session.
                    if !crate::sasl::admit(&conn, key) {
                        return Reply::Close.into();
                    }
                    let mut frame = frame;
                    let Ok((_, header)) = nagare_protocol::frame::decode_request_header(&mut frame)
                    else {
                        return Reply::Close.into();
                    };
                    let version = header.request_api_version;
                    let corr = header.correlation_id;
                    let ctx = crate::context::RequestContext {
                        connection: conn.clone(),
                        header,
                        api: spec,
                        received,
                        request_bytes: frame.len(),
                        forwarded: None,
                    };
                    let timing =
                        crate::request_metrics::RequestTiming::new(&ctx, std::time::Instant::now());
                    // Kafka's ControllerApis: the quorum RPCs need CLUSTER_ACTION on the
                    // cluster, DescribeQuorum DESCRIBE. (Before the node's state exists, at
                    // startup, there is no authorizer yet to ask.)
                    if let Some(b) = broker.get() {
                        let op = if key == ApiKey::DescribeQuorum {
                            crate::authorizer::AclOperation::Describe
                        } else {
                            crate::authorizer::AclOperation::ClusterAction
                        };
                        if !b.authorize(&ctx, op, &crate::authorizer::Resource::cluster()) {
                            let reply = match crate::handlers::error_response::build(
                                &ctx.header,
                                frame,
                                nagare_protocol::error::ResponseError::ClusterAuthorizationFailed,
                            ) {
                                Some(r) => Reply::Now(r),
                                None => Reply::Close,
                            };
                            return Dispatched {
                                reply,
                                timing: Some(timing.local_done()),
                            };
                        }
                    }
                    let reply = match raft.handle(key, version, frame).await {
                        Ok(body) => {
                            Reply::Now(crate::handlers::respond_raw(key, version, corr, &body))
                        }
                        Err(e) => {
                            tracing::warn!(%peer, ?key, error = %e, "closing controller connection: malformed quorum request");
                            Reply::Close
                        }
                    };
                    return Dispatched {
                        reply,
                        timing: Some(timing.local_done()),
                    };
                }
                match broker.get() {
                    Some(b) => crate::handlers::dispatch(b, frame, &conn, received).await,
                    None if spec.is_some_and(|s| s.key == ApiKey::ApiVersions) => {
                        crate::handlers::api_versions::early_response(
                            prefix.api_version,
                            prefix.correlation_id,
                        )
                        .into()
                    }
                    None => Reply::Close.into(),
                }
            })
        }),
        listener_name,
        listener: ListenerKind::Controller,
        security_protocol,
        max_request_bytes,
        idle,
        // `metrics.enabled=false`: no request metrics recorded (BENCHMARKS.md measures the cost).
        metrics: config.metrics_enabled.then_some(metrics),
        tls: None,
    })
}

fn spawn_periodic(
    interval_ms: u64,
    f: impl Fn() + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let f = Arc::new(f);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let f = f.clone();
            let _ = tokio::task::spawn_blocking(move || f()).await;
        }
    })
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    listener_name: String,
    tls: Option<Arc<crate::tls::ServerTls>>,
) {
    let max_connections = broker.config.max_connections;
    let quotas = Some((broker.connection_quotas.clone(), broker.quotas.clone()));
    let mut ctx =
        crate::network::ServeContext::for_broker(broker, listener_name, ListenerKind::Broker);
    if let Some(tls) = tls {
        ctx = ctx.with_tls(tls);
    }
    accept_loop_with(ctx, listener, max_connections, quotas).await
}

/// Loads the TLS configuration of every SSL / SASL_SSL listener (failing startup on the
/// first error, which names the key); returns the lookup by listener name.
fn tls_listeners(
    config: &BrokerConfig,
) -> anyhow::Result<impl Fn(&str) -> Option<Arc<crate::tls::ServerTls>>> {
    let mut by_name = BTreeMap::new();
    for l in &config.listeners {
        let protocol = config.security_protocol(&l.name);
        if protocol.uses_tls() {
            let mut settings = crate::tls::TlsSettings::from_props(&config.props, Some(&l.name))
                .with_context(|| format!("TLS configuration of listener {}", l.name))?;
            // KIP-684: on a SASL_SSL listener clients authenticate with SASL; a broker-wide
            // `ssl.client.auth` does not apply there, only the listener-prefixed key does.
            let prefixed = format!("listener.name.{}.ssl.client.auth", l.name.to_lowercase());
            if protocol == crate::context::SecurityProtocol::SaslSsl
                && !config.props.contains_key(&prefixed)
            {
                settings.client_auth = crate::tls::ClientAuth::None;
            }
            let tls = crate::tls::ServerTls::new(&l.name, settings)
                .with_context(|| format!("TLS configuration of listener {}", l.name))?;
            by_name.insert(l.name.clone(), tls);
        }
    }
    Ok(move |name: &str| by_name.get(name).cloned())
}

/// A client listener's connection limits and the clock they are read against.
type AcceptQuotas = (
    Arc<crate::connection_quotas::ConnectionQuotas>,
    Arc<crate::quotas::QuotaManagers>,
);

async fn accept_loop_with(
    ctx: crate::network::ServeContext,
    listener: TcpListener,
    max_connections: usize,
    quotas: Option<AcceptQuotas>,
) {
    use crate::connection_quotas::Admission;
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let permit = match limit.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let mut guard = None;
                if let Some((conns, clock)) = &quotas {
                    // KIP-612: over the broker's or the listener's connection creation rate,
                    // the listener waits before going on (Kafka's `waitForConnectionSlot`).
                    let wait = conns.record_accept(&ctx.listener_name, clock.now_ms());
                    if wait > 0 {
                        tracing::debug!(listener = %ctx.listener_name, wait_ms = wait, "connection creation rate exceeded: delaying accepts");
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    match conns.admit(peer.ip(), clock.now_ms()) {
                        Admission::Admit(g) => guard = Some(g),
                        Admission::TooMany { max } => {
                            tracing::info!(
                                ip = %peer.ip(),
                                "Rejected connection from {}, address already has the configured maximum of {max} connections.",
                                peer.ip()
                            );
                            continue;
                        }
                        Admission::Throttled { throttle_ms } => {
                            // Kafka's delayed close of a connection over its ip's rate.
                            tracing::debug!(ip = %peer.ip(), throttle_ms, "connection creation rate of the address exceeded: closing after the throttle time");
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(throttle_ms)).await;
                                drop(stream);
                            });
                            continue;
                        }
                    }
                }
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    crate::network::serve_with(ctx, stream, peer).await;
                    drop(guard);
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl RunningServer {
    /// Stops accepting, flushes and closes every log, writes checkpoints and the
    /// clean-shutdown marker.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // Controlled shutdown first, while this broker still serves (clients get
        // NOT_LEADER_OR_FOLLOWER once the move is applied here, in-flight acks=all requests
        // complete): leadership moves to other replicas before this broker stops. Waits at
        // most a session timeout (the controller would fence it by then anyway).
        if let Some(lc) = &self.lifecycle {
            let q = &self.broker.config.quorum;
            let wait = Duration::from_millis(
                (q.broker_session_timeout_ms + q.broker_heartbeat_interval_ms).max(5000),
            );
            lc.controlled_shutdown(&self.broker, wait).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        // Resign the quorum leadership (EndQuorumEpoch) and flush the metadata log.
        self.raft.shutdown().await;
        let broker = self.broker.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            broker.replicas.shutdown().context("log shutdown")?;
            Ok(())
        })
        .await??;
        tracing::info!("clean shutdown complete");
        Ok(())
    }
}

/// Test hook (issue 18): `NAGARE_DISK_FAULTS` routes the log directory's storage I/O through
/// a fault injector (`nagare_storage::io::FaultyIo::from_spec`: `eio-when:<file>` fails every
/// write and fsync while `<file>` exists; `seed=..,write=..,fsync=..` draws random faults).
/// Unset — always in production — storage I/O is plain `std` I/O.
fn install_disk_faults(log_dir: &std::path::Path) -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("NAGARE_DISK_FAULTS") else {
        return Ok(());
    };
    let faults =
        nagare_storage::io::FaultyIo::from_spec(&spec, log_dir).map_err(anyhow::Error::msg)?;
    tracing::warn!(%spec, dir = %log_dir.display(), "NAGARE_DISK_FAULTS: injecting disk faults into the log directory");
    // Installed for the life of the process.
    std::mem::forget(nagare_storage::io::install(log_dir, Arc::new(faults)));
    Ok(())
}

impl RunningServer {
    /// Resolves once the log directory went offline (a write or fsync failed in one of its
    /// logs). Polled: the flag is one atomic load.
    pub async fn log_dir_failure(&self) {
        loop {
            if self.broker.replicas.log_dir_offline() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops after the log directory failed. Kafka's `LogManager.handleLogDirFailure` halts
    /// the broker once no log directory is left online — Nagare has one, so a failed one
    /// always stops it — and the controller moves leadership away when the broker's session
    /// expires. Nagare first runs the controlled shutdown (BrokerHeartbeat `want_shut_down`,
    /// as on SIGTERM): the controller moves leadership and shrinks the ISRs at once instead
    /// of after `broker.session.timeout.ms`, while this broker answers KAFKA_STORAGE_ERROR
    /// for all its partitions (clients refresh metadata and find the new leaders). Nothing
    /// is written to the failed directory afterwards: no flush, no checkpoints, no
    /// clean-shutdown marker, so the next start recovers the logs from their recovery points
    /// (KIP-858's per-directory reporting matters only with several log directories).
    pub async fn shutdown_after_log_dir_failure(self) {
        tracing::error!(
            failed_logs = ?self.broker.replicas.failed_logs(),
            "the log directory failed: moving leadership away, then stopping without writing to it"
        );
        if let Some(lc) = &self.lifecycle {
            let q = &self.broker.config.quorum;
            let wait = Duration::from_millis(
                (q.broker_session_timeout_ms + q.broker_heartbeat_interval_ms).max(5000),
            );
            lc.controlled_shutdown(&self.broker, wait).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        self.raft.shutdown().await;
    }
}

/// Runs a node until `stop` resolves, then shuts it down cleanly. If the log directory fails
/// first, the node hands its leadership over and stops with an error (exit status 1).
pub async fn run(config: BrokerConfig, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let server = start(config).await?;
    let log_dir_failed = tokio::select! {
        () = stop => false,
        () = server.log_dir_failure() => true,
    };
    if log_dir_failed {
        let dir = format!("{:?}", server.broker.config.log_dirs);
        server.shutdown_after_log_dir_failure().await;
        anyhow::bail!("stopped because the log directory {dir} failed (KAFKA_STORAGE_ERROR)");
    }
    tracing::info!("shutting down");
    server.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_looks_like_kafkas() {
        let id = random_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(base64url(b"\xff\xff\xff"), "____");
    }

    /// `storage format --feature` levels round-trip through the metadata log dir; a dir
    /// without them bootstraps the defaults; a bad level is refused before writing.
    #[test]
    fn bootstrap_features_are_written_at_format_time() {
        use nagare_metadata::features::{TRANSACTION_VERSION, TRANSACTION_VERSION_DEFAULT};
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = read_bootstrap_features(dir.path()).expect("defaults");
        assert_eq!(
            defaults.get(TRANSACTION_VERSION),
            Some(&TRANSACTION_VERSION_DEFAULT)
        );
        write_bootstrap_features(dir.path(), &[(TRANSACTION_VERSION.into(), 2)]).expect("write");
        let read = read_bootstrap_features(dir.path()).expect("read");
        assert_eq!(read.get(TRANSACTION_VERSION), Some(&2));
        assert_eq!(
            read.get(nagare_metadata::metadata_version::FEATURE_NAME),
            Some(&nagare_metadata::metadata_version::LATEST_LEVEL)
        );
        let other = tempfile::tempdir().expect("tempdir");
        assert!(
            write_bootstrap_features(other.path(), &[(TRANSACTION_VERSION.into(), 3)]).is_err()
        );
        assert!(!other.path().join(BOOTSTRAP_FEATURES).exists());
        std::fs::write(
            dir.path().join(BOOTSTRAP_FEATURES),
            "transaction.version=x\n",
        )
        .expect("write");
        assert!(read_bootstrap_features(dir.path()).is_err());
    }

    #[test]
    fn format_then_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (single, _) = BrokerConfig::load(None, &[]).expect("config");
        let a = format_or_check(dir.path(), &single, None).expect("format");
        let b = format_or_check(dir.path(), &single, None).expect("check");
        assert_eq!(a, b);
        let (other, _) = BrokerConfig::load(None, &["node.id=2".into()]).expect("config");
        assert!(format_or_check(dir.path(), &other, None).is_err());
        // A node of a multi-node quorum never formats itself.
        let fresh = tempfile::tempdir().expect("tempdir");
        let (multi, _) = BrokerConfig::load(
            None,
            &[
                "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
                    .into(),
            ],
        )
        .expect("config");
        let e = format_or_check(fresh.path(), &multi, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nagare storage format"), "{e}");
        assert!(format_dir(fresh.path(), 1, &a, false).expect("format"));
        assert!(format_dir(fresh.path(), 1, &a, false).is_err());
        assert!(!format_dir(fresh.path(), 1, &a, true).expect("ignore"));
        assert_eq!(
            format_or_check(fresh.path(), &multi, None).expect("check"),
            a
        );
        assert!(validate_cluster_id("short").is_err());
    }
}
