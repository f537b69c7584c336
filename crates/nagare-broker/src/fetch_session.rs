//! Incremental fetch sessions (KIP-227): a client that fetches the same partitions over and
//! over sends only what changed, and the broker answers only partitions with news.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use nagare_metadata::Uuid;

/// One partition of a fetch, with what the session last told the client about it.
#[derive(Debug, Clone)]
pub struct FetchTarget {
    /// Topic name ("" if the id is unknown).
    pub topic: String,
    /// Topic id (v13+).
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// Offset to fetch from.
    pub fetch_offset: i64,
    /// Per-partition byte limit.
    pub max_bytes: i32,
    /// Leader epoch the client believes current (-1: unchecked).
    pub current_leader_epoch: i32,
    /// Epoch of the last record the fetcher has (v12+, KIP-320; -1: none). A follower's
    /// fetch is checked against the leader's epochs with it.
    pub last_fetched_epoch: i32,
    /// A Nagare follower's fsynced log end (see `FetchPartitionRequest::durable_offset`).
    pub durable_offset: Option<i64>,
    /// High watermark last sent (-1: never).
    pub last_hw: i64,
    /// Log start offset last sent.
    pub last_log_start: i64,
}

impl FetchTarget {
    fn key(&self) -> (String, Uuid, i32) {
        (self.topic.clone(), self.topic_id, self.partition)
    }
}

/// How a fetch request relates to sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchContext {
    /// No session: answer every requested partition.
    Sessionless,
    /// A new session: answer every partition, return its id.
    Full(i32),
    /// An existing session: answer only partitions with news.
    Incremental(i32),
}

struct Session {
    epoch: i32,
    partitions: Vec<FetchTarget>,
    last_used: Instant,
}

/// The broker's cache of fetch sessions, bounded by
/// `max.incremental.fetch.session.cache.slots`.
pub struct FetchSessionCache {
    max: usize,
    inner: Mutex<(i32, HashMap<i32, Session>)>,
}

impl FetchSessionCache {
    /// An empty cache with room for `max` sessions.
    pub fn new(max: usize) -> Self {
        let seed = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1)
            & 0x3fff_ffff) as i32;
        FetchSessionCache {
            max,
            inner: Mutex::new((seed.max(1), HashMap::new())),
        }
    }

    /// Resolves a request into a context and the partitions to fetch, or a top-level error.
    pub fn open(
        &self,
        session_id: i32,
        epoch: i32,
        requested: Vec<FetchTarget>,
        forgotten: &[(String, Uuid, i32)],
    ) -> Result<(FetchContext, Vec<FetchTarget>), i16> {
        let mut guard = self.inner.lock();
        let (next_id, sessions) = &mut *guard;
        match epoch {
            -1 => {
                if session_id != 0 {
                    sessions.remove(&session_id);
                }
                Ok((FetchContext::Sessionless, requested))
            }
            0 => {
                if session_id != 0 {
                    sessions.remove(&session_id);
                }
                if self.max == 0 {
                    return Ok((FetchContext::Sessionless, requested));
                }
                if sessions.len() >= self.max {
                    // Evict the least recently used session to make room.
                    if let Some(oldest) = sessions
                        .iter()
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(k, _)| *k)
                    {
                        sessions.remove(&oldest);
                    }
                }
                let id = *next_id;
                *next_id = if *next_id >= i32::MAX - 1 {
                    1
                } else {
                    *next_id + 1
                };
                sessions.insert(
                    id,
                    Session {
                        epoch: 1,
                        partitions: requested.clone(),
                        last_used: Instant::now(),
                    },
                );
                Ok((FetchContext::Full(id), requested))
            }
            _ => {
                let Some(s) = sessions.get_mut(&session_id) else {
                    return Err(kafka_protocol::ResponseError::FetchSessionIdNotFound.code());
                };
                if s.epoch != epoch {
                    return Err(kafka_protocol::ResponseError::InvalidFetchSessionEpoch.code());
                }
                for f in forgotten {
                    s.partitions.retain(|p| &p.key() != f);
                }
                for r in requested {
                    match s.partitions.iter_mut().find(|p| p.key() == r.key()) {
                        Some(p) => {
                            p.fetch_offset = r.fetch_offset;
                            p.max_bytes = r.max_bytes;
                            p.current_leader_epoch = r.current_leader_epoch;
                            p.last_fetched_epoch = r.last_fetched_epoch;
                            p.durable_offset = r.durable_offset;
                        }
                        None => s.partitions.push(r),
                    }
                }
                s.epoch = if s.epoch == i32::MAX { 1 } else { s.epoch + 1 };
                s.last_used = Instant::now();
                Ok((FetchContext::Incremental(session_id), s.partitions.clone()))
            }
        }
    }

    /// Records what was sent for a session's partitions (high watermark, log start), so
    /// the next incremental response can leave out partitions with nothing new.
    pub fn record_sent(&self, session_id: i32, sent: &[(String, Uuid, i32, i64, i64)]) {
        let mut guard = self.inner.lock();
        if let Some(s) = guard.1.get_mut(&session_id) {
            for (t, id, p, hw, ls) in sent {
                if let Some(x) = s
                    .partitions
                    .iter_mut()
                    .find(|x| &x.topic == t && &x.topic_id == id && x.partition == *p)
                {
                    x.last_hw = *hw;
                    x.last_log_start = *ls;
                }
            }
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().1.len()
    }

    /// True when there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: i32, off: i64) -> FetchTarget {
        FetchTarget {
            topic: "t".into(),
            topic_id: Uuid::nil(),
            partition: p,
            fetch_offset: off,
            max_bytes: 100,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            durable_offset: None,
            last_hw: -1,
            last_log_start: -1,
        }
    }

    #[test]
    fn session_lifecycle() {
        let c = FetchSessionCache::new(2);
        let (ctx, parts) = c.open(0, 0, vec![t(0, 0), t(1, 0)], &[]).expect("full");
        let FetchContext::Full(id) = ctx else {
            panic!("expected full")
        };
        assert_eq!(parts.len(), 2);
        // Incremental: change p0's offset, forget p1.
        let (ctx, parts) = c
            .open(id, 1, vec![t(0, 5)], &[("t".into(), Uuid::nil(), 1)])
            .expect("incr");
        assert_eq!(ctx, FetchContext::Incremental(id));
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].fetch_offset, 5);
        assert_eq!(
            c.open(id, 1, vec![], &[]).unwrap_err(),
            kafka_protocol::ResponseError::InvalidFetchSessionEpoch.code()
        );
        assert_eq!(
            c.open(999, 1, vec![], &[]).unwrap_err(),
            kafka_protocol::ResponseError::FetchSessionIdNotFound.code()
        );
        let (ctx, _) = c.open(id, -1, vec![t(0, 0)], &[]).expect("close");
        assert_eq!(ctx, FetchContext::Sessionless);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_with_eviction() {
        let c = FetchSessionCache::new(1);
        let _ = c.open(0, 0, vec![t(0, 0)], &[]).expect("a");
        let _ = c.open(0, 0, vec![t(0, 0)], &[]).expect("b");
        assert_eq!(c.len(), 1);
    }
}
