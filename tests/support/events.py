"""Valid and hostile inputs for stage-1 tests (independent of the simulator)."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import orjson

from pipeline.codec import AvroEncoder

BASE_MS = 1_764_000_000_000
TYPES = [
    "action",
    "credential.issued",
    "approval.requested",
    "approval.viewed",
    "approval.decided",
    "task.started",
    "task.completed",
    "delegation",
    "credential.revoked",
    "credential.rotated",
]


def make_event(i: int, **over: Any) -> dict[str, Any]:
    """A valid, realistic event; ``i`` makes ids and times unique and deterministic."""
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=i + 1)),
        "event_type": TYPES[i % len(TYPES)],
        "event_time": BASE_MS + i * 10,
        "platform": ["crm-agents", "code-assist", "finance-bots"][i % 3],
        "environment": "prod",
        "identity_id": f"agent-{i % 50:03d}",
        "on_behalf_of": f"user{i % 20}@example.com",
        "task_id": f"task-{i // 10}",
        "action": "crm.records.export",
        "resource": "crm://accounts/42",
        "scope": "crm.read",
        "sensitivity": "medium",
        "credential_id": f"cred-{i // 10}",
        "policy_decision": "allow",
        "outcome": "success",
        "latency_ms": 20 + i % 300,
        "attributes": {"user_agent": "python-httpx/0.27", "region": "eu-west-1"},
    }
    event.update(over)
    return event


def hostile_records(start: int) -> list[tuple[str, bytes, int]]:
    """(expected error.code, record bytes, number of DLQ records) — ten of each kind."""
    enc = AvroEncoder()
    out: list[tuple[str, bytes, int]] = []
    for k in range(10):
        i = start + k
        good = make_event(i)
        out.append(("invalid_json", b"this is {not json", 1))
        out.append(("invalid_encoding", b'{"event_id": "\xff\xfe\xfd", "x": 1}', 1))
        out.append(
            ("invalid_field", orjson.dumps(make_event(i, event_time={"ms": 1}, latency_ms="x")), 1)
        )
        missing = dict(good)
        del missing["platform"]
        out.append(("missing_field", orjson.dumps(missing), 1))
        out.append(("unknown_event_type", orjson.dumps(make_event(i, event_type="rm -rf")), 1))
        out.append(("record_too_large", b'{"pad": "' + b"A" * (2 * 1024 * 1024) + b'"}', 1))
        out.append(
            ("unknown_schema_id", b"\x00" + struct.pack(">I", 9999) + enc.event(good)[5:], 1)
        )
        out.append(("invalid_avro", enc.event(good)[:-7], 1))
        nested = orjson.dumps(make_event(i, attributes={"a": {"b": {"c": {"d": ["deep"] * 3}}}}))
        huge = orjson.dumps(make_event(i, attributes={f"k{n}": "v" * 100 for n in range(5000)}))
        out.append(("invalid_attributes", nested if k % 2 else huge, 1))
        out.append(("invalid_json", b"42", 1))
    return out


def batch_with_one_bad(start: int, size: int) -> tuple[bytes, list[dict[str, Any]]]:
    """A JSON batch whose middle event lacks event_id; returns the record and the good events."""
    events = [make_event(start + n) for n in range(size)]
    bad = dict(events[size // 2])
    del bad["event_id"]
    good = [*events[: size // 2], *events[size // 2 + 1 :]]
    return orjson.dumps([*events[: size // 2], bad, *events[size // 2 + 1 :]]), good
