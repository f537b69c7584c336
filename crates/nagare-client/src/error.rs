//! The client's error type.
//!
//! Transport failures (cannot connect, connection reset, timeout) and protocol failures (cannot
//! decode a response) are kept apart from the errors a broker reports with a Kafka error code, so
//! callers can tell "the cluster said no" ([`Error::Kafka`]) from "we could not ask".

use std::io;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::ResponseError;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a Kafka-compatible cluster.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No bootstrap server was configured.
    #[error("no bootstrap servers given")]
    NoBootstrapServers,

    /// The TCP connection (or the initial ApiVersions exchange) to a broker failed.
    #[error("cannot connect to broker {addr}: {reason}")]
    Connect {
        /// `host:port` we tried.
        addr: String,
        /// Human-readable cause, e.g. "connection refused".
        reason: String,
    },

    /// None of several bootstrap servers could be reached; each attempt's error is listed.
    #[error("cannot connect to any bootstrap server: {}", .errors.join("; "))]
    Bootstrap {
        /// One message per server tried.
        errors: Vec<String>,
    },

    /// Reading from or writing to an established connection failed.
    #[error("connection to broker {addr} failed: {reason}")]
    Io {
        /// The broker's address.
        addr: String,
        /// Human-readable cause.
        reason: String,
    },

    /// No response arrived within the request timeout.
    #[error("{api:?} request to broker {addr} timed out after {} ms", .timeout.as_millis())]
    Timeout {
        /// The broker's address.
        addr: String,
        /// The request that timed out.
        api: ApiKey,
        /// How long we waited.
        timeout: Duration,
    },

    /// A previous request on this connection was interrupted half-way, so the byte stream is out
    /// of step and the connection cannot be used any more.
    #[error("connection to broker {addr} is unusable after an interrupted request")]
    ConnectionBroken {
        /// The broker's address.
        addr: String,
    },

    /// The broker announced a response larger than the configured maximum.
    #[error("response of {size} bytes from broker {addr} exceeds the limit of {max} bytes")]
    ResponseTooLarge {
        /// The broker's address.
        addr: String,
        /// The announced size (may be negative if garbage).
        size: i64,
        /// The configured maximum.
        max: usize,
    },

    /// The response carries a correlation id other than the request's.
    #[error("broker {addr} answered correlation id {got}, expected {expected}")]
    CorrelationMismatch {
        /// The broker's address.
        addr: String,
        /// The id we sent.
        expected: i32,
        /// The id we got back.
        got: i32,
    },

    /// A request could not be encoded (e.g. a field too long for the protocol).
    #[error("cannot encode {api:?} v{version} request: {reason}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The version we encoded.
        version: i16,
        /// What went wrong.
        reason: String,
    },

    /// A response could not be decoded.
    #[error("cannot decode {api:?} v{version} response from broker {addr}: {reason}")]
    Decode {
        /// The broker's address.
        addr: String,
        /// The response's API.
        api: ApiKey,
        /// The version we decoded with.
        version: i16,
        /// What went wrong.
        reason: String,
    },

    /// The broker does not implement an API at all.
    #[error("broker {addr} does not support the {api:?} API")]
    UnsupportedApi {
        /// The broker's address.
        addr: String,
        /// The missing API.
        api: ApiKey,
    },

    /// The broker's version range of an API does not overlap ours.
    #[error(
        "no common {api:?} version with broker {addr} (broker supports {broker_min}..={broker_max}, \
         client {client_min}..={client_max})"
    )]
    UnsupportedVersion {
        /// The broker's address.
        addr: String,
        /// The API.
        api: ApiKey,
        /// Lowest version the broker accepts.
        broker_min: i16,
        /// Highest version the broker accepts.
        broker_max: i16,
        /// Lowest version we can speak.
        client_min: i16,
        /// Highest version we can speak.
        client_max: i16,
    },

    /// The broker answered with a Kafka error code.
    #[error("{context}: {}{}", kafka_error_name(*.error), .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// What we were doing, e.g. "produce to topic 'foo' partition 0".
        context: String,
        /// The error code, as `kafka-protocol`'s enum (its `code()` is the number).
        error: ResponseError,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },

    /// The topic is not in the cluster metadata.
    #[error("topic '{topic}' does not exist")]
    UnknownTopic {
        /// The topic's name.
        topic: String,
    },

    /// The topic exists but has no such partition.
    #[error("topic '{topic}' has no partition {partition} (it has {count} partitions)")]
    UnknownPartition {
        /// The topic's name.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },

    /// The partition has no leader right now (election in progress or all replicas offline).
    #[error("no leader for topic '{topic}' partition {partition}")]
    LeaderNotAvailable {
        /// The topic's name.
        topic: String,
        /// The partition.
        partition: i32,
    },

    /// Metadata names a broker id we have no address for.
    #[error("broker {node_id} is not in the cluster metadata")]
    UnknownBroker {
        /// The broker's node id.
        node_id: i32,
    },

    /// A fetched record set could not be decoded.
    #[error("corrupt records in topic '{topic}' partition {partition}: {reason}")]
    CorruptRecords {
        /// The topic's name.
        topic: String,
        /// The partition.
        partition: i32,
        /// What is wrong with them.
        reason: String,
    },

    /// The broker's answer is well-formed but does not answer the question (e.g. a partition we
    /// asked about is missing from it).
    #[error("unexpected response from broker {addr}: {reason}")]
    UnexpectedResponse {
        /// The broker's address.
        addr: String,
        /// What is missing or wrong.
        reason: String,
    },

    /// The caller passed something the protocol cannot express.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The Kafka error this is, if the broker answered with an error code.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// The numeric Kafka error code, if the broker answered with one.
    pub fn kafka_code(&self) -> Option<i16> {
        self.kafka_error().map(|e| e.code())
    }

    /// True for failures of the connection itself (as opposed to an answer from the broker).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Bootstrap { .. }
                | Error::Io { .. }
                | Error::Timeout { .. }
                | Error::ConnectionBroken { .. }
        )
    }

    /// True when the failure says the broker's process is gone rather than slow: the peer
    /// closed or reset the connection, or refused a new one (what the kernel answers for a
    /// dead process's sockets). A timeout is not: a stopped or overloaded broker times out.
    pub fn is_peer_gone(&self) -> bool {
        match self {
            Error::Connect { reason, .. } | Error::Io { reason, .. } => PEER_GONE_KINDS
                .iter()
                .any(|k| *reason == describe_io(&io::Error::from(*k))),
            _ => false,
        }
    }

    /// [`Error::Io`] for a failed read or write on the connection to `addr`.
    pub fn io(addr: impl Into<String>, error: &io::Error) -> Error {
        Error::Io {
            addr: addr.into(),
            reason: describe_io(error),
        }
    }

    /// True when refreshing metadata and retrying may succeed: the leader moved, the topic is
    /// still being created, or the connection to the old leader failed.
    pub fn is_stale_metadata(&self) -> bool {
        match self {
            Error::Kafka { error, .. } => matches!(
                error,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::UnknownTopicId
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::NotController
                    | ResponseError::ReplicaNotAvailable
                    | ResponseError::BrokerNotAvailable
                    | ResponseError::KafkaStorageError
                    | ResponseError::InconsistentTopicId
            ),
            Error::LeaderNotAvailable { .. } | Error::UnknownBroker { .. } => true,
            other => other.is_transport(),
        }
    }

    /// True when the same request may succeed later: transport failures and the error codes
    /// Kafka marks as retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { error, .. } => error.is_retriable(),
            other => other.is_stale_metadata(),
        }
    }

    /// Builds [`Error::Kafka`] from a non-zero error code; `None` for code 0.
    pub fn from_code(
        code: i16,
        context: impl FnOnce() -> String,
        message: Option<&str>,
    ) -> Option<Error> {
        ResponseError::try_from_code(code).map(|error| Error::Kafka {
            context: context(),
            error,
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
        })
    }
}

/// Checks a per-resource error code: `Ok(())` for 0, [`Error::Kafka`] otherwise.
pub(crate) fn check_code(
    code: i16,
    message: Option<&str>,
    context: impl FnOnce() -> String,
) -> Result<()> {
    match Error::from_code(code, context, message) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Kafka's own spelling of an error code's name, e.g. `UNKNOWN_TOPIC_OR_PARTITION`, as printed
/// by the Java tools; unknown codes print as `UNKNOWN_ERROR_CODE(<n>)`.
pub fn kafka_error_name(error: ResponseError) -> String {
    if let ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE({code})");
    }
    // `ResponseError`'s Display is the variant name in CamelCase; Kafka's names are the same
    // words in SCREAMING_SNAKE_CASE.
    let camel = error.to_string();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The I/O error kinds that mean the peer's process is gone (see [`Error::is_peer_gone`]).
const PEER_GONE_KINDS: [io::ErrorKind; 5] = [
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::ConnectionAborted,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::UnexpectedEof,
];

/// A short, lowercase description of an I/O error, without the "(os error N)" suffix for the
/// common cases, so messages read like "cannot connect to broker …: connection refused".
pub(crate) fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::BrokenPipe => "broken pipe (the broker closed the connection)".into(),
        io::ErrorKind::UnexpectedEof => "the broker closed the connection".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        io::ErrorKind::NotConnected => "not connected".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_gone_is_a_closed_reset_or_refused_connection_never_a_timeout() {
        use io::ErrorKind::*;
        for kind in [
            ConnectionRefused,
            ConnectionReset,
            BrokenPipe,
            UnexpectedEof,
        ] {
            assert!(
                Error::io("a:1", &io::Error::from(kind)).is_peer_gone(),
                "{kind:?}"
            );
        }
        let refused = Error::Connect {
            addr: "a:1".into(),
            reason: describe_io(&io::Error::from(ConnectionRefused)),
        };
        assert!(refused.is_peer_gone());
        assert!(!Error::io("a:1", &io::Error::from(TimedOut)).is_peer_gone());
        let connect_timeout = Error::Connect {
            addr: "a:1".into(),
            reason: "timed out after 2000 ms".into(),
        };
        assert!(!connect_timeout.is_peer_gone());
        let timeout = Error::Timeout {
            addr: "a:1".into(),
            api: ApiKey::Fetch,
            timeout: Duration::from_secs(1),
        };
        assert!(!timeout.is_peer_gone());
    }

    #[test]
    fn error_names_match_kafka() {
        assert_eq!(
            kafka_error_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            kafka_error_name(ResponseError::NotLeaderOrFollower),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(
            kafka_error_name(ResponseError::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            kafka_error_name(ResponseError::UnknownServerError),
            "UNKNOWN_SERVER_ERROR"
        );
        assert_eq!(
            kafka_error_name(ResponseError::Unknown(4242)),
            "UNKNOWN_ERROR_CODE(4242)"
        );
    }

    #[test]
    fn codes_map_to_errors() {
        assert!(Error::from_code(0, || "x".into(), None).is_none());
        let e = Error::from_code(3, || "fetch from topic 'a' partition 0".into(), Some(""))
            .expect("code 3 is an error");
        assert_eq!(e.kafka_code(), Some(3));
        assert_eq!(
            e.kafka_error(),
            Some(ResponseError::UnknownTopicOrPartition)
        );
        assert!(e.is_stale_metadata());
        assert!(e.is_retriable());
        assert_eq!(
            e.to_string(),
            "fetch from topic 'a' partition 0: UNKNOWN_TOPIC_OR_PARTITION"
        );

        let e = Error::from_code(
            36,
            || "cannot create topic 'a'".into(),
            Some("Topic 'a' already exists."),
        )
        .expect("code 36 is an error");
        assert_eq!(
            e.to_string(),
            "cannot create topic 'a': TOPIC_ALREADY_EXISTS: Topic 'a' already exists."
        );
        assert!(!e.is_retriable());
        assert!(!e.is_stale_metadata());

        let e = Error::from_code(1, || "x".into(), None).expect("code 1 is an error");
        assert_eq!(e.kafka_error(), Some(ResponseError::OffsetOutOfRange));
        assert!(!e.is_retriable());
    }

    #[test]
    fn transport_errors_read_well() {
        let e = Error::Connect {
            addr: "127.0.0.1:9092".into(),
            reason: describe_io(&io::Error::from(io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(
            e.to_string(),
            "cannot connect to broker 127.0.0.1:9092: connection refused"
        );
        assert!(e.is_transport());
        assert!(e.is_retriable());
    }
}
