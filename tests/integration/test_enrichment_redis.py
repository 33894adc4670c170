"""RedisEnricher against a real Redis (db 14, a unique key prefix per test).

Covers docs/contracts/state.md written by credential events (exact field
names, decimal epoch ms, JSON lists), out-of-order and replayed input, the
cache, garbage written by other systems, the identities loader, and an outage
of a Redis this module starts and kills itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.embedded import LocalRedis
from pipeline.embedded.ports import free_port, wait_for_port
from pipeline.enrichment import (
    UNKNOWN_CREDENTIAL,
    UNKNOWN_IDENTITY,
    RedisEnricher,
    merge_credential,
    plan_credential_ops,
    retry_forever,
)
from pipeline.enrichment.keys import CREDENTIAL_FIELDS
from pipeline.errors import ConfigError, InfraError
from pipeline.settings import get_settings, redact_url
from pipeline.tailview import clock
from tests.integration.conftest import REDIS_TEST_DB
from tests.support.reference_enricher import MemoryEnricher

pytestmark = pytest.mark.integration

T = 1_700_000_000_000
#: the session's test database (one per xdist worker: keys of parallel tests stay apart)
TEST_DB = REDIS_TEST_DB
R = TypeVar("R")


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_db_url() -> Iterator[str]:
    try:
        local = LocalRedis(f"redis://127.0.0.1:6379/{TEST_DB}").start()
    except ConfigError as exc:
        pytest.skip(str(exc))
    try:
        yield local.url
    finally:
        local.stop()


@pytest.fixture
def prefix(redis_db_url: str) -> Iterator[str]:
    value = f"gptest:{uuid.uuid4().hex[:10]}:"
    yield value
    client = redis.Redis.from_url(redis_db_url)
    keys = list(client.scan_iter(match=f"{value}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def raw(redis_db_url: str) -> Iterator[Any]:
    """A text client (typed Any: redis-py's stubs do not follow decode_responses)."""
    client = redis.Redis.from_url(redis_db_url, decode_responses=True)
    yield client
    client.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def with_enricher(
    url: str, prefix: str, body: Callable[[RedisEnricher], Awaitable[R]], **kwargs: Any
) -> R:
    async def go() -> R:
        enricher = RedisEnricher(url, key_prefix=prefix, **kwargs)
        try:
            return await body(enricher)
        finally:
            await enricher.close()

    return asyncio.run(go())


def ev(
    event_type: str, t: int, credential_id: str | None = "cred-1", **fields: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "event_type": event_type,
        "event_time": t,
        "platform": "test",
        "identity_id": "agent-1",
        "credential_id": credential_id,
        "scope": None,
        "scopes": None,
        "expires_at": None,
        "credential_kind": None,
        "issued_via": None,
    }
    event.update(fields)
    return event


def issued(t: int = T, credential_id: str = "cred-1", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "credential_kind": "jit_token",
        "issued_via": "jit",
        "scopes": ["crm.read", "crm.records.export"],
        "expires_at": t + 3_600_000,
    }
    values.update(fields)
    return ev("credential.issued", t, credential_id, **values)


# -- state contract ---------------------------------------------------------------------


def test_issued_writes_exactly_the_contract_fields(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    batch = [issued(), issued(T + 5, "cred-2", expires_at=None, scopes=None)]
    with_enricher(redis_db_url, prefix, lambda e: e.apply(batch))
    assert raw.hgetall(f"{prefix}credential:cred-1") == {
        "identity_id": "agent-1",
        "kind": "jit_token",
        "issued_via": "jit",
        "scopes": '["crm.read","crm.records.export"]',
        "issued_at": str(T),
        "expires_at": str(T + 3_600_000),
    }
    never = raw.hgetall(f"{prefix}credential:cred-2")
    assert never["expires_at"] == "" and "scopes" not in never
    assert set(never) <= set(CREDENTIAL_FIELDS)


def test_lifecycle_in_order_then_out_of_order_gives_the_same_hash(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    events = [
        issued(),
        ev("action", T + 100),
        ev("credential.rotated", T + 1000, scopes=["a"], expires_at=T + 5_000_000),
        ev("credential.rotated", T + 2000, scopes=["b"], expires_at=T + 6_000_000),
        ev("action", T + 2500),
        ev("credential.revoked", T + 3000),
        ev("credential.revoked", T + 4000),
    ]
    expected = {
        "identity_id": "agent-1",
        "kind": "jit_token",
        "issued_via": "jit",
        "scopes": '["b"]',
        "issued_at": str(T),
        "expires_at": str(T + 6_000_000),
        "rotated_at": str(T + 2000),
        "revoked_at": str(T + 3000),
        "last_used_at": str(T + 2500),
    }
    # revoked before issued, the two rotations in reverse order, each its own batch
    reordered = [events[6], events[5], events[3], events[2], events[0], events[1], events[4]]
    in_order = [dict(e, credential_id="in-order") for e in events]
    shuffled = [dict(e, credential_id="shuffled") for e in reordered]

    async def body(enricher: RedisEnricher) -> None:
        for event in in_order:
            await enricher.apply([event])
        for event in shuffled:
            await enricher.apply([event])

    with_enricher(redis_db_url, prefix, body)
    assert raw.hgetall(f"{prefix}credential:in-order") == expected
    assert raw.hgetall(f"{prefix}credential:shuffled") == expected


def test_replay_of_a_batch_changes_nothing(redis_db_url: str, prefix: str, raw: Any) -> None:
    batch = [
        issued(),
        ev("action", T + 10),
        ev("credential.rotated", T + 20, expires_at=T + 99_000),
        ev("credential.revoked", T + 30),
    ]

    async def body(enricher: RedisEnricher) -> list[dict[str, str]]:
        snapshots = []
        for _ in range(3):
            await enricher.apply(batch)
            snapshots.append(raw.hgetall(f"{prefix}credential:cred-1"))
        return snapshots

    first, second, third = with_enricher(redis_db_url, prefix, body)
    assert first == second == third
    assert first["revoked_at"] == str(T + 30) and first["rotated_at"] == str(T + 20)


def test_last_used_at_only_moves_forward_and_needs_a_credential(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    async def body(enricher: RedisEnricher) -> None:
        await enricher.apply([ev("action", T, "unknown-cred")])
        await enricher.apply([issued(), ev("action", T + 50), ev("action", T + 40)])
        await enricher.apply([ev("action", T + 10)])
        await enricher.apply([ev("action", T + 60), ev("action", T + 55)])

    with_enricher(redis_db_url, prefix, body)
    assert raw.hget(f"{prefix}credential:cred-1", "last_used_at") == str(T + 60)
    assert raw.exists(f"{prefix}credential:unknown-cred") == 0


def test_lua_and_python_merge_rules_agree_on_random_histories(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    rng = random.Random(7)
    histories: dict[str, list[dict[str, Any]]] = {}
    for n in range(40):
        cid = f"h{n}"
        events = [
            issued(
                T + rng.randrange(0, 50),
                cid,
                issued_via=rng.choice([None, "jit"]),
                task_id=rng.choice([None, "task-a"]),
            )
        ]
        for _ in range(rng.randrange(0, 8)):
            kind = rng.choice(["credential.rotated", "credential.revoked", "action", "issued"])
            t = T + rng.randrange(0, 500)
            if kind == "issued":
                task = rng.choice([None, "task-b"])
                events.append(
                    issued(t, cid, credential_kind="api_key", expires_at=None, task_id=task)
                )
            elif kind == "credential.rotated":
                with_terms = rng.random() < 0.7
                events.append(
                    ev(
                        kind,
                        t,
                        cid,
                        scopes=[f"s{t}"] if with_terms else None,
                        expires_at=t + 1000 if with_terms else None,
                    )
                )
            else:
                events.append(ev(kind, t, cid))
        rng.shuffle(events)
        histories[cid] = events
    # interleave all histories into random batches
    stream = [e for events in histories.values() for e in events]
    rng.shuffle(stream)
    batches = [stream[i : i + rng.randrange(1, 12)] for i in range(0, len(stream), 6)]
    expected: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for batch in batches:
        batch = [e for e in batch if e["event_id"] not in seen]
        seen.update(e["event_id"] for e in batch)
        for op in plan_credential_ops(batch):
            state = expected.setdefault(op.credential_id, {})
            merge_credential(state, op)

    async def body(enricher: RedisEnricher) -> None:
        applied: set[str] = set()
        for batch in batches:
            batch = [e for e in batch if e["event_id"] not in applied]
            applied.update(e["event_id"] for e in batch)
            await enricher.apply(batch)

    with_enricher(redis_db_url, prefix, body)
    for cid in histories:
        assert raw.hgetall(f"{prefix}credential:{cid}") == {
            k: v for k, v in expected.get(cid, {}).items()
        }, cid


def test_concurrent_workers_converge(redis_db_url: str, prefix: str, raw: Any) -> None:
    events = [ev("action", T + i) for i in range(1, 400)]
    events += [ev("credential.revoked", T + 300), ev("credential.revoked", T + 200)]
    events += [ev("credential.rotated", T + 50 * k, expires_at=T + k) for k in range(1, 6)]
    random.Random(3).shuffle(events)

    async def go() -> None:
        workers = [RedisEnricher(redis_db_url, key_prefix=prefix) for _ in range(3)]
        try:
            await workers[0].apply([issued()])

            async def run(worker: RedisEnricher, share: list[dict[str, Any]]) -> None:
                for i in range(0, len(share), 7):
                    await worker.apply(share[i : i + 7])

            await asyncio.gather(*(run(w, events[i::3]) for i, w in enumerate(workers)))
        finally:
            for worker in workers:
                await worker.close()

    asyncio.run(go())
    state = raw.hgetall(f"{prefix}credential:cred-1")
    assert state["revoked_at"] == str(T + 200)
    assert state["last_used_at"] == str(T + 399)
    assert state["rotated_at"] == str(T + 250) and state["expires_at"] == str(T + 5)


# -- enrichment -------------------------------------------------------------------------


def seed_identity(raw: Any, prefix: str, identity_id: str, **fields: str) -> None:
    values = {
        "kind": "ai_agent",
        "owner": "alice@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": '["crm.read"]',
        "status": "active",
    }
    values.update(fields)
    raw.hset(f"{prefix}identity:{identity_id}", mapping=values)


def test_enrich_known_unknown_and_absent_ids_in_one_round_trip(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    seed_identity(raw, prefix, "agent-1")
    seed_identity(raw, prefix, "alice@example.com", kind="human", owner="", status="offboarded")
    batch = [
        issued(),
        ev("action", T + 1),
        ev("action", T + 2, identity_id="ghost", credential_id="no-such-cred"),
        ev("task.started", T + 3, identity_id=None, credential_id=None),
    ]

    async def body(enricher: RedisEnricher) -> int:
        await enricher.apply(batch)
        before = enricher.round_trips
        await enricher.enrich(batch)
        return enricher.round_trips - before

    trips = with_enricher(redis_db_url, prefix, body)
    assert trips == 1
    first, action, ghost, task = batch
    assert first["identity"] is action["identity"]
    assert action["identity"] == {
        "known": True,
        "kind": "ai_agent",
        "owner": "alice@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": ["crm.read"],
        "status": "active",
        "mode": "autonomous",  # no mode in the hash: the strictest
        "owner_status": "offboarded",
    }
    assert action["credential"] == {
        "known": True,
        "identity_id": "agent-1",
        "kind": "jit_token",
        "issued_via": "jit",
        "scopes": ["crm.read", "crm.records.export"],
        "issued_at": T,
        "expires_at": T + 3_600_000,
        "rotated_at": None,
        "revoked_at": None,
        "last_used_at": T + 1,
        "task_id": None,
        "lifetime_ms": 3_600_000,
    }
    assert ghost["identity"] == UNKNOWN_IDENTITY and ghost["credential"] == UNKNOWN_CREDENTIAL
    assert task["identity"] is None and task["credential"] is None
    orjson.dumps(batch)  # enrichment stays serialisable for the stage-2 records


def test_owner_status_comes_in_the_same_round_trip_and_the_same_cache(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    seed_identity(raw, prefix, "boss", kind="human", owner="", status="active")
    seed_identity(raw, prefix, "gone", kind="human", owner="", status="offboarded")
    seed_identity(raw, prefix, "nostatus", kind="human", owner="")
    raw.hdel(f"{prefix}identity:nostatus", "status")
    raw.set(f"{prefix}identity:astring", "not a hash")
    owners = {
        "a1": "boss",
        "a2": "boss",  # the same owner twice: read once
        "a3": "gone",
        "a4": "stranger",  # not in the registry
        "a5": "",  # no owner
        "a6": "nostatus",
        "a7": "astring",
    }
    for identity_id, owner in owners.items():
        seed_identity(raw, prefix, identity_id, owner=owner)
    clock = Clock()
    batch = [ev("action", T, None, identity_id=i) for i in [*owners, "boss", "ghost"]]

    async def body(enricher: RedisEnricher) -> None:
        await enricher.enrich(batch)
        assert enricher.round_trips == 1
        status = {e["identity_id"]: e["identity"]["owner_status"] for e in batch}
        assert status == {
            "a1": "active",
            "a2": "active",
            "a3": "offboarded",
            "a4": None,
            "a5": None,
            "a6": None,
            "a7": None,
            "boss": None,
            "ghost": None,
        }
        assert batch[4]["identity"]["owner"] is None
        # the owner is disabled in the IAM: visible once the identity's entry expires
        raw.hset(f"{prefix}identity:boss", "status", "disabled")
        clock.now += 1.0
        again = [ev("action", T, None, identity_id="a1")]
        await enricher.enrich(again)
        assert enricher.round_trips == 1 and again[0]["identity"]["owner_status"] == "active"
        clock.now += 1.5
        await enricher.enrich(again)
        assert enricher.round_trips == 2 and again[0]["identity"]["owner_status"] == "disabled"

    with_enricher(redis_db_url, prefix, body, clock=clock, cache_ttl_s=2.0)


def test_task_id_is_stored_from_the_issuance_first_writer_wins(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    async def body(enricher: RedisEnricher) -> None:
        await enricher.apply([issued(task_id="task-1"), issued(T, "cred-2")])
        key = f"{prefix}credential:cred-1"
        assert raw.hget(key, "task_id") == "task-1"
        assert raw.hexists(f"{prefix}credential:cred-2", "task_id") == 0
        later = [
            issued(T - 10),  # an earlier issuance without task_id does not clear it
            issued(T + 10, task_id="task-2"),  # nor does another task overwrite it
            ev("credential.rotated", T + 20, task_id="task-3", scopes=["z"]),
            ev("credential.revoked", T + 30, task_id=None),
            issued(T + 40, "cred-2", task_id="task-9"),  # fills an absent task_id
        ]
        await enricher.apply(later)
        assert raw.hget(key, "task_id") == "task-1"
        assert raw.hget(f"{prefix}credential:cred-2", "task_id") == "task-9"
        revoked = [ev("credential.revoked", T + 50, task_id=None)]
        await enricher.apply(revoked)
        await enricher.enrich(revoked)
        assert revoked[0]["credential"]["task_id"] == "task-1"
        enricher.clear_cache()  # the read script returns it too, not only apply's reply
        action = [ev("action", T + 60, "cred-2")]
        await enricher.enrich(action)
        assert action[0]["credential"]["task_id"] == "task-9"

    with_enricher(redis_db_url, prefix, body)


def test_cache_serves_repeat_batches_and_expires_after_ttl(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    seed_identity(raw, prefix, "agent-1", status="active")
    clock = Clock()

    async def body(enricher: RedisEnricher) -> None:
        batch = [ev("action", T, None)]
        await enricher.enrich(batch)
        assert enricher.round_trips == 1
        raw.hset(f"{prefix}identity:agent-1", "status", "disabled")  # external change
        clock.now += 1.0
        batch = [ev("action", T, None) for _ in range(5)]
        await enricher.enrich(batch)
        assert enricher.round_trips == 1  # served from the cache
        assert batch[0]["identity"]["status"] == "active"
        clock.now += 1.5  # past the 2 s TTL
        await enricher.enrich(batch)
        assert enricher.round_trips == 2
        assert batch[0]["identity"]["status"] == "disabled"
        stats = enricher.cache_stats()
        assert (stats.hits, stats.misses) == (1, 2)
        assert enricher.stats()["cache_hit_ratio"] == pytest.approx(1 / 3, abs=1e-3)

    with_enricher(redis_db_url, prefix, body, clock=clock, cache_ttl_s=2.0)


def test_credential_events_refresh_the_cache_at_once(
    redis_db_url: str, prefix: str, raw: Any
) -> None:
    clock = Clock()

    async def body(enricher: RedisEnricher) -> None:
        await enricher.apply([issued()])
        batch = [ev("action", T + 1)]
        await enricher.apply(batch)
        await enricher.enrich(batch)
        assert batch[0]["credential"]["revoked_at"] is None
        assert batch[0]["credential"]["last_used_at"] == T + 1
        # same worker: a revocation and a later action; no TTL wait, no extra read
        batch = [ev("credential.revoked", T + 10), ev("action", T + 20)]
        await enricher.apply(batch)
        trips = enricher.round_trips
        await enricher.enrich(batch)
        assert enricher.round_trips == trips
        assert batch[1]["credential"]["revoked_at"] == T + 10
        assert batch[1]["credential"]["last_used_at"] == T + 20
        # action only: the cached copy's last_used_at advances, still no read
        batch = [ev("action", T + 30)]
        await enricher.apply(batch)
        await enricher.enrich(batch)
        assert enricher.round_trips == trips + 1  # the apply call only
        assert batch[0]["credential"]["last_used_at"] == T + 30

    with_enricher(redis_db_url, prefix, body, clock=clock)


def test_garbage_in_redis_is_tolerated_and_logged_once(
    redis_db_url: str, prefix: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seed_identity(raw, prefix, "bad-json", allowed_scopes="[crm.read, oops")
    seed_identity(raw, prefix, "not-list", allowed_scopes='{"crm.read": true}')
    raw.set(f"{prefix}identity:a-string", "hello")
    raw.hset(
        f"{prefix}credential:bad-times",
        mapping={
            "identity_id": "x",
            "issued_at": "yesterday",
            "expires_at": "soon",
            "revoked_at": "1.5e12",
            "scopes": "crm.read",
        },
    )
    raw.rpush(f"{prefix}credential:a-list", "x")
    binary = redis.Redis.from_url(redis_db_url)
    binary.hset(f"{prefix}identity:binary", mapping={"kind": b"\xff\xfe ai", "owner": b"o"})
    binary.close()
    batch = [
        ev("action", T, "bad-times", identity_id="bad-json"),
        ev("action", T, "a-list", identity_id="not-list"),
        ev("credential.revoked", T, "a-list", identity_id="a-string"),
        ev("action", T, None, identity_id="binary"),
    ]

    async def body(enricher: RedisEnricher) -> None:
        for _ in range(3):
            enricher.clear_cache()
            await enricher.apply(batch)
            await enricher.enrich(batch)

    with caplog.at_level(logging.WARNING, logger="pipeline.enrichment"):
        with_enricher(redis_db_url, prefix, body)
    a, b, c, d = batch
    assert a["identity"]["known"] and a["identity"]["allowed_scopes"] == []
    assert b["identity"]["allowed_scopes"] == []
    assert c["identity"] is UNKNOWN_IDENTITY
    assert d["identity"]["kind"] == "\ufffd\ufffd ai" and d["identity"]["owner"] == "o"
    cred = a["credential"]
    assert cred["known"] and cred["identity_id"] == "x"
    assert cred["issued_at"] is None and cred["expires_at"] is None
    assert cred["revoked_at"] is None and cred["scopes"] == [] and cred["lifetime_ms"] is None
    assert b["credential"] is UNKNOWN_CREDENTIAL
    assert raw.lrange(f"{prefix}credential:a-list", 0, -1) == ["x"]  # never overwritten
    messages = [r.getMessage() for r in caplog.records]
    # one line per (key, field): bad-json, not-list, a-string, a-list, 4 x bad-times
    assert len(messages) == 8, messages
    assert not any(v in m for m in messages for v in ("yesterday", "soon", "oops", "hello"))


def test_hostile_ids_do_not_break_the_batch(redis_db_url: str, prefix: str) -> None:
    long_id = "x" * 256
    batch = [
        issued(credential_id="\udfffc", identity_id="\ud800agent"),
        ev("action", T + 1, "\udfffc", identity_id="\ud800agent"),
        issued(credential_id="sp ace\n*?[]{}", identity_id=long_id),
        ev("action", T + 2, "sp ace\n*?[]{}", identity_id=long_id),
    ]

    async def body(enricher: RedisEnricher) -> None:
        await enricher.apply(batch)
        await enricher.enrich(batch)

    with_enricher(redis_db_url, prefix, body)
    assert batch[1]["credential"]["known"] and batch[1]["identity"] == UNKNOWN_IDENTITY
    assert batch[3]["credential"]["identity_id"] == long_id
    assert batch[3]["credential"]["last_used_at"] == T + 2


# -- errors and outages -----------------------------------------------------------------


def test_infra_errors_are_fast_and_never_show_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"

    async def body() -> None:
        enricher = RedisEnricher(url)
        try:
            start = time.monotonic()
            with pytest.raises(InfraError) as info:
                await enricher.enrich([ev("action", T)])
            assert time.monotonic() - start < 3
            assert str(info.value) == (f"redis unavailable at {redact_url(url)} (ConnectionError)")
            assert "***@127.0.0.1" in str(info.value)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, stop.set)
            with pytest.raises(InfraError):
                await enricher.wait_until_available(stop)
        finally:
            await enricher.close()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(body())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "pausing input, retry in 0.1 s" in text
    assert "hunter2" not in text


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PASSWORD = "s3cret-pw"


class RedisProcess:
    """A throwaway redis-server without persistence, on its own port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for_port("127.0.0.1", self.port, 10), "redis-server did not start"

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.signal(signal.SIGCONT)
        server.kill()


def test_outage_raises_fast_and_retry_resumes_after_restart(
    redis_process: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    batch = [issued(), ev("action", T + 1)]

    async def body() -> None:
        enricher = RedisEnricher(redis_process.url, key_prefix="outage:")
        try:
            await enricher.apply(batch)
            await enricher.enrich(batch)
            assert batch[1]["credential"]["known"]

            redis_process.kill()
            enricher.clear_cache()
            for call in (enricher.enrich, enricher.apply):
                start = time.monotonic()
                with pytest.raises(InfraError) as info:
                    await call(batch)
                assert time.monotonic() - start < 3
                assert PASSWORD not in str(info.value) and "***@" in str(info.value)

            async def both() -> None:
                await enricher.apply(batch)
                await enricher.enrich(batch)

            task = asyncio.create_task(retry_forever(both, what="redis", initial_s=0.05, max_s=0.4))
            await asyncio.sleep(0.6)
            assert not task.done()
            redis_process.start()  # same port, empty (no persistence), scripts gone
            await asyncio.wait_for(task, 10)
            # the whole batch was applied again: the state is back
            assert batch[1]["credential"]["issued_at"] == T
            assert batch[1]["credential"]["last_used_at"] == T + 1
        finally:
            await enricher.close()

    with caplog.at_level(logging.INFO, logger="pipeline.retry"):
        asyncio.run(body())
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    warnings = [m for lv, m in levels if lv == "WARNING"]
    infos = [m for lv, m in levels if lv == "INFO"]
    assert len(warnings) == 1 and len(infos) == 1, levels
    assert warnings[0].startswith(
        f"redis unavailable at {redact_url(redis_process.url)} (ConnectionError)"
        "; pausing input, retry in 0.1 s"
    )
    assert "available again after" in infos[0]
    assert all(PASSWORD not in m for _, m in levels)


def test_hung_redis_times_out_fast(redis_process: RedisProcess) -> None:
    async def body() -> None:
        enricher = RedisEnricher(redis_process.url, key_prefix="hung:")
        try:
            await enricher.ping()
            redis_process.signal(signal.SIGSTOP)
            start = time.monotonic()
            with pytest.raises(InfraError, match="TimeoutError"):
                await enricher.enrich([ev("action", T)])
            assert time.monotonic() - start < 3
            redis_process.signal(signal.SIGCONT)
            await asyncio.wait_for(enricher.wait_until_available(), 10)
            await enricher.enrich([ev("action", T)])
        finally:
            await enricher.close()

    asyncio.run(body())


def test_memory_enricher_matches_redis(redis_db_url: str, prefix: str, raw: Any) -> None:
    seed_identity(raw, prefix, "agent-1")
    batch = [
        issued(),
        ev("action", T + 1),
        ev("credential.rotated", T + 5, scopes=["z"], expires_at=T + 10),
        ev("action", T + 2, identity_id="ghost", credential_id="nope"),
    ]
    redis_batch = [dict(e) for e in batch]
    memory_batch = [dict(e) for e in batch]

    async def body(enricher: RedisEnricher) -> None:
        await enricher.apply(redis_batch)
        await enricher.enrich(redis_batch)

    with_enricher(redis_db_url, prefix, body)
    memory = MemoryEnricher(identities={"agent-1": raw.hgetall(f"{prefix}identity:agent-1")})

    async def mem() -> None:
        await memory.apply(memory_batch)
        await memory.enrich(memory_batch)

    asyncio.run(mem())
    assert redis_batch == memory_batch


# -- identities loader ------------------------------------------------------------------

REGISTRY = """
identities:
  - identity_id: agent-crm-01
    kind: ai_agent
    owner: alice@example.com
    team: sales-ops
    environment: prod
    risk_tier: high
    allowed_scopes: [crm.read, crm.records.export]
    status: active
  - identity_id: svc-billing
    kind: service_account
    owner: null
    team: billing
    environment: prod
    risk_tier: critical
    allowed_scopes: []
    status: disabled
"""


@pytest.fixture
def cli_env(redis_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REDIS_URL", redis_db_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_identities_load_and_show(
    cli_env: None,
    redis_db_url: str,
    prefix: str,
    raw: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw.hset(f"{prefix}identity:old-one", mapping={"kind": "workload"})
    raw.hset(f"{prefix}identity:agent-crm-01", mapping={"stale_field": "x"})
    path = tmp_path / "identities.yaml"
    path.write_text(REGISTRY)
    assert main(["identities", "load", str(path), "--key-prefix", prefix]) == 0
    assert "loaded 2 identities" in capsys.readouterr().out
    assert raw.hgetall(f"{prefix}identity:agent-crm-01") == {
        "kind": "ai_agent",
        "owner": "alice@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": '["crm.read","crm.records.export"]',
        "status": "active",
    }
    assert raw.hgetall(f"{prefix}identity:svc-billing") == {
        "kind": "service_account",
        "team": "billing",
        "environment": "prod",
        "risk_tier": "critical",
        "allowed_scopes": "[]",
        "status": "disabled",
    }
    assert raw.exists(f"{prefix}identity:old-one") == 1
    marker = raw.hgetall(f"{prefix}registry")  # written with the identities (readiness)
    assert marker.keys() == {"loaded_at", "identities", "generation"}
    assert abs(int(marker["loaded_at"]) - time.time() * 1000) < 60_000
    assert (marker["identities"], marker["generation"]) == ("2", "1")
    assert main(["identities", "load", str(path), "--key-prefix", prefix, "--replace"]) == 0
    assert "deleted 1 absent" in capsys.readouterr().out
    assert raw.exists(f"{prefix}identity:old-one") == 0
    assert raw.hget(f"{prefix}registry", "generation") == "2"

    async def read_marker(enricher: RedisEnricher) -> Any:
        return await enricher.read_registry_marker()

    assert with_enricher(redis_db_url, prefix, read_marker) == raw.hgetall(f"{prefix}registry")
    assert with_enricher(redis_db_url, f"{prefix}other:", read_marker) is None

    raw.hset(f"{prefix}credential:c1", mapping={"identity_id": "agent-crm-01", "issued_at": str(T)})
    raw.hset(f"{prefix}credential:c2", mapping={"identity_id": "someone-else"})
    args = ["identities", "show", "agent-crm-01", "--credentials", "--key-prefix", prefix]
    assert main([*args, "--credential", "c1"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["identity"]["enrichment"]["allowed_scopes"] == ["crm.read", "crm.records.export"]
    assert shown["credential_ids"] == ["c1"]
    assert shown["credential"]["enrichment"]["issued_at"] == clock(T)  # ISO-8601 UTC
    assert main([*args, "--credential", "c1", "--epoch-ms"]) == 0
    assert orjson.loads(capsys.readouterr().out)["credential"]["enrichment"]["issued_at"] == T
    assert main(["identities", "show", "nobody", "--key-prefix", prefix]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("govpipe: no identity nobody in the registry (prefix ")


def test_identities_load_writes_nothing_when_an_entry_is_bad(
    cli_env: None,
    prefix: str,
    raw: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "identities.yaml"
    path.write_text(REGISTRY + "  - identity_id: broken\n    kind: toaster\n")
    assert main(["identities", "load", str(path), "--key-prefix", prefix]) == 1
    err = capsys.readouterr().err
    assert "identities[2] (broken): kind:" in err and "nothing written" in err
    assert list(raw.scan_iter(match=f"{prefix}*")) == []
    assert main(["identities", "load", str(path), "--key-prefix", prefix, "--skip-invalid"]) == 0
    assert "skipped 1 invalid" in capsys.readouterr().out
    assert raw.exists(f"{prefix}identity:agent-crm-01", f"{prefix}identity:svc-billing") == 2
    assert raw.exists(f"{prefix}identity:broken") == 0
