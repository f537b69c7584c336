//! Kafka wire protocol for Nagare: framing, headers, the supported API table, error codes,
//! and a zero-copy view of RecordBatch v2 headers. Knows nothing of topics, disks or sockets.

pub mod record_batch;
