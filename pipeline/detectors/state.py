"""One subject's state: which part belongs to which owner, each named and typed once.

Stage 2 keeps one JSON object per subject in its Table (``kind:subject``), shared by
several owners. Each owner reads and writes only its own part, under the key and with
the type defined here, so mypy catches a misspelt key or a misread field:

====================  ===================  ============================================
key                   owner                part
====================  ===================  ============================================
a detector's id       that detector        its own JSON dict (docs/rules.md: a rule's
                                           state is a dict by contract); ``DEADLINE``
                                           inside asks the engine for a timer
``HELD`` _held        detectors/engine     events held for the windowed detectors until
                                           the watermark passes them (compact, with
                                           ``event_time``: detectors/held.py)
``ALERTS`` _alerts    detectors/alerts     alert id -> ``AlertEntry`` (dedup)
``OUTCOMES`` _m       flow/outcomes        ``TaskOutcomes`` or ``ApprovalOutcomes``
``DOSSIER`` _ev       flow/dossiers        a task's dossier state (evidence/dossier.py)
``RELAY`` _rv         flow/dossiers        an approval's ``ReviewRelay``
``SEEN`` _seen        flow/stage2          event and notice id -> time (duplicates)
``META`` _x           flow/expiry          ``SubjectMeta`` (when it may expire)
``TASK`` _tk          flow/stage2          a credential's task id, from its issuance
                                           (relays revocations Redis could not route)
====================  ===================  ============================================

Reserved parts start with ``_``; every other key is a detector's. A metric window entry
(``metrics:<dimension>|<value>``) is not a subject: its shape is ``MetricState``.

The JSON layout is the persisted contract: a changelog written by an older revision
must restore (tests/unit/test_state_layout.py), so the parts keep the exact layout
they had, positional lists included. What changed is how the code reads them: the
mutable JSON objects are ``TypedDict``s (read and updated in place, no copy), and the
positional records (``AlertEntry``, ``SubjectMeta``, ``RelayedFinding``) are
dataclasses read with ``from_json`` and written back with ``to_json``. Measured where
it matters (docs/internals.md): ``AlertEntry`` and ``RelayedFinding`` are converted
once per alert; ``SubjectMeta`` is read and written for every subject a record
reaches, where the dataclass round trip cost ~1 µs a call, so ``expiry`` updates its
list in place by the field positions below and unpacks it into named locals. The
per-event parts stay plain JSON behind a typed accessor: ``HELD``'s events, ``SEEN``'s
ids and the detectors' own dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict

#: A detector's own dict: ``DEADLINE`` (event time, ms) asks for ``on_watermark``.
DEADLINE: Final = "_deadline"
HELD: Final = "_held"
ALERTS: Final = "_alerts"
OUTCOMES: Final = "_m"
DOSSIER: Final = "_ev"
RELAY: Final = "_rv"
SEEN: Final = "_seen"
META: Final = "_x"
TASK: Final = "_tk"
#: Keys of a metric window entry (``MetricState``).
SOURCES: Final = "_src"
WINDOWS: Final = "mw"

Event = dict[str, Any]
#: JSON list of an ``AlertEntry``: [count, first seen, last seen(, period end)].
AlertJson = list[int]


#: Every reserved part's key starts with it; no detector id does (registry.ID_PATTERN).
RESERVED_PREFIX: Final = "_"


def is_detector_part(key: str) -> bool:
    """A detector's own part (not one of the reserved ``_`` parts)."""
    return not key.startswith(RESERVED_PREFIX)


@dataclass(slots=True)
class AlertEntry:
    """What ``alerts.record_alert`` remembers of one alert id on a subject.

    ``until`` is the end of the id's dedup period (``alerts.period_end``); entries
    written before it was kept have none (``flow/expiry.stash`` then estimates it).
    """

    count: int
    first: int
    last: int
    until: int | None = None

    @classmethod
    def from_json(cls, raw: list[Any]) -> AlertEntry:
        return cls(int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]) if len(raw) > 3 else None)

    def to_json(self) -> AlertJson:
        out = [self.count, self.first, self.last]
        return out if self.until is None else [*out, self.until]


@dataclass(slots=True)
class SubjectMeta:
    """What ``flow/expiry`` needs to know when a subject is finished: its newest event
    time, for a credential when it was revoked and when it expires, and the time of the
    newest finding notice that reached it. JSON: [newest, revoked, expires, noticed]."""

    newest: int | None = None
    revoked: int | None = None
    expires: int | None = None
    noticed: int | None = None

    @classmethod
    def from_json(cls, raw: list[Any] | None) -> SubjectMeta:
        # JSON ints or nulls, as written by ``to_json`` (touched once per subject a
        # record reaches: no per-field conversion)
        return cls(*raw[:4]) if raw else cls()

    def to_json(self) -> list[int | None]:
        return [self.newest, self.revoked, self.expires, self.noticed]


#: Positions of ``SubjectMeta``'s fields in its JSON list, for ``expiry.touch``, which
#: updates the list in place for every subject a record reaches (the dataclass round
#: trip cost it ~1.1 µs more per call).
META_NEWEST, META_REVOKED, META_EXPIRES, META_NOTICED = range(4)


class Dims(TypedDict, total=False):
    """The dimensions of an outcome (none in states kept before modes existed)."""

    platform: Any
    team: Any
    identity_id: Any
    mode: Any


class TaskDone(Dims, total=False):
    """The task's completion: its time, whether it counted as safe, and whether its
    credentials were judged (after the revocation grace)."""

    t: int
    safe: bool
    judged: bool


class TaskOutcomes(TypedDict, total=False):
    """``OUTCOMES`` of a task: its credentials (id -> issued at), their revocations
    (id -> first revoked at), its completion and whether a finding reached it."""

    creds: dict[str, int]
    revoked: dict[str, int]
    done: TaskDone
    finding: bool


class Decision(Dims, total=False):
    """An approval's decision: its time, judged once the watermark passed it, and
    whether it was a meaningful review (set when judged)."""

    t: int
    judged: bool
    meaningful: bool


class ApprovalOutcomes(TypedDict, total=False):
    """``OUTCOMES`` of an approval: first request time, the decision, and whether a
    discrediting finding reached it (``rs``)."""

    req: int
    dec: Decision
    rs: bool


@dataclass(slots=True)
class RelayedFinding:
    """A finding that discredits an approval, as the approval relays it to its tasks.
    JSON: [detector, time]."""

    detector: str
    time: int

    @classmethod
    def from_json(cls, raw: list[Any]) -> RelayedFinding:
        return cls(str(raw[0]), int(raw[1]))

    def to_json(self) -> list[Any]:
        return [self.detector, self.time]


class ReviewRelay(TypedDict):
    """``RELAY`` of an approval: the tasks its events named (``t``) and the findings
    discrediting it (``d``: alert id -> ``RelayedFinding`` JSON)."""

    t: list[str]
    d: dict[str, list[Any]]


class SubjectParts(TypedDict, total=False):
    """The reserved parts of a subject's state (a detector's part: ``detector_part``)."""

    #: ``held.pack``'s form (or whole events, as written before it): ``held.unpack``
    _held: list[Event]
    _alerts: dict[str, AlertJson]
    _m: dict[str, Any]
    _ev: dict[str, Any]
    _rv: ReviewRelay
    _seen: dict[str, int]
    _x: list[int | None]
    _tk: str


class MetricState(TypedDict, total=False):
    """A metric window entry: per source partition the last (offset, index) applied
    (``SOURCES``), and the windows' own state (``WINDOWS``, metrics/windows.py)."""

    _src: dict[str, list[int]]
    mw: dict[str, Any]


# The accessors return the same dict under its type. They run for every subject a
# record reaches, so they return it as it is (no ``typing.cast`` call on top); the
# engine's loops over every key use ``RESERVED_PREFIX`` inline, not a call per key.


def parts(state: dict[str, Any]) -> SubjectParts:
    """The subject state typed by its reserved parts (the same dict: no copy)."""
    return state  # type: ignore[return-value]


def metric_state(state: dict[str, Any]) -> MetricState:
    """A metric window entry, typed (the same dict)."""
    return state  # type: ignore[return-value]


def task_outcomes(state: dict[str, Any]) -> TaskOutcomes:
    """A task's ``OUTCOMES``, created empty if absent (kept in the state)."""
    return state.setdefault(OUTCOMES, {})  # type: ignore[no-any-return]


def approval_outcomes(state: dict[str, Any]) -> ApprovalOutcomes:
    """An approval's ``OUTCOMES``, created empty if absent (kept in the state)."""
    return state.setdefault(OUTCOMES, {})  # type: ignore[no-any-return]


def read_task_outcomes(state: Mapping[str, Any]) -> TaskOutcomes:
    """A task's ``OUTCOMES`` for reading (an empty one, not stored, if absent)."""
    return state.get(OUTCOMES) or {}  # type: ignore[return-value]


def read_approval_outcomes(state: Mapping[str, Any]) -> ApprovalOutcomes:
    """An approval's ``OUTCOMES`` for reading (an empty one, not stored, if absent)."""
    return state.get(OUTCOMES) or {}  # type: ignore[return-value]


def detector_part(state: dict[str, Any], detector_id: str) -> dict[str, Any] | None:
    """A detector's own dict in the subject state (None: it keeps none)."""
    own = state.get(detector_id)
    return own if isinstance(own, dict) else None
