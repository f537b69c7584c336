#!/usr/bin/env bash
# Produce and consume over SASL_SSL vs PLAINTEXT (issue 14), one server, the same run.
#
#  1. A CA and a server certificate (openssl CLI, EC P-256), made here.
#  2. One `nagare server` with two client listeners: PLAINTEXT and SASL_SSL (SCRAM-SHA-512,
#     the user created by `storage format --add-scram`; TLS 1.3, ssl.client.auth=none).
#  3. For each listener in turn: a produce of RECORDS records (acks=all) into its own topic,
#     then a catch-up consume of them, both with confluent-kafka-python (librdkafka with
#     OpenSSL; `nagare bench` links a librdkafka built without it).
#  Each phase reports MB/s and the server's CPU seconds (utime+stime from /proc) per GB.
#
# Usage: bash scripts/bench_sasl_ssl.sh [output.json (default bench-sasl-ssl.json)]
# Environment: RECORDS (default 1000000), RECORD_SIZE (1024), PARTITIONS (1), BENCH_DIR,
#   NAGARE_BIN (default: build target/release/nagare).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/bench_common.sh
source scripts/lib/bench_common.sh
OUT=${1:-bench-sasl-ssl.json}
RECORDS=${RECORDS:-1000000}
RECORD_SIZE=${RECORD_SIZE:-1024}
PARTITIONS=${PARTITIONS:-1}
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/nagare-bench-sasl.XXXXXX")
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
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$SERVER/stat"; }

echo "== machine limits (same run)"
measure_disk_limits 200
"$NAGARE_BIN" bench loopback --repeat 3 --json "$WORK/loopback.json" >/dev/null
echo "loopback TCP (nagare bench loopback, one stream): $(cat "$WORK/loopback.json")"
echo "== certificates"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 1 -extfile "$WORK/san.ext" -out "$WORK/server.crt" 2>/dev/null
cat "$WORK/server.key" "$WORK/server.crt" >"$WORK/keystore.pem"

PLAIN_PORT=$(free_port)
SASL_PORT=$(free_port)
CPORT=$(free_port)
cat >"$WORK/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PLAIN_PORT,SASL_SSL://127.0.0.1:$SASL_PORT,CONTROLLER://127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
log.dirs=$WORK/data
offsets.topic.replication.factor=1
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$WORK/keystore.pem
EOF
"$NAGARE_BIN" storage format -t "$("$NAGARE_BIN" storage random-uuid)" -c "$WORK/server.properties" \
  --add-scram 'SCRAM-SHA-512=[name=bench,password=bench-secret]' >/dev/null
"$NAGARE_BIN" server --config "$WORK/server.properties" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
grep -q "listening on" "$WORK/server.log" || { cat "$WORK/server.log"; exit 1; }

# $1: label, $2: produce|consume, $3: port, $4: security.protocol. Counts bytes only, the same
# for both protocols; the server's CPU time over the phase goes into the result.
phase() {
  local label=$1 what=$2 port=$3 protocol=$4 before after
  before=$(cpu_seconds)
  python3 - "$WORK/$what-$label.json" "127.0.0.1:$port" "$protocol" "$WORK/ca.pem" "$RECORDS" \
    "$RECORD_SIZE" "$PARTITIONS" "$what" "bench-$label" <<'PY'
import json, os, sys, time
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic
out, bootstrap, protocol, ca, records, size, partitions, what, topic = sys.argv[1:]
records, size, partitions = int(records), int(size), int(partitions)
conf = {"bootstrap.servers": bootstrap, "security.protocol": protocol}
if protocol == "SASL_SSL":
    conf.update({"ssl.ca.location": ca, "sasl.mechanism": "SCRAM-SHA-512",
                 "sasl.username": "bench", "sasl.password": "bench-secret"})
n = total = 0
if what == "produce":
    admin = AdminClient(conf)  # kept alive until the creation is answered
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    p = Producer({**conf, "acks": "all", "linger.ms": 5, "batch.size": 1048576,
                  "queue.buffering.max.kbytes": 1048576})
    value = os.urandom(size)
    start = time.perf_counter()
    while n < records:
        try:
            p.produce(topic, value, partition=n % partitions)
            n += 1
            total += size
        except BufferError:
            p.poll(0.01)
    p.flush(120)
else:
    c = Consumer({**conf, "group.id": "bench-sasl", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760,
                  "queued.max.messages.kbytes": 65536})
    start = time.perf_counter()
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    while n < records:
        for m in c.consume(10000, 1.0):
            if m.error():
                continue
            n += 1
            total += len(m.value() or b"") + len(m.key() or b"")
    c.close()
secs = time.perf_counter() - start
json.dump({"records": n, "bytes": total, "seconds": round(secs, 3),
           "mb_per_sec": round(total / secs / 1e6, 1),
           "records_per_sec": round(n / secs)}, open(out, "w"))
PY
  after=$(cpu_seconds)
  python3 - "$WORK/$what-$label.json" "$before" "$after" <<'PY'
import json, sys
path, before, after = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
d = json.load(open(path))
d["server_cpu_seconds"] = round(after - before, 3)
d["server_cpu_seconds_per_gb"] = round((after - before) / (d["bytes"] / 1e9), 2)
json.dump(d, open(path, "w"))
PY
  echo "$what $label: $(cat "$WORK/$what-$label.json")"
}

for spec in "plaintext $PLAIN_PORT PLAINTEXT" "sasl_ssl $SASL_PORT SASL_SSL"; do
  read -r label port protocol <<<"$spec"
  echo "== $protocol (load average $(load))"
  phase "$label" produce "$port" "$protocol"
  phase "$label" consume "$port" "$protocol"
done

python3 - "$WORK" "$OUT" "$RECORDS" "$RECORD_SIZE" <<'PY'
import json, sys
work, out, records, size = sys.argv[1:]
res = {"records": int(records), "record_size": int(size)}
for label in ("plaintext", "sasl_ssl"):
    res[label] = {w: json.load(open(f"{work}/{w}-{label}.json")) for w in ("produce", "consume")}
json.dump(res, open(out, "w"), indent=2)
for w in ("produce", "consume"):
    p, s = res["plaintext"][w]["mb_per_sec"], res["sasl_ssl"][w]["mb_per_sec"]
    print(f"{w} over SASL_SSL: {s} MB/s vs {p} MB/s plaintext ({100 * s / p:.0f}%), "
          f"server CPU s/GB {res['sasl_ssl'][w]['server_cpu_seconds_per_gb']} vs "
          f"{res['plaintext'][w]['server_cpu_seconds_per_gb']}")
print(f"wrote {out}")
PY
