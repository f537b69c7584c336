//! KIP-714 client telemetry, as Kafka's `ClientMetricsManager`: clients ask which metrics to
//! push (GetTelemetrySubscriptions, key 71) and push them (PushTelemetry, key 72) as OTLP
//! `MetricsData`; Nagare's receiver keeps each client's latest values and re-exports them on
//! `/metrics`, labelled with the client instance id, client id, software and address.
//!
//! Subscriptions are CLIENT_METRICS config resources in the metadata image
//! ([`nagare_controller::client_metrics`]). Each client instance (a UUID the broker assigns
//! on its first GetTelemetrySubscriptions) is cached here with the subscription id and push
//! interval it was given and the times of its last requests, so that a client asking or
//! pushing faster than its interval gets THROTTLING_QUOTA_EXCEEDED, a push with a stale
//! subscription id (the subscriptions changed since) UNKNOWN_SUBSCRIPTION_ID, and a payload
//! above `telemetry.max.bytes` TELEMETRY_TOO_LARGE. Instances idle for three intervals (at
//! least a minute) are forgotten with their metrics, as Kafka's cache expires them.
//!
//! Everything here takes the time as an argument (ms on a monotonic clock), so the rules are
//! tested deterministically.

pub mod otlp;
#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::Instant;

use nagare_controller::client_metrics::{self, ClientSelector, Requested, Subscription};
use nagare_metadata::records::ConfigResource;
use nagare_metadata::MetadataImage;
use nagare_protocol::error::ResponseError;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::metrics::prometheus::{Exposition, Kind};
use otlp::MetricKind;

/// Kafka's `telemetry.max.bytes` default: 1 MiB.
pub const DEFAULT_MAX_BYTES: i32 = 1024 * 1024;
/// Kafka's least cache expiry of a client instance, ms.
pub const MIN_EXPIRY_MS: u64 = 60_000;
/// Client instances kept at most (Kafka's `CLIENT_INSTANCE_CACHE_SIZE`); the least recently
/// seen is dropped beyond.
pub const MAX_INSTANCES: usize = 16_384;
/// Series kept per client instance; points beyond are dropped (with a log line), so a client
/// cannot grow the broker's memory without bound.
pub const MAX_SERIES_PER_CLIENT: usize = 4_096;
/// Largest decompressed payload accepted, whatever `telemetry.max.bytes` says of the
/// compressed one.
pub const MAX_DECOMPRESSED_BYTES: u64 = 32 * 1024 * 1024;
/// Compression types accepted for pushes, in Kafka's order of preference (zstd, lz4, gzip;
/// snappy is left out: Java wraps it in xerial's stream framing).
pub const ACCEPTED_COMPRESSION: [i8; 3] = [4, 3, 1];

/// What GetTelemetrySubscriptions answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionAnswer {
    /// Error code (0, or THROTTLING_QUOTA_EXCEEDED).
    pub error: i16,
    /// The client instance id (assigned when the request had the zero id).
    pub client_instance_id: Uuid,
    /// Identifies the subscription set given to this client.
    pub subscription_id: i32,
    /// Metric prefixes (`[""]` for all, empty for none).
    pub requested_metrics: Vec<String>,
    /// Push interval, ms.
    pub push_interval_ms: i32,
}

/// A PushTelemetry request, as the manager needs it.
#[derive(Debug, Clone)]
pub struct Push<'a> {
    /// Client instance id.
    pub client_instance_id: Uuid,
    /// Subscription id the client was given.
    pub subscription_id: i32,
    /// The client is closing; this is its last push.
    pub terminating: bool,
    /// Compression type of `metrics`.
    pub compression_type: i8,
    /// The (compressed) OTLP `MetricsData`.
    pub metrics: &'a [u8],
}

/// The series of one metric point: the OTLP name and its attributes.
type SeriesKey = (String, Vec<(String, String)>);

/// One cached client instance (Kafka's `ClientMetricsInstance`).
#[derive(Debug)]
struct Instance {
    selector: ClientSelector,
    /// The subscription set fingerprint the instance was built from.
    fingerprint: u32,
    requested: Requested,
    subscription_id: i32,
    last_get_ms: Option<u64>,
    last_push_ms: Option<u64>,
    /// The error of the last request: a GetTelemetrySubscriptions after
    /// UNKNOWN_SUBSCRIPTION_ID or UNSUPPORTED_COMPRESSION_TYPE is not throttled.
    last_error: i16,
    terminating: bool,
    last_seen_ms: u64,
    series: BTreeMap<SeriesKey, (MetricKind, f64)>,
}

impl Instance {
    fn expiry_ms(&self) -> u64 {
        MIN_EXPIRY_MS.max(3 * self.requested.interval_ms.max(0) as u64)
    }
}

/// The subscriptions of one image, parsed once.
struct Subscriptions {
    image_offset: i64,
    fingerprint: u32,
    subs: Vec<Subscription>,
}

#[derive(Default)]
struct State {
    instances: HashMap<Uuid, Instance>,
    subscriptions: Option<Subscriptions>,
}

/// The broker's client telemetry receiver.
pub struct ClientTelemetry {
    /// `telemetry.max.bytes`.
    max_bytes: i32,
    start: Instant,
    state: Mutex<State>,
}

/// A fingerprint of the image's CLIENT_METRICS configs: a change of any of them makes every
/// cached instance re-evaluate its subscriptions (Kafka's subscription update version).
fn fingerprint(image: &MetadataImage) -> u32 {
    let mut entries: Vec<(&String, &BTreeMap<String, String>)> = image
        .configs
        .iter()
        .filter(|((r, _), _)| *r == ConfigResource::ClientMetrics)
        .map(|((_, n), c)| (n, c))
        .collect();
    entries.sort();
    let mut text = String::new();
    for (n, c) in entries {
        text.push_str(n);
        for (k, v) in c {
            text.push('\0');
            text.push_str(k);
            text.push('=');
            text.push_str(v);
        }
        text.push('\n');
    }
    crc32c::crc32c(text.as_bytes())
}

/// Kafka's subscription id: a CRC of the metrics and interval, plus the instance id's hash,
/// so different clients with the same subscription get different ids.
fn subscription_id(requested: &Requested, id: Uuid) -> i32 {
    let text = format!("{:?}{}", requested.metrics, requested.interval_ms);
    let crc = crc32c::crc32c(text.as_bytes());
    let (hi, lo) = id.as_u64_pair();
    let h = (hi ^ lo) as u32 ^ ((hi ^ lo) >> 32) as u32;
    crc.wrapping_add(h) as i32
}

/// Decompresses a pushed payload (bounded by [`MAX_DECOMPRESSED_BYTES`]).
fn decompress(codec: i8, data: &[u8]) -> Result<Vec<u8>, String> {
    fn read_all(mut r: impl Read) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        r.by_ref()
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(format!(
                "decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"
            ));
        }
        Ok(out)
    }
    match codec {
        0 => Ok(data.to_vec()),
        1 => read_all(flate2::read::GzDecoder::new(data)),
        3 => read_all(lz4::Decoder::new(data).map_err(|e| e.to_string())?),
        4 => read_all(zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?),
        c => Err(format!("compression type {c} not accepted")),
    }
}

impl ClientTelemetry {
    /// A receiver accepting pushes up to `max_bytes` (`telemetry.max.bytes`).
    pub fn new(max_bytes: i32) -> Self {
        ClientTelemetry {
            max_bytes,
            start: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// `telemetry.max.bytes`.
    pub fn max_bytes(&self) -> i32 {
        self.max_bytes
    }

    /// Monotonic ms since the receiver was built (the clock of the other methods).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Client instances cached.
    pub fn instance_count(&self) -> usize {
        self.state.lock().instances.len()
    }

    /// The instance `id`, created (or rebuilt when the subscriptions changed since it was
    /// built) from `selector` and the image's subscriptions.
    fn instance<'s>(
        state: &'s mut State,
        image: &MetadataImage,
        id: Uuid,
        selector: ClientSelector,
        now: u64,
    ) -> &'s mut Instance {
        if state
            .subscriptions
            .as_ref()
            .is_none_or(|s| s.image_offset != image.offset)
        {
            let fp = fingerprint(image);
            let unchanged = state
                .subscriptions
                .as_ref()
                .is_some_and(|s| s.fingerprint == fp);
            if unchanged {
                if let Some(s) = state.subscriptions.as_mut() {
                    s.image_offset = image.offset;
                }
            } else {
                state.subscriptions = Some(Subscriptions {
                    image_offset: image.offset,
                    fingerprint: fp,
                    subs: client_metrics::subscriptions(image),
                });
            }
        }
        let (fp, subs): (u32, &[Subscription]) = match &state.subscriptions {
            Some(s) => (s.fingerprint, &s.subs),
            None => (0, &[]),
        };
        let build = |selector: ClientSelector| {
            let requested = client_metrics::requested(subs, &selector);
            Instance {
                subscription_id: subscription_id(&requested, id),
                requested,
                selector,
                fingerprint: fp,
                last_get_ms: None,
                last_push_ms: None,
                last_error: 0,
                terminating: false,
                last_seen_ms: now,
                series: BTreeMap::new(),
            }
        };
        if !state.instances.contains_key(&id) && state.instances.len() >= MAX_INSTANCES {
            if let Some(oldest) = state
                .instances
                .iter()
                .min_by_key(|(_, i)| i.last_seen_ms)
                .map(|(k, _)| *k)
            {
                state.instances.remove(&oldest);
            }
        }
        let inst = match state.instances.entry(id) {
            Entry::Occupied(o) => {
                let inst = o.into_mut();
                if inst.fingerprint != fp {
                    // Kafka keeps the instance's metadata (who the client is) across a
                    // rebuild; its metrics stay too, the series are the same.
                    let series = std::mem::take(&mut inst.series);
                    *inst = build(inst.selector.clone());
                    inst.series = series;
                }
                inst
            }
            Entry::Vacant(v) => v.insert(build(ClientSelector {
                client_instance_id: id.to_string(),
                ..selector
            })),
        };
        inst.last_seen_ms = now;
        inst
    }

    /// Forgets instances idle longer than their expiry.
    fn expire(state: &mut State, now: u64) {
        state
            .instances
            .retain(|_, i| now.saturating_sub(i.last_seen_ms) < i.expiry_ms());
    }

    /// GetTelemetrySubscriptions (Kafka's `processGetTelemetrySubscriptionRequest`): assigns
    /// an instance id to a client that has none, and answers its subscription, or
    /// THROTTLING_QUOTA_EXCEEDED when it asks again within its push interval (unless its last
    /// push was refused for a stale subscription or its compression).
    pub fn get_subscriptions(
        &self,
        image: &MetadataImage,
        client_instance_id: Uuid,
        selector: ClientSelector,
        now: u64,
    ) -> SubscriptionAnswer {
        let id = if client_instance_id.is_nil() {
            Uuid::new_v4()
        } else {
            client_instance_id
        };
        let mut state = self.state.lock();
        Self::expire(&mut state, now);
        let inst = Self::instance(&mut state, image, id, selector, now);
        let interval = inst.requested.interval_ms.max(0) as u64;
        let last = inst.last_get_ms.max(inst.last_push_ms);
        let allowed = last.is_none_or(|t| now.saturating_sub(t) >= interval)
            || inst.last_error == ResponseError::UnknownSubscriptionId.code()
            || inst.last_error == ResponseError::UnsupportedCompressionType.code();
        let error = if allowed {
            inst.last_get_ms = Some(now);
            inst.last_error = 0;
            0
        } else {
            ResponseError::ThrottlingQuotaExceeded.code()
        };
        SubscriptionAnswer {
            error,
            client_instance_id: id,
            subscription_id: inst.subscription_id,
            requested_metrics: inst.requested.metrics.clone(),
            push_interval_ms: inst.requested.interval_ms,
        }
    }

    /// PushTelemetry (Kafka's `processPushTelemetryRequest`): checks the push against the
    /// instance (INVALID_REQUEST for the zero id or a push after a terminating one,
    /// UNKNOWN_SUBSCRIPTION_ID, THROTTLING_QUOTA_EXCEEDED, UNSUPPORTED_COMPRESSION_TYPE,
    /// TELEMETRY_TOO_LARGE), then decodes the metrics and keeps them (INVALID_RECORD when
    /// they do not decode). Returns the error code (0 when accepted).
    pub fn push(
        &self,
        image: &MetadataImage,
        push: &Push<'_>,
        selector: ClientSelector,
        now: u64,
    ) -> i16 {
        if push.client_instance_id.is_nil() {
            return ResponseError::InvalidRequest.code();
        }
        let mut state = self.state.lock();
        Self::expire(&mut state, now);
        let max_bytes = self.max_bytes;
        let inst = Self::instance(&mut state, image, push.client_instance_id, selector, now);
        let error = Self::check_push(inst, push, max_bytes, now);
        if error != 0 {
            inst.last_error = error;
            return error;
        }
        if push.terminating {
            inst.terminating = true;
        }
        let decoded = decompress(push.compression_type, push.metrics)
            .and_then(|raw| otlp::decode(&raw).map_err(|e| e.to_string()));
        let data = match decoded {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(client_instance_id = %push.client_instance_id, error = %e, "cannot decode pushed client telemetry");
                inst.last_error = ResponseError::InvalidRecord.code();
                return inst.last_error;
            }
        };
        let mut dropped = 0usize;
        for p in data.points {
            let mut attrs = p.attributes;
            attrs.sort();
            let key = (p.name, attrs);
            let delta = p.delta && p.kind != MetricKind::Gauge;
            if let Some((_, v)) = inst.series.get_mut(&key) {
                *v = if delta { *v + p.value } else { p.value };
            } else if inst.series.len() < MAX_SERIES_PER_CLIENT {
                inst.series.insert(key, (p.kind, p.value));
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::warn!(client_instance_id = %push.client_instance_id, dropped, "client telemetry series beyond the per-client limit dropped");
        }
        inst.last_error = 0;
        0
    }

    fn check_push(inst: &mut Instance, push: &Push<'_>, max_bytes: i32, now: u64) -> i16 {
        if inst.terminating {
            return ResponseError::InvalidRequest.code();
        }
        if push.subscription_id != inst.subscription_id {
            return ResponseError::UnknownSubscriptionId.code();
        }
        // A push right after GetTelemetrySubscriptions is accepted whatever the interval:
        // clients add jitter of up to half an interval either way (Kafka's
        // `maybeUpdatePushRequestTimestamp`); a terminating push is never throttled.
        let interval = inst.requested.interval_ms.max(0) as u64;
        let fresh_get = match (inst.last_get_ms, inst.last_push_ms) {
            (Some(g), Some(p)) => g > p,
            (Some(_), None) => true,
            _ => false,
        };
        let in_time = fresh_get
            || inst
                .last_push_ms
                .is_none_or(|p| now.saturating_sub(p) >= interval);
        if !in_time && !push.terminating {
            return ResponseError::ThrottlingQuotaExceeded.code();
        }
        inst.last_push_ms = Some(now);
        if push.compression_type != 0 && !ACCEPTED_COMPRESSION.contains(&push.compression_type) {
            return ResponseError::UnsupportedCompressionType.code();
        }
        if push.metrics.len() > max_bytes.max(0) as usize {
            return ResponseError::TelemetryTooLarge.code();
        }
        0
    }

    /// Appends the pushed client metrics to a `/metrics` exposition: each OTLP metric as a
    /// Prometheus family (its name with `.` and other characters outside `[a-zA-Z0-9_:]` as
    /// `_`; monotonic sums are counters ending in `_total`), one sample per client and
    /// attribute set, labelled `client_instance_id`, `client_id`, `client_software_name`,
    /// `client_software_version`, `client_source_address` and the point's attributes; and
    /// `kafka_server_client_metrics_instance_count`.
    pub fn render(&self, e: &mut Exposition, now: u64) {
        let mut state = self.state.lock();
        Self::expire(&mut state, now);
        e.family(
            "kafka_server_client_metrics_instance_count",
            Kind::Gauge,
            "KIP-714 client instances known to this broker (GetTelemetrySubscriptions/PushTelemetry).",
        );
        e.sample(
            "kafka_server_client_metrics_instance_count",
            &[],
            state.instances.len() as f64,
        );
        type Sample = (Vec<(String, String)>, f64);
        let mut families: BTreeMap<String, (MetricKind, Vec<Sample>)> = BTreeMap::new();
        let mut ids: Vec<(&Uuid, &Instance)> = state.instances.iter().collect();
        ids.sort_by_key(|(id, _)| **id);
        for (id, inst) in ids {
            let s = &inst.selector;
            for ((name, attrs), (kind, value)) in &inst.series {
                let mut family = prometheus_name(name);
                if *kind == MetricKind::Counter && !family.ends_with("_total") {
                    family.push_str("_total");
                }
                let mut labels: Vec<(String, String)> = vec![
                    ("client_instance_id".into(), id.to_string()),
                    ("client_id".into(), s.client_id.clone()),
                    (
                        "client_software_name".into(),
                        s.client_software_name.clone(),
                    ),
                    (
                        "client_software_version".into(),
                        s.client_software_version.clone(),
                    ),
                    (
                        "client_source_address".into(),
                        s.client_source_address.clone(),
                    ),
                ];
                for (k, v) in attrs {
                    let mut k = prometheus_name(k);
                    if labels.iter().any(|(l, _)| *l == k) {
                        k.insert_str(0, "attr_");
                    }
                    labels.push((k, v.clone()));
                }
                families
                    .entry(family)
                    .or_insert_with(|| (*kind, Vec::new()))
                    .1
                    .push((labels, *value));
            }
        }
        for (family, (kind, samples)) in families {
            let k = if kind == MetricKind::Counter {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            e.family(&family, k, "Pushed by KIP-714 clients (PushTelemetry).");
            for (labels, v) in samples {
                let l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                e.sample(&family, &l, v);
            }
        }
    }
}

/// An OTLP metric or attribute name as a Prometheus name: characters outside
/// `[a-zA-Z0-9_:]` become `_`, and a leading digit gets a `_` before it.
pub fn prometheus_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}
