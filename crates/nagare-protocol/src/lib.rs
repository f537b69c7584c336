//! Kafka wire protocol for Nagare: framing, headers, error codes, the ApiVersions fallback,
//! a zero-copy Fetch response encoder and a zero-copy view of RecordBatch v2 headers.
//! Knows nothing of topics, disks or sockets; message structs come from `kafka-protocol`.

pub mod batch_builder;
pub mod error;
pub mod fetch;
pub mod frame;
pub mod record_batch;

pub use kafka_protocol;
