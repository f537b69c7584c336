//! A minimal blocking Fetch client for `consume --client raw`: Fetch v11 requests (encoded with
//! `kafka-protocol`), responses read into one reused buffer and walked in place. Records are
//! counted from batch headers and never decoded or copied again, so the figure is the broker's
//! and the network's, not a client's.

use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::{bail, ensure, Context as _};
use bytes::BytesMut;
use nagare_client::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use nagare_client::kafka_protocol::messages::{ApiKey, BrokerId, RequestHeader, TopicName};
use nagare_client::kafka_protocol::protocol::{Encodable, StrBytes};
use nagare_protocol::record_batch;

/// The Fetch version used: the last one with topic names and without tagged fields, so the
/// response can be walked without varints.
const VERSION: i16 = 11;

/// Largest response accepted (a bad size prefix is an error, not an allocation).
const MAX_RESPONSE: usize = 1 << 30;

/// One connection fetching a set of partitions of one topic.
pub struct RawFetcher {
    stream: TcpStream,
    topic: String,
    /// (partition, next offset to fetch).
    pub positions: Vec<(i32, i64)>,
    max_bytes: i32,
    correlation_id: i32,
    response: Vec<u8>,
}

/// What one fetch brought.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fetched {
    /// Records at or after the requested offsets.
    pub records: u64,
    /// Bytes of the batches holding them.
    pub bytes: u64,
}

impl RawFetcher {
    /// Connects to `addr`.
    pub fn connect(
        addr: &str,
        topic: &str,
        positions: Vec<(i32, i64)>,
        max_bytes: i32,
    ) -> anyhow::Result<RawFetcher> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawFetcher {
            stream,
            topic: topic.to_owned(),
            positions,
            max_bytes,
            correlation_id: 0,
            response: Vec::new(),
        })
    }

    fn request(&mut self) -> anyhow::Result<BytesMut> {
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_string(self.topic.clone()));
        t.partitions = self
            .positions
            .iter()
            .map(|&(p, offset)| {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = offset;
                fp.partition_max_bytes = self.max_bytes;
                fp.log_start_offset = -1;
                fp.current_leader_epoch = -1;
                fp
            })
            .collect();
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 100;
        req.min_bytes = 1;
        req.max_bytes = self.max_bytes;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = vec![t];
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Fetch as i16;
        header.request_api_version = VERSION;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("nagare-bench"));
        let mut buf = BytesMut::with_capacity(128);
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, ApiKey::Fetch.request_header_version(VERSION))
            .map_err(|e| anyhow::anyhow!("encoding the request header: {e}"))?;
        req.encode(&mut buf, VERSION)
            .map_err(|e| anyhow::anyhow!("encoding the fetch request: {e}"))?;
        let size = i32::try_from(buf.len() - 4).context("request size")?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf)
    }

    /// Sends one Fetch, reads the response into the reused buffer and advances the positions
    /// past the complete batches it held.
    pub fn fetch(&mut self) -> anyhow::Result<Fetched> {
        let req = self.request()?;
        self.stream.write_all(&req).context("sending a fetch")?;
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .context("reading a fetch response")?;
        let size = usize::try_from(i32::from_be_bytes(prefix)).context("negative frame size")?;
        ensure!(size <= MAX_RESPONSE, "fetch response of {size} bytes");
        self.response.clear();
        // `read_to_end` fills spare capacity without zeroing it; the buffer is reused, so after
        // the first responses no memory is allocated or faulted in.
        let got = (&mut self.stream)
            .take(size as u64)
            .read_to_end(&mut self.response)
            .context("reading a fetch response")?;
        ensure!(got == size, "connection closed mid-response");
        let correlation_id = self.correlation_id;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        walk(&self.response, correlation_id, &mut self.positions)
    }
}

/// A bounds-checked reader over a response.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).context("length overflow")?;
        let s = self
            .buf
            .get(self.pos..end)
            .with_context(|| format!("response truncated at byte {}", self.pos))?;
        self.pos = end;
        Ok(s)
    }
    fn i16(&mut self) -> anyhow::Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> anyhow::Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> anyhow::Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    /// An array length; -1 (null) reads as 0.
    fn len(&mut self) -> anyhow::Result<usize> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(0);
        }
        usize::try_from(n).context("length")
    }
}

/// Walks a Fetch v11 response body (after the size prefix), counting records from the batch
/// headers and moving each partition's position past its last complete batch.
fn walk(buf: &[u8], correlation_id: i32, positions: &mut [(i32, i64)]) -> anyhow::Result<Fetched> {
    let mut c = Cursor { buf, pos: 0 };
    ensure!(
        c.i32()? == correlation_id,
        "fetch response for another request"
    );
    let _throttle = c.i32()?;
    let error = c.i16()?;
    ensure!(error == 0, "fetch failed with error code {error}");
    let _session = c.i32()?;
    let mut out = Fetched::default();
    for _ in 0..c.len()? {
        let name_len = usize::try_from(c.i16()?.max(0)).context("topic name length")?;
        c.take(name_len)?;
        for _ in 0..c.len()? {
            let partition = c.i32()?;
            let error = c.i16()?;
            if error != 0 {
                bail!("fetch of partition {partition} failed with error code {error}");
            }
            let _hw = c.i64()?;
            let _lso = c.i64()?;
            let _log_start = c.i64()?;
            for _ in 0..c.len()? {
                c.i64()?;
                c.i64()?;
            }
            let _preferred_read_replica = c.i32()?;
            let records = c.len()?;
            let records = c.take(records)?;
            let Some(pos) = positions.iter_mut().find(|(p, _)| *p == partition) else {
                continue;
            };
            // A response may end with a partial batch: stop at the first incomplete one.
            for item in record_batch::batches(records) {
                let Ok((header, range)) = item else { break };
                if header.last_offset() < pos.1 {
                    continue;
                }
                let skipped = (pos.1 - header.base_offset).max(0);
                out.records +=
                    u64::try_from(i64::from(header.records_count) - skipped).unwrap_or(0);
                out.bytes += range.len() as u64;
                pos.1 = header.next_offset();
            }
        }
    }
    Ok(out)
}
