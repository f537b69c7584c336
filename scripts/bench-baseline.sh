#!/usr/bin/env bash
# Baseline figures for BENCHMARKS.md: the machine's limits and Nagare's produce/consume
# throughput, measured in the same run. The full harness (`nagare bench`) is issue 6.
#
# Usage: bash scripts/bench-baseline.sh [records (default 500000)] [record bytes (default 1024)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-500000}
SIZE=${2:-1024}
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && { kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; }; rm -rf "$WORK"' EXIT
command -v kcat >/dev/null || { echo "needs kcat (apt-get install kcat)"; exit 1; }
cargo build -q --release --bin nagare

mbps() { python3 -c "import sys; print(f'{$1/1e6/$2:.1f}')"; }

echo "== machine limits"
start=$(date +%s.%N)
dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 conv=fdatasync status=none
end=$(date +%s.%N)
DISK=$(python3 -c "print(f'{1024*1048576/1e6/($end-$start):.1f}')")
echo "disk sequential write (dd 1 GiB, conv=fdatasync): $DISK MB/s"
rm -f "$WORK/dd"
FSYNC=$(python3 - "$WORK" <<'PY'
import os, sys, time
p = os.path.join(sys.argv[1], "f")
fd = os.open(p, os.O_WRONLY | os.O_CREAT)
lat = []
for i in range(200):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
lat.sort()
print(f"{lat[len(lat)//2]*1e3:.2f} ms p50, {lat[int(len(lat)*0.99)]*1e3:.2f} ms p99")
PY
)
echo "fdatasync latency (4 KiB appends): $FSYNC"
LOOP=$(python3 - <<'PY'
import socket, threading, time
N = 4 << 30
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
def sink():
    c, _ = srv.accept(); buf = bytearray(1 << 20); got = 0
    while got < N:
        n = c.recv_into(buf)
        if not n: break
        got += n
t = threading.Thread(target=sink); t.start()
s = socket.create_connection(("127.0.0.1", port)); chunk = b"\0" * (1 << 20)
t0 = time.perf_counter()
for _ in range(N >> 20): s.sendall(chunk)
s.close(); t.join()
print(f"{N/1e6/(time.perf_counter()-t0):.0f}")
PY
)
echo "loopback TCP (one Python stream, 4 GiB): $LOOP MB/s"

echo "== nagare ($N records of $SIZE bytes, acks=all, one partition, kcat/librdkafka client)"
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
target/release/nagare server --override log.dirs="$WORK/data" \
  --override listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:0 >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
python3 -c "
import sys
line = b'x' * ($SIZE - 1) + b'\n'
with open('$WORK/in', 'wb') as f:
    for _ in range($N): f.write(line)
"
BYTES=$((N * SIZE))
start=$(date +%s.%N)
kcat -P -b 127.0.0.1:$PORT -t bench -X acks=all -X linger.ms=5 -X batch.size=1000000 \
  -X queue.buffering.max.messages=1000000 -l "$WORK/in"
end=$(date +%s.%N)
P=$(python3 -c "print(f'{$BYTES/1e6/($end-$start):.1f}')")
echo "produce: $P MB/s ($(python3 -c "print(f'{$N/($end-$start):.0f}')") records/s) = $(python3 -c "print(f'{100*$P/$DISK:.0f}')")% of disk"
sync; start=$(date +%s.%N)
GOT=$(kcat -C -b 127.0.0.1:$PORT -t bench -o beginning -e -q -X fetch.max.bytes=52428800 -X receive.message.max.bytes=60000000 | wc -l)
end=$(date +%s.%N)
C=$(python3 -c "print(f'{$BYTES/1e6/($end-$start):.1f}')")
echo "consume (catch-up read of $GOT records): $C MB/s = $(python3 -c "print(f'{100*$C/$LOOP:.0f}')")% of loopback"
