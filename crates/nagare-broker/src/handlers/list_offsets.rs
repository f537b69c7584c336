//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3), earliest local
//! (-4), and by timestamp through the time index.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::HandlerResult;
use super::{respond, storage_error_code, Request};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (1, 10);

/// Handles ListOffsets.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: ListOffsetsRequest = req.decode()?;
    let v = req.version();
    // A follower (replica id >= 0, or the -2 debugging id) gets the log end for "latest",
    // a consumer the high watermark (Kafka's isolation level `None` for non-clients).
    let from_client = r.replica_id.0 == -1;
    let mut topics = Vec::new();
    for t in r.topics {
        let mut parts = Vec::new();
        for p in t.partitions {
            let out = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let part = match broker.replicas.leader_partition(
                t.name.as_str(),
                p.partition_index,
                p.current_leader_epoch,
            ) {
                Ok(part) => part,
                Err(code) => {
                    parts.push(out.with_error_code(code));
                    continue;
                }
            };
            let epoch = part.epoch();
            let res = match p.timestamp {
                -2 | -4 => Ok(Some((-1, part.log.log_start_offset(), epoch))),
                -1 if from_client => Ok(Some((-1, part.high_watermark(), epoch))),
                -1 => Ok(Some((-1, part.log.log_end_offset(), epoch))),
                -3 => part
                    .log
                    .max_timestamp_offset()
                    .map(|o| o.map(|o| (o.timestamp, o.offset, o.leader_epoch))),
                ts if ts < 0 => Ok(None),
                ts => part.log.offset_for_timestamp(ts).map(|o| {
                    o.filter(|o| o.offset < part.high_watermark())
                        .map(|o| (o.timestamp, o.offset, o.leader_epoch))
                }),
            };
            parts.push(match res {
                Ok(Some((ts, off, ep))) => out
                    .with_timestamp(ts)
                    .with_offset(off)
                    .with_leader_epoch(if v >= 4 { ep } else { -1 }), // v4+ only
                Ok(None) => out,
                Err(e) => out.with_error_code(storage_error_code(&e)),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    let resp = ListOffsetsResponse::default().with_topics(topics);
    Ok(Reply::Now(respond(
        ApiKey::ListOffsets,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
