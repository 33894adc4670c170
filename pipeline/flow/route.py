"""Stage 1, last step: place events on stage-2 partitions by subject, many events a record.

Each stage-2 partition owns the state of the subjects hashed to it (faust Tables
are co-partitioned with the internal topic), so a subject's events must always
land on the same partition: the hash is stable across processes and restarts.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any

import orjson

Event = dict[str, Any]
#: A routed item: (subject kind, subject value, event).
Item = tuple[str, str, Event]


def partition_for(subject_key: str, partitions: int) -> int:
    """Stable across processes (unlike ``hash()``, which is salted per process)."""
    return zlib.crc32(subject_key.encode("utf-8")) % partitions


def primary_subject(event: Event) -> tuple[str, str]:
    """Where an event's per-identity state lives: its identity, else task, else itself."""
    identity = event.get("identity_id")
    if identity:
        return "identity", identity
    task = event.get("task_id")
    if task:
        return "task", task
    return "event", event["event_id"]


def route(events: list[Event], partitions: int) -> dict[int, list[Item]]:
    """Group events by the stage-2 partition of their subject."""
    out: dict[int, list[Item]] = defaultdict(list)
    for event in events:
        kind, subject = primary_subject(event)
        out[partition_for(f"{kind}:{subject}", partitions)].append((kind, subject, event))
    return out


def encode_subject_batch(items: list[Item], watermark: int | None) -> bytes:
    """The internal record: one per partition per stage-1 batch."""
    return orjson.dumps({"wm": watermark, "items": items})


def decode_subject_batch(value: bytes) -> tuple[int | None, list[Item]]:
    data = orjson.loads(value)
    return data.get("wm"), [tuple(i) for i in data["items"]]  # type: ignore[misc]
