"""Stage 1, last step: place events on stage-2 partitions by subject, many events a record.

An event goes to every subject its detectors need (its identity, credential,
task, approval, approver, requester: ``DetectionEngine.subject_kinds_for``). Each
stage-2 partition owns the state of the subjects hashed to it (faust Tables are
co-partitioned with the internal topic), so a subject's events must always land
on the same partition: the hash is stable across processes and restarts.

The internal record's layout and its codec are here too (``SubjectRecordEncoder``,
``decode_subject_batch``); the messages it carries are ``flow/messages.py``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from pipeline.flow.messages import (
    COPY,
    InternalFormatError,
    Message,
    SubjectCopy,
    from_json,
    from_legacy,
    to_json,
)
from pipeline.flow.messages import partition_for as partition_for
from pipeline.flow.messages import subject_key as subject_key
from pipeline.flow.outcomes import OUTCOME_EVENTS

Event = dict[str, Any]
SubjectsOf = Callable[[Event], list[tuple[str, str]]]
#: Version of the internal record layout written by ``SubjectRecordEncoder``.
RECORD_VERSION = 2


def route(
    events: list[Event], partitions: int, subjects_of: SubjectsOf
) -> dict[int, list[Message]]:
    """Group the event copies by the stage-2 partition of their subject.

    Events that no enabled detector needs go nowhere (they were validated,
    enriched and counted by stage 1).
    """
    out: dict[int, list[Message]] = defaultdict(list)
    for event in events:
        primary = True
        for kind, subject in subjects_of(event):
            out[partition_for(subject_key(kind, subject), partitions)].append(
                SubjectCopy(kind, subject, event, primary)
            )
            primary = False
    return out


def _task_of(event: Event) -> str | None:
    """The task an event belongs to: its ``task_id``, or for a ``credential.revoked``
    without one, the task its credential was issued for (``credential.task_id``)."""
    task = event.get("task_id")
    if not task and event.get("event_type") == "credential.revoked":
        credential = event.get("credential")
        task = credential.get("task_id") if isinstance(credential, dict) else None
    return str(task) if task else None


def _adding(out: list[tuple[str, str]], kind: str, value: str | None) -> list[tuple[str, str]]:
    if value and (kind, value) not in out:
        return [*out, (kind, value)]
    return out


def with_task_copies(subjects_of: SubjectsOf) -> SubjectsOf:
    """``subjects_of`` plus the task subject of every event of a task, whatever the
    enabled detectors need: the task's evidence dossier (docs/contracts/evidence.md)
    is kept there."""

    def subjects(event: Event) -> list[tuple[str, str]]:
        return _adding(subjects_of(event), "task", _task_of(event))

    return subjects


def with_outcome_copies(subjects_of: SubjectsOf) -> SubjectsOf:
    """``subjects_of`` plus what the metrics read whatever the enabled detectors need:
    the task and approval events of ``outcomes.OUTCOME_EVENTS`` on their subject, and
    every action at least once (its first copy carries its action metrics). Without
    it a policy that switched detectors off also changed the metrics."""

    def subjects(event: Event) -> list[tuple[str, str]]:
        out = subjects_of(event)
        etype = event.get("event_type")
        kind = OUTCOME_EVENTS.get(str(etype))
        if kind == "task":
            out = _adding(out, "task", _task_of(event))
        elif kind == "approval":
            approval = event.get("approval_id")
            out = _adding(out, "approval", str(approval) if approval else None)
        elif etype == "action" and not out:
            identity = event.get("identity_id")
            out = _adding(out, "identity", str(identity) if identity else None)
        return out

    return subjects


def stage1_subjects(subject_kinds_for: SubjectsOf, evidence: bool) -> SubjectsOf:
    """Where stage 1 routes each event: the subjects the enabled detectors read
    (``DetectionEngine.subject_kinds_for``), the metrics' outcomes, and with
    ``evidence`` every event of a task to its dossier."""
    detectors = with_task_copies(subject_kinds_for) if evidence else subject_kinds_for
    return with_outcome_copies(detectors)


def copies(messages: list[Message]) -> list[SubjectCopy]:
    """The subject copies among ``messages``."""
    return [m for m in messages if type(m) is SubjectCopy]


#: Enrichment added by stage 1: read-only dicts that every event of one identity
#: or credential shares within a batch (``RedisEnricher.enrich``).
VIEWS = ("identity", "credential")

_NO_LIMIT = 1 << 62


class SubjectRecordEncoder:
    """Encodes the internal records of one batch, each enrichment view written
    once per record instead of once per event.

    Most of an enriched event's bytes are the views of its identity and
    credential, which every event of that id in the batch shares (one dict,
    ``RedisEnricher.enrich``). While the encoder is open, each event's view
    fields hold an index into a table of the batch's views; ``close`` puts the
    dicts back (use it as a context manager). A record is ``{"v": 2, "wm",
    "events", "m", "views"}``: ``m`` holds the messages in order as tagged arrays
    (``messages.to_json``; a copy's event is an index into ``events``) and
    ``views`` maps the indices its events use to the dicts.
    """

    def __init__(self, max_bytes: int = _NO_LIMIT) -> None:
        self.max_bytes = max_bytes
        self._view_at: dict[int, int] = {}
        self._views: list[dict[str, Any]] = []
        self._keys: list[str] = []
        #: id(event) → (event, the indices of its views); the event is kept so ids stay unique
        self._events: dict[int, tuple[Event, tuple[int, ...]]] = {}

    def __enter__(self) -> SubjectRecordEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Put the views back into the events (they are the caller's)."""
        put_views_back([event for event, _ in self._events.values()], self._views)
        self._events.clear()

    def records(self, items: list[Message], watermark: Any) -> list[bytes]:
        """Item order kept, each record at most ``max_bytes`` unless one event alone
        is bigger. Only the last record carries the watermark report (the JSON of
        ``watermarks.InputMarks``): stage 2 judges lateness against the watermark
        before the record, so every item is judged against the same one wherever
        the batch is split."""
        index: dict[int, int] = {}
        events: list[Event] = []
        refs: list[Any] = []
        used: set[int] = set()
        swapped = self._events
        for item in items:
            if type(item) is not SubjectCopy:
                refs.append(to_json(item))
                continue
            event = item.event
            at = index.get(id(event))
            if at is None:
                at = index[id(event)] = len(events)
                events.append(event)
                hit = swapped.get(id(event))
                used.update(hit[1] if hit is not None else self._swap(event))
            refs.append((COPY, item.kind, item.subject, at, item.primary))
        # str keys: orjson's OPT_NON_STR_KEYS made the whole record 2x slower to write
        views, keys = self._views, self._keys
        value = orjson.dumps(
            {
                "v": RECORD_VERSION,
                "wm": watermark,
                "events": events,
                "m": refs,
                "views": {keys[i]: views[i] for i in used},
            }
        )
        if len(value) <= self.max_bytes or len(items) <= 1:
            return [value]
        parts = min(len(items), -(-len(value) // self.max_bytes) + 1)
        step = -(-len(items) // parts)
        chunks = [items[start : start + step] for start in range(0, len(items), step)]
        out: list[bytes] = []
        for n, chunk in enumerate(chunks):
            out += self.records(chunk, watermark if n == len(chunks) - 1 else None)
        return out

    def _swap(self, event: Event) -> tuple[int, ...]:
        used: list[int] = []
        for name in VIEWS:
            view = event.get(name)
            if type(view) is dict:
                index = self._view_at.get(id(view))
                if index is None:
                    index = self._view_at[id(view)] = len(self._views)
                    self._views.append(view)
                    self._keys.append(str(index))
                event[name] = index
                used.append(index)
        hit = self._events[id(event)] = (event, tuple(used))
        return hit[1]


def put_views_back(
    events: list[Event], views: Sequence[dict[str, Any]] | Mapping[int, dict[str, Any]]
) -> None:
    """Replace each view index an event holds (``SubjectRecordEncoder``) by its dict."""
    for event in events:
        for name in VIEWS:
            index = event.get(name)
            if type(index) is int:
                event[name] = views[index]


def encode_subject_batch(items: list[Message], watermark: Any) -> bytes:
    """One internal record holding every item (or a bare watermark), unbounded."""
    with SubjectRecordEncoder() as encoder:
        return encoder.records(items, watermark)[0]


#: Upper bound of one internal record. A catch-up batch (after a Redis outage or
#: a restart with a backlog: up to ``batch_max_records`` records of up to
#: ``max_events_per_record`` events each) once made a single internal record of
#: 9 MB, which the producer refused (max request 8 MiB + 64 KiB): the agent
#: crashed and faust dropped the in-flight batch. 4 MiB is half the topic's
#: ``max.message.bytes`` and equals the consumer's per-partition fetch size;
#: a single event copy is bounded by ``max_record_bytes`` (2 MiB), so it always fits.
SUBJECT_RECORD_MAX_BYTES = 4 * 1024 * 1024


def encode_bounded(
    items: list[Message], watermark: Any, max_bytes: int = SUBJECT_RECORD_MAX_BYTES
) -> list[bytes]:
    """``items`` as internal records of at most ``max_bytes`` each (a single
    oversized event still goes alone); see ``SubjectRecordEncoder``."""
    with SubjectRecordEncoder(max_bytes) as encoder:
        return encoder.records(items, watermark)


def decode_subject_batch(value: bytes) -> tuple[Any, list[Message]]:
    """(watermark report, messages) of an internal record; the copies of one event
    share one dict, and the events of one identity or credential share its views
    (all read-only). The report is raw JSON: ``watermarks.InputMarks.from_json``.

    Records of the untyped layouts before version 2 (``refs`` of
    ``[kind, subject, event index, primary]``, or ``items`` of whole tuples) are
    read as typed messages (``messages.from_legacy``); a newer version or anything
    malformed raises ``InternalFormatError``: never dropped silently.
    """
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InternalFormatError(f"internal record is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InternalFormatError("internal record is not a JSON object")
    version = data.get("v")
    try:
        if version is None:
            return data.get("wm"), _legacy(data)
        if version != RECORD_VERSION:
            raise InternalFormatError(
                f"internal record layout v{str(version)[:10]} is not v{RECORD_VERSION}: "
                "written by another govpipe version"
            )
        events = data["events"]
        table = data.get("views")
        if table:
            put_views_back(events, {int(k): v for k, v in table.items()})
        return data.get("wm"), [from_json(m, events) for m in data["m"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, InternalFormatError):
            raise
        raise InternalFormatError(f"malformed internal record: {type(exc).__name__}") from None


def _legacy(data: dict[str, Any]) -> list[Message]:
    if "refs" not in data:  # the first layout: one [kind, subject, event, primary] per copy
        return [from_legacy(*item) for item in data["items"]]
    events = data["events"]
    table = data.get("views")
    if table:
        put_views_back(events, {int(k): v for k, v in table.items()})
    return [from_legacy(k, s, events[i], p) for k, s, i, p in data["refs"]]
