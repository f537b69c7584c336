//! Connection limits, as Kafka's `ConnectionQuotas` (KIP-402, KIP-612) applies them on
//! client listeners:
//! - `max.connections.per.ip` / `max.connections.per.ip.overrides`: a connection from an
//!   address that already has its maximum is closed at once, with a log line;
//! - `max.connection.creation.rate` (broker-wide) and
//!   `listener.name.<listener>.max.connection.creation.rate`: over the rate, the listener
//!   delays accepting (the accept loop waits the throttle time before going on);
//! - `connection_creation_rate` client quotas on ip entities (an address, else the default
//!   ip): over the rate, the new connection is closed after the throttle time (Kafka's
//!   delayed close), and not counted.
//!
//! Sans-I/O: the caller passes the time; the accept loop in `server.rs` sleeps and closes.
//! The controller listener is exempt (brokers and controllers must always get through).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use nagare_metadata::client_quotas::{
    ClientQuotasImage, EntityComponent, QuotaEntity, CONNECTION_CREATION_RATE, IP,
};

use crate::config::QuotaConfig;
use crate::quotas::{throttle_time_ms, QuotaWindow, Rate};

/// What to do with a connection just accepted.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Serve it; the guard counts it until dropped.
    Admit(ConnectionGuard),
    /// Close it now: the address has `max` connections already.
    TooMany {
        /// The address's limit.
        max: usize,
    },
    /// Close it after `throttle_ms`: the address is over its connection creation rate.
    Throttled {
        /// The delay before closing.
        throttle_ms: u64,
    },
}

/// Counts one open connection of an address; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl PartialEq for ConnectionGuard {
    fn eq(&self, other: &Self) -> bool {
        self.ip == other.ip
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut s = self.quotas.state.lock();
        if let Some(c) = s.counts.get_mut(&self.ip) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                s.counts.remove(&self.ip);
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    counts: HashMap<IpAddr, usize>,
    broker_rate: Rate,
    listener_rates: HashMap<String, Rate>,
    ip_rates: HashMap<IpAddr, Rate>,
    ip_quotas: Arc<ClientQuotasImage>,
}

/// The broker's connection limits and their counters.
#[derive(Debug)]
pub struct ConnectionQuotas {
    window: QuotaWindow,
    /// `max.connections.per.ip`: the file's value, replaced by a dynamic broker config.
    max_per_ip: AtomicUsize,
    static_max_per_ip: usize,
    overrides: HashMap<IpAddr, usize>,
    /// `max.connection.creation.rate`: the file's value, replaced by a dynamic broker config.
    broker_rate: AtomicU64,
    static_broker_rate: u64,
    listener_rates: HashMap<String, u64>,
    state: Mutex<State>,
}

impl ConnectionQuotas {
    /// The limits of `config`; host names in the overrides are resolved once, here (an
    /// unresolvable one is logged and skipped).
    pub fn new(config: &QuotaConfig) -> Self {
        let mut overrides = HashMap::new();
        for (host, max) in &config.max_connections_per_ip_overrides {
            match resolve(host) {
                Some(ip) => {
                    overrides.insert(ip, *max);
                }
                None => tracing::warn!(
                    host,
                    "max.connections.per.ip.overrides: cannot resolve host; ignored"
                ),
            }
        }
        ConnectionQuotas {
            window: config.window(),
            max_per_ip: AtomicUsize::new(config.max_connections_per_ip),
            static_max_per_ip: config.max_connections_per_ip,
            overrides,
            broker_rate: AtomicU64::new(config.max_connection_creation_rate),
            static_broker_rate: config.max_connection_creation_rate,
            listener_rates: config
                .listener_connection_creation_rate
                .iter()
                .map(|(k, v)| (k.to_uppercase(), *v))
                .collect(),
            state: Mutex::new(State::default()),
        }
    }

    /// Takes the `connection_creation_rate` ip quotas of a new metadata image.
    pub fn on_image(&self, quotas: &Arc<ClientQuotasImage>) {
        let mut s = self.state.lock();
        if !Arc::ptr_eq(&s.ip_quotas, quotas) {
            s.ip_quotas = quotas.clone();
        }
    }

    /// Applies the dynamic broker configs `max.connections.per.ip` and
    /// `max.connection.creation.rate` (this broker's overlaid on the cluster default; a key
    /// not set dynamically takes the file's value again), as Kafka's `DynamicConnectionQuota`
    /// does: new connections see the new limits, open ones stay.
    pub fn apply_dynamic(&self, dynamic: &std::collections::BTreeMap<String, String>) {
        let per_ip = dynamic
            .get("max.connections.per.ip")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(self.static_max_per_ip);
        let rate = dynamic
            .get("max.connection.creation.rate")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(self.static_broker_rate);
        self.max_per_ip.store(per_ip, Ordering::Relaxed);
        self.broker_rate.store(rate, Ordering::Relaxed);
    }

    /// Records a new connection on `listener` against the broker-wide and the listener's
    /// creation rates and returns how long to wait before going on (Kafka's
    /// `waitForConnectionSlot`; the throttle is bounded by one quota window).
    pub fn record_accept(&self, listener: &str, now_ms: u64) -> u64 {
        let window = self.window;
        let mut s = self.state.lock();
        let mut wait = 0;
        let broker_rate = self.broker_rate.load(Ordering::Relaxed);
        if broker_rate < i32::MAX as u64 {
            wait = wait.max(record(&mut s.broker_rate, &window, broker_rate, now_ms));
        }
        if let Some(&limit) = self.listener_rates.get(&listener.to_uppercase()) {
            let rate = s.listener_rates.entry(listener.to_uppercase()).or_default();
            wait = wait.max(record(rate, &window, limit, now_ms));
        }
        wait
    }

    /// Decides about a connection accepted from `ip` (after [`Self::record_accept`]'s wait):
    /// the ip's connection creation rate first, then its connection count, as Kafka's
    /// `ConnectionQuotas.inc`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now_ms: u64) -> Admission {
        let window = self.window;
        let mut s = self.state.lock();
        if let Some(limit) = ip_rate(&s.ip_quotas, ip) {
            let rate = s.ip_rates.entry(ip).or_default();
            rate.record(&window, 1.0, now_ms);
            let observed = rate.measure(&window, now_ms);
            if observed > limit {
                // Kafka takes a refused connection back out of the ip's rate.
                rate.record(&window, -1.0, now_ms);
                let size = rate.window_size_ms(&window, now_ms);
                let t = throttle_time_ms(observed, limit, size).min(window.window_ms);
                return Admission::Throttled {
                    throttle_ms: t.max(1),
                };
            }
        }
        let max = self
            .overrides
            .get(&ip)
            .copied()
            .unwrap_or_else(|| self.max_per_ip.load(Ordering::Relaxed));
        let count = s.counts.entry(ip).or_insert(0);
        if *count >= max {
            return Admission::TooMany { max };
        }
        *count += 1;
        Admission::Admit(ConnectionGuard {
            quotas: self.clone(),
            ip,
        })
    }

    /// Open connections from `ip` (tests, metrics).
    pub fn count(&self, ip: IpAddr) -> usize {
        self.state.lock().counts.get(&ip).copied().unwrap_or(0)
    }
}

/// Records one connection in `rate` and returns the (bounded) throttle time if over `limit`.
fn record(rate: &mut Rate, window: &QuotaWindow, limit: u64, now_ms: u64) -> u64 {
    rate.record(window, 1.0, now_ms);
    let observed = rate.measure(window, now_ms);
    let limit = limit as f64;
    if observed <= limit {
        return 0;
    }
    let size = rate.window_size_ms(window, now_ms);
    throttle_time_ms(observed, limit, size).min(window.window_ms)
}

/// The `connection_creation_rate` of `ip`: its own entity's, else the default ip's.
fn ip_rate(image: &ClientQuotasImage, ip: IpAddr) -> Option<f64> {
    if image.entities.is_empty() {
        return None;
    }
    let own = QuotaEntity::new(vec![EntityComponent::named(IP, &ip.to_string())]);
    let default = QuotaEntity::new(vec![EntityComponent::default_of(IP)]);
    image
        .value(&own, CONNECTION_CREATION_RATE)
        .or_else(|| image.value(&default, CONNECTION_CREATION_RATE))
}

fn resolve(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    use std::net::ToSocketAddrs;
    (host, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(per_ip: usize, overrides: &[(&str, usize)], broker_rate: u64) -> QuotaConfig {
        QuotaConfig {
            window_num: 11,
            window_size_seconds: 1,
            max_connections_per_ip: per_ip,
            max_connections_per_ip_overrides: overrides
                .iter()
                .map(|(h, n)| (h.to_string(), *n))
                .collect(),
            max_connection_creation_rate: broker_rate,
            listener_connection_creation_rate: BTreeMap::from([("SLOW".to_string(), 1)]),
        }
    }

    #[test]
    fn per_ip_limit_and_overrides() {
        let q = Arc::new(ConnectionQuotas::new(&config(
            2,
            &[("10.0.0.9", 3)],
            i32::MAX as u64,
        )));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.9".parse().expect("ip");
        let g1 = q.admit(a, 0);
        let g2 = q.admit(a, 0);
        assert!(matches!(g1, Admission::Admit(_)) && matches!(g2, Admission::Admit(_)));
        assert_eq!(q.admit(a, 0), Admission::TooMany { max: 2 });
        assert_eq!(q.count(a), 2);
        drop(g1);
        assert_eq!(q.count(a), 1);
        assert!(
            matches!(q.admit(a, 0), Admission::Admit(_)),
            "a slot came free"
        );
        let held: Vec<Admission> = (0..3).map(|_| q.admit(b, 0)).collect();
        assert!(held.iter().all(|x| matches!(x, Admission::Admit(_))));
        assert_eq!(q.admit(b, 0), Admission::TooMany { max: 3 });
    }

    #[test]
    fn creation_rates_delay_accepts_and_throttle_ips() {
        // 2 connections/s broker-wide: over the 10-s minimum window, 20 pass at once.
        let q = Arc::new(ConnectionQuotas::new(&config(100, &[], 2)));
        let waits: Vec<u64> = (0..21).map(|_| q.record_accept("PLAINTEXT", 0)).collect();
        assert!(waits[..20].iter().all(|w| *w == 0));
        assert!(
            waits[20] > 0 && waits[20] <= 1000,
            "bounded by one window: {}",
            waits[20]
        );
        // The listener override: 1/s.
        let waits: Vec<u64> = (0..11).map(|_| q.record_accept("slow", 0)).collect();
        assert!(waits[10] > 0);
        // An ip quota from the image: 1/s for 10.0.0.1, the default ip unlimited.
        let mut img = ClientQuotasImage::default();
        img.apply(
            &QuotaEntity::new(vec![EntityComponent::named(IP, "10.0.0.1")]),
            CONNECTION_CREATION_RATE,
            1.0,
            false,
        );
        q.on_image(&Arc::new(img));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let mut kept = Vec::new();
        for _ in 0..10 {
            let adm = q.admit(a, 0);
            assert!(matches!(adm, Admission::Admit(_)));
            kept.push(adm);
        }
        assert!(matches!(q.admit(a, 0), Admission::Throttled { .. }));
        assert_eq!(q.count(a), 10, "a throttled connection is not counted");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!((0..50).all(|_| matches!(q.admit(other, 0), Admission::Admit(_))));
    }
}
