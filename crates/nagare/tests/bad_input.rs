//! Hostile and broken input over raw TCP: oversized frames, garbage, truncated frames, unknown
//! API keys, ApiVersions at an unknown version (KIP-511) and record batches with a bad CRC.
//! After each case the broker must still serve a well-behaved librdkafka client.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{consume_to_end, TestServer};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::Offset;

// ---------------------------------------------------------------------------------------------
// A minimal hand-written encoder/decoder, independent of the broker's own code.

fn connect(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(server.direct_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

fn put_unsigned_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_unsigned_varint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Request header v1 (`flexible == false`) or v2 (adds empty tagged fields), then the body,
/// with the 4-byte size prefix.
fn frame(api_key: i16, version: i16, correlation_id: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    msg.extend(api_key.to_be_bytes());
    msg.extend(version.to_be_bytes());
    msg.extend(correlation_id.to_be_bytes());
    let client_id = b"nagare-bad-input";
    msg.extend((client_id.len() as i16).to_be_bytes());
    msg.extend(client_id);
    if flexible {
        msg.push(0);
    }
    msg.extend(body);
    let mut out = (msg.len() as i32).to_be_bytes().to_vec();
    out.extend(msg);
    out
}

/// What reading from a socket led to.
#[derive(Debug)]
enum ReadOutcome {
    /// A whole response frame (without the size prefix).
    Frame(Vec<u8>),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing happened within the read timeout.
    TimedOut,
}

fn read_frame(s: &mut TcpStream) -> ReadOutcome {
    let mut size = [0u8; 4];
    if let Err(e) = s.read_exact(&mut size) {
        return match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => ReadOutcome::TimedOut,
            _ => ReadOutcome::Closed,
        };
    }
    let size = i32::from_be_bytes(size);
    assert!(
        (4..=64 << 20).contains(&size),
        "implausible response size {size}"
    );
    let mut body = vec![0u8; size as usize];
    match s.read_exact(&mut body) {
        Ok(()) => ReadOutcome::Frame(body),
        Err(e) => match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => ReadOutcome::TimedOut,
            _ => ReadOutcome::Closed,
        },
    }
}

/// Reads a big-endian response body field by field.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.pos + n <= self.buf.len(),
            "response truncated: need {n} bytes at {} of {}",
            self.pos,
            self.buf.len()
        );
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn uvarint(&mut self) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint too long");
    }
    fn skip_tagged_fields(&mut self) {
        let n = self.uvarint();
        for _ in 0..n {
            let _tag = self.uvarint();
            let size = self.uvarint() as usize;
            self.take(size);
        }
    }
    fn array_len(&mut self, flexible: bool) -> usize {
        if flexible {
            (self.uvarint() - 1) as usize
        } else {
            self.i32() as usize
        }
    }
    fn string(&mut self, flexible: bool) -> String {
        let len = if flexible {
            self.uvarint() as i64 - 1
        } else {
            i64::from(self.i16())
        };
        assert!(len >= 0, "unexpected null string");
        String::from_utf8_lossy(self.take(len as usize)).into_owned()
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Sends ApiVersions v0 and returns the broker's `(key, min, max)` ranges.
fn api_versions_v0(s: &mut TcpStream, correlation_id: i32) -> Vec<(i16, i16, i16)> {
    s.write_all(&frame(18, 0, correlation_id, false, &[]))
        .expect("send ApiVersions v0");
    let body = match read_frame(s) {
        ReadOutcome::Frame(b) => b,
        other => panic!("ApiVersions v0: {other:?}"),
    };
    let mut r = Reader::new(&body);
    assert_eq!(r.i32(), correlation_id);
    assert_eq!(r.i16(), 0, "ApiVersions v0 error code");
    let n = r.i32();
    (0..n).map(|_| (r.i16(), r.i16(), r.i16())).collect()
}

/// CRC-32C (Castagnoli), bit by bit: slow but obviously right.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One uncompressed RecordBatch v2 holding one record with `value`, with a correct CRC.
fn record_batch(value: &[u8]) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut record = Vec::new();
    record.push(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, -1); // null key
    put_varint(&mut record, value.len() as i64);
    record.extend(value);
    put_varint(&mut record, 0); // no headers
    let mut records = Vec::new();
    put_varint(&mut records, record.len() as i64);
    records.extend(record);

    // Everything the CRC covers: attributes through the records.
    let mut tail = Vec::new();
    tail.extend(0i16.to_be_bytes()); // attributes: no compression, CreateTime
    tail.extend(0i32.to_be_bytes()); // last offset delta
    tail.extend(now.to_be_bytes()); // base timestamp
    tail.extend(now.to_be_bytes()); // max timestamp
    tail.extend((-1i64).to_be_bytes()); // producer id
    tail.extend((-1i16).to_be_bytes()); // producer epoch
    tail.extend((-1i32).to_be_bytes()); // base sequence
    tail.extend(1i32.to_be_bytes()); // record count
    tail.extend(records);

    let mut batch = Vec::new();
    batch.extend(0i64.to_be_bytes()); // base offset
    let batch_length = 4 + 1 + 4 + tail.len(); // leader epoch, magic, crc, tail
    batch.extend((batch_length as i32).to_be_bytes());
    batch.extend((-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(crc32c(&tail).to_be_bytes());
    batch.extend(tail);
    batch
}

/// A Produce request body (acks=-1) for one partition of one topic.
fn produce_body(version: i16, topic: &str, partition: i32, records: &[u8]) -> Vec<u8> {
    let flexible = version >= 9;
    let mut b = Vec::new();
    // transactional id: null
    if flexible {
        put_unsigned_varint(&mut b, 0);
    } else {
        b.extend((-1i16).to_be_bytes());
    }
    b.extend((-1i16).to_be_bytes()); // acks
    b.extend(10_000i32.to_be_bytes()); // timeout
                                       // topics: [ name, partitions: [ index, records ] ]
    if flexible {
        put_unsigned_varint(&mut b, 2);
        put_unsigned_varint(&mut b, topic.len() as u64 + 1);
        b.extend(topic.as_bytes());
        put_unsigned_varint(&mut b, 2);
        b.extend(partition.to_be_bytes());
        put_unsigned_varint(&mut b, records.len() as u64 + 1);
        b.extend(records);
        b.push(0); // partition tagged fields
        b.push(0); // topic tagged fields
        b.push(0); // request tagged fields
    } else {
        b.extend(1i32.to_be_bytes());
        b.extend((topic.len() as i16).to_be_bytes());
        b.extend(topic.as_bytes());
        b.extend(1i32.to_be_bytes());
        b.extend(partition.to_be_bytes());
        b.extend((records.len() as i32).to_be_bytes());
        b.extend(records);
    }
    b
}

/// Sends a Produce and returns `(error_code, base_offset)` of its single partition.
fn produce_raw(
    s: &mut TcpStream,
    version: i16,
    correlation_id: i32,
    topic: &str,
    records: &[u8],
) -> (i16, i64) {
    let flexible = version >= 9;
    s.write_all(&frame(
        0,
        version,
        correlation_id,
        flexible,
        &produce_body(version, topic, 0, records),
    ))
    .expect("send Produce");
    let body = match read_frame(s) {
        ReadOutcome::Frame(b) => b,
        other => panic!("Produce v{version}: {other:?}"),
    };
    let mut r = Reader::new(&body);
    assert_eq!(r.i32(), correlation_id, "Produce correlation id");
    if flexible {
        r.skip_tagged_fields();
    }
    assert_eq!(
        r.array_len(flexible),
        1,
        "one topic in the Produce response"
    );
    assert_eq!(r.string(flexible), topic);
    assert_eq!(
        r.array_len(flexible),
        1,
        "one partition in the Produce response"
    );
    assert_eq!(r.i32(), 0, "partition index");
    let error = r.i16();
    let base_offset = r.i64();
    (error, base_offset)
}

/// Expects the broker to close the connection (or, leniently, answer with `correlation_id`)
/// within `within`; a hang fails the test.
fn expect_closed_or_answered(s: &mut TcpStream, correlation_id: Option<i32>, within: Duration) {
    s.set_read_timeout(Some(within)).expect("timeout");
    let t = Instant::now();
    match read_frame(s) {
        ReadOutcome::Closed => eprintln!("connection closed after {:?}", t.elapsed()),
        ReadOutcome::Frame(body) => {
            let id = correlation_id.expect("no response expected: the broker must close");
            assert!(body.len() >= 4);
            assert_eq!(
                i32::from_be_bytes(body[..4].try_into().expect("4 bytes")),
                id,
                "response to a bad request carries the wrong correlation id"
            );
        }
        ReadOutcome::TimedOut => panic!("broker neither closed nor answered within {within:?}"),
    }
}

// ---------------------------------------------------------------------------------------------

/// (a) A 100 MiB size prefix with `socket.request.max.bytes` at 1 MiB: closed at once, and the
/// broker does not allocate the announced size.
#[test]
fn oversized_frame_is_refused_without_allocating() {
    let mut server = TestServer::start(&["socket.request.max.bytes=1048576"]);
    let rss_before = server.rss_kib().expect("rss");
    let vm_before = server.vm_size_kib().expect("vm size");
    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut s = connect(&server);
        s.write_all(&(100i32 << 20).to_be_bytes())
            .expect("send size prefix");
        conns.push(s);
    }
    // Measure while the connections are still open: a broker that reserved 100 MiB per frame
    // would hold 800 MiB (virtual, at least) now.
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = server.rss_kib().expect("rss");
    let vm_after = server.vm_size_kib().expect("vm size");
    for s in &mut conns {
        expect_closed_or_answered(s, None, Duration::from_secs(5));
    }
    eprintln!("RSS {rss_before} -> {rss_after} KiB, virtual {vm_before} -> {vm_after} KiB");
    assert!(
        rss_after < rss_before + 100 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB after 8 oversized frames"
    );
    assert!(
        vm_after < vm_before + 500 * 1024,
        "virtual size grew from {vm_before} KiB to {vm_after} KiB after 8 oversized frames"
    );
    // A negative size is just as bad.
    let mut s = connect(&server);
    s.write_all(&(-1i32).to_be_bytes()).expect("send");
    expect_closed_or_answered(&mut s, None, Duration::from_secs(5));
    server.assert_healthy("oversized frames");
}

/// (b) Garbage: a request whose header and body are nonsense.
#[test]
fn garbage_is_survived() {
    let mut server = TestServer::start(&[]);
    // Plausible size, Metadata v12 header, then bytes that decode to absurd lengths (the
    // topics compact array claims ~4 billion entries in a 64-byte body).
    let mut s = connect(&server);
    let mut bad = frame(3, 12, 99, true, &[0xff; 64]);
    s.write_all(&bad).expect("send");
    expect_closed_or_answered(&mut s, Some(99), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    server.assert_running("Metadata v12 with an absurd compact array length");
    // The same in the classic encoding: Metadata v1 whose topics array claims i32::MAX entries.
    let mut s = connect(&server);
    s.write_all(&frame(3, 1, 98, false, &i32::MAX.to_be_bytes()))
        .expect("send");
    expect_closed_or_answered(&mut s, Some(98), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    server.assert_running("Metadata v1 with an absurd array length");
    // Someone speaks HTTP to the Kafka port: "GET " is a size prefix of 1.1 GB.
    let mut s = connect(&server);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    expect_closed_or_answered(&mut s, None, Duration::from_secs(10));
    // Pure noise behind a plausible size prefix.
    let mut s = connect(&server);
    bad.clear();
    let mut x = 0x1234_5678u32;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bad.push(x as u8);
    }
    bad[..4].copy_from_slice(&200i32.to_be_bytes());
    let _ = s.write_all(&bad);
    expect_closed_or_answered(&mut s, None, Duration::from_secs(10));
    server.assert_healthy("garbage");
}

/// (c) A frame cut short, then the client hangs up.
#[test]
fn truncated_frame_then_close_is_survived() {
    let mut server = TestServer::start(&[]);
    for _ in 0..20 {
        let mut s = connect(&server);
        let full = frame(3, 1, 5, false, &[0, 0, 0, 0]);
        s.write_all(&full[..full.len() - 3]).expect("send");
        drop(s);
    }
    // And one that stops after part of the size prefix.
    let mut s = connect(&server);
    s.write_all(&[0, 0]).expect("send");
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    server.assert_healthy("truncated frames");
}

/// (d) An API key no Kafka version defines.
#[test]
fn unknown_api_key_is_survived() {
    let mut server = TestServer::start(&[]);
    let mut s = connect(&server);
    s.write_all(&frame(9999, 0, 77, false, &[])).expect("send");
    expect_closed_or_answered(&mut s, Some(77), Duration::from_secs(10));
    server.assert_healthy("unknown API key");
}

/// (e) KIP-511: ApiVersions v127 gets a v0-format UNSUPPORTED_VERSION response with the ranges,
/// and the connection stays usable for the client's retry at a version the broker knows.
#[test]
fn api_versions_at_unknown_version_falls_back() {
    let mut server = TestServer::start(&[]);
    let mut s = connect(&server);
    let mut body = Vec::new();
    put_unsigned_varint(&mut body, 10); // client software name, compact string
    body.extend(b"nagare-it");
    put_unsigned_varint(&mut body, 4); // client software version
    body.extend(b"1.0");
    body.push(0); // tagged fields
    s.write_all(&frame(18, 127, 4242, true, &body))
        .expect("send");
    let resp = match read_frame(&mut s) {
        ReadOutcome::Frame(b) => b,
        other => panic!("ApiVersions v127: {other:?}"),
    };
    let mut r = Reader::new(&resp);
    assert_eq!(r.i32(), 4242, "correlation id");
    assert_eq!(r.i16(), 35, "error code UNSUPPORTED_VERSION");
    let n = r.i32();
    assert!(n > 0, "the fallback lists the supported ranges");
    let ranges: Vec<(i16, i16, i16)> = (0..n).map(|_| (r.i16(), r.i16(), r.i16())).collect();
    assert_eq!(r.remaining(), 0, "v0 format: nothing after the ranges");
    for &(key, min, max) in &ranges {
        assert!(
            min >= 0 && min <= max,
            "bad range for key {key}: {min}..={max}"
        );
    }
    for key in [0, 1, 2, 3, 18] {
        assert!(
            ranges.iter().any(|r| r.0 == key),
            "API key {key} missing from {ranges:?}"
        );
    }
    let av = ranges
        .iter()
        .find(|r| r.0 == 18)
        .expect("ApiVersions range");
    assert_eq!(av.1, 0, "ApiVersions must support v0");
    assert!(av.2 >= 3, "ApiVersions max {} < 3", av.2);

    // The client's retry on the same connection.
    let again = api_versions_v0(&mut s, 4243);
    assert_eq!(again, ranges, "v0 answer lists the same ranges");
    server.assert_healthy("ApiVersions v127");
}

/// (f) A Produce whose batch fails its CRC gets CORRUPT_MESSAGE and stores nothing; the same
/// request with a correct CRC is accepted (which proves the hand-built request is right).
#[test]
fn corrupt_batch_is_rejected_and_not_stored() {
    let mut server = TestServer::start(&[]);
    let topic = "crc-check";
    server.create_topic(topic, 1, &[]);
    let mut s = connect(&server);
    let ranges = api_versions_v0(&mut s, 1);
    let &(_, min, max) = ranges
        .iter()
        .find(|r| r.0 == 0)
        .expect("Produce is supported");
    // v8 is the last classic encoding; the newest version uses the flexible one.
    let mut versions = vec![8i16.clamp(min, max)];
    if max > versions[0] {
        versions.push(max);
    }
    eprintln!("Produce range {min}..={max}, using {versions:?}");

    let mut correlation_id = 1;
    let mut good_values = Vec::new();
    for &version in &versions {
        let good_value = format!("good record v{version}");
        correlation_id += 1;
        let good = record_batch(good_value.as_bytes());
        let (error, base_offset) = produce_raw(&mut s, version, correlation_id, topic, &good);
        assert_eq!(error, 0, "v{version}: a valid batch is accepted");
        assert_eq!(
            base_offset,
            good_values.len() as i64,
            "v{version}: base offset"
        );
        good_values.push(good_value);

        // Flip one bit of the value: the stored CRC no longer matches.
        let mut bad_payload = record_batch(b"evil record");
        let last = bad_payload.len() - 2;
        bad_payload[last] ^= 0x01;
        correlation_id += 1;
        let (error, _) = produce_raw(&mut s, version, correlation_id, topic, &bad_payload);
        assert_eq!(error, 2, "v{version}: corrupted payload: CORRUPT_MESSAGE");

        // Damage the CRC field itself.
        let mut bad_crc = record_batch(b"evil record 2");
        bad_crc[17] ^= 0xff;
        correlation_id += 1;
        let (error, _) = produce_raw(&mut s, version, correlation_id, topic, &bad_crc);
        assert_eq!(error, 2, "v{version}: corrupted CRC field: CORRUPT_MESSAGE");
    }

    // Only the good records are in the log.
    let consumed = consume_to_end(
        &server,
        topic,
        1,
        Offset::Beginning,
        Duration::from_secs(30),
    );
    let stored: Vec<&[u8]> = consumed[0]
        .iter()
        .map(|m| m.payload().unwrap_or_default())
        .collect();
    let expected: Vec<&[u8]> = good_values.iter().map(|v| v.as_bytes()).collect();
    assert_eq!(stored, expected, "only the valid batches are stored");
    let consumer = server.consumer(&[]);
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(
        (low, high),
        (0, good_values.len() as i64),
        "watermarks after the rejected batches"
    );
    server.assert_healthy("corrupt batches");
}
