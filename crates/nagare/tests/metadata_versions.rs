//! A committed metadata record this binary cannot read stops the node with a clear error
//! (Kafka's ProcessTerminatingFaultHandler) instead of being skipped: a node that skipped it
//! would build an image no other node has, and could act on it — delete logs, say.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use nagare_storage::{Log, LogConfig, TopicPartition};

/// A `TopicRecord` (apiKey 2) at version 1, newer than this binary's version 0: frame
/// version 1, apiKey 2, version 1, then the body.
fn newer_topic_record() -> Bytes {
    let mut v = vec![1u8, 2, 1];
    v.extend_from_slice(
        br#"{"name":"from-the-future","topic_id":"05050505-0505-0505-0505-050505050505"}"#,
    );
    Bytes::from(v)
}

#[test]
fn an_unreadable_committed_record_stops_the_node_and_deletes_nothing() {
    let mut server = TestServer::start(&[]);
    server.create_topic("kept", 1, &[]);
    server.wait_for_partitions("kept", 1);
    server.kill9();

    // Append the record to the metadata log as the quorum would have, in the log's last
    // epoch; the single voter commits it when it starts again.
    let tp = TopicPartition::new("__cluster_metadata", 0);
    let dir = server.log_dir().join("__cluster_metadata-0");
    let offset = {
        let log = Log::open(dir, tp, LogConfig::default(), 0, false, 0).expect("metadata log");
        let epoch = log.latest_epoch().unwrap_or(0);
        let batch = nagare_protocol::batch_builder::build_batch(
            [(None, Some(newer_topic_record()))],
            epoch,
            0,
        )
        .expect("batch");
        let info = log.append_as_leader(batch, epoch, 0).expect("append");
        log.flush().expect("flush");
        log.close().expect("close");
        info.first_offset
    };

    server.spawn();
    let status = server
        .wait_exit(Duration::from_secs(60))
        .expect("the node kept running past a record it cannot read");
    assert_eq!(status.code(), Some(1), "{}", server.current_output());
    let out = server.current_output();
    for needle in [
        format!("record at offset {offset}"),
        "TopicRecord (apiKey 2) version 1".to_string(),
        "versions 0 to 0".to_string(),
    ] {
        assert!(out.contains(&needle), "no {needle:?} in:\n{out}");
    }
    assert!(
        server.log_dir().join("kept-0").exists(),
        "a partition log was deleted on the way down"
    );
}
