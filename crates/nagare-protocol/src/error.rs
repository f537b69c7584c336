//! Kafka error codes, re-exported from `kafka-protocol`, plus helpers for the protocol edge.

pub use kafka_protocol::error::ResponseError;

/// The "no error" code. Not an error, so `ResponseError` has no variant for it
/// (`ResponseError::try_from_code(0)` is `None`).
pub const NONE: i16 = 0;

/// The numeric code of an optional error (`None` is 0, success).
pub fn code(err: Option<ResponseError>) -> i16 {
    err.map(|e| e.code()).unwrap_or(NONE)
}
