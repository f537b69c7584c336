//! The console's JSON API: each handler turns a browser request into Kafka requests sent
//! through the broker's pipeline as the session's principal ([`InProcess`]) and shapes the
//! answers for the pages. Kafka errors come back as a JSON `{error, code}` with an HTTP
//! status saying what kind of failure it is (403 not authorized, 404 unknown, 409 a
//! conflict, 400 invalid input, 502 anything else the broker refused).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_quorum_request::{
    PartitionData as QuorumPartition, TopicData,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest, DescribeQuorumRequest,
    FetchRequest, FindCoordinatorRequest, GroupId, IncrementalAlterConfigsRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::{json, Value};

use super::client::{CallError, InProcess};
use super::format::{self, error_name, Format};

/// The request versions the console speaks (all within what the broker serves; the unit
/// tests send each of them).
mod v {
    pub const API_VERSIONS: i16 = 3;
    pub const METADATA: i16 = 12;
    pub const DESCRIBE_CLUSTER: i16 = 1;
    pub const DESCRIBE_QUORUM: i16 = 1;
    pub const DESCRIBE_LOG_DIRS: i16 = 4;
    pub const DESCRIBE_CONFIGS: i16 = 4;
    pub const CREATE_TOPICS: i16 = 7;
    pub const DELETE_TOPICS: i16 = 6;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 1;
    pub const LIST_OFFSETS: i16 = 7;
    pub const FETCH: i16 = 12;
    pub const PRODUCE: i16 = 9;
    pub const LIST_GROUPS: i16 = 4;
    pub const DESCRIBE_GROUPS: i16 = 5;
    pub const OFFSET_FETCH: i16 = 8;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const FIND_COORDINATOR: i16 = 4;
}

/// Kafka's `ListOffsets` special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// The most records one browse returns.
pub const MAX_BROWSE: usize = 500;
/// Config resource type of a topic (`ConfigResource.Type.TOPIC`).
const TOPIC_RESOURCE: i8 = 2;

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for the page.
    pub message: String,
    /// Kafka's error name, when the broker answered with one.
    pub code: Option<String>,
}

impl ApiError {
    /// A 4xx/5xx without a Kafka error.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// Kafka error `code` (non-zero) about `what`.
    pub fn kafka(code: i16, what: &str, message: Option<&str>) -> Self {
        let name = error_name(code);
        let status = match code {
            29..=31 | 53 => 403, // TOPIC/GROUP/CLUSTER_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_...
            3 | 69 | 105 => 404, // UNKNOWN_TOPIC_OR_PARTITION, GROUP_ID_NOT_FOUND, TRANSACTIONAL_ID_NOT_FOUND
            36 | 68 | 25 => 409, // TOPIC_ALREADY_EXISTS, NON_EMPTY_GROUP, UNKNOWN_MEMBER_ID
            51 | 54 => 409,      // CONCURRENT_TRANSACTIONS, SECURITY_DISABLED (no authorizer)
            c if name.starts_with("INVALID") || c == 40 || c == 44 => 400, // INVALID_*, POLICY_VIOLATION
            _ => 502,
        };
        let detail = message.filter(|m| !m.is_empty()).unwrap_or(&name);
        ApiError {
            status,
            message: format!("{what}: {detail}"),
            code: Some(name),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Value {
        json!({"error": self.message, "code": self.code})
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Closed => {
                ApiError::new(401, "the session is no longer authenticated; log in again")
            }
            CallError::Timeout => ApiError::new(504, e.to_string()),
            CallError::Codec(ref m) => {
                tracing::warn!(error = %m, "console: request failed");
                ApiError::new(500, e.to_string())
            }
        }
    }
}

/// An API result.
pub type ApiResult = Result<Value, ApiError>;

pub(super) fn check(code: i16, what: &str, message: Option<&StrBytes>) -> Result<(), ApiError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ApiError::kafka(code, what, message.map(|m| m.as_str())))
    }
}

pub(super) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub(super) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Metadata of `topics` (all when `None`).
pub(super) async fn metadata(
    c: &InProcess,
    topics: Option<&[&str]>,
) -> Result<MetadataResponse, ApiError> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|t| {
            t.iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    Ok(c.ask(&req, v::METADATA).await?)
}

/// `GET /api/overview`: cluster id, brokers, the active controller, the KRaft quorum,
/// versions and the under-replicated partitions.
pub async fn overview(c: &InProcess) -> ApiResult {
    let cluster = c
        .ask(&DescribeClusterRequest::default(), v::DESCRIBE_CLUSTER)
        .await?;
    check(
        cluster.error_code,
        "DescribeCluster",
        cluster.error_message.as_ref(),
    )?;
    let md = metadata(c, None).await?;
    let mut under = Vec::new();
    let (mut partitions, mut offline) = (0usize, 0usize);
    for t in &md.topics {
        for p in &t.partitions {
            partitions += 1;
            if p.leader_id.0 < 0 {
                offline += 1;
            }
            if p.isr_nodes.len() < p.replica_nodes.len() {
                under.push(json!({
                    "topic": t.name.as_ref().map(|n| n.0.to_string()),
                    "partition": p.partition_index,
                    "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                    "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                }));
            }
        }
    }
    // The quorum: DescribeQuorum is forwarded to the active controller (a cluster-level
    // Describe ACL, so an unprivileged user sees the error instead).
    let quorum = match c
        .ask(
            &DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                .with_topic_name(topic_name("__cluster_metadata"))
                .with_partitions(vec![QuorumPartition::default()])]),
            v::DESCRIBE_QUORUM,
        )
        .await
    {
        Ok(q) if q.error_code == 0 => {
            let p = q.topics.first().and_then(|t| t.partitions.first());
            match p {
                Some(p) if p.error_code == 0 => json!({
                    "leader": p.leader_id.0,
                    "epoch": p.leader_epoch,
                    "high_watermark": p.high_watermark,
                    "voters": p.current_voters.iter().map(|r| json!({
                        "id": r.replica_id.0, "log_end_offset": r.log_end_offset,
                        "lag": p.high_watermark - r.log_end_offset})).collect::<Vec<_>>(),
                    "observers": p.observers.iter().map(|r| json!({
                        "id": r.replica_id.0, "log_end_offset": r.log_end_offset,
                        "lag": p.high_watermark - r.log_end_offset})).collect::<Vec<_>>(),
                }),
                Some(p) => json!({"error": error_name(p.error_code)}),
                None => json!({"error": "no quorum partition in the answer"}),
            }
        }
        Ok(q) => json!({"error": error_name(q.error_code)}),
        Err(e) => json!({"error": e.to_string()}),
    };
    let versions = c
        .ask(
            &ApiVersionsRequest::default()
                .with_client_software_name(sb("nagare-console"))
                .with_client_software_version(sb(env!("CARGO_PKG_VERSION"))),
            v::API_VERSIONS,
        )
        .await?;
    let features: BTreeMap<String, i16> = versions
        .finalized_features
        .iter()
        .map(|f| (f.name.to_string(), f.max_version_level))
        .collect();
    let image = c.broker.image();
    let brokers: Vec<Value> = cluster
        .brokers
        .iter()
        .map(|b| {
            json!({
                "id": b.broker_id.0,
                "host": b.host.to_string(),
                "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.to_string()),
                "fenced": b.is_fenced,
                "controller": b.broker_id.0 == cluster.controller_id.0,
                "this": b.broker_id.0 == c.broker.config.node_id,
            })
        })
        .collect();
    Ok(json!({
        "cluster_id": cluster.cluster_id.to_string(),
        "controller_id": cluster.controller_id.0,
        "this_broker": c.broker.config.node_id,
        "software_version": env!("CARGO_PKG_VERSION"),
        "metadata_offset": image.offset,
        "finalized_features": features,
        "brokers": brokers,
        "quorum": quorum,
        "topics": md.topics.iter().filter(|t| t.error_code == 0).count(),
        "partitions": partitions,
        "offline_partitions": offline,
        "under_replicated": under,
        "principal": c.conn.principal().to_string(),
    }))
}

/// `GET /api/topics`: the topics the principal may describe, with partition counts,
/// replication and under-replicated counts.
pub async fn topics(c: &InProcess) -> ApiResult {
    let md = metadata(c, None).await?;
    let mut out: Vec<Value> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| {
            let rf = t
                .partitions
                .first()
                .map(|p| p.replica_nodes.len())
                .unwrap_or(0);
            let urp = t
                .partitions
                .iter()
                .filter(|p| p.isr_nodes.len() < p.replica_nodes.len())
                .count();
            json!({
                "name": t.name.as_ref().map(|n| n.0.to_string()),
                "internal": t.is_internal,
                "partitions": t.partitions.len(),
                "replication_factor": rf,
                "under_replicated": urp,
            })
        })
        .collect();
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(json!({ "topics": out }))
}

/// End (or start) offsets of partitions of `topic`, by partition (`None` where the broker
/// refused, e.g. not the leader).
async fn offsets(
    c: &InProcess,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, Option<i64>>, ApiError> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let resp = c.ask(&req, v::LIST_OFFSETS).await?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == 29 {
                return Err(ApiError::kafka(p.error_code, "ListOffsets", None));
            }
            out.insert(
                p.partition_index,
                (p.error_code == 0 && p.offset >= 0).then_some(p.offset),
            );
        }
    }
    Ok(out)
}

/// `GET /api/topics/{name}`: partitions (leader, replicas, ISR, offsets, log sizes) and
/// configs with their sources.
pub async fn topic(c: &InProcess, name: &str) -> ApiResult {
    let md = metadata(c, Some(&[name])).await?;
    let t = md
        .topics
        .first()
        .ok_or_else(|| ApiError::new(502, "Metadata answered no topic"))?;
    check(t.error_code, &format!("topic {name}"), None)?;
    let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    let start = offsets(c, name, &ids, EARLIEST).await?;
    let end = offsets(c, name, &ids, LATEST).await?;
    // Log sizes: DescribeLogDirs (cluster Describe ACL; without it sizes stay unknown).
    let mut sizes: BTreeMap<i32, i64> = BTreeMap::new();
    if let Ok(dirs) = c
        .ask(
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(topic_name(name))
                    .with_partitions(ids.clone()),
            ])),
            v::DESCRIBE_LOG_DIRS,
        )
        .await
    {
        for d in dirs.results.iter().filter(|d| d.error_code == 0) {
            for tp in &d.topics {
                for p in &tp.partitions {
                    *sizes.entry(p.partition_index).or_default() += p.partition_size;
                }
            }
        }
    }
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let i = p.partition_index;
            json!({
                "partition": i,
                "leader": p.leader_id.0,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                "offline": p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
                "start_offset": start.get(&i).copied().flatten(),
                "end_offset": end.get(&i).copied().flatten(),
                "size": sizes.get(&i),
            })
        })
        .collect();
    let cfg = c
        .ask(
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(sb(name)),
            ]),
            v::DESCRIBE_CONFIGS,
        )
        .await?;
    let configs: Vec<Value> = match cfg.results.first() {
        Some(r) if r.error_code == 0 => r
            .configs
            .iter()
            .map(|e| {
                json!({
                    "name": e.name.to_string(),
                    "value": e.value.as_ref().map(|v| v.to_string()),
                    "source": config_source(e.config_source),
                    "read_only": e.read_only,
                    "sensitive": e.is_sensitive,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(json!({
        "name": name,
        "topic_id": t.topic_id.to_string(),
        "internal": t.is_internal,
        "partitions": partitions,
        "configs": configs,
    }))
}

/// Kafka's `ConfigSource` names (DescribeConfigs v1+).
fn config_source(s: i8) -> &'static str {
    match s {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

pub(super) fn field<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn string_map(v: Option<&Value>, what: &str) -> Result<Vec<(String, String)>, ApiError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(ApiError::new(400, format!("{what}.{k}: a string value"))),
            })
            .collect(),
        Some(_) => Err(ApiError::new(400, format!("{what}: an object of strings"))),
    }
}

/// `POST /api/topics` `{name, partitions?, replication_factor?, configs?}`: CreateTopics
/// (-1 partitions / replication factor take the broker's defaults, KIP-464).
pub async fn create_topic(c: &InProcess, body: &Value) -> ApiResult {
    let name = field(body, "name")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(400, "name: a non-empty string"))?;
    let int = |k: &str| -> Result<i64, ApiError> {
        match field(body, k) {
            None => Ok(-1),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ApiError::new(400, format!("{k}: an integer"))),
        }
    };
    let partitions = i32::try_from(int("partitions")?)
        .map_err(|_| ApiError::new(400, "partitions: out of range"))?;
    let rf = i16::try_from(int("replication_factor")?)
        .map_err(|_| ApiError::new(400, "replication_factor: out of range"))?;
    let configs = string_map(field(body, "configs"), "configs")?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                    })
                    .collect(),
            )]);
    let resp = c.ask(&req, v::CREATE_TOPICS).await?;
    let r = resp
        .topics
        .first()
        .ok_or_else(|| ApiError::new(502, "CreateTopics answered no topic"))?;
    check(
        r.error_code,
        &format!("creating {name}"),
        r.error_message.as_ref(),
    )?;
    Ok(json!({"name": name, "topic_id": r.topic_id.to_string(),
        "partitions": r.num_partitions, "replication_factor": r.replication_factor}))
}

/// `DELETE /api/topics/{name}`: DeleteTopics.
pub async fn delete_topic(c: &InProcess, name: &str) -> ApiResult {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(name)))
        ]);
    let resp = c.ask(&req, v::DELETE_TOPICS).await?;
    let r = resp
        .responses
        .first()
        .ok_or_else(|| ApiError::new(502, "DeleteTopics answered no topic"))?;
    check(
        r.error_code,
        &format!("deleting {name}"),
        r.error_message.as_ref(),
    )?;
    Ok(json!({"deleted": name}))
}

/// `PUT /api/topics/{name}/configs` `{set: {k: v}, delete: [k]}`: IncrementalAlterConfigs
/// (SET and DELETE operations; a deleted key falls back to the broker's default).
pub async fn alter_configs(c: &InProcess, name: &str, body: &Value) -> ApiResult {
    let set = string_map(field(body, "set"), "set")?;
    let delete: Vec<String> = match field(body, "delete") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::new(400, "delete: an array of names"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::new(400, "delete: an array of names")),
    };
    if set.is_empty() && delete.is_empty() {
        return Err(ApiError::new(400, "nothing to change: give set or delete"));
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(sb(k))
                .with_config_operation(0)
                .with_value(Some(sb(v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(sb(k))
            .with_config_operation(1)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(sb(name))
            .with_configs(configs),
    ]);
    let resp = c.ask(&req, v::INCREMENTAL_ALTER_CONFIGS).await?;
    let r = resp
        .responses
        .first()
        .ok_or_else(|| ApiError::new(502, "IncrementalAlterConfigs answered nothing"))?;
    check(
        r.error_code,
        &format!("altering {name}"),
        r.error_message.as_ref(),
    )?;
    Ok(json!({"altered": name}))
}

/// Where a browse starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The log start.
    Beginning,
    /// The last `limit` records of each partition.
    End,
    /// This offset.
    Offset(i64),
    /// The first record at or after this timestamp (ms).
    Timestamp(i64),
}

/// The query parameters of a browse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Browse {
    /// One partition, or all.
    pub partition: Option<i32>,
    /// Where to start.
    pub from: Start,
    /// At most this many records.
    pub limit: usize,
    /// How to show keys, values and headers.
    pub format: Format,
}

/// Parses `partition`, `from` (`beginning`, `end`, `offset`, `timestamp`), `offset`,
/// `timestamp`, `limit` and `format` from a query string.
pub fn parse_browse(query: &BTreeMap<String, String>) -> Result<Browse, ApiError> {
    let num = |k: &str| -> Result<Option<i64>, ApiError> {
        match query.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::new(400, format!("{k}: an integer"))),
        }
    };
    let partition = match num("partition")? {
        None => None,
        Some(p) => {
            Some(i32::try_from(p).map_err(|_| ApiError::new(400, "partition: out of range"))?)
        }
    };
    let from = match query.get("from").map(|s| s.as_str()).unwrap_or("end") {
        "beginning" => Start::Beginning,
        "end" => Start::End,
        "offset" => Start::Offset(
            num("offset")?
                .ok_or_else(|| ApiError::new(400, "offset: required with from=offset"))?,
        ),
        "timestamp" => Start::Timestamp(
            num("timestamp")?
                .ok_or_else(|| ApiError::new(400, "timestamp: required with from=timestamp"))?,
        ),
        other => {
            return Err(ApiError::new(
                400,
                format!("from: beginning, end, offset or timestamp, not {other:?}"),
            ))
        }
    };
    let limit = num("limit")?.unwrap_or(50);
    if !(1..=MAX_BROWSE as i64).contains(&limit) {
        return Err(ApiError::new(400, format!("limit: 1 to {MAX_BROWSE}")));
    }
    let format = match query.get("format") {
        None => Format::Text,
        Some(f) => {
            Format::parse(f).ok_or_else(|| ApiError::new(400, "format: text, json or hex"))?
        }
    };
    Ok(Browse {
        partition,
        from,
        limit: limit as usize,
        format,
    })
}

/// `GET /api/topics/{name}/messages?...`: records read with Fetch (as a consumer reads them,
/// READ_UNCOMMITTED), from each chosen partition, sorted by timestamp then partition and
/// offset, at most `limit`.
pub async fn browse(c: &InProcess, name: &str, b: &Browse) -> ApiResult {
    let md = metadata(c, Some(&[name])).await?;
    let t = md
        .topics
        .first()
        .ok_or_else(|| ApiError::new(502, "Metadata answered no topic"))?;
    check(t.error_code, &format!("topic {name}"), None)?;
    // The console reads through this broker only: partitions led elsewhere are named, not
    // read (a Fetch here would answer NOT_LEADER_OR_FOLLOWER).
    let me = c.broker.config.node_id;
    let chosen: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .filter(|(p, _)| b.partition.is_none_or(|x| x == *p))
        .collect();
    if chosen.is_empty() {
        return Err(ApiError::new(404, format!("{name} has no such partition")));
    }
    let elsewhere: Vec<Value> = chosen
        .iter()
        .filter(|(_, leader)| *leader != me)
        .map(|(p, leader)| json!({"partition": p, "leader": leader}))
        .collect();
    let parts: Vec<i32> = chosen
        .iter()
        .filter(|(_, leader)| *leader == me)
        .map(|(p, _)| *p)
        .collect();
    if parts.is_empty() {
        return Err(ApiError::new(
            502,
            format!(
                "{name}: the chosen partitions are led by other brokers ({}); open the console there",
                elsewhere
                    .iter()
                    .map(|e| format!("partition {} on broker {}", e["partition"], e["leader"]))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let starts: BTreeMap<i32, Option<i64>> = match b.from {
        Start::Beginning => offsets(c, name, &parts, EARLIEST).await?,
        Start::Offset(o) => parts.iter().map(|p| (*p, Some(o.max(0)))).collect(),
        Start::Timestamp(ts) => offsets(c, name, &parts, ts).await?,
        Start::End => {
            let first = offsets(c, name, &parts, EARLIEST).await?;
            let end = offsets(c, name, &parts, LATEST).await?;
            parts
                .iter()
                .map(|p| {
                    let s = match (
                        first.get(p).copied().flatten(),
                        end.get(p).copied().flatten(),
                    ) {
                        (Some(f), Some(e)) => Some((e - b.limit as i64).max(f)),
                        _ => None,
                    };
                    (*p, s)
                })
                .collect()
        }
    };
    let ends = offsets(c, name, &parts, LATEST).await?;
    let mut records: Vec<(i32, Record)> = Vec::new();
    for p in &parts {
        let Some(mut next) = starts.get(p).copied().flatten() else {
            continue;
        };
        let end = ends.get(p).copied().flatten().unwrap_or(0);
        let mut taken = 0usize;
        // A few fetches at most: each returns up to 1 MiB.
        for _ in 0..8 {
            if next >= end || taken >= b.limit {
                break;
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(name))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(*p)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(next)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(1 << 20)])]);
            let resp = c.ask(&req, v::FETCH).await?;
            check(resp.error_code, "Fetch", None)?;
            let Some(pd) = resp.responses.first().and_then(|t| t.partitions.first()) else {
                break;
            };
            if pd.error_code == 1 {
                // OFFSET_OUT_OF_RANGE: the asked offset was deleted; nothing to show here.
                break;
            }
            check(pd.error_code, &format!("fetching {name}-{p}"), None)?;
            let Some(bytes) = &pd.records else { break };
            let batch = format::decode_records(bytes);
            let Some(last) = batch.last().map(|r| r.offset) else {
                break;
            };
            for r in batch.into_iter().filter(|r| r.offset >= next) {
                if taken < b.limit {
                    taken += 1;
                    records.push((*p, r));
                }
            }
            next = last + 1;
        }
    }
    records.sort_by_key(|(p, r)| (r.timestamp, *p, r.offset));
    if matches!(b.from, Start::End) && records.len() > b.limit {
        records.drain(..records.len() - b.limit);
    }
    records.truncate(b.limit);
    let out: Vec<Value> = records
        .iter()
        .map(|(p, r)| format::record_json(*p, r, b.format))
        .collect();
    Ok(json!({"topic": name, "records": out, "elsewhere": elsewhere}))
}

/// Bytes of a produced key/value/header: text as UTF-8, or hex with `"encoding": "hex"`.
fn payload(v: Option<&Value>, hex: bool, what: &str) -> Result<Option<Bytes>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if hex => format::unhex(s)
            .map(|b| Some(Bytes::from(b)))
            .ok_or_else(|| ApiError::new(400, format!("{what}: not hex"))),
        Some(Value::String(s)) => Ok(Some(Bytes::from(s.clone()))),
        Some(other) if !hex => Ok(Some(Bytes::from(other.to_string()))),
        Some(_) => Err(ApiError::new(400, format!("{what}: a hex string"))),
    }
}

/// `POST /api/topics/{name}/messages` `{partition?, key?, value?, headers?: [{key, value}],
/// encoding?: "text"|"hex"}`: one record in one Produce (acks=all), to partition 0 unless
/// one is given.
pub async fn produce(c: &InProcess, name: &str, body: &Value) -> ApiResult {
    let hex = match field(body, "encoding").and_then(|v| v.as_str()) {
        None | Some("text") => false,
        Some("hex") => true,
        Some(_) => return Err(ApiError::new(400, "encoding: text or hex")),
    };
    let partition = match field(body, "partition") {
        None => 0,
        Some(p) => p
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p >= 0)
            .ok_or_else(|| ApiError::new(400, "partition: a partition number"))?,
    };
    let mut record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: crate::replica_manager::now_ms(),
        key: payload(field(body, "key"), hex, "key")?,
        value: payload(field(body, "value"), hex, "value")?,
        headers: Default::default(),
    };
    if let Some(hs) = field(body, "headers") {
        let Value::Array(hs) = hs else {
            return Err(ApiError::new(400, "headers: an array of {key, value}"));
        };
        for h in hs {
            let k = h
                .get("key")
                .and_then(|k| k.as_str())
                .ok_or_else(|| ApiError::new(400, "headers[].key: a string"))?;
            let val = payload(
                h.get("value").filter(|v| !v.is_null()),
                hex,
                "headers[].value",
            )?;
            record.headers.insert(sb(k), val);
        }
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::iter::once(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| ApiError::new(500, format!("encoding the record: {e}")))?;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(buf.freeze()))])]);
    let resp = c.ask(&req, v::PRODUCE).await?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or_else(|| ApiError::new(502, "Produce answered no partition"))?;
    check(
        p.error_code,
        &format!("producing to {name}-{partition}"),
        p.error_message.as_ref(),
    )?;
    Ok(json!({"topic": name, "partition": partition, "offset": p.base_offset}))
}

/// `GET /api/groups`: ListGroups.
pub async fn groups(c: &InProcess) -> ApiResult {
    let resp = c.ask(&ListGroupsRequest::default(), v::LIST_GROUPS).await?;
    check(resp.error_code, "ListGroups", None)?;
    let mut out: Vec<Value> = resp
        .groups
        .iter()
        .map(|g| {
            json!({"group": g.group_id.0.to_string(), "state": g.group_state.to_string(),
                "protocol_type": g.protocol_type.to_string()})
        })
        .collect();
    out.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
    Ok(json!({"groups": out}))
}

/// A classic consumer's assignment (`ConsumerProtocolAssignment`, any version: version i16,
/// then `[topic string, [partition i32]]`; user data after it is ignored).
pub fn parse_assignment(b: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    fn i16_(b: &mut &[u8]) -> Option<i16> {
        take(b, 2).map(|x| i16::from_be_bytes([x[0], x[1]]))
    }
    fn i32_(b: &mut &[u8]) -> Option<i32> {
        take(b, 4).map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    }
    let mut b = b;
    if b.is_empty() {
        return Some(Vec::new());
    }
    let _version = i16_(&mut b)?;
    let n = i32_(&mut b)?;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let len = usize::try_from(i16_(&mut b)?).ok()?;
        let topic = String::from_utf8(take(&mut b, len)?.to_vec()).ok()?;
        let np = i32_(&mut b)?;
        let mut parts = Vec::new();
        for _ in 0..np.max(0) {
            parts.push(i32_(&mut b)?);
        }
        out.push((topic, parts));
    }
    Some(out)
}

/// Checks that this broker coordinates group `id` (FindCoordinator, as an admin client asks
/// first; the first ask creates `__consumer_offsets`, so a coordinator still loading is
/// asked again for up to 5 s). A group coordinated elsewhere is a 502 naming the broker:
/// the console's requests run on this broker only.
async fn coordinator(c: &InProcess, id: &str) -> Result<(), ApiError> {
    coordinator_of(c, 0, id, "group").await
}

/// Checks that this broker coordinates `id` of FindCoordinator `key_type` (0 a group, 1 a
/// transactional id; `what` names it in errors), as [`coordinator`] does for groups.
pub(super) async fn coordinator_of(
    c: &InProcess,
    key_type: i8,
    id: &str,
    what: &str,
) -> Result<(), ApiError> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(vec![sb(id)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let resp = c.ask(&req, v::FIND_COORDINATOR).await?;
        let co = resp
            .coordinators
            .first()
            .ok_or_else(|| ApiError::new(502, "FindCoordinator answered nothing"))?;
        // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE: retriable.
        if matches!(co.error_code, 14 | 15) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        check(
            co.error_code,
            &format!("{what} {id}"),
            co.error_message.as_ref(),
        )?;
        if co.node_id.0 != c.broker.config.node_id {
            return Err(ApiError::new(
                502,
                format!(
                    "{what} {id} is coordinated by broker {}; open the console there",
                    co.node_id.0
                ),
            ));
        }
        return Ok(());
    }
}

/// `GET /api/groups/{id}`: state, members with their assignments, and per partition the
/// committed offset, the end offset and the lag.
pub async fn group(c: &InProcess, id: &str) -> ApiResult {
    coordinator(c, id).await?;
    let d = c
        .ask(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(id))]),
            v::DESCRIBE_GROUPS,
        )
        .await?;
    let g = d
        .groups
        .first()
        .ok_or_else(|| ApiError::new(502, "DescribeGroups answered no group"))?;
    check(
        g.error_code,
        &format!("group {id}"),
        g.error_message.as_ref(),
    )?;
    let consumer = g.protocol_type.as_str() == "consumer";
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let assignment: Vec<Value> = if consumer {
                parse_assignment(&m.member_assignment)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, ps)| json!({"topic": t, "partitions": ps}))
                    .collect()
            } else {
                Vec::new()
            };
            json!({
                "member_id": m.member_id.to_string(),
                "instance_id": m.group_instance_id.as_ref().map(|s| s.to_string()),
                "client_id": m.client_id.to_string(),
                "host": m.client_host.to_string(),
                "assignment": assignment,
            })
        })
        .collect();
    let of = c
        .ask(
            &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_topics(None)]),
            v::OFFSET_FETCH,
        )
        .await?;
    let og = of
        .groups
        .first()
        .ok_or_else(|| ApiError::new(502, "OffsetFetch answered no group"))?;
    check(og.error_code, &format!("offsets of {id}"), None)?;
    let mut lag_rows = Vec::new();
    let mut total_lag: i64 = 0;
    for t in &og.topics {
        let topic = t.name.0.to_string();
        let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        // The end offsets need Describe on the topic; without it lag stays unknown.
        let ends = offsets(c, &topic, &parts, LATEST).await.unwrap_or_default();
        for p in &t.partitions {
            if p.committed_offset < 0 {
                continue;
            }
            let end = ends.get(&p.partition_index).copied().flatten();
            let lag = end.map(|e| (e - p.committed_offset).max(0));
            total_lag += lag.unwrap_or(0);
            lag_rows.push(json!({
                "topic": topic,
                "partition": p.partition_index,
                "committed": p.committed_offset,
                "end": end,
                "lag": lag,
                "metadata": p.metadata.as_ref().map(|m| m.to_string()),
            }));
        }
    }
    Ok(json!({
        "group": id,
        "state": g.group_state.to_string(),
        "protocol_type": g.protocol_type.to_string(),
        "protocol": g.protocol_data.to_string(),
        "members": members,
        "offsets": lag_rows,
        "total_lag": total_lag,
    }))
}

/// `POST /api/groups/{id}/reset` `{to: "earliest"|"latest"|"offset", offset?, topic?}`:
/// commits new offsets for the group's partitions (of `topic`, or all it has committed),
/// as `kafka-consumer-groups --reset-offsets --execute` does. Only an empty group can be
/// reset (Kafka's tool refuses otherwise; its members would overwrite the offsets).
pub async fn reset(c: &InProcess, id: &str, body: &Value) -> ApiResult {
    let to = field(body, "to")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::new(400, "to: earliest, latest or offset"))?;
    let target = match to {
        "earliest" => EARLIEST,
        "latest" => LATEST,
        "offset" => {
            let o = field(body, "offset")
                .and_then(|v| v.as_i64())
                .filter(|o| *o >= 0)
                .ok_or_else(|| ApiError::new(400, "offset: a non-negative integer"))?;
            o
        }
        _ => return Err(ApiError::new(400, "to: earliest, latest or offset")),
    };
    let only_topic = field(body, "topic").and_then(|v| v.as_str());
    coordinator(c, id).await?;
    let d = c
        .ask(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(id))]),
            v::DESCRIBE_GROUPS,
        )
        .await?;
    let g = d
        .groups
        .first()
        .ok_or_else(|| ApiError::new(502, "DescribeGroups answered no group"))?;
    check(
        g.error_code,
        &format!("group {id}"),
        g.error_message.as_ref(),
    )?;
    let state = g.group_state.to_string();
    if !matches!(state.as_str(), "Empty" | "Dead") {
        return Err(ApiError {
            status: 409,
            message: format!(
                "group {id} is {state}: offsets can be reset only when it has no members (stop its consumers first)"
            ),
            code: Some("NON_EMPTY_GROUP".into()),
        });
    }
    let of = c
        .ask(
            &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_topics(None)]),
            v::OFFSET_FETCH,
        )
        .await?;
    let og = of
        .groups
        .first()
        .ok_or_else(|| ApiError::new(502, "OffsetFetch answered no group"))?;
    check(og.error_code, &format!("offsets of {id}"), None)?;
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for t in &og.topics {
        let name = t.name.0.to_string();
        if only_topic.is_some_and(|o| o != name) {
            continue;
        }
        by_topic
            .entry(name)
            .or_default()
            .extend(t.partitions.iter().map(|p| p.partition_index));
    }
    if let (Some(t), true) = (only_topic, by_topic.is_empty()) {
        // A topic the group never committed: all its partitions.
        let md = metadata(c, Some(&[t])).await?;
        let mt = md
            .topics
            .first()
            .ok_or_else(|| ApiError::new(502, "Metadata answered no topic"))?;
        check(mt.error_code, &format!("topic {t}"), None)?;
        by_topic.insert(
            t.into(),
            mt.partitions.iter().map(|p| p.partition_index).collect(),
        );
    }
    if by_topic.is_empty() {
        return Err(ApiError::new(
            400,
            format!("group {id} has no committed offsets; name a topic"),
        ));
    }
    let mut topics = Vec::new();
    let mut result = Vec::new();
    for (topic, parts) in &by_topic {
        let new: BTreeMap<i32, Option<i64>> = if target >= 0 {
            // Clamped into [log start, log end], as Kafka's tool does.
            let lo = offsets(c, topic, parts, EARLIEST).await?;
            let hi = offsets(c, topic, parts, LATEST).await?;
            parts
                .iter()
                .map(|p| {
                    let l = lo.get(p).copied().flatten().unwrap_or(0);
                    let h = hi.get(p).copied().flatten().unwrap_or(target);
                    (*p, Some(target.clamp(l, h.max(l))))
                })
                .collect()
        } else {
            offsets(c, topic, parts, target).await?
        };
        let mut partitions = Vec::new();
        for (p, o) in new {
            let o = o.ok_or_else(|| {
                ApiError::new(
                    502,
                    format!("no {to} offset for {topic}-{p} (not led by this broker?)"),
                )
            })?;
            partitions.push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(o)
                    .with_committed_leader_epoch(-1),
            );
            result.push(json!({"topic": topic, "partition": p, "offset": o}));
        }
        topics.push(
            OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions),
        );
    }
    // Generation -1 and no member id: an admin commit, accepted on an empty group only.
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(id)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(topics);
    let resp = c.ask(&req, v::OFFSET_COMMIT).await?;
    for t in &resp.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                &format!("committing {}-{}", t.name.0, p.partition_index),
                None,
            )?;
        }
    }
    Ok(json!({"group": id, "offsets": result}))
}

/// `GET /api/throughput`: this broker's per-topic client traffic counters (monotonic; the
/// page turns two polls into rates), for the topics the principal may describe.
pub async fn throughput(c: &InProcess) -> ApiResult {
    let md = metadata(c, None).await?;
    let visible: std::collections::BTreeSet<String> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    let mut totals = (0u64, 0u64, 0u64);
    let topics: Vec<Value> = c
        .broker
        .replicas
        .topic_stats
        .snapshot()
        .into_iter()
        .filter(|(t, _)| visible.contains(t))
        .map(|(t, s)| {
            totals.0 += s.bytes_in;
            totals.1 += s.bytes_out;
            totals.2 += s.messages_in;
            json!({"topic": t, "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
                "messages_in": s.messages_in})
        })
        .collect();
    Ok(json!({
        "time_ms": crate::replica_manager::now_ms(),
        "bytes_in": totals.0,
        "bytes_out": totals.1,
        "messages_in": totals.2,
        "topics": topics,
    }))
}
