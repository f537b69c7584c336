//! The group commit: fsyncs logs for the writes that wait to be durable (`acks=all` on the
//! leader, a follower before its next fetch reports the new log end).
//!
//! Each log is fsynced by its own flush, and the flushes of different logs run at the same
//! time: a waiter for one partition never waits for the fsyncs of the others. (The loop used
//! to fsync every waiting log one after the other in one round, so with six partitions per
//! broker on a busy disk a follower's fetch round took the sum of six fsyncs — the bound of
//! the RF=3 `acks=all` throughput, see BENCHMARKS.md.) Writes to one log that arrive while
//! it is being fsynced wait for its next fsync, which covers all of them: one fsync per log
//! at a time, as many waiters as arrived.

use std::collections::HashMap;
use std::sync::Arc;

use nagare_storage::Log;
use tokio::task::JoinSet;

use super::{DurableWaiter, ReplicaManager};

impl ReplicaManager {
    /// The group-commit loop: takes the waiters queued so far, starts an fsync of each
    /// waiting log that is not being fsynced already, and completes each waiter when an fsync
    /// that began after its write finished. Runs until the process ends.
    pub async fn run_group_commit(self: Arc<Self>) {
        let mut running: JoinSet<()> = JoinSet::new();
        // The logs being fsynced, by the task doing it.
        let mut busy: HashMap<tokio::task::Id, Arc<Log>> = HashMap::new();
        // Waiters of busy logs: served by the next fsync of their log.
        let mut held: Vec<DurableWaiter> = Vec::new();
        loop {
            tokio::select! {
                _ = self.flush_needed.notified() => {}
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    busy.remove(&id);
                }
            }
            held.append(&mut *self.waiters.lock());
            let mut start: Vec<(Arc<Log>, Vec<DurableWaiter>)> = Vec::new();
            for w in std::mem::take(&mut held) {
                if busy.values().any(|l| Arc::ptr_eq(l, &w.log)) {
                    held.push(w);
                    continue;
                }
                match start.iter_mut().find(|(l, _)| Arc::ptr_eq(l, &w.log)) {
                    Some((_, ws)) => ws.push(w),
                    None => start.push((w.log.clone(), vec![w])),
                }
            }
            for (log, waiters) in start {
                let me = self.clone();
                let flushed = log.clone();
                let handle = running.spawn(async move {
                    let me2 = me.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        let started = std::time::Instant::now();
                        let r = flushed.flush().map_err(|e| e.to_string());
                        me2.flush_latency.observe(started.elapsed());
                        r
                    })
                    .await
                    .unwrap_or_else(|_| Err("flush task failed".to_string()));
                    for w in waiters {
                        let res = match &result {
                            Ok(_) if w.log.recovery_point() > w.offset => Ok(()),
                            Ok(rp) => Err(format!("flushed to {rp}, short of offset {}", w.offset)),
                            Err(e) => Err(e.clone()),
                        };
                        let _ = w.done.send(res);
                    }
                });
                busy.insert(handle.id(), log);
            }
        }
    }
}
