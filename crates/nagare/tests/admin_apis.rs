//! The APIs real clients in the suite rarely exercise, checked at the protocol level against a
//! real server: ListOffsets (earliest, latest, max timestamp, by timestamp), DeleteRecords,
//! OffsetForLeaderEpoch, DescribeCluster, CreateTopics `validate_only`, Produce `acks=0`.

mod common;

use std::time::Duration;

use common::{block_on, TestServer};
use nagare_client::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use nagare_client::kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use nagare_client::kafka_protocol::messages::{
    DeleteRecordsRequest, DescribeClusterRequest, OffsetForLeaderEpochRequest, TopicName,
};
use nagare_client::kafka_protocol::protocol::StrBytes;
use nagare_client::{Acks, Client, Compression, Connection, NewTopic, OffsetSpec, ProduceRecord};

fn rec(value: &str, timestamp: i64) -> ProduceRecord {
    ProduceRecord {
        key: None,
        value: Some(value.as_bytes().to_vec().into()),
        headers: vec![],
        timestamp: Some(timestamp),
    }
}

async fn lo(client: &mut Client, spec: OffsetSpec) -> i64 {
    client
        .list_offsets("adm", 0, spec)
        .await
        .expect("list_offsets")
}

#[test]
fn offsets_records_epochs_cluster() {
    let server = TestServer::start(&[]);
    server.create_topic("adm", 1, &[]);
    block_on(async {
        let mut client = Client::connect_to(&server.bootstrap())
            .await
            .expect("client");
        // Timestamps out of order: the max timestamp is at offset 2, not at the end.
        let ts = [1_000_000, 1_000_500, 1_009_000, 1_001_000, 1_002_000];
        let recs = ts
            .iter()
            .enumerate()
            .map(|(i, t)| rec(&format!("r{i}"), *t))
            .collect();
        client
            .produce("adm", 0, recs, Acks::All, Compression::None)
            .await
            .expect("produce");
        assert_eq!(lo(&mut client, OffsetSpec::Earliest).await, 0);
        assert_eq!(lo(&mut client, OffsetSpec::Latest).await, 5);
        assert_eq!(lo(&mut client, OffsetSpec::MaxTimestamp).await, 2);
        assert_eq!(
            lo(&mut client, OffsetSpec::Timestamp(1_000_600)).await,
            2,
            "first record with ts >= target"
        );
        assert_eq!(lo(&mut client, OffsetSpec::Timestamp(1_001_000)).await, 2);
        assert_eq!(
            lo(&mut client, OffsetSpec::Timestamp(2_000_000)).await,
            -1,
            "none that late"
        );

        let mut conn = Connection::connect(&server.direct_addr(), "admin-test")
            .await
            .expect("connect");

        // DeleteRecords moves the log start offset; reads below it are out of range.
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("adm")))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(3)])]);
        let resp = conn.send(&req).await.expect("DeleteRecords");
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), (0, 3));
        assert_eq!(lo(&mut client, OffsetSpec::Earliest).await, 3);
        // Past the high watermark: OFFSET_OUT_OF_RANGE.
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("adm")))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(99)])]);
        let resp = conn.send(&req).await.expect("DeleteRecords");
        assert_eq!(resp.topics[0].partitions[0].error_code, 1);

        // OffsetForLeaderEpoch: epoch 0 ends at the log end; a fenced (older than current)
        // or unknown (newer) current_leader_epoch is refused.
        let ofle = |current: i32, epoch: i32| {
            OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default(
            )
            .with_topic(TopicName(StrBytes::from_static_str("adm")))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)])])
        };
        let resp = conn.send(&ofle(0, 0)).await.expect("OffsetForLeaderEpoch");
        let e = &resp.topics[0].partitions[0];
        assert_eq!((e.error_code, e.leader_epoch, e.end_offset), (0, 0, 5));
        let resp = conn.send(&ofle(7, 0)).await.expect("OffsetForLeaderEpoch");
        assert_eq!(
            resp.topics[0].partitions[0].error_code, 75,
            "UNKNOWN_LEADER_EPOCH"
        );

        // DescribeCluster: this broker, the cluster id from meta.properties.
        let resp = conn
            .send(&DescribeClusterRequest::default())
            .await
            .expect("DescribeCluster");
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.brokers.len(), 1);
        assert_eq!(*resp.brokers[0].broker_id, 1);
        assert_eq!(
            resp.brokers[0].port as u16,
            server
                .direct_addr()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        );
        let meta = std::fs::read_to_string(server.log_dir().join("meta.properties"))
            .expect("meta.properties");
        assert!(
            meta.contains(&format!("cluster.id={}", resp.cluster_id.as_str())),
            "{meta}"
        );

        // CreateTopics validate_only creates nothing; a real create then works.
        let nt = NewTopic {
            name: "validated".into(),
            partitions: Some(2),
            replication_factor: Some(1),
            configs: vec![("cleanup.policy".into(), "delete".into())],
        };
        client
            .create_topics(std::slice::from_ref(&nt), true)
            .await
            .expect("validate_only");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!client
            .list_topics()
            .await
            .expect("list")
            .iter()
            .any(|t| t == "validated"));
        client.create_topics(&[nt], false).await.expect("create");
        assert!(client
            .list_topics()
            .await
            .expect("list")
            .iter()
            .any(|t| t == "validated"));

        // acks=0: no response, but the records are stored.
        client
            .produce(
                "validated",
                0,
                vec![rec("fire", 5), rec("forget", 6)],
                Acks::None,
                Compression::None,
            )
            .await
            .expect("acks=0");
        let mut end = 0;
        for _ in 0..50 {
            end = client
                .list_offsets("validated", 0, OffsetSpec::Latest)
                .await
                .expect("latest");
            if end == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(end, 2, "acks=0 records were appended");
    });
}
