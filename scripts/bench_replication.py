#!/usr/bin/env python3
"""Replication benchmarks (issue 5), on real `nagare` processes on 127.0.0.1.

One cluster: 3 controllers + 3 brokers, all on this machine (so an RF=3 write costs three
appends and three fsyncs on the same disk, and the replicas share the same 2 cores).

1. Produce throughput, `acks=all`, 1 KiB records, `nagare bench produce` (librdkafka):
   RF=1 vs RF=3 with `min.insync.replicas=2`, in the same run, beside the disk's limit
   (`dd bs=1M count=1024 conv=fdatasync`, one writer and three concurrent ones).
2. Leader failover: an idempotent `acks=all` producer sends one record every 5 ms to a
   single-partition RF=3 topic; the partition leader's broker gets SIGKILL; we time from the
   kill until the producer's first acknowledgement after it (ignoring the first 50 ms, which
   still carry answers the victim sent before it died), and until the first acknowledgement of
   a record sent after the kill. Repeated; the victim restarts and rejoins the ISR between
   rounds. The broker is fenced (and its partitions move) after `broker.session.timeout.ms`,
   which bounds the figure: run with `--session-timeout-ms` to see both Kafka's default (9000)
   and a short one.

Usage: python3 scripts/bench_replication.py [--seconds 20] [--rounds 3] [--session-timeout-ms 9000]
       [--pairs 1 | --plan 1,3,...] [--skip-failover] [--broker-config key=value ...]
       [--produce-arg=--buffer-kbytes=N ...]
NAGARE_BIN picks the servers' binary, NAGARE_CLIENT_BIN the load generator's (default: the same).
`--pairs N` runs N alternating RF=1 / RF=3 rows (then one more RF=1 row); each row reports the
CPU seconds of every broker, the controllers and the client (utime+stime from /proc), the
system load average, and the disk's write rate and the machine's CPU use while the load
generator ran. `--skip-failover` leaves out part 2.
Needs target/release/nagare (cargo build --release) and confluent-kafka.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kraft import BIN, Node, create  # noqa: E402

# The load generator (`nagare bench produce`): the servers' binary unless NAGARE_CLIENT_BIN
# names another, so servers of two builds can be compared with the same client.
CLIENT_BIN = os.environ.get("NAGARE_CLIENT_BIN", BIN)


def dd_write_mb_s(dir_, writers=1):
    """The disk's write limit: `writers` concurrent `dd bs=1M count=1024 conv=fdatasync`
    (3 = one per broker, the ceiling of an RF=3 row, which writes every byte three times)."""
    paths = [os.path.join(dir_, f"dd-probe-{i}") for i in range(writers)]
    start = time.time()
    procs = [subprocess.Popen(["dd", "if=/dev/zero", f"of={p}", "bs=1M", "count=1024",
                               "conv=fdatasync"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for p in paths]
    ok = all(p.wait() == 0 for p in procs)
    elapsed = time.time() - start
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass
    return round(writers * 1073.741824 / elapsed, 1) if ok and elapsed > 0 else None


def cpu_seconds(pid):
    """utime + stime of a process (and its reaped children), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(fields[i]) for i in (11, 12)) / ticks
    except (OSError, IndexError, ValueError):
        return 0.0


def disk_and_cpu():
    """(sectors written, ms the disk was busy) of the disk holding /tmp, and the machine's
    (busy, total) CPU jiffies: sampled around each row to tell disk- from CPU-bound."""
    dev = os.major(os.stat(tempfile.gettempdir()).st_dev), os.minor(os.stat(tempfile.gettempdir()).st_dev)
    sectors = busy_ms = 0
    try:
        with open("/proc/diskstats") as f:
            for line in f:
                parts = line.split()
                if (int(parts[0]), int(parts[1])) == dev:
                    sectors, busy_ms = int(parts[9]), int(parts[12])
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0, 0, 0
    idle = cpu[3] + cpu[4]
    return sectors, busy_ms, sum(cpu) - idle, sum(cpu)


def bench_produce(admin, bootstrap, topic, rf, seconds, root, extra_args=(), sample=None):
    """One row; `sample()` (if given) is called right before and after the load generator runs
    and the two results and the seconds between are returned as r["window"], so the row's
    disk and CPU figures cover the load alone (not topic creation, deletion and pauses, which
    diluted them by about a third before)."""
    # min.insync.replicas=2 on the RF=3 topic only (an RF=1 topic with it would refuse acks=all).
    config = {"min.insync.replicas": "2"} if rf == 3 else {}
    create(admin, [NewTopic(topic, 6, rf, config=config)])
    time.sleep(1)
    out = os.path.join(root, f"produce-{topic}.json")
    client_before = os.times()
    window_before, t0 = (sample() if sample else None), time.time()
    run = subprocess.run([CLIENT_BIN, "bench", "produce", "-b", bootstrap, "-t", topic,
                          "--partitions", "6", "--replication-factor", str(rf), "--acks", "all",
                          "--record-size", "1024", "--duration", str(seconds), "--producers",
                          "2", "--json", out, *extra_args], capture_output=True, text=True)
    if run.returncode != 0:
        # Say why (the load generator's own words) before the run stops.
        sys.stderr.write(run.stdout[-4000:] + run.stderr[-4000:])
        run.check_returncode()
    window_after, t1 = (sample() if sample else None), time.time()
    client_after = os.times()
    # Each row writes gigabytes (three times at RF=3): delete its topic so a run never fills
    # the disk.
    try:
        for fut in admin.delete_topics([topic], operation_timeout=30).values():
            fut.result()
    except Exception as e:  # noqa: BLE001 - a leftover topic only costs disk space
        print(f"deleting {topic}: {e}", file=sys.stderr)
    time.sleep(2)  # the brokers apply the deletion from the metadata log
    with open(out) as f:
        r = json.load(f)
    r["window"] = (window_before, window_after, t1 - t0)
    r["client_cpu_s"] = round((client_after.children_user + client_after.children_system)
                              - (client_before.children_user + client_before.children_system), 2)
    return r


def partition_leader(admin, topic):
    md = admin.list_topics(topic, timeout=10)
    p = md.topics[topic].partitions.get(0)
    return (p.leader, list(p.isrs)) if p else (None, [])


class SteadyProducer:
    """Sends one record every 5 ms; records the wall time of every acknowledgement."""

    def __init__(self, bootstrap, topic):
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                           "enable.idempotence": True, "linger.ms": 0,
                           "message.timeout.ms": 120000})
        self.topic = topic
        self.acks = []  # (send_wall, ack_wall)
        self.errors = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop:
            sent = time.time()

            def cb(err, _msg, sent=sent):
                if err is None:
                    self.acks.append((sent, time.time()))
                else:
                    self.errors += 1
            self.p.produce(self.topic, value=str(i).encode(), partition=0, on_delivery=cb)
            i += 1
            self.p.poll(0.005)
        self.p.flush(60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--session-timeout-ms", type=int, default=9000)
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument("--skip-failover", action="store_true")
    ap.add_argument("--produce-arg", action="append", default=[],
                    help="extra argument for `nagare bench produce` (e.g. --buffer-kbytes=131072)")
    ap.add_argument("--plan", help="comma-separated replication factors of the rows, e.g. 3 or "
                    "1,3,1 (overrides --pairs)")
    ap.add_argument("--broker-config", action="append", default=[],
                    help="extra key=value for every node's server.properties")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nagare-bench-repl-")
    results = {"session_timeout_ms": args.session_timeout_ms}
    nodes = []
    try:
        results["disk_dd_fdatasync_mb_s"] = dd_write_mb_s(root)
        results["disk_dd_fdatasync_3_writers_mb_s"] = dd_write_mb_s(root, 3)
        cid = subprocess.run([BIN, "storage", "random-uuid"], capture_output=True,
                             text=True, check=True).stdout.strip()
        controllers = []
        voters = lambda: ",".join(f"{c.id}@127.0.0.1:{c.cport}" for c in controllers)
        hb = max(100, min(2000, args.session_timeout_ms // 4))
        extra = [f"broker.session.timeout.ms={args.session_timeout_ms}",
                 f"broker.heartbeat.interval.ms={hb}"] + args.broker_config
        for i in (1, 2, 3):
            controllers.append(Node(root, i, "controller", voters, extra))
        brokers = [Node(root, 100 + i, "broker", voters, extra) for i in (1, 2, 3)]
        nodes = controllers + brokers
        for n in nodes:
            n.format(cid)
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_listening()
        bootstrap = ",".join(f"127.0.0.1:{b.port}" for b in brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        time.sleep(2)
        with open(os.path.join(root, "pids.json"), "w") as f:
            json.dump({n.id: n.proc.pid for n in nodes}, f)
        print("cluster up; pids in", os.path.join(root, "pids.json"), file=sys.stderr, flush=True)

        # 1. Throughput, RF=1 then RF=3 (and RF=1 again, to see drift between the two).
        rows = {}
        plan = [(f"rf{rf}_{i}", rf) for i in range(1, args.pairs + 1) for rf in (1, 3)]
        plan.append((f"rf1_{args.pairs + 1}", 1))
        if args.plan:
            plan = [(f"rf{rf}_{i}", int(rf)) for i, rf in enumerate(args.plan.split(","), 1)]
        for name, rf in plan:
            free_gb = shutil.disk_usage(root).free / 1e9
            # Up to ~1.6 GB/s of log on this machine (RF=3: three copies of ~500 MB/s), and
            # headroom: the disk is shared.
            if free_gb < 2 + 1.6 * args.seconds:
                raise RuntimeError(f"only {free_gb:.1f} GB free under {root}: not starting {name}")
            def sample():
                return {b.id: cpu_seconds(b.proc.pid) for b in nodes}, disk_and_cpu()

            r = bench_produce(admin, bootstrap, f"tput-{name}", rf, args.seconds, root,
                              args.produce_arg, sample)
            (before, sys_before), (after, sys_after), window_s = r["window"]
            row = {k: r.get(k) for k in ("mb_per_sec", "records_per_sec",
                                         "ack_latency", "records", "errors", "client_cpu_s")}
            row["broker_cpu_s"] = {b.id: round(after[b.id] - before[b.id], 2) for b in brokers}
            row["controllers_cpu_s"] = round(sum(after[c.id] - before[c.id]
                                                 for c in controllers), 2)
            row["loadavg_after"] = os.getloadavg()[0]
            # Everything written to the disk during the row (all processes of the machine),
            # the share of the time it was busy, and the machine's CPU use (of all cores).
            # While the load generator ran; iowait counts as idle.
            row["disk_write_mb_s"] = round((sys_after[0] - sys_before[0]) * 512 / 1e6
                                           / window_s, 1)
            row["disk_busy_pct"] = round((sys_after[1] - sys_before[1]) / 10 / window_s, 1)
            row["machine_cpu_busy_pct"] = round(
                100 * (sys_after[2] - sys_before[2]) / max(1, sys_after[3] - sys_before[3]), 1)
            rows[name] = row
            print(name, json.dumps(row), file=sys.stderr, flush=True)
        results["produce_acks_all_1KiB"] = rows
        rf1 = [v["mb_per_sec"] for k, v in rows.items() if k.startswith("rf1")]
        rf3 = [v["mb_per_sec"] for k, v in rows.items() if k.startswith("rf3")]
        if rf1 and rf3:
            results["rf3_over_rf1_mean"] = round(sum(rf3) / len(rf3) / (sum(rf1) / len(rf1)), 3)
        results["disk_dd_fdatasync_mb_s_after"] = dd_write_mb_s(root)
        results["disk_dd_fdatasync_3_writers_mb_s_after"] = dd_write_mb_s(root, 3)

        if args.skip_failover:
            print(json.dumps(results, indent=2))
            return 0
        # 2. Leader failover.
        create(admin, [NewTopic("failover", 1, 3, config={"min.insync.replicas": "2"})])
        time.sleep(1)
        by_id = {b.id: b for b in brokers}
        rounds = []
        for _ in range(args.rounds):
            deadline = time.time() + 120
            while True:
                leader, isr = partition_leader(admin, "failover")
                if leader in by_id and len(isr) == 3:
                    break
                if time.time() > deadline:
                    raise RuntimeError(f"ISR never full: leader {leader} isr {isr}")
                time.sleep(0.2)
            prod = SteadyProducer(bootstrap, "failover")
            time.sleep(3)
            victim = by_id[leader]
            killed = time.time()
            victim.kill9()
            deadline = time.time() + 120
            first_ack = first_new_ack = None
            while time.time() < deadline and first_new_ack is None:
                time.sleep(0.01)
                for sent, acked in list(prod.acks):
                    # Acks within 50 ms of the kill answer requests the victim served before.
                    if acked > killed + 0.05 and first_ack is None:
                        first_ack = acked - killed
                    if sent > killed and first_new_ack is None:
                        first_new_ack = acked - killed
            prod.stop = True
            prod.thread.join()
            new_leader, _ = partition_leader(admin, "failover")
            rounds.append({"killed_broker": leader, "new_leader": new_leader,
                           "first_ack_after_kill_s": round(first_ack, 3) if first_ack else None,
                           "first_ack_of_new_record_s":
                               round(first_new_ack, 3) if first_new_ack else None,
                           "acked": len(prod.acks), "failed": prod.errors})
            victim.start()
            victim.wait_listening()
        results["leader_failover"] = rounds
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
