//! Property tests: the RecordBatch header view and the log's append/read/recovery round trips.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;

use common::*;
use nagare_protocol::record_batch::{
    self, batches, BatchError, RecordBatchHeader, TimestampType, HEADER_SIZE, LOG_OVERHEAD,
};
use nagare_storage::{Log, LogConfig};
use proptest::prelude::*;

fn arb_header() -> impl Strategy<Value = RecordBatchHeader> {
    (
        (any::<i64>(), any::<i32>(), 0i16..0x80, 0i32..10_000),
        (
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i16>(),
            any::<i32>(),
            any::<i32>(),
        ),
    )
        .prop_map(
            |((base, epoch, attributes, delta), (bts, mts, pid, pepoch, seq, count))| {
                RecordBatchHeader {
                    base_offset: base,
                    batch_length: 0,
                    partition_leader_epoch: epoch,
                    magic: 2,
                    crc: 0,
                    attributes,
                    last_offset_delta: delta,
                    base_timestamp: bts,
                    max_timestamp: mts,
                    producer_id: pid,
                    producer_epoch: pepoch,
                    base_sequence: seq,
                    records_count: count,
                }
            },
        )
}

/// A batch with `payload` as its (opaque) records and a valid CRC.
fn encode(h: &RecordBatchHeader, payload: &[u8]) -> Vec<u8> {
    let mut h = *h;
    h.batch_length = (HEADER_SIZE - LOG_OVERHEAD + payload.len()) as i32;
    let mut buf = vec![0u8; HEADER_SIZE + payload.len()];
    h.write_to(&mut buf).expect("header fits");
    buf[HEADER_SIZE..].copy_from_slice(payload);
    record_batch::update_crc(&mut buf).expect("crc");
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn header_round_trips_and_patches_keep_crc_valid(
        h in arb_header(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        new_base in any::<i64>(),
        new_epoch in any::<i32>(),
        append_time in any::<i64>(),
    ) {
        let mut buf = encode(&h, &payload);
        let parsed = RecordBatchHeader::parse(&buf).expect("parses");
        prop_assert_eq!(parsed.base_offset, h.base_offset);
        prop_assert_eq!(parsed.attributes, h.attributes);
        prop_assert_eq!(parsed.max_timestamp, h.max_timestamp);
        prop_assert_eq!(parsed.total_size(), buf.len());
        prop_assert_eq!(parsed.last_offset(), h.base_offset.wrapping_add(i64::from(h.last_offset_delta)));
        record_batch::validate_crc(&buf).expect("valid");

        record_batch::set_base_offset(&mut buf, new_base).expect("patch");
        record_batch::set_partition_leader_epoch(&mut buf, new_epoch).expect("patch");
        prop_assert_eq!(RecordBatchHeader::parse(&buf).expect("parses").crc, parsed.crc);
        record_batch::set_log_append_time(&mut buf, append_time).expect("patch");
        record_batch::validate_crc(&buf).expect("still valid");
        let p = RecordBatchHeader::parse(&buf).expect("parses");
        prop_assert_eq!(p.base_offset, new_base);
        prop_assert_eq!(p.partition_leader_epoch, new_epoch);
        prop_assert_eq!(p.max_timestamp, append_time);
        prop_assert_eq!(p.timestamp_type(), TimestampType::LogAppendTime);
        prop_assert_eq!(p.attributes & !0x08, h.attributes & !0x08);
        prop_assert_eq!(&buf[HEADER_SIZE..], &payload[..]);
    }

    #[test]
    fn batches_split_concatenations_and_reject_cut_ones(
        parts in proptest::collection::vec((arb_header(), proptest::collection::vec(any::<u8>(), 0..100)), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut all = Vec::new();
        let mut bounds = Vec::new();
        for (h, payload) in &parts {
            let b = encode(h, payload);
            bounds.push(all.len()..all.len() + b.len());
            all.extend_from_slice(&b);
        }
        let got: Vec<_> = batches(&all).collect::<Result<_, _>>().expect("all valid");
        prop_assert_eq!(got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), bounds.clone());

        let cut = cut.index(all.len());
        let items: Vec<_> = batches(&all[..cut]).collect();
        let complete = bounds.iter().filter(|r| r.end <= cut).count();
        let at_boundary = cut == 0 || bounds.iter().any(|r| r.end == cut);
        prop_assert!(items[..complete].iter().all(|i| i.is_ok()));
        if at_boundary {
            prop_assert_eq!(items.len(), complete);
        } else {
            prop_assert_eq!(items.len(), complete + 1);
            let truncated = matches!(items[complete], Err(BatchError::Truncated { .. }));
            prop_assert!(truncated, "expected a truncation error");
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for (_, range) in batches(&bytes).flatten() {
            let _ = record_batch::validate_crc(&bytes[range]);
        }
        let mut copy = bytes.clone();
        let _ = record_batch::set_log_append_time(&mut copy, 1);
        let _ = record_batch::set_base_offset(&mut copy, 1);
    }
}

/// An append: records in the batch and bytes per value.
fn arb_appends() -> impl Strategy<Value = Vec<(usize, usize)>> {
    proptest::collection::vec((1usize..6, 1usize..200), 1..40)
}

fn arb_config() -> impl Strategy<Value = LogConfig> {
    (1_300u64..4_000, 0u64..600, 16u64..200).prop_map(|(segment_bytes, interval, index_bytes)| {
        LogConfig {
            segment_bytes,
            index_interval_bytes: interval,
            segment_index_bytes: index_bytes,
            ..small_config()
        }
    })
}

/// Every record, read one fetch at a time from offset 0.
fn all_records(log: &Log) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1, true, i64::MAX).expect("read");
        let bytes = data.slice.expect("data").read_to_bytes().expect("pread");
        let recs = decode(&bytes);
        offset = recs.last().expect("records").0 + 1;
        out.extend(recs);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn appended_records_read_back_from_every_offset_and_after_reopen(
        config in arb_config(),
        appends in arb_appends(),
        clean in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut expected = Vec::new();
        {
            let log = Log::open(dir.path().to_path_buf(), tp(), config.clone(), 0, false, 0).expect("open");
            let mut ts = 0;
            for (records, value_size) in &appends {
                let b = build(&Spec { records: *records, timestamp: ts, value_size: *value_size, ..Spec::default() });
                let info = log.append_as_leader(b, 1, 0).expect("append");
                for i in 0..*records as i64 {
                    expected.push(info.first_offset + i);
                }
                ts += 100;
            }
            prop_assert_eq!(log.log_end_offset(), expected.len() as i64);
            for offset in 0..log.log_end_offset() {
                let data = log.read(offset, 1, true, i64::MAX).expect("read");
                let bytes = data.slice.expect("data").read_to_bytes().expect("pread");
                let h = RecordBatchHeader::parse(&bytes).expect("header");
                prop_assert!(h.base_offset <= offset && offset <= h.last_offset());
                prop_assert_eq!(bytes.len(), h.total_size());
            }
            prop_assert_eq!(all_records(&log).iter().map(|r| r.0).collect::<Vec<_>>(), expected.clone());
            // Timestamp lookups find the first record at or after the timestamp.
            let recs = all_records(&log);
            for probe in [0i64, 150, 777, ts] {
                let want = recs.iter().find(|r| r.1 >= probe).map(|r| r.0);
                let got = log.offset_for_timestamp(probe).expect("search").map(|t| t.offset);
                prop_assert_eq!(got, want);
            }
            if clean {
                log.close().expect("close");
            }
        }
        let log = Log::open(dir.path().to_path_buf(), tp(), config, 0, clean, 0).expect("reopen");
        prop_assert_eq!(log.log_end_offset(), expected.len() as i64);
        prop_assert_eq!(all_records(&log).iter().map(|r| r.0).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_torn_tail_recovers_to_a_batch_prefix(
        config in arb_config(),
        appends in arb_appends(),
        cut in any::<prop::sample::Index>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut batch_ends = Vec::new(); // (segment path, end position in it, next offset)
        {
            let log = Log::open(dir.path().to_path_buf(), tp(), config.clone(), 0, false, 0).expect("open");
            for (records, value_size) in &appends {
                let b = build(&Spec { records: *records, value_size: *value_size, ..Spec::default() });
                let info = log.append_as_leader(b, 0, 0).expect("append");
                batch_ends.push(info.last_offset + 1);
            }
        }
        // Tear the active segment at a random point and append garbage.
        let mut logs: Vec<_> = fs::read_dir(dir.path()).expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        let active = logs.last().expect("segment").clone();
        let base: i64 = active.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).expect("base");
        let len = fs::metadata(&active).expect("meta").len();
        let cut_at = cut.index(len as usize + 1) as u64;
        let f = fs::OpenOptions::new().write(true).open(&active).expect("open");
        f.set_len(cut_at).expect("cut");
        f.write_all_at(&garbage, cut_at).expect("garbage");
        drop(f);

        let log = Log::open(dir.path().to_path_buf(), tp(), config, 0, false, 0).expect("reopen never fails");
        let end = log.log_end_offset();
        // The log ends at a batch boundary at or after the segment base.
        prop_assert!(end >= base);
        prop_assert!(end == base || batch_ends.contains(&end));
        let recs = all_records(&log);
        prop_assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), (0..end).collect::<Vec<_>>());
        let info = log.append_as_leader(batch(1, 0), 0, 0).expect("append after recovery");
        prop_assert_eq!(info.first_offset, end);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// `Log::read` (index jump, adaptive header reads) returns exactly the batches a naive
    /// walk would: from the batch holding the offset, whole batches of one segment, below
    /// `max_offset`, within `max_bytes` (at least one when asked).
    #[test]
    fn reads_match_a_naive_batch_walk(
        config in arb_config(),
        appends in arb_appends(),
        probes in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6000, any::<prop::sample::Index>(), any::<bool>()), 1..40),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().to_path_buf(), tp(), config, 0, false, 0).expect("open");
        let mut batches = Vec::new(); // (base, last, size)
        for (records, value_size) in &appends {
            let b = build(&Spec { records: *records, value_size: *value_size, ..Spec::default() });
            let size = b.len();
            let info = log.append_as_leader(b, 0, 0).expect("append");
            batches.push((info.first_offset, info.last_offset, size));
        }
        let bases = log.segment_base_offsets();
        let segment_of = |offset: i64| bases.iter().rposition(|&b| b <= offset).expect("segment");
        let end = log.log_end_offset();
        for (at, max_bytes, hw, min_one) in probes {
            let offset = at.index(end as usize) as i64;
            let max_offset = hw.index(end as usize + 1) as i64;
            let first = batches.iter().position(|b| b.1 >= offset).expect("batch");
            let mut want = Vec::new();
            let mut total = 0usize;
            if offset < max_offset {
                for b in &batches[first..] {
                    if segment_of(b.0) != segment_of(batches[first].0) || b.1 >= max_offset {
                        break;
                    }
                    if total + b.2 > max_bytes {
                        if want.is_empty() && min_one {
                            want.push(b.0);
                        }
                        break;
                    }
                    total += b.2;
                    want.push(b.0);
                }
            }
            let data = log.read(offset, max_bytes, min_one, max_offset).expect("read");
            let got: Vec<i64> = match data.slice {
                Some(s) => {
                    let bytes = s.read_to_bytes().expect("pread");
                    nagare_protocol::record_batch::batches(&bytes)
                        .map(|r| r.expect("batch").0.base_offset)
                        .collect()
                }
                None => Vec::new(),
            };
            prop_assert_eq!(got, want, "offset {} max_bytes {} max_offset {}", offset, max_bytes, max_offset);
        }
    }
}
