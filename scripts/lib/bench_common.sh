# Shared by scripts/bench*.sh (sourced): the machine's limits measured beside the figures, and a
# release `nagare server` on free ports. Callers set WORK (a scratch directory) and NAGARE_BIN.

# Disk sequential write with fdatasync (dd 1 GiB) into DISK (MB/s), and fdatasync latency after
# 4 KiB appends ($1 samples) into $WORK/fsync.json; both printed.
measure_disk_limits() {
  local samples=$1 start end
  start=$(date +%s.%N)
  dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 conv=fdatasync status=none
  end=$(date +%s.%N)
  rm -f "$WORK/dd"
  DISK=$(python3 -c "print(f'{1024*1048576/1e6/($end-$start):.1f}')")
  echo "disk sequential write (dd bs=1M count=1024 conv=fdatasync): $DISK MB/s"
  python3 - "$WORK" "$samples" >"$WORK/fsync.json" <<'PY'
import json, os, sys, time
p = os.path.join(sys.argv[1], "f")
fd = os.open(p, os.O_WRONLY | os.O_CREAT)
lat = []
for i in range(int(sys.argv[2])):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
os.close(fd); os.unlink(p)
lat.sort()
q = lambda f: round(lat[min(len(lat) - 1, int(len(lat) * f))] * 1e3, 3)
print(json.dumps({"p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(lat[-1] * 1e3, 3)}))
PY
  echo "fdatasync latency after 4 KiB appends ($samples samples): $(cat "$WORK/fsync.json")"
}

free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

# Starts `$NAGARE_BIN server` with data in $WORK/data on free ports and waits until it listens;
# sets SERVER (its pid, for the caller's cleanup), PORT and B (the `-b` option of the CLI).
start_bench_server() {
  local cport
  PORT=$(free_port)
  cport=$(free_port)
  "$NAGARE_BIN" server --override log.dirs="$WORK/data" \
    --override listeners="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$cport" \
    >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
  grep -q "listening on" "$WORK/server.log" || { cat "$WORK/server.log"; exit 1; }
  B=(-b "127.0.0.1:$PORT")
}
