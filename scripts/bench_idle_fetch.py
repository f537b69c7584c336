#!/usr/bin/env python3
"""Cost of idle delayed fetches per produce (issue 12: the purgatory keyed by partition).

Starts one combined `nagare server` (broker + controller) on free ports with a temporary data
directory, creates a topic `idle` (IDLE_PARTITIONS partitions) and a topic `hot` (1 partition),
then parks `--idle` Fetch requests (raw Fetch v4, `min_bytes=1`, `max_wait_ms=120000`, each on
one `idle` partition at its log end), one per connection (a connection's deferred replies are
awaited in order, so only its first parked fetch is live). It then sends
`--produces` Produce requests (raw Produce v3, `acks=1`, one 100-byte record each, one at a
time) to `hot` and reports the broker's CPU time (utime + stime of the process, from
/proc/PID/stat) per produce, with and without the parked fetches, in the same run.

With one global "something was appended" signal every produce woke every parked fetch, which
re-read all its partitions; with the purgatory keyed by partition a produce to `hot` wakes
nobody, so the per-produce CPU should not depend on the idle fetches.

Usage: python3 scripts/bench_idle_fetch.py [--bin target/debug/nagare] [--idle 1000]
       [--produces 2000] [--json out.json]
"""

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

IDLE_PARTITIONS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def header(api_key, version, corr):
    return struct.pack(">hhi", api_key, version, corr) + kstr("bench-idle-fetch")


def frame(body):
    return struct.pack(">i", len(body)) + body


def read_frame(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return bytes(buf)


def fetch_v4(corr, topic, partition, offset, max_wait_ms):
    body = header(1, 4, corr)
    body += struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
    body += struct.pack(">i", 1) + kstr(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, 1 << 20)
    return frame(body)


# CRC-32C (Castagnoli), table-driven: RecordBatch v2 checksums.
_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v):
    v = (v << 1) ^ (v >> 63)  # zigzag
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record_batch(value):
    rec = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    rec = varint(len(rec)) + rec
    now = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + rec
    after_len = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def produce_v3(corr, topic, batch):
    body = header(0, 3, corr)
    body += struct.pack(">hhi", -1, 1, 30000)  # no transactional id, acks=1, timeout
    body += struct.pack(">i", 1) + kstr(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(batch)) + batch
    return frame(body)


def produce_error(resp):
    # corr, [topic name, [index, error_code, ...]]
    off = 4 + 4
    (n,) = struct.unpack_from(">h", resp, off)
    off += 2 + n + 4
    _index, code = struct.unpack_from(">ih", resp, off)
    return code


def produce_loop(addr, n):
    sock = socket.create_connection(addr)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    batch = record_batch(b"x" * 100)
    errors = 0
    for i in range(n):
        sock.sendall(produce_v3(i, "hot", batch))
        if produce_error(read_frame(sock)) != 0:
            errors += 1
    sock.close()
    return errors


def measure(pid, addr, n):
    produce_loop(addr, 50)  # warm-up
    time.sleep(0.5)
    cpu0, t0 = cpu_seconds(pid), time.time()
    errors = produce_loop(addr, n)
    cpu1, t1 = cpu_seconds(pid), time.time()
    return {
        "produces": n,
        "errors": errors,
        "wall_s": round(t1 - t0, 3),
        "broker_cpu_s": round(cpu1 - cpu0, 3),
        "broker_cpu_us_per_produce": round((cpu1 - cpu0) / n * 1e6, 1),
    }


def idle_cpu(pid, seconds=3.0):
    cpu0 = cpu_seconds(pid)
    time.sleep(seconds)
    return round((cpu_seconds(pid) - cpu0) / seconds * 100, 2)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get(
        "NAGARE_BIN", os.path.join(root, "target", "debug", "nagare")))
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--produces", type=int, default=2000)
    ap.add_argument("--json")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-idle-fetch-")
    port, cport = free_port(), free_port()
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        [args.bin, "server", "--override", f"log.dirs={work}/data",
         "--override", f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        deadline = time.time() + 120
        while "listening on" not in open(log.name).read():
            if server.poll() is not None or time.time() > deadline:
                sys.exit("server did not start:\n" + open(log.name).read()[-3000:])
            time.sleep(0.1)
        bootstrap = f"127.0.0.1:{port}"
        for name, parts in (("idle", IDLE_PARTITIONS), ("hot", 1)):
            subprocess.run([args.bin, "topic", "-b", bootstrap, "create", name, "-p", str(parts)],
                           check=True, capture_output=True)
        time.sleep(2)
        addr = ("127.0.0.1", port)

        without = measure(server.pid, addr, args.produces)

        conns = []
        for i in range(args.idle):
            s = socket.create_connection(addr)
            s.sendall(fetch_v4(i, "idle", i % IDLE_PARTITIONS, 0, 120000))
            conns.append(s)
        time.sleep(2)  # every fetch read once and parked
        idle_pct = idle_cpu(server.pid)
        with_idle = measure(server.pid, addr, args.produces)
        # Every idle fetch must still be parked (none answered during the measurement).
        answered = len(select.select(conns, [], [], 0)[0])
        for s in conns:
            s.close()

        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, cwd=root).stdout.strip()
        except OSError:
            commit = ""
        result = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bin": args.bin,
            "commit_of_script": commit,
            "load_avg": os.getloadavg(),
            "idle_fetches": args.idle,
            "without_idle_fetches": without,
            "with_idle_fetches": with_idle,
            "idle_fetches_answered_early": answered,
            "broker_cpu_pct_while_idle_fetches_parked": idle_pct,
        }
        print(json.dumps(result, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
