#!/usr/bin/env python3
"""KRaft benchmarks (issue 4), on real `nagare` processes on 127.0.0.1.

1. Metadata throughput: create 10,000 partitions (10 CreateTopics of 1,000 partitions each,
   through a broker, forwarded to the active controller) on 3 controllers + 1 broker.
2. Election time: SIGKILL the active controller; time until a new leader is reported and until
   CreateTopics works again. Repeated; the killed controller restarts between rounds.
3. Catch-up of a new broker with N partitions (default 100,000): the partitions are created
   while the hosting broker is paused (SIGSTOP, with a long broker.session.timeout.ms so it
   stays unfenced and creates no logs); then a fresh broker starts and we time how long until it
   serves Metadata with every partition.

Beside the figures it measures the machine's fsync latency (every metadata commit is fsynced on
a majority of the voters). Usage: python3 scripts/bench_kraft.py [--partitions 100000]
Needs target/release/nagare (cargo build --release) and confluent-kafka.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NAGARE_BIN", os.path.join(ROOT, "target", "release", "nagare"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fsync_latency_ms(dir_):
    path = os.path.join(dir_, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    samples = []
    for _ in range(100):
        os.write(fd, b"x" * 4096)
        t = time.perf_counter()
        os.fsync(fd)
        samples.append((time.perf_counter() - t) * 1000)
    os.close(fd)
    os.unlink(path)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


class Node:
    def __init__(self, root, node_id, roles, voters_fn, extra):
        self.id = node_id
        self.roles = roles
        self.dir = os.path.join(root, f"node-{node_id}")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.cport = free_port()
        self.voters_fn = voters_fn
        self.extra = extra
        self.proc = None
        self.log = os.path.join(self.dir, "server.log")

    def write_config(self):
        listeners = (
            f"CONTROLLER://127.0.0.1:{self.cport}"
            if self.roles == "controller"
            else f"PLAINTEXT://127.0.0.1:{self.port}"
        )
        lines = [
            f"process.roles={self.roles}",
            f"node.id={self.id}",
            f"controller.quorum.voters={self.voters_fn()}",
            f"listeners={listeners}",
            "controller.listener.names=CONTROLLER",
            f"log.dirs={os.path.join(self.dir, 'data')}",
            "offsets.topic.replication.factor=1",
        ] + self.extra
        if self.roles == "broker":
            lines.append(f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}")
        with open(os.path.join(self.dir, "server.properties"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def format(self, cluster_id):
        self.write_config()
        subprocess.run(
            [BIN, "storage", "format", "--cluster-id", cluster_id, "--config",
             os.path.join(self.dir, "server.properties")],
            check=True, capture_output=True)

    def start(self):
        out = open(self.log, "a")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [BIN, "server", "--config", os.path.join(self.dir, "server.properties")],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})

    def wait_listening(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "listening on" in open(self.log).read():
                return time.time()
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.id} exited:\n" + open(self.log).read()[-3000:])
            time.sleep(0.02)
        raise RuntimeError(f"node {self.id} not ready")

    def kill9(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def quorum_leader(bootstrap):
    r = subprocess.run([BIN, "quorum", "describe", "--status", "-b", bootstrap],
                       capture_output=True, text=True)
    m = re.search(r"LeaderId:\s+(-?\d+)\s+LeaderEpoch:\s+(\d+)", r.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def elected_after(controllers, victim, old_epoch, killed_wall):
    """Seconds from the SIGKILL to the first 'role=Leader' log line of a later epoch."""
    best = None
    for c in controllers:
        if c is victim:
            continue
        for line in open(c.log):
            m = re.match(r"(\S+)Z .*metadata quorum state changed .*role=Leader epoch=(\d+)", line)
            if m and int(m.group(2)) > old_epoch:
                ts = datetime.datetime.fromisoformat(m.group(1)).replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                if ts >= killed_wall and (best is None or ts < best):
                    best = ts
    return round(best - killed_wall, 3) if best else None


def create(admin, topics, timeout=120):
    fs = admin.create_topics(topics, operation_timeout=timeout, request_timeout=timeout)
    for f in fs.values():
        f.result()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=100_000,
                    help="partitions that exist when the new broker joins")
    ap.add_argument("--elections", type=int, default=5)
    ap.add_argument("--bulk-topic-partitions", type=int, default=5000)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nagare-bench-kraft-")
    results = {}
    nodes = []
    try:
        p50, p99 = fsync_latency_ms(root)
        results["fsync_latency_ms"] = {"p50": round(p50, 3), "p99": round(p99, 3)}
        cid = subprocess.run([BIN, "storage", "random-uuid"], capture_output=True,
                             text=True, check=True).stdout.strip()
        controllers = []
        voters = lambda: ",".join(f"{c.id}@127.0.0.1:{c.cport}" for c in controllers)
        extra = ["broker.session.timeout.ms=600000", "broker.heartbeat.interval.ms=1000",
                 "metadata.log.max.record.bytes.between.snapshots=4194304"]
        for i in (1, 2, 3):
            controllers.append(Node(root, i, "controller", voters, extra))
        broker = Node(root, 101, "broker", voters, extra)
        nodes = controllers + [broker]
        for n in nodes:
            n.format(cid)
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_listening()
        bootstrap = f"127.0.0.1:{broker.port}"
        admin = AdminClient({"bootstrap.servers": bootstrap})

        # 1. Metadata throughput.
        t = time.perf_counter()
        for i in range(10):
            create(admin, [NewTopic(f"tput-{i}", 1000, 1)])
        el = time.perf_counter() - t
        results["create_10000_partitions_s"] = round(el, 3)
        results["partitions_per_s"] = round(10_000 / el)

        # 2. Election time.
        rounds = []
        for r in range(args.elections):
            leader, epoch = quorum_leader(bootstrap)
            victim = next(c for c in controllers if c.id == leader)
            killed_wall = time.time()
            victim.kill9()
            t = time.perf_counter()
            new_leader = None
            while True:
                l, e = quorum_leader(bootstrap)
                if l is not None and l != leader and e > epoch:
                    new_leader = time.perf_counter() - t
                    break
                if time.perf_counter() - t > 30:
                    raise RuntimeError("no new leader")
                time.sleep(0.02)
            while True:
                try:
                    create(admin, [NewTopic(f"election-{r}", 1, 1)], timeout=5)
                    break
                except Exception:
                    if time.perf_counter() - t > 60:
                        raise
                    time.sleep(0.05)
            ok_s = time.perf_counter() - t
            rounds.append({"elected_s": elected_after(controllers, victim, epoch, killed_wall),
                           "leader_seen_by_broker_s": round(new_leader, 3),
                           "create_topics_ok_s": round(ok_s, 3)})
            victim.start()
            victim.wait_listening()
            time.sleep(2)
        results["elections"] = rounds

        # 3. New broker catch-up with many partitions.
        # Broker 101 is paused (it stays registered and unfenced: the session timeout is long),
        # so the partitions placed on it are metadata only. Broker 102 takes the admin requests
        # (and hosts the other half, creating their logs in the background) and is killed
        # before the new broker starts.
        os.kill(broker.proc.pid, signal.SIGSTOP)
        helper = Node(root, 102, "broker", voters, extra)
        helper.format(cid)
        helper.start()
        helper.wait_listening()
        hadmin = AdminClient({"bootstrap.servers": f"127.0.0.1:{helper.port}"})
        existing = 10_000 + args.elections
        todo = max(0, args.partitions - existing)
        t = time.perf_counter()
        i = 0
        while todo > 0:
            n = min(args.bulk_topic_partitions, todo)
            create(hadmin, [NewTopic(f"bulk-{i}", n, 1)], timeout=300)
            todo -= n
            i += 1
        results["create_bulk_partitions_s"] = round(time.perf_counter() - t, 3)
        helper.kill9()
        fresh = Node(root, 103, "broker", voters, extra)
        fresh.format(cid)
        t0 = time.time()
        fresh.start()
        ready = fresh.wait_listening(timeout=600)
        fadmin = AdminClient({"bootstrap.servers": f"127.0.0.1:{fresh.port}"})
        md = fadmin.list_topics(timeout=120)
        total = sum(len(tm.partitions) for tm in md.topics.values())
        done = time.time()
        results["new_broker"] = {
            "partitions_in_metadata": total,
            "listening_after_s": round(ready - t0, 3),
            "full_metadata_after_s": round(done - t0, 3),
            "loaded_snapshot": "loaded metadata snapshot" in open(fresh.log).read(),
        }
        nodes += [helper, fresh]
        os.kill(broker.proc.pid, signal.SIGCONT)
        print(json.dumps(results, indent=2))
    finally:
        for n in nodes:
            try:
                n.kill9()
            except Exception:
                pass
        if not os.environ.get("KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("kept", root)


if __name__ == "__main__":
    sys.exit(main())
