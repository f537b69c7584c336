#!/usr/bin/env bash
# Transactions' cost (issue 13), beside the machine's limits measured in the same run.
#
#  1. Limits: disk sequential write (dd 1 GiB, conv=fdatasync) and fdatasync latency.
#  2. A release `nagare server` on free ports with a temporary data directory.
#  3. `nagare bench produce` with the idempotent producer, then with transactional producers
#     committing every 1, 10 and 100 records (each to its own topic): records/s, MB/s and
#     committed transactions/s.
#  4. `nagare bench consume` of the 100-records-per-transaction topic with read_uncommitted and
#     read_committed (the same records; markers skipped).
#
# Usage: bash scripts/bench_transactions.sh [output.json (default bench-transactions.json)]
# Environment: RECORDS (the idempotent run and 100 per transaction; default 200000),
#   RECORDS_TXN10 (10 per transaction; default 20000), RECORDS_TXN1 (1 per transaction; default
#   2000), RECORD_SIZE (1024), PARTITIONS (3), BENCH_DIR, NAGARE_BIN (default: build
#   target/release/nagare).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/bench_common.sh
source scripts/lib/bench_common.sh
OUT=${1:-bench-transactions.json}
RECORDS=${RECORDS:-200000}
RECORDS_TXN10=${RECORDS_TXN10:-20000}
RECORDS_TXN1=${RECORDS_TXN1:-2000}
RECORD_SIZE=${RECORD_SIZE:-1024}
PARTITIONS=${PARTITIONS:-3}
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nagare-bench-txn.XXXXXX")
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${NAGARE_BIN:-}" ]; then
  cargo build -q --release --bin nagare
  NAGARE_BIN=target/release/nagare
fi
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== machine limits (load average $(load))"
measure_disk_limits 300

start_bench_server
P=(--partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --acks all)

echo "== idempotent producer: $RECORDS records"
"$NAGARE_BIN" bench produce "${B[@]}" --topic idem "${P[@]}" --idempotence \
  --count "$RECORDS" --json "$WORK/idem.json" >/dev/null
for size in 1 10 100; do
  n=$RECORDS
  [ "$size" = 10 ] && n=$RECORDS_TXN10
  [ "$size" = 1 ] && n=$RECORDS_TXN1
  echo "== transactional producer, $size record(s) per transaction: $n records"
  "$NAGARE_BIN" bench produce "${B[@]}" --topic "txn$size" "${P[@]}" \
    --transaction-size "$size" --count "$n" --json "$WORK/txn$size.json" >/dev/null
done
for iso in read_uncommitted read_committed; do
  echo "== consume txn100 ($RECORDS records) with $iso"
  "$NAGARE_BIN" bench consume "${B[@]}" --topic txn100 --count "$RECORDS" \
    --isolation-level "$iso" --json "$WORK/consume-$iso.json" >/dev/null
done

python3 - "$WORK" "$OUT" "$DISK" "$(load)" <<'PY'
import json, os, subprocess, sys, time
work, out, disk, load = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
rd = lambda n: json.load(open(os.path.join(work, n)))
fsync = rd("fsync.json")
runs = {"idempotent": rd("idem.json"), "txn1": rd("txn1.json"), "txn10": rd("txn10.json"), "txn100": rd("txn100.json")}
cons = {"read_uncommitted": rd("consume-read_uncommitted.json"), "read_committed": rd("consume-read_committed.json")}
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = ""
json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
           "load_average_end": load, "limits": {"disk_fdatasync_mb_per_sec": disk, "fdatasync_latency": fsync},
           "produce": runs, "consume": cons}, open(out, "w"), indent=2)
print()
print("| producer | records/s | MB/s | transactions/s | ack p50 / p99 ms | vs idempotent |")
print("|---|---|---|---|---|---|")
base = runs["idempotent"]["mb_per_sec"]
for name, r in runs.items():
    tps = r.get("transactions_per_sec")
    a = r["ack_latency"]
    print(f"| {name} | {r['records_per_sec']:,.0f} | {r['mb_per_sec']:.1f} | {'-' if tps is None else f'{tps:,.0f}'} | {a['p50_ms']} / {a['p99_ms']} | {100*r['mb_per_sec']/base:.0f}% |")
print()
print("| consumer (txn100 topic) | records/s | MB/s |")
print("|---|---|---|")
for name, c in cons.items():
    print(f"| {name} | {c['records_per_sec']:,.0f} | {c['mb_per_sec']:.1f} |")
print(f"\nlimits: disk {disk:.1f} MB/s (dd conv=fdatasync), fdatasync p50 {fsync['p50_ms']} / p99 {fsync['p99_ms']} ms; load average at the end {load}")
print(f"JSON: {out}")
PY
