//! Zero-copy Fetch response encoding.
//!
//! The response is produced as a list of chunks: encoded bytes interleaved with record-set
//! regions that the caller writes itself (for example with `sendfile` from a segment file).
//! Record bytes are never copied or re-encoded here; only their length is needed to frame them.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchResponse, PartitionData};
use kafka_protocol::protocol::Encodable;

/// A record set held outside the response buffer (e.g. a region of a segment file).
pub trait RecordsRegion {
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// True when the region holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RecordsRegion for Bytes {
    fn len(&self) -> usize {
        Bytes::len(self)
    }
}

/// One piece of an encoded response.
#[derive(Debug, Clone)]
pub enum Chunk<R> {
    /// Bytes encoded in memory.
    Bytes(Bytes),
    /// A record set written by the caller.
    Records(R),
}

/// Error encoding a fetch response.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode fetch response: {0}")]
pub struct EncodeError(String);

/// The chunks of a response and their total length (the frame size, without the prefix).
#[derive(Debug)]
pub struct EncodedResponse<R> {
    /// Response pieces in wire order; the first begins with the 4-byte size prefix.
    pub chunks: Vec<Chunk<R>>,
    /// Total bytes of all chunks, including the size prefix.
    pub total_len: usize,
}

struct Writer<R> {
    buf: BytesMut,
    chunks: Vec<Chunk<R>>,
    total_len: usize,
}

impl<R: RecordsRegion> Writer<R> {
    fn flush_buf(&mut self) {
        if !self.buf.is_empty() {
            let b = self.buf.split().freeze();
            self.total_len += b.len();
            self.chunks.push(Chunk::Bytes(b));
        }
    }
    fn region(&mut self, r: R) {
        self.flush_buf();
        self.total_len += r.len();
        self.chunks.push(Chunk::Records(r));
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_uvarint(buf, len as u32 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_tagged<T: Encodable>(
    buf: &mut BytesMut,
    tag: u32,
    value: &T,
    version: i16,
) -> Result<(), EncodeError> {
    let size = value
        .compute_size(version)
        .map_err(|e| EncodeError(e.to_string()))?;
    put_uvarint(buf, tag);
    put_uvarint(buf, size as u32);
    value
        .encode(buf, version)
        .map_err(|e| EncodeError(e.to_string()))
}

/// Encodes `response` at `version` (4..=18) with header `header_version`, taking each
/// partition's records from `records[topic][partition]` when present, else from the
/// partition's own `records` field; a partition with neither gets an empty (never null)
/// record set, because librdkafka rejects a null one ("invalid MessageSetSize -1").
pub fn encode_fetch_response<R: RecordsRegion>(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    response: &FetchResponse,
    mut records: Vec<Vec<Option<R>>>,
) -> Result<EncodedResponse<R>, EncodeError> {
    if !(4..=18).contains(&version) {
        return Err(EncodeError(format!("unsupported fetch version {version}")));
    }
    let flexible = version >= 12;
    let mut w = Writer {
        buf: BytesMut::with_capacity(256),
        chunks: Vec::new(),
        total_len: 0,
    };
    w.buf.put_i32(0); // size prefix, patched at the end
    crate::frame::put_response_header(&mut w.buf, correlation_id, header_version);
    w.buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(response.error_code);
        w.buf.put_i32(response.session_id);
    }
    put_array_len(&mut w.buf, response.responses.len(), flexible);
    for (ti, topic) in response.responses.iter().enumerate() {
        if version <= 12 {
            let name = topic.topic.as_bytes();
            if flexible {
                put_uvarint(&mut w.buf, name.len() as u32 + 1);
            } else {
                w.buf.put_i16(name.len() as i16);
            }
            w.buf.put_slice(name);
        } else {
            w.buf.put_slice(topic.topic_id.as_bytes());
        }
        put_array_len(&mut w.buf, topic.partitions.len(), flexible);
        for (pi, p) in topic.partitions.iter().enumerate() {
            let region = records
                .get_mut(ti)
                .and_then(|t| t.get_mut(pi))
                .and_then(Option::take);
            put_partition(&mut w, p, version, flexible, region)?;
        }
        if flexible {
            w.buf.put_u8(0);
        }
    }
    if flexible {
        if version >= 16 && !response.node_endpoints.is_empty() {
            put_uvarint(&mut w.buf, 1);
            let mut body = BytesMut::new();
            put_array_len(&mut body, response.node_endpoints.len(), true);
            for n in &response.node_endpoints {
                n.encode(&mut body, version)
                    .map_err(|e| EncodeError(e.to_string()))?;
            }
            put_uvarint(&mut w.buf, 0);
            put_uvarint(&mut w.buf, body.len() as u32);
            w.buf.put_slice(&body);
        } else {
            w.buf.put_u8(0);
        }
    }
    w.flush_buf();
    let size = (w.total_len - 4) as i32;
    if let Some(Chunk::Bytes(first)) = w.chunks.first_mut() {
        let mut patched = BytesMut::from(&first[..]);
        patched[..4].copy_from_slice(&size.to_be_bytes());
        *first = patched.freeze();
    }
    Ok(EncodedResponse {
        chunks: w.chunks,
        total_len: w.total_len,
    })
}

fn put_partition<R: RecordsRegion>(
    w: &mut Writer<R>,
    p: &PartitionData,
    version: i16,
    flexible: bool,
    region: Option<R>,
) -> Result<(), EncodeError> {
    let b = &mut w.buf;
    b.put_i32(p.partition_index);
    b.put_i16(p.error_code);
    b.put_i64(p.high_watermark);
    b.put_i64(p.last_stable_offset);
    if version >= 5 {
        b.put_i64(p.log_start_offset);
    }
    match &p.aborted_transactions {
        None => {
            if flexible {
                b.put_u8(0);
            } else {
                b.put_i32(-1);
            }
        }
        Some(list) => {
            put_array_len(b, list.len(), flexible);
            for a in list {
                a.encode(b, version)
                    .map_err(|e| EncodeError(e.to_string()))?;
            }
        }
    }
    if version >= 11 {
        b.put_i32(*p.preferred_read_replica);
    }
    match region {
        Some(r) => {
            let len = r.len();
            if flexible {
                put_uvarint(&mut w.buf, len as u32 + 1);
            } else {
                w.buf.put_i32(len as i32);
            }
            if len > 0 {
                w.region(r);
            }
        }
        None => {
            let bytes = p.records.clone().unwrap_or_default();
            if flexible {
                put_uvarint(&mut w.buf, bytes.len() as u32 + 1);
            } else {
                w.buf.put_i32(bytes.len() as i32);
            }
            w.buf.put_slice(&bytes);
        }
    }
    if flexible {
        let b = &mut w.buf;
        let diverging = p.diverging_epoch.epoch != -1 || p.diverging_epoch.end_offset != -1;
        let leader = p.current_leader.leader_id != -1 || p.current_leader.leader_epoch != -1;
        let snapshot = p.snapshot_id.end_offset != -1 || p.snapshot_id.epoch != -1;
        put_uvarint(b, diverging as u32 + leader as u32 + snapshot as u32);
        if diverging {
            put_tagged(b, 0, &p.diverging_epoch, version)?;
        }
        if leader {
            put_tagged(b, 1, &p.current_leader, version)?;
        }
        if snapshot {
            put_tagged(b, 2, &p.snapshot_id, version)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, NodeEndpoint};
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn sample() -> FetchResponse {
        let mut p0 = PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(10)
            .with_last_stable_offset(10)
            .with_log_start_offset(0);
        p0.current_leader.leader_id = BrokerId(1);
        p0.current_leader.leader_epoch = 3;
        let p1 = PartitionData::default()
            .with_partition_index(1)
            .with_error_code(1)
            .with_high_watermark(-1);
        FetchResponse::default()
            .with_session_id(5)
            .with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_topic_id(uuid_bytes())
                .with_partitions(vec![p0, p1])])
            .with_node_endpoints(vec![NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("h"))
                .with_port(9092)])
    }

    fn uuid_bytes() -> uuid::Uuid {
        uuid::Uuid::from_bytes([7; 16])
    }

    #[test]
    fn matches_reference_decoder_at_every_version() {
        for version in 4..=18i16 {
            let header_version = if version >= 12 { 1 } else { 0 };
            let resp = sample();
            let records = Bytes::from_static(b"0123456789");
            let enc = encode_fetch_response(
                9,
                header_version,
                version,
                &resp,
                vec![vec![Some(records.clone()), None]],
            )
            .expect("encode");
            let mut all = BytesMut::new();
            for c in &enc.chunks {
                match c {
                    Chunk::Bytes(b) | Chunk::Records(b) => all.put_slice(b),
                }
            }
            assert_eq!(all.len(), enc.total_len);
            let mut all = all.freeze();
            let size = i32::from_be_bytes([all[0], all[1], all[2], all[3]]);
            assert_eq!(size as usize, enc.total_len - 4);
            let _ = bytes::Buf::get_i32(&mut all);
            let _ = bytes::Buf::get_i32(&mut all);
            if header_version >= 1 {
                let _ = bytes::Buf::get_u8(&mut all);
            }
            let decoded = FetchResponse::decode(&mut all, version).expect("decode");
            assert!(all.is_empty(), "trailing bytes at v{version}");
            let parts = &decoded.responses[0].partitions;
            assert_eq!(parts[0].records.as_deref(), Some(&b"0123456789"[..]));
            assert_eq!(parts[1].records.as_deref(), Some(&b""[..]), "never null");
            assert_eq!(parts[0].high_watermark, 10);
            assert_eq!(parts[1].error_code, 1);
            if version >= 12 {
                assert_eq!(parts[0].current_leader.leader_epoch, 3);
            }
            if version >= 16 {
                assert_eq!(decoded.node_endpoints.len(), 1);
            }
            if version >= 13 {
                assert_eq!(decoded.responses[0].topic_id, uuid_bytes());
            } else {
                assert_eq!(decoded.responses[0].topic.as_str(), "t");
            }
        }
    }
}
