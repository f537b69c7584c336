//! Records of the `__consumer_offsets` topic, encoded in Kafka's own schema.
//!
//! Every record is a key and an optional value (a `None` value is a tombstone, which compaction
//! eventually removes). Both start with a big-endian `int16` version, exactly as Kafka's
//! `GroupCoordinatorRecordSerde` writes them, so a log written by Nagare can be read by Kafka's
//! tooling (`kafka-dump-log --offsets-decoder`) and the other way round:
//!
//! | key version | key schema | value schema |
//! |---|---|---|
//! | 0, 1 | `OffsetCommitKey { group, topic, partition }` | `OffsetCommitValue` v0–v4 |
//! | 2 | `GroupMetadataKey { group }` | `GroupMetadataValue` v0–v4 |
//! | 3 | `ConsumerGroupMetadataKey { group }` | `ConsumerGroupMetadataValue` v0 |
//! | 5 | `ConsumerGroupMemberMetadataKey { group, member }` | `ConsumerGroupMemberMetadataValue` v0 |
//! | 6 | `ConsumerGroupTargetAssignmentMetadataKey { group }` | `…TargetAssignmentMetadataValue` v0 |
//! | 7 | `ConsumerGroupTargetAssignmentMemberKey { group, member }` | `…TargetAssignmentMemberValue` v0 |
//! | 8 | `ConsumerGroupCurrentMemberAssignmentKey { group, member }` | `…CurrentMemberAssignmentValue` v0 |
//!
//! We write key version 1 / 2, `OffsetCommitValue` v3 (v1 when an explicit expire timestamp
//! is present, as Kafka does for old clients asking for a retention time) and
//! `GroupMetadataValue` v3. All versions up to the flexible v4 are decoded. The KIP-848
//! consumer-group records (keys 3, 5–8) use Kafka's flexible v0 value schemas (compact strings
//! and arrays, tagged fields, which are skipped when read). Key 4
//! (`ConsumerGroupPartitionMetadata`, deprecated by Kafka 4.1) and the share/streams group
//! records are reported as [`RecordError::UnknownKeyVersion`] so that a loader can skip them:
//! Nagare recomputes a group's subscribed-topic metadata from the metadata image instead.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Errors from decoding a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The buffer ended before the field being read.
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    /// A string field was not valid UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A length prefix was negative where null is not allowed, or otherwise impossible.
    #[error("invalid length {len} for {field}")]
    InvalidLength {
        /// The field being read.
        field: &'static str,
        /// The length read.
        len: i64,
    },
    /// The key version is not one of the record types this coordinator owns.
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    /// The value version is outside the supported range for its key type.
    #[error("unknown value version {version} for {record}")]
    UnknownValueVersion {
        /// The record type.
        record: &'static str,
        /// The version read.
        version: i16,
    },
}

/// One member inside a [`GroupMetadataValue`] (Kafka's `MemberMetadata` struct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    /// The member id given by the coordinator.
    pub member_id: String,
    /// The static member's `group.instance.id` (KIP-345), `None` for dynamic members.
    pub group_instance_id: Option<String>,
    /// The client id the member joined with.
    pub client_id: String,
    /// The client's host as the broker saw it.
    pub client_host: String,
    /// The member's rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The member's session timeout.
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    /// The assignment the leader gave this member.
    pub assignment: Bytes,
}

/// The value of a group metadata record (Kafka's `GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// The protocol type (`consumer`, `connect`, …); empty for a group without one.
    pub protocol_type: String,
    /// The generation id.
    pub generation: i32,
    /// The selected protocol (assignor), `None` when the group is empty.
    pub protocol: Option<String>,
    /// The leader's member id, `None` when the group is empty.
    pub leader: Option<String>,
    /// When the group entered its current state, -1 if unknown (value versions before 2).
    pub current_state_timestamp_ms: i64,
    /// The members and their assignments.
    pub members: Vec<MemberMetadataValue>,
}

/// The value of an offset commit record (Kafka's `OffsetCommitValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    /// The committed offset.
    pub offset: i64,
    /// The leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// The metadata string the client committed (empty if it sent null).
    pub metadata: String,
    /// When the commit was accepted.
    pub commit_timestamp_ms: i64,
    /// Explicit expiry (OffsetCommit v2–v4 `retention_time_ms`), -1 if none.
    pub expire_timestamp_ms: i64,
}

/// Partitions by topic id: the assignment type of the KIP-848 records.
pub type TopicPartitions = std::collections::BTreeMap<uuid::Uuid, std::collections::BTreeSet<i32>>;

/// The value of a consumer-group member record (Kafka's `ConsumerGroupMemberMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMemberMetadataValue {
    /// The static member's `group.instance.id`, if any.
    pub instance_id: Option<String>,
    /// The member's rack, if any.
    pub rack_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client's host as the broker saw it.
    pub client_host: String,
    /// The topics the member subscribes to by name.
    pub subscribed_topic_names: Vec<String>,
    /// The member's subscription regular expression (KIP-848 RE2J syntax), if any.
    pub subscribed_topic_regex: Option<String>,
    /// The member's rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The server-side assignor the member asked for, if any.
    pub server_assignor: Option<String>,
}

/// The value of a consumer-group current-assignment record (Kafka's
/// `ConsumerGroupCurrentMemberAssignmentValue`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentMemberAssignmentValue {
    /// The epoch the member must heartbeat with.
    pub member_epoch: i32,
    /// The member's previous epoch (accepted if the bump's response was lost).
    pub previous_member_epoch: i32,
    /// The member state (Kafka's `MemberState`: 0 stable, 1 unrevoked partitions, 2 unreleased
    /// partitions).
    pub state: i8,
    /// The partitions the member owns (or is given).
    pub assigned_partitions: TopicPartitions,
    /// The partitions the member must revoke.
    pub partitions_pending_revocation: TopicPartitions,
}

/// A record of the `__consumer_offsets` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRecord {
    /// A group's metadata snapshot; `value: None` is the group tombstone.
    GroupMetadata {
        /// The group id (the record key).
        group_id: String,
        /// The snapshot, or `None` to delete the group.
        value: Option<GroupMetadataValue>,
    },
    /// A committed offset; `value: None` deletes it.
    OffsetCommit {
        /// The group id.
        group_id: String,
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The committed offset, or `None` to delete it.
        value: Option<OffsetCommitValue>,
    },
    /// A KIP-848 consumer group's epoch (key 3); `None` deletes the group.
    ConsumerGroupMetadata {
        /// The group id.
        group_id: String,
        /// The group epoch, or `None` (tombstone).
        epoch: Option<i32>,
    },
    /// A consumer-group member's subscription and client data (key 5).
    ConsumerGroupMemberMetadata {
        /// The group id.
        group_id: String,
        /// The member id.
        member_id: String,
        /// The member metadata, or `None` when the member left.
        value: Option<ConsumerMemberMetadataValue>,
    },
    /// The epoch of a consumer group's target assignment (key 6).
    ConsumerGroupTargetAssignmentMetadata {
        /// The group id.
        group_id: String,
        /// The assignment epoch, or `None` (tombstone).
        assignment_epoch: Option<i32>,
    },
    /// One member's target assignment (key 7).
    ConsumerGroupTargetAssignmentMember {
        /// The group id.
        group_id: String,
        /// The member id.
        member_id: String,
        /// The target partitions, or `None` when the member left.
        partitions: Option<TopicPartitions>,
    },
    /// One member's current assignment and epoch (key 8).
    ConsumerGroupCurrentMemberAssignment {
        /// The group id.
        group_id: String,
        /// The member id.
        member_id: String,
        /// The current assignment, or `None` when the member left.
        value: Option<CurrentMemberAssignmentValue>,
    },
}

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

impl CoordinatorRecord {
    /// The group this record belongs to.
    pub fn group_id(&self) -> &str {
        match self {
            CoordinatorRecord::GroupMetadata { group_id, .. }
            | CoordinatorRecord::OffsetCommit { group_id, .. }
            | CoordinatorRecord::ConsumerGroupMetadata { group_id, .. }
            | CoordinatorRecord::ConsumerGroupMemberMetadata { group_id, .. }
            | CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata { group_id, .. }
            | CoordinatorRecord::ConsumerGroupTargetAssignmentMember { group_id, .. }
            | CoordinatorRecord::ConsumerGroupCurrentMemberAssignment { group_id, .. } => group_id,
        }
    }

    /// Whether this record is a tombstone (null value).
    pub fn is_tombstone(&self) -> bool {
        match self {
            CoordinatorRecord::GroupMetadata { value, .. } => value.is_none(),
            CoordinatorRecord::OffsetCommit { value, .. } => value.is_none(),
            CoordinatorRecord::ConsumerGroupMetadata { epoch, .. } => epoch.is_none(),
            CoordinatorRecord::ConsumerGroupMemberMetadata { value, .. } => value.is_none(),
            CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
                assignment_epoch, ..
            } => assignment_epoch.is_none(),
            CoordinatorRecord::ConsumerGroupTargetAssignmentMember { partitions, .. } => {
                partitions.is_none()
            }
            CoordinatorRecord::ConsumerGroupCurrentMemberAssignment { value, .. } => {
                value.is_none()
            }
        }
    }

    /// Encodes the record key.
    pub fn encode_key(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            CoordinatorRecord::GroupMetadata { group_id, .. } => {
                buf.put_i16(GROUP_METADATA_KEY_VERSION);
                put_string(&mut buf, group_id);
            }
            CoordinatorRecord::OffsetCommit {
                group_id,
                topic,
                partition,
                ..
            } => {
                buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut buf, group_id);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            CoordinatorRecord::ConsumerGroupMetadata { group_id, .. } => {
                buf.put_i16(3);
                put_string(&mut buf, group_id);
            }
            CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata { group_id, .. } => {
                buf.put_i16(6);
                put_string(&mut buf, group_id);
            }
            CoordinatorRecord::ConsumerGroupMemberMetadata {
                group_id,
                member_id,
                ..
            } => {
                buf.put_i16(5);
                put_string(&mut buf, group_id);
                put_string(&mut buf, member_id);
            }
            CoordinatorRecord::ConsumerGroupTargetAssignmentMember {
                group_id,
                member_id,
                ..
            } => {
                buf.put_i16(7);
                put_string(&mut buf, group_id);
                put_string(&mut buf, member_id);
            }
            CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id,
                member_id,
                ..
            } => {
                buf.put_i16(8);
                put_string(&mut buf, group_id);
                put_string(&mut buf, member_id);
            }
        }
        buf.freeze()
    }

    /// Encodes the record value, `None` for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        match self {
            CoordinatorRecord::GroupMetadata { value, .. } => {
                let v = value.as_ref()?;
                buf.put_i16(GROUP_METADATA_VALUE_VERSION);
                put_string(&mut buf, &v.protocol_type);
                buf.put_i32(v.generation);
                put_nullable_string(&mut buf, v.protocol.as_deref());
                put_nullable_string(&mut buf, v.leader.as_deref());
                buf.put_i64(v.current_state_timestamp_ms);
                buf.put_i32(len_i32(v.members.len()));
                for m in &v.members {
                    put_string(&mut buf, &m.member_id);
                    put_nullable_string(&mut buf, m.group_instance_id.as_deref());
                    put_string(&mut buf, &m.client_id);
                    put_string(&mut buf, &m.client_host);
                    buf.put_i32(m.rebalance_timeout_ms);
                    buf.put_i32(m.session_timeout_ms);
                    put_bytes(&mut buf, &m.subscription);
                    put_bytes(&mut buf, &m.assignment);
                }
            }
            CoordinatorRecord::OffsetCommit { value, .. } => {
                let v = value.as_ref()?;
                // Why: Kafka keeps the v1 schema for commits that carry an explicit expire
                // timestamp (old clients' retention_time_ms); v3 otherwise.
                if v.expire_timestamp_ms >= 0 {
                    buf.put_i16(1);
                    buf.put_i64(v.offset);
                    put_string(&mut buf, &v.metadata);
                    buf.put_i64(v.commit_timestamp_ms);
                    buf.put_i64(v.expire_timestamp_ms);
                } else {
                    buf.put_i16(3);
                    buf.put_i64(v.offset);
                    buf.put_i32(v.leader_epoch);
                    put_string(&mut buf, &v.metadata);
                    buf.put_i64(v.commit_timestamp_ms);
                }
            }
            // KIP-848 values: flexible v0 (compact encodings, empty tagged-field sections).
            CoordinatorRecord::ConsumerGroupMetadata { epoch, .. } => {
                buf.put_i16(0);
                buf.put_i32((*epoch)?);
                put_uvarint(&mut buf, 0);
            }
            CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
                assignment_epoch, ..
            } => {
                buf.put_i16(0);
                buf.put_i32((*assignment_epoch)?);
                put_uvarint(&mut buf, 0);
            }
            CoordinatorRecord::ConsumerGroupMemberMetadata { value, .. } => {
                let v = value.as_ref()?;
                buf.put_i16(0);
                put_compact_nullable_string(&mut buf, v.instance_id.as_deref());
                put_compact_nullable_string(&mut buf, v.rack_id.as_deref());
                put_compact_nullable_string(&mut buf, Some(&v.client_id));
                put_compact_nullable_string(&mut buf, Some(&v.client_host));
                put_uvarint(&mut buf, v.subscribed_topic_names.len() as u64 + 1);
                for t in &v.subscribed_topic_names {
                    put_compact_nullable_string(&mut buf, Some(t));
                }
                put_compact_nullable_string(&mut buf, v.subscribed_topic_regex.as_deref());
                buf.put_i32(v.rebalance_timeout_ms);
                put_compact_nullable_string(&mut buf, v.server_assignor.as_deref());
                put_uvarint(&mut buf, 0);
            }
            CoordinatorRecord::ConsumerGroupTargetAssignmentMember { partitions, .. } => {
                let p = partitions.as_ref()?;
                buf.put_i16(0);
                put_topic_partitions(&mut buf, p);
                put_uvarint(&mut buf, 0);
            }
            CoordinatorRecord::ConsumerGroupCurrentMemberAssignment { value, .. } => {
                let v = value.as_ref()?;
                buf.put_i16(0);
                buf.put_i32(v.member_epoch);
                buf.put_i32(v.previous_member_epoch);
                buf.put_i8(v.state);
                put_topic_partitions(&mut buf, &v.assigned_partitions);
                put_topic_partitions(&mut buf, &v.partitions_pending_revocation);
                put_uvarint(&mut buf, 0);
            }
        }
        Some(buf.freeze())
    }

    /// Decodes a record from its key and value bytes (`None` value = tombstone).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, RecordError> {
        let mut k = key;
        let key_version = get_i16(&mut k, "key version")?;
        match key_version {
            0 | 1 => {
                let group_id = get_string(&mut k, "group")?;
                let topic = get_string(&mut k, "topic")?;
                let partition = get_i32(&mut k, "partition")?;
                let value = value.map(decode_offset_commit_value).transpose()?;
                Ok(CoordinatorRecord::OffsetCommit {
                    group_id,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group_id = get_string(&mut k, "group")?;
                let value = value.map(decode_group_metadata_value).transpose()?;
                Ok(CoordinatorRecord::GroupMetadata { group_id, value })
            }
            3 => {
                let group_id = get_string(&mut k, "group")?;
                let epoch = value.map(decode_epoch_value).transpose()?;
                Ok(CoordinatorRecord::ConsumerGroupMetadata { group_id, epoch })
            }
            6 => {
                let group_id = get_string(&mut k, "group")?;
                let assignment_epoch = value.map(decode_epoch_value).transpose()?;
                Ok(CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
                    group_id,
                    assignment_epoch,
                })
            }
            5 | 7 | 8 => {
                let group_id = get_string(&mut k, "group")?;
                let member_id = get_string(&mut k, "member")?;
                Ok(match key_version {
                    5 => CoordinatorRecord::ConsumerGroupMemberMetadata {
                        group_id,
                        member_id,
                        value: value.map(decode_member_metadata_value).transpose()?,
                    },
                    7 => CoordinatorRecord::ConsumerGroupTargetAssignmentMember {
                        group_id,
                        member_id,
                        partitions: value.map(decode_target_member_value).transpose()?,
                    },
                    _ => CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                        group_id,
                        member_id,
                        value: value.map(decode_current_assignment_value).transpose()?,
                    },
                })
            }
            v => Err(RecordError::UnknownKeyVersion(v)),
        }
    }
}

fn decode_offset_commit_value(mut b: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let version = get_i16(&mut b, "value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            record: "OffsetCommitValue",
            version,
        });
    }
    let flexible = version >= 4;
    let offset = get_i64(&mut b, "offset")?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut b, "leader epoch")?
    } else {
        -1
    };
    let metadata = read_string(&mut b, flexible, "metadata")?.unwrap_or_default();
    let commit_timestamp_ms = get_i64(&mut b, "commit timestamp")?;
    let expire_timestamp_ms = if version == 1 {
        get_i64(&mut b, "expire timestamp")?
    } else {
        -1
    };
    if flexible {
        // Tagged fields (topicId, tag 0) are not used by this coordinator yet.
        skip_tagged_fields(&mut b)?;
    }
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn decode_group_metadata_value(mut b: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let version = get_i16(&mut b, "value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            record: "GroupMetadataValue",
            version,
        });
    }
    let flexible = version >= 4;
    let protocol_type = read_string(&mut b, flexible, "protocol type")?.unwrap_or_default();
    let generation = get_i32(&mut b, "generation")?;
    let protocol = read_string(&mut b, flexible, "protocol")?;
    let leader = read_string(&mut b, flexible, "leader")?;
    let current_state_timestamp_ms = if version >= 2 {
        get_i64(&mut b, "current state timestamp")?
    } else {
        -1
    };
    let count = read_array_len(&mut b, flexible, "members")?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = required(read_string(&mut b, flexible, "member id")?, "member id")?;
        let group_instance_id = if version >= 3 {
            read_string(&mut b, flexible, "group instance id")?
        } else {
            None
        };
        let client_id = required(read_string(&mut b, flexible, "client id")?, "client id")?;
        let client_host = required(read_string(&mut b, flexible, "client host")?, "client host")?;
        let session_or_rebalance = get_i32(&mut b, "timeout")?;
        let (rebalance_timeout_ms, session_timeout_ms) = if version >= 1 {
            (session_or_rebalance, get_i32(&mut b, "session timeout")?)
        } else {
            // Why: v0 has no rebalance timeout; Kafka uses the session timeout for both.
            (session_or_rebalance, session_or_rebalance)
        };
        let subscription = read_bytes(&mut b, flexible, "subscription")?;
        let assignment = read_bytes(&mut b, flexible, "assignment")?;
        if flexible {
            skip_tagged_fields(&mut b)?;
        }
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    if flexible {
        skip_tagged_fields(&mut b)?;
    }
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

fn value_version(b: &mut &[u8], record: &'static str) -> Result<(), RecordError> {
    let version = get_i16(b, "value version")?;
    if version != 0 {
        return Err(RecordError::UnknownValueVersion { record, version });
    }
    Ok(())
}

fn decode_epoch_value(mut b: &[u8]) -> Result<i32, RecordError> {
    value_version(&mut b, "ConsumerGroupMetadataValue")?;
    let epoch = get_i32(&mut b, "epoch")?;
    // Kafka 4.1 adds a tagged metadata hash; we do not use it.
    skip_tagged_fields(&mut b)?;
    Ok(epoch)
}

fn decode_member_metadata_value(mut b: &[u8]) -> Result<ConsumerMemberMetadataValue, RecordError> {
    value_version(&mut b, "ConsumerGroupMemberMetadataValue")?;
    let instance_id = read_string(&mut b, true, "instance id")?;
    let rack_id = read_string(&mut b, true, "rack id")?;
    let client_id = required(read_string(&mut b, true, "client id")?, "client id")?;
    let client_host = required(read_string(&mut b, true, "client host")?, "client host")?;
    let n = read_array_len(&mut b, true, "subscribed topic names")?;
    let mut subscribed_topic_names = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        subscribed_topic_names.push(required(
            read_string(&mut b, true, "topic name")?,
            "topic name",
        )?);
    }
    let subscribed_topic_regex = read_string(&mut b, true, "subscribed topic regex")?;
    let rebalance_timeout_ms = get_i32(&mut b, "rebalance timeout")?;
    let server_assignor = read_string(&mut b, true, "server assignor")?;
    // Tag 0 (ClassicMemberMetadata) is only written for classic-protocol members of a
    // consumer group, which Nagare does not have.
    skip_tagged_fields(&mut b)?;
    Ok(ConsumerMemberMetadataValue {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex,
        rebalance_timeout_ms,
        server_assignor,
    })
}

fn decode_target_member_value(mut b: &[u8]) -> Result<TopicPartitions, RecordError> {
    value_version(&mut b, "ConsumerGroupTargetAssignmentMemberValue")?;
    let p = read_topic_partitions(&mut b)?;
    skip_tagged_fields(&mut b)?;
    Ok(p)
}

fn decode_current_assignment_value(
    mut b: &[u8],
) -> Result<CurrentMemberAssignmentValue, RecordError> {
    value_version(&mut b, "ConsumerGroupCurrentMemberAssignmentValue")?;
    let member_epoch = get_i32(&mut b, "member epoch")?;
    let previous_member_epoch = get_i32(&mut b, "previous member epoch")?;
    if b.remaining() < 1 {
        return Err(RecordError::Truncated("state"));
    }
    let state = b.get_i8();
    let assigned_partitions = read_topic_partitions(&mut b)?;
    let partitions_pending_revocation = read_topic_partitions(&mut b)?;
    skip_tagged_fields(&mut b)?;
    Ok(CurrentMemberAssignmentValue {
        member_epoch,
        previous_member_epoch,
        state,
        assigned_partitions,
        partitions_pending_revocation,
    })
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_compact_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_uvarint(buf, 0),
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
    }
}

/// `[]TopicPartitions { TopicId uuid, Partitions []int32 }`, compact, with empty tags.
fn put_topic_partitions(buf: &mut BytesMut, p: &TopicPartitions) {
    put_uvarint(buf, p.len() as u64 + 1);
    for (id, parts) in p {
        buf.put_slice(id.as_bytes());
        put_uvarint(buf, parts.len() as u64 + 1);
        for i in parts {
            buf.put_i32(*i);
        }
        put_uvarint(buf, 0);
    }
}

fn read_topic_partitions(b: &mut &[u8]) -> Result<TopicPartitions, RecordError> {
    let n = read_array_len(b, true, "topic partitions")?;
    let mut out = TopicPartitions::new();
    for _ in 0..n {
        let raw = take(b, 16, "topic id")?;
        let mut id = [0u8; 16];
        id.copy_from_slice(raw);
        let count = read_array_len(b, true, "partitions")?;
        let mut parts = std::collections::BTreeSet::new();
        for _ in 0..count {
            parts.insert(get_i32(b, "partition")?);
        }
        skip_tagged_fields(b)?;
        out.entry(uuid::Uuid::from_bytes(id))
            .or_default()
            .extend(parts);
    }
    Ok(out)
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Strings longer than i16::MAX cannot be represented in the schema; group ids, topics and
    // member ids are bounded far below that by the request decoder (int16 length prefixes).
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    buf.put_i16(len);
    buf.put_slice(&s.as_bytes()[..len as usize]);
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(len_i32(b.len()));
    buf.put_slice(b);
}

fn get_i16(b: &mut &[u8], field: &'static str) -> Result<i16, RecordError> {
    if b.remaining() < 2 {
        return Err(RecordError::Truncated(field));
    }
    Ok(b.get_i16())
}

fn get_i32(b: &mut &[u8], field: &'static str) -> Result<i32, RecordError> {
    if b.remaining() < 4 {
        return Err(RecordError::Truncated(field));
    }
    Ok(b.get_i32())
}

fn get_i64(b: &mut &[u8], field: &'static str) -> Result<i64, RecordError> {
    if b.remaining() < 8 {
        return Err(RecordError::Truncated(field));
    }
    Ok(b.get_i64())
}

fn get_uvarint(b: &mut &[u8], field: &'static str) -> Result<u64, RecordError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !b.has_remaining() {
            return Err(RecordError::Truncated(field));
        }
        let byte = b.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RecordError::InvalidLength {
        field,
        len: i64::MAX,
    })
}

fn take<'a>(b: &mut &'a [u8], len: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
    if b.len() < len {
        return Err(RecordError::Truncated(field));
    }
    let (head, tail) = b.split_at(len);
    *b = tail;
    Ok(head)
}

fn get_string(b: &mut &[u8], field: &'static str) -> Result<String, RecordError> {
    required(read_string(b, false, field)?, field)
}

fn required<T>(v: Option<T>, field: &'static str) -> Result<T, RecordError> {
    v.ok_or(RecordError::InvalidLength { field, len: -1 })
}

/// Reads a (nullable) string, classic (`int16` length) or compact (`uvarint` length + 1).
fn read_string(
    b: &mut &[u8],
    flexible: bool,
    field: &'static str,
) -> Result<Option<String>, RecordError> {
    let len: i64 = if flexible {
        i64::try_from(get_uvarint(b, field)?).unwrap_or(i64::MAX) - 1
    } else {
        i64::from(get_i16(b, field)?)
    };
    if len < 0 {
        if len == -1 {
            return Ok(None);
        }
        return Err(RecordError::InvalidLength { field, len });
    }
    let raw = take(b, usize::try_from(len).unwrap_or(usize::MAX), field)?;
    let s = std::str::from_utf8(raw).map_err(|_| RecordError::InvalidUtf8(field))?;
    Ok(Some(s.to_owned()))
}

fn read_bytes(b: &mut &[u8], flexible: bool, field: &'static str) -> Result<Bytes, RecordError> {
    let len: i64 = if flexible {
        i64::try_from(get_uvarint(b, field)?).unwrap_or(i64::MAX) - 1
    } else {
        i64::from(get_i32(b, field)?)
    };
    if len < 0 {
        return Err(RecordError::InvalidLength { field, len });
    }
    let raw = take(b, usize::try_from(len).unwrap_or(usize::MAX), field)?;
    Ok(Bytes::copy_from_slice(raw))
}

fn read_array_len(
    b: &mut &[u8],
    flexible: bool,
    field: &'static str,
) -> Result<usize, RecordError> {
    let len: i64 = if flexible {
        i64::try_from(get_uvarint(b, field)?).unwrap_or(i64::MAX) - 1
    } else {
        i64::from(get_i32(b, field)?)
    };
    // An array can never hold more elements than there are bytes left; checking this keeps a
    // corrupt length from driving a huge allocation.
    if len < 0 || len as u64 > b.len() as u64 {
        return Err(RecordError::InvalidLength { field, len });
    }
    Ok(usize::try_from(len).unwrap_or(0))
}

fn skip_tagged_fields(b: &mut &[u8]) -> Result<(), RecordError> {
    let count = get_uvarint(b, "tagged fields")?;
    for _ in 0..count {
        let _tag = get_uvarint(b, "tag")?;
        let size = get_uvarint(b, "tag size")?;
        take(
            b,
            usize::try_from(size).unwrap_or(usize::MAX),
            "tagged field",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_value() -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 1234,
            members: vec![MemberMetadataValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        }
    }

    #[test]
    fn group_metadata_round_trips() {
        let r = CoordinatorRecord::GroupMetadata {
            group_id: "g".into(),
            value: Some(group_value()),
        };
        let k = r.encode_key();
        let v = r.encode_value();
        assert_eq!(&k[..2], &[0, 2]);
        let back = CoordinatorRecord::decode(&k, v.as_deref()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn offset_commit_round_trips_both_value_versions() {
        for expire in [-1, 99] {
            let r = CoordinatorRecord::OffsetCommit {
                group_id: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetCommitValue {
                    offset: 42,
                    leader_epoch: if expire < 0 { 5 } else { -1 },
                    metadata: "meta".into(),
                    commit_timestamp_ms: 10,
                    expire_timestamp_ms: expire,
                }),
            };
            let back =
                CoordinatorRecord::decode(&r.encode_key(), r.encode_value().as_deref()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn tombstones_round_trip() {
        let r = CoordinatorRecord::OffsetCommit {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: None,
        };
        assert!(r.encode_value().is_none());
        assert_eq!(CoordinatorRecord::decode(&r.encode_key(), None).unwrap(), r);
        let g = CoordinatorRecord::GroupMetadata {
            group_id: "g".into(),
            value: None,
        };
        assert_eq!(CoordinatorRecord::decode(&g.encode_key(), None).unwrap(), g);
    }

    #[test]
    fn decodes_kafka_v0_group_metadata_written_by_hand() {
        // GroupMetadataValue v0: protocolType, generation, protocol, leader, members[
        // memberId, clientId, clientHost, sessionTimeout, subscription, assignment].
        let mut b = BytesMut::new();
        b.put_i16(0);
        put_string(&mut b, "consumer");
        b.put_i32(1);
        put_string(&mut b, "range");
        put_string(&mut b, "m");
        b.put_i32(1);
        put_string(&mut b, "m");
        put_string(&mut b, "c");
        put_string(&mut b, "h");
        b.put_i32(10_000);
        put_bytes(&mut b, b"s");
        put_bytes(&mut b, b"a");
        let mut k = BytesMut::new();
        k.put_i16(2);
        put_string(&mut k, "g");
        let r = CoordinatorRecord::decode(&k, Some(&b)).unwrap();
        let CoordinatorRecord::GroupMetadata { value: Some(v), .. } = r else {
            panic!("wrong record")
        };
        assert_eq!(v.members[0].rebalance_timeout_ms, 10_000);
        assert_eq!(v.members[0].session_timeout_ms, 10_000);
        assert_eq!(v.current_state_timestamp_ms, -1);
    }

    #[test]
    fn decodes_flexible_v4_offset_commit() {
        let mut b = BytesMut::new();
        b.put_i16(4);
        b.put_i64(9);
        b.put_i32(2);
        b.put_u8(3); // compact string "ab"
        b.put_slice(b"ab");
        b.put_i64(77);
        b.put_u8(1); // one tagged field
        b.put_u8(0);
        b.put_u8(16);
        b.put_slice(&[0u8; 16]);
        let v = decode_offset_commit_value(&b).unwrap();
        assert_eq!(v.offset, 9);
        assert_eq!(v.metadata, "ab");
        assert_eq!(v.commit_timestamp_ms, 77);
    }

    #[test]
    fn consumer_group_records_round_trip() {
        let id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let tp: TopicPartitions = [(id, [0, 3, 7].into_iter().collect())].into();
        let records = vec![
            CoordinatorRecord::ConsumerGroupMetadata {
                group_id: "g".into(),
                epoch: Some(5),
            },
            CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
                group_id: "g".into(),
                assignment_epoch: Some(4),
            },
            CoordinatorRecord::ConsumerGroupMemberMetadata {
                group_id: "g".into(),
                member_id: "m".into(),
                value: Some(ConsumerMemberMetadataValue {
                    instance_id: Some("i".into()),
                    rack_id: None,
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    subscribed_topic_names: vec!["a".into(), "b".into()],
                    subscribed_topic_regex: None,
                    rebalance_timeout_ms: 300_000,
                    server_assignor: Some("range".into()),
                }),
            },
            CoordinatorRecord::ConsumerGroupTargetAssignmentMember {
                group_id: "g".into(),
                member_id: "m".into(),
                partitions: Some(tp.clone()),
            },
            CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id: "g".into(),
                member_id: "m".into(),
                value: Some(CurrentMemberAssignmentValue {
                    member_epoch: 5,
                    previous_member_epoch: 4,
                    state: 1,
                    assigned_partitions: tp.clone(),
                    partitions_pending_revocation: TopicPartitions::new(),
                }),
            },
            CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id: "g".into(),
                member_id: "m".into(),
                value: None,
            },
        ];
        for r in records {
            let k = r.encode_key();
            let v = r.encode_value();
            let back = CoordinatorRecord::decode(&k, v.as_deref()).unwrap();
            assert_eq!(back, r);
            if let Some(v) = v {
                for cut in 0..v.len() {
                    assert!(CoordinatorRecord::decode(&k, Some(&v[..cut])).is_err());
                }
            }
        }
    }

    #[test]
    fn kafka_tagged_fields_in_consumer_group_values_are_skipped() {
        // ConsumerGroupMetadataValue v0 with Kafka 4.1's tagged metadata hash (tag 0, int64).
        let mut v = BytesMut::new();
        v.put_i16(0);
        v.put_i32(9);
        v.put_u8(1); // one tagged field
        v.put_u8(0); // tag 0
        v.put_u8(8); // 8 bytes
        v.put_i64(0x1234);
        let mut k = BytesMut::new();
        k.put_i16(3);
        put_string(&mut k, "g");
        assert_eq!(
            CoordinatorRecord::decode(&k, Some(&v)).unwrap(),
            CoordinatorRecord::ConsumerGroupMetadata {
                group_id: "g".into(),
                epoch: Some(9)
            }
        );
        // A member record with the ClassicMemberMetadata tag (written for classic members).
        let r = CoordinatorRecord::ConsumerGroupMemberMetadata {
            group_id: "g".into(),
            member_id: "m".into(),
            value: Some(ConsumerMemberMetadataValue {
                client_id: "c".into(),
                client_host: "/h".into(),
                subscribed_topic_names: vec!["t".into()],
                rebalance_timeout_ms: 5,
                ..Default::default()
            }),
        };
        let mut bytes = r.encode_value().unwrap().to_vec();
        bytes.pop(); // the empty tag section
        bytes.extend_from_slice(&[1, 0, 3, 0xAA, 0xBB, 0xCC]);
        assert_eq!(
            CoordinatorRecord::decode(&r.encode_key(), Some(&bytes)).unwrap(),
            r
        );
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let r = CoordinatorRecord::GroupMetadata {
            group_id: "g".into(),
            value: Some(group_value()),
        };
        let k = r.encode_key();
        let v = r.encode_value().unwrap();
        for cut in 0..v.len() {
            assert!(CoordinatorRecord::decode(&k, Some(&v[..cut])).is_err());
        }
        for cut in 0..k.len() {
            assert!(CoordinatorRecord::decode(&k[..cut], Some(&v)).is_err());
        }
        assert_eq!(
            CoordinatorRecord::decode(&[0, 4, 0, 0], None),
            Err(RecordError::UnknownKeyVersion(4))
        );
        let mut huge = BytesMut::new();
        huge.put_i16(3);
        put_string(&mut huge, "consumer");
        huge.put_i32(1);
        huge.put_i16(-1);
        huge.put_i16(-1);
        huge.put_i64(0);
        huge.put_i32(i32::MAX);
        assert!(CoordinatorRecord::decode(&k, Some(&huge)).is_err());
    }
}
