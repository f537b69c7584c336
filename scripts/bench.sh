#!/usr/bin/env bash
# Nagare's figures beside the machine's limits, measured in the same run (issue 6).
#
#  1. Limits: disk sequential write (dd 1 GiB, conv=fdatasync), fdatasync latency after 4 KiB
#     appends, loopback TCP bandwidth (`nagare bench loopback`, one stream).
#  2. A release `nagare server` on free ports with a temporary data directory, then
#     `nagare bench produce` (acks=all, fsync before ack), `nagare bench consume` (catch-up read
#     from the beginning, with librdkafka and with the raw Fetch client) and `nagare bench e2e`
#     (steady rate, acknowledgement and end-to-end latency).
#  3. Each figure as a ratio to its limit, and all of it as one JSON file.
#
# Usage: bash scripts/bench.sh [output.json (default bench-results.json)]
# Environment: RECORDS (default 2000000), RECORD_SIZE (1024), PARTITIONS (1),
#   E2E_MBPS (20), E2E_SECS (30), BENCH_DIR (where data goes; default a new temporary
#   directory), NAGARE_BIN (a built binary; default: build target/release/nagare).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/bench_common.sh
source scripts/lib/bench_common.sh
OUT=${1:-bench-results.json}
RECORDS=${RECORDS:-2000000}
RECORD_SIZE=${RECORD_SIZE:-1024}
PARTITIONS=${PARTITIONS:-1}
E2E_MBPS=${E2E_MBPS:-20}
E2E_SECS=${E2E_SECS:-30}
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nagare-bench.XXXXXX")
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
LOAD_START=$(load)

echo "== machine limits (load average $LOAD_START)"
measure_disk_limits 500
"$NAGARE_BIN" bench loopback --repeat 3 --json "$WORK/loopback.json" >/dev/null

echo "== nagare server"
start_bench_server

echo "== produce: $RECORDS x $RECORD_SIZE B, acks=all, $PARTITIONS partition(s), one producer"
"$NAGARE_BIN" bench produce "${B[@]}" --topic bench --partitions "$PARTITIONS" \
  --record-size "$RECORD_SIZE" --count "$RECORDS" --acks all --json "$WORK/produce.json" >/dev/null
LOAD_PRODUCE=$(load)
echo "== consume (catch-up from the beginning, librdkafka)"
"$NAGARE_BIN" bench consume "${B[@]}" --topic bench --json "$WORK/consume.json" >/dev/null
echo "== consume (catch-up from the beginning, raw fetch client)"
"$NAGARE_BIN" bench consume "${B[@]}" --topic bench --client raw --json "$WORK/consume-raw.json" >/dev/null
LOAD_CONSUME=$(load)
echo "== e2e: $E2E_MBPS MB/s for $E2E_SECS s, acks=all"
"$NAGARE_BIN" bench e2e "${B[@]}" --topic e2e --partitions "$PARTITIONS" --record-size "$RECORD_SIZE" \
  --mb-per-sec "$E2E_MBPS" --duration "$E2E_SECS" --acks all --json "$WORK/e2e.json" >/dev/null
LOAD_END=$(load)

python3 - "$WORK" "$OUT" "$DISK" "$LOAD_START" "$LOAD_PRODUCE" "$LOAD_CONSUME" "$LOAD_END" <<'PY'
import json, os, subprocess, sys, time
work, out, disk = sys.argv[1], sys.argv[2], float(sys.argv[3])
rd = lambda n: json.load(open(os.path.join(work, n)))
fsync, loop = rd("fsync.json"), rd("loopback.json")
produce, consume, raw, e2e = rd("produce.json"), rd("consume.json"), rd("consume-raw.json"), rd("e2e.json")
loopback = loop["mb_per_sec"]
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = ""
result = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": commit,
    "load_average": {"start": sys.argv[4], "after_produce": sys.argv[5], "after_consume": sys.argv[6], "end": sys.argv[7]},
    "limits": {"disk_fdatasync_mb_per_sec": disk, "fdatasync_latency": fsync, "loopback_mb_per_sec": loopback},
    "produce": produce, "consume": consume, "consume_raw": raw, "e2e": e2e,
    "ratios": {
        "produce_to_disk": round(produce["mb_per_sec"] / disk, 3),
        "consume_to_loopback": round(consume["mb_per_sec"] / loopback, 3),
        "consume_raw_to_loopback": round(raw["mb_per_sec"] / loopback, 3),
    },
}
json.dump(result, open(out, "w"), indent=2)
ack, e = produce["ack_latency"], e2e["e2e_latency"]
row = lambda what, fig, lim, ratio, target: print(f"| {what} | {fig} | {lim} | {ratio} | {target} |")
print()
print("| what | figure | limit (same run) | ratio | target |")
print("|---|---|---|---|---|")
row(f"produce {produce['records']:,} x {produce['config']['record_size']} B, acks=all",
    f"{produce['mb_per_sec']:.1f} MB/s ({produce['records_per_sec']:,.0f} rec/s); ack p50 {ack['p50_ms']} / p99 {ack['p99_ms']} / p99.9 {ack['p99_9_ms']} / max {ack['max_ms']} ms",
    f"disk {disk:.1f} MB/s", f"{100*produce['mb_per_sec']/disk:.0f}%", ">= 80%")
row("consume catch-up, librdkafka", f"{consume['mb_per_sec']:.1f} MB/s ({consume['records_per_sec']:,.0f} rec/s)",
    f"loopback {loopback:.0f} MB/s", f"{100*consume['mb_per_sec']/loopback:.0f}%", ">= 60%")
row("consume catch-up, raw fetch", f"{raw['mb_per_sec']:.1f} MB/s ({raw['records_per_sec']:,.0f} rec/s)",
    f"loopback {loopback:.0f} MB/s", f"{100*raw['mb_per_sec']/loopback:.0f}%", ">= 60%")
row(f"e2e at {e2e['produce']['mb_per_sec']:.1f} MB/s, acks=all",
    f"p50 {e['p50_ms']} / p99 {e['p99_ms']} / p99.9 {e['p99_9_ms']} / max {e['max_ms']} ms (ack p99 {e2e['ack_latency']['p99_ms']} ms)",
    f"fdatasync p50 {fsync['p50_ms']} / p99 {fsync['p99_ms']} ms", "-", "p99 <= 5 ms")
print(f"\nload average: start {sys.argv[4]}, after produce {sys.argv[5]}, after consume {sys.argv[6]}, end {sys.argv[7]}")
print(f"JSON: {out}")
PY
