"""The messages of the internal topic (``govpipe.subjects.v1``), one type per kind.

Stage 1 sends **subject copies** of events; stage 2 sends itself **metric deltas**
(to the partition that owns a metric dimension), **progress** (each partition's
event-time progress, to every partition: the relay that closes metric windows,
``flow/stage2.py``) and **finding notices** (a finding raised on another subject
that names a task, whose completion is then not safe, or an approval in its evidence,
whose review was then not meaningful).

Every message knows the stage-2 partition it goes to (``target``): a subject copy,
delta or notice goes where its subject's state lives; progress goes to the
partition it names. The record layout and the codec are in ``flow/route.py``
(``SubjectRecordEncoder``, ``decode_subject_batch``); ``to_json``/``from_json`` are
the form an unsent message takes in a stage-2 partition entry (changelog JSON).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from pipeline.metrics.deltas import Delta

Event = dict[str, Any]

#: Subject kind of a metric dimension's windows (fed by deltas routed back to stage 2).
METRICS = "metrics"


class InternalFormatError(ValueError):
    """An internal record or message this worker cannot read (e.g. written by a newer
    version): stage 2 stops on it rather than skip it (docs/internals.md)."""


def subject_key(kind: str, subject: str) -> str:
    return f"{kind}:{subject}"


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes (unlike ``hash()``, which is salted per process)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


@dataclass(slots=True)
class SubjectCopy:
    """An event routed to one of its subjects. ``primary`` marks the one copy of an
    event that stage 2 counts for the metrics. The event is shared (read-only) by
    the copies of one record."""

    kind: str
    subject: str
    event: Event
    primary: bool

    @property
    def key(self) -> str:
        return subject_key(self.kind, self.subject)

    def target(self, partitions: int) -> int:
        return partition_for(subject_key(self.kind, self.subject), partitions)


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """A change to one metric window of one dimension, applied once: per source
    partition, (offset, index) only grows (``Stage2._add_deltas``)."""

    #: the dimension's routing key (``pipeline.metrics.routing_key``)
    dimension: str
    #: (stage-2 partition, internal offset, index) of the record that produced it
    source: tuple[int, int, int]
    delta: Delta

    @property
    def key(self) -> str:
        return subject_key(METRICS, self.dimension)

    def target(self, partitions: int) -> int:
        return partition_for(self.key, partitions)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far stage-2 partition ``source`` got (``newest``) and the slowest progress
    it has itself received (``seen``), for partition ``to``."""

    to: int
    source: int
    newest: int
    seen: int | None

    def target(self, partitions: int) -> int:
        return self.to


@dataclass(frozen=True, slots=True)
class FindingNotice:
    """A finding raised on another subject names a task or an approval.

    To a task (``kind`` "task", the alert's ``task_id``): the task's completion is
    not safe when the detector has the ``marks_task_unsafe`` effect, and the task's
    evidence dossier lists the finding (``severity``, ``frameworks``, ``first``,
    ``count``, ``approval_id`` are what it shows). To an approval (``kind``
    "approval", one of the alert's ``evidence.approval_ids``): a detector with the
    ``discredits_approvals`` effect (RS-02/03/07, raised on an approver or
    requester) says the review was not meaningful. A **review** notice (``review``,
    to a task) is such a finding relayed by the approval to the task its events name
    (``flow/dossiers.relay_reviews``): the task's dossier marks that approval not
    meaningful; the task is not made unsafe by it (the metrics count the approval)."""

    #: the task id, or the approval id of an approval notice
    subject: str
    alert_id: str
    detector: str
    #: event time of the finding (ms)
    time: int
    kind: str = "task"
    severity: str | None = None
    #: ``"FRAMEWORK control"`` strings
    frameworks: tuple[str, ...] = ()
    #: the alert's ``finding_info.first_seen_time``
    first: int | None = None
    #: occurrences of the alert so far (its ``count``)
    count: int = 1
    approval_id: str | None = None
    #: a discrediting finding relayed by ``approval_id`` to its task
    review: bool = False

    @property
    def task(self) -> str:
        return self.subject

    @property
    def id(self) -> str:
        """Dedup id in the subject's state (the same as the event id the untyped notices had)."""
        if self.review:
            return f"review:{self.alert_id}:{self.approval_id}:{self.subject}"
        return f"finding:{self.alert_id}:{self.subject}"

    @property
    def key(self) -> str:
        return subject_key(self.kind, self.subject)

    def target(self, partitions: int) -> int:
        return partition_for(self.key, partitions)

    def extra(self) -> dict[str, Any]:
        """What a task notice carries beyond the first layout (for the dossier)."""
        out: dict[str, Any] = {}
        if self.severity is not None:
            out["sev"] = self.severity
        if self.frameworks:
            out["fw"] = list(self.frameworks)
        if self.first is not None:
            out["first"] = self.first
        if self.count != 1:
            out["cnt"] = self.count
        if self.approval_id is not None:
            out["ap"] = self.approval_id
        return out


Message = SubjectCopy | MetricDelta | Progress | FindingNotice

#: Wire tags of the kinds (the first element of each message's JSON array). An
#: approval notice and a review notice have tags of their own: a worker that predates
#: them stops on them (``InternalFormatError``) instead of reading them as task notices.
COPY, DELTA, PROGRESS, NOTICE, APPROVAL_NOTICE, REVIEW_NOTICE = "c", "d", "p", "n", "a", "r"
TAGS = frozenset({COPY, DELTA, PROGRESS, NOTICE, APPROVAL_NOTICE, REVIEW_NOTICE})
_NOTICE_TAGS = {NOTICE: "task", APPROVAL_NOTICE: "approval", REVIEW_NOTICE: "task"}


def to_json(message: Message) -> list[Any]:
    """A message as a tagged JSON array; a copy carries its event inline (in a
    record, ``SubjectRecordEncoder`` writes each event once and refers to it)."""
    if type(message) is MetricDelta:
        return [DELTA, message.dimension, *message.source, message.delta]
    if type(message) is Progress:
        return [PROGRESS, message.to, message.source, message.newest, message.seen]
    if type(message) is FindingNotice:
        if message.kind == "approval":
            tag = APPROVAL_NOTICE
        else:
            tag = REVIEW_NOTICE if message.review else NOTICE
        out = [tag, message.subject, message.alert_id, message.detector, message.time]
        extra = message.extra()
        return [*out, extra] if extra else out
    if type(message) is SubjectCopy:
        return [COPY, message.kind, message.subject, message.event, message.primary]
    raise TypeError(f"not an internal message: {type(message).__name__}")


def from_json(data: list[Any], events: list[Event] | None = None) -> Message:
    """The inverse of ``to_json``; with ``events``, a copy's event is an index into it."""
    try:
        tag = data[0]
        if tag == COPY:
            event = data[3] if events is None else events[data[3]]
            return SubjectCopy(data[1], data[2], event, bool(data[4]))
        if tag == DELTA:
            return MetricDelta(data[1], (int(data[2]), int(data[3]), int(data[4])), data[5])
        if tag == PROGRESS:
            return Progress(int(data[1]), int(data[2]), int(data[3]), data[4])
        if tag in _NOTICE_TAGS:
            extra = data[5] if len(data) > 5 else {}
            return FindingNotice(
                data[1],
                data[2],
                data[3],
                int(data[4]),
                _NOTICE_TAGS[tag],
                extra.get("sev"),
                tuple(extra.get("fw") or ()),
                extra.get("first"),
                int(extra.get("cnt", 1)),
                extra.get("ap"),
                tag == REVIEW_NOTICE,
            )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise InternalFormatError(f"malformed internal message: {type(exc).__name__}") from None
    raise InternalFormatError(f"unknown internal message tag {str(tag)[:20]!r}")


#: The untyped tuples of the first two record layouts: (kind, subject, event, primary)
#: with progress and deltas posing as events.
_LEGACY_PROGRESS = "progress"
_LEGACY_FINDING = "_finding"


def from_legacy(kind: str, subject: str, event: Event, primary: bool) -> Message:
    """A message of the untyped layouts (records and partition entries written before
    the typed messages), read as its typed kind, so a rolling upgrade loses nothing."""
    if kind == _LEGACY_PROGRESS:
        return Progress(int(subject), int(event["from"]), int(event["newest"]), event.get("seen"))
    if kind == METRICS:
        src = event["src"]
        return MetricDelta(subject, (int(src[0]), int(src[1]), int(src[2])), event["delta"])
    if kind == "task" and event.get("event_type") == _LEGACY_FINDING:
        prefix, suffix = "finding:", f":{subject}"
        alert_id = str(event["event_id"]).removeprefix(prefix).removesuffix(suffix)
        return FindingNotice(subject, alert_id, str(event["detector"]), int(event["event_time"]))
    return SubjectCopy(kind, subject, event, bool(primary))
