"""What a finding does to the outcomes is its detector's ``effects``: RS-02/03/07 are
raised on an approver or requester, and still make the approvals in their evidence
not meaningful (``evidence.approval_ids`` → a notice to each approval subject).

Through stage 1 and stage 2 in one process (``tests/support/inprocess.py``), with
approvals whose subjects hash to different stage-2 partitions.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from pipeline.detectors.alerts import MAX_EVIDENCE_APPROVALS
from pipeline.flow import outcomes
from pipeline.flow.messages import FindingNotice, from_json, to_json
from tests.support.inprocess import InProcess

T = 1_790_000_040_000  # a window start (1-minute windows)
SECOND = 1000
MINUTE = 60 * SECOND
_n = itertools.count(1)

REGISTRY: dict[str, dict[str, Any]] = {
    "agent-x": {
        "kind": "ai_agent",
        "owner": "alice@example.com",
        "team": "sales",
        "environment": "prod",
        "risk_tier": "low",
        "allowed_scopes": ["crm.read"],
        "status": "active",
    },
    "bob@example.com": {"kind": "human", "owner": "bob@example.com", "team": "sales"},
}


def ev(event_type: str, t: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=next(_n))),
        "event_type": event_type,
        "event_time": t,
        "platform": "crm-agents",
        "environment": "prod",
        "identity_id": "agent-x",
        "on_behalf_of": "alice@example.com",
        **fields,
    }


def reviews(n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` approvals by bob, each requested, viewed and approved after 20 s of review
    (RS-01's minimum for low risk is 10 s): nothing wrong with any one of them. The
    decisions are 2 s apart: ``n`` >= 10 is an RS-02 burst."""
    out = []
    for i in range(n):
        approval = f"{tag}-{i}"
        t = T + i * 2 * SECOND
        common = {"approval_id": approval, "risk": "low"}
        out += [
            ev("approval.requested", t - 30 * SECOND, justification="export", **common),
            ev("approval.viewed", t - 20 * SECOND, approver="bob@example.com", **common),
            ev("approval.decided", t, approver="bob@example.com", decision="approved", **common),
        ]
    return out


def run(events: list[dict[str, Any]]) -> InProcess:
    pipe = InProcess(1, identities=REGISTRY)
    for i in range(0, len(events), 7):
        pipe.read(0, events[i : i + 7])
    later = ev(
        "action",
        T + 30 * MINUTE,
        action="crm.records.read",
        resource="crm://accounts/1",
        scope="crm.read",
        sensitivity="low",
        policy_decision="allow",
        policy_id="pol-1",
        outcome="success",
        latency_ms=10,
    )
    pipe.read(0, [later])  # moves the watermark past the decisions
    pipe.idle({0}, seconds=3600)
    return pipe


def decided_and_meaningful(pipe: InProcess) -> tuple[int, int]:
    """The global deltas stage 2 applied to its metric windows (one window size), net of
    corrections: what the windows' final revisions hold."""
    applied, corrections = pipe.stage2.stats.governance, pipe.stage2.stats.corrections
    return (
        applied["approvals_decided"] - corrections["approvals_decided"],
        applied["approvals_meaningful"] - corrections["approvals_meaningful"],
    )


def test_an_rs02_burst_makes_its_approvals_not_meaningful() -> None:
    pipe = run(reviews(12, "burst"))
    rs02 = pipe.findings("RS-02")
    assert rs02 and {a["approver"] for a in rs02} == {"bob@example.com"}
    named = {a for alert in rs02 for a in alert["evidence"]["approval_ids"]}
    assert named == {f"burst-{i}" for i in range(12)}
    assert all(alert["evidence"]["approval_ids_omitted"] == 0 for alert in rs02)
    assert {a["detector"] for a in pipe.alerts} == {"RS-02"}  # nothing else was wrong
    assert decided_and_meaningful(pipe) == (12, 0)


def test_below_the_burst_every_review_stays_meaningful() -> None:
    pipe = run(reviews(9, "calm"))
    assert pipe.alerts == []
    assert decided_and_meaningful(pipe) == (9, 9)


def test_approval_notices_only_for_detectors_that_discredit_approvals() -> None:
    alert = {
        "alert_id": "a-1",
        "detector": "RS-02",
        "time": T,
        "task_id": None,
        "evidence": {"approval_ids": ["p1", "p2"]},
    }
    notices = outcomes.finding_notices("approver", [alert])
    assert [(n.kind, n.subject) for n in notices] == [("approval", "p1"), ("approval", "p2")]
    assert outcomes.finding_notices("credential", [{**alert, "detector": "SP-07"}]) == []
    many = {**alert, "evidence": {"approval_ids": [f"p{i}" for i in range(2000)]}}
    assert len(outcomes.finding_notices("approver", [many])) == MAX_EVIDENCE_APPROVALS


def test_a_late_approval_notice_corrects_a_meaningful_judgement() -> None:
    state: dict[str, Any] = {}
    decided = ev("approval.decided", T, approval_id="p1", approver="bob@example.com")
    assert outcomes.track("approval", state, [decided], []) == []
    assert [o.meaningful for o in outcomes.judge_approval(state, T)] == [True]  # type: ignore[union-attr]
    late = FindingNotice("p1", "a-1", "RS-03", T + MINUTE, "approval")
    (correction,) = outcomes.track("approval", state, [], [], [late])
    assert (correction.counter, correction.amount) == ("approvals_meaningful", -1)  # type: ignore[union-attr]
    assert outcomes.track("approval", state, [], [], [late]) == []  # once per approval


def test_only_detectors_that_mark_tasks_unsafe_make_a_task_unsafe() -> None:
    done = ev("task.completed", T, task_id="t1", outcome="success")
    state: dict[str, Any] = {}
    outcomes.track("task", state, [done], [], [FindingNotice("t1", "a", "NO-SUCH", T)])
    assert state["_m"]["done"]["safe"] is True
    (correction,) = outcomes.track("task", state, [], [], [FindingNotice("t1", "b", "SP-01", T)])
    assert correction.counter == "tasks_safe"  # type: ignore[union-attr]


def test_notices_round_trip_through_the_internal_format() -> None:
    task = FindingNotice("t1", "a-1", "SP-02", T, severity="medium", frameworks=("X y",), count=3)
    approval = FindingNotice("p1", "a-2", "RS-02", T, "approval")
    plain = FindingNotice("t1", "a-3", "SP-01", T)
    assert to_json(plain) == ["n", "t1", "a-3", "SP-01", T]  # the first layout, unchanged
    assert to_json(approval)[0] == "a"
    for notice in (task, approval, plain):
        assert from_json(to_json(notice)) == notice
