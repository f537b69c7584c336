//! The per-request metrics hook (Kafka's `RequestChannel.RequestMetrics`): every request
//! that reaches a handler is counted per API, version and listener, with its bytes in and
//! out and its time from receipt to the last byte written, split as Kafka splits it:
//!
//! - *request queue*: received → handler started (waiting behind earlier requests of the
//!   same connection, which are handled in order);
//! - *local*: the handler's own work, until it produced a reply;
//! - *remote*: waiting for a deferred reply (acks=all replication, a delayed fetch, a group
//!   rebalance, a forwarded request);
//! - *response queue*: reply ready → its turn on the connection's writer (responses go out in
//!   request order);
//! - *response send*: writing it to the socket;
//! - *throttle*: how long the connection stays muted by a client quota once the response is
//!   written (KIP-219: the response goes out at once and the broker then reads nothing more
//!   from the connection until the throttle time has passed; Kafka's `ThrottleTimeMs`).
//!
//! Counters and histograms live in memory, one slot per API and listener, made of atomics:
//! recording a request is a handful of relaxed `fetch_add`s and never takes a lock (the
//! slot itself is allocated once, on the API's first request). `GET /metrics`
//! ([`crate::metrics`]) renders [`RequestMetrics::snapshot`]. A snapshot reads each atomic
//! on its own, so a scrape racing a record may see a count one ahead of a bucket; the next
//! scrape is exact again (Prometheus tolerates this, as it does for Kafka's Yammer metrics).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;

use crate::context::ListenerKind;
use crate::context::RequestContext;
use crate::response_errors::ErrorCounts;

/// Upper bounds of the latency histogram buckets, in microseconds (powers of two from
/// 16 µs to ~67 s); a last bucket takes everything above.
pub const LATENCY_BUCKETS_US: [u64; 23] = [
    16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384, 32_768, 65_536, 131_072,
    262_144, 524_288, 1_048_576, 2_097_152, 4_194_304, 8_388_608, 16_777_216, 33_554_432,
    67_108_864,
];

/// A latency histogram: counts per bucket of [`LATENCY_BUCKETS_US`] plus an overflow
/// bucket, and the sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Count per bucket; the last entry counts values above the last bound.
    pub buckets: Vec<u64>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in microseconds.
    pub sum_us: u64,
}

/// A lock-free latency histogram over [`LATENCY_BUCKETS_US`]; [`LatencyHistogram::load`]
/// reads it as a [`Histogram`].
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one observation (relaxed atomic adds).
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // The bounds are powers of two: the bucket is found by a binary search, not a scan.
        let i = LATENCY_BUCKETS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn load(&self) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// What is known of one API's requests on one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiMetrics {
    /// Requests per version (index = version).
    pub requests_by_version: Vec<u64>,
    /// Request bytes received (frames without the size prefix).
    pub bytes_in: u64,
    /// Response bytes written (with the size prefix).
    pub bytes_out: u64,
    /// Received → last byte written.
    pub total: Histogram,
    /// Received → handler started.
    pub request_queue: Histogram,
    /// The handler's own work.
    pub local: Histogram,
    /// Waiting for a deferred reply.
    pub remote: Histogram,
    /// Reply ready → written next.
    pub response_queue: Histogram,
    /// Writing the response.
    pub response_send: Histogram,
    /// The connection's quota mute left once the response was written.
    pub throttle: Histogram,
    /// `(error code, occurrences)` in the responses, NONE (0) included; codes Kafka's
    /// `errorCounts()` reports per partition or topic count once per item.
    pub errors: Vec<(i16, u64)>,
}

impl ApiMetrics {
    /// All requests of this API, every version.
    pub fn requests(&self) -> u64 {
        self.requests_by_version.iter().sum()
    }
}

/// The timing of one request as it moves through the pipeline.
#[derive(Debug, Clone)]
pub struct RequestTiming {
    key: ApiKey,
    version: i16,
    listener: ListenerKind,
    /// The connection, read when the request completes: whether a Fetch was a follower's.
    connection: Arc<crate::context::ConnectionContext>,
    request_bytes: usize,
    received: Instant,
    started: Instant,
    local_done: Option<Instant>,
}

impl RequestTiming {
    /// A request whose handler starts at `started`.
    pub fn new(ctx: &RequestContext, started: Instant) -> Self {
        RequestTiming {
            key: ctx.api.key,
            connection: ctx.connection.clone(),
            version: ctx.header.request_api_version,
            listener: ctx.connection.listener,
            request_bytes: ctx.request_bytes,
            received: ctx.received,
            started,
            local_done: None,
        }
    }

    /// Marks the handler's reply as produced now.
    pub fn local_done(mut self) -> Self {
        self.local_done = Some(Instant::now());
        self
    }

    /// When the handler produced its reply, if it did.
    pub fn local_done_at(&self) -> Option<Instant> {
        self.local_done
    }

    /// Completes the timing: the reply was ready at `ready` (after any deferred part),
    /// writing started at `write_start` and ended at `write_end` with `response_bytes`.
    pub fn finish(
        self,
        ready: Instant,
        write_start: Instant,
        write_end: Instant,
        response_bytes: usize,
    ) -> CompletedRequest {
        let local_done = self.local_done.unwrap_or(self.started);
        CompletedRequest {
            key: self.key,
            version: self.version,
            listener: self.listener,
            follower_fetch: self.key == ApiKey::Fetch
                && (self.listener == ListenerKind::Controller
                    || self.connection.follower_fetches()),
            request_bytes: self.request_bytes,
            response_bytes,
            request_queue: self.started.saturating_duration_since(self.received),
            local: local_done.saturating_duration_since(self.started),
            remote: ready.saturating_duration_since(local_done),
            response_queue: write_start.saturating_duration_since(ready),
            response_send: write_end.saturating_duration_since(write_start),
            total: write_end.saturating_duration_since(self.received),
            throttle: Duration::ZERO,
            errors: ErrorCounts::default(),
        }
    }
}

/// One request's measured times, handed to [`RequestMetrics::record`].
#[derive(Debug, Clone)]
pub struct CompletedRequest {
    /// The API.
    pub key: ApiKey,
    /// Its version.
    pub version: i16,
    /// The listener.
    pub listener: ListenerKind,
    /// A Fetch from a follower replica (Kafka's FetchFollower; other fetches are FetchConsumer).
    pub follower_fetch: bool,
    /// Request frame size.
    pub request_bytes: usize,
    /// Response size written (0 for acks=0 produce).
    pub response_bytes: usize,
    /// Received → handler started.
    pub request_queue: Duration,
    /// Handler work.
    pub local: Duration,
    /// Deferred part.
    pub remote: Duration,
    /// Waiting for the writer.
    pub response_queue: Duration,
    /// Writing.
    pub response_send: Duration,
    /// Received → last byte written.
    pub total: Duration,
    /// The connection's quota mute left after the response (zero when not throttled).
    pub throttle: Duration,
    /// The response's error codes.
    pub errors: ErrorCounts,
}

impl CompletedRequest {
    /// The same request, throttled for `d` after its response.
    pub fn with_throttle(mut self, d: Duration) -> Self {
        self.throttle = d;
        self
    }

    /// The same request, whose response carried `errors`.
    pub fn with_errors(mut self, errors: ErrorCounts) -> Self {
        self.errors = errors;
        self
    }
}

const MAX_API_KEY: usize = 128;
/// Error codes counted: -1 (UNKNOWN_SERVER_ERROR) to 158; others count as -1.
const ERROR_CODES: usize = 160;
/// Versions counted separately; a higher one (none exists today) counts as this last one.
const MAX_VERSION: usize = 32;

/// One API's counters on one listener.
struct Slot {
    requests_by_version: [AtomicU64; MAX_VERSION],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    total: LatencyHistogram,
    request_queue: LatencyHistogram,
    local: LatencyHistogram,
    remote: LatencyHistogram,
    response_queue: LatencyHistogram,
    response_send: LatencyHistogram,
    throttle: LatencyHistogram,
    /// Per error code + 1.
    errors: [AtomicU64; ERROR_CODES],
}

impl Slot {
    fn new() -> Self {
        Slot {
            requests_by_version: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            total: LatencyHistogram::new(),
            request_queue: LatencyHistogram::new(),
            local: LatencyHistogram::new(),
            remote: LatencyHistogram::new(),
            response_queue: LatencyHistogram::new(),
            response_send: LatencyHistogram::new(),
            throttle: LatencyHistogram::new(),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn load(&self) -> ApiMetrics {
        let mut by_version: Vec<u64> = self
            .requests_by_version
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        while by_version.last() == Some(&0) {
            by_version.pop();
        }
        ApiMetrics {
            requests_by_version: by_version,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            total: self.total.load(),
            request_queue: self.request_queue.load(),
            local: self.local.load(),
            remote: self.remote.load(),
            response_queue: self.response_queue.load(),
            response_send: self.response_send.load(),
            throttle: self.throttle.load(),
            errors: self
                .errors
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let n = n.load(Ordering::Relaxed);
                    (n > 0).then_some((i as i16 - 1, n))
                })
                .collect(),
        }
    }
}

/// Every API's request metrics on this node, and the open connections per listener.
pub struct RequestMetrics {
    /// Allocated on an API's first request (a slot is ~1.5 KiB of atomics).
    slots: Vec<OnceLock<Box<Slot>>>,
    /// Open connections per listener name (Kafka's `connection-count` per listener).
    connections: Mutex<HashMap<String, Arc<AtomicI64>>>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts one open connection of a listener until dropped.
#[derive(Debug)]
pub struct ConnectionCount(Arc<AtomicI64>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        RequestMetrics {
            // Per API and listener role, then FetchFollower's two (Kafka splits Fetch in two).
            slots: (0..MAX_API_KEY * 2 + 2).map(|_| OnceLock::new()).collect(),
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn slot(key: ApiKey, listener: ListenerKind, follower_fetch: bool) -> Option<usize> {
        let k = usize::try_from(key as i16)
            .ok()
            .filter(|k| *k < MAX_API_KEY)?;
        Some(match (listener, key == ApiKey::Fetch && follower_fetch) {
            (ListenerKind::Broker, false) => k,
            (ListenerKind::Controller, false) => MAX_API_KEY + k,
            (ListenerKind::Broker, true) => 2 * MAX_API_KEY,
            (ListenerKind::Controller, true) => 2 * MAX_API_KEY + 1,
        })
    }

    /// Kafka's request name of a slot: the API's, except Fetch, which Kafka's RequestMetrics
    /// count as FetchConsumer and FetchFollower.
    fn slot_name(i: usize) -> Option<(String, ListenerKind)> {
        if i >= 2 * MAX_API_KEY {
            let listener = if i == 2 * MAX_API_KEY {
                ListenerKind::Broker
            } else {
                ListenerKind::Controller
            };
            return Some(("FetchFollower".into(), listener));
        }
        let (k, listener) = if i < MAX_API_KEY {
            (i, ListenerKind::Broker)
        } else {
            (i - MAX_API_KEY, ListenerKind::Controller)
        };
        let key = i16::try_from(k)
            .ok()
            .and_then(|k| ApiKey::try_from(k).ok())?;
        let name = if key == ApiKey::Fetch {
            "FetchConsumer".to_string()
        } else {
            format!("{key:?}")
        };
        Some((name, listener))
    }

    /// Records one completed request: relaxed atomic adds only.
    pub fn record(&self, r: &CompletedRequest) {
        // Kafka's `kafka.request.logger` at DEBUG: one line per completed request with its
        // times (enable with the `nagare_broker::request_logger` logger).
        tracing::debug!(
            target: "nagare_broker::request_logger",
            api = ?r.key,
            version = r.version,
            listener = ?r.listener,
            request_bytes = r.request_bytes,
            response_bytes = r.response_bytes,
            total_us = r.total.as_micros() as u64,
            request_queue_us = r.request_queue.as_micros() as u64,
            local_us = r.local.as_micros() as u64,
            remote_us = r.remote.as_micros() as u64,
            throttle_us = r.throttle.as_micros() as u64,
            "completed request"
        );
        let Some(i) = Self::slot(r.key, r.listener, r.follower_fetch) else {
            return;
        };
        let m = self.slots[i].get_or_init(|| Box::new(Slot::new()));
        let v = usize::try_from(r.version).unwrap_or(0).min(MAX_VERSION - 1);
        m.requests_by_version[v].fetch_add(1, Ordering::Relaxed);
        m.bytes_in
            .fetch_add(r.request_bytes as u64, Ordering::Relaxed);
        m.bytes_out
            .fetch_add(r.response_bytes as u64, Ordering::Relaxed);
        m.total.observe(r.total);
        m.request_queue.observe(r.request_queue);
        m.local.observe(r.local);
        m.remote.observe(r.remote);
        m.response_queue.observe(r.response_queue);
        m.response_send.observe(r.response_send);
        m.throttle.observe(r.throttle);
        for (code, n) in r.errors.iter() {
            let i = usize::try_from(i32::from(code) + 1)
                .ok()
                .filter(|i| *i < ERROR_CODES)
                .unwrap_or(0);
            m.errors[i].fetch_add(u64::from(n), Ordering::Relaxed);
        }
    }

    /// One API's metrics on one listener.
    pub fn get(&self, key: ApiKey, listener: ListenerKind) -> ApiMetrics {
        Self::slot(key, listener, false)
            .and_then(|i| self.slots[i].get())
            .map(|s| s.load())
            .unwrap_or_default()
    }

    /// Every API with at least one request: `(Kafka's request name, listener, metrics)`; Fetch
    /// appears as FetchConsumer and FetchFollower.
    pub fn snapshot(&self) -> Vec<(String, ListenerKind, ApiMetrics)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(s) = slot.get() else {
                continue;
            };
            let m = s.load();
            if m.requests() == 0 {
                continue;
            }
            if let Some((name, listener)) = Self::slot_name(i) {
                out.push((name, listener, m));
            }
        }
        out
    }

    /// Counts a connection accepted on `listener` until the returned guard is dropped
    /// (once per connection, so the map's lock is off the request path).
    pub fn connection_opened(&self, listener: &str) -> ConnectionCount {
        let c = self
            .connections
            .lock()
            .entry(listener.to_string())
            .or_default()
            .clone();
        c.fetch_add(1, Ordering::Relaxed);
        ConnectionCount(c)
    }

    /// Open connections per listener name, sorted by name.
    pub fn connections(&self) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = self
            .connections
            .lock()
            .iter()
            .map(|(k, c)| (k.clone(), c.load(Ordering::Relaxed)))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_add_up_and_land_in_their_slot() {
        let m = RequestMetrics::new();
        let t0 = Instant::now();
        let r = CompletedRequest {
            key: ApiKey::Produce,
            version: 9,
            listener: ListenerKind::Broker,
            follower_fetch: false,
            request_bytes: 100,
            response_bytes: 50,
            request_queue: Duration::from_micros(10),
            local: Duration::from_micros(20),
            remote: Duration::from_millis(3),
            response_queue: Duration::ZERO,
            response_send: Duration::from_micros(5),
            total: t0.elapsed(),
            throttle: Duration::ZERO,
            errors: ErrorCounts::default(),
        }
        .with_throttle(Duration::from_millis(100));
        m.record(&r);
        m.record(&r);
        let p = m.get(ApiKey::Produce, ListenerKind::Broker);
        assert_eq!(p.requests(), 2);
        assert_eq!(p.requests_by_version[9], 2);
        assert_eq!((p.bytes_in, p.bytes_out), (200, 100));
        assert_eq!(p.remote.count, 2);
        assert_eq!(p.remote.sum_us, 6_000);
        // 3 ms falls in the 4,096 µs bucket.
        let bucket = LATENCY_BUCKETS_US.iter().position(|b| *b == 4_096).unwrap();
        assert_eq!(p.remote.buckets[bucket], 2);
        assert_eq!((p.throttle.count, p.throttle.sum_us), (2, 200_000));
        assert_eq!(
            m.get(ApiKey::Produce, ListenerKind::Controller).requests(),
            0
        );
        assert_eq!(m.snapshot().len(), 1);
    }
}
