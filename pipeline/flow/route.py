"""Stage 1, last step: place events on stage-2 partitions by subject, many events a record.

An event goes to every subject its detectors need (its identity, credential,
task, approval, approver, requester: ``DetectionEngine.subject_kinds_for``). Each
stage-2 partition owns the state of the subjects hashed to it (faust Tables are
co-partitioned with the internal topic), so a subject's events must always land
on the same partition: the hash is stable across processes and restarts.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson

Event = dict[str, Any]
#: A routed item: (subject kind, subject value, event, primary). ``primary`` marks
#: the one copy of an event that stage 2 counts for metrics.
Item = tuple[str, str, Event, bool]
SubjectsOf = Callable[[Event], list[tuple[str, str]]]


def subject_key(kind: str, subject: str) -> str:
    return f"{kind}:{subject}"


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes (unlike ``hash()``, which is salted per process)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


def route(events: list[Event], partitions: int, subjects_of: SubjectsOf) -> dict[int, list[Item]]:
    """Group the event copies by the stage-2 partition of their subject.

    Events that no enabled detector needs go nowhere (they were validated,
    enriched and counted by stage 1).
    """
    out: dict[int, list[Item]] = defaultdict(list)
    for event in events:
        primary = True
        for kind, subject in subjects_of(event):
            out[partition_for(subject_key(kind, subject), partitions)].append(
                (kind, subject, event, primary)
            )
            primary = False
    return out


def encode_subject_batch(items: list[Item], watermark: int | None) -> bytes:
    """The internal record: one per partition per stage-1 batch (or a bare watermark).

    An event that feeds several subjects of the partition is written once and
    referenced by index: an event averages ~2.8 subject copies, and serialising
    (then parsing) each copy with its enrichment was the largest cost of routing.
    """
    index: dict[int, int] = {}
    events: list[Event] = []
    refs: list[tuple[str, str, int, bool]] = []
    for kind, subject, event, primary in items:
        at = index.get(id(event))
        if at is None:
            at = index[id(event)] = len(events)
            events.append(event)
        refs.append((kind, subject, at, primary))
    return orjson.dumps({"wm": watermark, "events": events, "refs": refs})


def decode_subject_batch(value: bytes) -> tuple[int | None, list[Item]]:
    """Items of an internal record; the copies of one event share one dict (read-only)."""
    data = orjson.loads(value)
    if "refs" in data:
        events = data["events"]
        return data.get("wm"), [(k, s, events[i], p) for k, s, i, p in data["refs"]]
    return data.get("wm"), [tuple(i) for i in data["items"]]  # type: ignore[misc]
