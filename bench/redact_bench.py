"""SL-01 redaction cost per event (hot path) and per DLQ payload.

Each scenario builds distinct events (fresh ids per event, as in real traffic),
runs ``redact_event`` over all of them several rounds, and prints the median
µs/event and the events/s that implies. "clean, typical" is the ~30-field
lowercase action event the fast pre-filter is built for; the other clean rows
show the slower tiers: uppercase letters cost one regex scan of the JSON dump,
an extra ":" or "=" (ISO timestamps) the field-by-field walk; the dirty rows
carry one secret each (always walked).

    .venv/bin/python bench/redact_bench.py [--events 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from pipeline.records import EVENT_FIELDS
from pipeline.redact import redact_bytes, redact_event

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def typical(rng: random.Random, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = dict.fromkeys(EVENT_FIELDS)
    event.update(
        event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        event_type="action",
        event_time=1_760_000_000_000 + rng.randrange(10**9),
        platform="openai-agents",
        environment="prod",
        identity_id=f"agent-{rng.randrange(500)}",
        on_behalf_of=f"user{rng.randrange(200)}@example.com",
        task_id=f"task-{rng.getrandbits(24):06x}",
        trace_id=f"{rng.getrandbits(128):032x}",
        parent_event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        action="crm.records.export",
        resource="accounts/emea",
        scope="crm.records.export",
        sensitivity="high",
        credential_id=f"cred-{rng.randrange(5000)}",
        policy_decision="allow",
        policy_id="pol-export-1",
        policy_reason="scope granted by role sales-ops",
        outcome="success",
        latency_ms=rng.randrange(20, 900),
        credential_kind="jit_token",
        issued_via="jit",
        scopes=["crm.records.read", "crm.records.export"],
        attributes={"user_agent": "python-httpx/0.27", "region": "eu-west-1", "model": "gpt-4o"},
    )
    event.update(overrides)
    return event


SCENARIOS: dict[str, dict[str, Any]] = {
    "clean, typical (fast path)": {},
    "clean, resource URI (fast path)": {"resource": "crm://accounts/emea"},
    "clean, prose with capitals (dump scan)": {
        "justification": "Quarterly export for EMEA, approved by Bob after review."
    },
    "clean, header-style keys (dump scan)": {
        "attributes": {"User-Agent": "python-httpx/0.27", "X-Region": "eu-west-1"}
    },
    "clean, ISO timestamp (walk)": {"event_time": "2025-10-09T12:00:00.123Z"},
    "dirty, api_key attribute": {
        "attributes": {"user_agent": "python-httpx/0.27", "api_key": "q8Zr2LmN5vX1cT7bK4pW9sD3"}
    },
    "dirty, JWT in justification": {"justification": f"use {JWT} for the export"},
    "dirty, Bearer in attributes": {
        "attributes": {"authorization": "Bearer 8f14e45fceea167a5a36dedd4bea2543"}
    },
    "dirty, GitHub token as credential_id": {
        "credential_id": "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ"
    },
}


def per_op_us(fn: Callable[[Any], object], items: list[Any], rounds: int) -> float:
    """Median over rounds of the mean µs per call."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for item in items:
            fn(item)
        results.append((time.perf_counter_ns() - start) / len(items) / 1000)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(42)

    print(f"{'redact_event scenario':42} {'µs/event':>9} {'events/s':>11}  findings")
    for name, overrides in SCENARIOS.items():
        events = [typical(rng, **overrides) for _ in range(args.events)]
        for event in events[:50]:  # warm the key cache as a running worker has
            redact_event(event)
        us = per_op_us(redact_event, events, args.rounds)
        kinds = sorted({f.kind for f in redact_event(events[0])[1]})
        print(f"{name:42} {us:9.2f} {1e6 / us:11,.0f}  {', '.join(kinds) or '-'}")

    print()
    print(f"{'redact_bytes payload':42} {'µs/op':>9} {'MB/s':>11}")
    clean_json = orjson.dumps(typical(rng))
    dirty_json = orjson.dumps(typical(rng, justification=f"x {JWT}"))
    big_text = b"lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 36_000
    payloads = {
        f"clean JSON event ({len(clean_json)} B)": clean_json,
        f"dirty JSON event ({len(dirty_json)} B)": dirty_json,
        "invalid UTF-8 + AKIA key (64 B)": b"\xff\xfe\x00 AKIAIOSFODNN7EXAMPLE " + b"\x80" * 40,
        f"clean prose text ({len(big_text) // 1_000_000} MB)": big_text,
    }
    for name, payload in payloads.items():
        rounds = 3 if len(payload) > 100_000 else args.rounds
        count = 1 if len(payload) > 100_000 else args.events
        us = per_op_us(redact_bytes, [payload] * count, rounds)
        print(f"{name:42} {us:9.1f} {len(payload) / us:11,.1f}")


if __name__ == "__main__":
    main()
