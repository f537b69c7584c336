//! Controller decisions as pure functions: each takes the current [`MetadataImage`] and a
//! request and returns the records to commit plus the answer, or a Kafka error. Nothing here
//! does I/O, so every rule is unit-testable.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::ResponseError;
use nagare_metadata::records::{ConfigResource, MetadataRecord};
use nagare_metadata::topic_config::{self, TopicDefaults};
use nagare_metadata::{MetadataImage, Uuid};

/// A Kafka error code with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct ApiError {
    /// Kafka error code.
    pub code: i16,
    /// Human-readable detail, returned as `error_message`.
    pub message: String,
}

impl ApiError {
    /// An error with Kafka's error code and message.
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Cluster-wide defaults the controller applies to new topics.
#[derive(Debug, Clone)]
pub struct ControllerDefaults {
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
}

/// Kafka's topic-name rule: 1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::new(
            ResponseError::InvalidTopicException.code(),
            why.to_string(),
        ))
    };
    if name.is_empty() {
        return bad("Topic name is illegal, it can't be empty");
    }
    if name == "." || name == ".." {
        return bad("Topic name cannot be \".\" or \"..\"");
    }
    if name.len() > 249 {
        return bad("Topic name is illegal, it can't be longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad(&format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Unfenced brokers, sorted by id.
pub fn live_brokers(image: &MetadataImage) -> Vec<i32> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect()
}

/// A request to create one topic.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count, -1 for `num.partitions`.
    pub num_partitions: i32,
    /// Replication factor, -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual assignment: partition index → replicas.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic config overrides.
    pub configs: Vec<(String, Option<String>)>,
}

/// What creating a topic produced.
#[derive(Debug, Clone)]
pub struct CreatedTopic {
    /// The new topic id.
    pub topic_id: Uuid,
    /// Partition count.
    pub num_partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// Records to commit.
    pub records: Vec<MetadataRecord>,
}

/// The most metadata records one user operation may produce (Kafka's
/// `QuorumController.MAX_RECORDS_PER_USER_OP`, the size of one controller batch). More is
/// refused with POLICY_VIOLATION before anything is planned, so a request claiming millions
/// of partitions costs nothing (Kafka's `BoundedList` makes the same refusal).
pub const MAX_RECORDS_PER_USER_OP: usize = 10_000;

/// Kafka's message for an operation over [`MAX_RECORDS_PER_USER_OP`].
pub const EXCESSIVE_BATCH_MESSAGE: &str = "Unable to perform excessively large batch operation.";

/// The POLICY_VIOLATION error of an operation over [`MAX_RECORDS_PER_USER_OP`].
pub fn excessive_batch() -> ApiError {
    ApiError::new(
        ResponseError::PolicyViolation.code(),
        EXCESSIVE_BATCH_MESSAGE,
    )
}

/// Validates and plans the creation of `t` with id `topic_id` (drawn by the caller, so the
/// decision itself is deterministic). `pending` holds names created earlier in the same
/// request, which count as existing.
pub fn create_topic(
    image: &MetadataImage,
    defaults: &ControllerDefaults,
    t: &NewTopic,
    pending: &HashSet<String>,
    topic_id: Uuid,
) -> Result<CreatedTopic, ApiError> {
    validate_topic_name(&t.name)?;
    if image.topic(&t.name).is_some() || pending.contains(&t.name) {
        return Err(ApiError::new(
            ResponseError::TopicAlreadyExists.code(),
            format!("Topic '{}' already exists.", t.name),
        ));
    }
    // Kafka refuses names that collide once '.' and '_' are treated alike (metric names).
    let norm = |s: &str| s.replace('.', "_");
    let n = norm(&t.name);
    if let Some(other) = image
        .topic_ids
        .keys()
        .chain(pending.iter())
        .find(|o| norm(o) == n)
    {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException.code(),
            format!("Topic '{}' collides with existing topic: {other}", t.name),
        ));
    }
    let mut overrides = BTreeMap::new();
    for (k, v) in &t.configs {
        let Some(v) = v else {
            return Err(ApiError::new(
                ResponseError::InvalidConfig.code(),
                format!("Null value not supported for topic configs: {k}"),
            ));
        };
        topic_config::validate(k, v)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig.code(), m))?;
        overrides.insert(k.clone(), v.clone());
    }
    let brokers = live_brokers(image);
    let assignments: Vec<Vec<i32>> = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest.code(),
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut sorted = t.assignments.clone();
        sorted.sort_by_key(|a| a.0);
        for (i, (p, replicas)) in sorted.iter().enumerate() {
            if *p != i as i32 {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment.code(),
                    "Partitions should be a consecutive 0-based integer sequence",
                ));
            }
            check_replicas(image, replicas)?;
        }
        sorted.into_iter().map(|(_, r)| r).collect()
    } else {
        let partitions = if t.num_partitions == -1 {
            defaults.num_partitions
        } else {
            t.num_partitions
        };
        if partitions <= 0 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions.code(),
                "Number of partitions was set to an invalid non-positive value.",
            ));
        }
        if partitions as usize >= MAX_RECORDS_PER_USER_OP {
            // One TopicRecord plus one PartitionRecord per partition.
            return Err(excessive_batch());
        }
        let rf = if t.replication_factor == -1 {
            defaults.default_replication_factor
        } else {
            t.replication_factor
        };
        if rf <= 0 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor.code(),
                "Replication factor must be larger than 0.",
            ));
        }
        let start = image.topic_ids.len();
        place_or_err(image, &brokers, 0, partitions, rf, start)?
    };
    let mut records = vec![MetadataRecord::Topic {
        name: t.name.clone(),
        topic_id,
    }];
    for (k, v) in overrides {
        records.push(MetadataRecord::Config {
            resource: ConfigResource::Topic,
            resource_name: t.name.clone(),
            name: k,
            value: Some(v),
        });
    }
    let rf = assignments.first().map(|r| r.len()).unwrap_or(0) as i16;
    let num_partitions = assignments.len() as i32;
    records.extend(partition_records(image, topic_id, 0, assignments));
    Ok(CreatedTopic {
        topic_id,
        num_partitions,
        replication_factor: rf,
        records,
    })
}

fn place_or_err(
    image: &MetadataImage,
    brokers: &[i32],
    first: i32,
    count: i32,
    rf: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>, ApiError> {
    // Rack-aware when every broker has a `broker.rack` (Kafka refuses mixed setups; we fall
    // back to the plain placement instead).
    let racks: Option<Vec<(i32, String)>> = brokers
        .iter()
        .map(|id| {
            image
                .brokers
                .get(id)
                .and_then(|b| b.rack.clone())
                .map(|r| (*id, r))
        })
        .collect();
    let placed = match racks {
        Some(r) if !r.is_empty() => {
            crate::placement::place_rack_aware(&r, first, count, rf as usize, start)
        }
        _ => crate::placement::place(brokers, first, count, rf as usize, start),
    };
    placed.ok_or_else(|| {
        ApiError::new(
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                brokers.len()
            ),
        )
    })
}

fn check_replicas(image: &MetadataImage, replicas: &[i32]) -> Result<(), ApiError> {
    if replicas.is_empty() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicaAssignment.code(),
            "The manual partition assignment includes an empty replica list.",
        ));
    }
    let set: HashSet<_> = replicas.iter().collect();
    if set.len() != replicas.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicaAssignment.code(),
            "The manual partition assignment includes duplicate replicas.",
        ));
    }
    for r in replicas {
        if !image.brokers.contains_key(r) {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment.code(),
                format!("The manual partition assignment includes broker {r}, but no such broker is registered."),
            ));
        }
    }
    Ok(())
}

fn partition_records(
    image: &MetadataImage,
    topic_id: Uuid,
    first: i32,
    assignments: Vec<Vec<i32>>,
) -> Vec<MetadataRecord> {
    assignments
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| {
            // The ISR starts as the live replicas; the leader is the first live one.
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|r| image.brokers.get(r).map(|b| !b.fenced).unwrap_or(false))
                .collect();
            let leader = isr.first().copied().unwrap_or(-1);
            MetadataRecord::Partition {
                topic_id,
                partition_id: first + i as i32,
                replicas,
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            }
        })
        .collect()
}

/// Plans deleting a topic by name or id.
pub fn delete_topic(
    image: &MetadataImage,
    name: Option<&str>,
    id: Option<Uuid>,
) -> Result<(String, Uuid, Vec<MetadataRecord>), ApiError> {
    let topic = match (name, id) {
        (Some(n), _) => image.topic(n).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition.code(),
                "This server does not host this topic-partition.",
            )
        })?,
        (None, Some(id)) => image.topic_by_id(&id).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicId.code(),
                "This server does not host this topic ID.",
            )
        })?,
        (None, None) => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest.code(),
                "Neither topic name nor id given",
            ))
        }
    };
    Ok((
        topic.name.clone(),
        topic.id,
        vec![MetadataRecord::RemoveTopic { topic_id: topic.id }],
    ))
}

/// Plans growing a topic to `count` partitions.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
) -> Result<Vec<MetadataRecord>, ApiError> {
    let topic = image.topic(name).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition.code(),
            format!("The topic '{name}' does not exist."),
        )
    })?;
    let current = topic.partitions.len() as i32;
    if count < current {
        return Err(ApiError::new(
            ResponseError::InvalidPartitions.code(),
            format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
        ));
    }
    if count == current {
        return Err(ApiError::new(
            ResponseError::InvalidPartitions.code(),
            format!("Topic already has {current} partitions."),
        ));
    }
    let rf = topic
        .partitions
        .values()
        .next()
        .map(|p| p.replicas.len())
        .unwrap_or(1) as i16;
    let new = count - current;
    if new as usize > MAX_RECORDS_PER_USER_OP {
        return Err(excessive_batch());
    }
    let placed = match assignments {
        Some(a) => {
            if a.len() as i32 != new {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!(
                        "Increasing the number of partitions by {new} but {} assignments provided.",
                        a.len()
                    ),
                ));
            }
            for r in a {
                check_replicas(image, r)?;
            }
            a.to_vec()
        }
        None => place_or_err(
            image,
            &live_brokers(image),
            current,
            new,
            rf,
            image.topic_ids.len(),
        )?,
    };
    Ok(partition_records(image, topic.id, current, placed))
}

/// One config change of IncrementalAlterConfigs (AlterConfigs is a full SET of every key
/// plus a DELETE of every other override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    /// Set a value.
    Set(String, String),
    /// Remove the override.
    Delete(String),
    /// Add items to a list config.
    Append(String, String),
    /// Remove items from a list config.
    Subtract(String, String),
}

/// Broker-level configs that may be changed at run time (cluster-wide or per broker): the
/// broker synonyms of the topic configs, as in Kafka's DynamicLogConfig.
pub fn dynamic_broker_config(name: &str) -> Option<&'static topic_config::TopicConfigDef> {
    topic_config::TOPIC_CONFIGS
        .iter()
        .find(|d| d.broker_key == name)
}

/// Plans config changes to a topic or broker resource, broker keys checked against the
/// topic configs' broker synonyms only ([`dynamic_broker_config`]). The broker's handlers use
/// [`alter_configs_checked`] with its full table of dynamic broker configs.
pub fn alter_configs(
    image: &MetadataImage,
    defaults: &TopicDefaults,
    resource: ConfigResource,
    name: &str,
    ops: &[ConfigOp],
) -> Result<Vec<MetadataRecord>, ApiError> {
    let check = NonTopicChecks {
        key: Box::new(
            |k: &str, v: Option<&str>| match (dynamic_broker_config(k), v) {
                (Some(d), Some(v)) => topic_config::validate_value(d.kind, k, v)
                    .map_err(|m| ApiError::new(ResponseError::InvalidConfig.code(), m)),
                (Some(_), None) => Ok(()),
                (None, _) => Err(ApiError::new(
                    ResponseError::InvalidConfig.code(),
                    format!("Cannot update these configs dynamically: Set({k})"),
                )),
            },
        ),
        all: Box::new(|_| Ok(())),
    };
    alter_configs_checked(image, defaults, resource, name, ops, &check)
}

/// Checks one key being set (`Some(value)`) or deleted (`None`).
pub type KeyCheck<'a> = dyn Fn(&str, Option<&str>) -> Result<(), ApiError> + 'a;

/// Checks a resource's overrides as a whole.
pub type AllCheck<'a> = dyn Fn(&BTreeMap<String, String>) -> Result<(), ApiError> + 'a;

/// How the keys of a broker or group resource are checked: their definitions live with the
/// broker (dynamic broker configs, Kafka's `DynamicBrokerConfig`; group configs, Kafka's
/// `GroupConfig`), so the caller supplies them.
pub struct NonTopicChecks<'a> {
    /// Checks one key being set (`Some(value)`) or deleted (`None`).
    pub key: Box<KeyCheck<'a>>,
    /// Checks the resource's overrides as they would be after the change (rules tying keys
    /// together, e.g. a group's session timeout above its heartbeat interval).
    pub all: Box<AllCheck<'a>>,
}

/// Plans config changes to a topic, broker or group resource; broker and group keys are
/// checked by `check`.
pub fn alter_configs_checked(
    image: &MetadataImage,
    defaults: &TopicDefaults,
    resource: ConfigResource,
    name: &str,
    ops: &[ConfigOp],
    check: &NonTopicChecks<'_>,
) -> Result<Vec<MetadataRecord>, ApiError> {
    let mut current = match resource {
        ConfigResource::Topic => {
            if image.topic(name).is_none() {
                return Err(ApiError::new(
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("The topic '{name}' does not exist."),
                ));
            }
            image.config_overrides(resource, name)
        }
        ConfigResource::Broker => {
            if !name.is_empty() && name.parse::<i32>().is_err() {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest.code(),
                    format!("Invalid broker id {name}"),
                ));
            }
            image.config_overrides(resource, name)
        }
        ConfigResource::Group => {
            // Kafka keeps configs of groups that do not exist (yet): no existence check.
            if name.is_empty() {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest.code(),
                    "Group name must not be empty",
                ));
            }
            image.config_overrides(resource, name)
        }
        ConfigResource::ClientMetrics => {
            crate::client_metrics::validate_name(name)?;
            image.config_overrides(resource, name)
        }
    };
    let validate = |k: &str, v: &str| -> Result<(), ApiError> {
        match resource {
            ConfigResource::Topic => topic_config::validate(k, v)
                .map_err(|m| ApiError::new(ResponseError::InvalidConfig.code(), m)),
            ConfigResource::Broker | ConfigResource::Group => (check.key)(k, Some(v)),
            // Kafka's ClientMetricsConfigs picks its own error codes.
            ConfigResource::ClientMetrics => crate::client_metrics::validate(k, v),
        }
    };
    let mut touched = Vec::new();
    for op in ops {
        match op {
            ConfigOp::Set(k, v) => {
                validate(k, v)?;
                current.insert(k.clone(), v.clone());
                touched.push(k.clone());
            }
            ConfigOp::Delete(k) => {
                if resource == ConfigResource::ClientMetrics {
                    crate::client_metrics::check_name(k)?;
                }
                if resource == ConfigResource::Topic && topic_config::lookup(k).is_none() {
                    return Err(ApiError::new(
                        ResponseError::InvalidConfig.code(),
                        format!("Unknown topic config name: {k}"),
                    ));
                }
                if resource != ConfigResource::Topic {
                    (check.key)(k, None)?;
                }
                current.remove(k);
                touched.push(k.clone());
            }
            ConfigOp::Append(k, v) | ConfigOp::Subtract(k, v) => {
                let base = current
                    .get(k)
                    .cloned()
                    .or_else(|| defaults.value(&BTreeMap::new(), k))
                    .unwrap_or_default();
                let mut items: Vec<String> = base
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if matches!(op, ConfigOp::Append(..)) {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                let joined = items.join(",");
                validate(k, &joined)?;
                current.insert(k.clone(), joined);
                touched.push(k.clone());
            }
        }
    }
    let before = image.config_overrides(resource, name);
    if resource == ConfigResource::Topic {
        // Kafka validates the tiered-storage keys together (LogConfig.validate).
        topic_config::validate_tiered(defaults, Some(&before), &current)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig.code(), m))?;
    } else {
        (check.all)(&current)?;
    }
    let mut records = Vec::new();
    let mut keys: Vec<&String> = before.keys().chain(current.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if before.get(k) != current.get(k) {
            records.push(MetadataRecord::Config {
                resource,
                resource_name: name.to_string(),
                name: k.clone(),
                value: current.get(k).cloned(),
            });
        }
    }
    Ok(records)
}

/// Number of producer ids handed out per AllocateProducerIds (Kafka's block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Plans handing a block of producer ids to `broker_id`: returns (first id, records).
pub fn allocate_producer_ids(image: &MetadataImage, broker_id: i32) -> (i64, Vec<MetadataRecord>) {
    let first = image.next_producer_id.max(0);
    (
        first,
        vec![MetadataRecord::ProducerIds {
            broker_id,
            next_producer_id: first + PRODUCER_ID_BLOCK_SIZE,
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_broker() -> MetadataImage {
        let mut img = MetadataImage::empty();
        img.apply(
            0,
            &MetadataRecord::RegisterBroker {
                broker_id: 1,
                broker_epoch: 1,
                incarnation_id: Uuid::from_u128(1),
                endpoints: vec![],
                rack: None,
                fenced: false,
            },
        );
        img
    }

    fn apply(img: &mut MetadataImage, recs: &[MetadataRecord]) {
        for r in recs {
            let o = img.offset + 1;
            img.apply(o, r);
        }
    }

    fn new_topic(name: &str, p: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: p,
            replication_factor: rf,
            assignments: vec![],
            configs: vec![],
        }
    }

    const DEFAULTS: ControllerDefaults = ControllerDefaults {
        num_partitions: 1,
        default_replication_factor: 1,
    };

    /// Found by the `request` fuzz target: CreateTopics with num_partitions = i32::MAX made
    /// the controller plan two billion partitions. Kafka bounds one operation's records.
    #[test]
    fn an_operation_over_the_record_bound_is_a_policy_violation() {
        let mut img = image_with_broker();
        let none = HashSet::new();
        for p in [i32::MAX, MAX_RECORDS_PER_USER_OP as i32] {
            let e = create_topic(
                &img,
                &DEFAULTS,
                &new_topic("big", p, 1),
                &none,
                Uuid::from_u128(9),
            )
            .map(|_| ())
            .unwrap_err();
            assert_eq!(e.code, ResponseError::PolicyViolation.code());
            assert_eq!(e.message, EXCESSIVE_BATCH_MESSAGE);
        }
        let c = create_topic(
            &img,
            &DEFAULTS,
            &new_topic("a", 1, 1),
            &none,
            Uuid::from_u128(7),
        )
        .expect("create");
        apply(&mut img, &c.records);
        let e = create_partitions(&img, "a", i32::MAX, None).unwrap_err();
        assert_eq!(e.code, ResponseError::PolicyViolation.code());
        assert!(create_partitions(&img, "a", 2, None).is_ok());
    }

    #[test]
    fn create_validate_and_delete() {
        let mut img = image_with_broker();
        let none = HashSet::new();
        let c = create_topic(
            &img,
            &DEFAULTS,
            &new_topic("a", 3, 1),
            &none,
            Uuid::from_u128(7),
        )
        .expect("create");
        apply(&mut img, &c.records);
        let t = img.topic("a").expect("topic");
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.partitions[&2].leader, 1);
        let e = |t: NewTopic| {
            create_topic(&img, &DEFAULTS, &t, &none, Uuid::from_u128(7))
                .map(|_| ())
                .unwrap_err()
                .code
        };
        assert_eq!(
            e(new_topic("a", 1, 1)),
            ResponseError::TopicAlreadyExists.code()
        );
        assert_eq!(
            e(new_topic("b", 0, 1)),
            ResponseError::InvalidPartitions.code()
        );
        assert_eq!(
            e(new_topic("b", 1, 3)),
            ResponseError::InvalidReplicationFactor.code()
        );
        assert_eq!(
            e(new_topic("b/c", 1, 1)),
            ResponseError::InvalidTopicException.code()
        );
        let mut bad_cfg = new_topic("b", 1, 1);
        bad_cfg.configs = vec![("retention.ms".into(), Some("x".into()))];
        assert_eq!(e(bad_cfg), ResponseError::InvalidConfig.code());
        let d = create_topic(
            &img,
            &DEFAULTS,
            &new_topic("d", -1, -1),
            &none,
            Uuid::from_u128(7),
        )
        .expect("defaults");
        assert_eq!(d.num_partitions, 1);
        let (_, _, recs) = delete_topic(&img, Some("a"), None).expect("delete");
        apply(&mut img, &recs);
        assert!(img.topic("a").is_none());
        assert_eq!(
            delete_topic(&img, Some("a"), None).unwrap_err().code,
            ResponseError::UnknownTopicOrPartition.code()
        );
    }

    #[test]
    fn partitions_and_configs() {
        let mut img = image_with_broker();
        let c = create_topic(
            &img,
            &DEFAULTS,
            &new_topic("a", 2, 1),
            &HashSet::new(),
            Uuid::from_u128(8),
        )
        .expect("create");
        apply(&mut img, &c.records);
        assert_eq!(
            create_partitions(&img, "a", 2, None).unwrap_err().code,
            ResponseError::InvalidPartitions.code()
        );
        let recs = create_partitions(&img, "a", 5, None).expect("grow");
        apply(&mut img, &recs);
        assert_eq!(img.topic("a").map(|t| t.partitions.len()), Some(5));
        let d = TopicDefaults::from_broker(|_| None);
        let recs = alter_configs(
            &img,
            &d,
            ConfigResource::Topic,
            "a",
            &[
                ConfigOp::Set("retention.ms".into(), "100".into()),
                ConfigOp::Append("cleanup.policy".into(), "compact".into()),
            ],
        )
        .expect("alter");
        apply(&mut img, &recs);
        let o = img.config_overrides(ConfigResource::Topic, "a");
        assert_eq!(
            o.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        let recs = alter_configs(
            &img,
            &d,
            ConfigResource::Topic,
            "a",
            &[ConfigOp::Delete("retention.ms".into())],
        )
        .expect("delete");
        apply(&mut img, &recs);
        assert!(!img
            .config_overrides(ConfigResource::Topic, "a")
            .contains_key("retention.ms"));
        assert_eq!(
            alter_configs(
                &img,
                &d,
                ConfigResource::Broker,
                "1",
                &[ConfigOp::Set("log.retention.ms".into(), "5".into())]
            )
            .map(|r| r.len()),
            Ok(1)
        );
        assert_eq!(
            alter_configs(
                &img,
                &d,
                ConfigResource::Broker,
                "1",
                &[ConfigOp::Set("node.id".into(), "5".into())]
            )
            .unwrap_err()
            .code,
            ResponseError::InvalidConfig.code()
        );
    }

    #[test]
    fn producer_id_blocks_do_not_overlap() {
        let mut img = image_with_broker();
        let (a, recs) = allocate_producer_ids(&img, 1);
        apply(&mut img, &recs);
        let (b, _) = allocate_producer_ids(&img, 1);
        assert_eq!(b - a, PRODUCER_ID_BLOCK_SIZE);
    }
}
