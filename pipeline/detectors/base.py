"""What a detector is: a declarative spec plus pure functions over enriched events.

Detectors never read clocks or do I/O. They see the events of ONE subject (the
spec's ``subject`` kind, e.g. one credential) in event-time order, a JSON-able
``state`` dict that the engine persists for that (detector, subject), and the
partition's watermark. Adding a detector = one module in this package exporting
``DETECTOR`` + its tests.

Window kinds have generic drivers in ``kinds.py`` (single event, event count,
ratio, distinct value count, absence "A not followed by B within T" evaluated on
the watermark): a rule is then a spec plus a few small pure functions. Rules that
fit none of them write ``on_events``/``on_watermark`` with the helpers in
``windows.py`` and ``_ordered.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Event = dict[str, Any]
State = dict[str, Any]
Severity = Literal["low", "medium", "high", "critical"]
#: ``marks_task_unsafe``: a finding naming a task makes the task's completion unsafe;
#: ``discredits_approvals``: the approvals in its evidence were not meaningful reviews.
Effect = Literal["marks_task_unsafe", "discredits_approvals"]
#: The effects of a finding about the quality of an approval (the RS detectors).
REVIEW_EFFECTS: frozenset[Effect] = frozenset({"marks_task_unsafe", "discredits_approvals"})
SubjectKind = Literal["identity", "credential", "task", "approval", "approver", "requester"]

#: Where each subject kind's value comes from on an event (first non-empty wins).
SUBJECT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "identity": ("identity_id",),
    "credential": ("credential_id",),
    "task": ("task_id",),
    "approval": ("approval_id",),
    "approver": ("approver",),
    "requester": ("on_behalf_of", "identity_id"),
}

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
#: Every detector's alerts group single-event occurrences per this period of event time
#: unless its spec or the policy says otherwise (``thresholds["dedup_s"]``, seconds).
DEFAULT_DEDUP_S = HOUR // SECOND
#: Set by stage 1 on an event it enriched while the identity registry was not ready
#: (its marker absent or empty, ``enrichment/readiness.py``): the engine does not hand
#: such an event to ``needs_registry`` detectors. Internal, like ``_secrets``: never in
#: an alert, a metric, a dossier or a dead letter.
REGISTRY_GAP = "_registry_gap"
#: Set by stage 2 on a ``credential.revoked`` it relays from the credential's subject
#: to its task because stage 1 could not route it there (flow/stage2.py,
#: ``_relay_revocations``); the task's subject removes it before anything reads the event.
RELAYED = "_relayed"


@dataclass(frozen=True, slots=True)
class Framework:
    framework: str  # OWASP-NHI, NIST-CSF-2.0, NIST-AI-RMF, CSA-MAESTRO
    control: str


@dataclass(frozen=True)
class DetectorSpec:
    id: str
    title: str
    description: str
    severity: Severity
    subject: SubjectKind
    event_types: frozenset[str]
    remediation: str
    #: None: no window; else the engine holds the events until the watermark passes them
    window_ms: int | None = None
    #: defaults a policy file tunes (JSON values)
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    frameworks: tuple[Framework, ...] = ()
    enabled: bool = True
    #: what a finding does to the outcomes the metrics report (flow/outcomes.py)
    effects: frozenset[Effect] = frozenset({"marks_task_unsafe"})
    #: named quantities other parts read from this detector's policy-effective
    #: thresholds (``kinds.provided``), e.g. ``revocation_grace_ms``; name -> function
    #: of the thresholds, so a policy override reaches every reader
    provides: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    #: its verdict on an event rests on what the identity registry says (known or not,
    #: kind, status, owner, allowed scopes): events enriched while the registry is not
    #: ready (``REGISTRY_GAP``) are not judged by it. Per-event detectors only (a
    #: stateful one that missed events would judge the rest wrongly).
    needs_registry: bool = False


@dataclass(slots=True)
class Finding:
    """One detection result; the engine turns it into an OCSF alert with a stable id."""

    detector: str
    subject: str
    event_ids: list[str]
    facts: dict[str, Any]
    window_start: int | None = None
    window_end: int | None = None
    time: int = 0  # event time the finding is about (ms)
    #: subject fields for the alert (identity_id, credential_id, approver, task_id, ...)
    context: dict[str, Any] = field(default_factory=dict)
    #: None = severity of the spec
    severity: Severity | None = None
    #: the approvals this finding is about when its subject is not the approval itself
    #: (RS-02/03/07 are raised on an approver or requester): the one standard place
    approval_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    """What a detector may know besides its events: thresholds (policy-merged) and time."""

    spec: DetectorSpec
    thresholds: Mapping[str, Any]
    subject: str
    watermark: int  # event-time watermark of the partition (ms); never the wall clock
    policy: Any = None  # the parsed policy (privileged scopes, sensitive actions, exceptions)


OnEvents = Callable[[Context, State, list[Event]], list[Finding]]
OnWatermark = Callable[[Context, State], list[Finding]]


def _no_timers(ctx: Context, state: State) -> list[Finding]:
    return []


@dataclass(frozen=True)
class Detector:
    """A spec with its logic. ``on_events`` gets one subject's new events in time order;
    ``on_watermark`` runs when the watermark passes ``state['_deadline']`` (set it
    to ask for a timer; the engine clears it before calling)."""

    spec: DetectorSpec
    on_events: OnEvents
    on_watermark: OnWatermark = _no_timers
    #: ``on_events`` judges each event on its own, keeps no state and sets no timer
    #: (the ``single_event`` driver): the engine may split a batch and judge each part
    #: with other thresholds (a policy's thresholds per mode)
    per_event: bool = False


def subject_of(kind: str, event: Event) -> str | None:
    for name in SUBJECT_FIELDS[kind]:
        value = event.get(name)
        if value:
            return str(value)
    return None
