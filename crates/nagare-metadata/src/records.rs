//! Metadata records: every change to cluster metadata is one of these, appended to the
//! `__cluster_metadata` log (KIP-500) and applied in order by every node.
//!
//! # Format
//!
//! Each record type has its own Kafka apiKey and its own version, as KRaft's metadata records
//! do (`TopicRecord` is apiKey 2, `PartitionRecord` 3, …; see [`RecordType`]). A record value
//! is framed like Kafka's `MetadataRecordSerde`:
//!
//! ```text
//! frame version  unsigned varint   always 1
//! apiKey         unsigned varint   the record type (Kafka's numbers)
//! version        unsigned varint   that type's version
//! body           JSON object       the type's fields at that version
//! ```
//!
//! The bodies stay JSON rather than Kafka's binary schemas: `kafka-protocol` 0.18 generates
//! only the RPC messages and a few raft control records (`LeaderChangeMessage`,
//! `SnapshotHeaderRecord`, `VotersRecord`), none of the metadata records, and our record
//! fields are not Kafka's (no tagged fields, directories, ELR), so binary bodies would be a
//! hand-written codec per type without any reader able to use them. What matters for safety
//! is the (type, version) header: a node refuses a type it does not know or a version newer
//! than it knows ([`RecordError`]) instead of guessing, and the controller writes only the
//! versions the finalized `metadata.version` allows ([`crate::metadata_version`]). A version
//! bump means a new body shape: add the version to [`RecordType::latest_version`], decode the
//! old shape too, and gate it in the metadata.version table.
//!
//! Records written before versions existed (a JSON envelope `{"v":1,"type":"Topic",...}`)
//! still decode, as version 0 of their type: their fields are exactly the version-0 bodies.
//! They start with `{`, which no framed record does (its first byte is the frame version 1).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which kind of resource a config record applies to (Kafka's ConfigResource.Type codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    /// A topic (code 2).
    Topic,
    /// A broker (code 4); an empty name means the cluster-wide default.
    Broker,
    /// A consumer or share group (code 32): KIP-848's per-group overrides of the
    /// coordinator's session timeout and heartbeat interval (Kafka's `GroupConfig`).
    Group,
    /// A KIP-714 client metrics subscription (code 16), named by the operator.
    ClientMetrics,
}

impl ConfigResource {
    /// Kafka's numeric resource type.
    pub fn code(self) -> i8 {
        match self {
            ConfigResource::Topic => 2,
            ConfigResource::Broker => 4,
            ConfigResource::Group => 32,
            ConfigResource::ClientMetrics => 16,
        }
    }
    /// From Kafka's numeric resource type.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(ConfigResource::Topic),
            4 => Some(ConfigResource::Broker),
            32 => Some(ConfigResource::Group),
            16 => Some(ConfigResource::ClientMetrics),
            _ => None,
        }
    }
}

/// A listener a broker advertises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Security protocol, e.g. `PLAINTEXT`.
    pub security_protocol: String,
}

/// One metadata change. Mirrors Kafka's metadata record types (RegisterBrokerRecord,
/// TopicRecord, PartitionRecord, PartitionChangeRecord, RemoveTopicRecord, ConfigRecord,
/// ProducerIdsRecord, FeatureLevelRecord, AccessControlEntryRecord,
/// RemoveAccessControlEntryRecord), encoded as versioned JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker registered (or re-registered with a new epoch).
    RegisterBroker {
        /// Node id.
        broker_id: i32,
        /// Broker epoch: the metadata offset of its registration.
        broker_epoch: i64,
        /// Unique per process start.
        incarnation_id: Uuid,
        /// Advertised listeners.
        endpoints: Vec<Endpoint>,
        /// `broker.rack`.
        rack: Option<String>,
        /// Whether it starts fenced.
        fenced: bool,
    },
    /// A broker's registration was removed (UnregisterBroker, `kafka-cluster unregister`).
    UnregisterBroker {
        /// Node id.
        broker_id: i32,
        /// The epoch of the registration removed.
        broker_epoch: i64,
    },
    /// A broker was fenced (or unfenced).
    BrokerFencing {
        /// Node id.
        broker_id: i32,
        /// New fencing state.
        fenced: bool,
    },
    /// A topic was created.
    Topic {
        /// Topic name.
        name: String,
        /// Topic id (KIP-516).
        topic_id: Uuid,
    },
    /// A partition was created.
    Partition {
        /// Owning topic.
        topic_id: Uuid,
        /// Partition index.
        partition_id: i32,
        /// Replica broker ids, preferred leader first.
        replicas: Vec<i32>,
        /// In-sync replicas.
        isr: Vec<i32>,
        /// Leader broker id, -1 if none.
        leader: i32,
        /// Leader epoch.
        leader_epoch: i32,
        /// Partition epoch (bumped by every change).
        partition_epoch: i32,
    },
    /// Leader, ISR or replicas of a partition changed.
    PartitionChange {
        /// Owning topic.
        topic_id: Uuid,
        /// Partition index.
        partition_id: i32,
        /// New leader (a change bumps the leader epoch).
        leader: Option<i32>,
        /// New ISR.
        isr: Option<Vec<i32>>,
        /// New replicas.
        replicas: Option<Vec<i32>>,
    },
    /// A topic and all its partitions were deleted.
    RemoveTopic {
        /// The topic.
        topic_id: Uuid,
    },
    /// A config was set (`Some`) or removed (`None`).
    Config {
        /// Resource type.
        resource: ConfigResource,
        /// Resource name (topic name, broker id, or empty for the cluster default).
        resource_name: String,
        /// Config key.
        name: String,
        /// New value, or `None` to delete the override.
        value: Option<String>,
    },
    /// A block of producer ids was handed out; the next free id follows it.
    ProducerIds {
        /// Broker that received the block.
        broker_id: i32,
        /// First id not yet allocated.
        next_producer_id: i64,
    },
    /// A feature's finalized level (e.g. `metadata.version`).
    FeatureLevel {
        /// Feature name.
        name: String,
        /// Finalized level.
        level: i16,
    },
    /// A client quota value was set or removed (Kafka's `ClientQuotaRecord`, apiKey 14).
    ClientQuota {
        /// The quota entity's components (`user`, `client-id`, `ip`; a `None` name is the
        /// type's default).
        entity: Vec<crate::client_quotas::EntityComponent>,
        /// The quota key, e.g. `producer_byte_rate`.
        key: String,
        /// The value (ignored when `remove`).
        value: f64,
        /// Whether the key is removed from the entity.
        remove: bool,
    },
    /// An ACL was created (Kafka's `AccessControlEntryRecord`); the codes are Kafka's wire
    /// codes, see [`crate::acls`].
    AccessControlEntry {
        /// The ACL's id: what removes it.
        id: Uuid,
        /// Resource type code (TOPIC 2, GROUP 3, CLUSTER 4, TRANSACTIONAL_ID 5, ...).
        resource_type: i8,
        /// Resource name (`*` with LITERAL is the wildcard).
        resource_name: String,
        /// Pattern type code (LITERAL 3, PREFIXED 4).
        pattern_type: i8,
        /// Principal, `Type:name` (`User:*` for every user).
        principal: String,
        /// Host IP address, or `*`.
        host: String,
        /// Operation code (ALL 2, READ 3, ...).
        operation: i8,
        /// Permission code (DENY 2, ALLOW 3).
        permission_type: i8,
    },
    /// An ACL was deleted (Kafka's `RemoveAccessControlEntryRecord`).
    RemoveAccessControlEntry {
        /// The id of the ACL.
        id: Uuid,
    },
    /// A user's SCRAM credential for one mechanism was set (KIP-554); never the password.
    UserScramCredential {
        /// User name.
        name: String,
        /// Kafka's mechanism type: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
        mechanism: i8,
        /// Salt.
        salt: Vec<u8>,
        /// H(ClientKey).
        stored_key: Vec<u8>,
        /// HMAC(SaltedPassword, "Server Key").
        server_key: Vec<u8>,
        /// PBKDF2 iterations.
        iterations: i32,
    },
    /// A user's SCRAM credential for one mechanism was deleted.
    RemoveUserScramCredential {
        /// User name.
        name: String,
        /// Kafka's mechanism type.
        mechanism: i8,
    },
}

/// Version of the legacy JSON envelope (`{"v":1,...}`), read but no longer written.
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// The frame version written before (apiKey, version), as in Kafka's `MetadataRecordSerde`.
pub const FRAME_VERSION: u64 = 1;

/// The legacy envelope, as records were written before per-type versions.
#[derive(Deserialize)]
struct Envelope {
    v: u8,
    #[serde(flatten)]
    record: MetadataRecord,
}

/// A metadata record type: Kafka's apiKey for the matching KRaft record, its name, and the
/// versions this code reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// `RegisterBrokerRecord` (apiKey 0).
    RegisterBroker,
    /// `UnregisterBrokerRecord` (apiKey 1).
    UnregisterBroker,
    /// `TopicRecord` (apiKey 2).
    Topic,
    /// `PartitionRecord` (apiKey 3).
    Partition,
    /// `ConfigRecord` (apiKey 4).
    Config,
    /// `PartitionChangeRecord` (apiKey 5).
    PartitionChange,
    /// `RemoveTopicRecord` (apiKey 9).
    RemoveTopic,
    /// `FeatureLevelRecord` (apiKey 12).
    FeatureLevel,
    /// `ProducerIdsRecord` (apiKey 15).
    ProducerIds,
    /// `BrokerRegistrationChangeRecord` (apiKey 17): Kafka's record for a fencing change.
    BrokerFencing,
    /// `ClientQuotaRecord` (apiKey 14).
    ClientQuota,
    /// `AccessControlEntryRecord` (apiKey 18).
    AccessControlEntry,
    /// `RemoveAccessControlEntryRecord` (apiKey 19).
    RemoveAccessControlEntry,
    /// `UserScramCredentialRecord` (apiKey 11).
    UserScramCredential,
    /// `RemoveUserScramCredentialRecord` (apiKey 22: Kafka's number; 12 is FeatureLevelRecord).
    RemoveUserScramCredential,
}

impl RecordType {
    /// Every record type, in apiKey order.
    pub const ALL: [RecordType; 15] = [
        RecordType::RegisterBroker,
        RecordType::UnregisterBroker,
        RecordType::Topic,
        RecordType::Partition,
        RecordType::Config,
        RecordType::PartitionChange,
        RecordType::RemoveTopic,
        RecordType::FeatureLevel,
        RecordType::ProducerIds,
        RecordType::BrokerFencing,
        RecordType::ClientQuota,
        RecordType::AccessControlEntry,
        RecordType::RemoveAccessControlEntry,
        RecordType::UserScramCredential,
        RecordType::RemoveUserScramCredential,
    ];

    /// Kafka's apiKey of the matching metadata record.
    pub fn api_key(self) -> u16 {
        match self {
            RecordType::RegisterBroker => 0,
            RecordType::UnregisterBroker => 1,
            RecordType::Topic => 2,
            RecordType::Partition => 3,
            RecordType::Config => 4,
            RecordType::PartitionChange => 5,
            RecordType::RemoveTopic => 9,
            RecordType::FeatureLevel => 12,
            RecordType::ProducerIds => 15,
            RecordType::BrokerFencing => 17,
            RecordType::ClientQuota => 14,
            RecordType::AccessControlEntry => 18,
            RecordType::RemoveAccessControlEntry => 19,
            RecordType::UserScramCredential => 11,
            RecordType::RemoveUserScramCredential => 22,
        }
    }

    /// The type of an apiKey, if this code knows it.
    pub fn from_api_key(api_key: u64) -> Option<RecordType> {
        RecordType::ALL
            .into_iter()
            .find(|t| u64::from(t.api_key()) == api_key)
    }

    /// Kafka's name of the record type (for error messages).
    pub fn name(self) -> &'static str {
        match self {
            RecordType::RegisterBroker => "RegisterBrokerRecord",
            RecordType::UnregisterBroker => "UnregisterBrokerRecord",
            RecordType::Topic => "TopicRecord",
            RecordType::Partition => "PartitionRecord",
            RecordType::Config => "ConfigRecord",
            RecordType::PartitionChange => "PartitionChangeRecord",
            RecordType::RemoveTopic => "RemoveTopicRecord",
            RecordType::FeatureLevel => "FeatureLevelRecord",
            RecordType::ProducerIds => "ProducerIdsRecord",
            RecordType::BrokerFencing => "BrokerRegistrationChangeRecord",
            RecordType::ClientQuota => "ClientQuotaRecord",
            RecordType::AccessControlEntry => "AccessControlEntryRecord",
            RecordType::RemoveAccessControlEntry => "RemoveAccessControlEntryRecord",
            RecordType::UserScramCredential => "UserScramCredentialRecord",
            RecordType::RemoveUserScramCredential => "RemoveUserScramCredentialRecord",
        }
    }

    /// The newest version of this type this code reads and writes; every version from 0 up
    /// to it decodes. Today every type is at its first version.
    pub fn latest_version(self) -> u16 {
        0
    }

    /// The serde tag of the [`MetadataRecord`] variant (the legacy envelope's `type`).
    fn tag(self) -> &'static str {
        match self {
            RecordType::RegisterBroker => "RegisterBroker",
            RecordType::UnregisterBroker => "UnregisterBroker",
            RecordType::Topic => "Topic",
            RecordType::Partition => "Partition",
            RecordType::Config => "Config",
            RecordType::PartitionChange => "PartitionChange",
            RecordType::RemoveTopic => "RemoveTopic",
            RecordType::FeatureLevel => "FeatureLevel",
            RecordType::ProducerIds => "ProducerIds",
            RecordType::BrokerFencing => "BrokerFencing",
            RecordType::ClientQuota => "ClientQuota",
            RecordType::AccessControlEntry => "AccessControlEntry",
            RecordType::RemoveAccessControlEntry => "RemoveAccessControlEntry",
            RecordType::UserScramCredential => "UserScramCredential",
            RecordType::RemoveUserScramCredential => "RemoveUserScramCredential",
        }
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (apiKey {})", self.name(), self.api_key())
    }
}

/// Error encoding or decoding a metadata record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a record of a known type and version (truncated frame, bad JSON,
    /// fields that do not match the version's body).
    #[error("malformed metadata record: {0}")]
    Malformed(String),
    /// A frame (or legacy envelope) version this code does not know: a newer format.
    #[error("unsupported metadata record frame version {0} (this binary reads frame version 1 and the legacy JSON envelope v1)")]
    UnsupportedFrameVersion(u64),
    /// A record type this code does not know (written by a newer version).
    #[error("unknown metadata record type: apiKey {api_key} version {version} (this binary knows apiKeys {known})", known = known_api_keys())]
    UnknownType {
        /// The apiKey read.
        api_key: u64,
        /// The version read.
        version: u64,
    },
    /// A known type at a version newer than this code reads.
    #[error("{record_type} version {version} is newer than this binary supports (versions 0 to {latest})")]
    UnsupportedVersion {
        /// The record type.
        record_type: RecordType,
        /// The version read.
        version: u64,
        /// The newest version this code reads.
        latest: u16,
    },
    /// Writing this type at this version is not allowed by the finalized `metadata.version`
    /// (or the type is not writable at all at that level).
    #[error("{record_type} version {version} is not allowed at metadata.version {metadata_version} (the newest allowed is {allowed:?})")]
    NotAllowed {
        /// The record type.
        record_type: RecordType,
        /// The version that was to be written.
        version: u16,
        /// The finalized `metadata.version` level.
        metadata_version: i16,
        /// The newest version of the type allowed at that level, if any.
        allowed: Option<u16>,
    },
}

/// The apiKeys this code knows, for error messages.
fn known_api_keys() -> String {
    RecordType::ALL
        .iter()
        .map(|t| t.api_key().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The type and version a record was decoded from (or is to be encoded at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordVersion {
    /// The record type.
    pub record_type: RecordType,
    /// The version of that type.
    pub version: u16,
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn get_uvarint(b: &mut &[u8], field: &str) -> Result<u64, RecordError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&byte, rest)) = b.split_first() else {
            return Err(RecordError::Malformed(format!("truncated {field}")));
        };
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RecordError::Malformed(format!("{field} varint too long")))
}

impl MetadataRecord {
    /// The record's type.
    pub fn record_type(&self) -> RecordType {
        match self {
            MetadataRecord::RegisterBroker { .. } => RecordType::RegisterBroker,
            MetadataRecord::UnregisterBroker { .. } => RecordType::UnregisterBroker,
            MetadataRecord::BrokerFencing { .. } => RecordType::BrokerFencing,
            MetadataRecord::Topic { .. } => RecordType::Topic,
            MetadataRecord::Partition { .. } => RecordType::Partition,
            MetadataRecord::PartitionChange { .. } => RecordType::PartitionChange,
            MetadataRecord::RemoveTopic { .. } => RecordType::RemoveTopic,
            MetadataRecord::Config { .. } => RecordType::Config,
            MetadataRecord::ProducerIds { .. } => RecordType::ProducerIds,
            MetadataRecord::FeatureLevel { .. } => RecordType::FeatureLevel,
            MetadataRecord::ClientQuota { .. } => RecordType::ClientQuota,
            MetadataRecord::AccessControlEntry { .. } => RecordType::AccessControlEntry,
            MetadataRecord::RemoveAccessControlEntry { .. } => RecordType::RemoveAccessControlEntry,
            MetadataRecord::UserScramCredential { .. } => RecordType::UserScramCredential,
            MetadataRecord::RemoveUserScramCredential { .. } => {
                RecordType::RemoveUserScramCredential
            }
        }
    }

    /// Serializes the record at its type's latest version. The controller writes through
    /// [`MetadataRecord::encode_for`] instead, which checks the finalized `metadata.version`.
    pub fn encode(&self) -> Vec<u8> {
        let t = self.record_type();
        self.encode_version(t.latest_version())
    }

    /// Serializes the record at the newest version of its type that `metadata_version` (a
    /// finalized `metadata.version` level) allows; refuses when it allows none.
    pub fn encode_for(&self, metadata_version: i16) -> Result<Vec<u8>, RecordError> {
        let record_type = self.record_type();
        let allowed = crate::metadata_version::max_record_version(metadata_version, record_type);
        match allowed {
            Some(v) if v <= record_type.latest_version() => Ok(self.encode_version(v)),
            _ => Err(RecordError::NotAllowed {
                record_type,
                version: record_type.latest_version(),
                metadata_version,
                allowed,
            }),
        }
    }

    /// Frames the record at `version` (a version this code knows, `<= latest_version`).
    fn encode_version(&self, version: u16) -> Vec<u8> {
        let t = self.record_type();
        let mut out = Vec::with_capacity(64);
        put_uvarint(&mut out, FRAME_VERSION);
        put_uvarint(&mut out, u64::from(t.api_key()));
        put_uvarint(&mut out, u64::from(version));
        // Version 0 of every type is the variant's fields; the serde tag is the header's
        // apiKey and is left out of the body. Serializing plain data cannot fail.
        let mut body = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = body.as_object_mut() {
            obj.remove("type");
        }
        if let Ok(b) = serde_json::to_vec(&body) {
            out.extend_from_slice(&b);
        }
        out
    }

    /// Parses a record value written by [`MetadataRecord::encode`] (any version this code
    /// knows) or by the legacy JSON envelope.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        Self::decode_versioned(bytes).map(|(r, _)| r)
    }

    /// Like [`MetadataRecord::decode`], also returning the type and version read.
    pub fn decode_versioned(bytes: &[u8]) -> Result<(Self, RecordVersion), RecordError> {
        match bytes.first() {
            None => Err(RecordError::Malformed("empty record value".into())),
            Some(b'{') => Self::decode_legacy(bytes),
            Some(_) => Self::decode_framed(bytes),
        }
    }

    fn decode_framed(bytes: &[u8]) -> Result<(Self, RecordVersion), RecordError> {
        let mut b = bytes;
        let frame = get_uvarint(&mut b, "frame version")?;
        if frame != FRAME_VERSION {
            return Err(RecordError::UnsupportedFrameVersion(frame));
        }
        let api_key = get_uvarint(&mut b, "apiKey")?;
        let version = get_uvarint(&mut b, "version")?;
        let Some(record_type) = RecordType::from_api_key(api_key) else {
            return Err(RecordError::UnknownType { api_key, version });
        };
        let latest = record_type.latest_version();
        if version > u64::from(latest) {
            return Err(RecordError::UnsupportedVersion {
                record_type,
                version,
                latest,
            });
        }
        // Only version 0 exists today; a later version decodes its own body shape here.
        let mut body: serde_json::Value =
            serde_json::from_slice(b).map_err(|e| RecordError::Malformed(e.to_string()))?;
        let Some(obj) = body.as_object_mut() else {
            return Err(RecordError::Malformed(format!(
                "{record_type} body is not a JSON object"
            )));
        };
        obj.insert("type".into(), serde_json::Value::from(record_type.tag()));
        let record: MetadataRecord = serde_json::from_value(body)
            .map_err(|e| RecordError::Malformed(format!("{record_type} v{version}: {e}")))?;
        Ok((
            record,
            RecordVersion {
                record_type,
                version: version as u16,
            },
        ))
    }

    fn decode_legacy(bytes: &[u8]) -> Result<(Self, RecordVersion), RecordError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        let version = v.get("v").and_then(|x| x.as_u64()).unwrap_or(0);
        if version != u64::from(RECORD_FORMAT_VERSION) {
            return Err(RecordError::UnsupportedFrameVersion(version));
        }
        let env: Envelope =
            serde_json::from_value(v).map_err(|e| RecordError::Malformed(e.to_string()))?;
        let _ = env.v;
        let record_type = env.record.record_type();
        Ok((
            env.record,
            RecordVersion {
                record_type,
                version: 0,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record of every type.
    fn one_of_each() -> Vec<MetadataRecord> {
        let id = Uuid::from_bytes([1; 16]);
        vec![
            MetadataRecord::RegisterBroker {
                broker_id: 1,
                broker_epoch: 7,
                incarnation_id: Uuid::from_bytes([9; 16]),
                endpoints: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "h".into(),
                    port: 9092,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: Some("r".into()),
                fenced: true,
            },
            MetadataRecord::BrokerFencing {
                broker_id: 1,
                fenced: false,
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition_id: 0,
                replicas: vec![1, 2],
                isr: vec![1],
                leader: 1,
                leader_epoch: 3,
                partition_epoch: 4,
            },
            MetadataRecord::PartitionChange {
                topic_id: id,
                partition_id: 0,
                leader: Some(2),
                isr: None,
                replicas: Some(vec![2, 1]),
            },
            MetadataRecord::RemoveTopic { topic_id: id },
            MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: None,
            },
            MetadataRecord::ProducerIds {
                broker_id: 1,
                next_producer_id: 1000,
            },
            MetadataRecord::FeatureLevel {
                name: "metadata.version".into(),
                level: 27,
            },
        ]
    }

    /// Records of the types added after the legacy envelope (not in its fixture).
    fn newer_types() -> Vec<MetadataRecord> {
        vec![
            // KIP-848 group configs (resource type 32).
            MetadataRecord::Config {
                resource: ConfigResource::Group,
                resource_name: "g".into(),
                name: "consumer.heartbeat.interval.ms".into(),
                value: Some("7000".into()),
            },
            MetadataRecord::ClientQuota {
                entity: vec![crate::client_quotas::EntityComponent::named("user", "u")],
                key: "producer_byte_rate".into(),
                value: 1024.0,
                remove: false,
            },
            MetadataRecord::AccessControlEntry {
                id: Uuid::from_bytes([2; 16]),
                resource_type: 2,
                resource_name: "t".into(),
                pattern_type: 4,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: 3,
                permission_type: 3,
            },
            MetadataRecord::RemoveAccessControlEntry {
                id: Uuid::from_bytes([2; 16]),
            },
            MetadataRecord::UserScramCredential {
                name: "alice".into(),
                mechanism: 2,
                salt: vec![1, 2, 3],
                stored_key: vec![4; 64],
                server_key: vec![5; 64],
                iterations: 4096,
            },
            MetadataRecord::RemoveUserScramCredential {
                name: "alice".into(),
                mechanism: 1,
            },
            MetadataRecord::UnregisterBroker {
                broker_id: 2,
                broker_epoch: 11,
            },
        ]
    }

    #[test]
    fn every_type_round_trips_with_its_api_key_and_version() {
        let mut records = one_of_each();
        records.extend(newer_types());
        let mut seen = std::collections::BTreeSet::new();
        for r in &records {
            let bytes = r.encode();
            let t = r.record_type();
            assert_eq!(
                &bytes[..3],
                &[1, t.api_key() as u8, 0],
                "frame 1, apiKey, version 0 for {t}"
            );
            let (back, v) = MetadataRecord::decode_versioned(&bytes).expect("decode");
            assert_eq!(&back, r);
            assert_eq!(
                v,
                RecordVersion {
                    record_type: t,
                    version: 0
                }
            );
            seen.insert(t);
        }
        assert_eq!(seen.len(), RecordType::ALL.len(), "a type left out");
        for t in RecordType::ALL {
            assert_eq!(RecordType::from_api_key(u64::from(t.api_key())), Some(t));
        }
    }

    /// Values written by the JSON-envelope encoding used before per-type versions still
    /// decode, as version 0 of their type. The fixture (one value per line) holds exactly the
    /// bytes the previous `encode` wrote for `one_of_each()` (checked against that code).
    #[test]
    fn legacy_envelope_fixture_decodes() {
        let fixture = include_str!("../tests/fixtures/legacy-json-envelope-v1.txt");
        let decoded: Vec<(MetadataRecord, RecordVersion)> = fixture
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| MetadataRecord::decode_versioned(l.as_bytes()).expect("legacy record"))
            .collect();
        let records: Vec<MetadataRecord> = decoded.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(records, one_of_each());
        assert!(decoded.iter().all(|(_, v)| v.version == 0));
        // A legacy envelope of another version is refused, not guessed at.
        assert_eq!(
            MetadataRecord::decode(
                br#"{"v":9,"type":"RemoveTopic","topic_id":"00000000-0000-0000-0000-000000000000"}"#
            ),
            Err(RecordError::UnsupportedFrameVersion(9))
        );
    }

    #[test]
    fn newer_versions_and_unknown_types_are_refused() {
        let topic = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: Uuid::nil(),
        }
        .encode();
        let mut newer = topic.clone();
        newer[2] = 1;
        assert_eq!(
            MetadataRecord::decode(&newer),
            Err(RecordError::UnsupportedVersion {
                record_type: RecordType::Topic,
                version: 1,
                latest: 0
            })
        );
        let mut unknown = topic.clone();
        unknown[1] = 99; // no metadata record type has apiKey 99
        assert_eq!(
            MetadataRecord::decode(&unknown),
            Err(RecordError::UnknownType {
                api_key: 99,
                version: 0
            })
        );
        let mut frame = topic.clone();
        frame[0] = 2;
        assert_eq!(
            MetadataRecord::decode(&frame),
            Err(RecordError::UnsupportedFrameVersion(2))
        );
        assert!(matches!(
            MetadataRecord::decode(&topic[..4]),
            Err(RecordError::Malformed(_))
        ));
        // Not a record at all: its first byte reads as an unknown frame version.
        assert_eq!(
            MetadataRecord::decode(b"garbage"),
            Err(RecordError::UnsupportedFrameVersion(u64::from(b'g')))
        );
        assert!(MetadataRecord::decode(b"").is_err());
        let msg = MetadataRecord::decode(&newer)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("TopicRecord (apiKey 2) version 1"), "{msg}");
        assert!(msg.contains("versions 0 to 0"), "{msg}");
        let msg = MetadataRecord::decode(&unknown)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains(
                "apiKey 99 version 0 (this binary knows apiKeys 0, 1, 2, 3, 4, 5, 9, 12, 15, 17, 14, 18, 19, 11, 22)"
            ),
            "{msg}"
        );
    }
}
