//! Deterministic simulation: seeded schedules of consumers joining, syncing, heartbeating,
//! committing, leaving and crashing, with time advancing and coordinator reloads — and a
//! transactional producer committing the group's offsets in transactions (TxnOffsetCommit,
//! then a COMMIT or ABORT marker), checked against a model of Kafka's rule (a committed
//! transaction's offset replaces the committed one only if written after it). A failing
//! seed is printed and replays exactly: `NAGARE_GROUP_SIM_SEED=<seed>` runs only that one.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::txn_offset_commit_request::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use nagare_coordinator::runtime::CoordinatorShard;
use nagare_coordinator::*;

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
}

#[derive(Debug, Clone, PartialEq)]
enum St {
    Idle,
    Joining,
    AwaitSync {
        generation: i32,
        members: Option<Vec<String>>,
    },
    Syncing {
        generation: i32,
    },
    Stable {
        generation: i32,
    },
    Crashed,
}

struct Client {
    member_id: String,
    st: St,
}

/// What the runtime writes to `__consumer_offsets`, as loading sees it.
enum Entry {
    /// A record, of a producer's transaction or not.
    Rec(Option<i64>, Box<CoordinatorRecord>),
    /// A COMMIT (true) or ABORT marker of a producer.
    Marker(i64, bool),
}

/// The model of the offset of `t`-0 in group `g`: (offset, write order).
type Written = Option<(i64, u64)>;

/// Applies a log entry to a shard as loading does.
fn apply(sh: &mut GroupCoordinatorShard, e: &Entry) {
    match e {
        Entry::Rec(None, r) => CoordinatorShard::replay(sh, r),
        Entry::Rec(Some(pid), r) => CoordinatorShard::replay_transactional(sh, *pid, 0, r),
        Entry::Marker(pid, commit) => {
            CoordinatorShard::replay_end_transaction_marker(sh, *pid, 0, *commit)
        }
    }
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: i64,
    shard: GroupCoordinatorShard,
    replica: GroupCoordinatorShard,
    log: Vec<Entry>,
    clients: Vec<Client>,
    /// Drives the transactional producer (its own stream, so that the schedules of the
    /// other actions stay those of their seed).
    trng: Rng,
    /// The producer id of the open transaction, and its offset unless a tombstone removed it.
    open_txn: Option<(i64, Written)>,
    next_pid: i64,
    /// The committed offset the model expects.
    model: Written,
    /// Counts accepted offset writes (the model's record order).
    order: u64,
    /// Parked request token → client index.
    parked: HashMap<RequestToken, usize>,
    /// (generation, member) → assignment the leader gave.
    leader_given: BTreeMap<(i32, String), Vec<u8>>,
    last_completed_generation: i32,
    max_generation: i32,
    rebalances: u32,
}

const G: &str = "g";

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let n = 1 + rng.below(4) as usize;
        let mut shard =
            GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default()).with_id_seed(seed);
        shard.on_loaded(0);
        let mut replica = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default());
        replica.on_loaded(0);
        Sim {
            seed,
            rng,
            now: 0,
            shard,
            replica,
            log: Vec::new(),
            trng: Rng(seed ^ 0x7478_6e5f_6f66_6673),
            open_txn: None,
            next_pid: 1000,
            model: None,
            order: 0,
            clients: (0..n)
                .map(|_| Client {
                    member_id: String::new(),
                    st: St::Idle,
                })
                .collect(),
            parked: HashMap::new(),
            leader_given: BTreeMap::new(),
            last_completed_generation: 0,
            max_generation: 0,
            rebalances: 0,
        }
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("seed {}: {msg}", self.seed)
    }

    fn generation(&self) -> i32 {
        self.shard
            .group(G)
            .map(|g| g.snapshot.generation)
            .unwrap_or(0)
    }

    fn absorb(&mut self, c: Option<usize>, r: CoordinatorResult) {
        self.absorb_as(c, r, None)
    }

    /// Absorbs a result whose records belong to `producer`'s transaction (or none).
    fn absorb_as(&mut self, c: Option<usize>, r: CoordinatorResult, producer: Option<i64>) {
        for rec in &r.records {
            let back = CoordinatorRecord::decode(&rec.encode_key(), rec.encode_value().as_deref())
                .unwrap_or_else(|e| self.fail(&format!("decode: {e}")));
            // A tombstone of the partition removes its committed and pending offsets.
            if let CoordinatorRecord::OffsetCommit {
                group_id,
                topic,
                partition: 0,
                value: None,
            } = &back
            {
                if group_id == G && topic == "t" {
                    self.model = None;
                    if let Some((_, w)) = &mut self.open_txn {
                        *w = None;
                    }
                }
            }
            let e = Entry::Rec(producer, Box::new(back));
            apply(&mut self.replica, &e);
            self.log.push(e);
        }
        match r.reply {
            Reply::Now(resp) => {
                if let Some(c) = c {
                    self.deliver(c, resp);
                }
            }
            Reply::Deferred(t) => {
                if let Some(c) = c {
                    self.parked.insert(t, c);
                }
            }
            Reply::None => {}
        }
        for (t, resp) in r.completed {
            match self.parked.remove(&t) {
                Some(c) => self.deliver(c, resp),
                None => self.fail(&format!("completion of unknown token {t:?}")),
            }
        }
    }

    fn deliver(&mut self, c: usize, resp: GroupResponse) {
        if self.clients[c].st == St::Crashed {
            return;
        }
        match resp {
            GroupResponse::JoinGroup(j) => {
                if j.error_code == 0 {
                    self.clients[c].member_id = j.member_id.as_str().to_owned();
                    let is_leader = j.leader == j.member_id;
                    let members = is_leader.then(|| {
                        j.members
                            .iter()
                            .map(|m| m.member_id.as_str().to_owned())
                            .collect()
                    });
                    self.clients[c].st = St::AwaitSync {
                        generation: j.generation_id,
                        members,
                    };
                } else {
                    if j.error_code == ResponseError::MemberIdRequired.code() {
                        self.clients[c].member_id = j.member_id.as_str().to_owned();
                    } else if j.error_code == ResponseError::UnknownMemberId.code() {
                        self.clients[c].member_id.clear();
                    }
                    self.clients[c].st = St::Idle;
                }
            }
            GroupResponse::SyncGroup(s) => {
                let St::Syncing { generation } = self.clients[c].st.clone() else {
                    return;
                };
                if s.error_code == 0 {
                    let key = (generation, self.clients[c].member_id.clone());
                    match self.leader_given.get(&key) {
                        Some(a) if a.as_slice() == s.assignment.as_ref() => {}
                        other => self.fail(&format!(
                            "member {key:?} got {:?}, leader gave {other:?}",
                            s.assignment
                        )),
                    }
                    self.clients[c].st = St::Stable { generation };
                } else {
                    if s.error_code == ResponseError::UnknownMemberId.code() {
                        self.clients[c].member_id.clear();
                    }
                    self.clients[c].st = St::Idle;
                }
            }
            GroupResponse::Heartbeat(h) => match ResponseError::try_from_code(h.error_code) {
                None => {}
                Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                    self.clients[c].member_id.clear();
                    self.clients[c].st = St::Idle;
                }
                _ => self.clients[c].st = St::Idle,
            },
            _ => {}
        }
    }

    /// The transactional producer: opens a transaction committing an offset of `t`-0 into
    /// the group (without member fields, as a producer not using KIP-447), or ends the open
    /// one with a COMMIT or ABORT marker.
    fn txn_step(&mut self) {
        match self.open_txn {
            None => {
                if self.shard.group(G).is_none() {
                    return;
                }
                self.next_pid += 1;
                let pid = self.next_pid;
                let offset = self.trng.below(1_000) as i64;
                let req = TxnOffsetCommitRequest::default()
                    .with_transactional_id(TransactionalId(s("tx")))
                    .with_group_id(GroupId(s(G)))
                    .with_producer_id(ProducerId(pid))
                    .with_generation_id(-1)
                    .with_member_id(s(""))
                    .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)])]);
                let r = self
                    .shard
                    .handle(&ctx(3), GroupRequest::TxnOffsetCommit(req), self.now);
                match &r.reply {
                    Reply::Now(GroupResponse::TxnOffsetCommit(c))
                        if c.topics[0].partitions[0].error_code == 0 => {}
                    other => self.fail(&format!("TxnOffsetCommit refused: {other:?}")),
                }
                self.order += 1;
                self.open_txn = Some((pid, Some((offset, self.order))));
                self.absorb_as(None, r, Some(pid));
            }
            Some((pid, written)) => {
                let commit = self.trng.below(2) == 0;
                let e = Entry::Marker(pid, commit);
                apply(&mut self.shard, &e);
                apply(&mut self.replica, &e);
                self.log.push(e);
                if let (true, Some(w)) = (commit, written) {
                    if self.model.is_none_or(|m| m.1 < w.1) {
                        self.model = Some(w);
                    }
                }
                self.open_txn = None;
            }
        }
    }

    fn step(&mut self) {
        if self.trng.below(100) < 10 {
            self.txn_step();
        }
        let roll = self.rng.below(100);
        if roll < 20 {
            self.now += self.rng.below(4_000) as i64;
            let r = self.shard.tick(self.now);
            self.absorb(None, r);
        } else if roll < 22 {
            self.reload();
        } else {
            let c = self.rng.below(self.clients.len() as u64) as usize;
            self.act(c);
        }
        self.check();
    }

    fn act(&mut self, c: usize) {
        let member = self.clients[c].member_id.clone();
        let st = self.clients[c].st.clone();
        let now = self.now;
        match st {
            St::Idle => {
                self.clients[c].st = St::Joining;
                let req =
                    join_req(G, &member, None, &range(&["t"])).with_rebalance_timeout_ms(15_000);
                let r = self
                    .shard
                    .handle(&ctx(9), GroupRequest::JoinGroup(req), now);
                self.absorb(Some(c), r);
            }
            St::Joining => {}
            St::AwaitSync {
                generation,
                members,
            } => {
                self.clients[c].st = St::Syncing { generation };
                let mut assignments = Vec::new();
                if let Some(ms) = members {
                    for m in ms {
                        let a = format!("{generation}:{m}:{}", self.rng.below(1000)).into_bytes();
                        self.leader_given.insert((generation, m.clone()), a.clone());
                        assignments.push((m, a));
                    }
                }
                let refs: Vec<(&str, &[u8])> = assignments
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.as_slice()))
                    .collect();
                let before = self.shard.group(G).map(|g| g.state);
                let r = self.shard.handle(
                    &ctx(5),
                    GroupRequest::SyncGroup(sync_req(G, &member, generation, &refs)),
                    now,
                );
                let completed = before == Some(GroupState::CompletingRebalance)
                    && self.shard.group(G).map(|g| g.state) == Some(GroupState::Stable);
                if completed {
                    if generation <= self.last_completed_generation {
                        self.fail(&format!(
                            "completed generation {generation} after {}",
                            self.last_completed_generation
                        ));
                    }
                    self.last_completed_generation = generation;
                    self.rebalances += 1;
                }
                self.absorb(Some(c), r);
            }
            St::Syncing { .. } => {}
            St::Stable { generation } => match self.rng.below(10) {
                0..=4 => {
                    let current = self.generation();
                    let code = heartbeat(&mut self.shard, G, &member, generation, now);
                    if code == 0 && generation != current {
                        self.fail("heartbeat of a stale generation accepted");
                    }
                    self.deliver(
                        c,
                        GroupResponse::Heartbeat(
                            HeartbeatResponse::default().with_error_code(code),
                        ),
                    );
                }
                5..=7 => {
                    // Sometimes commit with an older generation: it must be rejected.
                    let g = if self.rng.below(4) == 0 {
                        generation - 1
                    } else {
                        generation
                    };
                    let current = self.generation();
                    let offset = self.rng.below(1_000) as i64;
                    let (codes, r) = commit(
                        &mut self.shard,
                        8,
                        G,
                        &member,
                        g,
                        &[("t", 0, offset, Some("m"))],
                        now,
                    );
                    if codes[0] == 0 && g != current {
                        self.fail(&format!(
                            "commit of generation {g} accepted at generation {current}"
                        ));
                    }
                    if codes[0] == 0 {
                        self.order += 1;
                        self.model = Some((offset, self.order));
                        let c = self
                            .shard
                            .committed_offset(G, "t", 0)
                            .map(|o| (o.offset, o.metadata));
                        if c != Some((offset, "m".to_owned())) {
                            self.fail("committed offset not readable");
                        }
                    }
                    self.absorb(None, r);
                }
                8 => {
                    let req = LeaveGroupRequest::default()
                        .with_group_id(GroupId(s(G)))
                        .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
                    let r = self
                        .shard
                        .handle(&ctx(5), GroupRequest::LeaveGroup(req), now);
                    self.clients[c].member_id.clear();
                    self.clients[c].st = St::Idle;
                    self.absorb(None, r);
                }
                _ => {
                    // Crash: the member goes silent; its session must expire.
                    self.clients[c].st = St::Crashed;
                }
            },
            St::Crashed => {
                if self.rng.below(5) == 0 {
                    self.clients[c] = Client {
                        member_id: String::new(),
                        st: St::Idle,
                    };
                }
            }
        }
    }

    fn reload(&mut self) {
        for (t, resp) in self.shard.unload() {
            if let Some(c) = self.parked.remove(&t) {
                self.deliver(c, resp);
            }
        }
        if !self.parked.is_empty() {
            self.fail("unload left parked requests unanswered");
        }
        let mut fresh = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default())
            .with_id_seed(self.rng.next());
        for e in &self.log {
            apply(&mut fresh, e);
        }
        let r = fresh.on_loaded(self.now);
        self.shard = fresh;
        self.max_generation = self.generation();
        self.absorb(None, r);
        // Clients waiting on the old coordinator were told NOT_COORDINATOR and rejoin.
        for c in &mut self.clients {
            if matches!(c.st, St::Joining | St::Syncing { .. }) {
                c.st = St::Idle;
            }
        }
    }

    fn check(&mut self) {
        // Generation never goes back within one coordinator incarnation.
        let generation = self.generation();
        if generation < self.max_generation {
            self.fail(&format!(
                "generation went from {} to {generation}",
                self.max_generation
            ));
        }
        self.max_generation = generation;
        // Replay equivalence: a follower replaying every record has the same durable state.
        let live = self.shard.durable_state();
        let replica = self.replica.durable_state();
        if live.offsets != replica.offsets {
            self.fail("offsets differ from replay");
        }
        if live.pending_txn_offsets != replica.pending_txn_offsets {
            self.fail("pending transactional offsets differ from replay");
        }
        // The committed offset is the model's; a pending one is there while its transaction
        // is open (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT then).
        let committed = self.shard.committed_offset(G, "t", 0).map(|o| o.offset);
        if committed != self.model.map(|m| m.0) {
            self.fail(&format!(
                "committed offset {committed:?}, the model says {:?}",
                self.model
            ));
        }
        let pending = !live.pending_txn_offsets.is_empty();
        if pending != self.open_txn.is_some_and(|(_, w)| w.is_some()) {
            self.fail(&format!(
                "pending offsets {:?} with open transaction {:?}",
                live.pending_txn_offsets, self.open_txn
            ));
        }
        for (id, view) in &live.groups {
            if self.replica.group(id).as_ref() != Some(view) {
                self.fail(&format!(
                    "group {id} differs from replay:\n live {view:?}\n replay {:?}",
                    self.replica.group(id)
                ));
            }
        }
        for id in replica.groups.keys() {
            if self.shard.group(id).is_none() {
                self.fail(&format!("group {id} exists only in replay"));
            }
        }
        // In Stable, every member holds exactly its leader-given assignment.
        if let Some(g) = self.shard.group(G) {
            if g.state == GroupState::Stable {
                for m in self.shard.members(G) {
                    let given = self
                        .leader_given
                        .get(&(g.snapshot.generation, m.member_id.clone()));
                    if given.map(|a| a.as_slice()) != Some(m.assignment.as_ref()) {
                        self.fail(&format!(
                            "stable member {} holds {:?}, leader gave {given:?}",
                            m.member_id, m.assignment
                        ));
                    }
                }
            }
        }
    }
}

#[test]
fn seeded_schedules_keep_the_invariants() {
    let seeds: Vec<u64> = match std::env::var("NAGARE_GROUP_SIM_SEED") {
        Ok(s) => vec![s.trim().parse().expect("NAGARE_GROUP_SIM_SEED is a number")],
        Err(_) => sim_seeds(3_000, 500, "NAGARE_GROUP_SIM_SEED"),
    };
    let mut total_rebalances = 0;
    for &seed in &seeds {
        let mut sim = Sim::new(seed);
        for _ in 0..150 {
            sim.step();
        }
        // Let everything settle: crashed members expire, the survivors keep going.
        for _ in 0..20 {
            sim.now += 20_000;
            let r = sim.shard.tick(sim.now);
            sim.absorb(None, r);
            sim.check();
        }
        total_rebalances += sim.rebalances;
        // Final reload from the encoded log must give the same durable state.
        let mut fresh =
            GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default()).with_id_seed(99);
        for e in &sim.log {
            apply(&mut fresh, e);
        }
        fresh.on_loaded(sim.now);
        assert_eq!(
            fresh.durable_state().pending_txn_offsets,
            sim.shard.durable_state().pending_txn_offsets,
            "seed {seed}"
        );
        let live = sim.shard.durable_state();
        assert_eq!(fresh.durable_state().offsets, live.offsets, "seed {seed}");
        for (id, v) in &live.groups {
            assert_eq!(fresh.group(id).as_ref(), Some(v), "seed {seed}");
        }
    }
    assert!(
        seeds.len() == 1 || total_rebalances > seeds.len() as u32,
        "the schedules should rebalance a lot: {total_rebalances}"
    );
}
