"""RS-02/03/07 in the dossier's approvals (issue 14): findings raised on an approver or
requester reach the approvals in their ``evidence.approval_ids``; the approval relays
them to its task (``flow/dossiers.relay_reviews``), whose dossier then says that
approval was not meaningful, without listing them as findings on the task."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.policy import parse_policy
from pipeline.evidence import EvidenceThresholds, add_events, build_dossier, new_state
from pipeline.evidence.dossier import add_reviews
from pipeline.flow import dossiers, outcomes
from pipeline.flow.messages import FindingNotice, from_json, to_json
from tests.support.inprocess import InProcess
from tests.unit.evidence import _scenario as sc
from tests.unit.test_stage2_evidence import REGISTRY, later, raw

TH = EvidenceThresholds.defaults()
S = 1000
T = sc.T0 + 60 * S


def approval_notice(alert: str = "al-rs02", detector: str = "RS-02") -> FindingNotice:
    return FindingNotice(sc.APPROVAL, alert, detector, T, "approval")


def decided(task: str | None = sc.TASK) -> dict[str, Any]:
    return {"event_type": "approval.decided", "approval_id": sc.APPROVAL, "task_id": task}


# ---- the dossier ---------------------------------------------------------------------


def test_a_relayed_review_makes_the_approval_not_meaningful_and_no_finding() -> None:
    state = new_state(sc.TASK)
    add_events(state, sc.events())
    before = build_dossier(state, TH)
    (approval,) = before["approvals"]
    assert approval["meaningful"] is True and approval["rs_detectors"] == []
    assert before["verdicts"]["approved_meaningfully"] is True

    add_reviews(state, [(sc.APPROVAL, "al-rs02", "RS-02"), ("ap-elsewhere", "al-x", "RS-03")])
    after = build_dossier(state, TH)
    (approval,) = after["approvals"]  # an approval of another task adds no row
    assert approval["meaningful"] is False and approval["rs_detectors"] == ["RS-02"]
    assert after["verdicts"]["approved_meaningfully"] is False
    assert after["findings"] == before["findings"] == []
    assert after["verdicts"]["safe"] is before["verdicts"]["safe"]


def test_fold_keeps_review_notices_apart_from_findings() -> None:
    state: dict[str, Any] = {}
    review = FindingNotice(sc.TASK, "al-rs02", "RS-02", T, approval_id=sc.APPROVAL, review=True)
    assert dossiers.fold(state, sc.TASK, sc.events(), [], [review], None)
    ev = state[dossiers.EV]
    assert ev["alerts"] == {} and ev["rv"] == {sc.APPROVAL: {"al-rs02": "RS-02"}}


def test_a_review_does_not_make_the_task_unsafe_in_the_metrics() -> None:
    done = {"event_type": "task.completed", "event_time": T, "outcome": "success"}
    review = FindingNotice(sc.TASK, "al", "RS-02", T, approval_id=sc.APPROVAL, review=True)
    state: dict[str, Any] = {}
    outcomes.track("task", state, [done], [], [review])
    assert state["_m"]["done"]["safe"] is True and not state["_m"].get("finding")


# ---- the relay ----------------------------------------------------------------------


def test_the_approval_relays_each_finding_to_its_task_once_whichever_comes_first() -> None:
    # the task first, then the finding
    state: dict[str, Any] = {}
    assert dossiers.relay_reviews(state, sc.APPROVAL, [decided()], []) == []
    (relayed,) = dossiers.relay_reviews(state, sc.APPROVAL, [], [approval_notice()])
    assert relayed == FindingNotice(
        sc.TASK, "al-rs02", "RS-02", T, approval_id=sc.APPROVAL, review=True
    )
    assert relayed.key == f"task:{sc.TASK}"
    assert dossiers.relay_reviews(state, sc.APPROVAL, [decided()], [approval_notice()]) == []
    # the finding first, then the task
    state = {}
    assert dossiers.relay_reviews(state, sc.APPROVAL, [decided(None)], [approval_notice()]) == []
    (late,) = dossiers.relay_reviews(state, sc.APPROVAL, [decided()], [])
    assert late == relayed


def test_only_discrediting_approval_notices_are_relayed() -> None:
    state: dict[str, Any] = {}
    dossiers.relay_reviews(state, sc.APPROVAL, [decided()], [])
    task_notice = FindingNotice(sc.TASK, "al-1", "RS-02", T)
    other = approval_notice("al-2", "SP-01")
    assert dossiers.relay_reviews(state, sc.APPROVAL, [], [task_notice, other]) == []
    assert len(dossiers.relay_reviews(state, sc.APPROVAL, [], [approval_notice("al-3", "RS-07")]))


def test_a_review_notice_keeps_its_kind_on_the_wire_and_its_own_dedup_id() -> None:
    review = FindingNotice(sc.TASK, "al", "RS-03", T, approval_id=sc.APPROVAL, review=True)
    plain = FindingNotice(sc.TASK, "al", "RS-03", T, approval_id=sc.APPROVAL)
    assert to_json(review)[0] == "r" and from_json(to_json(review)) == review
    assert from_json(to_json(plain)) == plain and not from_json(to_json(plain)).review
    assert review.id != plain.id


# ---- stage 1 -> stage 2, in process -------------------------------------------------


def test_rs02_on_the_approver_reaches_the_tasks_dossier_in_process() -> None:
    """The approver decides the must-show approval and another within a minute (RS-02
    at 2 decisions): the dossier's approval turns not meaningful, in a new revision."""
    policy = parse_policy("version: 1\ndetectors:\n  RS-02: {thresholds: {min_decisions: 2}}\n")
    pipe = InProcess(1, identities=REGISTRY, policy=policy)
    other = raw(
        sc.event(
            "o-dec",
            "approval.decided",
            T + 5 * S,
            identity_id=sc.A,
            approval_id="ap-other",
            approver=sc.APPROVER,
            decision="approved",
            risk="low",
        )
    )
    other["task_id"] = "task-other"
    pipe.read(0, [raw(e) for e in sc.events()])
    first = [r for r in pipe.evidence if r["task_id"] == sc.TASK]
    assert first and first[-1]["verdicts"]["approved_meaningfully"] is True
    pipe.read(0, [other, raw(sc.late_revocation())])
    pipe.read(0, [later(T + 3600 * S)])
    pipe.idle({0}, seconds=3600)
    assert pipe.findings("RS-02"), "RS-02 did not fire on the approver"
    records = [r for r in pipe.evidence if r["task_id"] == sc.TASK]
    last = records[-1]
    (approval,) = last["approvals"]
    assert approval["approval_id"] == sc.APPROVAL
    assert approval["rs_detectors"] == ["RS-02"] and approval["meaningful"] is False
    assert last["verdicts"]["approved_meaningfully"] is False
    assert all(f["detector"] != "RS-02" for f in last["findings"])
    assert last["revision"] > first[-1]["revision"]
