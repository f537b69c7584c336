#!/usr/bin/env python3
"""Compatibility checks of a real nagare server against real Kafka clients.

Starts its own `nagare server` on free 127.0.0.1 ports with a temporary log dir, then drives it
with kcat, confluent-kafka-python and kafka-python. Every check prints PASS or FAIL with detail;
the last line is `N passed, M failed`, and the exit status is non-zero when M > 0.

The binary is $NAGARE_BIN, else target/release/nagare, else target/debug/nagare.
The TLS checks start a second server whose client listener is SSL with client authentication
(certificates made by the script); `--tls-only` runs just those.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]

# SASL users: PLAIN ones from the listener's JAAS config, SCRAM ones added at format time.
SASL_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
             'username="admin" password="admin-secret" '
             'user_admin="admin-secret" user_alice="alice-secret";')
SCRAM512_PASSWORD = "scram512-secret"
SCRAM256_PASSWORD = "scram256-secret"
RESULTS: list[tuple[str, bool, str]] = []
# OAUTHBEARER: the SASL listener validates JWTs against a JWKS file the script writes.
OAUTH_ISSUER = "https://idp.nagare.test"
OAUTH_AUDIENCE = "nagare"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OAuthIssuer:
    """An identity provider stand-in: an RSA key, its JWKS, and RS256 JWTs built by hand
    (base64url header and claims, PKCS#1 v1.5 signature), as an OAuth server issues them."""

    def __init__(self, kid: str = "compat-key-1") -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()

        def b64int(i: int) -> str:
            return b64u(i.to_bytes((i.bit_length() + 7) // 8, "big"))
        return {"keys": [{"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                          "n": b64int(numbers.n), "e": b64int(numbers.e)}]}

    def token(self, sub: str, lifetime_s: int) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {"sub": sub, "iss": OAUTH_ISSUER, "aud": OAUTH_AUDIENCE, "iat": now - 5,
                  "exp": now + lifetime_s}
        signing_input = (f"{b64u(json.dumps(header).encode())}."
                         f"{b64u(json.dumps(claims).encode())}")
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64u(sig)}"


_OAUTH: list[OAuthIssuer] = []


def oauth_issuer() -> OAuthIssuer:
    """The script's one trusted issuer (its key is in every server's JWKS file)."""
    if not _OAUTH:
        _OAUTH.append(OAuthIssuer())
    return _OAUTH[0]


# --------------------------------------------------------------------------------------------
# Server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary() -> Path:
    env = os.environ.get("NAGARE_BIN")
    if env:
        return Path(env).resolve()
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "nagare"
        if p.exists():
            return p
    raise FileNotFoundError("no nagare binary: set NAGARE_BIN or run cargo build --release")


class Server:
    def __init__(self, binary: Path, overrides: tuple[str, ...] = (),
                 tls: "Pki | None" = None) -> None:
        self.binary = binary
        self.overrides = overrides
        # With a PKI: the client listener is SSL with ssl.client.auth=required.
        self.tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix="nagare-compat-"))
        self.port = free_port()
        self.cport = free_port()
        while self.cport == self.port:
            self.cport = free_port()
        self.sport = free_port()
        while self.sport in (self.port, self.cport):
            self.sport = free_port()
        # The HTTP listener (/metrics), for the KIP-714 telemetry check.
        self.hport = free_port()
        while self.hport in (self.port, self.cport, self.sport):
            self.hport = free_port()
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT listener (PLAIN users from JAAS, SCRAM users in metadata)."""
        return f"127.0.0.1:{self.sport}"

    def start(self) -> None:
        data = self.dir / "data"
        data.mkdir()
        # A PLAINTEXT listener (every check but the SASL ones, and inter-broker traffic) and a
        # SASL_PLAINTEXT one, configured with Kafka's own keys.
        name = "SSL" if self.tls else "PLAINTEXT"
        props = {
            "node.id": "1",
            "listeners": (f"{name}://127.0.0.1:{self.port},"
                          f"SASL://127.0.0.1:{self.sport},"
                          f"CONTROLLER://127.0.0.1:{self.cport}"),
            "advertised.listeners": (f"{name}://127.0.0.1:{self.port},"
                                     f"SASL://127.0.0.1:{self.sport}"),
            # The SASL listener speaks SASL_SSL on the TLS server (KIP-684: the broker-wide
            # ssl.client.auth=required does not apply to it), SASL_PLAINTEXT otherwise.
            "listener.security.protocol.map": (
                f"{name}:{name},SASL:{'SASL_SSL' if self.tls else 'SASL_PLAINTEXT'},"
                "CONTROLLER:PLAINTEXT"),
            "listener.name.sasl.sasl.enabled.mechanisms":
                "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
            "listener.name.sasl.plain.sasl.jaas.config": SASL_JAAS,
            "log.dirs": str(data),
            "http.listeners": f"http://127.0.0.1:{self.hport}",
        }
        # OAUTHBEARER with Kafka's (KIP-768) broker keys: a JWKS file written before start.
        jwks = self.dir / "jwks.json"
        jwks.write_text(json.dumps(oauth_issuer().jwks()))
        props.update({
            "listener.name.sasl.oauthbearer.sasl.jaas.config":
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;",
            "listener.name.sasl.oauthbearer.sasl.server.callback.handler.class":
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
            "listener.name.sasl.oauthbearer.sasl.oauthbearer.jwks.endpoint.url":
                f"file://{jwks}",
            "sasl.oauthbearer.expected.audience": OAUTH_AUDIENCE,
            "sasl.oauthbearer.expected.issuer": OAUTH_ISSUER,
        })
        if self.tls:
            props.update({
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.server_keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca),
                "ssl.client.auth": "required",
            })
        for o in self.overrides:
            key, _, value = o.partition("=")
            props[key] = value
        config = self.dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        # The first SCRAM users exist from format time (kafka-storage format --add-scram).
        cluster_id = subprocess.run([str(self.binary), "storage", "random-uuid"],
                                    capture_output=True, text=True, check=True).stdout.strip()
        fmt = subprocess.run(
            [str(self.binary), "storage", "format", "-t", cluster_id, "-c", str(config),
             "--add-scram", f"SCRAM-SHA-512=[name=scram512,password={SCRAM512_PASSWORD}]",
             "--add-scram",
             f"SCRAM-SHA-256=[name=scram256,iterations=8192,password={SCRAM256_PASSWORD}]"],
            capture_output=True, text=True)
        if fmt.returncode != 0:
            raise RuntimeError(f"nagare storage format failed: {fmt.stdout}{fmt.stderr}")
        args = [str(self.binary), "server", "-c", str(config)]
        log = open(self.log_path, "wb")
        env = dict(os.environ, NO_COLOR="1")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nagare exited with {self.proc.returncode}:\n{self.output()}")
            if "listening on" in self.output():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"nagare not ready after 60 s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Check bookkeeping


def check(name: str, fn: Callable[[], str | None]) -> None:
    try:
        detail = fn() or ""
        RESULTS.append((name, True, detail))
        print(f"PASS {name}" + (f": {detail}" if detail else ""), flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none aborts the run
        tb = traceback.format_exc(limit=3)
        RESULTS.append((name, False, str(e)))
        print(f"FAIL {name}: {type(e).__name__}: {e}\n{tb}", flush=True)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------------------------
# kcat


def kcat(server: Server, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    exe = shutil.which("kcat") or shutil.which("kafkacat")
    if exe is None:
        raise RuntimeError("kcat is not installed (apt-get install kcat)")
    proc = subprocess.run(
        [exe, "-b", server.bootstrap, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kcat {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def kcat_checks(server: Server) -> None:
    topic = unique("kcat")
    lines = [f"key{i}:value {i} with spaces" for i in range(50)]

    def produce() -> str:
        kcat(server, "-P", "-t", topic, "-p", "0", "-K:", stdin="\n".join(lines) + "\n")
        return f"{len(lines)} keyed lines to {topic}"

    def metadata() -> str:
        md = json.loads(kcat(server, "-L", "-J"))
        brokers = [(b["id"], b["name"]) for b in md["brokers"]]
        expect(brokers == [(1, server.bootstrap)], f"brokers {brokers}")
        topics = {t["topic"]: t for t in md["topics"]}
        expect(topic in topics, f"{topic} not in {sorted(topics)}")
        parts = topics[topic]["partitions"]
        expect(len(parts) == 1, f"{len(parts)} partitions (num.partitions default is 1)")
        expect(parts[0]["leader"] == 1, f"leader {parts[0]['leader']}")
        # And the human-readable form.
        text = kcat(server, "-L", "-t", topic)
        expect(f"broker 1 at {server.bootstrap}" in text, f"-L text output:\n{text}")
        return f"broker 1 at {server.bootstrap}, topic {topic} with 1 partition"

    def consume_all() -> str:
        out = kcat(server, "-C", "-t", topic, "-p", "0", "-e", "-o", "beginning", "-f", "%k:%s\n")
        got = out.splitlines()
        expect(got == lines, f"got {len(got)} lines, first diff: {first_diff(got, lines)}")
        return f"{len(got)} lines back exactly"

    def consume_from_offset() -> str:
        out = kcat(server, "-C", "-t", topic, "-p", "0", "-e", "-o", "17", "-f", "%o %k:%s\n")
        got = out.splitlines()
        want = [f"{i} {lines[i]}" for i in range(17, len(lines))]
        expect(got == want, f"first diff: {first_diff(got, want)}")
        return "offsets 17.. back exactly"

    check("kcat produce -P -K:", produce)
    check("kcat metadata -L", metadata)
    check("kcat consume -C -o beginning", consume_all)
    check("kcat consume -C -o 17", consume_from_offset)

    for codec in ("gzip", "snappy", "lz4", "zstd"):
        def compressed(codec: str = codec) -> str:
            t = unique(f"kcat-{codec}")
            data = [f"k{i}:{codec} record {i} " + "x" * (i % 50) for i in range(200)]
            kcat(server, "-P", "-t", t, "-p", "0", "-K:", "-z", codec, stdin="\n".join(data) + "\n")
            out = kcat(server, "-C", "-t", t, "-p", "0", "-e", "-o", "beginning", "-f", "%k:%s\n")
            got = out.splitlines()
            expect(got == data, f"first diff: {first_diff(got, data)}")
            return f"{len(data)} records"

        check(f"kcat -z {codec} round trip", compressed)


def first_diff(got: list, want: list) -> str:
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"at {i}: got {a!r}, want {b!r}"
    return f"lengths {len(got)} vs {len(want)}"


# --------------------------------------------------------------------------------------------
# confluent-kafka-python


def confluent_checks(server: Server) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin_topic = unique("ck-admin")

    def create() -> str:
        fs = admin.create_topics([NewTopic(admin_topic, num_partitions=4, replication_factor=1)],
                                 operation_timeout=30)
        for t, f in fs.items():
            f.result(timeout=30)
        return f"{admin_topic} with 4 partitions"

    def list_topics() -> str:
        deadline = time.time() + 15
        while True:
            md = admin.list_topics(timeout=10)
            t = md.topics.get(admin_topic)
            if t is not None and t.error is None and len(t.partitions) == 4:
                break
            expect(time.time() < deadline, f"{admin_topic} not listed with 4 partitions")
            time.sleep(0.2)
        brokers = {b.id: (b.host, b.port) for b in md.brokers.values()}
        expect(brokers == {1: ("127.0.0.1", server.port)}, f"brokers {brokers}")
        leaders = sorted(p.leader for p in t.partitions.values())
        expect(leaders == [1, 1, 1, 1], f"leaders {leaders}")
        return f"{len(md.topics)} topics, broker 1"

    def describe() -> str:
        try:
            from confluent_kafka import TopicCollection

            fs = admin.describe_topics(TopicCollection([admin_topic]), request_timeout=15)
            desc = fs[admin_topic].result(timeout=20)
            parts = sorted(p.id for p in desc.partitions)
            expect(parts == [0, 1, 2, 3], f"partitions {parts}")
            expect(all(p.leader is not None and p.leader.id == 1 for p in desc.partitions),
                   "leaders")
            return "describe_topics: 4 partitions led by broker 1"
        except ImportError:
            md = admin.list_topics(topic=admin_topic, timeout=10)
            expect(len(md.topics[admin_topic].partitions) == 4, "partitions")
            return "list_topics metadata (describe_topics unavailable): 4 partitions"

    def delete() -> str:
        fs = admin.delete_topics([admin_topic], operation_timeout=30)
        for f in fs.values():
            f.result(timeout=30)
        deadline = time.time() + 15
        while admin_topic in admin.list_topics(timeout=10).topics:
            expect(time.time() < deadline, f"{admin_topic} still listed after delete")
            time.sleep(0.2)
        return f"{admin_topic} gone"

    check("confluent-kafka AdminClient.create_topics", create)
    check("confluent-kafka AdminClient.list_topics", list_topics)
    check("confluent-kafka AdminClient.describe_topics", describe)
    check("confluent-kafka AdminClient.delete_topics", delete)

    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        def roundtrip(codec: str = codec) -> str:
            topic = unique(f"ck-{codec}")
            fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            fs[topic].result(timeout=30)
            n = 3000
            delivered: list = []
            errors: list = []

            def on_delivery(err, msg) -> None:
                (errors if err else delivered).append(err or (msg.partition(), msg.offset()))

            p = Producer({"bootstrap.servers": server.bootstrap, "compression.type": codec,
                          "linger.ms": 10, "acks": "all"})
            expected: dict[int, list] = {0: [], 1: [], 2: []}
            for i in range(n):
                part = i % 3
                key, value = f"k{i}".encode(), f"{codec}-value-{i}-".encode() + b"z" * (i % 100)
                headers = [("h", f"{i}".encode()), ("dup", b"a"), ("dup", b"b"), ("null", None)]
                while True:
                    try:
                        p.produce(topic, value=value, key=key, partition=part, headers=headers,
                                  timestamp=1_700_000_000_000 + i, on_delivery=on_delivery)
                        break
                    except BufferError:
                        p.poll(0.05)
                expected[part].append((key, value, headers, 1_700_000_000_000 + i))
            remaining = p.flush(60)
            expect(remaining == 0 and not errors, f"{remaining} undelivered, errors {errors[:3]}")
            expect(len(delivered) == n, f"{len(delivered)} delivery reports")

            c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": unique("ck-g"),
                          "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            try:
                c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in range(3)])
                got: dict[int, list] = {0: [], 1: [], 2: []}
                deadline = time.time() + 60
                while sum(len(v) for v in got.values()) < n:
                    expect(time.time() < deadline, f"consumed only {sum(len(v) for v in got.values())}")
                    m = c.poll(0.5)
                    if m is None:
                        continue
                    expect(m.error() is None, f"consume error {m.error()}")
                    expect(m.offset() == len(got[m.partition()]),
                           f"partition {m.partition()}: offset {m.offset()} out of sequence")
                    got[m.partition()].append(
                        (m.key(), m.value(), m.headers(), m.timestamp()[1]))
            finally:
                c.close()
            for part in range(3):
                expect(got[part] == expected[part],
                       f"partition {part}: {first_diff(got[part], expected[part])}")
            return f"{n} records with headers and timestamps over 3 partitions"

        label = "without compression" if codec == "none" else f"compression {codec}"
        check(f"confluent-kafka Producer/Consumer(assign) {label}", roundtrip)

    def admin_sweep() -> str:
        # The AdminClient calls not driven elsewhere in this script (docs/ADMIN_CLIENTS.md).
        from confluent_kafka import ConsumerGroupTopicPartitions, ElectionType
        from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                           OffsetSpec, ResourceType)
        topic = unique("ck-sweep")
        group = unique("ck-sweep-group")
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[
            topic].result(timeout=30)
        p = Producer({"bootstrap.servers": server.bootstrap})
        for i in range(10):
            p.produce(topic, value=f"v{i}".encode(), partition=0)
        p.flush(30)
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", "3600000",
                        incremental_operation=AlterConfigOpType.SET)])
        for f in admin.incremental_alter_configs([res]).values():
            f.result(timeout=30)
        got = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
        entries = list(got.values())[0].result(timeout=30)
        expect(entries["retention.ms"].value == "3600000", "incremental_alter_configs")
        tp0 = TopicPartition(topic, 0)
        latest = admin.list_offsets({tp0: OffsetSpec.latest()})[tp0].result(timeout=30)
        earliest = admin.list_offsets({tp0: OffsetSpec.earliest()})[tp0].result(timeout=30)
        expect((earliest.offset, latest.offset) == (0, 10), f"list_offsets {earliest} {latest}")
        fut = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 4)])])
        altered = list(fut.values())[0].result(timeout=30)
        expect(altered.topic_partitions[0].offset == 4, f"alter offsets {altered}")
        listed = list(admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)]).values())[0].result(timeout=30)
        expect([tp.offset for tp in listed.topic_partitions if tp.partition == 0] == [4],
               f"group offsets {listed}")
        elected = admin.elect_leaders(ElectionType.PREFERRED, [tp0]).result(timeout=30)
        # The only replica already leads: Kafka's ELECTION_NOT_NEEDED (84).
        err = elected.get(tp0)
        expect(err is not None and err.code() == 84, f"elect_leaders {elected}")
        for f in admin.delete_consumer_groups([group]).values():
            f.result(timeout=30)
        groups = admin.list_consumer_groups().result(timeout=30)
        expect(group not in [g.group_id for g in groups.valid], "deleted group still listed")
        return ("incremental_alter_configs, list_offsets, alter/list_consumer_group_offsets, "
                "elect_leaders (ELECTION_NOT_NEEDED), delete_consumer_groups")

    check("confluent-kafka admin sweep: the remaining AdminClient calls", admin_sweep)

    def record_errors() -> str:
        # KIP-467: a batch with keyless records on a compacted topic is refused; librdkafka
        # fails the records Produce named in record_errors with INVALID_RECORD and the
        # others with _INVALID_DIFFERENT_RECORD (without record_errors: all INVALID_RECORD).
        from confluent_kafka import KafkaError
        topic = unique("ck-kip467")
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                      config={"cleanup.policy": "compact"})])[
            topic].result(timeout=30)
        outcome: dict[bytes, int] = {}
        p = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 200,
                      "retries": 0, "enable.idempotence": False})
        keys = [b"k0", None, b"k2", None]
        for i, key in enumerate(keys):
            p.produce(topic, value=f"v{i}".encode(), key=key, partition=0,
                      on_delivery=lambda err, msg: outcome.__setitem__(
                          msg.value(), err.code() if err else 0))
        expect(p.flush(30) == 0, "undelivered")
        want = {b"v0": KafkaError._INVALID_DIFFERENT_RECORD, b"v1": KafkaError.INVALID_RECORD,
                b"v2": KafkaError._INVALID_DIFFERENT_RECORD, b"v3": KafkaError.INVALID_RECORD}
        expect(outcome == want, f"delivery errors {outcome}, want {want}")
        return "keyless records INVALID_RECORD, their batch mates _INVALID_DIFFERENT_RECORD"

    check("confluent-kafka KIP-467 per-record produce errors", record_errors)


# --------------------------------------------------------------------------------------------
# KIP-714 client telemetry


def incremental_alter_configs_raw(server: Server, resource_type: int, name: str,
                                  configs: dict[str, str]) -> int:
    """IncrementalAlterConfigs v0 (SET each config) written by hand: the Python clients have
    no CLIENT_METRICS resource type. Returns the resource's error code."""
    import struct

    def s16(v: str) -> bytes:
        b = v.encode()
        return struct.pack(">h", len(b)) + b

    body = struct.pack(">i", 1) + struct.pack(">b", resource_type) + s16(name)
    body += struct.pack(">i", len(configs))
    for k, v in configs.items():
        body += s16(k) + struct.pack(">b", 0) + s16(v)
    body += b"\x00"  # validate_only = false
    header = struct.pack(">hhi", 44, 0, 714) + s16("compat-telemetry")
    frame = header + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)

        def read(n: int) -> bytes:
            out = b""
            while len(out) < n:
                chunk = sock.recv(n - len(out))
                if not chunk:
                    raise ConnectionError("connection closed")
                out += chunk
            return out

        (size,) = struct.unpack(">i", read(4))
        resp = read(size)
    # correlation id, throttle_time_ms, array count, then the first error code.
    corr, _throttle, count, code = struct.unpack(">iiih", resp[:14])
    expect(corr == 714 and count == 1, f"IncrementalAlterConfigs answer {resp!r}")
    return code


def telemetry_checks(server: Server) -> None:
    import urllib.request
    from confluent_kafka import Producer

    def scrape() -> str:
        url = f"http://127.0.0.1:{server.hport}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def pushed_metrics() -> str:
        # A subscription (kafka-client-metrics.sh --alter) for this check's producer only.
        code = incremental_alter_configs_raw(server, 16, unique("compat-telemetry"), {
            "metrics": "org.apache.kafka.producer.",
            "interval.ms": "500",
            "match": "client_id=compat-telemetry-.*",
        })
        expect(code == 0, f"CLIENT_METRICS subscription: error {code}")
        bad = incremental_alter_configs_raw(server, 16, unique("compat-telemetry"),
                                            {"interval.ms": "5"})
        expect(bad == 42, f"interval.ms=5 must be INVALID_REQUEST (42), got {bad}")
        topic = unique("telemetry")
        client_id = unique("compat-telemetry")
        # librdkafka >= 2.5 pushes by default (enable.metrics.push=true).
        p = Producer({"bootstrap.servers": server.bootstrap, "client.id": client_id})
        try:
            deadline = time.time() + 30
            lines: list[str] = []
            while time.time() < deadline:
                p.produce(topic, value=b"x")
                p.poll(0.2)
                lines = [line for line in scrape().splitlines()
                         if f'client_id="{client_id}"' in line
                         and line.startswith("org_apache_kafka_producer_")]
                if lines:
                    break
            expect(bool(lines), "no pushed producer metric on /metrics within 30 s")
            expect('client_software_name="confluent-kafka-python"' in lines[0]
                   or 'client_software_name="librdkafka"' in lines[0],
                   f"software label missing: {lines[0]}")
            p.flush(10)
        finally:
            p.flush(10)
        return f"{len(lines)} series re-exported, e.g. {lines[0][:120]}"

    check("KIP-714: librdkafka pushes subscribed metrics, re-exported on /metrics",
          pushed_metrics)


# --------------------------------------------------------------------------------------------
# kafka-python


def config_checks(server: Server) -> None:
    """Dynamic broker configs and KIP-848 group configs through confluent-kafka's admin
    client (issue 17): accepted per broker, read-only keys refused with INVALID_REQUEST,
    described with source and synonyms; group configs bounded and described. (The client
    refuses an empty broker name, so the cluster default is covered by the in-process tests.)"""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, ConfigSource, ResourceType)
    admin = AdminClient({"bootstrap.servers": server.bootstrap})

    def alter(rtype, name: str, ops: list[tuple[str, str | None]]) -> None:
        entries = [ConfigEntry(k, v, incremental_operation=(
            AlterConfigOpType.SET if v is not None else AlterConfigOpType.DELETE))
            for k, v in ops]
        res = ConfigResource(rtype, name, incremental_configs=entries)
        for f in admin.incremental_alter_configs([res]).values():
            f.result(timeout=30)

    def describe(rtype, name: str) -> dict:
        fs = admin.describe_configs([ConfigResource(rtype, name)])
        return list(fs.values())[0].result(timeout=30)

    def broker_configs() -> str:
        alter(ResourceType.BROKER, "1", [("num.io.threads", "16"), ("background.threads", "4")])
        try:
            alter(ResourceType.BROKER, "1", [("node.id", "7")])
            expect(False, "node.id was altered")
        except KafkaException as e:
            err = e.args[0]
            expect(err.code() == 42 and "Cannot update these configs dynamically" in err.str(),
                   f"node.id refused with {err}")
        got = describe(ResourceType.BROKER, "1")
        io = got["num.io.threads"]
        expect(io.value == "16" and io.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value,
               f"num.io.threads {io.value} source {io.source}")
        # (The client keys synonyms by name, so only one of a key's synonyms survives; the
        # in-process tests check their order.)
        bg = got["background.threads"]
        expect(bg.value == "4" and bg.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value,
               f"background.threads {bg.value} source {bg.source}")
        expect(got["node.id"].is_read_only, "node.id not read-only")
        alter(ResourceType.BROKER, "1", [("num.io.threads", None), ("background.threads", None)])
        got = describe(ResourceType.BROKER, "1")
        expect(got["num.io.threads"].source == ConfigSource.DEFAULT_CONFIG.value,
               "num.io.threads not back to its default")
        return "set and deleted per broker, node.id refused (INVALID_REQUEST), described"

    check("confluent-kafka dynamic broker configs", broker_configs)

    def group_configs() -> str:
        group = unique("ck-group-cfg")
        alter(ResourceType.GROUP, group, [("consumer.heartbeat.interval.ms", "6000")])
        try:
            alter(ResourceType.GROUP, group, [("consumer.session.timeout.ms", "1000")])
            expect(False, "a session timeout below the broker's minimum was accepted")
        except KafkaException as e:
            expect(e.args[0].code() == 40, f"refused with {e.args[0]}")
        got = describe(ResourceType.GROUP, group)
        hb = got["consumer.heartbeat.interval.ms"]
        expect(hb.value == "6000" and hb.source == ConfigSource.GROUP_CONFIG.value,
               f"heartbeat interval {hb.value} source {hb.source}")
        st = got["consumer.session.timeout.ms"]
        expect(st.value == "45000" and st.source == ConfigSource.DEFAULT_CONFIG.value,
               f"session timeout {st.value} source {st.source}")
        return f"{group}: set, bounds enforced (INVALID_CONFIG), described with GROUP_CONFIG"

    check("confluent-kafka KIP-848 group configs", group_configs)


def kafka_python_checks(server: Server) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka import codec as kcodec
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    available = {"gzip": kcodec.has_gzip(), "snappy": kcodec.has_snappy(),
                 "lz4": kcodec.has_lz4(), "zstd": kcodec.has_zstd()}
    codecs = [None] + [c for c, ok in available.items() if ok]
    missing = [c for c, ok in available.items() if not ok]
    if missing:
        print(f"note: kafka-python lacks {missing} (pip packages not installed); skipped")

    for codec in codecs:
        def roundtrip(codec: str | None = codec) -> str:
            topic = unique(f"kp-{codec or 'none'}")
            admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[
                topic
            ].result(timeout=30)
            n = 2000
            producer = KafkaProducer(bootstrap_servers=server.bootstrap, compression_type=codec,
                                     acks="all", linger_ms=10)
            expected: dict[int, list] = {0: [], 1: []}
            futures = []
            try:
                for i in range(n):
                    part = i % 2
                    key, value = f"k{i}".encode(), f"kp-{codec}-{i}-".encode() + b"q" * (i % 80)
                    headers = [("h", f"{i}".encode()), ("dup", b"1"), ("dup", b"2")]
                    futures.append(producer.send(topic, key=key, value=value, partition=part,
                                                 headers=headers, timestamp_ms=1_600_000_000_000 + i))
                    expected[part].append((key, value, headers, 1_600_000_000_000 + i))
                producer.flush(timeout=60)
                offsets = [f.get(timeout=30) for f in futures]
            finally:
                producer.close(timeout=10)
            for part in range(2):
                offs = [md.offset for md in offsets if md.partition == part]
                expect(offs == list(range(len(offs))), f"partition {part}: acked offsets not dense")

            consumer = KafkaConsumer(bootstrap_servers=server.bootstrap, group_id=None,
                                     enable_auto_commit=False, auto_offset_reset="earliest",
                                     consumer_timeout_ms=1000)
            try:
                tps = [TopicPartition(topic, part) for part in range(2)]
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                got: dict[int, list] = {0: [], 1: []}
                deadline = time.time() + 60
                while sum(len(v) for v in got.values()) < n:
                    expect(time.time() < deadline,
                           f"consumed only {sum(len(v) for v in got.values())} of {n}")
                    for tp, records in consumer.poll(timeout_ms=500).items():
                        for r in records:
                            expect(r.offset == len(got[tp.partition]),
                                   f"partition {tp.partition}: offset {r.offset} out of sequence")
                            got[tp.partition].append(
                                (r.key, r.value, [(k, v) for k, v in r.headers], r.timestamp))
            finally:
                consumer.close()
            for part in range(2):
                expect(got[part] == expected[part],
                       f"partition {part}: {first_diff(got[part], expected[part])}")
            return f"{n} records with headers and timestamps"

        label = "without compression" if codec is None else f"compression {codec}"
        check(f"kafka-python KafkaProducer/KafkaConsumer(assign+seek_to_beginning) {label}",
              roundtrip)

    def admin_describes() -> str:
        # DescribeLogDirs and DescribeTopicPartitions (KIP-966) as kafka-python's admin calls them.
        from kafka.admin import KafkaAdminClient
        topic = unique("kp-describe")
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[
            topic
        ].result(timeout=30)
        producer = KafkaProducer(bootstrap_servers=server.bootstrap, acks="all")
        try:
            for _ in range(50):
                producer.send(topic, b"d" * 1000, partition=1)
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=10)
        kp = KafkaAdminClient(bootstrap_servers=server.bootstrap)
        try:
            dirs = kp.describe_log_dirs()
            expect(len(dirs) == 1 and len(dirs[0]["log_dirs"]) == 1, f"log dirs: {dirs}")
            d = dirs[0]["log_dirs"][0]
            expect(d["error_code"] == 0 and d["total_bytes"] >= d["usable_bytes"] > 0,
                   f"log dir: {d}")
            sizes = {p["partition_index"]: p["partition_size"]
                     for t in d["topics"] if t["name"] == topic for p in t["partitions"]}
            expect(sizes.get(0) == 0 and sizes.get(2) == 0 and sizes.get(1, 0) > 50_000,
                   f"partition sizes {sizes}")
            described = kp.describe_topic_partitions([topic])
            t = described["topics"][0]
            expect(t["error_code"] == 0 and t["name"] == topic, f"describe: {t}")
            expect([p["partition_index"] for p in t["partitions"]] == [0, 1, 2],
                   f"partitions {t['partitions']}")
            expect(all(p["leader_id"] >= 0 and p["isr_nodes"] for p in t["partitions"]),
                   f"leaders/ISR {t['partitions']}")
        finally:
            kp.close()
        return f"log dir {d['log_dir']} sizes {sizes}; 3 partitions described"

    check("kafka-python admin describe_log_dirs and describe_topic_partitions (KIP-966)",
          admin_describes)

    def admin_features() -> str:
        # UpdateFeatures forwarded to the controller; ApiVersions reports the new levels.
        from kafka.admin import KafkaAdminClient
        kp = KafkaAdminClient(bootstrap_servers=server.bootstrap)
        tv = "transaction.version"
        try:
            before = kp.describe_features()[tv]["finalized"]
            expect(before == (1, 1), f"default {tv}: {before}")
            res = kp.update_features({tv: 2}, validate_only=True)
            expect(res == {tv: "OK"}, f"validate_only: {res}")
            expect(kp.describe_features()[tv]["finalized"] == (1, 1), "validate_only wrote")
            res = kp.update_features({tv: 2})
            expect(res == {tv: "OK"}, f"upgrade: {res}")
            expect(kp.describe_features()[tv]["finalized"] == (2, 2), "upgrade not reported")
            try:
                kp.update_features({tv: 1})
                refused = "accepted"
            except Exception as e:  # kafka-python raises the top-level error (v2)
                refused = type(e).__name__
            expect(refused == "InvalidUpdateVersionError",
                   f"a downgrade without a downgrade type: {refused}")
            res = kp.update_features({tv: ("SAFE_DOWNGRADE", 1)})
            expect(res == {tv: "OK"}, f"safe downgrade: {res}")
            expect(kp.describe_features()[tv]["finalized"] == (1, 1), "downgrade not reported")
        finally:
            kp.close()
        return f"{tv} 1 -> 2 -> 1; a plain downgrade refused ({refused})"

    check("kafka-python admin update_features / describe_features (KIP-584)", admin_features)

    def broker_loggers() -> str:
        # The BROKER_LOGGER resource (kafka-configs --entity-type broker-loggers): levels listed,
        # changed at run time and taking effect (Kafka's request logger at DEBUG), then removed.
        from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient
        kp = KafkaAdminClient(bootstrap_servers=server.bootstrap)
        logger = "nagare_broker::request_logger"
        res = ConfigResource(ConfigResourceType.BROKER_LOGGER, "1")

        def levels() -> dict:
            d = kp.describe_configs([res], config_filter="all")["broker_logger"]["1"]
            return {k: v["value"] for k, v in d.items()}

        def logged() -> int:
            return server.output().count("completed request")

        try:
            before = levels()
            expect(before.get("root") == "INFO" and before.get(logger) == "INFO",
                   f"levels {before}")
            quiet = logged()
            out = kp.alter_configs([ConfigResource(ConfigResourceType.BROKER_LOGGER, "1",
                                                   configs={logger: (AlterConfigOp.SET, "DEBUG")})],
                                   raise_on_unknown=False)
            expect(out == {"broker_logger": {"1": "OK"}}, f"set: {out}")
            expect(levels().get(logger) == "DEBUG", "DEBUG not described")
            kp.list_topics()
            time.sleep(0.5)
            loud = logged()
            expect(loud > quiet, f"no request logged at DEBUG ({quiet} -> {loud})")
            out = kp.alter_configs([ConfigResource(ConfigResourceType.BROKER_LOGGER, "1",
                                                   configs={logger: (AlterConfigOp.DELETE, None)})],
                                   raise_on_unknown=False)
            expect(out == {"broker_logger": {"1": "OK"}}, f"delete: {out}")
            expect(levels().get(logger) == "INFO", "DELETE did not restore INFO")
            time.sleep(0.3)
            settled = logged()
            kp.list_topics()
            time.sleep(0.5)
            expect(logged() == settled, "requests still logged after DELETE")
        finally:
            kp.close()
        return f"{len(before)} loggers; {loud - quiet} requests logged at DEBUG, none after DELETE"

    check("kafka-python admin BROKER_LOGGER levels: describe, set DEBUG, delete", broker_loggers)

    def admin_sweep() -> str:
        # Every KafkaAdminClient call that applies to a single node, against real state: a topic
        # with records, an empty group with offsets, a committed transaction. The table in
        # docs/ADMIN_CLIENTS.md is this sweep's outcome.
        from confluent_kafka import Producer as CProducer
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import (ConfigResource, ConfigResourceType, KafkaAdminClient,
                                 MemberToRemove, OffsetSpec)
        from kafka.structs import OffsetAndMetadata
        topic = unique("kp-sweep")
        group = unique("kp-sweep-group")
        txn_id = unique("kp-sweep-tx")
        kp = KafkaAdminClient(bootstrap_servers=server.bootstrap)
        done: list[str] = []
        try:
            admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[
                topic].result(timeout=30)
            p = CProducer({"bootstrap.servers": server.bootstrap, "transactional.id": txn_id})
            p.init_transactions(30)
            p.begin_transaction()
            for i in range(20):
                p.produce(topic, value=f"v{i}".encode(), partition=i % 2)
            p.commit_transaction(30)
            tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
            c = KafkaConsumer(bootstrap_servers=server.bootstrap, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest")
            try:
                c.assign([tp0, tp1])
                c.commit({tp0: OffsetAndMetadata(5, "", -1), tp1: OffsetAndMetadata(6, "", -1)})
            finally:
                c.close()

            versions = kp.api_versions()
            expect(len(versions) > 0, "api_versions")
            done.append("api_versions")
            cluster = kp.describe_cluster()
            expect(len(cluster["brokers"]) == 1, f"describe_cluster {cluster}")
            done.append("describe_cluster")
            expect(topic in kp.list_topics(), "list_topics")
            done.append("list_topics")
            t = kp.describe_topics([topic])
            expect(len(t[0]["partitions"]) == 2, f"describe_topics {t}")
            done.append("describe_topics")
            offs = kp.list_partition_offsets({tp0: OffsetSpec.LATEST, tp1: OffsetSpec.EARLIEST})
            expect(offs[tp0].offset == 11 and offs[tp1].offset == 0, f"offsets {offs}")
            done.append("list_partition_offsets")
            groups = [g[0] if isinstance(g, tuple) else getattr(g, "group", g)
                      for g in kp.list_groups()]
            expect(any(group in str(g) for g in groups), f"list_groups {groups}")
            done.append("list_groups")
            dg = kp.describe_groups([group])
            expect(len(dg) == 1, f"describe_groups {dg}")
            done.append("describe_groups")
            lo = kp.list_group_offsets({group: None})[group]
            expect({k.partition: v.offset for k, v in lo.items()} == {0: 5, 1: 6}, f"{lo}")
            done.append("list_group_offsets")
            r = kp.alter_group_offsets(group, {tp0: OffsetAndMetadata(7, "", -1)})
            expect(all(e.errno == 0 for e in r.values()), f"alter_group_offsets {r}")
            done.append("alter_group_offsets")
            r = kp.reset_group_offsets(group, {tp1: OffsetSpec.EARLIEST})
            done.append("reset_group_offsets")
            lo = kp.list_group_offsets({group: None})[group]
            expect({k.partition: v.offset for k, v in lo.items()} == {0: 7, 1: 0}, f"{lo}")
            r = kp.delete_group_offsets(group, [tp1])
            expect(all(e.errno == 0 for e in r.values()), f"delete_group_offsets {r}")
            done.append("delete_group_offsets")
            try:
                kp.remove_group_members(group, [MemberToRemove(group_instance_id="nobody")])
                removed = "removed"
            except Exception as e:  # noqa: BLE001 - an unknown static member is refused
                removed = type(e).__name__
            done.append(f"remove_group_members ({removed})")
            prods = kp.describe_producers([tp0])
            expect(len(prods) == 1, f"describe_producers {prods}")
            done.append("describe_producers")
            txs = kp.list_transactions()
            expect(txn_id in str(txs), f"list_transactions {txs}")
            done.append("list_transactions")
            dt = kp.describe_transactions([txn_id])
            expect(txn_id in str(dt), f"describe_transactions {dt}")
            done.append("describe_transactions")
            hanging = kp.find_hanging_transactions()
            expect(not hanging, f"find_hanging_transactions {hanging}")
            done.append("find_hanging_transactions")
            q = kp.describe_metadata_quorum()
            expect(q is not None, "describe_metadata_quorum")
            done.append("describe_metadata_quorum")
            res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "1000000"})
            kp.alter_configs([res])
            kp.reset_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                             configs={"retention.ms": None})])
            cfg = kp.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                      config_filter="all")
            expect(cfg["topic"][topic]["retention.ms"]["value"] == "604800000",
                   f"reset_configs left {cfg['topic'][topic]['retention.ms']}")
            done.append("alter_configs/reset_configs/describe_configs")
            kp.elect_leaders(0, {topic: [0]}, raise_errors=False)
            done.append("elect_leaders")
            kp.delete_records({tp0: 3})
            done.append("delete_records")
            r = kp.delete_groups([group])
            done.append("delete_groups")
            # Not served (Kafka APIs Nagare does not implement): a clean client-side error.
            missing = []
            for name, call in [
                ("alter_partition_reassignments",
                 lambda: kp.alter_partition_reassignments({tp0: [1]})),
                ("list_partition_reassignments", lambda: kp.list_partition_reassignments()),
                ("list_config_resources", lambda: kp.list_config_resources()),
            ]:
                try:
                    call()
                    missing.append(f"{name}: accepted")
                except Exception as e:  # noqa: BLE001
                    missing.append(f"{name}: {type(e).__name__}")
            expect(server.alive(), "the server died on an unserved call")
        finally:
            kp.close()
        return f"{len(done)} calls ok: {', '.join(done)}; not served: {'; '.join(missing)}"

    check("kafka-python admin sweep: every KafkaAdminClient call", admin_sweep)



# --------------------------------------------------------------------------------------------
# aiokafka (asyncio client, its own protocol implementation)


def aiokafka_checks(server: Server) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    def run(coro):
        return asyncio.run(asyncio.wait_for(coro, timeout=90))

    def admin_lifecycle() -> str:
        async def go() -> str:
            topic = unique("aio-admin")
            admin = AIOKafkaAdminClient(bootstrap_servers=server.bootstrap)
            await admin.start()
            try:
                resp = await admin.create_topics(
                    [NewTopic(topic, num_partitions=2, replication_factor=1,
                              topic_configs={"retention.ms": "3600000"})])
                errors = [e[1] for e in resp.topic_errors]
                expect(errors == [0], f"create_topics errors {resp.topic_errors}")
                # A second create of the same name: TOPIC_ALREADY_EXISTS (36).
                again = await admin.create_topics([NewTopic(topic, 2, 1)])
                expect([e[1] for e in again.topic_errors] == [36],
                       f"duplicate create: {again.topic_errors}")
                described = await admin.describe_topics([topic])
                t = described[0]
                expect(t["error_code"] == 0 and len(t["partitions"]) == 2, f"describe {t}")
                cluster = await admin.describe_cluster()
                expect(len(cluster["brokers"]) == 1 and cluster["controller_id"] >= 0,
                       f"describe_cluster {cluster}")
                cfgs = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topic)])
                entries = {c[0]: c[1] for r in cfgs for res in r.resources for c in res[4]}
                expect(entries.get("retention.ms") == "3600000",
                       f"retention.ms {entries.get('retention.ms')}")
                await admin.create_partitions({topic: NewPartitions(total_count=3)})
                described = await admin.describe_topics([topic])
                expect(len(described[0]["partitions"]) == 3, f"partitions {described}")
                deleted = await admin.delete_topics([topic])
                expect([e[1] for e in deleted.topic_error_codes] == [0],
                       f"delete {deleted.topic_error_codes}")
                listed = await admin.list_topics()
                expect(topic not in listed, "deleted topic still listed")
            finally:
                await admin.close()
            return "create (dup → 36), describe, describe_cluster, configs, partitions 2→3, delete"
        return run(go())

    check("aiokafka admin create/describe/configs/create_partitions/delete", admin_lifecycle)

    for codec in (None, "gzip", "lz4", "zstd", "snappy"):
        def roundtrip(codec: str | None = codec) -> str:
            async def go() -> str:
                topic = unique(f"aio-{codec or 'none'}")
                admin = AIOKafkaAdminClient(bootstrap_servers=server.bootstrap)
                await admin.start()
                try:
                    await admin.create_topics([NewTopic(topic, num_partitions=2,
                                                        replication_factor=1)])
                finally:
                    await admin.close()
                n = 1000
                producer = AIOKafkaProducer(bootstrap_servers=server.bootstrap,
                                            compression_type=codec, acks="all",
                                            enable_idempotence=True, linger_ms=5)
                await producer.start()
                expected: dict[int, list] = {0: [], 1: []}
                try:
                    futs = []
                    for i in range(n):
                        part = i % 2
                        key, value = f"k{i}".encode(), f"aio-{codec}-{i}".encode() * (1 + i % 7)
                        headers = [("h", str(i).encode())]
                        futs.append(await producer.send(topic, value, key=key, partition=part,
                                                        headers=headers))
                        expected[part].append((key, value, headers))
                    metas = await asyncio.gather(*futs)
                finally:
                    await producer.stop()
                for part in range(2):
                    offs = sorted(m.offset for m in metas if m.partition == part)
                    expect(offs == list(range(n // 2)), f"partition {part}: offsets not dense")
                group = unique("aio-group")
                consumer = AIOKafkaConsumer(topic, bootstrap_servers=server.bootstrap,
                                            group_id=group, auto_offset_reset="earliest",
                                            enable_auto_commit=False)
                await consumer.start()
                got: dict[int, list] = {0: [], 1: []}
                try:
                    deadline = time.time() + 60
                    while sum(len(v) for v in got.values()) < n:
                        expect(time.time() < deadline,
                               f"consumed {sum(len(v) for v in got.values())} of {n}")
                        batches = await consumer.getmany(timeout_ms=500)
                        for tp, records in batches.items():
                            for r in records:
                                expect(r.offset == len(got[tp.partition]),
                                       f"offset {r.offset} out of sequence")
                                got[tp.partition].append((r.key, r.value, list(r.headers)))
                    await consumer.commit()
                    committed = {p: await consumer.committed(TopicPartition(topic, p))
                                 for p in range(2)}
                finally:
                    await consumer.stop()
                for part in range(2):
                    expect(got[part] == expected[part],
                           f"partition {part}: {first_diff(got[part], expected[part])}")
                expect(committed == {0: n // 2, 1: n // 2}, f"committed {committed}")
                # The group's offsets as an admin sees them; then DeleteRecords moves the start.
                admin = AIOKafkaAdminClient(bootstrap_servers=server.bootstrap)
                await admin.start()
                try:
                    offsets = await admin.list_consumer_group_offsets(group)
                    expect({tp.partition: o.offset for tp, o in offsets.items()}
                           == {0: n // 2, 1: n // 2}, f"group offsets {offsets}")
                    groups = [g[0] for g in await admin.list_consumer_groups()]
                    expect(group in groups, f"{group} not in {groups}")
                    low = await admin.delete_records(
                        {TopicPartition(topic, 0): RecordsToDelete(before_offset=100)})
                    expect(list(low.values()) == [100], f"delete_records low watermark {low}")
                finally:
                    await admin.close()
                return f"{n} records, idempotent, group commit {committed}"
            return run(go())

        label = "without compression" if codec is None else f"compression {codec}"
        check(f"aiokafka producer + group consumer, commit, group offsets ({label})", roundtrip)


# --------------------------------------------------------------------------------------------
# kafkajs (Node.js; tests/compat/kafkajs/compat.mjs, installed with npm by scripts/test.sh)


def kafkajs_checks(server: Server) -> None:
    here = REPO / "tests" / "compat" / "kafkajs"
    node = shutil.which("node")
    if node is None or not (here / "node_modules" / "kafkajs").exists():
        raise RuntimeError("node or kafkajs missing: run `npm ci --prefix tests/compat/kafkajs`")
    proc = subprocess.run([node, str(here / "compat.mjs"), server.bootstrap],
                          capture_output=True, text=True, timeout=300)
    seen = 0
    for line in proc.stdout.splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        seen += 1

        def reported(r: dict = r) -> str:
            expect(r["ok"], r["detail"])
            return r["detail"]

        check(r["name"], reported)
    expect(seen > 0 and (proc.returncode == 0) == all(r[1] for r in RESULTS[-seen:]),
           f"kafkajs exited {proc.returncode} after {seen} checks: {proc.stderr[-2000:]}")


# --------------------------------------------------------------------------------------------
# Consumer groups (classic protocol): confluent-kafka and kafka-python


def group_checks(server: Server) -> None:
    import threading

    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique("groups")
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": server.bootstrap})
    for i in range(400):
        producer.produce(topic, value=f"g{i}".encode(), partition=i % 4)
    producer.flush(30)

    def confluent_group() -> str:
        group = unique("ck-group")
        seen: dict[str, list[str]] = {}
        owned: dict[str, set[int]] = {}
        lock = threading.Lock()
        total = [0]

        def member(name: str) -> None:
            c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.subscribe([topic])
            deadline = time.time() + 40
            mine: list[str] = []
            while time.time() < deadline:
                m = c.poll(0.3)
                if m is not None and not m.error():
                    mine.append(m.value().decode())
                    with lock:
                        total[0] += 1
                with lock:
                    if total[0] >= 400 and time.time() > deadline - 35:
                        break
            owned[name] = {tp.partition for tp in c.assignment()}
            if mine:
                c.commit(asynchronous=False)
            seen[name] = mine
            c.close()

        threads = [threading.Thread(target=member, args=(f"m{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        values = sorted(v for vs in seen.values() for v in vs)
        expect(values == sorted(f"g{i}" for i in range(400)),
               f"each record exactly once across the group: got {len(values)}")
        parts = [owned[k] for k in sorted(owned)]
        expect(all(parts), f"both members owned partitions: {parts}")
        expect(not (parts[0] & parts[1]) and (parts[0] | parts[1]) == {0, 1, 2, 3},
               f"ownership exact: {parts}")
        c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group})
        committed = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=15)
        offsets = sorted(tp.offset for tp in committed)
        expect(offsets == [100, 100, 100, 100], f"committed offsets {offsets}")
        # Commit metadata strings round-trip through OffsetFetch.
        c.commit(offsets=[TopicPartition(topic, 0, 42, metadata="nagare-meta")], asynchronous=False)
        back = c.committed([TopicPartition(topic, 0)], timeout=15)[0]
        expect(back.offset == 42 and back.metadata == "nagare-meta",
               f"metadata round trip: {back.offset} {back.metadata!r}")
        c.close()
        groups = [g.group_id for g in admin.list_consumer_groups().result(15).valid]
        expect(group in groups, f"list_consumer_groups: {groups}")
        desc = admin.describe_consumer_groups([group])[group].result(15)
        expect(str(desc.state).endswith("EMPTY"), f"describe state {desc.state}")
        return f"2 members shared 4 partitions {parts}, 400 records once, commits + metadata, list/describe"

    def kafka_python_group() -> str:
        from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition as KTP  # noqa: F401
        group = unique("kp-group")
        c = KafkaConsumer(topic, bootstrap_servers=server.bootstrap, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          consumer_timeout_ms=15000)
        got = []
        for m in c:
            got.append(m.value.decode())
            if len(got) == 400:
                break
        expect(len(got) == 400, f"consumed {len(got)} of 400")
        c.commit()
        c.close()
        c2 = KafkaConsumer(bootstrap_servers=server.bootstrap, group_id=group, enable_auto_commit=False)
        committed = sorted(c2.committed(KTP(topic, p)) for p in range(4))
        c2.close()
        expect(committed == [100, 100, 100, 100], f"committed {committed}")
        return "subscribe, 400 records, commit, committed offsets read back"

    check("confluent-kafka group consumers (subscribe, commit, committed, metadata)", confluent_group)
    check("kafka-python group consumer (subscribe, commit, committed)", kafka_python_group)

def kip848_checks(server: Server) -> None:
    import threading

    from confluent_kafka import Consumer, ConsumerGroupType, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique("kip848")
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": server.bootstrap})
    for i in range(200):
        producer.produce(topic, value=f"k{i}".encode(), partition=i % 4)
    producer.flush(30)

    def consumer_protocol_group() -> str:
        group = unique("ck-848")
        seen: dict[str, list[str]] = {}
        owned: dict[str, set[int]] = {}
        lock = threading.Lock()
        total = [0]
        both = threading.Barrier(2)

        def member(name: str) -> None:
            c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                          "group.protocol": "consumer", "auto.offset.reset": "earliest",
                          "enable.auto.commit": False})

            def on_revoke(consumer, _partitions) -> None:
                # Commit what was read before giving partitions away (OffsetCommit with the
                # member epoch, mid-reconciliation), so that the next owner resumes there.
                try:
                    consumer.commit(asynchronous=False)
                except Exception:  # noqa: BLE001 - nothing consumed yet
                    pass

            c.subscribe([topic], on_revoke=on_revoke)
            deadline = time.time() + 60
            mine: list[str] = []
            while time.time() < deadline:
                m = c.poll(0.3)
                if m is not None and not m.error():
                    mine.append(m.value().decode())
                    with lock:
                        total[0] += 1
                parts = {tp.partition for tp in c.assignment()}
                with lock:
                    # Wait until everything was read and the partitions are split in two.
                    if total[0] >= 200 and parts and len(parts) < 4:
                        break
            owned[name] = {tp.partition for tp in c.assignment()}
            try:
                c.commit(asynchronous=False)
            except Exception:  # noqa: BLE001 - everything was committed on revocation
                pass
            seen[name] = mine
            both.wait(30)
            c.close()

        threads = [threading.Thread(target=member, args=(f"m{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        values = sorted(v for vs in seen.values() for v in vs)
        expect(values == sorted(f"k{i}" for i in range(200)),
               f"each record exactly once across the group: got {len(values)}")
        parts = [owned[k] for k in sorted(owned)]
        expect(all(parts), f"both members owned partitions: {parts}")
        expect(not (parts[0] & parts[1]) and (parts[0] | parts[1]) == {0, 1, 2, 3},
               f"ownership exact: {parts}")
        c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group})
        committed = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=15)
        c.close()
        offsets = sorted(tp.offset for tp in committed)
        expect(offsets == [50, 50, 50, 50], f"committed offsets {offsets}")
        listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(15).valid
        expect(group in [g.group_id for g in listed], f"listed as a consumer-type group: {listed}")
        desc = admin.describe_consumer_groups([group])[group].result(15)
        expect(str(desc.state).endswith("EMPTY"), f"describe state {desc.state}")
        return (f"group.protocol=consumer: 2 members split 4 partitions {parts}, 200 records once "
                "(commit on revoke), committed offsets, list by type, describe")

    check("confluent-kafka KIP-848 consumer group (group.protocol=consumer)", consumer_protocol_group)

# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Transactions (KIP-98): transactional producers, read_committed consumers, fencing, offsets


def read_partitions(server: Server, topic: str, partitions: int, isolation: str,
                    expected_total: int, timeout: float = 60,
                    done: Callable[[dict[int, list]], bool] | None = None) -> dict[int, list]:
    """Reads every partition of `topic` from the beginning with confluent-kafka under
    `isolation` until `expected_total` records came (or `done` says so), then a little longer
    to catch extras."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": unique("tx-read"),
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "enable.partition.eof": False})
    got: dict[int, list] = {p: [] for p in range(partitions)}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.time() + timeout
        settle = None
        while True:
            n = sum(len(v) for v in got.values())
            finished = done(got) if done is not None else n >= expected_total
            if finished and settle is None:
                settle = time.time() + 1.5
            if settle is not None and time.time() > settle:
                break
            expect(time.time() < deadline,
                   f"{isolation}: consumed {n} of {expected_total} from {topic}")
            m = c.poll(0.2)
            if m is None:
                continue
            expect(m.error() is None, f"consume error {m.error()}")
            got[m.partition()].append(m.value().decode())
    finally:
        c.close()
    return got


def transaction_checks(server: Server) -> None:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    topic_a, topic_b = unique("tx-a"), unique("tx-b")
    fs = admin.create_topics([NewTopic(topic_a, num_partitions=3, replication_factor=1),
                              NewTopic(topic_b, num_partitions=2, replication_factor=1)])
    for f in fs.values():
        f.result(timeout=30)

    def commit_and_abort() -> str:
        p = Producer({"bootstrap.servers": server.bootstrap,
                      "transactional.id": unique("ck-txn"), "linger.ms": 5})
        p.init_transactions(30)
        want: dict[str, dict[int, list]] = {topic_a: {i: [] for i in range(3)},
                                            topic_b: {i: [] for i in range(2)}}
        every: dict[str, dict[int, list]] = {topic_a: {i: [] for i in range(3)},
                                             topic_b: {i: [] for i in range(2)}}
        for txn, (count, commit) in enumerate([(30, True), (20, False), (10, True)]):
            p.begin_transaction()
            for i in range(count):
                topic, parts = (topic_a, 3) if i % 2 == 0 else (topic_b, 2)
                part = i % parts
                value = f"t{txn}-{i}"
                p.produce(topic, value=value.encode(), key=str(i).encode(), partition=part)
                every[topic][part].append(value)
                if commit:
                    want[topic][part].append(value)
            if commit:
                p.commit_transaction(30)
            else:
                # Abort purges what is still queued: flush first, so that the aborted
                # records are in the log for read_committed to skip.
                expect(p.flush(30) == 0, "aborted transaction's records not delivered")
                p.abort_transaction(30)
        committed_n = sum(len(v) for t in want.values() for v in t.values())
        all_n = sum(len(v) for t in every.values() for v in t.values())
        for topic, parts in ((topic_a, 3), (topic_b, 2)):
            rc = read_partitions(server, topic, parts, "read_committed",
                                 sum(len(v) for v in want[topic].values()))
            for part in range(parts):
                expect(rc[part] == want[topic][part],
                       f"read_committed {topic}[{part}]: {first_diff(rc[part], want[topic][part])}")
            ru = read_partitions(server, topic, parts, "read_uncommitted",
                                 sum(len(v) for v in every[topic].values()))
            for part in range(parts):
                expect(ru[part] == every[topic][part],
                       f"read_uncommitted {topic}[{part}]: {first_diff(ru[part], every[topic][part])}")
        return (f"3 transactions over 5 partitions: read_committed saw the {committed_n} "
                f"committed records in order, read_uncommitted all {all_n}")

    def zombie_fencing() -> str:
        txn_id = unique("ck-zombie")
        topic = topic_a
        old = Producer({"bootstrap.servers": server.bootstrap, "transactional.id": txn_id})
        old.init_transactions(30)
        old.begin_transaction()
        old.produce(topic, value=b"zombie", partition=0)
        expect(old.flush(30) == 0, "zombie's record not delivered")
        new = Producer({"bootstrap.servers": server.bootstrap, "transactional.id": txn_id})
        new.init_transactions(60)
        fenced = ""
        try:
            old.commit_transaction(30)
        except KafkaException as e:
            err = e.args[0]
            fenced = err.name()
            expect(err.fatal() or "FENCED" in fenced or "EPOCH" in fenced,
                   f"the zombie's commit failed with a non-fencing error {err}")
        expect(fenced != "", "the zombie's commit succeeded after it was fenced")
        new.begin_transaction()
        new.produce(topic, value=b"successor", partition=0)
        new.commit_transaction(30)
        rc = read_partitions(server, topic, 3, "read_committed", 0, timeout=30,
                             done=lambda got: "successor" in got[0])
        expect("zombie" not in rc[0], "read_committed saw the fenced producer's record")
        expect("successor" in rc[0], "read_committed misses the new producer's commit")
        return f"the first producer's commit failed with {fenced}; its record stayed invisible"

    def send_offsets() -> str:
        src, dst, group = unique("tx-src"), unique("tx-dst"), unique("tx-group")
        fs = admin.create_topics([NewTopic(src, num_partitions=1, replication_factor=1),
                                  NewTopic(dst, num_partitions=1, replication_factor=1)])
        for f in fs.values():
            f.result(timeout=30)
        seed = Producer({"bootstrap.servers": server.bootstrap})
        for i in range(50):
            seed.produce(src, value=f"in-{i}".encode(), partition=0)
        expect(seed.flush(30) == 0, "input not delivered")
        c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "isolation.level": "read_committed"})
        p = Producer({"bootstrap.servers": server.bootstrap,
                      "transactional.id": unique("ck-ctp")})
        p.init_transactions(30)
        try:
            c.subscribe([src])
            done = 0
            deadline = time.time() + 60
            while done < 50:
                expect(time.time() < deadline, f"transformed only {done} of 50")
                msgs = c.consume(num_messages=20, timeout=1.0)
                msgs = [m for m in msgs if m.error() is None]
                if not msgs:
                    continue
                p.begin_transaction()
                for m in msgs:
                    p.produce(dst, value=m.value().upper(), partition=0)
                p.send_offsets_to_transaction(c.position(c.assignment()),
                                              c.consumer_group_metadata(), 30)
                p.commit_transaction(30)
                done += len(msgs)
        finally:
            c.close()
        check_c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                            "enable.auto.commit": False})
        try:
            committed = check_c.committed([TopicPartition(src, 0)], timeout=20)
        finally:
            check_c.close()
        expect(committed[0].offset == 50, f"committed offset {committed[0].offset}, want 50")
        out = read_partitions(server, dst, 1, "read_committed", 50)
        want = [f"IN-{i}" for i in range(50)]
        expect(out[0] == want, f"output: {first_diff(out[0], want)}")
        return "50 records transformed; output and the group's offset 50 committed together"

    def kafka_python_txn() -> str:
        from kafka import KafkaProducer

        topic = topic_b
        p = KafkaProducer(bootstrap_servers=server.bootstrap,
                          transactional_id=unique("kp-txn"))
        p.init_transactions()
        p.begin_transaction()
        for i in range(10):
            p.send(topic, value=f"kp-commit-{i}".encode(), partition=1)
        p.commit_transaction()
        p.begin_transaction()
        for i in range(10):
            p.send(topic, value=f"kp-abort-{i}".encode(), partition=1)
        p.flush()  # into the log, so that read_committed has something to skip
        p.abort_transaction()
        p.close()
        rc = read_partitions(server, topic, 2, "read_committed", 0, timeout=30,
                             done=lambda got: "kp-commit-9" in got[1])
        mine = [v for v in rc[1] if v.startswith("kp-")]
        want = [f"kp-commit-{i}" for i in range(10)]
        expect(mine == want, f"read_committed: {first_diff(mine, want)}")
        ru = read_partitions(server, topic, 2, "read_uncommitted", 0, timeout=30,
                             done=lambda got: "kp-abort-9" in got[1])
        expect("kp-abort-9" in ru[1], "the aborted records are not in the log")
        return ("kafka-python committed 10 and aborted 10 (in the log); read_committed saw "
                "the 10 committed")

    def killed_producer_times_out() -> str:
        topic = unique("tx-timeout")
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[
            topic].result(timeout=30)
        # A producer process that opens a transaction, writes, and is SIGKILLed.
        child = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": "{server.bootstrap}", "transactional.id": "{unique('ck-dead')}",
              "transaction.timeout.ms": 3000}})
p.init_transactions(30)
p.begin_transaction()
for i in range(5):
    p.produce("{topic}", value=b"doomed-%d" % i, partition=0)
p.flush(30)
print("open", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline() if child.stdout else ""
            expect(line.strip() == "open", f"the producer process said {line!r}")
        finally:
            child.kill()
            child.wait()
        killed = time.time()
        # A committed transaction after the open one stays invisible until the coordinator
        # aborts the dead producer's transaction (timeout, then the cleanup interval).
        p = Producer({"bootstrap.servers": server.bootstrap,
                      "transactional.id": unique("ck-after")})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce(topic, value=b"after", partition=0)
        p.commit_transaction(30)
        got = read_partitions(server, topic, 1, "read_committed", 0, timeout=60,
                              done=lambda g: "after" in g[0])
        expect("after" in got[0], "the LSO stayed behind the dead producer's transaction")
        expect(not any(v.startswith("doomed") for v in got[0]),
               f"read_committed saw the dead producer's records: {got[0]}")
        return (f"the SIGKILLed producer's transaction was aborted and the LSO moved on "
                f"{time.time() - killed:.1f} s after the kill")

    check("confluent-kafka transactions: commit/abort over 2 topics, read_committed vs "
          "read_uncommitted", commit_and_abort)
    check("confluent-kafka transactions: zombie fencing", zombie_fencing)
    check("confluent-kafka consume-transform-produce with send_offsets_to_transaction",
          send_offsets)
    check("kafka-python transactional producer (commit, abort)", kafka_python_txn)
    check("confluent-kafka transactions: a SIGKILLed producer's transaction is aborted at its "
          "timeout", killed_producer_times_out)


STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def acl_checks(server: Server) -> None:
    """On a server with the StandardAuthorizer and allow.everyone.if.no.acl.found=true: ACLs
    through confluent-kafka's AdminClient, and DENY ACLs for User:ANONYMOUS (every PLAINTEXT
    client) refusing a confluent-kafka producer and a kcat consumer until they are deleted."""
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                       AclPermissionType, AdminClient, NewTopic,
                                       ResourcePatternType, ResourceType)

    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    no_write = unique("acl-w")
    no_read = unique("acl-r")
    for f in admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)
                                  for t in (no_write, no_read)], operation_timeout=30).values():
        f.result(timeout=30)
    kcat(server, "-P", "-t", no_read, "-p", "0", stdin="readable\n")
    bindings = [
        AclBinding(ResourceType.TOPIC, no_write, ResourcePatternType.LITERAL, "User:ANONYMOUS",
                   "*", AclOperation.WRITE, AclPermissionType.DENY),
        AclBinding(ResourceType.TOPIC, no_read, ResourcePatternType.LITERAL, "User:ANONYMOUS",
                   "*", AclOperation.READ, AclPermissionType.DENY),
    ]
    mine = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:ANONYMOUS",
                            None, AclOperation.ANY, AclPermissionType.DENY)

    def produce() -> KafkaError | None:
        errors: list = []
        p = Producer({"bootstrap.servers": server.bootstrap, "message.timeout.ms": 10000,
                      "retries": 0})
        p.produce(no_write, value=b"v", partition=0,
                  on_delivery=lambda err, msg: errors.append(err))
        p.flush(20)
        expect(len(errors) == 1, f"delivery reports: {errors}")
        return errors[0]

    def create() -> str:
        for b, f in admin.create_acls(bindings, request_timeout=30).items():
            f.result(timeout=30)
        return f"DENY WRITE on {no_write}, DENY READ on {no_read} for User:ANONYMOUS"

    def describe() -> str:
        got = admin.describe_acls(mine, request_timeout=30).result(timeout=30)
        expect(sorted(map(str, got)) == sorted(map(str, bindings)), f"described {got}")
        match = admin.describe_acls(AclBindingFilter(
            ResourceType.TOPIC, no_write, ResourcePatternType.MATCH, None, None,
            AclOperation.ANY, AclPermissionType.ANY), request_timeout=30).result(timeout=30)
        expect([b.name for b in match] == [no_write], f"MATCH {no_write}: {match}")
        return f"{len(got)} ACLs described, MATCH finds the literal one"

    def producer_refused() -> str:
        err = produce()
        expect(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
               f"produce to {no_write}: {err}")
        return str(err)

    def kcat_refused() -> str:
        try:
            out = kcat(server, "-C", "-t", no_read, "-p", "0", "-e", "-o", "beginning",
                       timeout=30)
        except RuntimeError as e:
            expect("authoriz" in str(e).lower(), f"kcat failed otherwise: {e}")
            return str(e).splitlines()[-1][:200]
        raise AssertionError(f"kcat consumed a DENY READ topic: {out!r}")

    def delete_restores() -> str:
        for f, fut in admin.delete_acls([mine], request_timeout=30).items():
            deleted = fut.result(timeout=30)
            expect(len(deleted) == 2, f"deleted {deleted}")
        left = admin.describe_acls(mine, request_timeout=30).result(timeout=30)
        expect(not left, f"left after delete: {left}")
        err = produce()
        expect(err is None, f"produce after the DENY ACL was deleted: {err}")
        out = kcat(server, "-C", "-t", no_read, "-p", "0", "-e", "-o", "beginning")
        expect(out.strip() == "readable", f"kcat read {out!r}")
        return "producer and kcat work again"

    check("ACLs: confluent-kafka create_acls", create)
    check("ACLs: confluent-kafka describe_acls (ANY and MATCH filters)", describe)
    check("ACLs: DENY WRITE fails a confluent-kafka producer with TOPIC_AUTHORIZATION_FAILED",
          producer_refused)
    check("ACLs: DENY READ fails kcat's consume", kcat_refused)
    check("ACLs: confluent-kafka delete_acls restores access", delete_restores)


def secured_checks(binary: Path) -> None:
    """A second server, with the StandardAuthorizer, for the ACL checks."""
    server = Server(binary, (f"authorizer.class.name={STANDARD_AUTHORIZER}",
                             "allow.everyone.if.no.acl.found=true"))
    try:
        server.start()
        acl_checks(server)
        if not server.alive():
            raise RuntimeError("the secured nagare exited")
    except Exception as e:  # noqa: BLE001
        RESULTS.append(("secured server", False, str(e)))
        print(f"FAIL secured server: {type(e).__name__}: {e}\n{server.output()[-8000:]}",
              flush=True)
    finally:
        server.stop()
def tiered_checks(binary: Path) -> None:
    """Issue 16 with confluent-kafka: a server with tiered storage on a `file://` store, a topic
    written well past its local retention, read back from offset 0 byte for byte while only the
    tail is on the local disk (the old segments are fetched from the store)."""
    store = Path(tempfile.mkdtemp(prefix="nagare-compat-store-"))
    server = Server(binary, ("remote.log.storage.system.enable=true",
                             f"rsm.config.url=file://{store}",
                             "remote.log.manager.task.interval.ms=200",
                             "log.retention.check.interval.ms=200"))
    try:
        server.start()
        check("tiered storage: confluent-kafka reads a topic from offset 0 past local retention",
              lambda: tiered_read_back(server, store))
        if not server.alive():
            raise RuntimeError("the tiered nagare exited")
    except Exception as e:  # noqa: BLE001
        RESULTS.append(("tiered server", False, str(e)))
        print(f"FAIL tiered server: {type(e).__name__}: {e}\n{server.output()[-8000:]}",
              flush=True)
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


def tiered_read_back(server: Server, store: Path) -> str:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique("tiered")
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "segment.bytes": "16384", "remote.storage.enable": "true",
        "local.retention.bytes": "49152", "file.delete.delay.ms": "0"})])[topic].result(30)
    values = [(f"{i:06d}-" + "v" * (i % 97)).encode() + bytes([i % 256]) for i in range(1500)]
    producer = Producer({"bootstrap.servers": server.bootstrap, "batch.size": 4096,
                         "linger.ms": 1, "compression.type": "none", "acks": "all"})
    failures: list[str] = []
    for v in values:
        producer.produce(topic, v, partition=0,
                         on_delivery=lambda err, _m: err and failures.append(str(err)))
        producer.poll(0)
    expect(producer.flush(60) == 0 and not failures, f"produce failed: {failures[:3]}")
    # The local log keeps only its tail: its oldest segment no longer starts at offset 0.
    part = server.dir / "data" / f"{topic}-0"
    deadline = time.time() + 60
    local_start = 0
    while time.time() < deadline:
        bases = sorted(int(f.stem) for f in part.glob("*.log"))
        local_start = bases[0] if bases else 0
        if local_start > 0:
            break
        time.sleep(0.2)
    expect(local_start > 0, "local retention never removed the uploaded segments")
    expect(any(f.suffix == ".log" for f in store.rglob("*")), "no segment in the store")
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": unique("tiered-g"),
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.time() + 60
    while len(got) < len(values) and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None:
            continue
        expect(m.error() is None, f"consume error: {m.error()}")
        expect(m.offset() == len(got), f"offset {m.offset()} where {len(got)} was next")
        got.append(m.value())
    consumer.close()
    expect(got == values, f"read back differs: {first_diff(got, values)}")
    return (f"{len(values)} records read back from offset 0 (local log starts at {local_start},"
            f" the rest from the file:// store), byte for byte")


# --------------------------------------------------------------------------------------------
# SASL (SASL_PLAINTEXT listener: PLAIN from JAAS, SCRAM from the metadata log)


def sasl_conf(server: Server, mechanism: str, user: str, password: str) -> dict:
    return {"bootstrap.servers": server.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password}


def read_values(conf: dict, topic: str, want: set[str], timeout: float = 20) -> set[str]:
    """Values of partition 0 of `topic`, read from the beginning until `want` is seen."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({**conf, "group.id": unique("sasl-g"), "enable.auto.commit": False})
    got: set[str] = set()
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.time() + timeout
        while time.time() < deadline and not want <= got:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise RuntimeError(f"consume error: {m.error()}")
            got.add(m.value().decode())
    finally:
        c.close()
    return got


def sasl_checks(server: Server) -> None:
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    topic = unique("sasl")
    plain_alice = ("PLAIN", "alice", "alice-secret")
    scram512_boot = ("SCRAM-SHA-512", "scram512", SCRAM512_PASSWORD)
    scram256_boot = ("SCRAM-SHA-256", "scram256", SCRAM256_PASSWORD)
    scram512_new = ("SCRAM-SHA-512", "created512", "created512-secret")

    def admin_over_scram() -> str:
        # The --add-scram admin logs in, creates a topic and a new SCRAM user
        # (AlterUserScramCredentials through the controller), and describes the users.
        admin = AdminClient(sasl_conf(server, *scram512_boot))
        for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            f.result(30)
        alteration = UserScramCredentialUpsertion(
            "created512", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
            scram512_new[2].encode())
        for f in admin.alter_user_scram_credentials([alteration]).values():
            f.result(30)
        described = admin.describe_user_scram_credentials().result(30)
        infos = {u: sorted((i.mechanism.name, i.iterations) for i in d.scram_credential_infos)
                 for u, d in described.items()}
        expect(infos.get("created512") == [("SCRAM_SHA_512", 8192)], f"described {infos}")
        expect(infos.get("scram256") == [("SCRAM_SHA_256", 8192)], f"described {infos}")
        expect(infos.get("scram512") == [("SCRAM_SHA_512", 4096)], f"described {infos}")
        return f"topic {topic} created, user created512 added; users {sorted(infos)}"

    def confluent_roundtrip(creds: tuple[str, str, str]) -> Callable[[], str]:
        def run() -> str:
            conf = sasl_conf(server, *creds)
            errors: list = []
            p = Producer({**conf, "message.timeout.ms": 15000})
            values = [f"ck-{creds[1]}-{i}" for i in range(10)]
            for v in values:
                p.produce(topic, value=v.encode(), partition=0,
                          on_delivery=lambda e, m: errors.append(e) if e else None)
            expect(p.flush(30) == 0 and not errors, f"delivery errors {errors}")
            got = read_values(conf, topic, set(values))
            expect(set(values) <= got, f"read back {len(set(values) & got)} of {len(values)}")
            return f"{creds[0]} as {creds[1]}: 10 records produced and consumed"
        return run

    def confluent_wrong_password() -> str:
        auth_errors: list = []
        conf = {**sasl_conf(server, "SCRAM-SHA-512", "scram512", "wrong"),
                "message.timeout.ms": 4000,
                "error_cb": lambda e: auth_errors.append(e)}
        p = Producer(conf)
        delivery: list = []
        p.produce(topic, value=b"ck-intruder", partition=0,
                  on_delivery=lambda e, m: delivery.append(e))
        p.flush(10)
        expect(delivery and delivery[0] is not None, f"the write was delivered: {delivery}")
        expect(any(e.code() == KafkaError._AUTHENTICATION for e in auth_errors),
               f"no authentication error reported: {auth_errors}")
        got = read_values(sasl_conf(server, *plain_alice), topic, {"never"}, timeout=3)
        expect("ck-intruder" not in got, "the refused producer's record was written")
        return f"refused: {auth_errors[0].str()[:100]}"

    def kcat_sasl(creds: tuple[str, str, str], *args: str, stdin: str | None = None,
                  ok: bool = True) -> subprocess.CompletedProcess:
        exe = shutil.which("kcat") or shutil.which("kafkacat")
        if exe is None:
            raise RuntimeError("kcat is not installed")
        proc = subprocess.run(
            [exe, "-b", server.sasl_bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
             "-X", f"sasl.mechanisms={creds[0]}", "-X", f"sasl.username={creds[1]}",
             "-X", f"sasl.password={creds[2]}", *args],
            input=stdin, capture_output=True, text=True, timeout=60)
        if ok and proc.returncode != 0:
            raise RuntimeError(f"kcat exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def kcat_roundtrip(creds: tuple[str, str, str]) -> Callable[[], str]:
        def run() -> str:
            values = [f"kcat-{creds[1]}-{i}" for i in range(10)]
            kcat_sasl(creds, "-P", "-t", topic, "-p", "0", stdin="\n".join(values) + "\n")
            out = kcat_sasl(creds, "-C", "-t", topic, "-p", "0", "-e", "-o", "beginning").stdout
            got = set(out.splitlines())
            expect(set(values) <= got, f"read back {len(set(values) & got)} of {len(values)}")
            return f"{creds[0]} as {creds[1]}: 10 lines produced and consumed"
        return run

    def kcat_wrong_password() -> str:
        proc = kcat_sasl(("PLAIN", "alice", "wrong"), "-P", "-t", topic, "-p", "0",
                         "-X", "message.timeout.ms=4000", stdin="kcat-intruder\n", ok=False)
        got = read_values(sasl_conf(server, *plain_alice), topic, {"never"}, timeout=3)
        expect("kcat-intruder" not in got, "the refused kcat's line was written")
        expect(proc.returncode != 0 or "uthentication" in proc.stderr,
               f"kcat exited {proc.returncode}: {proc.stderr[-300:]}")
        lines = [ln for ln in proc.stderr.splitlines() if "uthentication" in ln]
        return f"refused, nothing written: {(lines or [proc.stderr.strip()])[0][:120]}"

    def kafka_python_roundtrip(creds: tuple[str, str, str]) -> Callable[[], str]:
        def run() -> str:
            from kafka import KafkaConsumer, KafkaProducer, TopicPartition
            conf = dict(bootstrap_servers=server.sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism=creds[0], sasl_plain_username=creds[1],
                        sasl_plain_password=creds[2])
            values = [f"kp-{creds[1]}-{i}" for i in range(10)]
            p = KafkaProducer(**conf)
            for v in values:
                p.send(topic, value=v.encode(), partition=0).get(timeout=30)
            p.close()
            c = KafkaConsumer(**conf, enable_auto_commit=False, consumer_timeout_ms=5000)
            c.assign([TopicPartition(topic, 0)])
            c.seek_to_beginning()
            got = {m.value.decode() for m in c}
            c.close()
            expect(set(values) <= got, f"read back {len(set(values) & got)} of {len(values)}")
            return f"{creds[0]} as {creds[1]}: 10 records produced and consumed"
        return run

    def kafka_python_wrong_password() -> str:
        from kafka import KafkaProducer
        refusals = server.output().count("Failed authentication with")
        try:
            # A fixed api_version skips kafka-python's version probing, which would retry for
            # 30 s. kafka-python reports the closed connection rather than the broker's
            # SASL_AUTHENTICATION_FAILED answer, so the broker's log line is checked too.
            p = KafkaProducer(bootstrap_servers=server.sasl_bootstrap,
                              security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                              sasl_plain_username="alice", sasl_plain_password="wrong",
                              api_version=(2, 5, 0), max_block_ms=5000)
            p.send(topic, value=b"kp-intruder", partition=0).get(timeout=5)
        except Exception as e:  # noqa: BLE001 - the refusal is the point
            got = read_values(sasl_conf(server, *plain_alice), topic, {"never"}, timeout=3)
            expect("kp-intruder" not in got, "the refused record was written")
            logged = server.output().count("Failed authentication with") - refusals
            expect(logged > 0, "the broker logged no failed authentication")
            return f"refused ({type(e).__name__}); {logged} failed logins logged by the broker"
        raise AssertionError("kafka-python wrote with a wrong password")

    check("SASL: confluent-kafka admin (SCRAM-SHA-512 user from --add-scram) creates a topic "
          "and a SCRAM user (AlterUserScramCredentials), describes users", admin_over_scram)
    for creds in (plain_alice, scram512_new, scram256_boot):
        check(f"SASL: confluent-kafka produce/consume with {creds[0]} ({creds[1]})",
              confluent_roundtrip(creds))
    check("SASL: confluent-kafka wrong SCRAM password → authentication error, nothing written",
          confluent_wrong_password)
    cli256 = ("SCRAM-SHA-256", "cli256", "cli256-secret")

    def cli_creates_user() -> str:
        auth = ["-b", server.sasl_bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
                "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=scram512",
                "-X", f"sasl.password={SCRAM512_PASSWORD}"]
        for cmd in (["user", "scram", "set", "cli256", "--mechanism", "SCRAM-SHA-256",
                     "--password", cli256[2], "--iterations", "8192"],
                    ["user", "scram", "describe", "cli256"]):
            proc = subprocess.run([str(server.binary), *cmd, *auth], capture_output=True,
                                  text=True, timeout=60)
            expect(proc.returncode == 0, f"nagare {' '.join(cmd[:3])}: {proc.stderr.strip()}")
        expect("SCRAM-SHA-256=iterations=8192" in proc.stdout, f"describe said {proc.stdout!r}")
        return proc.stdout.strip()

    check("SASL: nagare user scram set/describe over SASL (-X client properties)",
          cli_creates_user)
    for creds in (plain_alice, scram512_new, cli256):
        check(f"SASL: kcat produce/consume with {creds[0]} ({creds[1]})", kcat_roundtrip(creds))
    check("SASL: kcat wrong PLAIN password → nothing written", kcat_wrong_password)
    for creds in (plain_alice, scram512_boot):
        check(f"SASL: kafka-python produce/consume with {creds[0]} ({creds[1]})",
              kafka_python_roundtrip(creds))
    check("SASL: kafka-python wrong PLAIN password → error, nothing written",
          kafka_python_wrong_password)

    # OAUTHBEARER: confluent-kafka's oauth_cb hands librdkafka a JWT the script signed.
    def oauth_conf(token: Callable[[], str]) -> dict:
        # librdkafka is told the token lives 300 s, whatever its `exp` says: the broker
        # is what must notice an expired one.
        return {"bootstrap.servers": server.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "OAUTHBEARER",
                "oauth_cb": lambda _cfg: (token(), time.time() + 300, "oauth-alice")}

    def oauth_roundtrip() -> str:
        conf = oauth_conf(lambda: oauth_issuer().token("oauth-alice", 300))
        errors: list = []
        p = Producer({**conf, "message.timeout.ms": 15000})
        values = [f"oauth-{i}" for i in range(10)]
        for v in values:
            p.produce(topic, value=v.encode(), partition=0,
                      on_delivery=lambda e, m: errors.append(e) if e else None)
        expect(p.flush(30) == 0 and not errors, f"delivery errors {errors}")
        got = read_values(conf, topic, set(values))
        expect(set(values) <= got, f"read back {len(set(values) & got)} of {len(values)}")
        return "RS256 JWT (sub oauth-alice): 10 records produced and consumed"

    def oauth_refused(token: Callable[[], str], reason: str) -> Callable[[], str]:
        def run() -> str:
            before = server.output().count(reason)
            auth_errors: list = []
            value = f"oauth-intruder-{uuid.uuid4().hex[:6]}"
            p = Producer({**oauth_conf(token), "message.timeout.ms": 4000,
                          "error_cb": lambda e: auth_errors.append(e)})
            delivery: list = []
            p.produce(topic, value=value.encode(), partition=0,
                      on_delivery=lambda e, m: delivery.append(e))
            p.flush(10)
            expect(delivery and delivery[0] is not None, f"the write was delivered: {delivery}")
            expect(any(e.code() == KafkaError._AUTHENTICATION for e in auth_errors),
                   f"no authentication error reported: {auth_errors}")
            got = read_values(sasl_conf(server, *plain_alice), topic, {"never"}, timeout=3)
            expect(value not in got, "the refused producer's record was written")
            expect(server.output().count(reason) > before, f"the broker logged no {reason!r}")
            return f"refused ({reason}): {auth_errors[0].str()[:100]}"
        return run

    check("SASL: confluent-kafka produce/consume with OAUTHBEARER (JWT checked against a "
          "JWKS file)", oauth_roundtrip)
    check("SASL: OAUTHBEARER expired token → authentication error, nothing written",
          oauth_refused(lambda: oauth_issuer().token("oauth-alice", -3600), "expired"))
    stranger = OAuthIssuer()  # same kid, another key
    check("SASL: OAUTHBEARER token signed by another key → authentication error, "
          "nothing written",
          oauth_refused(lambda: stranger.token("oauth-alice", 300), "signature does not verify"))
# --------------------------------------------------------------------------------------------
# TLS: a second server whose client listener is SSL with ssl.client.auth=required


class Pki:
    """A CA, the server's key store (key + chain in one PEM file), a client certificate the
    CA signed, and a client certificate signed by another CA, all made here (cryptography)."""

    def __init__(self, directory: Path) -> None:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)

        def name(*attrs: tuple) -> x509.Name:
            return x509.Name([x509.NameAttribute(oid, v) for oid, v in attrs])

        def key_pem(key) -> bytes:
            return key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())

        def cert_pem(cert) -> bytes:
            return cert.public_bytes(serialization.Encoding.PEM)

        def make_ca(cn: str):
            key = ec.generate_private_key(ec.SECP256R1())
            subject = name((NameOID.COMMON_NAME, cn))
            cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(now + datetime.timedelta(days=1))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                                 crl_sign=True, content_commitment=False,
                                                 key_encipherment=False, data_encipherment=False,
                                                 key_agreement=False, encipher_only=False,
                                                 decipher_only=False), critical=True)
                    .sign(key, hashes.SHA256()))
            return key, cert

        def issue(ca, subject: x509.Name, server: bool):
            ca_key, ca_cert = ca
            key = ec.generate_private_key(ec.SECP256R1())
            b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
                 .public_key(key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now - datetime.timedelta(minutes=5))
                 .not_valid_after(now + datetime.timedelta(days=1))
                 .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
            if server:
                b = b.add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
            else:
                usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            return key, b.sign(ca_key, hashes.SHA256())

        def write(fname: str, data: bytes) -> Path:
            path = directory / fname
            path.write_bytes(data)
            return path

        ca = make_ca("nagare-compat-ca")
        rogue_ca = make_ca("rogue-ca")
        self.ca = write("ca.pem", cert_pem(ca[1]))
        skey, scert = issue(ca, name((NameOID.COMMON_NAME, "localhost")), server=True)
        self.server_keystore = write("server.pem", key_pem(skey) + cert_pem(scert) + cert_pem(ca[1]))
        ckey, ccert = issue(ca, name((NameOID.ORGANIZATION_NAME, "acme"),
                                     (NameOID.ORGANIZATIONAL_UNIT_NAME, "eng"),
                                     (NameOID.COMMON_NAME, "alice")), server=False)
        self.client_cert = write("client.pem", cert_pem(ccert))
        self.client_key = write("client.key", key_pem(ckey))
        rkey, rcert = issue(rogue_ca, name((NameOID.COMMON_NAME, "mallory")), server=False)
        self.rogue_cert = write("rogue.pem", cert_pem(rcert))
        self.rogue_key = write("rogue.key", key_pem(rkey))


def tls_checks(binary: Path) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    pki_dir = Path(tempfile.mkdtemp(prefix="nagare-compat-pki-"))
    server: Server | None = None
    try:
        pki = Pki(pki_dir)
        server = Server(binary, tls=pki)
        server.start()
        print(f"nagare SSL listener on {server.bootstrap} (log {server.log_path})", flush=True)

        def ssl_conf(cert: Path, key: Path) -> dict:
            return {"bootstrap.servers": server.bootstrap, "security.protocol": "SSL",
                    "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(cert),
                    "ssl.key.location": str(key)}

        good = ssl_conf(pki.client_cert, pki.client_key)
        # librdkafka logs every refused connection attempt; keep the output readable.
        rogue = {**ssl_conf(pki.rogue_cert, pki.rogue_key), "log_level": 0}
        topic = unique("tls")
        n = 500

        def confluent_roundtrip() -> str:
            admin = AdminClient(good)
            admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic] \
                .result(timeout=30)
            p = Producer({**good, "acks": "all", "linger.ms": 5})
            errors: list = []
            for i in range(n):
                p.produce(topic, key=f"k{i}".encode(), value=f"tls-{i}".encode() + b"x" * 200,
                          partition=i % 2, on_delivery=lambda e, m: e and errors.append(e))
            expect(p.flush(30) == 0 and not errors, f"undelivered, errors {errors[:3]}")
            c = Consumer({**good, "group.id": unique("tls-g"), "auto.offset.reset": "earliest",
                          "enable.auto.commit": False})
            got = set()
            try:
                c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in range(2)])
                deadline = time.time() + 30
                while len(got) < n:
                    expect(time.time() < deadline, f"consumed only {len(got)}")
                    m = c.poll(0.5)
                    if m is None:
                        continue
                    expect(m.error() is None, f"consume error {m.error()}")
                    got.add(m.value())
            finally:
                c.close()
            expect(got == {f"tls-{i}".encode() + b"x" * 200 for i in range(n)}, "values differ")
            return f"{n} records produced (acks=all) and consumed over SSL with a client certificate"

        def kcat_ssl(conf: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
            exe = shutil.which("kcat") or shutil.which("kafkacat")
            if exe is None:
                raise RuntimeError("kcat is not installed (apt-get install kcat)")
            x = []
            for k in ("security.protocol", "ssl.ca.location", "ssl.certificate.location",
                      "ssl.key.location"):
                x += ["-X", f"{k}={conf[k]}"]
            return subprocess.run([exe, "-b", server.bootstrap, *x, *args], input=stdin,
                                  capture_output=True, text=True, timeout=60)

        def kcat_roundtrip() -> str:
            lines = [f"kk{i}:kcat over tls {i}" for i in range(20)]
            r = kcat_ssl(good, "-P", "-t", topic, "-p", "0", "-K", ":",
                         stdin="\n".join(lines) + "\n")
            expect(r.returncode == 0, f"kcat -P exited {r.returncode}: {r.stderr.strip()}")
            r = kcat_ssl(good, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-K", ":")
            expect(r.returncode == 0, f"kcat -C exited {r.returncode}: {r.stderr.strip()}")
            got = [l for l in r.stdout.splitlines() if l.startswith("kk")]
            expect(got == lines, f"kcat read {got[:3]}...")
            return f"{len(lines)} records produced and consumed with kcat over SSL"

        def kafka_python_roundtrip() -> str:
            from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

            conf = dict(bootstrap_servers=server.bootstrap, security_protocol="SSL",
                        ssl_cafile=str(pki.ca), ssl_certfile=str(pki.client_cert),
                        ssl_keyfile=str(pki.client_key))
            p = KafkaProducer(acks="all", **conf)
            values = [f"kp-tls-{i}".encode() for i in range(50)]
            for v in values:
                p.send(topic, value=v, partition=1)
            p.flush(30)
            p.close()
            c = KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                              consumer_timeout_ms=10_000, **conf)
            try:
                c.assign([KTP(topic, 1)])
                c.seek_to_beginning()
                got = [m.value for m in c if m.value.startswith(b"kp-tls-")]
            finally:
                c.close()
            expect(got == values, f"kafka-python read {len(got)} of {len(values)}")
            return f"{len(values)} records produced and consumed with kafka-python over SSL"

        def untrusted_client() -> str:
            before = server.output().count("TLS handshake failed")
            p = Producer({**rogue, "message.timeout.ms": 5000, "socket.timeout.ms": 3000})
            errors: list = []
            p.produce(topic, value=b"forged", partition=0,
                      on_delivery=lambda e, m: errors.append(e))
            p.flush(15)
            expect(len(errors) == 1 and errors[0] is not None, f"delivery reports {errors}")
            c = Consumer({**rogue, "group.id": unique("rogue"), "auto.offset.reset": "earliest"})
            try:
                c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
                deadline = time.time() + 5
                while time.time() < deadline:
                    m = c.poll(0.5)
                    expect(m is None or m.error() is not None, "the untrusted client read a record")
            finally:
                c.close()
            r = kcat_ssl(rogue, "-L", "-m", "5")
            expect(r.returncode != 0, "kcat with an untrusted certificate listed metadata")
            # Nothing was written: a trusted consumer still sees only the good records.
            r = kcat_ssl(good, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e")
            expect("forged" not in r.stdout, "the forged record was written")
            after = server.output().count("TLS handshake failed")
            expect(after > before, "the server logged no refused handshake")
            return f"refused ({errors[0]}); {after - before} handshakes refused in the server log"

        check("SSL (mTLS): confluent-kafka produce acks=all and consume", confluent_roundtrip)
        check("SSL (mTLS): kcat produce and consume", kcat_roundtrip)
        check("SSL (mTLS): kafka-python produce and consume", kafka_python_roundtrip)
        check("SSL (mTLS): a certificate from another CA reads and writes nothing",
              untrusted_client)

        def sasl_ssl() -> str:
            # SASL over TLS without a client certificate: SCRAM (from --add-scram) with
            # confluent-kafka, PLAIN with kcat; a wrong password reads and writes nothing.
            base = {"bootstrap.servers": server.sasl_bootstrap, "security.protocol": "SASL_SSL",
                    "ssl.ca.location": str(pki.ca)}
            scram = {**base, "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "scram512",
                     "sasl.password": SCRAM512_PASSWORD}
            p = Producer({**scram, "acks": "all"})
            errors: list = []
            for i in range(20):
                p.produce(topic, value=f"sasl-ssl-{i}".encode(), partition=0,
                          on_delivery=lambda e, m: e and errors.append(e))
            expect(p.flush(30) == 0 and not errors, f"SCRAM over TLS: {errors[:3]}")
            exe = shutil.which("kcat") or shutil.which("kafkacat")
            expect(exe is not None, "kcat is not installed")
            x = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki.ca}",
                 "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=alice"]
            r = subprocess.run([exe, "-b", server.sasl_bootstrap, *x,
                                "-X", "sasl.password=alice-secret", "-C", "-t", topic, "-p", "0",
                                "-o", "beginning", "-e"],
                               capture_output=True, text=True, timeout=60)
            expect(r.returncode == 0, f"kcat PLAIN over TLS exited {r.returncode}: {r.stderr}")
            got = [l for l in r.stdout.splitlines() if l.startswith("sasl-ssl-")]
            expect(len(got) == 20, f"kcat read {len(got)} of 20")
            r = subprocess.run([exe, "-b", server.sasl_bootstrap, *x,
                                "-X", "sasl.password=wrong", "-C", "-t", topic, "-p", "0",
                                "-o", "beginning", "-e", "-m", "10"],
                               capture_output=True, text=True, timeout=60)
            expect(r.returncode != 0 and "sasl-ssl-" not in r.stdout,
                   f"a wrong password read: exit {r.returncode}")
            return "SCRAM-SHA-512 produce (confluent-kafka) and PLAIN consume (kcat) over TLS"

        check("SASL_SSL: SCRAM and PLAIN over TLS; a wrong password is refused", sasl_ssl)
        if not server.alive():
            RESULTS.append(("SSL server alive at the end", False, "nagare exited"))
            print("FAIL SSL server alive at the end: nagare exited", flush=True)
        if any(not r[1] for r in RESULTS if r[0].startswith("SSL")):
            print(f"----- nagare SSL output (last 10 kB) -----\n{server.output()[-10000:]}\n"
                  "----- end -----", flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(pki_dir, ignore_errors=True)


def main() -> int:
    try:
        binary = find_binary()
    except FileNotFoundError as e:
        print(f"FAIL start nagare: {e}")
        print("0 passed, 1 failed")
        return 1
    print(f"nagare binary: {binary}", flush=True)
    if sys.argv[1:] == ["--tls-only"]:
        # Just the TLS checks (their own server), e.g. while working on TLS.
        try:
            tls_checks(binary)
        except Exception as e:  # noqa: BLE001
            RESULTS.append(("tls_checks", False, str(e)))
            print(f"FAIL tls_checks: {type(e).__name__}: {e}", flush=True)
        passed = sum(1 for r in RESULTS if r[1])
        print(f"{passed} passed, {len(RESULTS) - passed} failed", flush=True)
        return 0 if passed == len(RESULTS) else 1
    # NAGARE_COMPAT_ONLY=acl_checks,kcat_checks runs only those groups (for development).
    only = {g for g in os.environ.get("NAGARE_COMPAT_ONLY", "").split(",") if g}
    server = Server(binary)
    try:
        try:
            server.start()
        except Exception as e:  # noqa: BLE001
            print(f"FAIL start nagare: {e}")
            print("0 passed, 1 failed")
            return 1
        print(f"nagare listening on {server.bootstrap} (log {server.log_path})", flush=True)
        for group in (kcat_checks, confluent_checks, config_checks, telemetry_checks,
                      kafka_python_checks, aiokafka_checks, kafkajs_checks, group_checks,
                      kip848_checks, transaction_checks, sasl_checks):
            if only and group.__name__ not in only:
                continue
            try:
                group(server)
            except Exception as e:  # noqa: BLE001 - e.g. a client library is missing
                RESULTS.append((group.__name__, False, str(e)))
                print(f"FAIL {group.__name__}: {type(e).__name__}: {e}", flush=True)
        if not server.alive():
            RESULTS.append(("server alive at the end", False, "nagare exited"))
            print("FAIL server alive at the end: nagare exited", flush=True)
        failed = [r for r in RESULTS if not r[1]]
        if failed:
            tail = server.output()[-20000:]
            print(f"----- nagare output (last 20 kB) -----\n{tail}\n----- end -----", flush=True)
    finally:
        server.stop()
    if not only or "acl_checks" in only:
        secured_checks(binary)
    if not only or "tiered_checks" in only:
        tiered_checks(binary)
    if not only or "tls_checks" in only:
        # The TLS checks run against a server of their own (SSL listener, client auth).
        try:
            tls_checks(binary)
        except Exception as e:  # noqa: BLE001 - e.g. the cryptography package is missing
            RESULTS.append(("tls_checks", False, str(e)))
            print(f"FAIL tls_checks: {type(e).__name__}: {e}", flush=True)
    passed = sum(1 for r in RESULTS if r[1])
    failed_n = len(RESULTS) - passed
    print(f"{passed} passed, {failed_n} failed", flush=True)
    return 1 if failed_n else 0


if __name__ == "__main__":
    sys.exit(main())
