//! Partition leader elections as pure decisions over the image (Kafka's
//! `PartitionChangeBuilder` election rules and the election parts of
//! `ReplicationControlManager`):
//!
//! - *online* (clean) elections: a new leader is always an unfenced member of the ISR;
//! - *unclean* elections (`unclean.leader.election.enable`, topic config with the broker
//!   default, false by default): when no ISR member is usable, an unfenced replica outside the
//!   ISR becomes leader and the ISR shrinks to just it — records acknowledged by the old ISR
//!   may be lost, which is why it is off by default;
//! - *preferred* elections: leadership goes back to the first replica of the assignment when
//!   it is in the ISR and unfenced (ElectLeaders type PREFERRED and the periodic
//!   `auto.leader.rebalance.enable` check);
//! - the ElectLeaders API (key 43, KIP-183 / KIP-460) with Kafka's per-partition errors.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use nagare_metadata::records::{ConfigResource, MetadataRecord};
use nagare_metadata::{MetadataImage, PartitionRegistration, TopicImage, Uuid};

/// The topic config (and broker default) that allows unclean leader elections.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// The controller's election settings (Kafka's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// `unclean.leader.election.enable` in the controller's own config: the default for topics
    /// without an override (a cluster-wide dynamic broker config takes precedence). Default
    /// false.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable` (default true).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds` in milliseconds (default 300 s).
    pub leader_imbalance_check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage` (default 10).
    pub leader_imbalance_per_broker_percentage: u32,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
        }
    }
}

/// The ElectLeaders election types (`ElectionType` in Kafka, KIP-460).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// 0: move leadership to the preferred (first) replica.
    Preferred,
    /// 1: elect a leader for leaderless partitions, out of the ISR if need be.
    Unclean,
}

impl ElectionType {
    /// From the wire value; `None` for an unknown type.
    pub fn from_wire(v: i8) -> Option<Self> {
        match v {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// Whether unclean elections are allowed for `topic`: its override, else the cluster-wide
/// dynamic broker config, else the controller's static `default`.
pub fn unclean_enabled(image: &MetadataImage, topic: &str, default: bool) -> bool {
    let parse = |v: &String| v.trim().eq_ignore_ascii_case("true");
    image
        .configs
        .get(&(ConfigResource::Topic, topic.to_string()))
        .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION_ENABLE))
        .or_else(|| {
            image
                .configs
                .get(&(ConfigResource::Broker, String::new()))
                .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION_ENABLE))
        })
        .map(parse)
        .unwrap_or(default)
}

/// How a leader may be chosen (Kafka's `PartitionChangeBuilder.Election`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Prefer the first replica, else keep a valid leader, else any valid ISR member.
    Preferred,
    /// Keep a valid leader, else any valid ISR member.
    Online,
    /// Like `Online`, then any acceptable replica outside the ISR.
    Unclean,
}

/// Chooses the leader of `p` given its target `isr` and which brokers may lead
/// (`acceptable`: registered, unfenced, not shutting down). Returns the leader (-1 for none)
/// and whether the choice was unclean (out of the ISR).
pub fn elect_leader(
    p: &PartitionRegistration,
    isr: &[i32],
    acceptable: &dyn Fn(i32) -> bool,
    election: Election,
) -> (i32, bool) {
    let valid = |r: i32| r >= 0 && isr.contains(&r) && acceptable(r);
    if election == Election::Preferred {
        if let Some(&first) = p.replicas.first() {
            if valid(first) {
                return (first, false);
            }
        }
    }
    if valid(p.leader) {
        return (p.leader, false);
    }
    if let Some(r) = p.replicas.iter().copied().find(|r| valid(*r)) {
        return (r, false);
    }
    if election == Election::Unclean {
        if let Some(r) = p.replicas.iter().copied().find(|r| acceptable(*r)) {
            return (r, true);
        }
    }
    (-1, false)
}

/// The PartitionChange record turning `p` into leader `leader` with ISR `isr`, or `None` when
/// nothing changes. A new leader bumps the leader epoch (on replay); every change bumps the
/// partition epoch.
pub fn partition_change(
    topic_id: Uuid,
    partition_id: i32,
    p: &PartitionRegistration,
    leader: i32,
    isr: Vec<i32>,
) -> Option<MetadataRecord> {
    let leader_change = (leader != p.leader).then_some(leader);
    let isr_change = (isr != p.isr).then_some(isr);
    if leader_change.is_none() && isr_change.is_none() {
        return None;
    }
    Some(MetadataRecord::PartitionChange {
        topic_id,
        partition_id,
        leader: leader_change,
        isr: isr_change,
        replicas: None,
    })
}

/// Whether `id` is registered and unfenced in `image`.
pub fn is_unfenced(image: &MetadataImage, id: i32) -> bool {
    image.brokers.get(&id).is_some_and(|b| !b.fenced)
}

/// Topics sorted by name (deterministic record order).
pub fn sorted_topics(image: &MetadataImage) -> Vec<&std::sync::Arc<TopicImage>> {
    let mut v: Vec<_> = image.topics_by_id.values().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Elects leaders for every leaderless partition: an unfenced ISR member, else — when the
/// topic allows it — an unfenced replica outside the ISR (which becomes the whole ISR).
/// `also_acceptable` counts as unfenced (a broker being unfenced by the same batch of
/// records). Kafka runs this when a broker is unfenced and periodically for unclean elections.
pub fn elect_leaderless(
    image: &MetadataImage,
    unclean_default: bool,
    also_acceptable: Option<i32>,
) -> Vec<MetadataRecord> {
    let acceptable = |r: i32| Some(r) == also_acceptable || is_unfenced(image, r);
    let mut out = Vec::new();
    for t in sorted_topics(image) {
        let mut unclean: Option<bool> = None;
        for (pid, p) in &t.partitions {
            if p.leader >= 0 {
                continue;
            }
            let (leader, _) = elect_leader(p, &p.isr, &acceptable, Election::Online);
            let (leader, was_unclean) = if leader >= 0 {
                (leader, false)
            } else if *unclean
                .get_or_insert_with(|| unclean_enabled(image, &t.name, unclean_default))
            {
                elect_leader(p, &p.isr, &acceptable, Election::Unclean)
            } else {
                (-1, false)
            };
            if leader < 0 {
                continue;
            }
            let isr = if was_unclean {
                tracing::warn!(
                    topic = %t.name,
                    partition = pid,
                    leader,
                    old_isr = ?p.isr,
                    "unclean leader election: no in-sync replica is alive, electing an out-of-sync replica (records may be lost)"
                );
                vec![leader]
            } else {
                p.isr.clone()
            };
            out.extend(partition_change(t.id, *pid, p, leader, isr));
        }
    }
    out
}

/// The answer for one partition of an ElectLeaders request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionElectionResult {
    /// Partition index.
    pub partition: i32,
    /// Kafka error code (0 when a new leader was elected).
    pub error_code: i16,
    /// Detail.
    pub error_message: Option<String>,
}

/// The answers for one topic of an ElectLeaders request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicElectionResult {
    /// Topic name.
    pub topic: String,
    /// Per-partition answers.
    pub partitions: Vec<PartitionElectionResult>,
}

/// One partition's election outcome: `Err((error code, message))`.
type Outcome = Result<(), (i16, Option<String>)>;

fn elect_one(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    election_type: ElectionType,
) -> Result<MetadataRecord, (i16, Option<String>)> {
    let Some(t) = image.topic(topic) else {
        return Err((
            ResponseError::UnknownTopicOrPartition.code(),
            Some(format!("No such topic as {topic}")),
        ));
    };
    let Some(p) = t.partitions.get(&partition) else {
        return Err((
            ResponseError::UnknownTopicOrPartition.code(),
            Some(format!("No such partition as {topic}-{partition}")),
        ));
    };
    let has_preferred = p.replicas.first().is_some_and(|r| *r == p.leader);
    if (election_type == ElectionType::Preferred && has_preferred)
        || (election_type == ElectionType::Unclean && p.leader >= 0)
    {
        return Err((ResponseError::ElectionNotNeeded.code(), None));
    }
    let acceptable = |r: i32| is_unfenced(image, r);
    let election = match election_type {
        ElectionType::Preferred => Election::Preferred,
        ElectionType::Unclean => Election::Unclean,
    };
    let (leader, unclean) = elect_leader(p, &p.isr, &acceptable, election);
    let isr = if unclean {
        tracing::warn!(
            topic,
            partition,
            leader,
            "unclean leader election requested by ElectLeaders"
        );
        vec![leader]
    } else {
        p.isr.clone()
    };
    match (leader >= 0)
        .then(|| partition_change(t.id, partition, p, leader, isr))
        .flatten()
    {
        Some(rec) => Ok(rec),
        None => Err(match election_type {
            ElectionType::Preferred => (ResponseError::PreferredLeaderNotAvailable.code(), None),
            ElectionType::Unclean => (ResponseError::EligibleLeadersNotAvailable.code(), None),
        }),
    }
}

/// ElectLeaders (Kafka's `ReplicationControlManager.electLeaders`). `partitions = None` means
/// every partition of every topic, and then partitions that need no election are left out of
/// the answer, as in Kafka. Per partition: UNKNOWN_TOPIC_OR_PARTITION, ELECTION_NOT_NEEDED
/// (PREFERRED: the preferred replica already leads; UNCLEAN: there is a leader),
/// PREFERRED_LEADER_NOT_AVAILABLE (PREFERRED: it is not an unfenced ISR member) or
/// ELIGIBLE_LEADERS_NOT_AVAILABLE (UNCLEAN: no unfenced replica at all). An unclean election
/// requested here happens whatever `unclean.leader.election.enable` says (the operator asked).
pub fn elect_leaders(
    image: &MetadataImage,
    election_type: ElectionType,
    partitions: Option<&[(String, Vec<i32>)]>,
) -> (Vec<MetadataRecord>, Vec<TopicElectionResult>) {
    let mut records = Vec::new();
    let mut results = Vec::new();
    let result = |partition: i32, r: &Outcome| match r {
        Ok(()) => PartitionElectionResult {
            partition,
            error_code: 0,
            error_message: None,
        },
        Err((code, msg)) => PartitionElectionResult {
            partition,
            error_code: *code,
            error_message: msg.clone(),
        },
    };
    match partitions {
        None => {
            for t in sorted_topics(image) {
                let mut rs = Vec::new();
                for pid in t.partitions.keys() {
                    let r = elect_one(image, &t.name, *pid, election_type).map(|rec| {
                        records.push(rec);
                    });
                    if !matches!(r, Err((code, _)) if code == ResponseError::ElectionNotNeeded.code())
                    {
                        rs.push(result(*pid, &r));
                    }
                }
                results.push(TopicElectionResult {
                    topic: t.name.clone(),
                    partitions: rs,
                });
            }
        }
        Some(list) => {
            // A partition named twice is decided once (a second record would be computed
            // from the same image and bump the epochs twice).
            let mut seen: BTreeMap<(String, i32), Outcome> = BTreeMap::new();
            for (topic, parts) in list {
                let mut rs = Vec::new();
                for pid in parts {
                    let r = seen
                        .entry((topic.clone(), *pid))
                        .or_insert_with(|| {
                            elect_one(image, topic, *pid, election_type).map(|rec| {
                                records.push(rec);
                            })
                        })
                        .clone();
                    rs.push(result(*pid, &r));
                }
                results.push(TopicElectionResult {
                    topic: topic.clone(),
                    partitions: rs,
                });
            }
        }
    }
    (records, results)
}

/// The periodic preferred-leader rebalance (`auto.leader.rebalance.enable`; the check of
/// Kafka's `checkAndTriggerAutoLeaderRebalance`): for every unfenced broker, the share of the
/// partitions whose preferred (first) replica it is but which another broker leads; when that
/// share exceeds `percentage`% (`leader.imbalance.per.broker.percentage`), each of those
/// partitions whose preferred replica is in the ISR moves its leadership back to it.
pub fn rebalance_preferred_leaders(image: &MetadataImage, percentage: u32) -> Vec<MetadataRecord> {
    // broker -> (partitions it is preferred for, those it does not lead)
    let mut per_broker: BTreeMap<i32, (u64, Vec<(Uuid, i32)>)> = BTreeMap::new();
    for t in sorted_topics(image) {
        for (pid, p) in &t.partitions {
            let Some(&preferred) = p.replicas.first() else {
                continue;
            };
            let e = per_broker.entry(preferred).or_default();
            e.0 += 1;
            if p.leader != preferred {
                e.1.push((t.id, *pid));
            }
        }
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for (broker, (total, imbalanced)) in per_broker {
        if total == 0 || imbalanced.is_empty() || !is_unfenced(image, broker) {
            continue;
        }
        // ratio > percentage / 100, in integers.
        if (imbalanced.len() as u64) * 100 <= u64::from(percentage) * total {
            continue;
        }
        tracing::info!(
            broker,
            imbalanced = imbalanced.len(),
            total,
            percentage,
            "leader imbalance above the threshold: preferred leader elections"
        );
        for (tid, pid) in imbalanced {
            let Some(p) = image.topic_by_id(&tid).and_then(|t| t.partitions.get(&pid)) else {
                continue;
            };
            if !p.isr.contains(&broker) || !done.insert((tid, pid)) {
                continue;
            }
            out.extend(partition_change(tid, pid, p, broker, p.isr.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(img: &mut MetadataImage, recs: &[MetadataRecord]) {
        for r in recs {
            let o = img.offset + 1;
            img.apply(o, r);
        }
    }

    fn broker(img: &mut MetadataImage, id: i32, fenced: bool) {
        apply(
            img,
            &[MetadataRecord::RegisterBroker {
                broker_id: id,
                broker_epoch: img.offset + 1,
                incarnation_id: Uuid::from_bytes([id as u8; 16]),
                endpoints: vec![],
                rack: None,
                fenced,
            }],
        );
    }

    fn topic(img: &mut MetadataImage, name: &str, id: u8, parts: &[(&[i32], &[i32], i32)]) -> Uuid {
        let tid = Uuid::from_bytes([id; 16]);
        let mut recs = vec![MetadataRecord::Topic {
            name: name.into(),
            topic_id: tid,
        }];
        for (i, (replicas, isr, leader)) in parts.iter().enumerate() {
            recs.push(MetadataRecord::Partition {
                topic_id: tid,
                partition_id: i as i32,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                leader: *leader,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        apply(img, &recs);
        tid
    }

    fn part(img: &MetadataImage, t: &str, p: i32) -> PartitionRegistration {
        img.topic(t)
            .and_then(|t| t.partitions.get(&p).cloned())
            .expect("partition")
    }

    fn set_config(img: &mut MetadataImage, res: ConfigResource, name: &str, v: &str) {
        apply(
            img,
            &[MetadataRecord::Config {
                resource: res,
                resource_name: name.into(),
                name: UNCLEAN_LEADER_ELECTION_ENABLE.into(),
                value: Some(v.into()),
            }],
        );
    }

    #[test]
    fn election_rules() {
        let p = PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![2, 3],
            leader: 3,
            leader_epoch: 0,
            partition_epoch: 0,
        };
        let all = |_: i32| true;
        // Online keeps a valid leader; preferred moves to the first replica only if in ISR.
        assert_eq!(elect_leader(&p, &p.isr, &all, Election::Online), (3, false));
        assert_eq!(
            elect_leader(&p, &p.isr, &all, Election::Preferred),
            (3, false)
        );
        assert_eq!(
            elect_leader(&p, &[1, 2, 3], &all, Election::Preferred),
            (1, false)
        );
        // Leader not acceptable: the first acceptable ISR member in replica order.
        let not3 = |r: i32| r != 3;
        assert_eq!(
            elect_leader(&p, &p.isr, &not3, Election::Online),
            (2, false)
        );
        // Nobody in the ISR acceptable: none, unless unclean.
        let only1 = |r: i32| r == 1;
        assert_eq!(
            elect_leader(&p, &p.isr, &only1, Election::Online),
            (-1, false)
        );
        assert_eq!(
            elect_leader(&p, &p.isr, &only1, Election::Unclean),
            (1, true)
        );
        let none = |_: i32| false;
        assert_eq!(
            elect_leader(&p, &p.isr, &none, Election::Unclean),
            (-1, false)
        );
    }

    #[test]
    fn unclean_config_precedence() {
        let mut img = MetadataImage::empty();
        topic(&mut img, "t", 1, &[]);
        assert!(!unclean_enabled(&img, "t", false));
        assert!(unclean_enabled(&img, "t", true));
        set_config(&mut img, ConfigResource::Broker, "", "true");
        assert!(unclean_enabled(&img, "t", false));
        set_config(&mut img, ConfigResource::Topic, "t", "false");
        assert!(!unclean_enabled(&img, "t", true));
    }

    #[test]
    fn leaderless_partitions_elect_cleanly_then_uncleanly_only_when_enabled() {
        let mut img = MetadataImage::empty();
        broker(&mut img, 1, true);
        broker(&mut img, 2, false);
        broker(&mut img, 3, true);
        // p0: ISR [1] (fenced), replica 2 alive but out of sync. p1: ISR [3,2] leaderless.
        topic(
            &mut img,
            "t",
            1,
            &[(&[1, 2], &[1], -1), (&[3, 2], &[3, 2], -1)],
        );
        let recs = elect_leaderless(&img, false, None);
        apply(&mut img, &recs);
        // Clean: p1 gets 2 (in its ISR); p0 stays leaderless.
        assert_eq!(part(&img, "t", 1).leader, 2);
        assert_eq!(part(&img, "t", 1).isr, vec![3, 2]);
        assert_eq!(part(&img, "t", 0).leader, -1);
        assert!(elect_leaderless(&img, false, None).is_empty());
        // Enabled on the topic: 2 becomes leader, alone in the ISR, with a new leader epoch.
        set_config(&mut img, ConfigResource::Topic, "t", "true");
        let recs = elect_leaderless(&img, false, None);
        assert_eq!(recs.len(), 1);
        apply(&mut img, &recs);
        let p0 = part(&img, "t", 0);
        assert_eq!(
            (p0.leader, p0.isr.clone(), p0.leader_epoch),
            (2, vec![2], 1)
        );
        assert_eq!(p0.partition_epoch, 1);
        // A broker being unfenced counts as acceptable.
        topic(&mut img, "u", 2, &[(&[3], &[3], -1)]);
        assert!(elect_leaderless(&img, false, None).is_empty());
        let recs = elect_leaderless(&img, false, Some(3));
        apply(&mut img, &recs);
        assert_eq!(part(&img, "u", 0).leader, 3);
    }

    #[test]
    fn elect_leaders_api_errors_and_results() {
        let mut img = MetadataImage::empty();
        for id in 1..=3 {
            broker(&mut img, id, false);
        }
        topic(
            &mut img,
            "t",
            1,
            &[
                (&[1, 2], &[1, 2], 2), // p0: preferred 1 in ISR, 2 leads -> elected
                (&[1, 2], &[1, 2], 1), // p1: already preferred
                (&[3, 2], &[2], 2),    // p2: preferred 3 not in ISR
                (&[1, 3], &[1], -1),   // p3: leaderless (for UNCLEAN)
            ],
        );
        let req = vec![
            ("t".to_string(), vec![0, 1, 2, 9]),
            ("nope".to_string(), vec![0]),
        ];
        let (recs, res) = elect_leaders(&img, ElectionType::Preferred, Some(&req));
        let codes: Vec<Vec<i16>> = res
            .iter()
            .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
            .collect();
        assert_eq!(
            codes,
            vec![
                vec![
                    0,
                    ResponseError::ElectionNotNeeded.code(),
                    ResponseError::PreferredLeaderNotAvailable.code(),
                    ResponseError::UnknownTopicOrPartition.code()
                ],
                vec![ResponseError::UnknownTopicOrPartition.code()]
            ]
        );
        apply(&mut img, &recs);
        assert_eq!(part(&img, "t", 0).leader, 1);
        assert_eq!(part(&img, "t", 0).leader_epoch, 1);
        // All partitions: only partitions needing an election are listed. p2 (preferred not
        // in ISR) and p3 (leaderless, 1 in ISR and unfenced: elected as the preferred).
        let (recs, res) = elect_leaders(&img, ElectionType::Preferred, None);
        let listed: Vec<(i32, i16)> = res[0]
            .partitions
            .iter()
            .map(|p| (p.partition, p.error_code))
            .collect();
        assert_eq!(
            listed,
            vec![
                (2, ResponseError::PreferredLeaderNotAvailable.code()),
                (3, 0)
            ]
        );
        apply(&mut img, &recs);
        assert_eq!(part(&img, "t", 3).leader, 1);
        // UNCLEAN: a partition with a leader needs none; a leaderless one whose ISR is dead
        // gets an out-of-sync replica even with the topic config off.
        topic(&mut img, "v", 2, &[(&[4, 3], &[4], -1), (&[5], &[5], -1)]);
        let req = vec![("v".to_string(), vec![0, 1, 0]), ("t".to_string(), vec![0])];
        let (recs, res) = elect_leaders(&img, ElectionType::Unclean, Some(&req));
        let codes: Vec<Vec<i16>> = res
            .iter()
            .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
            .collect();
        assert_eq!(
            codes,
            vec![
                vec![0, ResponseError::EligibleLeadersNotAvailable.code(), 0],
                vec![ResponseError::ElectionNotNeeded.code()]
            ]
        );
        assert_eq!(recs.len(), 1, "a partition named twice is elected once");
        apply(&mut img, &recs);
        let v0 = part(&img, "v", 0);
        assert_eq!((v0.leader, v0.isr), (3, vec![3]));
    }

    #[test]
    fn auto_rebalance_uses_the_per_broker_imbalance_ratio() {
        let mut img = MetadataImage::empty();
        for id in 1..=3 {
            broker(&mut img, id, false);
        }
        // Broker 1 is preferred for 10 partitions and leads 9 of them (10% imbalance: not above
        // the threshold); broker 2 preferred for 2, leads none (100%).
        let mut parts: Vec<(&[i32], &[i32], i32)> = Vec::new();
        for i in 0..10 {
            parts.push((&[1, 2], &[1, 2], if i == 0 { 2 } else { 1 }));
        }
        parts.push((&[2, 1], &[2, 1], 1));
        parts.push((&[2, 3], &[3], 3)); // preferred 2 not in the ISR: stays
        topic(&mut img, "t", 1, &parts);
        let recs = rebalance_preferred_leaders(&img, 10);
        assert_eq!(recs.len(), 1);
        apply(&mut img, &recs);
        assert_eq!(part(&img, "t", 10).leader, 2);
        assert_eq!(part(&img, "t", 0).leader, 2);
        // A lower threshold moves broker 1's partition too.
        let recs = rebalance_preferred_leaders(&img, 5);
        apply(&mut img, &recs);
        assert_eq!(part(&img, "t", 0).leader, 1);
        assert_eq!(part(&img, "t", 11).leader, 3);
        assert!(rebalance_preferred_leaders(&img, 0).is_empty());
    }
}
