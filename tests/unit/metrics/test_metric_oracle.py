"""The contract oracle itself (tests/support/metric_oracle.py) on hand-made cases."""

from __future__ import annotations

from typing import Any

from tests.support.metric_oracle import PolicyValues, expected_metrics

MIN = 60_000
T0 = 1_790_000_040_000  # a window start (1-minute windows)
POLICY = PolicyValues({"ai_agent": 3_600_000, "other": 86_400_000}, grace_ms=300_000)
REGISTRY = [
    {"identity_id": "agent-1", "kind": "ai_agent", "team": "ops"},
    {"identity_id": "bob", "kind": "human", "team": "ops"},
]


def ev(n: int, etype: str, t: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{n}", "event_type": etype, "event_time": t, "platform": "p", **fields}


def alert(detector: str, t: int, activity: int = 1, count: int = 1, **fields: Any) -> dict:
    return {
        "alert_id": f"{detector}-a",
        "detector": detector,
        "activity_id": activity,
        "count": count,
        "time": t,
        "platform": "p",
        "identity_id": "agent-1",
        "evidence": {"event_ids": fields.pop("event_ids", [])},
        **fields,
    }


def row(table: dict, dim: str = "global", value: str = "all", t: int = T0) -> dict:
    return table[(MIN, t // MIN * MIN, dim, value)]


def test_a_task_named_by_an_update_only_is_not_safe() -> None:
    events = [
        ev(1, "task.completed", T0, identity_id="agent-1", task_id="t1", outcome="success"),
        ev(2, "task.completed", T0, identity_id="agent-1", task_id="t2", outcome="success"),
    ]
    alerts = [alert("SP-01", T0 - 5 * MIN), alert("SP-01", T0, activity=2, count=2, task_id="t1")]
    table = expected_metrics(events, REGISTRY, alerts, [MIN], POLICY)
    assert row(table)["tasks_completed"] == 2
    assert row(table)["tasks_safe"] == 1
    # both records count, in the team of the alert's identity too; a duplicate once
    assert row(table, "team", "ops")["alerts_total"] == 1
    table = expected_metrics(events, REGISTRY, [*alerts, alerts[1]], [MIN], POLICY)
    assert row(table, t=T0 - 5 * MIN)["alerts_total"] == 1
    assert row(table)["alerts_by_detector"] == {"SP-01": 1}
    # a record that folds three occurrences (count 2 -> 5) adds three
    more = alert("SP-01", T0 + MIN, activity=2, count=5)
    table = expected_metrics(events, REGISTRY, [*alerts, more], [MIN], POLICY)
    assert row(table, "team", "ops", T0 + MIN)["alerts_by_detector"] == {"SP-01": 3}


def test_an_rs_finding_marks_approvals_in_its_evidence_not_meaningful() -> None:
    events = [
        ev(1, "approval.requested", T0 - 1000, identity_id="agent-1", approval_id="a1"),
        ev(2, "approval.decided", T0, identity_id="agent-1", approval_id="a1", approver="bob"),
        ev(3, "approval.decided", T0, identity_id="agent-1", approval_id="a2", approver="bob"),
    ]
    alerts = [alert("RS-02", T0, event_ids=["e2"]), alert("SP-01", T0, approval_id="a2")]
    table = expected_metrics(events, REGISTRY, alerts, [MIN], POLICY)
    assert row(table)["approvals_decided"] == 2
    assert row(table)["approvals_meaningful"] == 1  # a2: not an RS detector
    assert row(table)["review_seconds"] == [1.0]


def test_ephemeral_follows_the_policy_value_and_the_terms_at_the_action() -> None:
    manual = {"issued_via": "manual", "identity_id": "agent-1"}
    events = [
        ev(
            1,
            "credential.issued",
            T0 - 9000,
            credential_id="c1",
            expires_at=T0 + 1_791_000,
            **manual,
        ),
        ev(2, "action", T0, identity_id="agent-1", credential_id="c1", policy_decision="allow"),
        ev(3, "action", T0, identity_id="agent-1", credential_id="c2"),  # issued later
        ev(4, "credential.issued", T0 + 1, credential_id="c2", issued_via="jit"),
        ev(5, "action", T0, identity_id="ghost", credential_id="c1"),  # other: 1 day
    ]
    table = expected_metrics(events, REGISTRY, [], [MIN], POLICY)
    r = row(table)
    assert (r["actions_total"], r["actions_authorized"], r["actions_attributable"]) == (3, 1, 2)
    assert (r["actions_with_credential"], r["actions_ephemeral"]) == (3, 2)
    strict = PolicyValues({"ai_agent": 1_000_000, "other": 86_400_000}, grace_ms=300_000)
    assert row(expected_metrics(events, REGISTRY, [], [MIN], strict))["actions_ephemeral"] == 1


def test_task_credentials_revoked_within_grace() -> None:
    done = T0
    events = [
        ev(1, "credential.issued", done - 50_000, credential_id="c1", task_id="t1"),
        ev(2, "credential.issued", done - 40_000, credential_id="c2", task_id="t1"),
        ev(3, "credential.revoked", done + 300_000, credential_id="c1"),
        ev(4, "credential.revoked", done + 300_001, credential_id="c2"),
        ev(5, "task.completed", done, identity_id="agent-1", task_id="t1", outcome="failure"),
    ]
    r = row(expected_metrics(events, REGISTRY, [], [MIN], POLICY), "identity", "agent-1")
    assert (r["tasks_completed"], r["tasks_succeeded"], r["tasks_safe"]) == (1, 0, 0)
    assert (r["task_credentials_completed"], r["task_credentials_revoked"]) == (2, 1)


def test_an_rs_finding_on_the_approver_marks_the_approvals_it_names() -> None:
    events = [
        ev(1, "approval.decided", T0, identity_id="agent-1", approval_id="a1", approver="bob"),
        ev(2, "approval.decided", T0, identity_id="agent-1", approval_id="a2", approver="bob"),
    ]
    named = alert("RS-03", T0, approver="bob")
    named["evidence"]["approval_ids"] = ["a1"]  # not among its 50 event ids
    table = expected_metrics(events, REGISTRY, [named], [MIN], POLICY)
    assert (row(table)["approvals_decided"], row(table)["approvals_meaningful"]) == (2, 1)
