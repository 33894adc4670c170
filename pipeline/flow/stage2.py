"""Stage 2 (stateful): per-subject detector state, event-time watermark, deduplicated alerts.

Batch-first (docs/internals.md): a *unit* is every internal record of one partition
that one ``take_events`` batch brought. Records are still judged one after the
other (the watermark moves per record, so a replay with other batch
boundaries gives the same findings), but each touched subject's state is
written once per unit, and the writes come back to the caller as one ordered
list that the worker appends to the Table's changelog in one produce call.

Crash safety without transactions:

* a partition entry records the last offset whose effects are in the state
  (``done``): a replayed record at or below it is skipped, and duplicates from
  stage-1 replays (new offsets) are dropped per subject by event id;
* a unit's writes are, in changelog order: redo chunks (every state the unit
  changed), the partition entry (``done``, watermark, the unit's outputs,
  unsent) and then the subject states. Kafka keeps one partition's order, so
  if the partition entry survived a crash, the redo chunks did too: after a
  restart the unit's states are restored from them, even where the per-subject
  writes were lost, and its outputs are re-sent (same alert ids and activity,
  same metric deltas) instead of being recomputed from a state that already
  counts them. The worker waits for the changelog before it sends outputs.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol, cast

import orjson

from pipeline.detectors.base import REGISTRY_GAP, RELAYED
from pipeline.detectors.engine import DetectionEngine, DetectorError
from pipeline.detectors.kinds import provided
from pipeline.detectors.registry import subject_value
from pipeline.detectors.state import (
    ALERTS,
    DOSSIER,
    SEEN,
    SOURCES,
    TASK,
    WINDOWS,
    SubjectParts,
    metric_state,
    parts,
)
from pipeline.dlq import DeadLetter, dead_letter
from pipeline.evidence.thresholds import EvidenceThresholds
from pipeline.flow import dossiers, expiry, outcomes
from pipeline.flow.messages import (
    METRICS,
    TAGS,
    FindingNotice,
    Message,
    MetricDelta,
    Progress,
    SubjectCopy,
    from_json,
    from_legacy,
    partition_for,
    to_json,
)
from pipeline.flow.route import stage1_subjects
from pipeline.flow.validate import Rejection
from pipeline.flow.watermarks import Frontier, InputMarks
from pipeline.metrics import MetricRecord, MetricWindows, action_deltas, combine, routing_key
from pipeline.metrics.deltas import Outcome, outcome_deltas
from pipeline.records import EVENT_FIELDS

log = logging.getLogger(__name__)
Event = dict[str, Any]
PARTITION_KEY = "__partition__:{}"
#: Redo chunks of a partition's last unit: ``{"done": offset, "states": {key: state}}``.
REDO_KEY = "__redo__:{}:{}"
#: Upper bound of one redo chunk's value (the changelog takes 8 MiB messages).
REDO_CHUNK_BYTES = 1024 * 1024
#: One internal record: (offset, upstream watermark report as JSON, its messages).
Record = tuple[int, Any, list[Message]]
#: One changelog write: (table key, value, value as written); a deletion is
#: (key, None, None), a tombstone in the changelog (``flow/expiry.py``).
Write = tuple[str, Any, bytes | None]
#: ``Progress`` messages: each stage-2 partition tells every partition how far it got
#: (``newest``) and the slowest progress it has itself received (``seen``).
#: Metric windows close on the minimum of ``seen`` over all partitions, not of
#: ``newest``: a finding raised on one partition reaches its task on a second
#: one as a notice, whose correction then travels to the window's partition on
#: a third. Records from one partition to another keep their order, so a
#: partition's ``seen`` can only pass a time after it has handled every notice
#: sent before it, and the corrections it made from them are already on their way
#: ahead of it. Closing on ``newest`` lost such corrections after an event-time jump.
PROGRESS_EVERY_S = 1.0
#: How long records are skipped while waiting for a rewound partition's offsets.
REWIND_PATIENCE_S = 60.0
#: Upper bound of the items of one unit (its outputs and redo go in single records).
UNIT_MAX_ITEMS = 20_000
#: Per subject, how many recent event ids are remembered for dedup (up to 25%
#: more between trims). Duplicates come from stage-1 replays of the last seconds.
SEEN_MAX = 2048
#: ``error.code`` of an event copy a detector raised on (docs/contracts/dlq.md).
DETECTOR_ERROR = "detector_error"


class StateStore(Protocol):
    """What stage 2 reads of a faust Table (a dict in unit tests); it never writes."""

    def get(self, key: str) -> Any: ...

    def keys(self) -> Any: ...


@dataclass(slots=True)
class Stage2Output:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: messages for the internal topic (metric deltas, progress, finding notices),
    #: each to its ``target`` partition
    items: list[Message] = field(default_factory=list)
    metrics: list[MetricRecord] = field(default_factory=list)
    #: event copies a detector raised on, for the dead-letter topic (``quarantined()``)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: task evidence dossiers for ``governance.evidence.v1``, the newest per task
    evidence: list[dict[str, Any]] = field(default_factory=list)
    #: task subject keys whose dossier took something in this unit (checked at its end)
    dossiers: dict[str, None] = field(default_factory=dict)
    #: primary copies of new events, and late ones (for metrics)
    new_events: list[Event] = field(default_factory=list)
    late_events: int = 0
    duplicates: int = 0
    watermark: int | None = None
    replayed: bool = False
    #: records at or below the partition's done offset (a replay), not judged again
    skipped: int = 0
    #: the unit's changelog writes, in the order they must be appended
    writes: list[Write] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    """One subject's messages in one record."""

    kind: str
    subject: str
    copies: list[SubjectCopy] = field(default_factory=list)
    notices: list[FindingNotice] = field(default_factory=list)


@dataclass(slots=True)
class _Cursor:
    """A partition's event-time position while a unit is judged."""

    wm: int | None
    newest: int | None
    sources: dict[str, int]
    #: per partition, the ``seen`` it reported (see PROGRESS)
    relayed: dict[str, int]
    #: the input partitions' watermark reports, merged (flow/watermarks.py)
    frontier: Frontier


def max_ttl_from(engine: DetectionEngine) -> dict[str, int]:
    """Per identity kind, the effective max credential lifetime (ms) a detector provides."""
    return dict(provided(engine.specs, "credential_max_lifetime_ms"))


def quarantined(error: DetectorError, offset: int) -> dict[str, Any]:
    """What the dead letter of an event copy a detector raised on is built from,
    JSON-able (kept in the partition entry until sent): the detector, the
    exception's type, the internal record's offset, and the event's contract
    fields (stage 1 already redacted them; enrichment is left out, so the copy
    can be replayed to the input topic)."""
    event = error.event or {}
    return {
        "detector": error.detector,
        "error": error.error,
        "offset": offset,
        "event": {k: event[k] for k in EVENT_FIELDS if event.get(k) is not None},
        "redacted": bool(event.get("_secrets")),
    }


def quarantine_letter(item: dict[str, Any], topic: str, partition: int) -> DeadLetter:
    """The dead letter of a quarantined event copy (``stage1``'s builder, code
    ``detector_error``), its source the internal record it came in."""
    rejection = Rejection(
        DETECTOR_ERROR,
        f"detector {item['detector']} raised {item['error']}",
        orjson.dumps(item["event"]),
    )
    letter = dead_letter(rejection, topic, partition, int(item["offset"]), None)
    letter.headers.append(("error.detector", str(item["detector"]).encode()))
    if item.get("redacted") and ("redacted", b"true") not in letter.headers:
        letter.headers.append(("redacted", b"true"))
    return letter


def unit_writes(partition: int, entry: dict[str, Any], dirty: dict[str, Any]) -> list[Write]:
    """Redo chunks, then the partition entry, then the states (see the module doc).

    Each state is serialised once; the redo chunks are spliced from those bytes.
    """
    states: list[Write] = [
        (key, state, None if state is None else orjson.dumps(state)) for key, state in dirty.items()
    ]
    chunks: list[list[Write]] = []
    size = 0
    for write in states:
        if not chunks or (size + len(write[2] or b"") > REDO_CHUNK_BYTES and chunks[-1]):
            chunks.append([])
            size = 0
        chunks[-1].append(write)
        size += len(write[2] or b"null") + len(write[0]) + 4
    done = entry["done"]
    writes: list[Write] = []
    for i, chunk in enumerate(chunks):
        body = b",".join(
            orjson.dumps(key) + b":" + (b"null" if value is None else value)
            for key, _, value in chunk
        )
        writes.append(
            (
                REDO_KEY.format(partition, i),
                {"done": done, "states": {key: state for key, state, _ in chunk}},
                b'{"done":' + orjson.dumps(done) + b',"states":{' + body + b"}}",
            )
        )
    entry["redo"] = len(chunks)
    writes.append((PARTITION_KEY.format(partition), entry, orjson.dumps(entry)))
    return writes + states


def _get(store: StateStore, dirty: Mapping[str, Any], key: str) -> Any:
    """A state as the unit left it so far (None: absent, or deleted in this unit)."""
    return dirty[key] if key in dirty else store.get(key)


def apply_writes(store: Any, writes: list[Write]) -> None:
    """Apply writes to a dict-like store as a changelog recovery would (from bytes;
    a tombstone deletes the key)."""
    for key, _, value in writes:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = orjson.loads(value)


@dataclass
class Stage2Stats:
    items_in: int = 0
    duplicates: int = 0
    late_events: int = 0
    #: events enriched while the identity registry was not ready (``REGISTRY_GAP``):
    #: the ``needs_registry`` detectors did not judge them
    registry_gap_events: int = 0
    #: revocations relayed to their task from the credential's state (``TASK``)
    revocations_relayed: int = 0
    #: held-back progress reports sent by the flush (``held_progress``), one per partition
    progress_flushed: int = 0
    alerts_created: int = 0
    alerts_updated: int = 0
    timers_fired: int = 0
    records_in: int = 0
    alerts_by_detector: Counter[str] = field(default_factory=Counter)
    units: int = 0
    #: assignments where input resumed past the offsets the recovered state covers
    offset_gaps: int = 0
    #: states taken from redo chunks after a restart
    states_restored: int = 0
    #: per detector id, the event copies and timers it raised on (quarantined)
    detector_errors: Counter[str] = field(default_factory=Counter)
    #: event copies sent to the dead-letter topic because a detector raised
    dead_letters: int = 0
    #: newest event time this worker's stage 2 has seen (ms), for the lag gauge
    newest_event_ms: int | None = None
    #: alert records by (detector, severity): ``govpipe_alerts_total``
    alerts_by_severity: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Table entries (subjects, metric windows, partition entries) after the last unit
    state_entries: int = 0
    #: subjects deleted from the Table because they were finished (``flow/expiry.py``)
    subjects_expired: int = 0
    #: of those, tasks never completed and approvals never decided
    subjects_abandoned: int = 0
    #: expired subjects whose alert ids are kept in the dedup records, and of them
    #: the ones that came back and took their ids back
    dedup_kept: int = 0
    dedup_recalled: int = 0
    #: global metric deltas applied here (one window size): the governance counters'
    #: positive parts, and the negated negative ones (corrections), for Prometheus
    governance: Counter[str] = field(default_factory=Counter)
    corrections: Counter[str] = field(default_factory=Counter)

    def count_delta(self, delta: Mapping[str, Any]) -> None:
        for name, value in delta["c"].items():
            if value > 0:
                self.governance[name] += value
            elif value < 0:
                self.corrections[name] -= value


class Stage2:
    def __init__(
        self,
        engine: DetectionEngine,
        partitions: int,
        allowed_lateness_ms: int,
        product_version: str,
        window_sizes_ms: tuple[int, ...] = (60_000,),
        metrics_lateness_ms: int = 15 * 60_000,
        grace_ms: int = 300_000,
        evidence: EvidenceThresholds | None = None,
        abandoned_after_ms: int = 0,
    ) -> None:
        self.engine = engine
        #: thresholds of the task dossiers (None: evidence off, no dossier state kept)
        self.evidence = evidence
        self.partitions = partitions
        self.lateness = allowed_lateness_ms
        self.version = product_version
        self.window_sizes = window_sizes_ms
        self.metrics_lateness = metrics_lateness_ms
        self.grace = grace_ms
        #: what counts as ephemeral for the metrics is what SP-01 judges long-lived,
        #: policy overrides included (read from the effective spec, not copied)
        self.max_ttl_ms = max_ttl_from(engine)
        #: how long finished subjects and their alert ids are kept, from the effective
        #: specs (flow/expiry.py)
        self.horizons = expiry.Horizons.of(
            engine.specs.values(), allowed_lateness_ms, abandoned_after_ms
        )
        self.stats = Stage2Stats()
        #: where stage 1 routes an event (to relay a revocation it could not route)
        self._routes = stage1_subjects(engine.subject_kinds_for, evidence is not None)
        #: partition → heap of (deadline, subject key); rebuilt from the store.
        #: Detector and task timers run on the detection watermark; metric windows
        #: on the newest event time (their own lateness handles revisions).
        self._timers: dict[int, list[tuple[int, str]]] = {}
        #: tasks' timers run on the task clock (``_task_clock``), so apart
        self._task_timers: dict[int, list[tuple[int, str]]] = {}
        self._metric_timers: dict[int, list[tuple[int, str]]] = {}
        #: partition → heap of (expiry, subject key) of finished subjects, and the
        #: expiry each key was pushed with (one entry per key). Expiry runs on the
        #: relayed progress, not the watermark (``_expire_due``).
        self._expiries: dict[int, list[tuple[int, str]]] = {}
        self._expiry_of: dict[int, dict[str, int]] = {}
        self._progress_sent: dict[int, tuple[float, int, int | None]] = {}
        #: partition → (newest, seen) that the rate limit held back: ``held_progress``
        #: sends it once due, so the last progress of a stream that went quiet goes out
        #: (a task's clock waits for it, ``_record``)
        self._progress_held: dict[int, tuple[int, int | None]] = {}
        #: wall-clock rate limit of progress that only moved ``newest`` (a harness that
        #: simulates time sets 0: every progress goes out at once)
        self.progress_every_s = PROGRESS_EVERY_S
        #: the wall clock of that rate limit (tests set their own)
        self.clock = time.monotonic
        #: partition → its entry as last written (read from the store once per assignment)
        self._pstate: dict[int, dict[str, Any]] = {}
        #: partitions whose first record since assignment was checked against ``done``
        self._checked: set[int] = set()
        #: partition → (offset the input was sought back to, monotonic give-up time)
        self._rewinding: dict[int, tuple[int, float]] = {}

    # -- timers ---------------------------------------------------------------
    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their timer index is rebuilt if they come back."""
        for p in partitions:
            self._pstate.pop(p, None)
            self._checked.discard(p)
            self._rewinding.pop(p, None)
            self._timers.pop(p, None)
            self._task_timers.pop(p, None)
            self._metric_timers.pop(p, None)
            self._expiries.pop(p, None)
            self._expiry_of.pop(p, None)
            self._progress_held.pop(p, None)
            self._progress_sent.pop(p, None)

    def _windows(self, state: dict[str, Any]) -> MetricWindows:
        return MetricWindows(self.window_sizes, self.metrics_lateness, state=state.get(WINDOWS))

    def _deadline(self, key: str, state: dict[str, Any]) -> int | None:
        """The subject's next timer: its detectors', outcomes' or dossier's earliest."""
        if key.startswith(METRICS + ":"):
            return self._windows(state).next_deadline if state.get(WINDOWS) else None
        found = [
            d
            for d in (
                self.engine.next_deadline(state),
                outcomes.task_deadline(state, self.grace) if key.startswith("task:") else None,
                outcomes.approval_deadline(state) if key.startswith("approval:") else None,
                dossiers.deadline(state, self.evidence)
                if self.evidence is not None and key.startswith("task:")
                else None,
            )
            if d is not None
        ]
        return min(found) if found else None

    def _expires_at(self, key: str, state: dict[str, Any]) -> int | None:
        """When a subject with no timer pending expires (None: not finished)."""
        if key.startswith(METRICS + ":") or self._deadline(key, state) is not None:
            return None
        dossier_open = self.evidence is not None and DOSSIER in state
        return expiry.expires_at(key, state, self.horizons, self.grace, dossier_open)

    def _may_expire(self, partition: int, key: str, state: dict[str, Any]) -> None:
        """Index a finished subject's expiry (once per key; a later one is re-pushed
        when the earlier entry comes due)."""
        at = self._expires_at(key, state)
        if at is None:
            return
        pushed = self._expiry_of[partition]
        if key in pushed and pushed[key] <= at:
            return
        pushed[key] = at
        heapq.heappush(self._expiries[partition], (at, key))

    def _expire_due(
        self, store: StateStore, dirty: dict[str, Any], partition: int, clock: int
    ) -> None:
        """Expire the finished subjects whose time ``clock`` has passed.

        ``clock`` is the slowest progress this partition has received from every
        partition, minus the allowed lateness: a finding about a subject raised on
        another partition once its watermark passed the subject's horizon was sent
        before that partition's progress passed it, and records between two
        partitions keep their order, so its notice has arrived (the metric windows
        close on the same argument). On the own watermark, an event-time jump lost
        such notices (tests/integration/test_delivery_order.py).
        """
        heap, pushed = self._expiries[partition], self._expiry_of[partition]
        while heap and heap[0][0] <= clock:
            _, key = heapq.heappop(heap)
            pushed.pop(key, None)
            state = _get(store, dirty, key)
            if not state:
                continue
            at = self._expires_at(key, state)
            if at is None:
                continue  # busy again: indexed anew when it finishes
            if at > clock:
                pushed[key] = at
                heapq.heappush(heap, (at, key))
                continue
            self._expire(store, dirty, partition, key, state, clock)

    def _expire(
        self,
        store: StateStore,
        dirty: dict[str, Any],
        partition: int,
        key: str,
        state: dict[str, Any],
        watermark: int,
    ) -> None:
        """Delete a finished subject (a tombstone among the unit's writes); its alert
        ids still inside their dedup period go to the partition's dedup record."""
        if parts(state).get(ALERTS):
            dkey = expiry.DEDUP_KEY.format(partition)
            record = cast(expiry.DedupRecord, _get(store, dirty, dkey) or {})
            if expiry.stash(record, key, state, self.horizons, watermark):
                dirty[dkey] = record
                self.stats.dedup_kept += 1
        dirty[key] = None
        self.stats.subjects_expired += 1
        if expiry.unfinished(key, state):
            self.stats.subjects_abandoned += 1

    def _recall(
        self, store: StateStore, dirty: dict[str, Any], partition: int, key: str
    ) -> dict[str, Any]:
        """A new state for a subject absent from the Table: with the alert ids the
        dedup record kept for it if it expired inside their dedup period."""
        dkey = expiry.DEDUP_KEY.format(partition)
        record = _get(store, dirty, dkey)
        alerts = expiry.recall(record, key)
        if alerts is None:
            return {}
        dirty[dkey] = record
        self.stats.dedup_recalled += 1
        return {ALERTS: alerts}

    def _purge_dedup(
        self, store: StateStore, dirty: dict[str, Any], partition: int, watermark: int | None
    ) -> None:
        dkey = expiry.DEDUP_KEY.format(partition)
        record = _get(store, dirty, dkey)
        if record is None or watermark is None or not expiry.purge(record, watermark):
            return
        dirty[dkey] = record if record.get("s") else None

    def _heap(self, key: str, partition: int) -> list[tuple[int, str]]:
        if key.startswith(METRICS + ":"):
            timers = self._metric_timers
        else:
            timers = self._task_timers if key.startswith("task:") else self._timers
        return timers[partition]

    def _index(self, store: StateStore, partition: int, dirty: dict[str, Any]) -> None:
        if partition in self._timers:
            return
        self._timers[partition], self._metric_timers[partition] = [], []
        self._task_timers[partition] = []
        self._expiries[partition], self._expiry_of[partition] = [], {}
        for key in sorted({*store.keys(), *dirty}):  # sorted: the same heaps after a restart
            if key.startswith("__") or partition_for(key, self.partitions) != partition:
                continue
            state = _get(store, dirty, key)
            deadline = self._deadline(key, state) if state else None
            if deadline is not None:
                self._heap(key, partition).append((deadline, key))
            elif state:
                self._may_expire(partition, key, state)
        heapq.heapify(self._timers[partition])
        heapq.heapify(self._task_timers[partition])
        heapq.heapify(self._metric_timers[partition])

    # -- units ----------------------------------------------------------------
    def process_unit(
        self, store: StateStore, partition: int, records: list[Record]
    ) -> Stage2Output:
        """Judge ``records`` (one partition's, in offset order) and return the
        outputs and the changelog writes of the whole unit (``out.writes``)."""
        pkey = PARTITION_KEY.format(partition)
        dirty: dict[str, Any] = {}
        pstate = self._pstate.get(partition)
        out = Stage2Output()
        if pstate is None:  # first unit since the partition was assigned
            pstate = store.get(pkey) or {}
            self._restore(store, partition, pstate, dirty)
            last = pstate.get("out") or {}
        else:
            last = {}
        self._index(store, partition, dirty)
        out.watermark = pstate.get("wm")
        if last and not last.get("sent"):
            # The previous owner wrote the unit but may not have delivered its
            # outputs: send what was computed, and only that.
            out.alerts += last.get("alerts", [])
            out.items += [
                from_json(i) if i[0] in TAGS else from_legacy(*i) for i in last.get("items", [])
            ]
            out.metrics += [MetricRecord.from_dict(m) for m in last.get("metrics", [])]
            out.quarantined += last.get("quarantined", [])
            if self.evidence is not None:
                for task in last.get("evidence", []):
                    key = f"task:{task}"
                    record = dossiers.resend(_get(store, dirty, key), self.evidence)
                    if record is not None:
                        out.evidence.append(record)
            out.replayed = True
        done: int = pstate.get("done", -1)
        cursor = _Cursor(
            pstate.get("wm"),
            pstate.get("newest"),
            dict(pstate.get("sources") or {}),
            dict(pstate.get("relayed") or {}),
            Frontier(pstate.get("inputs")),
        )
        fresh_records = [r for r in records if r[0] > done]
        out.skipped = len(records) - len(fresh_records)
        for offset, upstream_wm, items in fresh_records:
            self._record(store, dirty, partition, offset, upstream_wm, items, cursor, out)
            done = offset
        out.watermark = cursor.wm
        if fresh_records:
            self._purge_dedup(store, dirty, partition, cursor.wm)
        if self.evidence is not None:
            for key in out.dossiers:
                if dirty[key] is None:
                    continue  # expired later in the unit: its dossier was forgotten first
                record = dossiers.emit(dirty[key], self.evidence)
                if record is not None:
                    out.evidence.append(record)
        if out.evidence:  # the newest dossier per task (a re-sent unit's included)
            out.evidence = list({str(r["task_id"]): r for r in out.evidence}.values())
        if not fresh_records and not dirty:
            return out
        outputs = bool(out.alerts or out.items or out.metrics or out.quarantined or out.evidence)
        entry: dict[str, Any] = {
            "wm": cursor.wm,
            "newest": cursor.newest,
            "sources": cursor.sources,
            "relayed": cursor.relayed,
            "inputs": cursor.frontier.state,
            "done": done,
            "out": {
                "alerts": out.alerts,
                "items": [to_json(m) for m in out.items],
                "metrics": [m.to_dict() for m in out.metrics],
                "quarantined": out.quarantined,
                # task ids: a re-send rebuilds each dossier from the state (lib: last_record)
                "evidence": [r["task_id"] for r in out.evidence],
                "sent": False,
            }
            if outputs
            else {"sent": True},
        }
        out.writes = unit_writes(partition, entry, dirty)
        self._pstate[partition] = entry
        self.stats.units += 1
        self.stats.state_entries = len(store.keys())
        return out

    def rewind(
        self, store: StateStore, partition: int, first_offset: int
    ) -> tuple[bool, int | None]:
        """Before a unit: (skip these records?, offset to seek the input back to).

        The consumer can resume past offsets whose effects the recovered state
        lacks: faust reads a changelog only up to the high watermark the broker
        reports, and Tansu's lags what it acknowledged (docs/internals.md), so the last
        units' writes can be missing while their input offsets were committed.
        Measured: after a kill -9, state up to offset 3 and input resumed at 7.
        The records in between are read again; until they arrive, the ones
        already buffered after them are skipped (they come again too).
        """
        pending = self._rewinding.get(partition)
        if pending is not None:
            want, give_up_at = pending
            if first_offset > want and time.monotonic() < give_up_at:
                return True, None
            del self._rewinding[partition]
            if first_offset > want:
                log.error(
                    "partition %d: offsets %d..%d never came back (retention?); their "
                    "effects on state are lost",
                    partition,
                    want,
                    first_offset - 1,
                )
            return False, None
        if partition in self._checked:
            return False, None
        self._checked.add(partition)
        entry = self._pstate.get(partition) or store.get(PARTITION_KEY.format(partition)) or {}
        done = int(entry.get("done", -1))
        if done < 0 or first_offset <= done + 1:
            return False, None
        self.stats.offset_gaps += 1
        log.warning(
            "partition %d: state covers offsets up to %d but input resumed at %d; "
            "reading from %d again",
            partition,
            done,
            first_offset,
            done + 1,
        )
        self._rewinding[partition] = (done + 1, time.monotonic() + REWIND_PATIENCE_S)
        return True, done + 1

    def sent(self, partition: int) -> list[Write]:
        """The unit's outputs were delivered: a restart must not send them again."""
        entry = self._pstate.get(partition)
        if not entry or (entry.get("out") or {}).get("sent", True):
            return []
        entry = {**entry, "redo": 0, "out": {"sent": True}}
        self._pstate[partition] = entry
        return [(PARTITION_KEY.format(partition), entry, orjson.dumps(entry))]

    def _restore(
        self, store: StateStore, partition: int, entry: dict[str, Any], dirty: dict[str, Any]
    ) -> None:
        """Redo the last unit's states: its per-subject writes may not have survived."""
        for i in range(int(entry.get("redo") or 0)):
            chunk = store.get(REDO_KEY.format(partition, i))
            if not chunk or chunk.get("done") != entry.get("done"):
                log.error(
                    "partition %d: redo chunk %d of unit %s is missing; its states may be stale",
                    partition,
                    i,
                    entry.get("done"),
                )
                continue
            dirty.update(chunk["states"])
            self.stats.states_restored += len(chunk["states"])

    # -- records (one at a time: the watermark moves per record) ---------------
    def process(
        self,
        store: StateStore,
        partition: int,
        offset: int,
        upstream_wm: Any,
        items: list[Message],
    ) -> Stage2Output:
        """One record as a unit of its own, written to ``store`` as the changelog
        would (decoded from the written bytes); for tests and offline runs."""
        out = self.process_unit(store, partition, [(offset, upstream_wm, items)])
        apply_writes(store, out.writes)
        return out

    def mark_sent(self, store: StateStore, partition: int, offset: int) -> None:
        apply_writes(store, self.sent(partition))

    def _relay_revocations(self, state: dict[str, Any], events: list[Event]) -> list[Message]:
        """A credential remembers the task it was issued for (``TASK``). Stage 1 routes
        a ``credential.revoked`` without ``task_id`` to the task its credential's Redis
        hash names; a Redis that came back empty has lost that name, the revocation
        then reached no task, and SP-02 reported the revoked credential live. Such a
        revocation goes to the task from here, marked ``RELAYED`` (the task takes it
        as on time: it comes one internal hop after stage 1's copies). Where stage 1
        did route it, nothing is sent."""
        reserved: SubjectParts = state  # type: ignore[assignment]  # typed, no call
        out: list[Message] = []
        for event in events:
            etype = event["event_type"]
            if etype in ("credential.issued", "credential.rotated") and event.get("task_id"):
                reserved.setdefault(TASK, str(event["task_id"]))
            elif etype == "credential.revoked" and subject_value("task", event) is None:
                task = reserved.get(TASK)
                if task and ("task", task) in self._routes({**event, "task_id": task}):
                    out.append(SubjectCopy("task", task, {**event, RELAYED: True}, False))
                    self.stats.revocations_relayed += 1
        return out

    def _record(
        self,
        store: StateStore,
        dirty: dict[str, Any],
        partition: int,
        offset: int,
        upstream_wm: Any,
        items: list[Message],
        cursor: _Cursor,
        out: Stage2Output,
    ) -> None:
        before = cursor.wm
        marks = InputMarks.from_json(upstream_wm)
        if marks is not None:
            # The frontier is the minimum over every input partition (idle ones
            # aside), so the order Kafka hands partitions over in changes nothing.
            cursor.frontier.merge(marks)
            frontier = cursor.frontier.value()
            if frontier is not None:
                candidate = frontier - self.lateness
                cursor.wm = candidate if cursor.wm is None else max(cursor.wm, candidate)
                cursor.newest = frontier if cursor.newest is None else max(cursor.newest, frontier)
        watermark = cursor.wm
        self.stats.items_in += len(items)
        found: list[Outcome] = []
        new_events: list[Event] = []
        alerts: list[dict[str, Any]] = []
        duplicates = late_events = 0
        # Per subject, in order of first appearance: its event copies and notices.
        groups: dict[str, _Group] = {}
        deltas_in: dict[str, list[MetricDelta]] = defaultdict(list)
        sources = cursor.sources
        for item in items:
            if isinstance(item, SubjectCopy):
                key = item.key
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(item.kind, item.subject)
                group.copies.append(item)
            elif isinstance(item, MetricDelta):
                deltas_in[item.key].append(item)
            elif isinstance(item, Progress):
                src, seen_at = str(item.source), item.seen
                sources[src] = max(sources.get(src, item.newest), item.newest)
                if seen_at is not None:
                    cursor.relayed[src] = max(cursor.relayed.get(src, seen_at), seen_at)
            else:
                key = item.key
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(item.kind, item.subject)
                group.notices.append(item)
        for key, deltas_of_key in deltas_in.items():
            self._add_deltas(store, key, deltas_of_key, dirty, partition)
        wm_for_detectors = watermark if watermark is not None else -(2**62)
        #: the slowest progress every partition has relayed (None until all have)
        slowest = min(sources.values()) if len(sources) >= self.partitions else None
        # A task judges on the slower of the watermark and the progress every partition
        # has relayed (the expiry clock's argument, ``_expire_due``): what another
        # subject sends it about events before that time has arrived by then (a
        # revocation relayed from its credential, a finding notice). On the watermark
        # alone, a backfill moved it past SP-02's deadline before the relay came.
        # Until every partition has reported, the task waits. Its dossier observes the
        # same clock: it says "not revoked within the grace" only once the task knows.
        task_wm = self._task_clock(watermark, slowest)
        task_wm_for_detectors = task_wm if task_wm is not None else -(2**62)
        for key, group in groups.items():
            kind, subject = group.kind, group.subject
            state: dict[str, Any] | None = _get(store, dirty, key)
            if state is None:
                state = self._recall(store, dirty, partition, key)
            reserved: SubjectParts = state  # type: ignore[assignment]  # typed, no call
            seen = reserved.setdefault(SEEN, {})
            fresh: list[Event] = []
            late: list[Event] = []
            for copy in group.copies:
                event = copy.event
                eid = event["event_id"]
                if eid in seen:
                    duplicates += 1
                    continue
                seen[eid] = event["event_time"]
                if RELAYED in event:  # a relayed revocation: on time, marker removed
                    event = {k: v for k, v in event.items() if k != RELAYED}
                    is_late = False
                else:
                    is_late = before is not None and event["event_time"] < before
                (late if is_late else fresh).append(event)
                if copy.primary:
                    new_events.append(event)
                    if is_late:
                        late_events += 1
                    if event.get(REGISTRY_GAP):
                        self.stats.registry_gap_events += 1
            noticed: list[FindingNotice] = []
            for notice in group.notices:
                nid = notice.id
                if nid in seen:
                    duplicates += 1
                    continue
                seen[nid] = notice.time
                noticed.append(notice)
            if len(seen) > SEEN_MAX + SEEN_MAX // 4:
                # Trim in bulk: deleting one oldest key at a time leaves holes that
                # every later ``next(iter(seen))`` walks over (quadratic on hot subjects).
                reserved[SEEN] = dict(islice(seen.items(), len(seen) - SEEN_MAX, None))
            if fresh or late or noticed:
                expiry.touch(state, kind, fresh + late, (n.time for n in noticed))
            if not fresh and not late and not noticed:
                if group.notices and kind == "task" and self.evidence is not None:
                    # an Update's notice (same id, higher count): for the dossier only
                    dirty[key] = state
                    self._dossier(key, state, subject, [], [], group.notices, task_wm, out)
                continue
            errors: list[DetectorError] = []
            findings = self.engine.process(
                kind,
                subject,
                state,
                fresh,
                task_wm_for_detectors if kind == "task" else wm_for_detectors,
                late,
                errors,
            )
            if errors:
                self._quarantine(errors, kind, partition, offset, out)
            raised = self.engine.alerts(state, findings, product_version=self.version)
            alerts += raised
            found += outcomes.track(kind, state, fresh + late, raised, noticed)
            out.items += outcomes.finding_notices(kind, raised)
            if kind == "credential":
                out.items += self._relay_revocations(state, fresh + late)
            if kind == "approval" and self.evidence is not None:
                out.items += dossiers.relay_reviews(state, subject, fresh + late, noticed)
            if kind == "task" and self.evidence is not None:
                notices = group.notices
                self._dossier(key, state, subject, fresh + late, raised, notices, task_wm, out)
            dirty[key] = state
            deadline = self._deadline(key, state)
            if deadline is not None:
                heapq.heappush(self._heap(key, partition), (deadline, key))
            else:
                self._may_expire(partition, key, state)
        if watermark is not None:
            heap = self._timers[partition]
            found += self._fire_timers(store, dirty, partition, heap, watermark, out, alerts)
        if task_wm is not None:
            heap = self._task_timers[partition]
            found += self._fire_timers(store, dirty, partition, heap, task_wm, out, alerts)
        found += outcomes.alert_outcomes(alerts)
        actions = [e for e in new_events if e.get("event_type") == "action"]
        deltas = combine(
            action_deltas(actions, self.window_sizes, max_ttl_ms=self.max_ttl_ms)
            + outcome_deltas(found, self.window_sizes)
        )
        out.items += [
            MetricDelta(routing_key(d), (partition, offset, i), d) for i, d in enumerate(deltas)
        ]
        if cursor.newest is not None:
            out.items += self._progress(partition, cursor.newest, slowest)
        if slowest is not None:
            self._expire_due(store, dirty, partition, slowest - self.lateness)
        if len(cursor.relayed) >= self.partitions:
            self._advance_metrics(store, dirty, partition, min(cursor.relayed.values()), out)
        out.alerts += alerts
        out.new_events += new_events
        self.stats.records_in += 1
        newest = cursor.frontier.newest
        if newest is not None and (
            self.stats.newest_event_ms is None or newest > self.stats.newest_event_ms
        ):
            self.stats.newest_event_ms = newest
        for alert in alerts:
            self.stats.alerts_by_detector[alert["detector"]] += 1
            self.stats.alerts_by_severity[alert["detector"], alert["severity"]] += 1
            if alert["activity_id"] == 1:
                self.stats.alerts_created += 1
            else:
                self.stats.alerts_updated += 1
        out.duplicates += duplicates
        out.late_events += late_events
        self.stats.duplicates += duplicates
        self.stats.late_events += late_events

    def _quarantine(
        self,
        errors: list[DetectorError],
        kind: str,
        partition: int,
        offset: int | None,
        out: Stage2Output,
    ) -> None:
        """Count and log each failure (ids only, never values); event copies go to the
        dead-letter topic with the unit's outputs. The partition moves on."""
        for error in errors:
            self.stats.detector_errors[error.detector] += 1
            if error.event is None or offset is None:
                log.warning(
                    "detector %s raised %s in a timer of a %s subject (partition %d); "
                    "the timer is dropped",
                    error.detector,
                    error.error,
                    kind,
                    partition,
                )
                continue
            log.warning(
                "detector %s raised %s on event %s (%s copy, partition %d offset %d); "
                "the copy goes to the dead-letter topic, the other detectors judged it%s",
                error.detector,
                error.error,
                error.event.get("event_id"),
                kind,
                partition,
                offset,
                "; its first failure: its state for this subject was reset" if error.reset else "",
            )
            out.quarantined.append(quarantined(error, offset))
            self.stats.dead_letters += 1

    def _fire_timers(
        self,
        store: StateStore,
        dirty: dict[str, Any],
        partition: int,
        heap: list[tuple[int, str]],
        clock: int,
        out: Stage2Output,
        raised: list[dict[str, Any]],
    ) -> list[Outcome]:
        """Fire the timers of ``heap`` due at ``clock`` (the watermark, or for tasks
        the task clock)."""
        found: list[Outcome] = []
        while heap and heap[0][0] <= clock:
            _, key = heapq.heappop(heap)
            state = _get(store, dirty, key)
            deadline = self._deadline(key, state) if state else None
            if not state or deadline is None or deadline > clock:
                continue  # stale entry: the subject moved its timer or was handled
            kind, _, subject = key.partition(":")
            errors: list[DetectorError] = []
            findings = self.engine.process(kind, subject, state, [], clock, errors=errors)
            if errors:
                self._quarantine(errors, kind, partition, None, out)
            self.stats.timers_fired += 1
            alerts = self.engine.alerts(state, findings, product_version=self.version)
            raised += alerts
            found += outcomes.track(kind, state, [], alerts)
            out.items += outcomes.finding_notices(kind, alerts)
            if kind == "task":
                found += outcomes.judge_credentials(state, clock, self.grace)
                if self.evidence is not None:
                    dossiers.forget(state, self.evidence, clock)
                    self._dossier(key, state, subject, [], alerts, [], clock, out)
            elif kind == "approval":
                found += outcomes.judge_approval(state, clock)
            dirty[key] = state
            nxt = self._deadline(key, state)
            if nxt is not None:
                heapq.heappush(heap, (nxt, key))
            else:
                self._may_expire(partition, key, state)
        return found

    def _task_clock(self, watermark: int | None, slowest: int | None) -> int | None:
        """The slower of the watermark and the expiry clock (``slowest``, every
        partition's relayed progress, minus the allowed lateness); None until both exist."""
        if watermark is None or slowest is None:
            return None
        return min(watermark, slowest - self.lateness)

    def _dossier(
        self,
        key: str,
        state: dict[str, Any],
        task: str,
        events: list[Event],
        alerts: list[dict[str, Any]],
        notices: list[FindingNotice],
        watermark: int | None,
        out: Stage2Output,
    ) -> None:
        """Fold into the task's dossier; it is built and compared once, at the unit's end
        (``dirty[key]`` is ``state`` by then: the callers mark it dirty)."""
        if dossiers.fold(state, task, events, alerts, notices, watermark):
            out.dossiers[key] = None

    # -- metrics --------------------------------------------------------------
    def _progress(self, partition: int, newest: int, seen: int | None) -> list[Message]:
        """This partition's progress, when it moved: at once when ``seen`` moved (the
        relay that lets windows close), else at most once a second."""
        now = self.clock()
        last = self._progress_sent.get(partition)
        if last is not None:
            sent_at, sent_newest, sent_seen = last
            if newest <= sent_newest and (seen is None or (sent_seen or 0) >= seen):
                return []
            if (seen is None or seen == sent_seen) and now - sent_at < self.progress_every_s:
                self._progress_held[partition] = (newest, seen)
                return []
        self._progress_held.pop(partition, None)
        self._progress_sent[partition] = (now, newest, seen)
        return [Progress(target, partition, newest, seen) for target in range(self.partitions)]

    def held_progress(self) -> list[Message]:
        """The progress the rate limit held back and that is now due, for every target
        (the worker sends it once a second, between units: ``Stage2Runner.flush``, which
        calls ``flushed`` once it is delivered). Without it, the last progress of a stream
        that went quiet never went out, and the tasks and metric windows waiting for it
        never judged."""
        now = self.clock()
        out: list[Message] = []
        for partition, (newest, seen) in self._progress_held.items():
            sent_at = self._progress_sent.get(partition, (0.0, 0, None))[0]
            if now - sent_at >= self.progress_every_s:
                out += [Progress(t, partition, newest, seen) for t in range(self.partitions)]
        return out

    def flushed(self, sent: list[Message]) -> None:
        """``held_progress``'s messages were delivered: no longer held."""
        now = self.clock()
        for item in sent:
            if not isinstance(item, Progress) or item.to != 0:
                continue  # one per source partition
            held = (item.newest, item.seen)
            if self._progress_held.get(item.source) == held:
                del self._progress_held[item.source]
            self._progress_sent[item.source] = (now, item.newest, item.seen)
            self.stats.progress_flushed += 1

    def _add_deltas(
        self,
        store: StateStore,
        key: str,
        deltas: list[MetricDelta],
        dirty: dict[str, Any],
        partition: int,
    ) -> None:
        """Apply deltas once each: per source partition, (offset, index) only grows.

        The key's timer is pushed only when its deadline changed: the deadline it had
        already has its entry (``_advance_metrics``)."""
        state: dict[str, Any] = _get(store, dirty, key) or {}
        entry = metric_state(state)
        applied = entry.setdefault(SOURCES, {})
        windows = self._windows(state)
        before = windows.next_deadline
        for message in deltas:
            src_partition, src_offset, index = message.source
            last = applied.get(str(src_partition))
            if last is not None and [src_offset, index] <= last:
                continue
            applied[str(src_partition)] = [src_offset, index]
            delta = message.delta
            windows.add(delta)
            if delta["dim"] == "global" and delta["w"] == self.window_sizes[0]:
                self.stats.count_delta(delta)  # once per item: one window size, one owner
        entry[WINDOWS] = windows.state
        dirty[key] = state
        deadline = windows.next_deadline
        if deadline is not None and deadline != before:
            heapq.heappush(self._metric_timers[partition], (deadline, key))

    def _advance_metrics(
        self,
        store: StateStore,
        dirty: dict[str, Any],
        partition: int,
        newest: int,
        out: Stage2Output,
    ) -> None:
        """Advance the metric windows due at ``newest``. A key's current deadline always
        has an entry of its own (pushed when the deadline became current: assignment,
        a delta, an advance), so an entry that is no longer its key's deadline is
        dropped, never pushed again: pushed again, every stale copy came back at each
        later deadline, and the heap grew by ~10,000 entries per simulated day (soak
        parameters), its pops with it, for as long as the worker ran."""
        heap = self._metric_timers[partition]
        while heap and heap[0][0] <= newest:
            _, key = heapq.heappop(heap)
            state = _get(store, dirty, key)
            if not state or not state.get(WINDOWS):
                continue
            windows = self._windows(state)
            deadline = windows.next_deadline
            if deadline is None or deadline > newest:
                continue  # a stale copy: the current deadline has its own entry
            out.metrics += windows.advance(newest)
            metric_state(state)[WINDOWS] = windows.state
            dirty[key] = state
            nxt = windows.next_deadline
            if nxt is not None:
                heapq.heappush(heap, (nxt, key))
