"""What stage 2 knows that the metrics need: task and approval outcomes per subject.

Kept in each subject's state under ``OUTCOMES`` (``_m``: ``TaskOutcomes`` or
``ApprovalOutcomes``, detectors/state.py), next to the detectors' own state, and
turned into ``pipeline.metrics`` outcomes:

* task: completed (succeeded? safe = succeeded and no finding on the task so far),
  its credentials judged revoked-within-grace once the watermark passes
  completion + grace, and a correction when a finding arrives after completion;
* approval: decided, judged once the watermark passes the decision (so a request
  that arrived after its decision, within the lateness, still gives the review
  time; the approval's RS checks are judged at that same point), and a
  correction when an RS finding arrives later.

Findings raised on other subjects (an action's identity, a credential) reach the
task as ``FindingNotice`` messages routed back through the internal topic; findings
about approvals raised on an approver or requester (RS-02/03/07) reach each approval
in their ``evidence.approval_ids`` the same way. What a finding does is its
detector's spec ``effects``: only ``marks_task_unsafe`` detectors make a task unsafe,
only ``discredits_approvals`` ones make a review not meaningful.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.detectors.alerts import MAX_EVIDENCE_APPROVALS
from pipeline.detectors.registry import all_detectors
from pipeline.detectors.state import (
    Decision,
    Dims,
    TaskDone,
    approval_outcomes,
    read_approval_outcomes,
    read_task_outcomes,
    task_outcomes,
)
from pipeline.flow.messages import FindingNotice
from pipeline.metrics import (
    AlertRaised,
    ApprovalDecided,
    Correction,
    TaskCompleted,
    TaskCredentialCompleted,
)
from pipeline.metrics.deltas import DEFAULT_MODE, Outcome

Event = dict[str, Any]
#: The events the outcomes read, by the subject kind they are read on (``_task``,
#: ``_approval``): stage 1 routes them there whatever the enabled detectors need
#: (``route.with_outcome_copies``), so switching detectors off never changes a metric.
OUTCOME_EVENTS: dict[str, str] = {
    "credential.issued": "task",
    "credential.revoked": "task",
    "task.completed": "task",
    "approval.requested": "approval",
    "approval.decided": "approval",
}


def _dims(event: Event) -> Dims:
    identity = event.get("identity") or {}
    if not isinstance(identity, dict):
        identity = {}
    known = identity.get("known") is True
    return {
        "platform": event.get("platform"),
        "team": identity.get("team"),
        "identity_id": event.get("identity_id"),
        # a known identity's registry mode (none = autonomous); unknown: no mode
        "mode": (identity.get("mode") or DEFAULT_MODE) if known else None,
    }


def track(
    kind: str,
    state: dict[str, Any],
    events: list[Event],
    alerts: list[dict[str, Any]],
    notices: Iterable[FindingNotice] = (),
) -> list[Outcome]:
    """Outcomes from a subject's new events, the alerts just raised on it and the
    new ``FindingNotice``s that reached it (a task or an approval)."""
    if kind == "task":
        return _task(state, events, alerts, notices)
    if kind == "approval":
        return _approval(state, events, alerts, notices)
    return []


def _detectors(alerts: list[dict[str, Any]], notices: Iterable[FindingNotice]) -> set[str]:
    return {str(a.get("detector")) for a in alerts} | {n.detector for n in notices}


def _task(
    state: dict[str, Any],
    events: list[Event],
    alerts: list[dict[str, Any]],
    notices: Iterable[FindingNotice],
) -> list[Outcome]:
    m = task_outcomes(state)
    out: list[Outcome] = []
    creds = m.setdefault("creds", {})
    revoked = m.setdefault("revoked", {})
    # a review relayed by an approval is about the approval (counted there), not the task
    raised = _detectors(alerts, [n for n in notices if not n.review])
    found = bool(raised) and not with_effect("marks_task_unsafe").isdisjoint(raised)
    for event in sorted(events, key=lambda e: e["event_time"]):
        etype, t = event.get("event_type"), int(event["event_time"])
        cred = event.get("credential_id")
        if etype == "credential.issued" and cred:
            creds.setdefault(str(cred), t)
        elif etype == "credential.revoked" and cred:
            revoked[str(cred)] = min(t, revoked.get(str(cred), t))
        elif etype == "task.completed" and "done" not in m:
            succeeded = event.get("outcome") == "success"
            safe = succeeded and not m.get("finding") and not found
            dims = _dims(event)
            m["done"] = TaskDone(
                t=t,
                safe=safe,
                platform=dims["platform"],
                team=dims["team"],
                identity_id=dims["identity_id"],
                mode=dims["mode"],
            )
            out.append(TaskCompleted(t, succeeded=succeeded, safe=safe, **dims))
    if found and not m.get("finding"):
        m["finding"] = True
        completed = m.get("done")
        if completed and completed.get("safe"):
            completed["safe"] = False
            out.append(_correction(completed, "tasks_safe"))
    return out


def _done_dims(done: Dims) -> tuple[Any, Any, Any, Any]:
    """platform, team, identity, mode (None in states kept before modes existed)."""
    return done.get("platform"), done.get("team"), done.get("identity_id"), done.get("mode")


def _correction(done: TaskDone | Decision, counter: Any) -> Correction:
    platform, team, identity_id, mode = _done_dims(done)
    return Correction(int(done["t"]), counter, -1, platform, team, identity_id, mode)


def task_deadline(state: dict[str, Any], grace_ms: int) -> int | None:
    """When the task's credentials can be judged (completion + grace), if pending."""
    m = read_task_outcomes(state)
    done = m.get("done")
    if not done or done.get("judged") or not m.get("creds"):
        return None
    return int(done["t"]) + grace_ms


def judge_credentials(state: dict[str, Any], watermark: int, grace_ms: int) -> list[Outcome]:
    """Revoked-on-completion for each task credential, once the grace period is over."""
    deadline = task_deadline(state, grace_ms)
    if deadline is None or deadline > watermark:
        return []
    m = task_outcomes(state)
    done = m["done"]
    done["judged"] = True
    platform, team, identity_id, mode = _done_dims(done)
    out: list[Outcome] = []
    for cred in sorted(m.get("creds", {})):
        at = m.get("revoked", {}).get(cred)
        out.append(
            TaskCredentialCompleted(
                int(done["t"]),
                at is not None and at <= deadline,
                platform,
                team,
                identity_id,
                mode,
            )
        )
    return out


def with_effect(effect: str) -> frozenset[str]:
    """Ids of the detectors with ``effect`` in their spec (``marks_task_unsafe``,
    ``discredits_approvals``), read from the registry: a user rule can have it too."""
    return frozenset(d.spec.id for d in all_detectors() if effect in d.spec.effects)


def discrediting() -> frozenset[str]:
    """Ids of the detectors whose findings make an approval's review not meaningful."""
    return with_effect("discredits_approvals")


def _approval(
    state: dict[str, Any],
    events: list[Event],
    alerts: list[dict[str, Any]],
    notices: Iterable[FindingNotice] = (),
) -> list[Outcome]:
    m = approval_outcomes(state)
    out: list[Outcome] = []
    raised = _detectors(alerts, notices)
    rs_now = bool(raised) and not discrediting().isdisjoint(raised)
    for event in sorted(events, key=lambda e: e["event_time"]):
        etype, t = event.get("event_type"), int(event["event_time"])
        if etype == "approval.requested":
            m["req"] = min(t, m.get("req", t))
        elif etype == "approval.decided" and "dec" not in m:
            dims = _dims(event)
            m["dec"] = Decision(
                t=t,
                judged=False,
                platform=dims["platform"],
                team=dims["team"],
                identity_id=dims["identity_id"],
                mode=dims["mode"],
            )
    if rs_now and not m.get("rs"):
        m["rs"] = True
        dec = m.get("dec")
        if dec and dec.get("judged") and dec.get("meaningful"):
            dec["meaningful"] = False
            out.append(_correction(dec, "approvals_meaningful"))
    return out


def approval_deadline(state: dict[str, Any]) -> int | None:
    dec = read_approval_outcomes(state).get("dec")
    return int(dec["t"]) if dec and not dec.get("judged") else None


def judge_approval(state: dict[str, Any], watermark: int) -> list[Outcome]:
    """The decided approval's outcome, once the watermark has passed the decision."""
    deadline = approval_deadline(state)
    if deadline is None or deadline > watermark:
        return []
    m = approval_outcomes(state)
    dec = m["dec"]
    t, req = int(dec["t"]), m.get("req")
    review = (t - req) / 1000.0 if req is not None and t >= req else None
    dec["judged"], dec["meaningful"] = True, not m.get("rs")
    platform, team, identity_id, mode = _done_dims(dec)
    return [ApprovalDecided(t, review, bool(dec["meaningful"]), platform, team, identity_id, mode)]


def alert_outcomes(alerts: list[dict[str, Any]]) -> list[Outcome]:
    """Every occurrence counts, Create or Update, in the window of its finding's time
    (occurrences do not depend on how Kafka delivered them; records would)."""
    return [
        AlertRaised(
            int(a["time"]),
            str(a["detector"]),
            a.get("platform"),
            a.get("team"),
            a.get("identity_id"),
            int(a.get("occurrences") or 1),
            a.get("mode"),
        )
        for a in alerts
    ]


def finding_notices(kind: str, alerts: list[dict[str, Any]]) -> list[FindingNotice]:
    """Tell the subjects a finding raised elsewhere names:

    * the task in its ``task_id`` (unless raised on the task itself): every
      occurrence, Create or Update (a task whose finding folded into an Update of an
      earlier incident is just as unsafe), with what the task's dossier shows of it;
    * each approval in its ``evidence.approval_ids`` (at most
      ``MAX_EVIDENCE_APPROVALS``), when its detector discredits approvals (RS-02/03/07
      are raised on an approver or requester, not on the approvals they are about).
    """
    out: list[FindingNotice] = []
    discredits: frozenset[str] | None = None
    for alert in alerts:
        aid, detector, t = alert["alert_id"], alert["detector"], int(alert["time"])
        if kind != "task" and alert.get("task_id"):
            info = alert.get("finding_info") or {}
            out.append(
                FindingNotice(
                    str(alert["task_id"]),
                    aid,
                    detector,
                    t,
                    severity=alert.get("severity"),
                    frameworks=tuple(
                        f"{f.get('framework')} {f.get('control')}"
                        for f in alert.get("frameworks") or ()
                    ),
                    first=info.get("first_seen_time"),
                    count=int(alert.get("count") or 1),
                    approval_id=alert.get("approval_id"),
                )
            )
        approvals = (alert.get("evidence") or {}).get("approval_ids")
        if not approvals:
            continue
        if discredits is None:
            discredits = discrediting()
        if detector not in discredits:
            continue
        own = alert.get("approval_id") if kind == "approval" else None
        out += [
            FindingNotice(str(a), aid, detector, t, "approval")
            for a in approvals[:MAX_EVIDENCE_APPROVALS]
            if a != own
        ]
    return out
