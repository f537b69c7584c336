//! Unit tests of the shard: every transition and error code, against Kafka's
//! `TransactionCoordinator` behaviour.

use kafka_protocol::ResponseError;
use nagare_coordinator::runtime::{CoordinatorShard, Reply, RequestContext};

use crate::record::{TransactionLogValue, TxnRecord};
use crate::*;

const E_NONE: i16 = 0;

fn e(err: ResponseError) -> i16 {
    err.code()
}

fn tp(t: &str, p: i32) -> TopicPartition {
    TopicPartition {
        topic: t.to_owned(),
        partition: p,
    }
}

struct H {
    shard: TransactionCoordinatorShard,
    log: Vec<TxnRecord>,
    now: i64,
    next_pid: i64,
    last_records: usize,
    effects: Vec<TxnMarkerRequest>,
}

impl H {
    fn new() -> Self {
        Self::with_config(TransactionCoordinatorConfig::default())
    }

    fn with_config(config: TransactionCoordinatorConfig) -> Self {
        let mut shard = TransactionCoordinatorShard::new(3, config);
        let r = shard.on_loaded(0);
        assert!(r.records.is_empty());
        H {
            shard,
            log: Vec::new(),
            now: 0,
            next_pid: 1000,
            last_records: 0,
            effects: Vec::new(),
        }
    }

    fn absorb(&mut self, records: Vec<TxnRecord>) {
        self.last_records = records.len();
        for rec in records {
            // Every record goes through its bytes, as the runtime writes and reads it.
            let back = TxnRecord::decode(&rec.encode_key(), rec.encode_value().as_deref())
                .expect("record decodes");
            assert_eq!(back, rec);
            self.log.push(back);
        }
        self.effects = self.shard.take_effects();
    }

    fn call(&mut self, req: TxnRequest) -> TxnResponse {
        let r = self.shard.handle(&RequestContext::default(), req, self.now);
        assert!(r.completed.is_empty());
        self.absorb(r.records);
        match r.reply {
            Reply::Now(resp) => resp,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn tick(&mut self, now: i64) {
        self.now = now;
        let r = self.shard.tick(now);
        assert_eq!(r.reply, Reply::None);
        self.absorb(r.records);
    }

    fn init_with(&mut self, id: &str, timeout: i32, pid: i64, epoch: i16) -> (i16, i64, i16) {
        self.next_pid += 1;
        match self.call(TxnRequest::InitProducerId {
            transactional_id: id.into(),
            transaction_timeout_ms: timeout,
            producer_id: pid,
            producer_epoch: epoch,
            new_producer_id: self.next_pid,
        }) {
            TxnResponse::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            } => (error, producer_id, producer_epoch),
            other => panic!("{other:?}"),
        }
    }

    fn init(&mut self, id: &str) -> (i64, i16) {
        let (err, pid, epoch) = self.init_with(id, 60_000, -1, -1);
        assert_eq!(err, E_NONE);
        (pid, epoch)
    }

    fn add_v(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[TopicPartition],
        verify: bool,
        tv: i16,
    ) -> Vec<i16> {
        match self.call(TxnRequest::AddPartitions {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            partitions: parts.to_vec(),
            verify_only: verify,
            transaction_version: tv,
        }) {
            TxnResponse::AddPartitions { results } => {
                assert_eq!(
                    results.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
                    parts
                );
                results.into_iter().map(|(_, e)| e).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    fn add(&mut self, id: &str, pid: i64, epoch: i16, parts: &[TopicPartition]) -> i16 {
        let errs = self.add_v(id, pid, epoch, parts, false, 0);
        assert!(errs.windows(2).all(|w| w[0] == w[1]));
        errs[0]
    }

    fn end(&mut self, id: &str, pid: i64, epoch: i16, commit: bool, tv: i16) -> (i16, i64, i16) {
        self.end_with(id, pid, epoch, commit, tv, -1)
    }

    fn end_with(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        tv: i16,
        new_pid: i64,
    ) -> (i16, i64, i16) {
        match self.call(TxnRequest::EndTxn {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            transaction_version: tv,
            new_producer_id: new_pid,
        }) {
            TxnResponse::EndTxn {
                error,
                producer_id,
                producer_epoch,
            } => (error, producer_id, producer_epoch),
            other => panic!("{other:?}"),
        }
    }

    fn markers_written(&mut self, m: &TxnMarkerRequest) -> i16 {
        match self.call(TxnRequest::MarkersWritten {
            transactional_id: m.transactional_id.clone(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            commit: m.commit,
        }) {
            TxnResponse::MarkersWritten { error } => error,
            other => panic!("{other:?}"),
        }
    }

    fn state(&self, id: &str) -> Option<TransactionState> {
        self.shard.transaction(id).map(|m| m.state)
    }

    fn meta(&self, id: &str) -> TransactionMetadata {
        self.shard.transaction(id).cloned().expect("metadata")
    }

    /// A shard rebuilt from the log.
    fn reloaded(&self) -> TransactionCoordinatorShard {
        let mut s = TransactionCoordinatorShard::new(3, TransactionCoordinatorConfig::default());
        for r in &self.log {
            s.replay(r);
        }
        s
    }

    fn assert_replay_matches(&self) {
        assert_eq!(self.reloaded().durable_state(), self.shard.durable_state());
    }

    /// Puts `value` in place for `id` as if loaded from the log.
    fn seed(&mut self, id: &str, value: TransactionLogValue) {
        let rec = TxnRecord::Metadata {
            transactional_id: id.into(),
            value,
        };
        self.shard.replay(&rec);
        self.log.push(rec);
    }
}

fn empty_value(pid: i64, epoch: i16) -> TransactionLogValue {
    TransactionLogValue {
        producer_id: pid,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: epoch,
        transaction_timeout_ms: 60_000,
        state: TransactionState::Empty,
        partitions: Default::default(),
        last_update_timestamp_ms: 0,
        start_timestamp_ms: -1,
        client_transaction_version: 0,
    }
}

#[test]
fn init_producer_id_creates_then_bumps_the_epoch() {
    let mut h = H::new();
    let (pid, epoch) = h.init("t");
    assert_eq!((pid, epoch), (1001, 0));
    assert_eq!(h.last_records, 1);
    assert_eq!(h.state("t"), Some(TransactionState::Empty));
    // A second producer with the same id: same producer id, next epoch.
    let (pid2, epoch2) = h.init("t");
    assert_eq!((pid2, epoch2), (1001, 1));
    let m = h.meta("t");
    assert_eq!(m.start_timestamp_ms, -1);
    assert!(m.partitions.is_empty());
    h.assert_replay_matches();
}

#[test]
fn init_producer_id_validates_its_input() {
    let mut h = H::new();
    assert_eq!(
        h.init_with("", 1000, -1, -1).0,
        e(ResponseError::InvalidRequest)
    );
    assert_eq!(
        h.init_with("t", 0, -1, -1).0,
        e(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        h.init_with("t", 900_001, -1, -1).0,
        e(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(h.init_with("t", 900_000, -1, -1).0, E_NONE);
    assert_eq!(
        h.init_with("t", 1000, 5, -1).0,
        e(ResponseError::InvalidRequest)
    );
    assert_eq!(
        h.init_with("t", 1000, -1, 5).0,
        e(ResponseError::InvalidRequest)
    );
    let r = h.call(TxnRequest::InitProducerId {
        transactional_id: "fresh".into(),
        transaction_timeout_ms: 1000,
        producer_id: -1,
        producer_epoch: -1,
        new_producer_id: -1,
    });
    assert!(
        matches!(r, TxnResponse::InitProducerId { error, .. } if error == e(ResponseError::CoordinatorLoadInProgress))
    );
    assert_eq!(h.state("fresh"), None);
}

#[test]
fn a_transaction_commits_through_prepare_and_markers() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    h.now = 100;
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0), tp("b", 1)]), E_NONE);
    let m = h.meta("t");
    assert_eq!(m.state, TransactionState::Ongoing);
    assert_eq!(m.start_timestamp_ms, 100);
    // Partitions already in the transaction: answered without a write.
    h.now = 150;
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0)]), E_NONE);
    assert_eq!(h.last_records, 0);
    // More partitions keep the start time.
    assert_eq!(h.add("t", pid, ep, &[tp("c", 2)]), E_NONE);
    assert_eq!(h.meta("t").start_timestamp_ms, 100);
    assert_eq!(h.meta("t").partitions.len(), 3);

    h.now = 200;
    assert_eq!(h.end("t", pid, ep, true, 0), (E_NONE, -1, -1));
    assert_eq!(h.state("t"), Some(TransactionState::PrepareCommit));
    assert_eq!(h.effects.len(), 1);
    let markers = h.effects[0].clone();
    assert_eq!(
        markers,
        TxnMarkerRequest {
            transactional_id: "t".into(),
            producer_id: pid,
            producer_epoch: ep,
            commit: true,
            partitions: vec![tp("a", 0), tp("b", 1), tp("c", 2)],
            transaction_version: 0,
        }
    );
    // While the markers are written: the same decision again waits, the other is illegal.
    assert_eq!(
        h.end("t", pid, ep, true, 0).0,
        e(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.end("t", pid, ep, false, 0).0,
        e(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        h.add("t", pid, ep, &[tp("d", 0)]),
        e(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.init_with("t", 1000, -1, -1).0,
        e(ResponseError::ConcurrentTransactions)
    );

    assert_eq!(h.markers_written(&markers), E_NONE);
    let m = h.meta("t");
    assert_eq!(m.state, TransactionState::CompleteCommit);
    assert!(m.partitions.is_empty());
    assert_eq!(m.start_timestamp_ms, 100);
    assert!(h.effects.is_empty());
    // A second report of the same markers changes nothing.
    assert_eq!(
        h.markers_written(&markers),
        e(ResponseError::InvalidTxnState)
    );
    assert_eq!(h.last_records, 0);
    // A retried EndTxn of the completed transaction succeeds; the opposite one does not.
    assert_eq!(h.end("t", pid, ep, true, 0).0, E_NONE);
    assert_eq!(
        h.end("t", pid, ep, false, 0).0,
        e(ResponseError::InvalidTxnState)
    );
    // The next transaction starts anew.
    h.now = 300;
    assert_eq!(h.add("t", pid, ep, &[tp("a", 1)]), E_NONE);
    assert_eq!(h.meta("t").start_timestamp_ms, 300);
    h.assert_replay_matches();
}

#[test]
fn an_abort_completes_as_complete_abort() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0)]), E_NONE);
    assert_eq!(h.end("t", pid, ep, false, 0).0, E_NONE);
    assert_eq!(h.state("t"), Some(TransactionState::PrepareAbort));
    let m = h.effects[0].clone();
    assert_eq!(
        h.end("t", pid, ep, false, 0).0,
        e(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.end("t", pid, ep, true, 0).0,
        e(ResponseError::InvalidTxnState)
    );
    assert!(h.effects.is_empty(), "refused requests ask for no markers");
    assert!(!m.commit);
    assert_eq!(h.markers_written(&m), E_NONE);
    assert_eq!(h.state("t"), Some(TransactionState::CompleteAbort));
    assert_eq!(h.end("t", pid, ep, false, 0).0, E_NONE);
    assert_eq!(
        h.end("t", pid, ep, true, 0).0,
        e(ResponseError::InvalidTxnState)
    );
    h.assert_replay_matches();
}

#[test]
fn requests_with_the_wrong_producer_are_refused() {
    let mut h = H::new();
    assert_eq!(
        h.add("none", 1, 0, &[tp("a", 0)]),
        e(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("none", 1, 0, true, 0).0,
        e(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add("", 1, 0, &[tp("a", 0)]),
        e(ResponseError::InvalidRequest)
    );
    assert_eq!(h.end("", 1, 0, true, 0).0, e(ResponseError::InvalidRequest));
    let (pid, ep) = h.init("t");
    assert_eq!(
        h.add("t", pid + 1, ep, &[tp("a", 0)]),
        e(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add("t", pid, ep + 1, &[tp("a", 0)]),
        e(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end("t", pid + 1, ep, true, 0).0,
        e(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("t", pid, ep + 1, true, 0).0,
        e(ResponseError::ProducerFenced)
    );
    // EndTxn with nothing begun.
    assert_eq!(
        h.end("t", pid, ep, true, 0).0,
        e(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        h.end("t", pid, ep, false, 0).0,
        e(ResponseError::InvalidTxnState)
    );
    assert!(h.log.len() == 1, "no refused request wrote anything");
}

#[test]
fn a_new_producer_fences_the_ongoing_transaction_of_the_old_one() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0), tp("a", 1)]), E_NONE);
    // The zombie's successor: the transaction is aborted with the epoch fenced and the new
    // producer retries.
    assert_eq!(
        h.init_with("t", 60_000, -1, -1).0,
        e(ResponseError::ConcurrentTransactions)
    );
    let m = h.meta("t");
    assert_eq!(m.state, TransactionState::PrepareAbort);
    assert_eq!(m.producer_epoch, ep + 1);
    // No transaction.version finalized: the fencing abort is written at 0.
    assert_eq!(m.client_transaction_version, 0);
    assert_eq!(h.effects.len(), 1);
    let markers = h.effects[0].clone();
    assert!(!markers.commit);
    assert_eq!(markers.producer_epoch, ep + 1);
    assert_eq!(markers.partitions, vec![tp("a", 0), tp("a", 1)]);
    // The old producer can neither commit nor add.
    assert_eq!(
        h.end("t", pid, ep, true, 0).0,
        e(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.add("t", pid, ep, &[tp("b", 0)]),
        e(ResponseError::ProducerFenced)
    );
    // Retries wait for the abort.
    assert_eq!(
        h.init_with("t", 60_000, -1, -1).0,
        e(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(h.markers_written(&markers), E_NONE);
    assert_eq!(h.state("t"), Some(TransactionState::CompleteAbort));
    let (err, pid2, ep2) = h.init_with("t", 60_000, -1, -1);
    assert_eq!((err, pid2, ep2), (E_NONE, pid, ep + 2));
    assert_eq!(
        h.end("t", pid, ep, false, 0).0,
        e(ResponseError::ProducerFenced)
    );
    h.assert_replay_matches();
}

#[test]
fn kip_360_recovery_bumps_the_given_epoch_and_fences_others() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    // The producer recovers with its own id and epoch.
    assert_eq!(h.init_with("t", 60_000, pid, ep), (E_NONE, pid, ep + 1));
    // Its retry (response lost) gets the same epoch again, without a bump.
    assert_eq!(h.init_with("t", 60_000, pid, ep), (E_NONE, pid, ep + 1));
    // An epoch that is neither current nor previous, or another producer id: fenced.
    assert_eq!(
        h.init_with("t", 60_000, pid, ep + 7).0,
        e(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.init_with("t", 60_000, pid + 50, ep).0,
        e(ResponseError::ProducerFenced)
    );
    // A new producer (no id given) resets the previous epoch: the old retry is fenced now.
    assert_eq!(h.init_with("t", 60_000, -1, -1), (E_NONE, pid, ep + 2));
    assert_eq!(
        h.init_with("t", 60_000, pid, ep).0,
        e(ResponseError::ProducerFenced)
    );
    // Recovery for an unknown transactional id is a fresh start.
    let (err, p, epoch) = h.init_with("u", 60_000, 77, 3);
    assert_eq!((err, epoch), (E_NONE, 0));
    assert_ne!(p, 77);
    // The previous epoch is not in the log: after a reload the retry is fenced, as in Kafka.
    let mut re = h.reloaded();
    re.on_loaded(0);
    let r = re.handle(
        &RequestContext::default(),
        TxnRequest::InitProducerId {
            transactional_id: "t".into(),
            transaction_timeout_ms: 60_000,
            producer_id: pid,
            producer_epoch: ep + 1,
            new_producer_id: 5000,
        },
        0,
    );
    assert_eq!(
        r.reply,
        Reply::Now(TxnResponse::InitProducerId {
            error: e(ResponseError::ProducerFenced),
            producer_id: -1,
            producer_epoch: -1
        })
    );
    h.assert_replay_matches();
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id() {
    let mut h = H::new();
    h.seed("t", empty_value(42, i16::MAX - 1));
    let (err, pid, ep) = h.init_with("t", 60_000, -1, -1);
    assert_eq!((err, ep), (E_NONE, 0));
    assert_eq!(pid, h.next_pid);
    assert_eq!(h.meta("t").previous_producer_id, 42);

    // KIP-360 recovery at the exhausted epoch, and its retry with the old id.
    let mut h = H::new();
    h.seed("t", empty_value(42, i16::MAX - 1));
    let (err, pid, ep) = h.init_with("t", 60_000, 42, i16::MAX - 1);
    assert_eq!((err, ep), (E_NONE, 0));
    assert_ne!(pid, 42);
    assert_eq!(h.init_with("t", 60_000, 42, i16::MAX - 1), (E_NONE, pid, 0));
    h.assert_replay_matches();
}

#[test]
fn transaction_version_2_bumps_the_epoch_on_every_end() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    assert_eq!(h.add_v("t", pid, ep, &[tp("a", 0)], false, 2), vec![E_NONE]);
    assert_eq!(h.meta("t").client_transaction_version, 2);
    assert_eq!(h.end("t", pid, ep, true, 2), (E_NONE, pid, ep + 1));
    let markers = h.effects[0].clone();
    assert_eq!(
        (markers.producer_epoch, markers.transaction_version),
        (ep + 1, 2)
    );
    // The retry of the EndTxn (old epoch) while the markers are written waits.
    assert_eq!(
        h.end("t", pid, ep, true, 2).0,
        e(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.end("t", pid, ep, false, 2).0,
        e(ResponseError::InvalidTxnState)
    );
    // The current epoch in a Prepare state is not a retry: fenced.
    assert_eq!(
        h.end("t", pid, ep + 1, true, 2).0,
        e(ResponseError::ProducerFenced)
    );
    assert_eq!(h.markers_written(&markers), E_NONE);
    assert_eq!(h.state("t"), Some(TransactionState::CompleteCommit));
    // Retry after completion: success, with the bumped epoch again.
    assert_eq!(h.end("t", pid, ep, true, 2), (E_NONE, pid, ep + 1));
    assert_eq!(
        h.end("t", pid, ep, false, 2).0,
        e(ResponseError::InvalidTxnState)
    );
    // Commit at the current epoch with nothing begun: invalid.
    assert_eq!(
        h.end("t", pid, ep + 1, true, 2).0,
        e(ResponseError::InvalidTxnState)
    );
    // An abort with nothing added bumps the epoch and completes in the same batch.
    assert_eq!(h.end("t", pid, ep + 1, false, 2), (E_NONE, pid, ep + 2));
    assert_eq!(h.last_records, 2);
    assert!(h.effects.is_empty());
    assert_eq!(h.state("t"), Some(TransactionState::CompleteAbort));
    assert_eq!(h.end("t", pid, ep + 1, false, 2), (E_NONE, pid, ep + 2));
    // A stale epoch is fenced.
    assert_eq!(
        h.end("t", pid, ep, false, 2).0,
        e(ResponseError::ProducerFenced)
    );
    // Empty: abort is allowed, commit is not.
    let (p2, e2) = h.init("u");
    assert_eq!(
        h.end("u", p2, e2, true, 2).0,
        e(ResponseError::InvalidTxnState)
    );
    assert_eq!(h.end("u", p2, e2, false, 2), (E_NONE, p2, e2 + 1));
    h.assert_replay_matches();
}

#[test]
fn transaction_version_2_rotates_an_exhausted_producer_id_at_the_end() {
    let mut h = H::new();
    h.seed("t", empty_value(42, i16::MAX - 1));
    assert_eq!(
        h.add_v("t", 42, i16::MAX - 1, &[tp("a", 0)], false, 2),
        vec![E_NONE]
    );
    // Without a new producer id the coordinator cannot go on.
    assert_eq!(
        h.end("t", 42, i16::MAX - 1, true, 2).0,
        e(ResponseError::CoordinatorLoadInProgress)
    );
    assert_eq!(
        h.end_with("t", 42, i16::MAX - 1, true, 2, 77),
        (E_NONE, 77, 0)
    );
    let markers = h.effects[0].clone();
    assert_eq!(
        (markers.producer_id, markers.producer_epoch),
        (42, i16::MAX)
    );
    // The client already holds the new id: its requests wait for the markers.
    assert_eq!(
        h.add_v("t", 77, 0, &[tp("a", 0)], false, 2),
        vec![e(ResponseError::ConcurrentTransactions)]
    );
    assert_eq!(h.markers_written(&markers), E_NONE);
    let m = h.meta("t");
    assert_eq!(
        (m.producer_id, m.producer_epoch, m.previous_producer_id),
        (77, 0, 42)
    );
    assert_eq!(m.next_producer_id, -1);
    // A retry with the old id and epoch is recognised.
    assert_eq!(h.end("t", 42, i16::MAX - 1, true, 2), (E_NONE, 77, 0));
    assert_eq!(h.add_v("t", 77, 0, &[tp("a", 0)], false, 2), vec![E_NONE]);
    h.assert_replay_matches();
}

#[test]
fn transactions_past_their_timeout_are_aborted_with_the_producer_fenced() {
    let mut h = H::new();
    // The abort is the coordinator's, so its records carry the cluster's finalized
    // transaction.version, not the client's (Kafka's abortTimedOutTransactions).
    h.shard.set_metadata(&1);
    let (err, pid, ep) = h.init_with("t", 5_000, -1, -1);
    assert_eq!(err, E_NONE);
    h.now = 1_000;
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0)]), E_NONE);
    assert_eq!(h.shard.next_deadline_ms(), Some(10_000));
    h.tick(5_999);
    assert_eq!(h.state("t"), Some(TransactionState::Ongoing), "not due yet");
    h.tick(10_000);
    let m = h.meta("t");
    assert_eq!(m.state, TransactionState::PrepareAbort);
    assert_eq!(m.producer_epoch, ep + 1);
    assert_eq!(m.client_transaction_version, 1);
    assert_eq!(h.effects.len(), 1);
    assert_eq!(h.shard.next_deadline_ms(), Some(20_000));
    let markers = h.effects[0].clone();
    assert_eq!(
        h.end("t", pid, ep, true, 0).0,
        e(ResponseError::ProducerFenced)
    );
    assert_eq!(h.markers_written(&markers), E_NONE);
    assert_eq!(h.state("t"), Some(TransactionState::CompleteAbort));
    // The fenced producer stays fenced.
    assert_eq!(
        h.add("t", pid, ep, &[tp("a", 0)]),
        e(ResponseError::ProducerFenced)
    );
    // Transaction version 2: one bump too (KAFKA-19367). The producer whose transaction
    // timed out learns it by its abort being taken as a retry: it continues at the fenced
    // epoch, while a commit is refused (on a cluster that finalized transaction.version 2,
    // where such clients run).
    h.shard.set_metadata(&2);
    let (p2, e2) = h.init("v");
    assert_eq!(h.add_v("v", p2, e2, &[tp("a", 0)], false, 2), vec![E_NONE]);
    h.tick(h.now + 70_000);
    let m = h.meta("v");
    assert_eq!(
        (m.state, m.producer_epoch),
        (TransactionState::PrepareAbort, e2 + 1)
    );
    let markers = h.effects[0].clone();
    assert_eq!(h.markers_written(&markers), E_NONE);
    assert_eq!(
        h.end("v", p2, e2, true, 2).0,
        e(ResponseError::InvalidTxnState)
    );
    assert_eq!(h.end("v", p2, e2, false, 2), (E_NONE, p2, e2 + 1));
    h.assert_replay_matches();
}

#[test]
fn idle_transactional_ids_expire() {
    let config = TransactionCoordinatorConfig {
        transactional_id_expiration_ms: 1_000,
        remove_expired_transaction_cleanup_interval_ms: 500,
        ..TransactionCoordinatorConfig::default()
    };
    let mut h = H::with_config(config);
    let (pid, ep) = h.init("done");
    h.init("busy");
    let busy = h.meta("busy");
    assert_eq!(
        h.add("busy", busy.producer_id, busy.producer_epoch, &[tp("a", 0)]),
        E_NONE
    );
    let _ = (pid, ep);
    h.tick(500);
    assert!(h.state("done").is_some(), "updated 500 ms ago");
    h.tick(1_000);
    assert_eq!(h.state("done"), None);
    assert!(
        matches!(h.log.last(), Some(TxnRecord::Tombstone { transactional_id }) if transactional_id == "done")
    );
    assert_eq!(h.state("busy"), Some(TransactionState::Ongoing));
    assert!(matches!(
        h.call(TxnRequest::Describe { transactional_id: "done".into() }),
        TxnResponse::Describe { error, description: None } if error == e(ResponseError::TransactionalIdNotFound)
    ));
    h.assert_replay_matches();
}

#[test]
fn verification_checks_partitions_without_writing() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0)]), E_NONE);
    let n = h.log.len();
    assert_eq!(
        h.add_v("t", pid, ep, &[tp("a", 0), tp("a", 1)], true, 2),
        vec![E_NONE, e(ResponseError::TransactionAbortable)]
    );
    assert_eq!(
        h.add_v("t", pid, ep + 1, &[tp("a", 0)], true, 2),
        vec![e(ResponseError::ProducerFenced)]
    );
    assert_eq!(
        h.add_v("t", pid + 1, ep, &[tp("a", 0)], true, 2),
        vec![e(ResponseError::InvalidProducerIdMapping)]
    );
    assert_eq!(
        h.add_v("x", pid, ep, &[tp("a", 0)], true, 2),
        vec![e(ResponseError::InvalidProducerIdMapping)]
    );
    assert_eq!(h.log.len(), n);
    assert_eq!(h.end("t", pid, ep, true, 0).0, E_NONE);
    assert_eq!(
        h.add_v("t", pid, ep, &[tp("a", 0)], true, 2),
        vec![e(ResponseError::ConcurrentTransactions)]
    );
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    let r = h.call(TxnRequest::AddOffsets {
        transactional_id: "t".into(),
        producer_id: pid,
        producer_epoch: ep,
        group_id: "g".into(),
        offsets_partition: 17,
    });
    assert_eq!(r, TxnResponse::AddOffsets { error: E_NONE });
    let m = h.meta("t");
    assert_eq!(m.state, TransactionState::Ongoing);
    assert!(m.partitions.contains(&tp(CONSUMER_OFFSETS_TOPIC, 17)));
    let r = h.call(TxnRequest::AddOffsets {
        transactional_id: "t".into(),
        producer_id: pid,
        producer_epoch: ep + 3,
        group_id: "g".into(),
        offsets_partition: 17,
    });
    assert_eq!(
        r,
        TxnResponse::AddOffsets {
            error: e(ResponseError::ProducerFenced)
        }
    );
}

#[test]
fn describe_and_list_report_the_shards_transactions() {
    let mut h = H::new();
    let (pa, ea) = h.init("a");
    let (pb, _) = h.init("b");
    h.now = 1_000;
    assert_eq!(h.add("a", pa, ea, &[tp("x", 1), tp("x", 0)]), E_NONE);
    h.now = 5_000;
    let r = h.call(TxnRequest::Describe {
        transactional_id: "a".into(),
    });
    assert_eq!(
        r,
        TxnResponse::Describe {
            error: E_NONE,
            description: Some(TransactionDescription {
                transactional_id: "a".into(),
                state: TransactionState::Ongoing,
                transaction_timeout_ms: 60_000,
                transaction_start_time_ms: 1_000,
                producer_id: pa,
                producer_epoch: ea,
                partitions: vec![tp("x", 0), tp("x", 1)],
            })
        }
    );
    assert!(
        matches!(h.call(TxnRequest::Describe { transactional_id: "".into() }),
        TxnResponse::Describe { error, .. } if error == e(ResponseError::InvalidRequest))
    );
    let list = |h: &mut H, states: &[&str], pids: &[i64], d: i64| -> Vec<String> {
        match h.call(TxnRequest::List {
            state_filters: states.iter().map(|s| s.to_string()).collect(),
            producer_id_filters: pids.to_vec(),
            duration_filter_ms: d,
        }) {
            TxnResponse::List {
                error: 0,
                transactions,
            } => transactions
                .into_iter()
                .map(|t| t.transactional_id)
                .collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(list(&mut h, &[], &[], -1), vec!["a", "b"]);
    assert_eq!(list(&mut h, &["Ongoing"], &[], -1), vec!["a"]);
    assert_eq!(list(&mut h, &["Empty", "Ongoing"], &[pb], -1), vec!["b"]);
    assert_eq!(
        list(&mut h, &["NoSuchState"], &[], -1),
        Vec::<String>::new()
    );
    assert_eq!(list(&mut h, &["Ongoing"], &[], 3_999), vec!["a"]);
    assert_eq!(list(&mut h, &["Ongoing"], &[], 4_000), Vec::<String>::new());
}

#[test]
fn loading_replays_and_asks_again_for_pending_markers() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0)]), E_NONE);
    assert_eq!(h.end("t", pid, ep, true, 0).0, E_NONE);
    let markers = h.effects[0].clone();
    let (p2, e2) = h.init("u");
    assert_eq!(h.add("u", p2, e2, &[tp("b", 0)]), E_NONE);

    let mut re = TransactionCoordinatorShard::new(3, TransactionCoordinatorConfig::default());
    for r in &h.log {
        re.replay(r);
    }
    // Not loaded yet: every request waits.
    let r = re.handle(
        &RequestContext::default(),
        TxnRequest::Describe {
            transactional_id: "t".into(),
        },
        0,
    );
    assert_eq!(
        r.reply,
        Reply::Now(TxnResponse::Describe {
            error: e(ResponseError::CoordinatorLoadInProgress),
            description: None
        })
    );
    let r = re.on_loaded(10);
    assert!(r.records.is_empty());
    assert_eq!(re.take_effects(), vec![markers.clone()]);
    assert_eq!(re.durable_state(), h.shard.durable_state());
    // The new coordinator completes the commit.
    let r = re.handle(
        &RequestContext::default(),
        TxnRequest::MarkersWritten {
            transactional_id: "t".into(),
            producer_id: markers.producer_id,
            producer_epoch: markers.producer_epoch,
            commit: true,
        },
        20,
    );
    assert_eq!(
        r.reply,
        Reply::Now(TxnResponse::MarkersWritten { error: E_NONE })
    );
    assert_eq!(r.records.len(), 1);
    assert_eq!(
        re.transaction("t").map(|m| m.state),
        Some(TransactionState::CompleteCommit)
    );
    // Unloading stops the timers.
    assert!(re.next_deadline_ms().is_some());
    assert!(re.unload().is_empty());
    assert_eq!(re.next_deadline_ms(), None);
}

#[test]
fn stale_marker_reports_are_refused() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    let report = |commit, pid, epoch| TxnMarkerRequest {
        transactional_id: "t".into(),
        producer_id: pid,
        producer_epoch: epoch,
        commit,
        partitions: vec![],
        transaction_version: 0,
    };
    assert_eq!(
        h.markers_written(&report(true, pid, ep)),
        e(ResponseError::InvalidTxnState)
    );
    assert_eq!(h.add("t", pid, ep, &[tp("a", 0)]), E_NONE);
    assert_eq!(h.end("t", pid, ep, false, 0).0, E_NONE);
    assert_eq!(
        h.markers_written(&report(true, pid, ep)),
        e(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        h.markers_written(&report(false, pid, ep + 1)),
        e(ResponseError::InvalidProducerEpoch)
    );
    let mut x = report(false, pid, ep);
    x.transactional_id = "nobody".into();
    assert_eq!(
        h.markers_written(&x),
        e(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(h.markers_written(&report(false, pid, ep)), E_NONE);
}

#[test]
fn error_responses_cover_every_request() {
    let code = e(ResponseError::NotCoordinator);
    let r = TransactionCoordinatorShard::error_response(
        &TxnRequest::AddPartitions {
            transactional_id: "t".into(),
            producer_id: 1,
            producer_epoch: 0,
            partitions: vec![tp("a", 0), tp("b", 1)],
            verify_only: false,
            transaction_version: 0,
        },
        &RequestContext::default(),
        code,
    );
    assert_eq!(
        r,
        TxnResponse::AddPartitions {
            results: vec![(tp("a", 0), code), (tp("b", 1), code)]
        }
    );
    let r = error_response(
        &TxnRequest::EndTxn {
            transactional_id: "t".into(),
            producer_id: 1,
            producer_epoch: 0,
            commit: true,
            transaction_version: 2,
            new_producer_id: -1,
        },
        code,
    );
    assert_eq!(
        r,
        TxnResponse::EndTxn {
            error: code,
            producer_id: -1,
            producer_epoch: -1
        }
    );
}

/// Mixed client versions on one id: a TV2 zombie's EndTxn at the epoch just below the one a
/// new producer got from InitProducerId (and kept through a version 0 EndTxn) is fenced, not
/// taken for a retry (Kafka would answer it NONE with the new producer's epoch).
#[test]
fn a_fenced_tv2_producer_is_not_mistaken_for_a_retry() {
    let mut h = H::new();
    let (pid, ep) = h.init("t");
    // Producer B takes over at ep + 1 and completes a version 0 transaction.
    let (_, pid_b, ep_b) = h.init_with("t", 60_000, -1, -1);
    assert_eq!((pid_b, ep_b), (pid, ep + 1));
    assert_eq!(h.add("t", pid_b, ep_b, &[tp("a", 0)]), E_NONE);
    assert_eq!(h.end("t", pid_b, ep_b, false, 0).0, E_NONE);
    let m = h.effects[0].clone();
    assert_eq!(h.markers_written(&m), E_NONE);
    // Zombie A (epoch ep, transaction version 2) tries to abort.
    assert_eq!(
        h.end("t", pid, ep, false, 2).0,
        e(ResponseError::ProducerFenced)
    );

    // A fence that caps at i16::MAX is not the bump of the zombie's own EndTxn either.
    let mut h = H::new();
    h.seed("t", empty_value(42, i16::MAX - 1));
    assert_eq!(
        h.add_v("t", 42, i16::MAX - 1, &[tp("a", 0)], false, 2),
        vec![E_NONE]
    );
    assert_eq!(
        h.init_with("t", 60_000, -1, -1).0,
        e(ResponseError::ConcurrentTransactions)
    );
    let m = h.effects[0].clone();
    assert_eq!(m.producer_epoch, i16::MAX);
    assert_eq!(h.markers_written(&m), E_NONE);
    assert_eq!(
        h.end("t", 42, i16::MAX - 1, false, 2).0,
        e(ResponseError::ProducerFenced)
    );
    // The new producer gets a new producer id.
    let (err, p, epoch) = h.init_with("t", 60_000, -1, -1);
    assert_eq!((err, epoch), (E_NONE, 0));
    assert_ne!(p, 42);
}

/// Kafka never writes Dead (expiry is a tombstone): a Dead value read from a log removes the
/// id rather than leaving an entry no request could move.
#[test]
fn a_dead_record_removes_the_id() {
    let mut h = H::new();
    h.init("t");
    let mut v = empty_value(1001, 0);
    v.state = TransactionState::Dead;
    h.seed("t", v);
    assert_eq!(h.state("t"), None);
    h.assert_replay_matches();
}
