"""A Redis outage mid-stream: the worker pauses, never exits, and loses nothing.

The issue's must-show: stop the Redis server while the worker is mid-stream and
restart it 10 to 20 s later; afterwards every event is enriched and forwarded
exactly once, and the worker never exited (docs/internals.md).

The test Redis runs without persistence, so it comes back empty, as docs/internals.md
warns. An IAM sync reloads the identities; the restarted server listens only on
a unix socket until that is done and opens its TCP port afterwards, so the
worker cannot race the reload (a missing identity after an outage is not proof
of an unknown identity: production Redis runs with AOF).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.codec import AvroEncoder, encode_json_batch
from pipeline.embedded.ports import free_port, wait_for_port
from pipeline.flow.route import copies as subject_copies
from pipeline.flow.route import decode_subject_batch
from pipeline.settings import redact_url
from tests.support.events import make_event
from tests.support.kafka import consume_until_quiet, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PASSWORD = "outage-pw-5d1c9e"
PREFIX = "nhi:"
CHUNK = 4000  # events per produced chunk
CHUNKS = 5  # 20,000 events: 1 before the kill, 3 during the outage, 1 after
OUTAGE_S = 13.0

# The 50 identities make_event uses, owned by 5 humans (one offboarded: SP-08).
OWNER_STATUS = {f"owner-{k}": "offboarded" if k == 3 else "active" for k in range(5)}
IDENTITIES = {
    f"agent-{i:03d}": {
        "kind": "ai_agent",
        "owner": f"owner-{i % 5}",
        "team": f"team-{i % 4}",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": '["crm.read"]',
        "status": "active",
    }
    for i in range(50)
}
OWNERS = {
    owner: {"kind": "human", "team": "people", "environment": "prod", "status": status}
    for owner, status in OWNER_STATUS.items()
}


class RedisServer:
    """A throwaway redis-server without persistence, always on the same TCP port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gp-outage-"))  # short: unix socket path
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self, load: bool = True) -> None:
        """Start empty, load the registry through the unix socket, then open the port."""
        assert self.proc is None
        self.socket.unlink(missing_ok=True)
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                "0",  # no TCP listener until the registry is loaded
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--requirepass",
                PASSWORD,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert self.proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        client: Any = redis.Redis(unix_socket_path=str(self.socket), password=PASSWORD)
        try:
            client.ping()
            if load:
                iam_sync(client)
            client.config_set("port", self.port)
        finally:
            client.close()
        assert wait_for_port("127.0.0.1", self.port, 10), "redis-server did not open its port"

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def iam_sync(client: Any) -> None:
    """What an external IAM / inventory sync writes (docs/contracts/state.md)."""
    pipe = client.pipeline(transaction=False)
    for identity_id, fields in {**IDENTITIES, **OWNERS}.items():
        pipe.hset(f"{PREFIX}identity:{identity_id}", mapping=fields)
    pipe.execute()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip(f"no redis-server binary ({REDIS_SERVER}): cannot stop and restart Redis")
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


def encode_chunk(events: list[dict[str, Any]], enc: AvroEncoder) -> list[bytes]:
    """Avro and JSON, single-event records and batches of 50 or 200."""
    out: list[bytes] = []
    i = 0
    n = 0
    while i < len(events):
        size = (1, 50, 200, 50)[n % 4]
        part = events[i : i + size]
        i += size
        n += 1
        if len(part) == 1:
            out.append(enc.event(part[0]) if n % 2 else orjson.dumps(part[0]))
        else:
            out.append(enc.batch(part) if n % 3 else encode_json_batch(part))
    return out


def wait_for(condition: Any, timeout: float, what: str, worker: Any) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert worker.alive(), f"worker exited:\n{worker.log_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{what} not seen in {timeout}s:\n" + (worker.log_text()[-3000:])
        )
        time.sleep(0.1)


def first_forwarded(bootstrap: str, topic: str, timeout: float) -> bool:
    """True as soon as stage 1 has forwarded something (the worker is mid-stream)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if consume_until_quiet(bootstrap, topic, quiet_s=0.2, max_s=1.0):
            return True
    return False


def test_redis_outage_mid_stream_loses_nothing_and_the_worker_stays_up(
    settings_factory: Any, worker_factory: Any, redis_server: RedisServer, capsys: Any
) -> None:
    settings = settings_factory(redis_url=redis_server.url)
    bootstrap = settings.kafka_bootstrap_servers
    enc = AvroEncoder()
    events = [make_event(i) for i in range(CHUNK * CHUNKS)]
    chunks = [encode_chunk(events[n * CHUNK : (n + 1) * CHUNK], enc) for n in range(CHUNKS)]
    started = time.monotonic()

    worker = worker_factory(settings).start(timeout=60)
    produce(bootstrap, settings.topic_events, chunks[0])
    assert first_forwarded(bootstrap, settings.topic_subjects, 30), worker.log_text()[-3000:]

    # Mid-stream: more input keeps arriving while Redis is down.
    errors: list[BaseException] = []

    def keep_producing() -> None:
        try:
            for n in (1, 2, 3):
                produce(bootstrap, settings.topic_events, chunks[n])
                time.sleep(OUTAGE_S / 4)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    producer = threading.Thread(target=keep_producing, daemon=True)
    producer.start()
    redis_server.kill()
    killed = time.monotonic()
    wait_for(lambda: "pausing input" in worker.log_text(), 10, "the outage warning", worker)
    while time.monotonic() - killed < OUTAGE_S:
        assert worker.alive(), f"worker exited during the outage:\n{worker.log_text()[-3000:]}"
        time.sleep(0.2)

    redis_server.start()  # empty; the IAM sync reloads the identities, then the port opens
    outage = time.monotonic() - killed
    wait_for(lambda: "available again after" in worker.log_text(), 15, "the recovery", worker)
    producer.join(60)
    assert not producer.is_alive() and not errors, errors
    produce(bootstrap, settings.topic_events, chunks[4])

    ids: Counter[str] = Counter()
    copies: Counter[tuple[str, str, str]] = Counter()
    unenriched: list[str] = []
    wrong: list[str] = []
    for rec in consume_until_quiet(bootstrap, settings.topic_subjects, quiet_s=5, expect=1):
        assert rec.value is not None
        _, items = decode_subject_batch(rec.value)
        for copy in subject_copies(items):
            kind, subject, event, primary = copy.kind, copy.subject, copy.event, copy.primary
            copies[(event["event_id"], kind, subject)] += 1
            if not primary:
                continue
            ids[event["event_id"]] += 1
            identity, credential = event.get("identity"), event.get("credential")
            if identity is None or credential is None:
                unenriched.append(event["event_id"])
                continue
            expected_owner = IDENTITIES[event["identity_id"]]["owner"]
            if not identity["known"] or identity["owner_status"] != OWNER_STATUS[expected_owner]:
                wrong.append(f"{event['event_id']}: {identity}")

    log = worker.log_text()
    alive = worker.alive()
    with capsys.disabled():
        print(
            f"\n[redis outage] {len(events)} events, Redis down {outage:.1f} s: "
            f"{len(ids)} forwarded, {len(set(e['event_id'] for e in events) - set(ids))} "
            f"missing, {sum(c - 1 for c in ids.values())} duplicates, "
            f"{len(unenriched)} unenriched, {len(wrong)} with a wrong identity; "
            f"{time.monotonic() - started:.0f} s in all"
        )
    assert alive, f"worker exited:\n{log[-3000:]}"
    assert set(ids) == {e["event_id"] for e in events}, "events lost across the outage"
    assert max(ids.values()) == 1, "an event was forwarded twice without a worker restart"
    assert max(copies.values()) == 1, "an event reached a subject twice"
    assert not unenriched, f"{len(unenriched)} events forwarded without enrichment"
    assert not wrong, f"{len(wrong)} events with a wrong identity, e.g. {wrong[:3]}"
    assert 10 <= outage <= 20
    # One warning per outage, one recovery line; the URL only in its redacted form.
    warnings = [line for line in log.splitlines() if "pausing input" in line]
    recoveries = [line for line in log.splitlines() if "available again after" in line]
    assert len(warnings) == 1 and len(recoveries) == 1, warnings + recoveries
    assert redact_url(redis_server.url) in warnings[0]
    assert PASSWORD not in log
    assert "Traceback" not in log, log[-3000:]
