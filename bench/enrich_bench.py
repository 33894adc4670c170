"""Enrichment stage throughput against a real Redis: batched + cached vs one read per event.

Seeds a registry (default 2,000 identities, 5,000 credentials) under a unique
prefix in db 15, builds batches of 500 events whose ids repeat zipf-style (a
few busy agents, a long tail), then prints per stage: events/s, µs/event and
the cache hit ratio; beside it, the naive baseline (one HGETALL per id per event)
and ``apply()`` (credential state updates). Cleans up its keys at the end.

    .venv/bin/python bench/enrich_bench.py [--url redis://127.0.0.1:6379/15] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import time
import uuid
from typing import Any

import orjson
import redis.asyncio as aioredis

from pipeline.enrichment import RedisEnricher
from pipeline.enrichment.keys import CREDENTIAL_FIELDS, IDENTITY_FIELDS
from pipeline.enrichment.views import GarbageReport, credential_view, identity_view

T0 = 1_760_000_000_000
KINDS = ("ai_agent", "service_account", "workload", "human")
SCOPES = ("crm.read", "crm.records.export", "mail.send", "repo.write", "db.read", "db.admin")


def zipf_picker(n: int, s: float, rng: random.Random) -> Any:
    """Draw ranks 0..n-1 with P(k) ~ 1/(k+1)^s."""
    cumulative = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))
    total = cumulative[-1]
    return lambda: bisect.bisect_left(cumulative, rng.random() * total)


async def seed(r: aioredis.Redis, prefix: str, n_id: int, n_cred: int, rng: random.Random) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(n_id):
        pipe.hset(
            f"{prefix}identity:agent-{i}",
            mapping={
                "kind": KINDS[i % 4],
                "owner": f"owner{i % 97}@example.com",
                "team": f"team-{i % 13}",
                "environment": "prod",
                "risk_tier": ("low", "medium", "high", "critical")[i % 4],
                "allowed_scopes": orjson.dumps(rng.sample(SCOPES, 3)).decode(),
                "status": "active",
            },
        )
    for c in range(n_cred):
        pipe.hset(
            f"{prefix}credential:cred-{c}",
            mapping={
                "identity_id": f"agent-{c % n_id}",
                "kind": "jit_token" if c % 3 else "api_key",
                "issued_via": "jit" if c % 3 else "static",
                "scopes": orjson.dumps(rng.sample(SCOPES, 2)).decode(),
                "issued_at": str(T0 - 3_600_000),
                "expires_at": str(T0 + 3_600_000) if c % 3 else "",
                "last_used_at": str(T0 - 60_000),
            },
        )
    await pipe.execute()


def make_batches(
    n_batches: int, size: int, n_id: int, n_cred: int, cred_events: float, rng: random.Random
) -> list[list[dict[str, Any]]]:
    pick_id = zipf_picker(n_id, 1.1, rng)
    pick_cred = zipf_picker(n_cred, 1.1, rng)
    batches = []
    seq = 0
    for _ in range(n_batches):
        batch = []
        for _ in range(size):
            seq += 1
            r = rng.random()
            event_type = "action"
            if r < cred_events:
                event_type = rng.choice(
                    ("credential.issued", "credential.rotated", "credential.revoked")
                )
            cred = pick_cred()
            batch.append(
                {
                    "event_id": str(seq),
                    "event_type": event_type,
                    "event_time": T0 + seq * 10,
                    "platform": "bench",
                    "identity_id": f"agent-{pick_id()}" if rng.random() > 0.02 else None,
                    "credential_id": f"cred-{cred}" if rng.random() > 0.1 else None,
                    "scope": rng.choice(SCOPES),
                    "scopes": list(SCOPES[:2]) if event_type != "action" else None,
                    "expires_at": T0 + seq * 10 + 3_600_000 if event_type != "action" else None,
                    "credential_kind": "jit_token",
                    "issued_via": "jit",
                }
            )
        batches.append(batch)
    return batches


async def timed_loop(
    fn: Any, batches: list[list[dict[str, Any]]], seconds: float
) -> tuple[int, float]:
    """Run ``fn(batch)`` over the batches (cycling) for ~seconds; events and busy time."""
    events = 0
    busy = 0.0
    deadline = time.perf_counter() + seconds
    for batch in itertools.cycle(batches):
        start = time.perf_counter()
        await fn(batch)
        busy += time.perf_counter() - start
        events += len(batch)
        if start > deadline:
            break
    return events, busy


def line(name: str, events: int, busy: float, extra: str = "") -> None:
    print(f"{name:44s} {events / busy:>12,.0f} ev/s {busy / events * 1e6:>9.2f} µs/event  {extra}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--identities", type=int, default=2000)
    parser.add_argument("--credentials", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--ttl", type=float, default=2.0)
    args = parser.parse_args()

    rng = random.Random(42)
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    raw = aioredis.Redis.from_url(args.url)
    enricher = RedisEnricher(args.url, key_prefix=prefix, cache_ttl_s=args.ttl)
    try:
        await seed(raw, prefix, args.identities, args.credentials, rng)
        read_batches = make_batches(
            args.batches, args.batch, args.identities, args.credentials, 0.0, rng
        )
        unique = sum(
            len({e["identity_id"] for e in b}) + len({e["credential_id"] for e in b})
            for b in read_batches
        ) / len(read_batches)
        print(
            f"registry {args.identities} identities, {args.credentials} credentials; "
            f"batches of {args.batch} events, ~{unique:.0f} distinct ids per batch (zipf 1.1)"
        )

        # 1. warm cache: the steady state of a busy worker (entries refresh every ttl).
        await enricher.enrich(read_batches[0])
        enricher.identity_cache.reset_stats()
        enricher.credential_cache.reset_stats()
        trips = enricher.round_trips
        events, busy = await timed_loop(enricher.enrich, read_batches, args.seconds)
        stats = enricher.cache_stats()
        line(
            f"enrich, batched + cache (ttl {args.ttl:g} s)",
            events,
            busy,
            f"hit ratio {stats.hit_ratio:.3f} per distinct id, "
            f"{enricher.round_trips - trips} round trips",
        )

        # 2. cache off: one round trip per batch for all distinct ids.
        cold = RedisEnricher(args.url, key_prefix=prefix, cache_ttl_s=0.0)
        events, busy = await timed_loop(cold.enrich, read_batches, args.seconds)
        line("enrich, batched, no cache (1 trip/batch)", events, busy)
        await cold.close()

        # 3. baseline: one HGETALL per id per event (what a naive per-record stage does).
        report = GarbageReport()

        async def per_event(batch: list[dict[str, Any]]) -> None:
            for event in batch:
                identity_id = event["identity_id"]
                event["identity"] = None
                if identity_id is not None:
                    key = f"{prefix}identity:{identity_id}"
                    h: Any = await raw.hgetall(key)
                    values = [h.get(f.encode(), b"").decode() for f in IDENTITY_FIELDS]
                    event["identity"] = identity_view(key, values, report) if h else None
                credential_id = event["credential_id"]
                event["credential"] = None
                if credential_id is not None:
                    key = f"{prefix}credential:{credential_id}"
                    h = await raw.hgetall(key)
                    values = [h.get(f.encode(), b"").decode() for f in CREDENTIAL_FIELDS]
                    event["credential"] = credential_view(key, values, report) if h else None

        events, busy = await timed_loop(per_event, read_batches[:4], min(args.seconds, 2.0))
        line("baseline: 1 HGETALL per id per event", events, busy)

        # 4. apply: credential state updates (2% credential events, rest actions).
        apply_batches = make_batches(
            min(args.batches, 50), args.batch, args.identities, args.credentials, 0.02, rng
        )
        events, busy = await timed_loop(enricher.apply, apply_batches, args.seconds)
        line("apply (2% credential events, 98% actions)", events, busy)

        # 5. the worker's sequence: apply then enrich, same batch.
        async def both(batch: list[dict[str, Any]]) -> None:
            await enricher.apply(batch)
            await enricher.enrich(batch)

        enricher.identity_cache.reset_stats()
        enricher.credential_cache.reset_stats()
        events, busy = await timed_loop(both, apply_batches, args.seconds)
        line(
            "apply + enrich (worker sequence)",
            events,
            busy,
            f"hit ratio {enricher.cache_stats().hit_ratio:.3f}",
        )
    finally:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await raw.delete(*keys[i : i + 1000])
        await enricher.close()
        await raw.aclose()


if __name__ == "__main__":
    asyncio.run(main())
