#!/usr/bin/env python3
"""Regenerates the fuzz seed corpora in fuzz/seeds/ from real client traffic.

Starts a `nagare` server whose advertised listener is a recording TCP proxy, drives it with
librdkafka (confluent-kafka) and kafka-python (admin, every compression codec, a consumer
group, a transaction), then writes:

* request/      each client connection's bytes as sent (size-prefixed frames, <= 8 per seed),
* record_batch/ the record batches of the captured Produce requests (a flags byte, 0, first),
* metadata_records/   the records of the __cluster_metadata log (2-byte length each),
* coordinator_records/ the key/value records of __consumer_offsets and __transaction_state.

Usage: NAGARE_BIN=target/release/nagare python3 scripts/fuzz_seeds.py
"""
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """Forwards 127.0.0.1:listen -> 127.0.0.1:target, recording what each client sends."""

    def __init__(self, listen: int, target: int):
        self.listen, self.target = listen, target
        self.streams: list[bytearray] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen))
        self.sock.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            rec = bytearray()
            with self.lock:
                self.streams.append(rec)
            threading.Thread(target=self.pipe, args=(client, upstream, rec), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def pipe(src: socket.socket, dst: socket.socket, rec: bytearray | None) -> None:
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if rec is not None:
                    rec.extend(b)
                dst.sendall(b)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def frames(stream: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 4 <= len(stream):
        (n,) = struct.unpack(">i", stream[pos:pos + 4])
        if n < 0 or pos + 4 + n > len(stream):
            break
        out.append(stream[pos:pos + 4 + n])
        pos += 4 + n
    return out


# CRC-32C (Castagnoli), to recognise record batches inside captured Produce requests.
_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _TABLE.append(c)


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def batches_in(buf: bytes) -> list[bytes]:
    """Every v2 record batch (valid length and CRC) found anywhere in `buf`."""
    out, i = [], 0
    while i + 61 <= len(buf):
        if buf[i + 16] == 2:
            (length,) = struct.unpack(">i", buf[i + 8:i + 12])
            end = i + 12 + length
            if 49 <= length and end <= len(buf):
                (crc,) = struct.unpack(">I", buf[i + 17:i + 21])
                if crc32c(buf[i + 21:end]) == crc:
                    out.append(buf[i:end])
                    i = end
                    continue
        i += 1
    return out


def uvarint(b: bytes, pos: int) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        x = b[pos]
        pos += 1
        v |= (x & 0x7F) << shift
        if not x & 0x80:
            return v, pos
        shift += 7


def varint(b: bytes, pos: int) -> tuple[int, int]:
    u, pos = uvarint(b, pos)
    return (u >> 1) ^ -(u & 1), pos


def records_of(batch: bytes) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of each record of an uncompressed, non-control batch."""
    (attrs,) = struct.unpack(">h", batch[21:23])
    if attrs & 0x07 or attrs & 0x20:
        return []
    (count,) = struct.unpack(">i", batch[57:61])
    out, pos = [], 61
    for _ in range(count):
        length, pos = varint(batch, pos)
        end = pos + length
        p = pos + 1
        _, p = varint(batch, p)  # timestamp delta
        _, p = varint(batch, p)  # offset delta
        klen, p = varint(batch, p)
        key = None if klen < 0 else batch[p:p + klen]
        p += max(klen, 0)
        vlen, p = varint(batch, p)
        value = None if vlen < 0 else batch[p:p + vlen]
        out.append((key, value))
        pos = end
    return out


def log_records(partition_dir: Path) -> list[tuple[bytes | None, bytes | None]]:
    out = []
    for seg in sorted(partition_dir.glob("*.log")):
        for b in batches_in(seg.read_bytes()):
            out.extend(records_of(b))
    return out


def write_seed(target: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def drive(bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("seeds", 2, 1), NewTopic("seeds-compact", 1, 1, config={
            "cleanup.policy": "compact"})]).values():
        f.result()
    admin.describe_configs([ConfigResource("topic", "seeds")])[ConfigResource("topic", "seeds")].result()
    admin.create_partitions([NewPartitions("seeds", 3)])["seeds"].result()
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                      "linger.ms": 5, "enable.idempotence": codec != "none"})
        for i in range(20):
            p.produce("seeds", key=f"k{i % 4}".encode(), value=(f"{codec}-{i}-" * 8).encode(),
                      headers=[("h", b"v")] if i % 2 else None)
            p.produce("seeds-compact", key=f"k{i % 4}".encode(), value=f"v{i}".encode())
        p.flush(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-group",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["seeds"])
    got, deadline = 0, time.time() + 20
    while got < 50 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.close()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-848", "group.protocol": "consumer",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["seeds"])
    deadline = time.time() + 10
    while time.time() < deadline:
        if c.poll(0.5) is not None:
            break
    c.close()
    tp = Producer({"bootstrap.servers": bootstrap, "transactional.id": "seed-txn"})
    tp.init_transactions(30)
    tp.begin_transaction()
    tp.produce("seeds", key=b"t", value=b"in a transaction")
    tp.commit_transaction(30)
    tp.begin_transaction()
    tp.produce("seeds", key=b"t", value=b"aborted")
    tp.abort_transaction(30)
    admin.list_consumer_groups().result()
    admin.describe_consumer_groups(["seed-group"])["seed-group"].result()
    admin.describe_cluster().result()
    admin.list_topics(timeout=10)
    for f in admin.delete_topics(["seeds-compact"]).values():
        f.result()

    # kafka-python speaks older API versions.
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic as KNewTopic
    ka = KafkaAdminClient(bootstrap_servers=bootstrap)
    ka.create_topics([KNewTopic("seeds-kp", 1, 1)])
    ka.list_topics()
    kp = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    for i in range(10):
        kp.send("seeds-kp", key=b"k", value=f"kp-{i}".encode())
    kp.flush()
    kp.close()
    kc = KafkaConsumer("seeds-kp", bootstrap_servers=bootstrap, group_id="seed-kp",
                       auto_offset_reset="earliest", consumer_timeout_ms=3000)
    for _ in kc:
        pass
    kc.commit()
    kc.close()
    ka.delete_topics(["seeds-kp"])
    ka.close()


def main() -> int:
    binary = Path(os.environ.get("NAGARE_BIN", ROOT / "target" / "release" / "nagare"))
    work = Path(tempfile.mkdtemp(prefix="nagare-seeds-"))
    port, cport, proxy_port = free_port(), free_port(), free_port()
    props = {
        "node.id": "1",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}",
        "log.dirs": str(work / "data"),
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
    }
    config = work / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    cid = subprocess.run([str(binary), "storage", "random-uuid"], capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run([str(binary), "storage", "format", "-t", cid, "-c", str(config)], check=True,
                   capture_output=True)
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([str(binary), "server", "-c", str(config)], stdout=log,
                              stderr=subprocess.STDOUT)
    proxy = Proxy(proxy_port, port)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        try:
            drive(f"127.0.0.1:{proxy_port}")
        except Exception as e:  # a partial capture still makes seeds; say what failed
            print(f"client traffic stopped early: {e!r}", file=sys.stderr)
        time.sleep(1)
    finally:
        server.terminate()
        server.wait(30)
    for t in ["request", "record_batch", "metadata_records", "coordinator_records"]:
        shutil.rmtree(SEEDS / t, ignore_errors=True)
    produce_batches = []
    with proxy.lock:
        streams = [bytes(s) for s in proxy.streams]
    for stream in streams:
        fs = frames(stream)
        for i in range(0, len(fs), 8):
            write_seed("request", b"".join(fs[i:i + 8]))
        for f in fs:
            (api_key,) = struct.unpack(">h", f[4:6])
            if api_key == 0:
                produce_batches.extend(batches_in(f))
    # Also each request alone: a single frame reaches its API's decoder first thing.
    for stream in streams:
        for f in frames(stream):
            write_seed("request", f)
    for b in produce_batches:
        write_seed("record_batch", b"\x00" + b)
    data = work / "data"
    meta = log_records(data / "__cluster_metadata-0")
    for i in range(0, len(meta), 16):
        write_seed("metadata_records", b"".join(
            struct.pack(">H", len(v)) + v for _, v in meta[i:i + 16] if v is not None))
    for flag, topic in [(0, "__consumer_offsets"), (1, "__transaction_state")]:
        recs = []
        for d in data.glob(f"{topic}-*"):
            recs.extend(log_records(d))
        for i in range(0, len(recs), 4):
            out = bytearray([flag])
            for k, v in recs[i:i + 4]:
                k = k or b""
                out += struct.pack(">H", len(k)) + k
                out += struct.pack(">H", 0xFFFF) if v is None else struct.pack(">H", len(v)) + v
            write_seed("coordinator_records", bytes(out))
    for t in ["request", "record_batch", "metadata_records", "coordinator_records"]:
        n = len(list((SEEDS / t).glob("*")))
        print(f"{t}: {n} seeds")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
