"""Runs the detectors of one subject over a batch of its events, then its due timers.

Stage 2 calls ``process`` once per (subject kind, subject) per batch with that
subject's persisted state, and again with no events when the subject's earliest
timer (``next_deadline``) is passed by the watermark. Pure and deterministic: the
same events in the same order from the same state give the same findings, so a
replay or a crash-restart reproduces alerts (and their ids) exactly.

State layout for one subject (``detectors/state.py``): ``state[detector_id]`` is that
detector's own state (``DEADLINE`` inside asks for a timer), ``HELD`` the events held
for the windowed detectors (compact: ``detectors/held.py``), ``ALERTS`` the alert
dedup bookkeeping of ``alerts.record_alert``; the other reserved parts belong to stage 2.

Quarantine: with an ``errors`` list, a detector that raises does not stop the
others. Its own state for that subject is never left half-updated: a detector that
has raised before in this process is called on a JSON snapshot of its state
(detector state is JSON by contract) and put back as it was before the failing
call; the first failure of a detector, which had no snapshot, resets its state for
that subject (snapshotting every call of every detector cost ~10-25% of stage 2's CPU,
measured with ``bench/stage2_cpu.py``: windowed states are large). A call over
several events is then retried event by event so only the bad ones are left out,
and each bad (detector, event) is reported as a ``DetectorError`` for stage 2 to
count, log and dead-letter. A timer that raises is dropped (its state is put back
without the deadline, or it would fire again at once). Without the list,
exceptions propagate: detector tests and ``govpipe rules test`` want the traceback.

Modes (the policy's ``detectors.<id>.modes``, docs/policy.md): a finding whose
identity's mode (``mode`` in its context; none = ``autonomous``) has the detector
off is dropped, and its severity is the mode's when the mode sets one. A detector
off for itself but on for a mode runs, and keeps only that mode's findings. A
per-event detector with thresholds per mode judges the events of each mode with that
mode's thresholds (``mode_of_event``: the event's identity view).

Registry gaps: an event stage 1 enriched while the identity registry was not ready
carries ``REGISTRY_GAP``; the detectors whose spec ``needs_registry`` do not see it
(every other detector does), so a lost registry does not turn every identity into an
"unknown identity" finding (docs/operations.md#govpiperegistrynotready).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.detectors.alerts import (
    alert_id,
    first_seen,
    last_seen,
    period_end,
    record_alert,
    to_alert,
)
from pipeline.detectors.base import (
    REGISTRY_GAP,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    Severity,
    State,
)
from pipeline.detectors.held import pack, unpack
from pipeline.detectors.policy import (
    DEFAULT_DEDUP_S,
    DEFAULT_POLICY,
    MODES,
    Policy,
    mode_of_context,
    mode_of_event,
)
from pipeline.detectors.registry import all_detectors, subject_kinds_for
from pipeline.detectors.state import DEADLINE, HELD, RESERVED_PREFIX, SubjectParts


def _event_time(event: Event) -> int:
    return int(event["event_time"])


def _in_order(event: Event) -> tuple[int, str]:
    return int(event["event_time"]), str(event["event_id"])


DEFAULT_DEDUP_MS = DEFAULT_DEDUP_S * 1000


def _merged(findings: list[Finding]) -> Finding:
    """One finding for several occurrences of one incident: the latest one's facts
    and subject, every occurrence's events and approvals (first seen first)."""
    if len(findings) == 1:
        return findings[0]
    latest = max(findings, key=lambda f: f.time)
    ids = list(dict.fromkeys(str(e) for f in findings for e in f.event_ids))
    approvals = list(dict.fromkeys(a for f in findings for a in f.approval_ids))
    return dataclasses.replace(latest, event_ids=ids, approval_ids=approvals)


@dataclass(slots=True)
class DetectorError:
    """One detector raised on one event copy (``event``), or in a timer (``event`` None)."""

    detector: str
    #: the exception's type name only: its message may quote event values
    error: str
    event: Event | None = None
    #: the detector's state for this subject was reset (its first failure: no snapshot)
    reset: bool = False


class DetectionEngine:
    """Detectors with the policy applied: switches, thresholds, severities, exceptions."""

    def __init__(self, policy: Policy | None = None, detectors: Sequence[Detector] | None = None):
        self.policy = policy or DEFAULT_POLICY
        chosen = all_detectors() if detectors is None else tuple(detectors)
        #: effective spec per detector id (policy thresholds/severity merged in)
        self.specs: dict[str, DetectorSpec] = {}
        self._by_kind: dict[str, list[Detector]] = {}
        for det in sorted(chosen, key=lambda d: d.spec.id):
            spec = dataclasses.replace(
                det.spec,
                severity=self.policy.severity(det.spec) or det.spec.severity,
                thresholds=self.policy.thresholds(det.spec),
                enabled=self.policy.enabled(det.spec),
            )
            self.specs[spec.id] = spec
            if self.policy.runs(det.spec):  # on for itself, or for some mode
                self._by_kind.setdefault(spec.subject, []).append(
                    dataclasses.replace(det, spec=spec)
                )
        #: the detectors that run (on for themselves or for some mode): routing follows it
        self.enabled_ids = frozenset(d.spec.id for ds in self._by_kind.values() for d in ds)
        #: the running detectors that do not judge events of a registry gap
        self.registry_ids = tuple(
            sorted(i for i in self.enabled_ids if self.specs[i].needs_registry)
        )
        #: per detector with mode settings: mode -> (on?, severity override or None)
        self._modes: dict[str, dict[str, tuple[bool, Severity | None]]] = {
            i: {m: (self.policy.enabled_in(s, m), self.policy.mode_severity(i, m)) for m in MODES}
            for i, s in self.specs.items()
            if self.policy.modes(i)
        }
        #: per per-event detector with thresholds per mode: mode -> its spec
        self._mode_specs: dict[str, dict[str, DetectorSpec]] = {}
        for ds in self._by_kind.values():
            for det in ds:
                if not det.per_event:
                    continue
                tuned: dict[str, DetectorSpec] = {
                    m: dataclasses.replace(det.spec, thresholds=t)
                    for m in MODES
                    if (t := self.policy.mode_thresholds(det.spec, m)) is not None
                }
                if tuned:
                    self._mode_specs[det.spec.id] = tuned
        # Per-call work hoisted out of the hot path (stage 2 calls ``process`` for
        # every subject of every record): live ids per kind, severity overrides.
        #: detectors that raised in this process: their calls run on a snapshot
        self._raised: set[str] = set()
        self._live = {k: frozenset(d.spec.id for d in ds) for k, ds in self._by_kind.items()}
        self._severity = {i: self.policy.severity(s) for i, s in self.specs.items()}
        #: dedup period of each detector's single-event alerts (policy-effective)
        self._dedup_ms = {
            i: int(s.thresholds.get("dedup_s", DEFAULT_DEDUP_S)) * 1000
            for i, s in self.specs.items()
        }
        #: per subject kind, the event types some windowed detector consumes (held
        #: until the watermark passes them)
        self._windowed_types = {
            k: frozenset(t for d in ds if d.spec.window_ms is not None for t in d.spec.event_types)
            for k, ds in self._by_kind.items()
        }

    def subject_kinds_for(self, event: Event) -> list[tuple[str, str]]:
        """Where stage 1 must route ``event``: one (kind, value) per subject it feeds."""
        return subject_kinds_for(event, self.enabled_ids)

    def process(
        self,
        kind: str,
        subject: str,
        state: State,
        events: list[Event],
        watermark: int,
        late: list[Event] | None = None,
        errors: list[DetectorError] | None = None,
    ) -> list[Finding]:
        """Feed ``events`` (any order) then fire due timers.

        Single-event detectors see ``events`` at once, sorted by event time.
        Windowed detectors see them only once the watermark has passed them, in
        event-time order (ties by event id), held in ``state[HELD]`` until then:
        what they find then depends on the events, not on the order Kafka delivered
        them in (docs/event-time.md). ``late`` events arrived after the watermark
        had passed them: they feed only single-event detectors. With ``errors``, a
        detector that raises is quarantined (module doc) and the failures appended.
        """
        detectors = self._by_kind.get(kind, [])
        live = self._live.get(kind, frozenset())
        for stale in [k for k in state if k not in live and not k.startswith(RESERVED_PREFIX)]:
            del state[stale]  # a detector disabled or removed since: its state is moot
        windowed_types = self._windowed_types.get(kind)
        ready: list[Event] = []
        reserved: SubjectParts = state  # type: ignore[assignment]  # typed, no call
        if windowed_types:
            held = reserved.get(HELD) or []
            wanted = [e for e in events if e["event_type"] in windowed_types]
            if wanted or held:
                # held in compact form (``detectors/held.py``), whole again once ready
                ready = [unpack(e) for e in held if e["event_time"] <= watermark]
                ready += [e for e in wanted if e["event_time"] <= watermark]
                rest = [e for e in held if e["event_time"] > watermark] if ready else held[:]
                rest += [pack(e) for e in wanted if e["event_time"] > watermark]
                if rest:
                    reserved[HELD] = rest
                else:
                    reserved.pop(HELD, None)
                ready.sort(key=_in_order)
        elif HELD in reserved:
            del reserved[HELD]  # windowed detectors disabled since
        if len(events) > 1:
            events = sorted(events, key=_event_time)  # stable: ties keep their order
        if late and len(late) > 1:
            late = sorted(late, key=_event_time)
        present = {e["event_type"] for e in events}
        if late:
            present.update(e["event_type"] for e in late)
        present_ready = {e["event_type"] for e in ready}
        findings: list[Finding] = []
        for det in detectors:
            types = det.spec.event_types
            windowed = det.spec.window_ms is not None
            if (present_ready if windowed else present).isdisjoint(types):
                continue
            source = ready if windowed else (events + late if late else events)
            batch = [e for e in source if e["event_type"] in types]
            if det.spec.needs_registry:
                batch = [e for e in batch if not e.get(REGISTRY_GAP)]
            if not batch:
                continue
            own = state.setdefault(det.spec.id, {})
            found = []
            for spec, part in self._by_mode(det, batch):
                ctx = Context(spec, spec.thresholds, subject, watermark, self.policy)
                if errors is None:
                    found += det.on_events(ctx, own, part)
                else:
                    found += self._guarded(det, ctx, state, part, errors)
            if found:
                findings += self._apply_policy(det.spec, found)
            if not state[det.spec.id]:
                del state[det.spec.id]
        for det in detectors:
            own = state.get(det.spec.id)
            deadline = own.get(DEADLINE) if own else None
            if own is None or deadline is None or deadline > watermark:
                continue
            del own[DEADLINE]
            ctx = self._context(det, subject, watermark)
            if errors is None:
                found = det.on_watermark(ctx, own)
            else:
                before = orjson.dumps(own) if det.spec.id in self._raised else None
                try:
                    found = det.on_watermark(ctx, own)
                except Exception as exc:
                    # Put back without the deadline: the timer is dropped, not retried.
                    self._raised.add(det.spec.id)
                    state[det.spec.id] = {} if before is None else orjson.loads(before)
                    errors.append(
                        DetectorError(det.spec.id, type(exc).__name__, reset=before is None)
                    )
                    found = []
            if found:
                findings += self._apply_policy(det.spec, found)
            if not state[det.spec.id]:
                del state[det.spec.id]
        return findings

    def _guarded(
        self,
        det: Detector,
        ctx: Context,
        state: State,
        batch: list[Event],
        errors: list[DetectorError],
    ) -> list[Finding]:
        """``det.on_events`` over ``batch``; if it raises, its state is put back (or
        reset, the first time: module doc) and the events are retried one by one,
        each bad one reported and left out."""
        did = det.spec.id
        own = state[did]
        before = orjson.dumps(own) if did in self._raised else None
        try:
            return det.on_events(ctx, own, batch)
        except Exception as exc:
            self._raised.add(did)
            reset = before is None
            if len(batch) == 1:
                state[did] = {} if before is None else orjson.loads(before)
                errors.append(DetectorError(did, type(exc).__name__, batch[0], reset))
                return []
        own = state[did] = {} if before is None else orjson.loads(before)
        found: list[Finding] = []
        for event in batch:
            before = orjson.dumps(own)
            try:
                found += det.on_events(ctx, own, [event])
            except Exception as exc:
                own = state[did] = orjson.loads(before)
                # the reset (if any) is reported with the first bad event of the retry
                errors.append(DetectorError(did, type(exc).__name__, event, reset))
                reset = False
        return found

    @staticmethod
    def next_deadline(state: State) -> int | None:
        """The earliest timer any detector of this subject asked for, or the
        earliest held event (None = none)."""
        deadlines = [
            int(v[DEADLINE])
            for k, v in state.items()
            if not k.startswith(RESERVED_PREFIX)
            and isinstance(v, dict)
            and v.get(DEADLINE) is not None
        ]
        reserved: SubjectParts = state  # type: ignore[assignment]  # typed, no call
        held = reserved.get(HELD)
        if held:
            deadlines.append(min(int(e["event_time"]) for e in held))
        return min(deadlines) if deadlines else None

    def due(self, state: State, watermark: int) -> bool:
        """Must ``process`` run for this subject (with no events) at this watermark?"""
        deadline = self.next_deadline(state)
        return deadline is not None and deadline <= watermark

    def alerts(
        self, state: State, findings: list[Finding], *, product_version: str
    ) -> list[dict[str, Any]]:
        """Alerts for ``findings`` of this subject: Create the first time, Update after.

        Occurrences of one incident (same alert id) found in one call become one
        record whose evidence holds all their events and whose ``count`` counts them.
        """
        grouped: dict[str, list[Finding]] = {}
        for finding in findings:
            aid = alert_id(finding, self._dedup_ms.get(finding.detector, DEFAULT_DEDUP_MS))
            grouped.setdefault(aid, []).append(finding)
        out = []
        for aid, same in grouped.items():
            finding = _merged(same)
            spec = self.specs[finding.detector]
            dedup_ms = self._dedup_ms.get(finding.detector, DEFAULT_DEDUP_MS)
            until = period_end(finding, dedup_ms)
            activity, count = record_alert(state, aid, finding.time, len(same), until)
            out.append(
                to_alert(
                    finding,
                    spec,
                    activity=activity,
                    count=count,
                    product_version=product_version,
                    first_seen_time=first_seen(state, aid),
                    last_seen_time=last_seen(state, aid),
                    dedup_ms=self._dedup_ms.get(finding.detector, DEFAULT_DEDUP_MS),
                    occurrences=len(same),
                )
            )
        return out

    def _by_mode(self, det: Detector, batch: list[Event]) -> list[tuple[DetectorSpec, list[Event]]]:
        """The batch in one part with the detector's spec, or, for a per-event detector
        with thresholds per mode, one part per mode (time order kept within each) with
        that mode's spec."""
        tuned = self._mode_specs.get(det.spec.id)
        if tuned is None:
            return [(det.spec, batch)]
        parts: dict[str, list[Event]] = {}
        for event in batch:
            parts.setdefault(mode_of_event(event), []).append(event)
        return [(tuned.get(mode, det.spec), part) for mode, part in parts.items()]

    def _context(self, det: Detector, subject: str, watermark: int) -> Context:
        return Context(det.spec, det.spec.thresholds, subject, watermark, self.policy)

    def _apply_policy(self, spec: DetectorSpec, findings: list[Finding]) -> list[Finding]:
        kept = []
        override = self._severity.get(spec.id)
        modes = self._modes.get(spec.id)
        for finding in findings:
            if self.policy.excepted(spec.id, finding.context):
                continue
            mode_override = None
            if modes is not None:
                enabled, mode_override = modes[mode_of_context(finding.context)]
                if not enabled:
                    continue
            finding.detector = spec.id
            finding.severity = mode_override or override or finding.severity or spec.severity
            kept.append(finding)
        return kept
