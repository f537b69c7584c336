#!/usr/bin/env bash
# Startup and recovery times (issue 6), on the release binary.
#
#  (a) 1,000 partitions on disk (a topic of 1,000 partitions with some data in each): time from
#      `nagare server` start to the first successful Metadata and Produce, after a clean
#      shutdown (SIGTERM) and after SIGKILL.
#  (b) One topic with a ~5 GB log (LOG_GB, PARTITIONS_B partitions), SIGKILL while
#      `nagare bench produce` is writing, restart, time to the first successful Produce.
#
# The probe is a raw Kafka client (Metadata v1, then Produce v3 of one record with acks=1)
# retried every 5 ms; times are from the fork of `nagare server`. The server's own "logs
# loaded" line (time spent in LogManager::open) is reported too, with the machine's limits:
# disk sequential write (dd conv=fdatasync) and read (dd of the written log, page cache dropped
# if permitted).
#
# Usage: bash scripts/bench-recovery.sh
# Environment: NAGARE_BIN (default: build target/release/nagare), BENCH_DIR (where the data
#   goes; default a temporary directory), PARTITIONS_A (1000), LOG_GB (5), PARTITIONS_B (2),
#   SKIP_A / SKIP_B (set to 1 to skip a scenario).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PARTITIONS_A=${PARTITIONS_A:-1000}
LOG_GB=${LOG_GB:-5}
PARTITIONS_B=${PARTITIONS_B:-2}
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nagare-recovery.XXXXXX")
SERVER=
BG=
cleanup() {
  for p in $BG $SERVER; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${NAGARE_BIN:-}" ]; then
  cargo build -q --release --bin nagare
  NAGARE_BIN=target/release/nagare
fi
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
PORT=$(free_port)
CPORT=$(free_port)
B=(-b "127.0.0.1:$PORT")

cat >"$WORK/probe.py" <<'PY'
# Waits until the broker answers Metadata v1 and then a Produce v3 (acks=1, one record) for
# partition 0 of a topic without error; prints both times in ms since argv[3] (ns epoch).
import socket, struct, sys, time
port, topic, t0 = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
T = [0] * 256
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T[i] = c
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
def varint(v):
    v = (v << 1) ^ (v >> 63)
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80]); v >>= 7
    return out + bytes([v])
def batch():
    value = b"probe"
    rec = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    rec = varint(len(rec)) + rec
    ts = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 0, 0, ts, ts, -1, -1, -1, 1) + rec
    body = struct.pack(">iB", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(body)) + body
def request(sock, api, ver, body, corr):
    hdr = struct.pack(">hhih", api, ver, corr, 5) + b"probe"
    msg = hdr + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    n = struct.unpack(">i", recv(sock, 4))[0]
    return recv(sock, n)
def recv(sock, n):
    b = b""
    while len(b) < n:
        chunk = sock.recv(n - len(b))
        if not chunk:
            raise ConnectionError("closed")
        b += chunk
    return b
def now_ms():
    return (time.time_ns() - t0) / 1e6
meta_ms = None
deadline = time.time() + 600
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if meta_ms is None:
                request(s, 3, 1, struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic, 1)
                meta_ms = now_ms()
            recs = batch()
            body = struct.pack(">hhi", -1, 1, 5000) + struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic
            body += struct.pack(">iii", 1, 0, len(recs)) + recs
            r = request(s, 0, 3, body, 2)
            # correlation, topics count, name, partitions count, index, error code
            pos = 4 + 4
            nlen = struct.unpack(">h", r[pos:pos + 2])[0]
            pos += 2 + nlen + 4 + 4
            err = struct.unpack(">h", r[pos:pos + 2])[0]
            if err == 0:
                print(f"{meta_ms:.0f} {now_ms():.0f}")
                sys.exit(0)
    except (OSError, ConnectionError, struct.error):
        pass
    time.sleep(0.005)
print("timeout")
sys.exit(1)
PY

start_server() {
  T0=$(date +%s%N)
  "$NAGARE_BIN" server --override log.dirs="$WORK/data" \
    --override listeners="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT" \
    --override num.partitions=1 "$@" >>"$WORK/server.log" 2>&1 &
  SERVER=$!
}
# Prints "<metadata ms> <produce ms> <logs loaded ms>" for the server started at T0.
ready() {
  local topic=$1 times loaded
  times=$(python3 "$WORK/probe.py" "$PORT" "$topic" "$T0")
  loaded=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep "logs loaded" | tail -1 | grep -o 'elapsed_ms=[0-9]*' | cut -d= -f2)
  echo "$times ${loaded:-?}"
}
stop_clean() { kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
stop_kill() { kill -9 "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
wait_listening() {
  for _ in $(seq 600); do
    [ "$(grep -c "listening on" "$WORK/server.log")" -ge "$1" ] && return 0
    sleep 0.1
  done
  cat "$WORK/server.log"; exit 1
}
report() { # name, "meta produce loaded"
  read -r meta produce loaded <<<"$2"
  printf '%-52s Metadata %6s ms, Produce %6s ms (logs loaded in %s ms)\n' "$1" "$meta" "$produce" "$loaded"
}

echo "== $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 conv=fdatasync status=none
end=$(date +%s.%N)
echo "disk sequential write (dd bs=1M count=1024 conv=fdatasync): $(python3 -c "print(f'{1024*1048576/1e6/($end-$start):.0f}')") MB/s"
if sync && echo 1 2>/dev/null >/proc/sys/vm/drop_caches; then DROPPED="page cache dropped"; else DROPPED="page cache warm"; fi
start=$(date +%s.%N)
dd if="$WORK/dd" of=/dev/null bs=1M status=none
end=$(date +%s.%N)
echo "disk sequential read (dd bs=1M, $DROPPED): $(python3 -c "print(f'{1024*1048576/1e6/($end-$start):.0f}')") MB/s"
rm -f "$WORK/dd"

if [ "${SKIP_A:-}" != 1 ]; then
  echo "== (a) $PARTITIONS_A partitions"
  start_server
  wait_listening 1
  "$NAGARE_BIN" topic "${B[@]}" create many --partitions "$PARTITIONS_A" >/dev/null
  "$NAGARE_BIN" bench produce "${B[@]}" --topic many --record-size 100 \
    --count $((PARTITIONS_A * 100)) --acks 1 >/dev/null 2>&1
  stop_clean
  echo "data: $(du -sh "$WORK/data" | cut -f1) in $(find "$WORK/data" -name '*.log' | wc -l) segments"
  start_server
  report "restart after a clean shutdown" "$(ready many)"
  "$NAGARE_BIN" bench produce "${B[@]}" --topic many --record-size 100 \
    --count $((PARTITIONS_A * 100)) --acks 1 >/dev/null 2>&1
  stop_kill
  start_server
  report "restart after SIGKILL (right after writes)" "$(ready many)"
  stop_clean
  rm -rf "$WORK/data"
  : >"$WORK/server.log"
fi

if [ "${SKIP_B:-}" != 1 ]; then
  echo "== (b) ${LOG_GB} GB log in $PARTITIONS_B partition(s), SIGKILL during writes"
  start_server
  wait_listening 1
  "$NAGARE_BIN" topic "${B[@]}" create big --partitions "$PARTITIONS_B" >/dev/null
  # Unbounded writes; the server is killed once the log holds LOG_GB.
  "$NAGARE_BIN" bench produce "${B[@]}" --topic big --record-size 1024 \
    --count $((LOG_GB * 2000000)) --acks 1 --producers 2 >"$WORK/produce.out" 2>&1 &
  BG=$!
  start_w=$(date +%s.%N)
  while [ "$(du -sb "$WORK/data" | cut -f1)" -lt $((LOG_GB * 1000000000)) ]; do
    kill -0 "$BG" 2>/dev/null || { cat "$WORK/produce.out"; exit 1; }
    sleep 0.2
  done
  end_w=$(date +%s.%N)
  stop_kill
  kill -9 "$BG" 2>/dev/null || true; wait "$BG" 2>/dev/null || true; BG=
  echo "wrote $(du -sh "$WORK/data" | cut -f1) in $(python3 -c "print(f'{$end_w-$start_w:.0f}')") s; recovery points at kill: $(tr '\n' ' ' <"$WORK/data/recovery-point-offset-checkpoint" 2>/dev/null | cut -c1-120 || echo none)"
  : >"$WORK/server.log"
  start_server
  report "restart after SIGKILL during writes (warm cache)" "$(ready big)"
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep -E "truncated|rebuilding" | cut -c1-200 | head -5 || true
  stop_kill
  if sync && echo 1 2>/dev/null >/proc/sys/vm/drop_caches; then
    : >"$WORK/server.log"
    start_server
    report "restart after SIGKILL (page cache dropped)" "$(ready big)"
  fi
  stop_clean
  : >"$WORK/server.log"
  start_server
  report "restart after a clean shutdown (warm cache)" "$(ready big)"
  stop_clean
  if sync && echo 1 2>/dev/null >/proc/sys/vm/drop_caches; then
    : >"$WORK/server.log"
    start_server
    report "restart after a clean shutdown (page cache dropped)" "$(ready big)"
    stop_clean
  fi
  echo "index files: $(find "$WORK/data" -name '*index' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f MB", s/1e6}') for $(find "$WORK/data" -name '*.log' | wc -l) segments"
fi
