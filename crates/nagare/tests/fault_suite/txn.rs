//! The fault suite's transactional workload and its checker (issue 13).
//!
//! Transactional librdkafka producers each run transactions of 1–8 records over the
//! partitions of [`TXN_TOPIC`], committing most and aborting some; read_committed consumers
//! read all the while. A transaction's outcome is what the client was told: `Committed` when
//! `commit_transaction` returned Ok, `Aborted` when `abort_transaction` did, `Unknown` when
//! the producer failed in between (it is then replaced, and the new instance's
//! `init_transactions` completes or aborts what was left — either is fine, but atomically).
//!
//! The checker looks for the anomalies Jepsen found in Kafka-compatible systems:
//! - **lost committed writes**: a committed transaction's record missing from the final
//!   read_committed log;
//! - **aborted reads**: a record of an aborted transaction in the final read_committed log or
//!   seen by a read_committed consumer;
//! - **torn transactions**: a transaction whose records are visible only in part (in the final
//!   log; and, per partition, for a consumer that read past it);
//! - **duplicates** and records nobody sent;
//! - **non-monotonic reads**: a consumer going backwards (or repeating) within a partition,
//!   or seeing at an offset what the final log does not hold there;
//! - a producer's committed transactions out of order within a partition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

/// The transactional workload's topic.
pub const TXN_TOPIC: &str = "faults-txn";
/// Its partitions.
pub const TXN_PARTITIONS: i32 = 3;

/// What the client was told about a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `commit_transaction` returned Ok.
    Committed,
    /// `abort_transaction` returned Ok.
    Aborted,
    /// The producer failed before an answer; the transaction must be all or nothing.
    Unknown,
}

/// One transaction of the workload.
#[derive(Clone, Debug)]
pub struct Txn {
    /// The producer (index) that ran it.
    pub producer: usize,
    /// Its number within the producer's run.
    pub number: usize,
    /// `(partition, value)` of every record sent in it.
    pub records: Vec<(i32, String)>,
    /// What the client was told.
    pub outcome: Outcome,
}

/// A value a read_committed consumer received.
#[derive(Clone, Debug)]
pub struct TxnObs {
    /// The consumer.
    pub consumer: usize,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Value.
    pub value: String,
}

/// Everything the transactional workload recorded.
#[derive(Default)]
pub struct TxnRecorded {
    /// Every transaction begun.
    pub txns: Mutex<Vec<Txn>>,
    /// Every value read_committed consumers received.
    pub observed: Mutex<Vec<TxnObs>>,
    /// Producer errors that made a producer be replaced.
    pub replaced: Mutex<Vec<String>>,
}

fn txn_value(producer: usize, number: usize, i: usize) -> String {
    format!("t{producer}-{number:06}-{i}")
}

/// (producer, transaction number) of a value written by [`txn_value`].
fn parse_txn_value(v: &str) -> Option<(usize, usize)> {
    let mut it = v.strip_prefix('t')?.split('-');
    let p = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    it.next()?.parse::<usize>().ok()?;
    Some((p, n))
}

fn new_txn_producer(bootstrap: &str, id: usize, incarnation: usize) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "client.id",
            format!("fault-txn-producer-{id}-{incarnation}"),
        )
        .set("transactional.id", format!("fault-txn-{id}"))
        .set("broker.address.family", "v4")
        .set("linger.ms", "5")
        .set("transaction.timeout.ms", "20000")
        .set("message.timeout.ms", "15000")
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "100")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("transactional producer")
}

/// A producer that has run `init_transactions`, made (and replaced) until it succeeds or
/// `deadline` passes.
fn ready_producer(
    bootstrap: &str,
    id: usize,
    incarnation: &mut usize,
    deadline: Instant,
    rec: &TxnRecorded,
) -> Option<BaseProducer> {
    loop {
        let p = new_txn_producer(bootstrap, id, *incarnation);
        *incarnation += 1;
        match p.init_transactions(Timeout::After(Duration::from_secs(15))) {
            Ok(()) => return Some(p),
            Err(e) => {
                rec.replaced
                    .lock()
                    .expect("replaced")
                    .push(format!("producer {id}: init_transactions: {e}"));
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// True if `e` leaves the transaction to be aborted (and the producer usable).
fn requires_abort(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.txn_requires_abort())
}

fn retriable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_retriable())
}

/// Runs transactions until `stop`; every transaction is recorded with its outcome. After
/// `stop`, a producer that failed is replaced once more so that its last transaction is
/// resolved (completed or aborted by `init_transactions`) before the final read.
pub fn run_txn_producer(
    bootstrap: String,
    id: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    rec: Arc<TxnRecorded>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9));
    let mut incarnation = 0;
    let far = || Instant::now() + Duration::from_secs(3600);
    let Some(mut producer) = ready_producer(&bootstrap, id, &mut incarnation, far(), &rec) else {
        return;
    };
    let mut number = 0;
    while !stop.load(Ordering::SeqCst) {
        let n = rng.gen_range(1..=8);
        let commit = rng.gen_bool(0.8);
        let mut txn = Txn {
            producer: id,
            number,
            records: Vec::new(),
            outcome: Outcome::Unknown,
        };
        number += 1;
        let mut broken: Option<String> = None;
        if let Err(e) = producer.begin_transaction() {
            broken = Some(format!("begin_transaction: {e}"));
        } else {
            for i in 0..n {
                let partition = rng.gen_range(0..TXN_PARTITIONS);
                let value = txn_value(id, txn.number, i);
                let mut record = BaseRecord::to(TXN_TOPIC)
                    .partition(partition)
                    .key(&value)
                    .payload(&value);
                let sent = loop {
                    match producer.send(record) {
                        Ok(()) => break Ok(()),
                        Err((e, r)) => {
                            if matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ) {
                                producer.poll(Duration::from_millis(20));
                                record = r;
                            } else {
                                break Err(e);
                            }
                        }
                    }
                };
                match sent {
                    Ok(()) => txn.records.push((partition, value)),
                    Err(e) => {
                        broken = Some(format!("send: {e}"));
                        break;
                    }
                }
            }
        }
        if broken.is_none() {
            // Serve the delivery reports first: a BaseProducer's commit/abort cannot flush
            // messages whose reports nobody polls.
            // In short polls: rust-rdkafka's `flush` polls in 100 ms steps. (Records still
            // unacknowledged after 20 s are left to the commit or abort below to report.)
            let deadline = Instant::now() + Duration::from_secs(20);
            while producer.in_flight_count() > 0 && Instant::now() < deadline {
                producer.poll(Duration::from_millis(1));
            }
            let end = |p: &BaseProducer, commit: bool| {
                let t = Timeout::After(Duration::from_secs(20));
                if commit {
                    p.commit_transaction(t)
                } else {
                    p.abort_transaction(t)
                }
            };
            let mut result = end(&producer, commit);
            // A retriable error (e.g. a timeout) leaves the call to be repeated.
            let mut tries = 0;
            while matches!(&result, Err(e) if retriable(e)) && tries < 3 {
                tries += 1;
                result = end(&producer, commit);
            }
            match result {
                Ok(()) => {
                    txn.outcome = if commit {
                        Outcome::Committed
                    } else {
                        Outcome::Aborted
                    }
                }
                Err(e) if commit && requires_abort(&e) => {
                    // The commit failed before its commit point: abort it.
                    match producer.abort_transaction(Timeout::After(Duration::from_secs(20))) {
                        Ok(()) => txn.outcome = Outcome::Aborted,
                        Err(e2) => broken = Some(format!("abort after failed commit ({e}): {e2}")),
                    }
                }
                Err(e) => {
                    broken = Some(format!("{}: {e}", if commit { "commit" } else { "abort" }))
                }
            }
        }
        rec.txns.lock().expect("txns").push(txn);
        if let Some(why) = broken {
            rec.replaced
                .lock()
                .expect("replaced")
                .push(format!("producer {id}: {why}"));
            drop(producer);
            let deadline = if stop.load(Ordering::SeqCst) {
                Instant::now() + Duration::from_secs(120)
            } else {
                far()
            };
            match ready_producer(&bootstrap, id, &mut incarnation, deadline, &rec) {
                Some(p) => producer = p,
                None => return,
            }
        }
    }
}

/// Reads every partition from the beginning with read_committed until `stop`.
pub fn run_txn_consumer(
    bootstrap: String,
    id: usize,
    stop: Arc<AtomicBool>,
    rec: Arc<TxnRecorded>,
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", format!("fault-txn-consumer-{id}"))
        .set("group.id", format!("fault-txn-consumer-{id}"))
        .set("broker.address.family", "v4")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("fetch.wait.max.ms", "200")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..TXN_PARTITIONS {
        tpl.add_partition_offset(TXN_TOPIC, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            rec.observed.lock().expect("observed").push(TxnObs {
                consumer: id,
                partition: m.partition(),
                offset: m.offset(),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            });
        }
    }
}

/// Reads the whole topic with `isolation` until the consumer's position passes each
/// partition's high watermark (transaction markers and aborted records are skipped but move
/// the position): `log[p]` is `(offset, value)` in order.
pub fn read_txn_log(bootstrap: &str, isolation: &str) -> Vec<Vec<(i64, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fault-txn-final-reader")
        .set("group.id", "fault-txn-final-reader")
        .set("broker.address.family", "v4")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let highs: Vec<i64> = (0..TXN_PARTITIONS)
        .map(|p| {
            super::eventually(Duration::from_secs(30), "watermarks", || {
                consumer
                    .fetch_watermarks(TXN_TOPIC, p, Duration::from_secs(5))
                    .ok()
                    .map(|(_, h)| h)
            })
        })
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in 0..TXN_PARTITIONS {
        tpl.add_partition_offset(TXN_TOPIC, p, Offset::Offset(0))
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut log: Vec<Vec<(i64, String)>> = vec![Vec::new(); TXN_PARTITIONS as usize];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let positions: Vec<i64> = consumer
            .position()
            .map(|tpl| {
                (0..TXN_PARTITIONS)
                    .map(|p| {
                        tpl.find_partition(TXN_TOPIC, p)
                            .and_then(|e| e.offset().to_raw())
                            .unwrap_or(-1)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let done = positions.len() == highs.len()
            && positions
                .iter()
                .zip(&highs)
                .all(|(pos, h)| *h == 0 || pos >= h);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reading the final {isolation} log timed out at positions {positions:?} of {highs:?}"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let p = m.partition() as usize;
            log[p].push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    log
}

/// What the checker is given.
#[derive(Default)]
pub struct TxnHistory {
    /// Every transaction with its outcome.
    pub txns: Vec<Txn>,
    /// read_committed observations during the run.
    pub observed: Vec<TxnObs>,
    /// The final read_committed log, per partition.
    pub committed_log: Vec<Vec<(i64, String)>>,
}

/// Checks `h`; returns every violation found (empty: every transactional promise was kept).
pub fn check_txn_history(h: &TxnHistory) -> Vec<String> {
    let mut bad = Vec::new();
    // Where each value is in the final read_committed log.
    let mut at: HashMap<&str, (i32, i64)> = HashMap::new();
    let mut by_offset: Vec<BTreeMap<i64, &str>> = Vec::new();
    let sent: HashSet<&str> = h
        .txns
        .iter()
        .flat_map(|t| t.records.iter().map(|(_, v)| v.as_str()))
        .collect();
    for (p, log) in h.committed_log.iter().enumerate() {
        let p = p as i32;
        let mut offsets = BTreeMap::new();
        let mut prev = -1;
        for (o, v) in log {
            if *o <= prev {
                bad.push(format!(
                    "partition {p}: offset {o} after {prev} in the final log"
                ));
            }
            prev = *o;
            if !sent.contains(v.as_str()) {
                bad.push(format!("partition {p} offset {o}: {v:?} was never sent"));
            }
            if let Some((p0, o0)) = at.insert(v, (p, *o)) {
                bad.push(format!(
                    "DUPLICATE: {v} at partition {p0} offset {o0} and partition {p} offset {o}"
                ));
            }
            offsets.insert(*o, v.as_str());
        }
        by_offset.push(offsets);
    }
    let aborted: HashSet<&str> = h
        .txns
        .iter()
        .filter(|t| t.outcome == Outcome::Aborted)
        .flat_map(|t| t.records.iter().map(|(_, v)| v.as_str()))
        .collect();
    for t in &h.txns {
        let visible: Vec<&(i32, String)> = t
            .records
            .iter()
            .filter(|(_, v)| at.contains_key(v.as_str()))
            .collect();
        for (p, v) in &visible {
            if let Some((q, o)) = at.get(v.as_str()) {
                if q != p {
                    bad.push(format!(
                        "MOVED: {v} sent to partition {p} is at partition {q} offset {o}"
                    ));
                }
            }
        }
        match t.outcome {
            Outcome::Committed if visible.len() != t.records.len() => bad.push(format!(
                "LOST COMMITTED WRITE: producer {} transaction {} committed {} records, {} are in the final log",
                t.producer, t.number, t.records.len(), visible.len()
            )),
            Outcome::Aborted if !visible.is_empty() => bad.push(format!(
                "ABORTED READ: producer {} transaction {} was aborted but {} of its records are in the final read_committed log",
                t.producer, t.number, visible.len()
            )),
            Outcome::Unknown if !visible.is_empty() && visible.len() != t.records.len() => {
                bad.push(format!(
                    "TORN TRANSACTION: producer {} transaction {} has {} of its {} records in the final log",
                    t.producer, t.number, visible.len(), t.records.len()
                ))
            }
            _ => {}
        }
    }
    // A producer's committed transactions are in order within each partition.
    let mut order: BTreeMap<(usize, i32), Vec<(usize, i64)>> = BTreeMap::new();
    for (v, (p, o)) in &at {
        if let Some((prod, number)) = parse_txn_value(v) {
            order.entry((prod, *p)).or_default().push((number, *o));
        }
    }
    for ((prod, p), mut v) in order {
        v.sort_unstable_by_key(|x| x.1);
        if let Some(w) = v.windows(2).find(|w| w[0].0 > w[1].0) {
            bad.push(format!(
                "producer {prod} partition {p}: transaction {} at offset {} before transaction {} at {}",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    // Observations: nothing aborted, nothing the final log does not hold, monotonic.
    let mut last: HashMap<(usize, i32), i64> = HashMap::new();
    let mut seen: HashMap<(usize, i32), HashSet<&str>> = HashMap::new();
    for ob in &h.observed {
        if aborted.contains(ob.value.as_str()) {
            bad.push(format!(
                "ABORTED READ: consumer {} saw {} (aborted) at partition {} offset {}",
                ob.consumer, ob.value, ob.partition, ob.offset
            ));
        }
        match by_offset
            .get(ob.partition as usize)
            .and_then(|m| m.get(&ob.offset))
        {
            Some(v) if *v == ob.value => {}
            other => bad.push(format!(
                "consumer {} saw {} at partition {} offset {}, the final log holds {other:?} there",
                ob.consumer, ob.value, ob.partition, ob.offset
            )),
        }
        if let Some(prev) = last.insert((ob.consumer, ob.partition), ob.offset) {
            if ob.offset <= prev {
                bad.push(format!(
                    "NON-MONOTONIC READ: consumer {} read offset {} after {prev} on partition {}",
                    ob.consumer, ob.offset, ob.partition
                ));
            }
        }
        seen.entry((ob.consumer, ob.partition))
            .or_default()
            .insert(ob.value.as_str());
    }
    // Per consumer and partition, a committed transaction it read past is seen whole.
    for ((consumer, p), values) in &seen {
        let Some(read_to) = last.get(&(*consumer, *p)) else {
            continue;
        };
        for t in &h.txns {
            let here: Vec<&str> = t
                .records
                .iter()
                .filter(|(q, v)| q == p && at.contains_key(v.as_str()))
                .map(|(_, v)| v.as_str())
                .collect();
            let Some(max_offset) = here.iter().filter_map(|v| at.get(v).map(|x| x.1)).max() else {
                continue;
            };
            if max_offset > *read_to {
                continue;
            }
            let n = here.iter().filter(|v| values.contains(*v)).count();
            if n != 0 && n != here.len() {
                bad.push(format!(
                    "TORN READ: consumer {consumer} saw {n} of the {} records of producer {} transaction {} on partition {p}",
                    here.len(), t.producer, t.number
                ));
            }
        }
    }
    bad
}

#[cfg(test)]
mod checker_tests {
    use super::*;

    fn txn(producer: usize, number: usize, parts: &[i32], outcome: Outcome) -> Txn {
        Txn {
            producer,
            number,
            records: parts
                .iter()
                .enumerate()
                .map(|(i, p)| (*p, txn_value(producer, number, i)))
                .collect(),
            outcome,
        }
    }

    /// Two committed transactions, one aborted, one unknown (invisible): consistent.
    fn sample() -> TxnHistory {
        let txns = vec![
            txn(0, 0, &[0, 1], Outcome::Committed),
            txn(0, 1, &[0], Outcome::Aborted),
            txn(0, 2, &[0, 0], Outcome::Committed),
            txn(1, 0, &[1], Outcome::Unknown),
        ];
        let committed_log = vec![
            vec![
                (0, txn_value(0, 0, 0)),
                (4, txn_value(0, 2, 0)),
                (5, txn_value(0, 2, 1)),
            ],
            vec![(0, txn_value(0, 0, 1))],
            vec![],
        ];
        let observed = vec![
            TxnObs {
                consumer: 0,
                partition: 0,
                offset: 0,
                value: txn_value(0, 0, 0),
            },
            TxnObs {
                consumer: 0,
                partition: 0,
                offset: 4,
                value: txn_value(0, 2, 0),
            },
            TxnObs {
                consumer: 0,
                partition: 0,
                offset: 5,
                value: txn_value(0, 2, 1),
            },
        ];
        TxnHistory {
            txns,
            observed,
            committed_log,
        }
    }

    #[test]
    fn accepts_a_consistent_history() {
        assert_eq!(check_txn_history(&sample()), Vec::<String>::new());
    }

    #[test]
    fn finds_each_anomaly() {
        let has = |h: &TxnHistory, what: &str| {
            let bad = check_txn_history(h);
            assert!(
                bad.iter().any(|b| b.contains(what)),
                "{what} not found in {bad:?}"
            );
        };
        // Lost committed write.
        let mut h = sample();
        h.committed_log[1].clear();
        has(&h, "LOST COMMITTED WRITE");
        // Aborted read, in the final log and by a consumer.
        let mut h = sample();
        h.committed_log[0].insert(1, (2, txn_value(0, 1, 0)));
        has(&h, "ABORTED READ");
        let mut h = sample();
        h.observed.insert(
            1,
            TxnObs {
                consumer: 0,
                partition: 0,
                offset: 2,
                value: txn_value(0, 1, 0),
            },
        );
        has(&h, "ABORTED READ");
        // Torn transaction of unknown outcome.
        let mut h = sample();
        h.txns[3] = txn(1, 0, &[1, 2], Outcome::Unknown);
        h.committed_log[1].push((3, txn_value(1, 0, 0)));
        has(&h, "TORN TRANSACTION");
        // Duplicate.
        let mut h = sample();
        h.committed_log[2].push((0, txn_value(0, 0, 0)));
        has(&h, "DUPLICATE");
        // Non-monotonic read.
        let mut h = sample();
        let again = h.observed[0].clone();
        h.observed.push(again);
        has(&h, "NON-MONOTONIC READ");
        // A consumer that read past a transaction but saw only part of it.
        let mut h = sample();
        h.observed.remove(2);
        h.observed.push(TxnObs {
            consumer: 0,
            partition: 0,
            offset: 6,
            value: "x".into(),
        });
        has(&h, "TORN READ");
        // Out of order within a producer's partition.
        let mut h = sample();
        h.committed_log[0] = vec![
            (0, txn_value(0, 2, 0)),
            (1, txn_value(0, 2, 1)),
            (4, txn_value(0, 0, 0)),
        ];
        h.observed.clear();
        has(&h, "before transaction");
    }
}
