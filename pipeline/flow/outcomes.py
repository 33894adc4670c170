"""What stage 2 knows that the metrics need: task and approval outcomes per subject.

Kept in each subject's state under ``_m`` (JSON-able), next to the detectors'
own state, and turned into ``pipeline.metrics`` outcomes:

* task: completed (succeeded? safe = succeeded and no finding on the task so far),
  its credentials judged revoked-within-grace once the watermark passes
  completion + grace, and a correction when a finding arrives after completion;
* approval: decided, judged once the watermark passes the decision (so a request
  that arrived after its decision, within the lateness, still gives the review
  time; the approval's RS checks are judged at that same point), and a
  correction when an RS finding arrives later.

Findings raised on other subjects (an action's identity, a credential) reach the
task as ``FindingNotice`` messages routed back through the internal topic.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors.registry import all_detectors
from pipeline.flow.messages import FindingNotice
from pipeline.metrics import (
    AlertRaised,
    ApprovalDecided,
    Correction,
    TaskCompleted,
    TaskCredentialCompleted,
)
from pipeline.metrics.deltas import Outcome

Event = dict[str, Any]


def _dims(event: Event) -> dict[str, Any]:
    identity = event.get("identity") or {}
    return {
        "platform": event.get("platform"),
        "team": identity.get("team") if isinstance(identity, dict) else None,
        "identity_id": event.get("identity_id"),
    }


def track(
    kind: str,
    state: dict[str, Any],
    events: list[Event],
    alerts: list[dict[str, Any]],
    noticed: bool = False,
) -> list[Outcome]:
    """Outcomes from a subject's new events, the alerts just raised on it and (a
    task) whether a new ``FindingNotice`` reached it."""
    if kind == "task":
        return _task(state, events, alerts, noticed)
    if kind == "approval":
        return _approval(state, events, alerts)
    return []


def _task(
    state: dict[str, Any], events: list[Event], alerts: list[dict[str, Any]], noticed: bool
) -> list[Outcome]:
    m: dict[str, Any] = state.setdefault("_m", {})
    out: list[Outcome] = []
    creds: dict[str, int] = m.setdefault("creds", {})
    revoked: dict[str, int] = m.setdefault("revoked", {})
    found = bool(alerts) or noticed
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
            m["done"] = {"t": t, "safe": safe, **_dims(event)}
            out.append(TaskCompleted(t, succeeded=succeeded, safe=safe, **_dims(event)))
    if found and not m.get("finding"):
        m["finding"] = True
        done = m.get("done")
        if done and done.get("safe"):
            done["safe"] = False
            out.append(Correction(done["t"], "tasks_safe", -1, *_done_dims(done)))
    return out


def _done_dims(done: dict[str, Any]) -> tuple[Any, Any, Any]:
    return done.get("platform"), done.get("team"), done.get("identity_id")


def task_deadline(state: dict[str, Any], grace_ms: int) -> int | None:
    """When the task's credentials can be judged (completion + grace), if pending."""
    m = state.get("_m") or {}
    done = m.get("done")
    if not done or done.get("judged") or not m.get("creds"):
        return None
    return int(done["t"]) + grace_ms


def judge_credentials(state: dict[str, Any], watermark: int, grace_ms: int) -> list[Outcome]:
    """Revoked-on-completion for each task credential, once the grace period is over."""
    deadline = task_deadline(state, grace_ms)
    if deadline is None or deadline > watermark:
        return []
    m = state["_m"]
    done = m["done"]
    done["judged"] = True
    platform, team, identity_id = _done_dims(done)
    out: list[Outcome] = []
    for cred in sorted(m.get("creds", {})):
        at = m.get("revoked", {}).get(cred)
        out.append(
            TaskCredentialCompleted(
                int(done["t"]), at is not None and at <= deadline, platform, team, identity_id
            )
        )
    return out


def discrediting() -> frozenset[str]:
    """Ids of the detectors whose findings make an approval's review not meaningful
    (spec ``effects``), read from the registry: a user rule can have the effect too."""
    return frozenset(d.spec.id for d in all_detectors() if "discredits_approvals" in d.spec.effects)


def _approval(
    state: dict[str, Any], events: list[Event], alerts: list[dict[str, Any]]
) -> list[Outcome]:
    m: dict[str, Any] = state.setdefault("_m", {})
    out: list[Outcome] = []
    rs_now = bool(alerts) and not discrediting().isdisjoint(a.get("detector") for a in alerts)
    for event in sorted(events, key=lambda e: e["event_time"]):
        etype, t = event.get("event_type"), int(event["event_time"])
        if etype == "approval.requested":
            m["req"] = min(t, m.get("req", t))
        elif etype == "approval.decided" and "dec" not in m:
            m["dec"] = {"t": t, "judged": False, **_dims(event)}
    if rs_now and not m.get("rs"):
        m["rs"] = True
        dec = m.get("dec")
        if dec and dec.get("judged") and dec.get("meaningful"):
            dec["meaningful"] = False
            out.append(Correction(dec["t"], "approvals_meaningful", -1, *_done_dims(dec)))
    return out


def approval_deadline(state: dict[str, Any]) -> int | None:
    dec = (state.get("_m") or {}).get("dec")
    return int(dec["t"]) if dec and not dec.get("judged") else None


def judge_approval(state: dict[str, Any], watermark: int) -> list[Outcome]:
    """The decided approval's outcome, once the watermark has passed the decision."""
    deadline = approval_deadline(state)
    if deadline is None or deadline > watermark:
        return []
    m = state["_m"]
    dec = m["dec"]
    t, req = int(dec["t"]), m.get("req")
    review = (t - req) / 1000.0 if req is not None and t >= req else None
    dec["judged"], dec["meaningful"] = True, not m.get("rs")
    platform, team, identity_id = _done_dims(dec)
    return [ApprovalDecided(t, review, bool(dec["meaningful"]), platform, team, identity_id)]


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
        )
        for a in alerts
    ]


def finding_notices(kind: str, alerts: list[dict[str, Any]]) -> list[FindingNotice]:
    """Tell a task about findings raised elsewhere, so its completion is not 'safe':
    every occurrence, Create or Update (a task whose finding folded into an Update
    of an earlier incident is just as unsafe)."""
    if kind == "task":
        return []
    return [
        FindingNotice(
            str(alert["task_id"]), alert["alert_id"], alert["detector"], int(alert["time"])
        )
        for alert in alerts
        if alert.get("task_id")
    ]
