"""Stage 2's side of the task evidence dossiers (docs/contracts/evidence.md).

The dossier state of a task lives in the task subject's state under ``DOSSIER``
(``_ev``, detectors/state.py), next to the detectors' state and the outcomes'. Per
unit that touched the task, stage 2 folds in the task's new events, the alerts raised
on the task itself and the finding notices other subjects sent it, with the
watermark, record by record; at the end of the unit a changed dossier is one record
for ``governance.evidence.v1`` among the unit's outputs. The task's timer covers the
revocation grace (``next_deadline``) and the day the state may be dropped
(``forget_at``). Everything here is a pure function of the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.detectors.state import (
    DOSSIER,
    RELAY,
    RelayedFinding,
    ReviewRelay,
    SubjectParts,
    parts,
)
from pipeline.evidence.dossier import (
    Record,
    add_alerts,
    add_events,
    add_reviews,
    forget_at,
    last_record,
    new_state,
    next_deadline,
    next_record,
    observe_watermark,
)
from pipeline.evidence.thresholds import EvidenceThresholds
from pipeline.flow.messages import FindingNotice
from pipeline.flow.outcomes import discrediting

#: Key of the dossier state in a task subject's state (``state.DOSSIER``).
EV = DOSSIER
#: Key of an approval subject's relay state (``relay_reviews``; ``state.ReviewRelay``).
RV = RELAY
#: Tasks one approval relays to, and discrediting findings it keeps (an approval
#: belongs to one task; the bounds only stop a hostile stream growing the state).
MAX_RELAY_TASKS = 8
MAX_RELAY_FINDINGS = 64
Event = Mapping[str, Any]


def belongs(event: Event, task: str) -> bool:
    """An event of this task: its ``task_id``, or a revocation without one that was
    routed here by its credential's registry ``task_id``."""
    own = event.get("task_id")
    return own == task if own else event.get("event_type") == "credential.revoked"


def notice_alert(notice: FindingNotice) -> dict[str, Any]:
    """A finding notice as the alert fields the dossier reads."""
    frameworks = [
        {"framework": f.partition(" ")[0], "control": f.partition(" ")[2]}
        for f in notice.frameworks
    ]
    return {
        "alert_id": notice.alert_id,
        "detector": notice.detector,
        "severity": notice.severity,
        "frameworks": frameworks,
        "approval_id": notice.approval_id,
        "time": notice.time,
        "count": notice.count,
        "finding_info": {"first_seen_time": notice.first},
    }


def fold(
    state: dict[str, Any],
    task: str,
    events: Iterable[Event],
    alerts: list[dict[str, Any]],
    notices: Iterable[FindingNotice],
    watermark: int | None,
) -> bool:
    """Fold what reached the task in one record (or timer) into its dossier state;
    False when there is no dossier (nothing of the task yet)."""
    mine = [e for e in events if belongs(e, task)]
    found = [*alerts]
    reviews = []
    for n in notices:
        if not n.review:
            found.append(notice_alert(n))
        elif n.approval_id:
            reviews.append((n.approval_id, n.alert_id, n.detector))
    reserved: SubjectParts = state  # type: ignore[assignment]  # typed, no call
    dossier = reserved.get(DOSSIER)
    if dossier is None:
        if not mine and not found and not reviews:
            return False
        dossier = reserved[DOSSIER] = new_state(task)
    add_events(dossier, mine)
    add_alerts(dossier, found)
    add_reviews(dossier, reviews)
    if watermark is not None:
        observe_watermark(dossier, watermark)
    return True


def emit(state: dict[str, Any], th: EvidenceThresholds) -> Record | None:
    """The dossier to publish, if it changed since the last one (once per unit and
    task: building and comparing a dossier is the expensive part)."""
    dossier = parts(state).get(DOSSIER)
    return None if dossier is None else next_record(dossier, th)


def deadline(state: dict[str, Any], th: EvidenceThresholds) -> int | None:
    """When the watermark passing changes the dossier or lets it be forgotten."""
    reserved: SubjectParts = state  # type: ignore[assignment]  # typed, no call
    dossier = reserved.get(DOSSIER)
    if dossier is None:
        return None
    grace = next_deadline(dossier, th)
    forget = forget_at(dossier, th)
    return forget if grace is None else min(grace, forget)


def forget(state: dict[str, Any], th: EvidenceThresholds, watermark: int) -> None:
    """Drop the dossier state once the watermark passed its ``forget_at`` (a straggler
    after that starts an empty state that never emits: it has no completion)."""
    dossier = parts(state).get(DOSSIER)
    if dossier is not None and watermark >= forget_at(dossier, th):
        del parts(state)[DOSSIER]


def resend(state: dict[str, Any] | None, th: EvidenceThresholds) -> Record | None:
    """The record a unit published for this task, rebuilt from the state it left."""
    dossier = None if state is None else parts(state).get(DOSSIER)
    return None if dossier is None else last_record(dossier, th)


def relay_reviews(
    state: dict[str, Any], approval: str, events: Iterable[Event], notices: Iterable[FindingNotice]
) -> list[FindingNotice]:
    """At an approval subject: review notices for the task(s) its events name, one per
    finding that discredits the approval (RS-02/03/07 reach the approval through the
    alert's ``evidence.approval_ids``; the task's dossier would not hear of them). The
    approval remembers its tasks and those findings (under ``_rv``), so whichever
    arrives first, each task hears of each finding once (at least once, on a re-sent
    unit: the task drops repeats by id)."""
    rv: ReviewRelay = parts(state).get(RELAY) or {"t": [], "d": {}}
    tasks = rv["t"]
    found = rv["d"]
    new_tasks: list[str] = []
    for event in events:
        task = str(event.get("task_id") or "")
        room = len(tasks) + len(new_tasks) < MAX_RELAY_TASKS
        if task and room and task not in tasks and task not in new_tasks:
            new_tasks.append(task)
    new_found: dict[str, list[Any]] = {}
    discredits = None
    for notice in notices:
        if notice.kind != "approval" or notice.alert_id in found:
            continue
        if discredits is None:
            discredits = discrediting()
        if notice.detector in discredits and len(found) + len(new_found) < MAX_RELAY_FINDINGS:
            new_found[notice.alert_id] = RelayedFinding(notice.detector, notice.time).to_json()
    if not new_tasks and not new_found:
        return []
    pairs = [(t, a) for t in tasks for a in new_found]
    tasks += new_tasks
    found.update(new_found)
    parts(state)[RELAY] = rv
    pairs += [(t, a) for t in new_tasks for a in found]
    relayed = {a: RelayedFinding.from_json(found[a]) for a in {a for _, a in pairs}}
    return [
        FindingNotice(t, a, relayed[a].detector, relayed[a].time, approval_id=approval, review=True)
        for t, a in pairs
    ]
