"""The independent calculator itself, on a hand-counted story (so the lead can trust it)."""

from __future__ import annotations

from tests.support.expected_metrics import expected_metrics
from tests.unit.metrics.factory import BASE, MIN, action


def ev(t: int, event_type: str, **kw):
    base = {"event_id": f"{event_type}-{t}", "event_type": event_type, "event_time": t}
    return {**base, "platform": "crm", **kw}


def test_tasks_credentials_and_approvals_by_hand() -> None:
    who = {
        "identity_id": "agent-a",
        "identity": {"known": True, "kind": "ai_agent", "team": "sales"},
    }
    events = [
        ev(BASE + 1, "credential.issued", task_id="t1", credential_id="c1", **who),
        ev(BASE + 2, "credential.issued", task_id="t1", credential_id="c2", **who),
        ev(BASE + 3, "approval.requested", approval_id="ap1", **who),
        ev(BASE + 9_003, "approval.decided", approval_id="ap1", decision="approved", **who),
        ev(BASE + 10, "approval.requested", approval_id="ap2", **who),
        ev(BASE + 40_010, "approval.decided", approval_id="ap2", decision="approved", **who),
        ev(BASE + 50_000, "task.completed", task_id="t1", outcome="success", **who),
        ev(BASE + 50_001, "task.completed", task_id="t2", outcome="success"),
        ev(BASE + 50_002, "task.completed", task_id="t3", outcome="failure"),
        ev(BASE + 50_000 + 5 * MIN, "credential.revoked", credential_id="c1"),  # at grace: ok
        ev(BASE + 50_001 + 5 * MIN, "credential.revoked", credential_id="c2"),  # 1 ms late
        action(BASE + 7, "agent-a", latency_ms=50),
    ]
    got = expected_metrics(
        events,
        [MIN],
        tasks_with_findings={"t2"},
        approvals_with_rs={"ap1"},
        alerts=[(BASE, "RS-01")],
    )
    g = got[(MIN, BASE, "global", "all")]
    assert (g["tasks_completed"], g["tasks_succeeded"], g["tasks_safe"]) == (3, 2, 1)
    assert (g["task_credentials_completed"], g["task_credentials_revoked"]) == (2, 1)
    assert (g["approvals_decided"], g["approvals_meaningful"]) == (2, 1)
    assert sorted(g["review_seconds"]) == [9.0, 40.0]
    assert (g["actions_total"], g["latencies_ms"]) == (1, [50])
    assert (g["alerts_total"], g["alerts_by_detector"]) == (1, {"RS-01": 1})
    team = got[(MIN, BASE, "team", "sales")]
    assert (team["tasks_completed"], team["alerts_total"]) == (1, 0)
    assert (MIN, BASE, "identity", "agent-a") in got
