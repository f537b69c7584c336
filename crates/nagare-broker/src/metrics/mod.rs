//! Prometheus metrics and health checks over HTTP (`http.listeners`).
//!
//! Every node serves `GET /metrics` in the Prometheus text format with the names the JMX
//! exporter gives Kafka's MBeans (so existing Kafka dashboards work; the table is in
//! `docs/METRICS.md`), `GET /health/live` (200 while the process runs) and
//! `GET /health/ready` (200 once the node has caught up with the metadata log and, on a
//! broker, the controller has unfenced it; 503 before). The sources are the request metrics
//! hook ([`crate::request_metrics`]), the per-topic counters ([`topic_stats`]), the metadata
//! image, the replica manager and `/proc/self`; a scrape reads them, nothing is kept per
//! scrape.

pub mod http;
pub mod process;
pub mod prometheus;
#[cfg(test)]
mod tests;
pub mod topic_stats;

use std::sync::{Arc, OnceLock};

use crate::context::ListenerKind;
use crate::request_metrics::{Histogram, RequestMetrics, LATENCY_BUCKETS_US};
use crate::Broker;
use prometheus::{Exposition, Kind};

/// What the HTTP listener reports on: it serves from startup, before the broker state
/// exists (the node is then live but not ready).
pub struct MetricsSource {
    /// The request metrics hook, shared with every listener.
    pub request_metrics: Arc<RequestMetrics>,
    /// The broker state, set once the node has caught up with the metadata log.
    pub broker: Arc<OnceLock<Arc<Broker>>>,
    /// The web console's state (its login sessions), served on the same listener.
    pub console: Arc<crate::console::Console>,
    /// `http.metrics.bearer.token`: when set, `/metrics` answers only requests carrying
    /// `Authorization: Bearer <token>` (the health checks stay open for probes).
    pub metrics_token: Option<String>,
}

impl MetricsSource {
    /// Why the node is not ready, or `None` when it is: caught up with the metadata log
    /// (the broker state exists only after that) and, with the broker role, unfenced in
    /// the image this node applied (Kafka's broker state RUNNING).
    pub fn not_ready(&self) -> Option<&'static str> {
        let Some(b) = self.broker.get() else {
            return Some("catching up with the metadata log");
        };
        if b.config.is_broker() {
            let image = b.image();
            match image.brokers.get(&b.config.node_id) {
                None => return Some("not registered with the controller yet"),
                Some(r) if r.fenced => return Some("fenced by the controller"),
                Some(_) => {}
            }
        }
        None
    }
}

/// The request metrics' latency histograms, as `kafka_network_requestmetrics_<name>`.
const TIMES: [(&str, &str); 7] = [
    ("totaltimems", "Time from a request's receipt to its response's last byte written, in ms."),
    ("requestqueuetimems", "Time a request waited before its handler started, in ms."),
    ("localtimems", "Time the handler worked on a request, in ms."),
    ("remotetimems", "Time a request waited for others (acks=all replication, a delayed fetch, a rebalance), in ms."),
    ("responsequeuetimems", "Time a ready response waited for the connection's writer, in ms."),
    ("responsesendtimems", "Time writing a response to the socket, in ms."),
    ("throttletimems", "Time a client quota kept the connection muted after the response, in ms."),
];

fn pick(m: &crate::request_metrics::ApiMetrics, i: usize) -> &Histogram {
    match i {
        0 => &m.total,
        1 => &m.request_queue,
        2 => &m.local,
        3 => &m.remote,
        4 => &m.response_queue,
        5 => &m.response_send,
        _ => &m.throttle,
    }
}

fn listener_label(l: ListenerKind) -> &'static str {
    match l {
        ListenerKind::Broker => "broker",
        ListenerKind::Controller => "controller",
    }
}

/// The latency buckets' upper bounds in milliseconds.
fn bounds_ms() -> Vec<f64> {
    LATENCY_BUCKETS_US
        .iter()
        .map(|us| *us as f64 / 1000.0)
        .collect()
}

/// One partition's consumer lag for a group coordinated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// Group id.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset.
    pub committed: i64,
    /// The partition's high watermark as this broker's replica knows it.
    pub end: i64,
}

/// The lag of every committed offset of the groups coordinated here whose partition has a
/// replica on this broker: high watermark − committed offset (kafka_exporter's
/// `kafka_consumergroup_lag`; what `kafka-consumer-groups --describe` shows as LAG).
/// Partitions with no replica here are left out (their end offset would need a ListOffsets
/// round trip to their leader, not made during a scrape).
pub async fn group_lag(b: &Broker) -> Vec<GroupLag> {
    let offsets = b
        .groups
        .runtime()
        .read_loaded(|shard| shard.committed_offsets())
        .await;
    let mut out: Vec<GroupLag> = offsets
        .into_iter()
        .flatten()
        .filter_map(|(group, topic, partition, committed)| {
            let p = b.replicas.partition(&topic, partition)?;
            Some(GroupLag {
                end: p.high_watermark(),
                group,
                topic,
                partition,
                committed,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    out
}

/// Renders every metric of the node in the Prometheus text format (reading the group
/// coordinator's shards, hence async).
pub async fn render(src: &MetricsSource) -> String {
    let lag = match src.broker.get() {
        Some(b) => group_lag(b).await,
        None => Vec::new(),
    };
    render_with(src, &lag)
}

/// [`render`] with the consumer lag already gathered.
pub fn render_with(src: &MetricsSource, lag: &[GroupLag]) -> String {
    let mut e = Exposition::new();
    let requests = src.request_metrics.snapshot();

    e.family(
        "kafka_network_requestmetrics_requests_total",
        Kind::Counter,
        "Requests handled, per API (request), version and listener role.",
    );
    for (key, l, m) in &requests {
        let name = key.as_str();
        for (v, n) in m.requests_by_version.iter().enumerate() {
            if *n > 0 {
                let v = v.to_string();
                e.sample(
                    "kafka_network_requestmetrics_requests_total",
                    &[
                        ("request", name),
                        ("version", &v),
                        ("listener", listener_label(*l)),
                    ],
                    *n as f64,
                );
            }
        }
    }
    e.family(
        "kafka_network_requestmetrics_errors_total",
        Kind::Counter,
        "Error codes in responses, per API (request) and error (Kafka's name, NONE included; per partition or topic where the API reports errors per item), as RequestMetrics ErrorsPerSec.",
    );
    for (key, l, m) in &requests {
        for (code, n) in &m.errors {
            let error = crate::response_errors::error_name(*code);
            e.sample(
                "kafka_network_requestmetrics_errors_total",
                &[
                    ("request", key.as_str()),
                    ("error", &error),
                    ("listener", listener_label(*l)),
                ],
                *n as f64,
            );
        }
    }
    for (family, help, pick_bytes) in [
        (
            "kafka_network_requestmetrics_requestbytes_total",
            "Request bytes received (frames without the size prefix), per API.",
            true,
        ),
        (
            "kafka_network_requestmetrics_responsebytes_total",
            "Response bytes written (with the size prefix), per API.",
            false,
        ),
    ] {
        e.family(family, Kind::Counter, help);
        for (key, l, m) in &requests {
            let name = key.as_str();
            let v = if pick_bytes { m.bytes_in } else { m.bytes_out };
            e.sample(
                family,
                &[("request", name), ("listener", listener_label(*l))],
                v as f64,
            );
        }
    }
    let bounds_ms = bounds_ms();
    for (i, (suffix, help)) in TIMES.iter().enumerate() {
        let family = format!("kafka_network_requestmetrics_{suffix}");
        e.family(&family, Kind::Histogram, help);
        for (key, l, m) in &requests {
            let name = key.as_str();
            let h = pick(m, i);
            e.histogram(
                &family,
                &[("request", name), ("listener", listener_label(*l))],
                &bounds_ms,
                &h.buckets,
                h.sum_us as f64 / 1000.0,
                h.count,
            );
        }
    }

    e.family(
        "kafka_server_socket_server_metrics_connection_count",
        Kind::Gauge,
        "Open connections per listener.",
    );
    for (listener, n) in src.request_metrics.connections() {
        e.sample(
            "kafka_server_socket_server_metrics_connection_count",
            &[("listener", &listener)],
            n as f64,
        );
    }

    let ready = src.not_ready().is_none();
    e.family(
        "nagare_ready",
        Kind::Gauge,
        "1 when /health/ready answers 200 (caught up with the metadata, unfenced).",
    );
    e.sample("nagare_ready", &[], if ready { 1.0 } else { 0.0 });

    if let Some(b) = src.broker.get() {
        render_broker(&mut e, b);
        let t = &b.client_telemetry;
        t.render(&mut e, t.now_ms());
    }

    e.family(
        "kafka_consumergroup_current_offset",
        Kind::Gauge,
        "A group's committed offset per partition (on the group's coordinator).",
    );
    for l in lag {
        let p = l.partition.to_string();
        e.sample(
            "kafka_consumergroup_current_offset",
            &[
                ("consumergroup", &l.group),
                ("topic", &l.topic),
                ("partition", &p),
            ],
            l.committed as f64,
        );
    }
    e.family(
        "kafka_consumergroup_lag",
        Kind::Gauge,
        "High watermark minus the group's committed offset, per partition (on the group's coordinator, for partitions with a replica there).",
    );
    for l in lag {
        let p = l.partition.to_string();
        e.sample(
            "kafka_consumergroup_lag",
            &[
                ("consumergroup", &l.group),
                ("topic", &l.topic),
                ("partition", &p),
            ],
            (l.end - l.committed).max(0) as f64,
        );
    }

    if let Some(p) = process::read() {
        e.family(
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time spent, in seconds.",
        );
        e.sample("process_cpu_seconds_total", &[], p.cpu_seconds);
        e.family(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size, in bytes.",
        );
        e.sample(
            "process_resident_memory_bytes",
            &[],
            p.resident_bytes as f64,
        );
        e.family("process_open_fds", Kind::Gauge, "Open file descriptors.");
        e.sample("process_open_fds", &[], p.open_fds as f64);
        if let Some(max) = p.max_fds {
            e.family(
                "process_max_fds",
                Kind::Gauge,
                "The limit on open file descriptors.",
            );
            e.sample("process_max_fds", &[], max as f64);
        }
    }
    e.finish()
}

/// The broker's topic, partition, controller and metadata metrics.
fn render_broker(e: &mut Exposition, b: &Broker) {
    let topics = b.replicas.topic_stats.snapshot();
    type Field = fn(&topic_stats::TopicSnapshot) -> u64;
    let per_topic: [(&str, &str, Field); 6] = [
        ("kafka_server_brokertopicmetrics_bytesin_total", "Record-batch bytes appended by clients' Produce requests on partitions led here (Kafka's BytesInPerSec).", |s| s.bytes_in),
        ("kafka_server_brokertopicmetrics_messagesin_total", "Records appended by clients' Produce requests (MessagesInPerSec).", |s| s.messages_in),
        ("kafka_server_brokertopicmetrics_bytesout_total", "Record bytes sent to consumers (BytesOutPerSec).", |s| s.bytes_out),
        ("kafka_server_brokertopicmetrics_replicationbytesin_total", "Record bytes appended as a follower (ReplicationBytesInPerSec).", |s| s.replication_bytes_in),
        ("kafka_server_brokertopicmetrics_replicationbytesout_total", "Record bytes sent to followers (ReplicationBytesOutPerSec).", |s| s.replication_bytes_out),
        ("kafka_server_brokertopicmetrics_failedproducerequests_total", "Partitions of Produce requests whose append failed (FailedProduceRequestsPerSec).", |s| s.failed_produce),
    ];
    for (family, help, field) in per_topic {
        e.family(family, Kind::Counter, help);
        for (topic, s) in &topics {
            e.sample(family, &[("topic", topic)], field(s) as f64);
        }
    }

    // Partition states from the applied image: Kafka's ReplicaManager gauges count the
    // partitions this broker leads; the controller's count the whole cluster.
    let image = b.image();
    let me = b.config.node_id;
    let (mut led, mut hosted, mut urp, mut under_min, mut offline, mut global) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for t in image.topics_by_id.values() {
        for (p, reg) in &t.partitions {
            global += 1;
            if reg.leader < 0 {
                offline += 1;
            }
            if reg.replicas.contains(&me) {
                hosted += 1;
            }
            if reg.leader != me {
                continue;
            }
            led += 1;
            if reg.isr.len() < reg.replicas.len() {
                urp += 1;
            }
            let min_isr = b
                .replicas
                .partition(&t.name, *p)
                .map(|p| p.min_isr.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(1);
            if (reg.isr.len() as i32) < min_isr {
                under_min += 1;
            }
        }
    }
    let gauges: [(&str, &str, u64); 4] = [
        (
            "kafka_server_replicamanager_partitioncount",
            "Partitions with a replica on this broker.",
            hosted,
        ),
        (
            "kafka_server_replicamanager_leadercount",
            "Partitions this broker leads.",
            led,
        ),
        (
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions led here whose ISR is smaller than their replica set.",
            urp,
        ),
        (
            "kafka_server_replicamanager_underminisrpartitioncount",
            "Partitions led here whose ISR is below min.insync.replicas.",
            under_min,
        ),
    ];
    for (family, help, v) in gauges {
        e.family(family, Kind::Gauge, help);
        e.sample(family, &[], v as f64);
    }

    for (family, help, v) in [
        (
            "kafka_server_replicamanager_isrshrinks_total",
            "ISR shrinks the controller accepted for partitions led here (IsrShrinksPerSec).",
            &b.replicas.isr_shrinks,
        ),
        (
            "kafka_server_replicamanager_isrexpands_total",
            "ISR expansions the controller accepted for partitions led here (IsrExpandsPerSec).",
            &b.replicas.isr_expands,
        ),
    ] {
        e.family(family, Kind::Counter, help);
        e.sample(
            family,
            &[],
            v.load(std::sync::atomic::Ordering::Relaxed) as f64,
        );
    }
    // Tiered storage (KIP-405), when enabled: Kafka's remote-storage BrokerTopicMetrics,
    // broker-wide.
    if let Some(rlm) = b.remote_log.get() {
        let m = &rlm.metrics;
        let load =
            |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
        for (family, kind, help, v) in [
            ("kafka_server_brokertopicmetrics_remotecopybytes_total", Kind::Counter, "Bytes of segments and companions uploaded to remote storage (RemoteCopyBytesPerSec).", load(&m.copy_bytes)),
            ("kafka_server_brokertopicmetrics_remotecopyrequests_total", Kind::Counter, "Segments uploaded (RemoteCopyRequestsPerSec).", load(&m.copy_requests)),
            ("kafka_server_brokertopicmetrics_failedremotecopyrequests_total", Kind::Counter, "Failed tiering passes of a partition (upload, delete or manifest write), retried with backoff (FailedRemoteCopyRequestsPerSec).", load(&m.copy_failed)),
            ("kafka_server_brokertopicmetrics_remotefetchbytes_total", Kind::Counter, "Bytes read from remote storage for consumers (RemoteFetchBytesPerSec).", load(&m.fetch_bytes)),
            ("kafka_server_brokertopicmetrics_remotefetchrequests_total", Kind::Counter, "Remote reads (RemoteFetchRequestsPerSec).", load(&m.fetch_requests)),
            ("kafka_server_brokertopicmetrics_failedremotefetchrequests_total", Kind::Counter, "Failed remote reads (FailedRemoteFetchRequestsPerSec).", load(&m.fetch_failed)),
            ("kafka_server_brokertopicmetrics_remotedeleterequests_total", Kind::Counter, "Remote segments deleted by retention, cleanup or topic deletion (RemoteDeleteRequestsPerSec).", load(&m.delete_requests)),
            ("kafka_server_brokertopicmetrics_remotecopylagbytes", Kind::Gauge, "Bytes of rolled segments below the upload bound not yet uploaded, partitions led here (RemoteCopyLagBytes).", load(&m.copy_lag_bytes)),
            ("kafka_server_brokertopicmetrics_remotelogsizebytes", Kind::Gauge, "Bytes in remote storage of partitions led here (RemoteLogSizeBytes).", load(&m.remote_log_size_bytes)),
        ] {
            e.family(family, kind, help);
            e.sample(family, &[], v);
        }
    }
    e.family(
        "kafka_server_delayedoperationpurgatory_purgatorysize",
        Kind::Gauge,
        "Delayed operations waiting, counted once per partition they watch (delayed fetches only so far).",
    );
    e.sample(
        "kafka_server_delayedoperationpurgatory_purgatorysize",
        &[("delayedOperation", "Fetch")],
        b.replicas.delayed_fetch_watchers() as f64,
    );
    let flush = b.replicas.flush_latency.load();
    e.family(
        "kafka_log_logflushstats_logflushrateandtimems",
        Kind::Histogram,
        "Time of each log fsync (acks=all group commit and the periodic flush), in ms.",
    );
    e.histogram(
        "kafka_log_logflushstats_logflushrateandtimems",
        &[],
        &bounds_ms(),
        &flush.buckets,
        flush.sum_us as f64 / 1000.0,
        flush.count,
    );

    // Kafka reports the controller gauges on every controller, non-zero only on the active
    // one, so summing over the cluster gives the cluster's value.
    let active = b.controller.as_ref().is_some_and(|c| c.is_active());
    let a = |v: u64| if active { v as f64 } else { 0.0 };
    let controller: [(&str, &str, f64); 4] = [
        (
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the active controller, else 0.",
            if active { 1.0 } else { 0.0 },
        ),
        (
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader (on the active controller).",
            a(offline),
        ),
        (
            "kafka_controller_kafkacontroller_globalpartitioncount",
            "Partitions in the cluster (on the active controller).",
            a(global),
        ),
        (
            "kafka_controller_kafkacontroller_globaltopiccount",
            "Topics in the cluster (on the active controller).",
            a(image.topics_by_id.len() as u64),
        ),
    ];
    for (family, help, v) in controller {
        e.family(family, Kind::Gauge, help);
        e.sample(family, &[], v);
    }
    // The metadata quorum as this node sees it (Kafka's `raft-metrics`), and how far the
    // applied image trails the committed metadata log.
    if let Some(q) = b.quorum.get() {
        let info = q.quorum_info();
        let raft: [(&str, &str, f64); 3] = [
            (
                "kafka_server_raft_metrics_current_leader",
                "The metadata quorum's leader as this node knows it (-1: none).",
                info.leader_id.map_or(-1.0, f64::from),
            ),
            (
                "kafka_server_raft_metrics_current_epoch",
                "The metadata quorum's epoch.",
                f64::from(info.epoch),
            ),
            (
                "kafka_server_raft_metrics_high_watermark",
                "The metadata log's high watermark (committed offset + 1).",
                info.high_watermark as f64,
            ),
        ];
        for (family, help, v) in raft {
            e.family(family, Kind::Gauge, help);
            e.sample(family, &[], v);
        }
        e.family(
            "nagare_metadata_apply_lag_records",
            Kind::Gauge,
            "Committed metadata records this node has not applied yet (high watermark - 1 - last applied offset).",
        );
        e.sample(
            "nagare_metadata_apply_lag_records",
            &[],
            (info.high_watermark - 1 - image.offset).max(0) as f64,
        );
    }
    e.family(
        "kafka_server_broker_metadata_metrics_last_applied_record_offset",
        Kind::Gauge,
        "Offset of the last metadata record this node applied.",
    );
    e.sample(
        "kafka_server_broker_metadata_metrics_last_applied_record_offset",
        &[],
        image.offset as f64,
    );
}
