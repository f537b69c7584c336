//! Metadata records: every change to cluster metadata is one of these, appended to the
//! `__cluster_metadata` log (KIP-500) and applied in order by every node.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which kind of resource a config record applies to (Kafka's ConfigResource.Type codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    /// A topic (code 2).
    Topic,
    /// A broker (code 4); an empty name means the cluster-wide default.
    Broker,
}

impl ConfigResource {
    /// Kafka's numeric resource type.
    pub fn code(self) -> i8 {
        match self {
            ConfigResource::Topic => 2,
            ConfigResource::Broker => 4,
        }
    }
    /// From Kafka's numeric resource type.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(ConfigResource::Topic),
            4 => Some(ConfigResource::Broker),
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
/// ProducerIdsRecord, FeatureLevelRecord), encoded as versioned JSON values.
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
}

/// Version of the JSON envelope; an unknown version is refused on replay.
pub const RECORD_FORMAT_VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u8,
    #[serde(flatten)]
    record: MetadataRecord,
}

/// Error decoding a metadata record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not valid JSON for any record.
    #[error("malformed metadata record: {0}")]
    Malformed(String),
    /// Written by a newer Nagare.
    #[error("unsupported metadata record version {0}")]
    UnsupportedVersion(u8),
}

impl MetadataRecord {
    /// Serializes the record into a record value.
    pub fn encode(&self) -> Vec<u8> {
        let env = Envelope {
            v: RECORD_FORMAT_VERSION,
            record: self.clone(),
        };
        // Serializing plain data structs to JSON cannot fail.
        serde_json::to_vec(&env).unwrap_or_default()
    }

    /// Parses a record value written by [`MetadataRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        let version = v.get("v").and_then(|x| x.as_u64()).unwrap_or(0) as u8;
        if version != RECORD_FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let env: Envelope =
            serde_json::from_value(v).map_err(|e| RecordError::Malformed(e.to_string()))?;
        Ok(env.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let r = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: Uuid::from_bytes([1; 16]),
        };
        assert_eq!(MetadataRecord::decode(&r.encode()).ok(), Some(r));
        assert!(matches!(
            MetadataRecord::decode(br#"{"v":9,"type":"RemoveTopic","topic_id":"00000000-0000-0000-0000-000000000000"}"#),
            Err(RecordError::UnsupportedVersion(9))
        ));
        assert!(MetadataRecord::decode(b"garbage").is_err());
    }
}
