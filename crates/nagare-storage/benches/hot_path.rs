//! The storage hot path: batch validation and CRC-32C, offset patching, the leader append,
//! and reads at random offsets (sparse index lookup plus the scan to the batch):
//! `cargo bench -p nagare-storage --bench hot_path`.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use nagare_protocol::record_batch;
use nagare_storage::bench_support::{load_files, OffsetIndexBench};
use nagare_storage::{Log, LogConfig, TopicPartition};

/// One uncompressed v2 batch of `records` records with `value_size`-byte values.
fn batch(records: usize, value_size: usize) -> BytesMut {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch when offset - sequence changes.
            sequence: -1 + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; value_size])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf
}

/// `n` batches of 64 records of 1 KiB back to back (about `n` × 66 KiB).
fn batches(n: usize) -> BytesMut {
    let one = batch(64, 1024);
    let mut all = BytesMut::with_capacity(one.len() * n);
    for _ in 0..n {
        all.extend_from_slice(&one);
    }
    all
}

fn validation(c: &mut Criterion) {
    let buf = batches(16);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("crc32c_1MiB", |b| {
        b.iter(|| crc32c::crc32c(black_box(&buf[..])))
    });
    g.bench_function("split_and_validate_crc_16x64x1KiB", |b| {
        b.iter(|| {
            let mut n = 0;
            for item in record_batch::batches(black_box(&buf[..])) {
                let (_, range) = item.unwrap();
                record_batch::validate_crc(&buf[range]).unwrap();
                n += 1;
            }
            n
        })
    });
    let mut patched = buf.clone();
    g.bench_function("patch_offsets_and_epoch_16_batches", |b| {
        b.iter(|| {
            let ranges: Vec<_> = record_batch::batches(&patched)
                .map(|r| r.unwrap())
                .collect();
            let mut next = 1_000_000i64;
            for (h, range) in ranges {
                let bytes = &mut patched[range];
                record_batch::set_base_offset(bytes, next).unwrap();
                record_batch::set_partition_leader_epoch(bytes, 3).unwrap();
                next += i64::from(h.last_offset_delta) + 1;
            }
            next
        })
    });
    g.finish();
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 20,
        retention_ms: -1,
        file_delete_delay_ms: 0,
        message_timestamp_after_max_ms: i64::MAX,
        message_timestamp_before_max_ms: i64::MAX,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path().join("bench-0"),
        TopicPartition::new("bench", 0),
        config(),
        0,
        true,
        0,
    )
    .unwrap();
    let one = batch(64, 1024);
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(one.len() as u64));
    // Validation, offset assignment and the write to the page cache (no fsync). The log is
    // emptied outside the timed part whenever it passes 512 MiB, to bound the disk used.
    g.bench_function("append_as_leader_64x1KiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let records = one.clone();
                let t = Instant::now();
                black_box(log.append_as_leader(records, 0, 1_700_000_000_000).unwrap());
                total += t.elapsed();
                if log.size_bytes() > 512 << 20 {
                    log.truncate_fully_and_start_at(log.log_end_offset())
                        .unwrap();
                }
            }
            total
        })
    });
    g.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path().join("bench-0"),
        TopicPartition::new("bench", 0),
        config(),
        0,
        true,
        0,
    )
    .unwrap();
    // 200,000 batches of 4 records of 100 bytes (about 100 MiB): one index entry per ~4 KiB.
    let one = batch(4, 100);
    for _ in 0..200_000 {
        log.append_as_leader(one.clone(), 0, 1_700_000_000_000)
            .unwrap();
    }
    let end = log.log_end_offset();
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(1));
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % end as u64) as i64
    };
    // Index lookup plus the scan from the indexed position to the batch holding the offset.
    g.bench_function("locate_batch_at_random_offset_800k_records", |b| {
        b.iter(|| {
            let data = log.read(next(), 0, true, end).unwrap();
            black_box(data.slice.map(|s| s.len))
        })
    });
    // A whole 1 MiB fetch: the above plus walking the batch headers up to 1 MiB.
    g.bench_function("read_1MiB_at_random_offset_800k_records", |b| {
        b.iter(|| {
            let data = log.read(next(), 1 << 20, true, end).unwrap();
            black_box(data.slice.map(|s| s.len))
        })
    });
    // A consumer at the tail: the last few batches only.
    g.bench_function("read_tail_16KiB_800k_records", |b| {
        b.iter(|| {
            let data = log.read(end - 60, 16 << 10, true, end).unwrap();
            black_box(data.slice.map(|s| s.len))
        })
    });
    g.finish();
}

fn read_large_batches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path().join("bench-1"),
        TopicPartition::new("bench", 1),
        config(),
        0,
        true,
        0,
    )
    .unwrap();
    // 4,000 batches of 64 records of 1 KiB (about 260 MiB).
    let one = batch(64, 1024);
    for _ in 0..4_000 {
        log.append_as_leader(one.clone(), 0, 1_700_000_000_000)
            .unwrap();
    }
    let end = log.log_end_offset();
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(1));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % end as u64) as i64
    };
    // 1 MiB fetches of 66 KiB batches: headers only, the records go by sendfile.
    g.bench_function("read_1MiB_at_random_offset_64KiB_batches", |b| {
        b.iter(|| {
            let data = log.read(next(), 1 << 20, true, end).unwrap();
            black_box(data.slice.map(|s| s.len))
        })
    });
    g.finish();
}

fn index(c: &mut Criterion) {
    // A full default-sized segment: 1 GiB with an entry per 4 KiB = 262,144 entries.
    let idx = OffsetIndexBench::new(1_000_000, 262_144, 40);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(1));
    g.bench_function("offset_index_lookup_262144_entries", |b| {
        b.iter(|| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            black_box(idx.lookup(1_000_000 + (state % (262_144 * 40)) as i64))
        })
    });
    // Opening a flushed 1 GiB segment reads both its index files (2 MiB + 3 MiB) into memory
    // and sanity-checks every entry; a 5 GB log has five of them.
    let dir = tempfile::tempdir().unwrap();
    let mut idx = OffsetIndexBench::new(1_000_000, 262_144, 40);
    idx.write_files(dir.path()).unwrap();
    g.throughput(Throughput::Bytes(262_144 * (8 + 12)));
    g.bench_function("load_and_check_indexes_of_a_1GiB_segment", |b| {
        b.iter(|| black_box(load_files(dir.path(), 1_000_000, (1 << 30) + 4096).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = validation, append, read, read_large_batches, index
}
criterion_main!(benches);
