//! Unit tests of each message handler and of the refuse-without-change guarantee.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::*;

fn config(id: NodeId, voters: &[NodeId]) -> RaftConfig {
    let mut c = RaftConfig::new(id, voters.iter().copied().collect::<BTreeSet<_>>());
    c.election_timeout_ms = 100;
    c.election_jitter_ms = 50;
    c.fetch_timeout_ms = 200;
    c.fetch_interval_ms = 10;
    c.request_timeout_ms = 50;
    c.snapshot_chunk_bytes = 4;
    c
}

fn node(id: NodeId, voters: &[NodeId]) -> RaftNode {
    let mut n = RaftNode::new(config(id, voters), PersistedState::default(), id as u64);
    n.tick(0);
    n
}

fn data(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Takes the ready batch and advances it at once (the shell did everything).
fn drain(n: &mut RaftNode) -> Ready {
    let r = n.ready().expect("a ready batch");
    n.advance(r.id).expect("advance");
    r
}

fn drain_opt(n: &mut RaftNode) -> Option<Ready> {
    let r = n.ready()?;
    n.advance(r.id).expect("advance");
    Some(r)
}

/// Instant, lossless network among `nodes`, for handler tests.
struct Cluster {
    nodes: BTreeMap<NodeId, RaftNode>,
    now: u64,
}

impl Cluster {
    fn new(voters: &[NodeId], observers: &[NodeId]) -> Self {
        let nodes = voters
            .iter()
            .chain(observers)
            .map(|&id| (id, node(id, voters)))
            .collect();
        Cluster { nodes, now: 0 }
    }

    fn deliver(&mut self) {
        for _ in 0..1000 {
            let mut msgs = Vec::new();
            for (&id, n) in self.nodes.iter_mut() {
                while let Some(r) = drain_opt(n) {
                    msgs.extend(r.messages.into_iter().map(|(to, m)| (id, to, m)));
                }
            }
            if msgs.is_empty() {
                return;
            }
            for (from, to, m) in msgs {
                if let Some(n) = self.nodes.get_mut(&to) {
                    let _ = n.step(from, m);
                }
            }
        }
        panic!("messages never settled");
    }

    fn advance_time(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            for n in self.nodes.values_mut() {
                n.tick(self.now);
            }
            self.deliver();
        }
    }

    fn get(&mut self, id: NodeId) -> &mut RaftNode {
        self.nodes.get_mut(&id).expect("node")
    }

    /// Lets node `id` time out first and win.
    fn elect(&mut self, id: NodeId) {
        self.now += 150;
        let now = self.now;
        self.get(id).tick(now);
        self.deliver();
        assert_eq!(self.get(id).role(), Role::Leader);
    }
}

#[test]
fn single_voter_elects_itself_and_commits() {
    let mut n = node(1, &[1]);
    n.tick(150);
    assert_eq!(n.role(), Role::Leader);
    assert_eq!(n.epoch(), 1);
    let r = drain(&mut n);
    assert_eq!(
        r.quorum_state,
        Some(QuorumStateRecord {
            epoch: 1,
            voted_for: Some(1),
            leader_id: Some(1)
        })
    );
    assert_eq!(r.entries.len(), 1);
    assert!(matches!(
        r.entries[0].payload,
        EntryPayload::LeaderChange { leader_id: 1 }
    ));
    // The LeaderChange entry commits once durable (advance).
    assert_eq!(n.high_watermark(), 1);
    assert_eq!(n.propose(vec![data("a"), data("b")]), Ok(1..3));
    let r = drain(&mut n);
    assert_eq!(r.entries.len(), 2);
    assert_eq!(
        r.high_watermark,
        Some(1),
        "the new entries were not durable yet"
    );
    let r = drain(&mut n);
    assert_eq!(r.high_watermark, Some(3));
}

#[test]
fn prospective_sends_pre_votes_without_changing_the_epoch() {
    let mut n = node(1, &[1, 2, 3]);
    n.tick(150);
    assert_eq!(n.role(), Role::Prospective);
    assert_eq!(n.epoch(), 0);
    let r = drain(&mut n);
    assert_eq!(r.quorum_state, None, "KIP-996: a pre-vote persists nothing");
    assert_eq!(r.messages.len(), 2);
    for (_, m) in &r.messages {
        let Message::VoteRequest(v) = m else {
            panic!("{m:?}")
        };
        assert!(v.pre_vote);
        assert_eq!(v.epoch, 1);
    }
}

#[test]
fn pre_vote_granted_only_without_recent_leader_and_with_up_to_date_log() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(20);
    let pre = |epoch, last_offset_epoch, last_offset| {
        Message::VoteRequest(VoteRequest {
            epoch,
            candidate_id: 3,
            last_offset_epoch,
            last_offset,
            pre_vote: true,
        })
    };
    // Node 2 follows a live leader: rejects (KIP-996), and stays unchanged.
    let n2 = c.get(2);
    let before = n2.fingerprint();
    n2.step(3, pre(2, 1, 10)).unwrap();
    let r = drain(n2);
    assert!(matches!(&r.messages[0].1, Message::VoteResponse(v) if !v.vote_granted && v.pre_vote));
    assert_eq!(r.quorum_state, None);
    let _ = before;
    // Once the leader is silent for fetch.timeout.ms, node 2 grants an up-to-date pre-vote ...
    let now = c.now + 300;
    let n2 = c.get(2);
    n2.tick(now);
    let _ = drain_opt(n2);
    let epoch = n2.epoch();
    n2.step(3, pre(epoch + 1, 1, 10)).unwrap();
    let r = drain(n2);
    assert!(r
        .messages
        .iter()
        .any(|(to, m)| *to == 3 && matches!(m, Message::VoteResponse(v) if v.vote_granted)));
    assert_eq!(n2.epoch(), epoch, "a pre-vote never changes the epoch");
    // ... but not one from a stale log.
    n2.step(3, pre(epoch + 1, 0, 0)).unwrap();
    let r = drain(n2);
    assert!(r
        .messages
        .iter()
        .any(|(to, m)| *to == 3 && matches!(m, Message::VoteResponse(v) if !v.vote_granted)));
}

#[test]
fn pre_vote_majority_makes_a_candidate_that_persists_before_asking() {
    let mut n = node(1, &[1, 2, 3]);
    n.tick(150);
    let _ = drain(&mut n);
    n.step(
        2,
        Message::VoteResponse(VoteResponse {
            epoch: 0,
            leader_id: None,
            vote_granted: true,
            pre_vote: true,
        }),
    )
    .unwrap();
    assert_eq!(n.role(), Role::Candidate);
    let r = drain(&mut n);
    assert_eq!(
        r.quorum_state,
        Some(QuorumStateRecord {
            epoch: 1,
            voted_for: Some(1),
            leader_id: None
        }),
        "the self-vote travels in the same batch as the requests: fsynced first"
    );
    assert!(r
        .messages
        .iter()
        .all(|(_, m)| matches!(m, Message::VoteRequest(v) if !v.pre_vote && v.epoch == 1)));
    // A majority of real votes elects it.
    n.step(
        3,
        Message::VoteResponse(VoteResponse {
            epoch: 1,
            leader_id: None,
            vote_granted: true,
            pre_vote: false,
        }),
    )
    .unwrap();
    assert_eq!(n.role(), Role::Leader);
    let r = drain(&mut n);
    assert_eq!(r.entries.len(), 1);
    let begins = r
        .messages
        .iter()
        .filter(|(_, m)| matches!(m, Message::BeginQuorumEpochRequest(b) if b.epoch == 1))
        .count();
    assert_eq!(begins, 2);
}

#[test]
fn one_vote_per_epoch_persisted_with_the_response() {
    let mut n = node(1, &[1, 2, 3]);
    let vote = |cand, epoch, last_offset| {
        Message::VoteRequest(VoteRequest {
            epoch,
            candidate_id: cand,
            last_offset_epoch: 0,
            last_offset,
            pre_vote: false,
        })
    };
    n.step(2, vote(2, 3, 0)).unwrap();
    let r = drain(&mut n);
    assert_eq!(
        r.quorum_state,
        Some(QuorumStateRecord {
            epoch: 3,
            voted_for: Some(2),
            leader_id: None
        })
    );
    assert!(matches!(&r.messages[0], (2, Message::VoteResponse(v)) if v.vote_granted));
    // Same epoch, other candidate: refused. Same candidate again: granted again.
    n.step(3, vote(3, 3, 0)).unwrap();
    let r = drain(&mut n);
    assert!(matches!(&r.messages[0], (3, Message::VoteResponse(v)) if !v.vote_granted));
    n.step(2, vote(2, 3, 0)).unwrap();
    let r = drain(&mut n);
    assert!(matches!(&r.messages[0], (2, Message::VoteResponse(v)) if v.vote_granted));
    // Older epoch: refused with our epoch.
    n.step(3, vote(3, 2, 0)).unwrap();
    let r = drain(&mut n);
    assert!(
        matches!(&r.messages[0], (3, Message::VoteResponse(v)) if !v.vote_granted && v.epoch == 3)
    );
}

#[test]
fn vote_refused_for_a_shorter_log() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.get(1).propose(vec![data("x")]).unwrap();
    c.advance_time(30);
    let n2 = c.get(2);
    let epoch = n2.epoch();
    n2.step(
        3,
        Message::VoteRequest(VoteRequest {
            epoch: epoch + 1,
            candidate_id: 3,
            last_offset_epoch: epoch,
            last_offset: 1,
            pre_vote: false,
        }),
    )
    .unwrap();
    let r = drain(n2);
    assert!(r
        .messages
        .iter()
        .any(|(to, m)| *to == 3 && matches!(m, Message::VoteResponse(v) if !v.vote_granted)));
    assert_eq!(n2.epoch(), epoch + 1, "a larger epoch is adopted anyway");
    assert_eq!(n2.quorum_state().voted_for, None);
}

#[test]
fn begin_quorum_epoch_makes_a_follower_and_fences_old_epochs() {
    let mut n = node(2, &[1, 2, 3]);
    n.step(
        1,
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            epoch: 4,
            leader_id: 1,
        }),
    )
    .unwrap();
    assert_eq!(n.role(), Role::Follower);
    let r = drain(&mut n);
    assert_eq!(
        r.quorum_state,
        Some(QuorumStateRecord {
            epoch: 4,
            voted_for: None,
            leader_id: Some(1)
        })
    );
    assert!(r
        .messages
        .iter()
        .any(|(to, m)| *to == 1 && matches!(m, Message::FetchRequest(f) if f.epoch == 4)));
    n.step(
        3,
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            epoch: 3,
            leader_id: 3,
        }),
    )
    .unwrap();
    let r = drain(&mut n);
    assert!(
        matches!(&r.messages[0], (3, Message::BeginQuorumEpochResponse(b))
        if b.error == Some(ResponseError::FencedLeaderEpoch) && b.epoch == 4)
    );
    // A second leader for the same epoch is refused, and changes nothing.
    let before = n.fingerprint();
    let e = n.step(
        3,
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            epoch: 4,
            leader_id: 3,
        }),
    );
    assert!(matches!(e, Err(StepError::Invalid(_))));
    assert_eq!(before, n.fingerprint());
}

#[test]
fn high_watermark_needs_a_majority_and_the_current_epoch() {
    let mut c = Cluster::new(&[1, 2, 3], &[9]);
    c.elect(1);
    // Cut 2 and 3 off: only the leader (and observer) have the entries.
    let n3 = c.nodes.remove(&3).unwrap();
    let n2 = c.nodes.remove(&2).unwrap();
    c.get(1).propose(vec![data("a")]).unwrap();
    c.advance_time(30);
    assert_eq!(c.get(1).high_watermark(), 1, "an observer does not count");
    c.nodes.insert(2, n2);
    c.advance_time(30);
    assert_eq!(c.get(1).high_watermark(), 2);
    assert_eq!(c.get(2).high_watermark(), 2);
    c.nodes.insert(3, n3);
    c.advance_time(30);
    let info = c.get(1).quorum_info();
    assert_eq!(info.leader_id, Some(1));
    assert_eq!(info.high_watermark, 2);
    assert!(info.voters.iter().all(|v| v.log_end_offset == 2));
    assert_eq!(info.observers.len(), 1);
    assert_eq!(info.observers[0].replica_id, 9);
    assert_eq!(c.get(9).high_watermark(), 2);
}

#[test]
fn leader_answers_a_divergent_fetch_and_the_follower_truncates() {
    // Leader 1 in epoch 3 with log [e1, e1, e3]; follower 2 has [e1, e1, e2, e2].
    let entry = |offset, epoch| Entry {
        offset,
        epoch,
        payload: EntryPayload::Data(data("p")),
    };
    let leader_state = PersistedState {
        quorum: QuorumStateRecord {
            epoch: 2,
            voted_for: None,
            leader_id: None,
        },
        snapshot: None,
        entries: vec![entry(0, 1), entry(1, 1)],
    };
    let mut l = RaftNode::new(config(1, &[1, 2, 3]), leader_state.clone(), 1);
    l.tick(0);
    let mut f_state = leader_state;
    f_state.entries.extend([entry(2, 2), entry(3, 2)]);
    let mut f = RaftNode::new(config(2, &[1, 2, 3]), f_state, 2);
    f.tick(0);
    // 1 wins epoch 3 with 3's vote.
    l.tick(150);
    l.step(
        3,
        Message::VoteResponse(VoteResponse {
            epoch: 2,
            leader_id: None,
            vote_granted: true,
            pre_vote: true,
        }),
    )
    .unwrap();
    l.step(
        3,
        Message::VoteResponse(VoteResponse {
            epoch: 3,
            leader_id: None,
            vote_granted: true,
            pre_vote: false,
        }),
    )
    .unwrap();
    assert_eq!(l.role(), Role::Leader);
    let _ = drain(&mut l);
    f.step(
        1,
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            epoch: 3,
            leader_id: 1,
        }),
    )
    .unwrap();
    let r = drain(&mut f);
    let fetch = r
        .messages
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::FetchRequest(f) => Some(f),
            _ => None,
        })
        .unwrap();
    assert_eq!((fetch.fetch_offset, fetch.last_fetched_epoch), (4, 2));
    l.step(2, Message::FetchRequest(fetch)).unwrap();
    let r = drain(&mut l);
    let Some((2, Message::FetchResponse(resp))) = r.messages.into_iter().next() else {
        panic!()
    };
    assert_eq!(
        resp.diverging_epoch,
        Some(DivergingEpoch {
            epoch: 1,
            end_offset: 2
        })
    );
    assert!(resp.records.is_empty());
    f.step(1, Message::FetchResponse(resp)).unwrap();
    let r = drain(&mut f);
    assert_eq!(r.truncate_to, Some(2));
    assert_eq!(f.log_end_offset(), 2);
    let Some((1, Message::FetchRequest(fetch))) = r.messages.into_iter().next() else {
        panic!()
    };
    assert_eq!((fetch.fetch_offset, fetch.last_fetched_epoch), (2, 1));
    l.step(2, Message::FetchRequest(fetch)).unwrap();
    let r = drain(&mut l);
    let Some((2, Message::FetchResponse(resp))) = r.messages.into_iter().next() else {
        panic!()
    };
    assert_eq!(resp.records.len(), 1);
    assert_eq!(resp.records[0].epoch, 3);
    f.step(1, Message::FetchResponse(resp.clone())).unwrap();
    assert_eq!(f.log_end_offset(), 3);
    // A duplicate of that response no longer matches the log and is ignored.
    let before = f.log_end_offset();
    f.step(1, Message::FetchResponse(resp)).unwrap();
    assert_eq!(f.log_end_offset(), before);
}

#[test]
fn invalid_messages_change_nothing() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.get(1).propose(vec![data("a")]).unwrap();
    c.advance_time(30);
    let bad: Vec<(NodeId, Message)> = vec![
        // Candidate is not the sender.
        (
            2,
            Message::VoteRequest(VoteRequest {
                epoch: 9,
                candidate_id: 3,
                last_offset_epoch: 0,
                last_offset: 0,
                pre_vote: false,
            }),
        ),
        // Non-voter asks for a vote.
        (
            7,
            Message::VoteRequest(VoteRequest {
                epoch: 9,
                candidate_id: 7,
                last_offset_epoch: 0,
                last_offset: 0,
                pre_vote: false,
            }),
        ),
        // Negative offsets.
        (
            3,
            Message::FetchRequest(FetchRequest {
                epoch: 1,
                replica_id: 3,
                fetch_offset: -5,
                last_fetched_epoch: 0,
            }),
        ),
        // Replica id is not the sender.
        (
            3,
            Message::FetchRequest(FetchRequest {
                epoch: 1,
                replica_id: 2,
                fetch_offset: 0,
                last_fetched_epoch: 0,
            }),
        ),
        // Records that do not continue the log.
        (
            1,
            Message::FetchResponse(FetchResponse {
                epoch: 1,
                leader_id: Some(1),
                error: None,
                fetch_offset: 2,
                last_fetched_epoch: 1,
                high_watermark: 99,
                diverging_epoch: None,
                snapshot_id: None,
                records: vec![Entry {
                    offset: 5,
                    epoch: 1,
                    payload: EntryPayload::Data(data("z")),
                }],
            }),
        ),
        // Begin epoch from a non-voter.
        (
            8,
            Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
                epoch: 9,
                leader_id: 8,
            }),
        ),
    ];
    for id in [1, 2] {
        for (from, m) in bad.clone() {
            let n = c.get(id);
            let before = n.fingerprint();
            let invalid = n.stats().invalid_messages;
            let r = n.step(from, m.clone());
            assert!(matches!(r, Err(StepError::Invalid(_))), "{id} {m:?}: {r:?}");
            assert_eq!(before, n.fingerprint(), "{id} changed by {m:?}");
            assert_eq!(n.stats().invalid_messages, invalid + 1);
        }
    }
    // A message claiming to come from ourselves.
    let n = c.get(2);
    let before = n.fingerprint();
    let r = n.step(
        2,
        Message::VoteResponse(VoteResponse {
            epoch: 9,
            leader_id: None,
            vote_granted: true,
            pre_vote: false,
        }),
    );
    assert!(matches!(r, Err(StepError::Invalid(_))));
    assert_eq!(before, n.fingerprint());
    // A divergence below the high watermark (a forged or buggy leader) is refused.
    let n2 = c.get(2);
    let hw = n2.high_watermark();
    assert!(hw > 0);
    let before = n2.fingerprint();
    let r = n2.step(
        1,
        Message::FetchResponse(FetchResponse {
            epoch: n2.epoch(),
            leader_id: Some(1),
            error: None,
            fetch_offset: n2.log_end_offset(),
            last_fetched_epoch: n2.last_log_epoch(),
            high_watermark: hw,
            diverging_epoch: Some(DivergingEpoch {
                epoch: 0,
                end_offset: 0,
            }),
            snapshot_id: None,
            records: vec![],
        }),
    );
    assert!(matches!(r, Err(StepError::Invalid(_))));
    assert_eq!(before, n2.fingerprint());
}

#[test]
fn refused_calls_change_nothing() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(20);
    let f = c.get(2);
    let before = f.fingerprint();
    assert_eq!(
        f.propose(vec![data("x")]),
        Err(ProposeError::NotLeader {
            leader_id: Some(1),
            epoch: 1
        })
    );
    assert_eq!(
        f.advance(ReadyId(999)),
        Err(AdvanceError::UnknownReady(999))
    );
    assert_eq!(f.resign(), Err(ResignError::NotLeader));
    assert!(f
        .snapshot_taken(Snapshot {
            id: SnapshotId {
                end_offset: 50,
                epoch: 1
            },
            data: Bytes::new()
        })
        .is_err());
    assert_eq!(before, f.fingerprint());
    let l = c.get(1);
    let before = l.fingerprint();
    assert_eq!(l.propose(vec![]), Err(ProposeError::Empty));
    let too_many = vec![data("x"); 10_001];
    assert!(matches!(
        l.propose(too_many),
        Err(ProposeError::TooMany { .. })
    ));
    // Wrong epoch for the snapshot id.
    assert!(l
        .snapshot_taken(Snapshot {
            id: SnapshotId {
                end_offset: 1,
                epoch: 7
            },
            data: Bytes::new()
        })
        .is_err());
    assert_eq!(before, l.fingerprint());
}

#[test]
fn observer_discovers_the_leader_and_never_votes() {
    let mut c = Cluster::new(&[1, 2, 3], &[9]);
    c.elect(1);
    c.advance_time(200);
    let o = c.get(9);
    assert_eq!(o.role(), Role::Follower);
    assert_eq!(o.leader_id(), Some(1));
    assert_eq!(o.log_end_offset(), 1);
    // An observer refuses votes and never campaigns.
    o.step(
        2,
        Message::VoteRequest(VoteRequest {
            epoch: 5,
            candidate_id: 2,
            last_offset_epoch: 1,
            last_offset: 1,
            pre_vote: false,
        }),
    )
    .unwrap();
    let r = drain(o);
    assert!(r
        .messages
        .iter()
        .any(|(_, m)| matches!(m, Message::VoteResponse(v) if !v.vote_granted)));
    let mut lonely = node(9, &[1, 2, 3]);
    lonely.tick(10_000);
    assert_ne!(lonely.role(), Role::Prospective);
    assert_ne!(lonely.role(), Role::Candidate);
}

#[test]
fn followers_elect_a_new_leader_when_the_leader_dies() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(50);
    let old = c.nodes.remove(&1).unwrap();
    c.advance_time(600);
    let leaders: Vec<_> = c
        .nodes
        .values()
        .filter(|n| n.role() == Role::Leader)
        .map(|n| (n.node_id(), n.epoch()))
        .collect();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert!(leaders[0].1 > 1);
    // The old leader returns: it learns the new epoch and follows.
    c.nodes.insert(1, old);
    c.advance_time(400);
    let n1 = c.get(1);
    assert_eq!(n1.role(), Role::Follower);
    assert_eq!(n1.leader_id(), Some(leaders[0].0));
}

#[test]
fn returning_partitioned_node_does_not_disrupt_the_quorum() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(50);
    let mut lonely = c.nodes.remove(&3).unwrap();
    // Partitioned, node 3 keeps pre-voting but never raises its epoch (KIP-996).
    for t in 0..2000 {
        lonely.tick(c.now + t);
        let _ = drain_opt(&mut lonely);
    }
    assert_eq!(lonely.epoch(), 1);
    c.advance_time(100);
    c.nodes.insert(3, lonely);
    c.advance_time(500);
    assert_eq!(c.get(1).role(), Role::Leader);
    assert_eq!(c.get(1).epoch(), 1);
    assert_eq!(c.get(3).leader_id(), Some(1));
}

#[test]
fn check_quorum_resigns_a_cut_off_leader() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(20);
    let mut l = c.nodes.remove(&1).unwrap();
    for t in 1..=320 {
        l.tick(c.now + t);
        let _ = drain_opt(&mut l);
    }
    assert_eq!(l.role(), Role::Resigned);
    assert!(matches!(
        l.propose(vec![data("x")]),
        Err(ProposeError::NotLeader { .. })
    ));
}

#[test]
fn resign_sends_end_quorum_epoch_and_a_successor_takes_over() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(30);
    let l = c.get(1);
    l.resign().unwrap();
    assert_eq!(l.role(), Role::Resigned);
    let r = drain(l);
    let ends: Vec<_> = r
        .messages
        .iter()
        .filter(|(_, m)| matches!(m, Message::EndQuorumEpochRequest(e) if e.preferred_successors.len() == 2))
        .collect();
    assert_eq!(ends.len(), 2);
    for (to, m) in r.messages {
        let _ = c.get(to).step(1, m);
    }
    c.deliver();
    // Well before any fetch timeout, a new leader exists.
    c.advance_time(60);
    let leaders: Vec<_> = c
        .nodes
        .values()
        .filter(|n| n.role() == Role::Leader)
        .map(|n| n.node_id())
        .collect();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 1);
}

#[test]
fn restarted_leader_resigns() {
    let st = PersistedState {
        quorum: QuorumStateRecord {
            epoch: 5,
            voted_for: Some(1),
            leader_id: Some(1),
        },
        ..Default::default()
    };
    let mut n = RaftNode::new(config(1, &[1, 2, 3]), st, 1);
    n.tick(0);
    assert_eq!(n.role(), Role::Resigned);
    assert!(n.propose(vec![data("x")]).is_err());
    // It never votes again in epoch 5 for someone else.
    n.step(
        2,
        Message::VoteRequest(VoteRequest {
            epoch: 5,
            candidate_id: 2,
            last_offset_epoch: 0,
            last_offset: 0,
            pre_vote: false,
        }),
    )
    .unwrap();
    let r = drain(&mut n);
    assert!(r
        .messages
        .iter()
        .any(|(_, m)| matches!(m, Message::VoteResponse(v) if !v.vote_granted)));
}

#[test]
fn lagging_follower_fetches_the_snapshot_in_chunks_then_the_log() {
    let mut c = Cluster::new(&[1, 2, 3], &[9]);
    c.elect(1);
    let lagging = c.nodes.remove(&3).unwrap();
    for i in 0..5 {
        c.get(1)
            .propose(vec![data(["a", "b", "c", "d", "e"][i])])
            .unwrap();
    }
    c.advance_time(30);
    let l = c.get(1);
    assert_eq!(l.high_watermark(), 6);
    let id = SnapshotId {
        end_offset: 4,
        epoch: 1,
    };
    l.snapshot_taken(Snapshot {
        id,
        data: Bytes::from_static(b"0123456789"),
    })
    .unwrap();
    assert_eq!(l.log_start_offset(), 4);
    assert!(l.entry(3).is_none());
    c.nodes.insert(3, lagging);
    c.advance_time(100);
    let n3 = c.get(3);
    assert_eq!(n3.log_start_offset(), 4);
    assert_eq!(
        n3.latest_snapshot().map(|s| s.data.clone()),
        Some(Bytes::from_static(b"0123456789"))
    );
    assert_eq!(n3.log_end_offset(), 6);
    assert_eq!(n3.high_watermark(), 6);
}

#[test]
fn fetch_snapshot_handler_serves_chunks_and_refuses_unknown_ids() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(30);
    let l = c.get(1);
    let id = SnapshotId {
        end_offset: 1,
        epoch: 1,
    };
    l.snapshot_taken(Snapshot {
        id,
        data: Bytes::from_static(b"abcdef"),
    })
    .unwrap();
    let req = |position, snapshot_id| {
        Message::FetchSnapshotRequest(FetchSnapshotRequest {
            epoch: 1,
            replica_id: 2,
            snapshot_id,
            position,
        })
    };
    l.step(2, req(4, id)).unwrap();
    l.step(
        2,
        req(
            0,
            SnapshotId {
                end_offset: 9,
                epoch: 1,
            },
        ),
    )
    .unwrap();
    l.step(2, req(7, id)).unwrap();
    let r = drain(l);
    let resps: Vec<_> = r
        .messages
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::FetchSnapshotResponse(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(resps[0].bytes, Bytes::from_static(b"ef"));
    assert_eq!(resps[0].size, 6);
    assert_eq!(resps[1].error, Some(ResponseError::SnapshotNotFound));
    assert_eq!(resps[2].error, Some(ResponseError::InvalidRequest));
}

#[test]
fn ready_merges_truncations_and_reports_only_changes() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.advance_time(30);
    let n = c.get(2);
    assert!(n.ready().is_none());
    let r1 = n.ready();
    assert!(r1.is_none());
    // Advancing twice is refused.
    let hw = n.high_watermark();
    assert!(hw >= 1);
    let info = n.quorum_info();
    assert_eq!(info.leader_id, Some(1));
    assert_eq!(info.voters.len(), 3);
}

/// Found by the simulation (liveness): a voter stuck in a higher epoch after a failed election
/// can never rejoin through pre-votes (KIP-996 keeps everyone's epoch), so the leader resends
/// BeginQuorumEpoch to voters that stopped fetching, learns the higher epoch from the fenced
/// answer, and a new election brings the voter back.
#[test]
fn voter_stuck_in_a_higher_epoch_is_brought_back() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5], &[]);
    c.elect(1);
    c.advance_time(50);
    for id in [3, 4] {
        let n = c.get(id);
        n.step(
            2,
            Message::VoteRequest(VoteRequest {
                epoch: 7,
                candidate_id: 2,
                last_offset_epoch: 0,
                last_offset: 0,
                pre_vote: false,
            }),
        )
        .unwrap();
        let _ = n.ready();
        assert_eq!(n.epoch(), 7);
    }
    c.advance_time(1500);
    let leaders: Vec<_> = c
        .nodes
        .values()
        .filter(|n| n.role() == Role::Leader)
        .map(|n| (n.node_id(), n.epoch()))
        .collect();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert!(leaders[0].1 > 7);
    for n in c.nodes.values() {
        assert_eq!(n.epoch(), leaders[0].1);
        assert_eq!(n.leader_id(), Some(leaders[0].0));
    }
}

/// Runs the "leader dies" scenario with observer 9; with `report`, the shell tells the
/// observer every millisecond that the dead leader is unreachable (what its peer task does on
/// every failed connection). Returns (when a voter led the new epoch, when the observer
/// followed it), in ms after the death.
fn observer_after_leader_death(report: bool) -> (u64, u64) {
    let mut c = Cluster::new(&[1, 2, 3], &[9]);
    c.elect(1);
    c.advance_time(200);
    assert_eq!(c.get(9).leader_id(), Some(1));
    c.nodes.remove(&1);
    let mut elected = None;
    for t in 1..=20_000u64 {
        if report {
            c.get(9).peer_unreachable(1);
        }
        c.advance_time(1);
        if elected.is_none()
            && c.nodes
                .values()
                .any(|n| n.role() == Role::Leader && n.epoch() > 1)
        {
            elected = Some(t);
        }
        if let Some(l) = c.get(9).leader_id() {
            if l != 1 {
                return (
                    elected.expect("followed a leader before one was elected"),
                    t,
                );
            }
        }
    }
    panic!("the observer never found the new leader");
}

/// KIP-595's RequestManager behaviour for observers: once its leader is unreachable the
/// observer asks the other voters every fetch interval, and follows the new leader within a
/// fetch interval or two of its election — instead of after its own fetch timeout and a
/// discovery round (which could land on the dead voter again).
#[test]
fn observer_follows_a_new_leader_right_after_its_election_when_the_old_one_is_unreachable() {
    let (elected, followed) = observer_after_leader_death(true);
    assert!(
        followed - elected <= 250,
        "elected at {elected} ms, followed at {followed} ms"
    );
    let (elected0, followed0) = observer_after_leader_death(false);
    eprintln!(
        "observer lag behind the election: {} ms when told the leader is unreachable, {} ms when not",
        followed - elected,
        followed0 - elected0
    );
}
