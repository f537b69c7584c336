//! The client against a tiny in-process fake broker (no real broker needed): version
//! negotiation with the KIP-511 fallback, metadata, admin, produce, fetch and list offsets,
//! with topic names (Fetch/Produce <= v12) and with topic ids (v13+).

// The mock favours plain branches over the entry API for readability.
#![allow(clippy::map_entry)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use nagare_client::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

#[derive(Default)]
struct Topic {
    id: Uuid,
    /// Per partition: stored batches (base offset patched).
    logs: Vec<Vec<Bytes>>,
    configs: BTreeMap<String, String>,
}

impl Topic {
    fn end_offset(&self, p: usize) -> i64 {
        self.logs[p].last().map_or(0, |b| last_offset(b) + 1)
    }
}

fn last_offset(batch: &[u8]) -> i64 {
    let base = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
    let delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
    base + i64::from(delta)
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Topic>,
    port: i32,
    max_fetch: i16,
    max_produce: i16,
    /// API keys seen, with the version used.
    seen: Vec<(i16, i16)>,
}

type Shared = Arc<Mutex<State>>;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

async fn start(max_fetch: i16, max_produce: i16) -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Mutex::new(State {
        port: i32::from(addr.port()),
        max_fetch,
        max_produce,
        ..Default::default()
    }));
    let s = state.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, s.clone()));
        }
    });
    (addr.to_string(), state)
}

async fn serve(mut sock: TcpStream, state: Shared) {
    loop {
        let mut len = [0u8; 4];
        if sock.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        if sock.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut body = Bytes::from(frame);
        let header = decode_request_header_from_buffer(&mut body).expect("header");
        let key = ApiKey::try_from(header.request_api_key).expect("known key");
        let version = header.request_api_version;
        state
            .lock()
            .expect("lock")
            .seen
            .push((header.request_api_key, version));
        let Some(resp) = handle(key, version, body, &state) else {
            continue; // acks=0
        };
        let mut out = BytesMut::new();
        out.put_i32(0);
        out.put_i32(header.correlation_id);
        if key.response_header_version(version) >= 1 {
            out.put_u8(0);
        }
        out.extend_from_slice(&resp);
        let size = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&size.to_be_bytes());
        if sock.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn enc<T: Encodable>(msg: &T, version: i16) -> Bytes {
    let mut b = BytesMut::new();
    msg.encode(&mut b, version).expect("encode response");
    b.freeze()
}

fn handle(key: ApiKey, version: i16, mut body: Bytes, state: &Shared) -> Option<Bytes> {
    let mut st = state.lock().expect("lock");
    let st = &mut *st;
    Some(match key {
        ApiKey::ApiVersions => {
            let ranges: Vec<(ApiKey, i16, i16)> = vec![
                (ApiKey::ApiVersions, 0, 3),
                (ApiKey::Metadata, 1, 12),
                (ApiKey::Produce, 3, st.max_produce),
                (ApiKey::Fetch, 4, st.max_fetch),
                (ApiKey::ListOffsets, 1, 8),
                (ApiKey::CreateTopics, 2, 7),
                (ApiKey::DeleteTopics, 1, 6),
                (ApiKey::CreatePartitions, 0, 3),
                (ApiKey::DescribeConfigs, 1, 4),
                (ApiKey::IncrementalAlterConfigs, 0, 1),
            ];
            if version > 3 {
                // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
                let mut b = BytesMut::new();
                b.put_i16(35);
                b.put_i32(ranges.len() as i32);
                for (k, min, max) in &ranges {
                    b.put_i16(*k as i16);
                    b.put_i16(*min);
                    b.put_i16(*max);
                }
                return Some(b.freeze());
            }
            let _req = ApiVersionsRequest::decode(&mut body, version).expect("decode");
            let mut resp = ApiVersionsResponse::default();
            resp.api_keys = ranges
                .iter()
                .map(|(k, min, max)| {
                    let mut v = ApiVersion::default();
                    v.api_key = *k as i16;
                    v.min_version = *min;
                    v.max_version = *max;
                    v
                })
                .collect();
            enc(&resp, version)
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut body, version).expect("decode");
            let mut resp = MetadataResponse::default();
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(1);
            b.host = StrBytes::from_static_str("127.0.0.1");
            b.port = st.port;
            resp.brokers = vec![b];
            resp.controller_id = BrokerId(1);
            resp.cluster_id = Some(StrBytes::from_static_str("mock-cluster"));
            let names: Vec<String> = match req.topics {
                None => st.topics.keys().cloned().collect(),
                Some(ts) => ts
                    .into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect(),
            };
            for n in names {
                let mut mt = MetadataResponseTopic::default();
                mt.name = Some(name(&n));
                match st.topics.get(&n) {
                    None => mt.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    Some(t) => {
                        mt.topic_id = t.id;
                        mt.partitions = (0..t.logs.len())
                            .map(|i| {
                                let mut p = MetadataResponsePartition::default();
                                p.partition_index = i as i32;
                                p.leader_id = BrokerId(1);
                                p.replica_nodes = vec![BrokerId(1)];
                                p.isr_nodes = vec![BrokerId(1)];
                                p
                            })
                            .collect();
                    }
                }
                resp.topics.push(mt);
            }
            enc(&resp, version)
        }
        ApiKey::CreateTopics => {
            let req = CreateTopicsRequest::decode(&mut body, version).expect("decode");
            let mut resp = CreateTopicsResponse::default();
            for t in req.topics {
                let n = t.name.0.to_string();
                let mut r = CreatableTopicResult::default();
                r.name = t.name.clone();
                if st.topics.contains_key(&n) {
                    r.error_code = ResponseError::TopicAlreadyExists.code();
                    r.error_message = Some(StrBytes::from_string(format!(
                        "Topic '{n}' already exists."
                    )));
                } else if !req.validate_only {
                    let parts = if t.num_partitions < 0 {
                        1
                    } else {
                        t.num_partitions
                    };
                    st.topics.insert(
                        n,
                        Topic {
                            id: Uuid::new_v4(),
                            logs: vec![Vec::new(); parts as usize],
                            configs: t
                                .configs
                                .iter()
                                .map(|c| {
                                    (
                                        c.name.to_string(),
                                        c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                                    )
                                })
                                .collect(),
                        },
                    );
                }
                resp.topics.push(r);
            }
            enc(&resp, version)
        }
        ApiKey::DeleteTopics => {
            let req = DeleteTopicsRequest::decode(&mut body, version).expect("decode");
            let names: Vec<String> = if version >= 6 {
                req.topics
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect()
            } else {
                req.topic_names.iter().map(|n| n.0.to_string()).collect()
            };
            let mut resp = DeleteTopicsResponse::default();
            for n in names {
                let mut r = DeletableTopicResult::default();
                r.name = Some(name(&n));
                if st.topics.remove(&n).is_none() {
                    r.error_code = ResponseError::UnknownTopicOrPartition.code();
                }
                resp.responses.push(r);
            }
            enc(&resp, version)
        }
        ApiKey::CreatePartitions => {
            let req = CreatePartitionsRequest::decode(&mut body, version).expect("decode");
            let mut resp = CreatePartitionsResponse::default();
            for t in req.topics {
                let mut r = CreatePartitionsTopicResult::default();
                r.name = t.name.clone();
                match st.topics.get_mut(t.name.0.as_str()) {
                    None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    Some(topic) if (t.count as usize) <= topic.logs.len() => {
                        r.error_code = ResponseError::InvalidPartitions.code();
                        r.error_message = Some(StrBytes::from_static_str("cannot shrink"));
                    }
                    Some(topic) => topic.logs.resize(t.count as usize, Vec::new()),
                }
                resp.results.push(r);
            }
            enc(&resp, version)
        }
        ApiKey::DescribeConfigs => {
            let req = DescribeConfigsRequest::decode(&mut body, version).expect("decode");
            let mut resp = DescribeConfigsResponse::default();
            for res in req.resources {
                let mut r = DescribeConfigsResult::default();
                r.resource_type = res.resource_type;
                r.resource_name = res.resource_name.clone();
                match st.topics.get(res.resource_name.as_str()) {
                    None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    Some(t) => {
                        let mut all: BTreeMap<String, (String, i8)> = BTreeMap::new();
                        all.insert("retention.ms".into(), ("604800000".into(), 5));
                        all.insert("cleanup.policy".into(), ("delete".into(), 5));
                        for (k, v) in &t.configs {
                            all.insert(k.clone(), (v.clone(), 1));
                        }
                        r.configs = all
                            .into_iter()
                            .map(|(k, (v, src))| {
                                let mut c = DescribeConfigsResourceResult::default();
                                c.name = StrBytes::from_string(k);
                                c.value = Some(StrBytes::from_string(v));
                                c.config_source = src;
                                c
                            })
                            .collect();
                    }
                }
                resp.results.push(r);
            }
            enc(&resp, version)
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = IncrementalAlterConfigsRequest::decode(&mut body, version).expect("decode");
            let mut resp = IncrementalAlterConfigsResponse::default();
            for res in req.resources {
                let mut r = AlterConfigsResourceResponse::default();
                r.resource_type = res.resource_type;
                r.resource_name = res.resource_name.clone();
                match st.topics.get_mut(res.resource_name.as_str()) {
                    None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    Some(t) => {
                        for c in res.configs {
                            match c.config_operation {
                                0 => {
                                    t.configs.insert(
                                        c.name.to_string(),
                                        c.value.map(|v| v.to_string()).unwrap_or_default(),
                                    );
                                }
                                1 => {
                                    t.configs.remove(c.name.as_str());
                                }
                                _ => r.error_code = ResponseError::InvalidRequest.code(),
                            }
                        }
                    }
                }
                resp.responses.push(r);
            }
            enc(&resp, version)
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut body, version).expect("decode");
            let mut resp = ProduceResponse::default();
            for td in req.topic_data {
                let tname = if version >= 13 {
                    st.topics
                        .iter()
                        .find(|(_, t)| t.id == td.topic_id)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_default()
                } else {
                    td.name.0.to_string()
                };
                let mut tr = TopicProduceResponse::default();
                tr.name = td.name.clone();
                tr.topic_id = td.topic_id;
                for pd in td.partition_data {
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = pd.index;
                    match st.topics.get_mut(&tname) {
                        Some(t) if (pd.index as usize) < t.logs.len() => {
                            let base = t.end_offset(pd.index as usize);
                            let mut batch = BytesMut::from(&pd.records.unwrap_or_default()[..]);
                            batch[..8].copy_from_slice(&base.to_be_bytes());
                            t.logs[pd.index as usize].push(batch.freeze());
                            pr.base_offset = base;
                        }
                        _ => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    }
                    tr.partition_responses.push(pr);
                }
                resp.responses.push(tr);
            }
            if req.acks == 0 {
                return None;
            }
            enc(&resp, version)
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut body, version).expect("decode");
            let mut resp = FetchResponse::default();
            for ft in req.topics {
                let tname = if version >= 13 {
                    st.topics
                        .iter()
                        .find(|(_, t)| t.id == ft.topic_id)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_default()
                } else {
                    ft.topic.0.to_string()
                };
                let mut tr = FetchableTopicResponse::default();
                tr.topic = ft.topic.clone();
                tr.topic_id = ft.topic_id;
                for fp in ft.partitions {
                    let mut pd = PartitionData::default();
                    pd.partition_index = fp.partition;
                    match st.topics.get(&tname) {
                        Some(t) if (fp.partition as usize) < t.logs.len() => {
                            let log = &t.logs[fp.partition as usize];
                            let hw = t.end_offset(fp.partition as usize);
                            pd.high_watermark = hw;
                            pd.log_start_offset = 0;
                            if fp.fetch_offset > hw {
                                pd.error_code = ResponseError::OffsetOutOfRange.code();
                            } else {
                                let mut out = BytesMut::new();
                                for b in log.iter().filter(|b| last_offset(b) >= fp.fetch_offset) {
                                    if !out.is_empty()
                                        && out.len() + b.len() > fp.partition_max_bytes as usize
                                    {
                                        // Cut the last batch, as a real broker may.
                                        let room = fp.partition_max_bytes as usize - out.len();
                                        out.extend_from_slice(&b[..room.min(b.len())]);
                                        break;
                                    }
                                    out.extend_from_slice(b);
                                }
                                pd.records = Some(out.freeze());
                            }
                        }
                        _ => pd.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    }
                    tr.partitions.push(pd);
                }
                resp.responses.push(tr);
            }
            enc(&resp, version)
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(&mut body, version).expect("decode");
            assert_eq!(req.replica_id, BrokerId(-1));
            let mut resp = ListOffsetsResponse::default();
            for lt in req.topics {
                let mut tr = ListOffsetsTopicResponse::default();
                tr.name = lt.name.clone();
                for lp in lt.partitions {
                    let mut pr = ListOffsetsPartitionResponse::default();
                    pr.partition_index = lp.partition_index;
                    match st.topics.get(lt.name.0.as_str()) {
                        Some(t) if (lp.partition_index as usize) < t.logs.len() => {
                            let p = lp.partition_index as usize;
                            pr.offset = match lp.timestamp {
                                -2 => 0,
                                -1 => t.end_offset(p),
                                ts => t.logs[p]
                                    .iter()
                                    .find(|b| {
                                        i64::from_be_bytes(b[35..43].try_into().expect("8")) >= ts
                                    })
                                    .map_or(-1, |b| {
                                        i64::from_be_bytes(b[0..8].try_into().expect("8"))
                                    }),
                            };
                        }
                        _ => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    }
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            enc(&resp, version)
        }
        other => panic!("mock broker does not handle {other:?}"),
    })
}

async fn exercise(max_fetch: i16, max_produce: i16) {
    let (addr, state) = start(max_fetch, max_produce).await;
    let mut client = Client::connect_to(&addr).await.expect("connect");
    assert_eq!(client.cluster_id(), Some("mock-cluster"));
    assert_eq!(client.brokers().len(), 1);

    // Admin.
    client
        .create_topics(
            &[NewTopic::new("orders")
                .with_partitions(2)
                .with_replication_factor(1)
                .with_config("cleanup.policy", "compact")],
            false,
        )
        .await
        .expect("create");
    let err = client
        .create_topics(&[NewTopic::new("orders")], false)
        .await
        .expect_err("exists");
    assert_eq!(err.kafka_error(), Some(ResponseError::TopicAlreadyExists));
    assert_eq!(
        err.to_string(),
        "cannot create topic 'orders': TOPIC_ALREADY_EXISTS: Topic 'orders' already exists."
    );
    assert_eq!(client.list_topics().await.expect("list"), vec!["orders"]);
    let described = client.describe_topics(&["orders"]).await.expect("describe");
    assert_eq!(described[0].partitions.len(), 2);
    assert_eq!(described[0].partitions[1].leader, 1);
    assert!(matches!(
        client.describe_topics(&["nope"]).await,
        Err(Error::UnknownTopic { .. })
    ));
    client
        .create_partitions(&[("orders", 3)], false)
        .await
        .expect("grow");
    assert_eq!(
        client
            .topic_metadata("orders")
            .await
            .expect("md")
            .partitions
            .len(),
        3
    );
    let err = client
        .create_partitions(&[("orders", 2)], false)
        .await
        .expect_err("shrink");
    assert_eq!(err.kafka_error(), Some(ResponseError::InvalidPartitions));

    let topic = ConfigResource::Topic("orders".into());
    client
        .incremental_alter_configs(
            &topic,
            &[
                AlterConfigOp::Set("retention.ms".into(), "1000".into()),
                AlterConfigOp::Delete("cleanup.policy".into()),
            ],
            false,
        )
        .await
        .expect("alter");
    let configs = client
        .describe_configs(&topic, None)
        .await
        .expect("configs");
    let non_default: Vec<(String, Option<String>)> = configs
        .iter()
        .filter(|c| !c.is_default())
        .map(|c| (c.name.clone(), c.value.clone()))
        .collect();
    assert_eq!(
        non_default,
        vec![("retention.ms".to_owned(), Some("1000".to_owned()))]
    );

    // Produce and fetch.
    let records: Vec<ProduceRecord> = (0..5)
        .map(|i| {
            ProduceRecord::new(format!("v{i}"))
                .with_key(format!("k{i}"))
                .with_header("h", Some(Bytes::from_static(b"x")))
                .with_timestamp(1000 + i)
        })
        .collect();
    let base = client
        .produce("orders", 1, records.clone(), Acks::All, Compression::Zstd)
        .await
        .expect("produce");
    assert_eq!(base, 0);
    let base = client
        .produce(
            "orders",
            1,
            records.clone(),
            Acks::Leader,
            Compression::Gzip,
        )
        .await
        .expect("produce");
    assert_eq!(base, 5);
    let base = client
        .produce("orders", 1, records.clone(), Acks::None, Compression::None)
        .await
        .expect("produce acks=0");
    assert_eq!(base, -1);
    // A request after acks=0 still pairs up with its response.
    assert_eq!(
        client
            .list_offsets("orders", 1, OffsetSpec::Latest)
            .await
            .expect("latest"),
        15
    );
    assert_eq!(
        client
            .list_offsets("orders", 1, OffsetSpec::Earliest)
            .await
            .expect("earliest"),
        0
    );
    assert_eq!(
        client
            .list_offsets("orders", 1, OffsetSpec::Timestamp(1004))
            .await
            .expect("by time"),
        0
    );
    assert_eq!(
        client
            .list_offsets("orders", 1, OffsetSpec::Timestamp(99_999))
            .await
            .expect("by time"),
        -1
    );

    // From mid-batch: the records below the offset are skipped.
    let got = client
        .fetch("orders", 1, 3, 100, 1 << 20)
        .await
        .expect("fetch");
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (3..15).collect::<Vec<_>>());
    assert_eq!(got[0].key.as_deref(), Some(&b"k3"[..]));
    assert_eq!(got[0].value.as_deref(), Some(&b"v3"[..]));
    assert_eq!(got[0].timestamp, 1003);
    assert_eq!(got[0].partition, 1);
    assert_eq!(
        got[0].headers,
        vec![("h".to_owned(), Some(Bytes::from_static(b"x")))]
    );

    // A small fetch size cuts the second batch; the client stops at the last whole one.
    let first_batch_len = state.lock().expect("lock").topics["orders"].logs[1][0].len() as i32;
    let opts = FetchOptions {
        max_wait_ms: 10,
        partition_max_bytes: first_batch_len + 10,
        ..FetchOptions::default()
    };
    let part = client
        .fetch_partition("orders", 1, 0, &opts)
        .await
        .expect("fetch");
    assert_eq!(part.records.len(), 5);
    assert_eq!(part.next_offset, 5);
    assert_eq!(part.high_watermark, 15);

    // Several partitions at once, including an empty one and a bad offset.
    let many = client
        .fetch_many(
            &[
                FetchPosition {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 10,
                },
                FetchPosition {
                    topic: "orders".into(),
                    partition: 0,
                    offset: 0,
                },
                FetchPosition {
                    topic: "orders".into(),
                    partition: 2,
                    offset: 7,
                },
                FetchPosition {
                    topic: "missing".into(),
                    partition: 0,
                    offset: 0,
                },
            ],
            &FetchOptions::default(),
        )
        .await
        .expect("fetch many");
    assert_eq!(many.len(), 4);
    let p1 = many[0].1.as_ref().expect("p1");
    assert_eq!(p1.records.len(), 5);
    assert_eq!(p1.next_offset, 15);
    let p0 = many[1].1.as_ref().expect("p0");
    assert!(p0.records.is_empty());
    assert_eq!(p0.next_offset, 0);
    let p2 = many[2].1.as_ref().expect_err("out of range");
    assert_eq!(p2.kafka_error(), Some(ResponseError::OffsetOutOfRange));
    assert!(matches!(many[3].1, Err(Error::UnknownTopic { .. })));

    // Errors name the topic.
    let err = client
        .produce("missing", 0, records.clone(), Acks::All, Compression::None)
        .await
        .expect_err("no topic");
    assert_eq!(err.to_string(), "topic 'missing' does not exist");
    let err = client
        .produce("orders", 9, records, Acks::All, Compression::None)
        .await
        .expect_err("no partition");
    assert_eq!(
        err.to_string(),
        "topic 'orders' has no partition 9 (it has 3 partitions)"
    );

    client.delete_topics(&["orders"]).await.expect("delete");
    assert!(client.list_topics().await.expect("list").is_empty());
    assert!(matches!(
        client.delete_topics(&["orders"]).await,
        Err(Error::UnknownTopic { .. })
    ));

    // Versions: ApiVersions went v4 (refused) then v3; Produce/Fetch at the mock's maximum.
    let seen = state.lock().expect("lock").seen.clone();
    let versions_of = |key: ApiKey| -> Vec<i16> {
        let mut v: Vec<i16> = seen
            .iter()
            .filter(|(k, _)| *k == key as i16)
            .map(|(_, v)| *v)
            .collect();
        v.dedup();
        v
    };
    assert_eq!(versions_of(ApiKey::ApiVersions)[..2], [4, 3]);
    assert_eq!(versions_of(ApiKey::Fetch), vec![max_fetch]);
    assert_eq!(versions_of(ApiKey::Produce), vec![max_produce]);
}

#[tokio::test]
async fn against_a_broker_with_topic_names() {
    exercise(12, 11).await;
}

#[tokio::test]
async fn against_a_broker_with_topic_ids() {
    exercise(16, 13).await;
}

#[tokio::test]
async fn raw_connection_send() {
    let (addr, _state) = start(12, 11).await;
    let mut conn = Connection::connect(&addr, "raw").await.expect("connect");
    assert_eq!(conn.negotiate(ApiKey::Metadata, None).expect("v"), 12);
    assert_eq!(conn.negotiate(ApiKey::Metadata, Some(9)).expect("v"), 9);
    assert!(matches!(
        conn.negotiate(ApiKey::JoinGroup, None),
        Err(Error::UnsupportedApi { .. })
    ));
    let resp = conn
        .send(&MetadataRequest::default())
        .await
        .expect("metadata");
    assert_eq!(resp.brokers.len(), 1);
    let resp = conn
        .send_version(&MetadataRequest::default(), 4)
        .await
        .expect("metadata v4");
    assert_eq!(resp.controller_id, BrokerId(1));
}

#[tokio::test]
async fn silent_broker_times_out() {
    // Accepts connections but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let opts = ConnectionOptions {
        connect_timeout: std::time::Duration::from_millis(200),
        ..ConnectionOptions::default()
    };
    let err = Connection::connect_with(&addr, "t", opts)
        .await
        .expect_err("times out");
    assert_eq!(
        err.to_string(),
        format!("cannot connect to broker {addr}: timed out after 200 ms")
    );
}
