//! Kafka error codes used by the group coordinator (values from Kafka's `Errors` enum).

/// No error.
pub const NONE: i16 = 0;
/// An unexpected server error; also what Kafka answers when a group write is too large.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// The topic or partition is unknown.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The committed metadata string is longer than `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
/// The coordinator is still loading its partition.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// The coordinator is not available (e.g. the group is dead or being migrated).
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// This broker is not the coordinator of the group.
pub const NOT_COORDINATOR: i16 = 16;
/// The generation id is not the group's current one.
pub const ILLEGAL_GENERATION: i16 = 22;
/// The member's protocol type or protocols do not match the group's.
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
/// The group id is empty or otherwise invalid.
pub const INVALID_GROUP_ID: i16 = 24;
/// The member id is not known to the group.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// The session timeout is outside the broker's bounds.
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
/// The group is rebalancing; the member must rejoin.
pub const REBALANCE_IN_PROGRESS: i16 = 27;
/// The request is malformed.
pub const INVALID_REQUEST: i16 = 42;
/// The group is not empty.
pub const NON_EMPTY_GROUP: i16 = 68;
/// The group does not exist.
pub const GROUP_ID_NOT_FOUND: i16 = 69;
/// The first JoinGroup of a member must be retried with the member id given (KIP-394).
pub const MEMBER_ID_REQUIRED: i16 = 79;
/// The group is at `group.max.size`.
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
/// Another member with the same `group.instance.id` replaced this one (KIP-345).
pub const FENCED_INSTANCE_ID: i16 = 82;
/// OffsetDelete of a topic the group's members are subscribed to (KIP-496).
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
/// The client's API version is not supported for this request.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// The member epoch is fenced by the group coordinator (KIP-848).
pub const FENCED_MEMBER_EPOCH: i16 = 110;
/// A static member with this instance id is still active (KIP-848).
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
/// The server assignor is not one of `group.consumer.assignors` (KIP-848).
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
/// The member epoch of an OffsetCommit/OffsetFetch is not the member's current one (KIP-848).
pub const STALE_MEMBER_EPOCH: i16 = 113;
/// The subscription regular expression is invalid (KIP-848).
pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
