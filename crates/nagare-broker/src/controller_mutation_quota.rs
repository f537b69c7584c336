//! `controller_mutation_rate` (KIP-599): partition mutations per second a (user, client id)
//! may make through CreateTopics, CreatePartitions and DeleteTopics, as Kafka's
//! `ControllerMutationQuotaManager`.
//!
//! The rate is a token bucket (Kafka's `TokenBucket` stat): it holds at most
//! quota × `quota.window.num` × `quota.window.size.seconds` tokens (the burst), refills at
//! the quota per second, and each created or deleted partition takes one token. Two ways to
//! spend them, by request version:
//! - **strict** (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+): a topic asked for
//!   while the bucket is already negative is refused with THROTTLING_QUOTA_EXCEEDED; one that
//!   finds tokens left is accepted even if it takes the bucket below zero (Kafka's
//!   `StrictControllerMutationQuota`: check, then record);
//! - **permissive** (older versions, whose clients do not know the error): everything is
//!   accepted and recorded.
//!
//! Either way the response carries `throttle_time_ms` = −tokens / quota × 1000 while the
//! bucket is negative, and the connection is muted for that long.
//!
//! Sans-I/O: every call takes the time in milliseconds.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use nagare_metadata::client_quotas::{ClientQuotasImage, CONTROLLER_MUTATION_RATE};

use crate::quotas::{applicable_quota, QuotaWindow};

/// A token bucket (Kafka's `TokenBucket`).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl Bucket {
    fn refill(&mut self, quota: f64, burst: f64, now_ms: u64) {
        let elapsed_s = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + quota * elapsed_s).min(burst);
        self.last_ms = self.last_ms.max(now_ms);
    }
}

/// Why a strict mutation was refused: the throttle time to report, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// How long until the bucket is back at zero.
    pub throttle_ms: u64,
}

/// The broker's controller mutation quotas.
#[derive(Debug)]
pub struct ControllerMutationQuotas {
    window: QuotaWindow,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    quotas: Arc<ClientQuotasImage>,
    buckets: HashMap<(String, String), Bucket>,
}

/// Buckets count above which full (idle) ones are dropped: a full bucket is the same as a
/// new one.
const SWEEP_THRESHOLD: usize = 1024;

impl ControllerMutationQuotas {
    /// No quotas until the first image.
    pub fn new(window: QuotaWindow) -> Self {
        ControllerMutationQuotas {
            window,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Takes the client quotas of a new metadata image.
    pub fn update_quotas(&self, quotas: Arc<ClientQuotasImage>) {
        self.inner.lock().quotas = quotas;
    }

    fn burst(&self, quota: f64) -> f64 {
        quota * self.window.samples as f64 * (self.window.window_ms as f64 / 1000.0)
    }

    /// Records `permits` partition mutations of (`user`, `client_id`) at `now_ms`. Strict:
    /// refused (nothing recorded) when the bucket is already below zero. Permissive:
    /// always recorded. No quota: nothing to do.
    pub fn record(
        &self,
        user: &str,
        client_id: &str,
        permits: f64,
        strict: bool,
        now_ms: u64,
    ) -> Result<(), QuotaExceeded> {
        let mut inner = self.inner.lock();
        let Some(q) = applicable_quota(&inner.quotas, CONTROLLER_MUTATION_RATE, user, client_id)
        else {
            return Ok(());
        };
        let burst = self.burst(q.bound);
        if inner.buckets.len() > SWEEP_THRESHOLD {
            inner.buckets.retain(|_, b| {
                let mut b = *b;
                b.refill(q.bound, burst, now_ms);
                b.tokens < burst
            });
        }
        let bucket = inner.buckets.entry(q.sensor).or_insert(Bucket {
            tokens: burst,
            last_ms: now_ms,
        });
        bucket.refill(q.bound, burst, now_ms);
        if strict && bucket.tokens < 0.0 {
            return Err(QuotaExceeded {
                throttle_ms: throttle_ms(bucket.tokens, q.bound),
            });
        }
        bucket.tokens -= permits;
        Ok(())
    }

    /// The throttle time of (`user`, `client_id`) at `now_ms`: how long until its bucket is
    /// back at zero (0 when it is not negative, or without a quota).
    pub fn throttle_ms(&self, user: &str, client_id: &str, now_ms: u64) -> u64 {
        let mut inner = self.inner.lock();
        let Some(q) = applicable_quota(&inner.quotas, CONTROLLER_MUTATION_RATE, user, client_id)
        else {
            return 0;
        };
        let burst = self.burst(q.bound);
        match inner.buckets.get_mut(&q.sensor) {
            Some(b) => {
                b.refill(q.bound, burst, now_ms);
                throttle_ms(b.tokens, q.bound)
            }
            None => 0,
        }
    }
}

/// Kafka's `ControllerMutationQuotaManager.throttleTimeMs`: −tokens / quota seconds while
/// the bucket is negative. A zero quota allows nothing: a window's worth of throttle.
fn throttle_ms(tokens: f64, quota: f64) -> u64 {
    if tokens >= 0.0 {
        return 0;
    }
    if quota <= 0.0 {
        return 1000;
    }
    (-tokens / quota * 1000.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_metadata::client_quotas::{EntityComponent, QuotaEntity, CLIENT_ID};

    fn quotas(rate: f64) -> ControllerMutationQuotas {
        let mut img = ClientQuotasImage::default();
        img.apply(
            &QuotaEntity::new(vec![EntityComponent::named(CLIENT_ID, "admin")]),
            CONTROLLER_MUTATION_RATE,
            rate,
            false,
        );
        let q = ControllerMutationQuotas::new(QuotaWindow::default());
        q.update_quotas(Arc::new(img));
        q
    }

    #[test]
    fn strict_quota_refuses_once_the_bucket_is_negative() {
        // 2 partitions/s: a burst of 2 × 11 × 1 s = 22 partitions.
        let q = quotas(2.0);
        assert_eq!(q.record("u", "admin", 10.0, true, 0), Ok(()));
        assert_eq!(q.record("u", "admin", 10.0, true, 0), Ok(()));
        // 2 tokens left: accepted, and the bucket goes to −8.
        assert_eq!(q.record("u", "admin", 10.0, true, 0), Ok(()));
        assert_eq!(q.throttle_ms("u", "admin", 0), 4000);
        assert_eq!(
            q.record("u", "admin", 1.0, true, 0),
            Err(QuotaExceeded { throttle_ms: 4000 })
        );
        // Refused mutations are not recorded; the bucket refills at 2/s.
        assert_eq!(q.throttle_ms("u", "admin", 1000), 3000);
        assert_eq!(q.record("u", "admin", 1.0, true, 4000), Ok(()));
        assert_eq!(q.throttle_ms("u", "admin", 4000), 500);
        // It never holds more than the burst.
        assert_eq!(q.throttle_ms("u", "admin", 1_000_000), 0);
        assert_eq!(q.record("u", "admin", 22.0, true, 1_000_000), Ok(()));
        assert_eq!(q.throttle_ms("u", "admin", 1_000_000), 0);
        assert_eq!(q.record("u", "admin", 1.0, true, 1_000_000), Ok(()));
        assert_eq!(q.throttle_ms("u", "admin", 1_000_000), 500);
    }

    #[test]
    fn permissive_quota_accepts_and_throttles() {
        let q = quotas(2.0);
        assert_eq!(q.record("u", "admin", 30.0, false, 0), Ok(()));
        assert_eq!(q.record("u", "admin", 30.0, false, 0), Ok(()));
        assert_eq!(q.throttle_ms("u", "admin", 0), 19_000);
        // Another client id has no quota.
        assert_eq!(q.record("u", "other", 1e6, true, 0), Ok(()));
        assert_eq!(q.throttle_ms("u", "other", 0), 0);
    }
}
