#!/usr/bin/env bash
# The broker's own CPU time (utime + stime from /proc/PID/stat) and the throughput for the same
# work with two binaries, alternating: a fresh single-node server per run, `bench produce` of
# RECORDS x 1 KiB (acks=all), then a catch-up `bench consume` with librdkafka and with the raw
# Fetch client, the server's CPU read between the steps. CPU per byte is much less sensitive to
# a busy machine than throughput, so it tells a real regression from noise.
#
# Usage: BEFORE=/path/to/old/nagare AFTER=/path/to/new/nagare bash scripts/bench_server_cpu_ab.sh
# Environment: ROUNDS (default 2), RECORDS (default 2000000); BEFORE_ARGS / AFTER_ARGS add
# server arguments to one side, e.g. the same binary with and without metrics:
#   BEFORE=target/release/nagare AFTER=target/release/nagare \
#   AFTER_ARGS="--override metrics.enabled=false" bash scripts/bench_server_cpu_ab.sh
set -euo pipefail
: "${BEFORE:?set BEFORE to the old binary}" "${AFTER:?set AFTER to the new binary}"
ROUNDS=${ROUNDS:-2}
RECORDS=${RECORDS:-2000000}
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
mb() { python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['mb_per_sec']))" "$1"; }
for round in $(seq "$ROUNDS"); do
  for which in before after; do
    if [ "$which" = before ]; then BIN=$BEFORE; ARGS=${BEFORE_ARGS:-}; else BIN=$AFTER; ARGS=${AFTER_ARGS:-}; fi
    W=$(mktemp -d "${TMPDIR:-/tmp}/nagare-cpu-ab.XXXXXX")
    P=$((20000 + RANDOM % 5000)); C=$((P + 1))
    # shellcheck disable=SC2086 # ARGS is a list of words
    "$BIN" server $ARGS --override log.dirs="$W/data" \
      --override listeners="PLAINTEXT://127.0.0.1:$P,CONTROLLER://127.0.0.1:$C" >"$W/server.log" 2>&1 &
    S=$!
    for _ in $(seq 100); do grep -q "listening on" "$W/server.log" && break; sleep 0.1; done
    c0=$(cpu $S)
    "$BIN" bench produce -b "127.0.0.1:$P" --topic bench --count "$RECORDS" --record-size 1024 \
      --json "$W/p.json" >/dev/null 2>&1
    c1=$(cpu $S)
    "$BIN" bench consume -b "127.0.0.1:$P" --topic bench --json "$W/c.json" >/dev/null 2>&1
    c2=$(cpu $S)
    "$BIN" bench consume -b "127.0.0.1:$P" --topic bench --client raw --json "$W/r.json" >/dev/null 2>&1
    c3=$(cpu $S)
    echo "round $round $which: produce $(mb "$W/p.json") MB/s cpu $(((c1 - c0) * 1000 / HZ)) ms" \
      "| rdkafka consume $(mb "$W/c.json") MB/s cpu $(((c2 - c1) * 1000 / HZ)) ms" \
      "| raw consume $(mb "$W/r.json") MB/s cpu $(((c3 - c2) * 1000 / HZ)) ms" \
      "| load $(cut -d' ' -f1 /proc/loadavg)"
    kill $S; wait $S 2>/dev/null || true
    rm -rf "$W"
  done
done
