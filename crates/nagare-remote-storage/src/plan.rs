//! Pure decisions of the leader's tiering task (Kafka's `RemoteLogManager` copy and expiration
//! tasks): which local segments to upload, which local segments local retention may delete,
//! the upload rate limit and the retry backoff. No clock and no I/O: time comes in as
//! arguments, so each rule is tested deterministically.

/// What the planner needs to know of a local segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSegment {
    /// First offset of the segment.
    pub base_offset: i64,
    /// One past the last offset in the segment (the next segment's base, or the log end).
    pub next_offset: i64,
    /// Size of the `.log` file in bytes.
    pub size_bytes: u64,
    /// Largest record timestamp in the segment.
    pub max_timestamp_ms: i64,
}

/// The rolled local segments to upload, oldest first (Kafka's `candidateLogSegments`): never
/// the active segment (the last one), only segments entirely below `upload_limit_offset`
/// (the high watermark, lowered to the last stable offset so that no open transaction's data
/// is tiered before its outcome is known), and only those with offsets not yet copied
/// (`next_copy_offset`, `None` when the remote log is empty).
pub fn upload_candidates(
    local: &[LocalSegment],
    upload_limit_offset: i64,
    next_copy_offset: Option<i64>,
) -> Vec<LocalSegment> {
    let Some((_active, rolled)) = local.split_last() else {
        return Vec::new();
    };
    rolled
        .iter()
        .filter(|s| s.next_offset > s.base_offset)
        .filter(|s| s.next_offset <= upload_limit_offset)
        .filter(|s| next_copy_offset.is_none_or(|next| s.next_offset > next))
        .copied()
        .collect()
}

/// Resolves Kafka's `-2` ("the same as the whole log's limit") for `local.retention.*`.
pub fn effective_local_limit(local: i64, whole: i64) -> i64 {
    if local == -2 {
        whole
    } else {
        local
    }
}

/// How many of the oldest local segments local retention deletes (Kafka's
/// `deleteLocalLogStartOffsetBreachedSegments` / `local.retention.*` with remote storage):
/// only rolled segments entirely copied (`copied_end_offset`, inclusive) — an upload that
/// lags, e.g. while the object store is down, makes the local log grow instead of losing
/// data — and only while they breach `local_retention_ms` or `local_retention_bytes`
/// (already resolved by [`effective_local_limit`]; `-1` = unlimited).
pub fn local_retention_count(
    local: &[LocalSegment],
    copied_end_offset: Option<i64>,
    now_ms: i64,
    local_retention_ms: i64,
    local_retention_bytes: i64,
) -> usize {
    let Some(copied) = copied_end_offset else {
        return 0;
    };
    let Some((_active, rolled)) = local.split_last() else {
        return 0;
    };
    let total: u64 = local.iter().map(|s| s.size_bytes).sum();
    let mut breach: i64 = if local_retention_bytes >= 0 {
        i64::try_from(total).unwrap_or(i64::MAX) - local_retention_bytes
    } else {
        0
    };
    let mut n = 0;
    for s in rolled {
        if s.next_offset - 1 > copied {
            break;
        }
        let size = i64::try_from(s.size_bytes).unwrap_or(i64::MAX);
        let by_size = local_retention_bytes >= 0 && breach - size >= 0;
        let by_time = local_retention_ms >= 0 && s.max_timestamp_ms < now_ms - local_retention_ms;
        if !(by_size || by_time) {
            break;
        }
        breach -= size;
        n += 1;
    }
    n
}

/// A token bucket for `remote.log.manager.copy.max.bytes.per.second` (Kafka's copy quota):
/// one second's worth of burst, refilled continuously. Sans-I/O: the caller passes the time
/// and sleeps for what [`RateLimiter::acquire`] returns.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    tokens: f64,
    last_ms: Option<i64>,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec`; `u64::MAX` (Kafka's default of `Long.MAX_VALUE`) never waits.
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            bytes_per_sec,
            tokens: bytes_per_sec as f64,
            last_ms: None,
        }
    }

    /// Takes `bytes` at `now_ms`; returns how long to wait before sending them (0 = now).
    /// The debt is recorded, so a large segment waits once and later calls wait for it too.
    pub fn acquire(&mut self, now_ms: i64, bytes: u64) -> u64 {
        if self.bytes_per_sec == u64::MAX || self.bytes_per_sec == 0 {
            return 0;
        }
        let rate = self.bytes_per_sec as f64;
        if let Some(last) = self.last_ms {
            let elapsed = (now_ms - last).max(0) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * rate).min(rate);
        }
        self.last_ms = Some(now_ms);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            0
        } else {
            ((-self.tokens / rate) * 1000.0).ceil() as u64
        }
    }
}

/// Exponential backoff for failed uploads, reads and deletes (Kafka's
/// `remote.log.manager.task.retry.backoff.ms` 500 up to `.max.ms` 30000, jitter 0.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial_ms: u64,
    /// Upper bound.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 500,
            max_ms: 30_000,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 = first retry), before jitter; `jitter` in
    /// [0, 1) spreads retries of many partitions by up to ±20%.
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> u64 {
        let base = self
            .initial_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.max_ms);
        let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        ((base as f64) * factor) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> LocalSegment {
        LocalSegment {
            base_offset: base,
            next_offset: next,
            size_bytes: size,
            max_timestamp_ms: ts,
        }
    }

    #[test]
    fn uploads_rolled_segments_below_the_limit_once() {
        let local = [
            seg(0, 10, 1, 0),
            seg(10, 20, 1, 0),
            seg(20, 30, 1, 0),
            seg(30, 35, 1, 0),
        ];
        // The active segment never goes; neither does one reaching past the HW/LSO.
        let c = upload_candidates(&local, 25, None);
        assert_eq!(
            c.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
            vec![0, 10]
        );
        let c = upload_candidates(&local, 35, Some(10));
        assert_eq!(
            c.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert!(upload_candidates(&local, 35, Some(30)).is_empty());
        assert!(upload_candidates(&[], 35, None).is_empty());
    }

    #[test]
    fn local_retention_waits_for_uploads() {
        let local = [
            seg(0, 10, 100, 0),
            seg(10, 20, 100, 0),
            seg(20, 30, 100, 0),
            seg(30, 35, 50, 0),
        ];
        // Nothing uploaded: nothing deleted however far over the limit.
        assert_eq!(local_retention_count(&local, None, 1_000, 0, 0), 0);
        // Uploaded up to 19: at most the first two.
        assert_eq!(local_retention_count(&local, Some(19), 1_000, 0, -1), 2);
        // Size: 350 bytes, keep ≥ 200 → delete one (250 ≥ 200), the second would leave 150.
        assert_eq!(local_retention_count(&local, Some(29), 0, -1, 200), 1);
        // Unlimited local retention keeps everything.
        assert_eq!(local_retention_count(&local, Some(29), 1_000, -1, -1), 0);
        assert_eq!(effective_local_limit(-2, 5), 5);
        assert_eq!(effective_local_limit(3, 5), 3);
    }

    #[test]
    fn rate_limiter_spreads_bytes() {
        let mut r = RateLimiter::new(1000);
        assert_eq!(r.acquire(0, 1000), 0);
        assert_eq!(r.acquire(0, 500), 500);
        // After the wait the debt is paid.
        assert_eq!(r.acquire(500, 0), 0);
        assert_eq!(r.acquire(1500, 1000), 0);
        let mut unlimited = RateLimiter::new(u64::MAX);
        assert_eq!(unlimited.acquire(0, u64::MAX / 2), 0);
    }

    #[test]
    fn backoff_grows_to_its_bound() {
        let b = Backoff::default();
        assert_eq!(b.delay_ms(0, 0.5), 500);
        assert_eq!(b.delay_ms(1, 0.5), 1000);
        assert_eq!(b.delay_ms(30, 0.5), 30_000);
        assert!(b.delay_ms(0, 0.0) >= 400 && b.delay_ms(0, 0.99) <= 600);
    }
}
