//! Deterministic simulation of the transaction coordinator: seeded schedules of transactional
//! producers sharing transactional ids (each speaking transaction version 0 or 2) initializing,
//! recovering (KIP-360), adding partitions and offsets, committing and aborting, retrying and
//! racing their EndTxn requests, going silent until their transactions time out, and of the
//! coordinator crashing (reloaded from its record log, markers asked for again), failing a
//! write (reloaded, the reply lost), and the marker sender writing markers partition by
//! partition. Invariants checked after every step:
//!
//! * replaying the log (decoded from its bytes) rebuilds exactly the shard's durable state;
//! * no two producers are ever granted the same producer id and epoch for an id, and the
//!   epoch granted for a producer id only grows;
//! * a producer that was fenced (another producer initialized the id after it) never gets a
//!   partition added, nor a commit or abort decided;
//! * no transaction is both committed and aborted (by decision, by Complete state, or by the
//!   markers on any partition), and a Prepare state completes as decided;
//! * once producers stop, time passes and markers are delivered, no transaction is left in a
//!   Prepare or Ongoing state.
//!
//! Seeds (issue 18): the fixed regression range 0..300 (`NAGARE_SIM_SEEDS` widens it), then
//! 100 seeds from a random base printed on each run; `NAGARE_SIM_SEED=<seed>` replays one and
//! `NAGARE_SIM_TRACE=1` prints its requests and responses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kafka_protocol::ResponseError;
use nagare_coordinator::runtime::{CoordinatorShard, Reply, RequestContext};
use nagare_transaction_coordinator::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const IDS: [&str; 2] = ["tx-a", "tx-b"];
const TOPICS: [&str; 2] = ["orders", "totals"];

#[derive(Debug, Clone, PartialEq)]
enum PState {
    /// Needs InitProducerId (new, or after an error).
    Uninit,
    /// Holds a producer id and epoch, no transaction.
    Ready,
    /// In a transaction with these partitions added.
    InTxn(BTreeSet<TopicPartition>),
    /// Sent EndTxn and waits for it to succeed (retries on CONCURRENT_TRANSACTIONS).
    Ending { commit: bool },
    /// Gone silent (a crashed client): does nothing until revived.
    Silent,
}

#[derive(Debug)]
struct Producer {
    txn_id: &'static str,
    tv: i16,
    timeout_ms: i32,
    pid: i64,
    epoch: i16,
    st: PState,
}

/// One transaction: (transactional id, its serial number among the id's transactions).
type TxnKey = (String, u64);

struct Sim {
    seed: u64,
    rng: Rng,
    now: i64,
    shard: TransactionCoordinatorShard,
    /// A follower applying the committed records from their bytes.
    replica: TransactionCoordinatorShard,
    log: Vec<TxnRecord>,
    producers: Vec<Producer>,
    next_pid: i64,
    /// Markers the sender has yet to write: (request, partitions still to write, transaction).
    markers: VecDeque<(TxnMarkerRequest, Vec<TopicPartition>, TxnKey)>,
    /// id → serial number of its latest transaction (bumped on every move to Ongoing).
    serial: BTreeMap<String, u64>,
    /// (id, pid, epoch) → producer granted it.
    grants: BTreeMap<(String, i64, i16), usize>,
    /// (id, pid) → highest epoch granted.
    max_epoch: BTreeMap<(String, i64), i16>,
    /// id → the producer whose InitProducerId succeeded last.
    owner: BTreeMap<String, usize>,
    /// Decisions: transaction → commit?
    decisions: BTreeMap<TxnKey, bool>,
    /// Markers written: (partition, transaction) → commit?
    partition_markers: BTreeMap<(TopicPartition, TxnKey), bool>,
    stats: Stats,
    /// Print every request and response (`NAGARE_SIM_TRACE=1`).
    trace: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    commits: u64,
    aborts: u64,
    fences: u64,
    timeouts: u64,
    crashes: u64,
    failed_writes: u64,
    rotations: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let config = config();
        let mut shard = TransactionCoordinatorShard::new(0, config.clone());
        shard.on_loaded(0);
        let mut replica = TransactionCoordinatorShard::new(0, config);
        replica.on_loaded(0);
        let n = 2 + rng.below(3) as usize;
        let producers = (0..n)
            .map(|i| Producer {
                txn_id: IDS[i % IDS.len()],
                tv: if rng.chance(50) { 2 } else { 0 },
                timeout_ms: 2_000 + rng.below(6_000) as i32,
                pid: -1,
                epoch: -1,
                st: PState::Uninit,
            })
            .collect();
        // Some schedules start with an id whose epoch is nearly exhausted, so that producer
        // id rotation (InitProducerId, and TV2's EndTxn) happens within the run.
        let mut log = Vec::new();
        if rng.chance(40) {
            let rec = TxnRecord::Metadata {
                transactional_id: IDS[0].to_owned(),
                value: TransactionLogValue {
                    producer_id: 900,
                    previous_producer_id: -1,
                    next_producer_id: -1,
                    producer_epoch: i16::MAX - 1 - rng.below(8) as i16,
                    transaction_timeout_ms: 5_000,
                    state: TransactionState::CompleteCommit,
                    partitions: BTreeSet::new(),
                    last_update_timestamp_ms: 0,
                    start_timestamp_ms: 0,
                    client_transaction_version: 2,
                },
            };
            shard.replay(&rec);
            replica.replay(&rec);
            log.push(rec);
        }
        Sim {
            seed,
            rng,
            now: 0,
            shard,
            replica,
            log,
            producers,
            next_pid: 1_000,
            markers: VecDeque::new(),
            serial: BTreeMap::new(),
            grants: BTreeMap::new(),
            max_epoch: BTreeMap::new(),
            owner: BTreeMap::new(),
            decisions: BTreeMap::new(),
            partition_markers: BTreeMap::new(),
            stats: Stats::default(),
            trace: std::env::var("NAGARE_SIM_TRACE").is_ok(),
        }
    }

    fn fail(&self, msg: &str) -> ! {
        panic!(
            "seed {} at t={}: {msg}\nreplay with NAGARE_SIM_SEED={}",
            self.seed, self.now, self.seed
        )
    }

    fn new_pid(&mut self) -> i64 {
        self.next_pid += 1;
        self.next_pid
    }

    /// Runs one call's result as the runtime does: the records are appended (or, if the
    /// write fails, dropped and the shard reloaded from the log, the reply lost), and the
    /// effects go to the marker sender once committed.
    fn commit(
        &mut self,
        before: BTreeMap<String, TransactionMetadata>,
        result: TxnResult,
        allow_failure: bool,
    ) -> Option<TxnResponse> {
        let effects = self.shard.take_effects();
        if allow_failure && !result.records.is_empty() && self.rng.chance(3) {
            self.stats.failed_writes += 1;
            // The runtime reloads the shard and answers NOT_COORDINATOR: the client retries.
            self.reload();
            return None;
        }
        for rec in &result.records {
            let back = TxnRecord::decode(&rec.encode_key(), rec.encode_value().as_deref())
                .unwrap_or_else(|e| self.fail(&format!("decode: {e}")));
            if &back != rec {
                self.fail("record does not round-trip through its bytes");
            }
            self.replica.replay(&back);
            self.log.push(back);
        }
        self.check_transitions(&before);
        for m in effects {
            if m.partitions.is_empty() {
                self.fail("markers asked for no partition");
            }
            self.queue_markers(m);
        }
        match result.reply {
            Reply::Now(r) => Some(r),
            Reply::None => None,
            Reply::Deferred(_) => self.fail("the transaction coordinator never defers"),
        }
    }

    /// The coordinator fails over: a new shard replays the log; the old marker sender's queue
    /// is gone and the new shard asks again for what is due.
    fn reload(&mut self) {
        let mut shard = TransactionCoordinatorShard::new(0, config());
        for r in &self.log {
            shard.replay(r);
        }
        let r = shard.on_loaded(self.now);
        if !r.records.is_empty() {
            self.fail("loading wrote records");
        }
        self.shard = shard;
        self.markers.clear();
        for m in self.shard.take_effects() {
            self.queue_markers(m);
        }
    }

    fn queue_markers(&mut self, m: TxnMarkerRequest) {
        let key = self.key_of(&m.transactional_id);
        match self.decisions.get(&key) {
            Some(&c) if c == m.commit => {}
            other => self.fail(&format!("markers {m:?} for {key:?} decided {other:?}")),
        }
        let parts = m.partitions.clone();
        self.markers.push_back((m, parts, key));
    }

    fn key_of(&self, id: &str) -> TxnKey {
        (id.to_owned(), self.serial.get(id).copied().unwrap_or(0))
    }

    fn call(&mut self, req: TxnRequest, allow_failure: bool) -> Option<TxnResponse> {
        if self.trace {
            println!("t={} {req:?}", self.now);
        }
        let before = self.shard.transactions().clone();
        let r = self.shard.handle(&RequestContext::default(), req, self.now);
        if !r.completed.is_empty() {
            self.fail("completed tokens from a shard that never parks");
        }
        let resp = self.commit(before, r, allow_failure);
        if self.trace {
            println!("    -> {resp:?}");
        }
        resp
    }

    /// Checks every state change of the last call against the decisions made so far.
    fn check_transitions(&mut self, before: &BTreeMap<String, TransactionMetadata>) {
        use TransactionState as S;
        let after = self.shard.transactions().clone();
        for (id, m) in &after {
            let old = before.get(id);
            if old == Some(m) {
                continue;
            }
            if let Some(o) = old {
                if o.producer_id != m.producer_id {
                    self.stats.rotations += 1;
                }
                if o.producer_id == m.producer_id && m.producer_epoch < o.producer_epoch {
                    self.fail(&format!(
                        "{id}: epoch went back from {} to {}",
                        o.producer_epoch, m.producer_epoch
                    ));
                }
            }
            if m.state == S::Ongoing && old.map(|o| o.state) != Some(S::Ongoing) {
                *self.serial.entry(id.clone()).or_insert(0) += 1;
            }
            match (old.map(|o| o.state), m.state) {
                (Some(S::Ongoing), S::PrepareCommit | S::PrepareAbort) => {
                    let key = self.key_of(id);
                    self.decide(key, m.state == S::PrepareCommit);
                    if m.state == S::PrepareCommit {
                        self.stats.commits += 1;
                    } else {
                        self.stats.aborts += 1;
                    }
                }
                (Some(S::PrepareCommit), s) if s != S::CompleteCommit => {
                    self.fail(&format!("{id}: PrepareCommit went to {s:?}"))
                }
                (Some(S::PrepareAbort), s) if s != S::CompleteAbort => {
                    self.fail(&format!("{id}: PrepareAbort went to {s:?}"))
                }
                (Some(S::PrepareCommit | S::PrepareAbort), _) => {}
                (_, S::PrepareCommit) => self.fail(&format!(
                    "{id}: PrepareCommit without an Ongoing transaction"
                )),
                (_, S::CompleteCommit) => {
                    self.fail(&format!("{id}: CompleteCommit without PrepareCommit"))
                }
                _ => {}
            }
            if matches!(m.state, S::Dead | S::PrepareEpochFence) {
                self.fail(&format!("{id}: stored state {:?}", m.state));
            }
        }
    }

    fn decide(&mut self, key: TxnKey, commit: bool) {
        if let Some(&prev) = self.decisions.get(&key) {
            if prev != commit {
                self.fail(&format!("transaction {key:?} both committed and aborted"));
            }
        }
        self.decisions.insert(key, commit);
    }

    fn grant(&mut self, p: usize, pid: i64, epoch: i16) {
        let id = self.producers[p].txn_id.to_owned();
        // i16::MAX is the coordinator's own, for fencing the last epoch a client may hold.
        if pid < 0 || epoch < 0 || epoch == i16::MAX {
            self.fail(&format!("producer {p} granted {pid}/{epoch}"));
        }
        if let Some(&q) = self.grants.get(&(id.clone(), pid, epoch)) {
            if q != p {
                self.fail(&format!(
                    "{id}: {pid}/{epoch} granted to producers {q} and {p}"
                ));
            }
        }
        let max = self.max_epoch.entry((id.clone(), pid)).or_insert(epoch);
        if epoch < *max {
            let m = *max;
            self.fail(&format!(
                "{id}: epoch {epoch} granted after {m} for producer id {pid}"
            ));
        }
        *max = epoch;
        self.grants.insert((id, pid, epoch), p);
        self.producers[p].pid = pid;
        self.producers[p].epoch = epoch;
    }

    fn is_owner(&self, p: usize) -> bool {
        self.owner.get(self.producers[p].txn_id) == Some(&p)
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=59 => {
                let p = self.rng.below(self.producers.len() as u64) as usize;
                self.producer_step(p);
            }
            60..=79 => self.deliver_markers(),
            80..=91 => {
                self.now += self.rng.below(1_500) as i64;
                self.tick();
            }
            92..=94 => {
                if self.trace {
                    println!("t={} coordinator crash", self.now);
                }
                self.stats.crashes += 1;
                self.reload();
            }
            95..=97 => {
                // A client goes silent (crashes) mid-transaction, or comes back.
                let p = self.rng.below(self.producers.len() as u64) as usize;
                let pr = &mut self.producers[p];
                pr.st = if pr.st == PState::Silent {
                    PState::Uninit
                } else {
                    PState::Silent
                };
            }
            _ => {
                // A stale MarkersWritten from an old sender: must be refused or harmless.
                if let Some((m, _, _)) = self.markers.front().cloned() {
                    let req = TxnRequest::MarkersWritten {
                        transactional_id: m.transactional_id.clone(),
                        producer_id: m.producer_id,
                        producer_epoch: m.producer_epoch.wrapping_sub(1),
                        commit: !m.commit,
                    };
                    if let Some(TxnResponse::MarkersWritten { error }) = self.call(req, false) {
                        if error == 0 {
                            self.fail("a wrong markers-written report was accepted");
                        }
                    }
                }
            }
        }
        self.check_replay();
    }

    fn tick(&mut self) {
        while let Some(d) = self.shard.next_deadline_ms() {
            if d > self.now {
                break;
            }
            let before = self.shard.transactions().clone();
            let ongoing_before = before
                .values()
                .filter(|m| m.state == TransactionState::Ongoing)
                .count();
            let r = self.shard.tick(self.now);
            let aborted = ongoing_before
                - self
                    .shard
                    .transactions()
                    .values()
                    .filter(|m| m.state == TransactionState::Ongoing)
                    .count();
            self.stats.timeouts += aborted as u64;
            self.commit(before, r, true);
        }
    }

    fn deliver_markers(&mut self) {
        let Some((m, mut left, key)) = self.markers.pop_front() else {
            return;
        };
        // Write the markers of a few partitions (the sender may stop halfway).
        let n = 1 + self.rng.below(left.len() as u64) as usize;
        for tp in left.drain(..n) {
            let slot = (tp.clone(), key.clone());
            if let Some(&c) = self.partition_markers.get(&slot) {
                if c != m.commit {
                    self.fail(&format!("{tp:?}: commit and abort markers for {key:?}"));
                }
            }
            self.partition_markers.insert(slot, m.commit);
        }
        if !left.is_empty() {
            self.markers.push_front((m, left, key));
            return;
        }
        let req = TxnRequest::MarkersWritten {
            transactional_id: m.transactional_id.clone(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            commit: m.commit,
        };
        match self.call(req, true) {
            Some(TxnResponse::MarkersWritten { error: 0 }) => {}
            Some(TxnResponse::MarkersWritten { error }) => {
                // Only a duplicate (the shard was reloaded and asked again) may be refused.
                let st = self.shard.transaction(&m.transactional_id).map(|t| t.state);
                if matches!(
                    st,
                    Some(TransactionState::PrepareCommit | TransactionState::PrepareAbort)
                ) && self
                    .shard
                    .transaction(&m.transactional_id)
                    .map(|t| (t.producer_id, t.producer_epoch))
                    == Some((m.producer_id, m.producer_epoch))
                {
                    self.fail(&format!(
                        "markers-written refused ({error}) for the pending transaction"
                    ));
                }
            }
            None => {
                // The write failed: the reloaded shard asked for the markers again.
            }
            Some(other) => self.fail(&format!("unexpected {other:?}")),
        }
    }

    fn producer_step(&mut self, p: usize) {
        let st = self.producers[p].st.clone();
        match st {
            PState::Silent => {}
            PState::Uninit => self.init(p, false),
            PState::Ready => match self.rng.below(10) {
                0 => self.init(p, true),
                1 => self.end(p, false), // TV2 allows an abort with nothing added
                _ => self.add(p),
            },
            PState::InTxn(_) => match self.rng.below(10) {
                0..=3 => self.add(p),
                4..=6 => self.end(p, true),
                7 | 8 => self.end(p, false),
                _ => self.init(p, true),
            },
            PState::Ending { commit } => {
                // A retry (or a duplicate of the request racing the first one).
                self.end(p, commit)
            }
        }
    }

    fn init(&mut self, p: usize, recover: bool) {
        let pr = &self.producers[p];
        let (pid, epoch) = if recover && pr.pid >= 0 {
            (pr.pid, pr.epoch)
        } else {
            (-1, -1)
        };
        let req = TxnRequest::InitProducerId {
            transactional_id: pr.txn_id.to_owned(),
            transaction_timeout_ms: pr.timeout_ms,
            producer_id: pid,
            producer_epoch: epoch,
            new_producer_id: self.new_pid(),
        };
        let fenced_before = self
            .shard
            .transaction(self.producers[p].txn_id)
            .is_some_and(|m| m.state == TransactionState::Ongoing);
        match self.call(req, true) {
            Some(TxnResponse::InitProducerId {
                error: 0,
                producer_id,
                producer_epoch,
            }) => {
                self.grant(p, producer_id, producer_epoch);
                self.owner.insert(self.producers[p].txn_id.to_owned(), p);
                self.producers[p].st = PState::Ready;
            }
            Some(TxnResponse::InitProducerId { error, .. }) => {
                if error == ResponseError::ConcurrentTransactions.code() && fenced_before {
                    self.stats.fences += 1;
                }
                if error == ResponseError::ProducerFenced.code() {
                    self.producers[p].pid = -1;
                    self.producers[p].epoch = -1;
                }
                self.producers[p].st = PState::Uninit;
            }
            None => self.producers[p].st = PState::Uninit,
            Some(other) => self.fail(&format!("unexpected {other:?}")),
        }
    }

    fn add(&mut self, p: usize) {
        let mut parts = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            parts.push(TopicPartition {
                topic: TOPICS[self.rng.below(2) as usize].to_owned(),
                partition: self.rng.below(3) as i32,
            });
        }
        let pr = &self.producers[p];
        let id = pr.txn_id.to_owned();
        let offsets = self.rng.chance(15);
        let req = if offsets {
            TxnRequest::AddOffsets {
                transactional_id: id.clone(),
                producer_id: pr.pid,
                producer_epoch: pr.epoch,
                group_id: "g".into(),
                offsets_partition: 7,
            }
        } else {
            TxnRequest::AddPartitions {
                transactional_id: id.clone(),
                producer_id: pr.pid,
                producer_epoch: pr.epoch,
                partitions: parts.clone(),
                verify_only: false,
                transaction_version: pr.tv,
            }
        };
        if offsets {
            parts = vec![TopicPartition {
                topic: CONSUMER_OFFSETS_TOPIC.into(),
                partition: 7,
            }];
        }
        let log_len = self.log.len();
        let error = match self.call(req, true) {
            Some(TxnResponse::AddPartitions { results }) => {
                let e = results[0].1;
                if results.iter().any(|(_, x)| *x != e) {
                    self.fail("mixed per-partition errors from one transaction");
                }
                e
            }
            Some(TxnResponse::AddOffsets { error }) => error,
            None => return,
            Some(other) => self.fail(&format!("unexpected {other:?}")),
        };
        if error == 0 {
            if self.log.len() > log_len && !self.is_owner(p) {
                self.fail(&format!("fenced producer {p} added partitions"));
            }
            let mut set = match &self.producers[p].st {
                PState::InTxn(s) => s.clone(),
                _ => BTreeSet::new(),
            };
            set.extend(parts);
            self.producers[p].st = PState::InTxn(set);
            // KIP-890 verification agrees.
            let m = self.shard.transaction(&id).cloned().expect("metadata");
            let pr = &self.producers[p];
            let verify = TxnRequest::AddPartitions {
                transactional_id: id,
                producer_id: pr.pid,
                producer_epoch: pr.epoch,
                partitions: m.partitions.iter().cloned().collect(),
                verify_only: true,
                transaction_version: 2,
            };
            let n = self.log.len();
            match self.call(verify, false) {
                Some(TxnResponse::AddPartitions { results }) => {
                    if results.iter().any(|(_, e)| *e != 0) || self.log.len() != n {
                        self.fail(&format!("verification disagrees: {results:?}"));
                    }
                }
                other => self.fail(&format!("unexpected {other:?}")),
            }
        } else if error == ResponseError::ProducerFenced.code()
            || error == ResponseError::InvalidProducerIdMapping.code()
        {
            self.producers[p].st = PState::Uninit;
        }
        // CONCURRENT_TRANSACTIONS: try again later in the same state.
    }

    fn end(&mut self, p: usize, commit: bool) {
        let pr = &self.producers[p];
        let id = pr.txn_id.to_owned();
        let tv = pr.tv;
        let (pid, epoch) = (pr.pid, pr.epoch);
        // The broker allocates a producer id when a TV2 bump would exhaust the epoch.
        let new_pid = if tv >= 2 && is_epoch_exhausted(epoch) {
            self.new_pid()
        } else {
            -1
        };
        let req = TxnRequest::EndTxn {
            transactional_id: id.clone(),
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            transaction_version: tv,
            new_producer_id: new_pid,
        };
        let meta_before = self.shard.transaction(&id).cloned();
        let log_len = self.log.len();
        let duplicate = self.rng.chance(15).then(|| req.clone());
        match self.call(req, true) {
            Some(TxnResponse::EndTxn {
                error: 0,
                producer_id,
                producer_epoch,
            }) => {
                // The same EndTxn arriving again right behind the first (a client retry
                // racing the answer): it must wait or repeat the answer, never decide again.
                if let Some(dup) = duplicate {
                    let n = self.log.len();
                    match self.call(dup, false) {
                        Some(TxnResponse::EndTxn { error: 51, .. }) => {}
                        Some(TxnResponse::EndTxn {
                            error: 0,
                            producer_id: p2,
                            producer_epoch: e2,
                        }) if (tv < 2 || (p2, e2) == (producer_id, producer_epoch)) => {}
                        other => self.fail(&format!("duplicate EndTxn answered {other:?}")),
                    }
                    if self.log.len() != n {
                        self.fail("a duplicate EndTxn wrote records");
                    }
                }
                let decided = self.log.len() > log_len
                    && meta_before
                        .as_ref()
                        .is_some_and(|m| m.state == TransactionState::Ongoing);
                if decided && !self.is_owner(p) {
                    self.fail(&format!("fenced producer {p} decided its transaction"));
                }
                if tv >= 2 {
                    self.grant(p, producer_id, producer_epoch);
                }
                self.producers[p].st = PState::Ready;
            }
            Some(TxnResponse::EndTxn { error, .. }) => {
                if error == ResponseError::ConcurrentTransactions.code() {
                    self.producers[p].st = PState::Ending { commit };
                } else {
                    // Fenced, wrong id, or an invalid transition: start over.
                    self.producers[p].st = PState::Uninit;
                }
            }
            None => self.producers[p].st = PState::Ending { commit },
            Some(other) => self.fail(&format!("unexpected {other:?}")),
        }
    }

    fn check_replay(&mut self) {
        let live = self.shard.durable_state();
        if self.replica.durable_state() != live {
            self.fail("the follower's replay differs from the live state");
        }
        if self.rng.chance(5) {
            let mut s = TransactionCoordinatorShard::new(0, config());
            for r in &self.log {
                s.replay(r);
            }
            if s.durable_state() != live {
                self.fail("replaying the log differs from the live state");
            }
        }
    }

    /// Producers stop; time passes past every timeout; markers are delivered, with crashes in
    /// between; nothing may stay pending.
    fn settle(&mut self) {
        for p in &mut self.producers {
            p.st = PState::Silent;
        }
        for round in 0..50 {
            self.now += 5_000;
            self.tick();
            if round % 7 == 3 {
                self.reload();
            }
            let mut guard = 0;
            while !self.markers.is_empty() && guard < 10_000 {
                self.deliver_markers();
                guard += 1;
            }
            self.check_replay();
        }
        for (id, m) in self.shard.transactions() {
            if matches!(
                m.state,
                TransactionState::Ongoing
                    | TransactionState::PrepareCommit
                    | TransactionState::PrepareAbort
            ) {
                self.fail(&format!("{id} left in {:?}", m.state));
            }
        }
        // Every partition's markers agree with the decisions: no marker pair (pid, epoch)
        // both committed and aborted was already checked as they were written.
        if self.partition_markers.is_empty() && self.stats.commits > 0 {
            self.fail("commits but no markers written");
        }
    }
}

fn config() -> TransactionCoordinatorConfig {
    TransactionCoordinatorConfig {
        transaction_max_timeout_ms: 10_000,
        transactional_id_expiration_ms: 60_000,
        abort_timed_out_transaction_cleanup_interval_ms: 1_000,
        remove_expired_transaction_cleanup_interval_ms: 20_000,
    }
}

fn run(seed: u64, steps: usize) -> Stats {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
    }
    sim.settle();
    sim.stats
}

/// The seeds a run covers (issue 18): the fixed regression range `0..fixed`, then `random`
/// seeds from a base drawn for this run, printed with the variable that replays one.
fn sim_seeds(fixed: u64, random: u64) -> Vec<u64> {
    use std::hash::BuildHasher;
    let base =
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    eprintln!(
        "seeds 0..{fixed}, then {random} from random base {base} (replay one with NAGARE_SIM_SEED=<seed>)"
    );
    (0..fixed)
        .chain((0..random).map(|i| base.wrapping_add(i)))
        .collect()
}

#[test]
fn seeded_transaction_schedules_keep_the_invariants() {
    if let Ok(seed) = std::env::var("NAGARE_SIM_SEED") {
        let seed = seed.trim().parse().expect("NAGARE_SIM_SEED is a number");
        let stats = run(seed, 600);
        println!("seed {seed}: {stats:?}");
        return;
    }
    // NAGARE_SIM_SEEDS widens the fixed range for long runs.
    let fixed = std::env::var("NAGARE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(300);
    let seeds = sim_seeds(fixed, 100);
    let mut total = Stats::default();
    for &seed in &seeds {
        let s = run(seed, 600);
        total.commits += s.commits;
        total.aborts += s.aborts;
        total.fences += s.fences;
        total.timeouts += s.timeouts;
        total.crashes += s.crashes;
        total.failed_writes += s.failed_writes;
        total.rotations += s.rotations;
    }
    let n = seeds.len() as u64;
    println!("{n} seeds: {total:?}");
    // The schedules must exercise what they claim to.
    assert!(total.commits > n, "{total:?}");
    assert!(total.aborts > n / 2, "{total:?}");
    assert!(total.fences > 10, "{total:?}");
    assert!(total.timeouts > 10, "{total:?}");
    assert!(total.crashes > n, "{total:?}");
    assert!(total.failed_writes > 10, "{total:?}");
    assert!(total.rotations > 10, "{total:?}");
}
