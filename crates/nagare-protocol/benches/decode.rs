//! Request decoding and fetch-response encoding on the broker's hot path:
//! `cargo bench -p nagare-protocol --bench decode`.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use nagare_protocol::fetch::encode_fetch_response;
use nagare_protocol::frame::decode_request_header;

/// A whole request frame body (header + request, without the size prefix).
fn frame<R: Encodable>(req: &R, api: ApiKey, version: i16) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("rdkafka"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("nagare-bench"))
}

/// A Produce request with `partitions` partitions of `batch_bytes` record bytes each.
fn produce_request(partitions: i32, batch_bytes: usize) -> ProduceRequest {
    let records = Bytes::from(vec![0x41u8; batch_bytes]);
    let mut t = TopicProduceData::default();
    t.name = topic();
    t.partition_data = (0..partitions)
        .map(|p| {
            let mut d = PartitionProduceData::default();
            d.index = p;
            d.records = Some(records.clone());
            d
        })
        .collect();
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 30_000;
    req.topic_data = vec![t];
    req
}

/// A consumer's Fetch request for `partitions` partitions.
fn fetch_request(partitions: i32) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = topic();
    t.partitions = (0..partitions)
        .map(|p| {
            let mut fp = FetchPartition::default();
            fp.partition = p;
            fp.fetch_offset = 1_000_000 + i64::from(p);
            fp.partition_max_bytes = 1 << 20;
            fp.log_start_offset = -1;
            fp.current_leader_epoch = 0;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 500;
    req.min_bytes = 1;
    req.max_bytes = 50 << 20;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = vec![t];
    req
}

fn decode_requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_request");
    for (partitions, batch) in [(1, 64 * 1024), (16, 16 * 1024)] {
        let version = 9;
        let f = frame(
            &produce_request(partitions, batch),
            ApiKey::Produce,
            version,
        );
        g.throughput(Throughput::Bytes(f.len() as u64));
        g.bench_function(
            format!("produce_v9_{partitions}x{}KiB", batch / 1024),
            |b| {
                b.iter(|| {
                    let mut body = f.clone();
                    let (_, header) = decode_request_header(&mut body).unwrap();
                    let req =
                        ProduceRequest::decode(&mut body, header.request_api_version).unwrap();
                    black_box(req)
                })
            },
        );
    }
    for partitions in [1, 100] {
        let version = 12;
        let f = frame(&fetch_request(partitions), ApiKey::Fetch, version);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("fetch_v12_{partitions}p"), |b| {
            b.iter(|| {
                let mut body = f.clone();
                let (_, header) = decode_request_header(&mut body).unwrap();
                let req = FetchRequest::decode(&mut body, header.request_api_version).unwrap();
                black_box(req)
            })
        });
    }
    g.finish();
}

fn encode_fetch(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_fetch_response");
    for partitions in [1usize, 100] {
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(topic())
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        PartitionData::default()
                            .with_partition_index(p as i32)
                            .with_high_watermark(2_000_000)
                            .with_last_stable_offset(2_000_000)
                            .with_log_start_offset(0)
                    })
                    .collect(),
            )]);
        let region = Bytes::from(vec![0u8; 1 << 20]);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("v12_{partitions}p"), |b| {
            b.iter(|| {
                let records = vec![(0..partitions).map(|_| Some(region.clone())).collect()];
                let enc = encode_fetch_response(7, 1, 12, &resp, records).unwrap();
                black_box(enc.total_len)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode_requests, encode_fetch);
criterion_main!(benches);
