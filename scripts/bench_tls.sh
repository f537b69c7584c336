#!/usr/bin/env bash
# Consume over TLS vs PLAINTEXT (issue 14), the same records, the same run.
#
#  1. A CA and a server certificate (openssl CLI, EC P-256), made here.
#  2. `nagare server` with a PLAINTEXT client listener: `nagare bench produce` RECORDS records,
#     then a catch-up consume of them (record bytes go out with sendfile).
#  3. The same data directory served again with an SSL client listener (ssl.client.auth=none):
#     the same consume over TLS (record bytes pread from the segment and encrypted by rustls).
#  Each consume reports MB/s and the server's CPU seconds (utime+stime from /proc) per GB sent.
#
# Usage: bash scripts/bench_tls.sh [output.json (default bench-tls.json)]
# Environment: RECORDS (default 1000000), RECORD_SIZE (1024), PARTITIONS (1), BENCH_DIR,
#   NAGARE_BIN (default: build target/release/nagare).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/bench_common.sh
source scripts/lib/bench_common.sh
OUT=${1:-bench-tls.json}
RECORDS=${RECORDS:-1000000}
RECORD_SIZE=${RECORD_SIZE:-1024}
PARTITIONS=${PARTITIONS:-1}
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nagare-bench-tls.XXXXXX")
SERVER=
stop_server() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  SERVER=
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
if [ -z "${NAGARE_BIN:-}" ]; then
  cargo build -q --release --bin nagare
  NAGARE_BIN=target/release/nagare
fi
load() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$SERVER/stat"; }

echo "== certificates"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 1 -extfile "$WORK/san.ext" -out "$WORK/server.crt" 2>/dev/null
cat "$WORK/server.key" "$WORK/server.crt" >"$WORK/keystore.pem"

# $1: PLAINTEXT or SSL; the data directory is shared, so both serve the same records.
start_server() {
  local name=$1 cport
  PORT=$(free_port)
  cport=$(free_port)
  local extra=()
  if [ "$name" = SSL ]; then
    extra=(--override "listener.security.protocol.map=SSL:SSL,CONTROLLER:PLAINTEXT"
      --override ssl.keystore.type=PEM --override "ssl.keystore.location=$WORK/keystore.pem")
  fi
  : >"$WORK/server.log"
  "$NAGARE_BIN" server --override log.dirs="$WORK/data" \
    --override listeners="$name://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$cport" \
    "${extra[@]}" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
  grep -q "listening on" "$WORK/server.log" || { cat "$WORK/server.log"; exit 1; }
  B=(-b "127.0.0.1:$PORT")
}

# $1: label, $2: security.protocol. The consumer is confluent-kafka-python (librdkafka with
# OpenSSL; `nagare bench` links a librdkafka built without OpenSSL), reading in batches of
# 10,000 and counting bytes only, the same for both protocols.
consume() {
  local label=$1 protocol=$2 before after
  before=$(cpu_seconds)
  python3 - "$WORK/consume-$label.json" "${B[1]}" "$protocol" "$WORK/ca.pem" "$RECORDS" <<'PY'
import json, sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
out, bootstrap, protocol, ca, records = sys.argv[1:]
records = int(records)
conf = {"bootstrap.servers": bootstrap, "group.id": "bench-tls", "enable.auto.commit": False,
        "security.protocol": protocol, "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 10485760, "queued.max.messages.kbytes": 65536}
if protocol == "SSL":
    conf["ssl.ca.location"] = ca
c = Consumer(conf)
md = c.list_topics("tls-bench", timeout=30)
parts = list(md.topics["tls-bench"].partitions)
start = time.perf_counter()
c.assign([TopicPartition("tls-bench", p, OFFSET_BEGINNING) for p in parts])
n = size = 0
while n < records:
    for m in c.consume(10000, 1.0):
        if m.error():
            continue
        n += 1
        size += len(m.value() or b"") + len(m.key() or b"")
secs = time.perf_counter() - start
c.close()
json.dump({"records": n, "bytes": size, "seconds": round(secs, 3),
           "mb_per_sec": round(size / secs / 1e6, 1),
           "records_per_sec": round(n / secs)}, open(out, "w"))
PY
  after=$(cpu_seconds)
  python3 - "$WORK/consume-$label.json" "$before" "$after" <<'PY'
import json, sys
path, before, after = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
d = json.load(open(path))
d["server_cpu_seconds"] = round(after - before, 3)
d["server_cpu_seconds_per_gb"] = round((after - before) / (d["bytes"] / 1e9), 2)
json.dump(d, open(path, "w"))
PY
  echo "$label: $(cat "$WORK/consume-$label.json")"
}

echo "== PLAINTEXT (load average $(load))"
start_server PLAINTEXT
"$NAGARE_BIN" bench produce "${B[@]}" --topic tls-bench --partitions "$PARTITIONS" \
  --record-size "$RECORD_SIZE" --acks all --count "$RECORDS" --json "$WORK/produce.json" >/dev/null
consume plaintext PLAINTEXT
stop_server

echo "== SSL (load average $(load))"
start_server SSL
consume ssl SSL
stop_server

python3 - "$WORK" "$OUT" "$RECORDS" "$RECORD_SIZE" <<'PY'
import json, sys
work, out, records, size = sys.argv[1:]
res = {"records": int(records), "record_size": int(size)}
for label in ("plaintext", "ssl"):
    res[label] = json.load(open(f"{work}/consume-{label}.json"))
json.dump(res, open(out, "w"), indent=2)
p, s = res["plaintext"].get("mb_per_sec"), res["ssl"].get("mb_per_sec")
if p and s:
    print(f"consume over TLS: {s} MB/s vs {p} MB/s plaintext ({100 * s / p:.0f}%)")
print(f"wrote {out}")
PY
