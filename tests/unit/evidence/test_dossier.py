"""The task dossier (issue 14 item 1): contents, verdicts, revisions, order independence."""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

import orjson
import pytest

from pipeline.detectors.registry import all_detectors
from pipeline.evidence import (
    EvidenceThresholds,
    add_alerts,
    add_events,
    build_dossier,
    changed_since_last_emit,
    new_state,
    next_deadline,
    next_record,
    observe_watermark,
)
from pipeline.evidence import dossier as dossier_module
from tests.unit.evidence import _scenario as sc
from tests.unit.evidence._scenario import T0, S

TH = EvidenceThresholds.defaults()


def fed(events: list[dict[str, Any]], alerts: list[dict[str, Any]] = (), wm: int | None = None):  # type: ignore[assignment]
    state = new_state(sc.TASK)
    add_events(state, events)
    add_alerts(state, alerts)
    if wm is not None:
        observe_watermark(state, wm)
    return state


def expected_must_show() -> dict[str, Any]:
    """Built by hand from the scenario, element by element (not from the code)."""
    return {
        "task_id": sc.TASK,
        "started_at": T0,
        "completed_at": sc.COMPLETED,
        "outcome": "success",
        "platform": "crm-agents",
        "environment": "prod",
        "principal": sc.HUMAN,
        "initiator": {
            "identity_id": sc.A,
            "known": True,
            "kind": "ai_agent",
            "owner": "bob@example.com",
            "team": "sales-ops",
            "environment": "prod",
            "risk_tier": "high",
            "status": "active",
            "mode": "autonomous",  # no mode in the registry: the strictest
        },
        "parent": None,
        "delegations": [
            {
                "event_id": "e-deleg",
                "time": T0 + 10 * S,
                "delegator": sc.A,
                "delegate": sc.B,
                "scopes": ["crm.read"],
                "scopes_left_out": 0,
                "parent_event_id": "e-start",
            }
        ],
        "delegations_left_out": 0,
        "actors": [
            {
                "identity_id": sc.A,
                "known": True,
                "kind": "ai_agent",
                "owner": "bob@example.com",
                "team": "sales-ops",
                "mode": "autonomous",
                "actions": 2,
            },
            {
                "identity_id": sc.B,
                "known": True,
                "kind": "ai_agent",
                "owner": "bob@example.com",
                "team": "sales-ops",
                "mode": "assistant",
                "actions": 2,
            },
        ],
        "actors_left_out": 0,
        "credentials": [
            {
                "credential_id": sc.CRED_A,
                "identity_id": sc.A,
                "kind": "jit_token",
                "issued_via": "jit",
                "issued_in_task": True,
                "issued_at": T0 + 1 * S,
                "expires_at": T0 + 1801 * S,
                "revoked_at": sc.COMPLETED + 10 * S,
                "lifetime_seconds": 1800.0,
                "ephemeral": True,
                "revoked_within_grace": True,
                "actions": 2,
                "scopes": ["crm.export", "crm.read", "crm.write"],
                "scopes_left_out": 0,
            },
            {
                "credential_id": sc.CRED_B,
                "identity_id": sc.B,
                "kind": "jit_token",
                "issued_via": "jit",
                "issued_in_task": True,
                "issued_at": T0 + 11 * S,
                "expires_at": T0 + 1811 * S,
                "revoked_at": sc.LATE_REVOCATION,
                "lifetime_seconds": 1800.0,
                "ephemeral": True,
                "revoked_within_grace": False,
                "actions": 2,
                "scopes": ["crm.read"],
                "scopes_left_out": 0,
            },
        ],
        "credentials_left_out": 0,
        "approvals": [
            {
                "approval_id": sc.APPROVAL,
                "approver": sc.APPROVER,
                "risk": "medium",
                "requested_at": T0 + 12 * S,
                "viewed_at": T0 + 20 * S,
                "decided_at": T0 + 60 * S,
                "review_seconds": 40.0,  # from the approver's view, as RS-01 measures
                "decision": "approved",
                "context_seen": True,
                "too_fast": False,
                "rs_detectors": [],
                "meaningful": True,
            }
        ],
        "approvals_left_out": 0,
        "actions": {
            "total": 4,
            "itemised": 4,
            "by_decision": {"allow": 3, "deny": 1},
            "by_sensitivity": {"high": 1, "low": 2, "medium": 1},
            "by_outcome": {"failure": 1, "success": 3},
            "unattributable": 0,
            "executed_without_allow": 0,
            "denied_but_executed": 0,
            "denied_but_executed_ids": [],
            "denied_but_executed_ids_left_out": 0,
            "policies": [
                {
                    "policy_id": "pol-read",
                    "decision": "allow",
                    "reason": "reads are allowed for sales agents",
                    "actions": 2,
                },
                {
                    "policy_id": "pol-delete",
                    "decision": "deny",
                    "reason": "delegates may not delete records",
                    "actions": 1,
                },
                {
                    "policy_id": "pol-export",
                    "decision": "allow",
                    "reason": "approved export",
                    "actions": 1,
                },
            ],
            "policies_left_out": 0,
            "resources": ["crm://accounts/1", "crm://accounts/2", "crm://exports/q3"],
            "resources_left_out": 0,
            "scopes_added_mid_task": [],
            "scopes_added_mid_task_left_out": 0,
            "justifications": ["look up the account", "quarterly export requested by alice"],
            "justifications_left_out": 0,
        },
        "findings": [
            {
                "alert_id": sc.SP02_ALERT_ID,
                "detector": "SP-02",
                "severity": "medium",
                "time": sc.COMPLETED,
                "count": 1,
                "frameworks": ["NIST-CSF-2.0 PR.AA-01", "OWASP-NHI NHI-07"],
            }
        ],
        "findings_left_out": 0,
        "verdicts": {
            "succeeded": True,
            "safe": False,  # SP-02 found B's credential live after the grace
            "authorised": True,  # the denied delete did not run
            "attributable": True,
            "ephemeral": True,
            "revoked_on_completion": False,
            "approved_meaningfully": True,
        },
        "pending": [],
    }


def test_thresholds_come_from_the_detector_specs() -> None:
    specs = {d.spec.id: d.spec for d in all_detectors()}
    assert TH.revocation_grace_ms == specs["SP-02"].thresholds["grace_s"] * 1000 == sc.GRACE_MS
    assert (
        TH.max_lifetime_ms["ai_agent"]
        == specs["SP-01"].thresholds["max_lifetime_ai_agent_s"] * 1000
    )
    assert TH.min_review_ms == specs["RS-01"].thresholds["min_review_s"] * 1000
    stricter = dataclasses.replace(
        specs["SP-02"], thresholds={**specs["SP-02"].thresholds, "grace_s": 5}
    )
    assert EvidenceThresholds.from_specs({"SP-02": stricter}).revocation_grace_ms == 5000


def test_must_show_task_equals_the_expectation_element_by_element() -> None:
    state = fed(
        [*sc.events(), sc.late_revocation()], [sc.sp02_alert()], wm=sc.LATE_REVOCATION + 60 * S
    )
    got = build_dossier(state, TH)
    want = expected_must_show()
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    orjson.dumps(got)  # JSON-able
    orjson.dumps(state)


def test_revision_rises_on_the_grace_the_finding_and_the_late_revocation() -> None:
    state = fed(sc.events(), wm=sc.COMPLETED + 10 * S)
    first = next_record(state, TH)
    assert first is not None and first["revision"] == 0
    assert first["emitted_at"] == sc.COMPLETED + 10 * S
    assert first["pending"] == ["revocation_grace"]
    assert first["verdicts"]["revoked_on_completion"] is None
    assert first["verdicts"]["safe"] is True
    assert next_deadline(state, TH) == sc.COMPLETED + sc.GRACE_MS
    # nothing new: nothing to emit, also after a redelivery of everything
    add_events(state, sc.events())
    assert not changed_since_last_emit(state, TH)
    assert next_record(state, TH) is None
    # the grace passes with B's credential still live
    observe_watermark(state, sc.COMPLETED + sc.GRACE_MS)
    assert next_deadline(state, TH) is None
    second = next_record(state, TH)
    assert second is not None and second["revision"] == 1
    assert second["verdicts"]["revoked_on_completion"] is False
    assert second["pending"] == []
    # SP-02's finding arrives
    add_alerts(state, [sc.sp02_alert()])
    third = next_record(state, TH)
    assert third is not None and third["revision"] == 2
    assert third["verdicts"]["safe"] is False
    add_alerts(state, [sc.sp02_alert()])  # the same record again
    assert next_record(state, TH) is None
    # the late revocation
    add_events(state, [sc.late_revocation()])
    observe_watermark(state, sc.LATE_REVOCATION + 60 * S)
    fourth = next_record(state, TH)
    assert fourth is not None and fourth["revision"] == 3
    creds = {c["credential_id"]: c for c in fourth["credentials"]}
    assert creds[sc.CRED_B]["revoked_at"] == sc.LATE_REVOCATION
    assert creds[sc.CRED_B]["revoked_within_grace"] is False
    assert {k: v for k, v in fourth.items() if k not in ("revision", "emitted_at")} == (
        expected_must_show()
    )


def test_nothing_is_emitted_before_completion() -> None:
    events = [e for e in sc.events() if e["event_type"] != "task.completed"]
    state = fed(events, wm=sc.COMPLETED)
    assert next_record(state, TH) is None
    assert not changed_since_last_emit(state, TH)
    assert build_dossier(state, TH)["pending"] == ["task_completion"]


def test_clean_task_is_green() -> None:
    state = new_state("task-clean")
    add_events(state, sc.clean_events())
    observe_watermark(state, sc.COMPLETED + sc.GRACE_MS)
    record = next_record(state, TH)
    assert record is not None
    assert record["verdicts"] == dict.fromkeys(record["verdicts"], True)
    assert record["pending"] == []
    assert record["findings"] == []


def test_mode_from_the_registry_and_its_default() -> None:
    state = fed(sc.events())
    actors = {a["identity_id"]: a for a in build_dossier(state, TH)["actors"]}
    assert actors[sc.A]["mode"] == "autonomous"
    assert actors[sc.B]["mode"] == "assistant"


def test_denied_but_executed_and_missing_decisions_are_not_authorised() -> None:
    events = sc.events()
    for e in events:
        if e["event_id"] == "e-act-4":
            e["outcome"] = "success"  # the denied delete ran anyway
    got = build_dossier(fed(events), TH)
    assert got["actions"]["denied_but_executed"] == 1
    assert got["actions"]["denied_but_executed_ids"] == ["e-act-4"]
    assert got["verdicts"]["authorised"] is False
    for e in events:
        if e["event_id"] == "e-act-4":
            e["outcome"], e["policy_decision"] = "failure", "deny"
        if e["event_id"] == "e-act-3":
            e["policy_decision"] = None
    got = build_dossier(fed(events), TH)
    assert got["actions"]["by_decision"] == {"allow": 2, "deny": 1, "none": 1}
    assert got["verdicts"]["authorised"] is False


def test_approval_too_fast_unseen_or_flagged_is_not_meaningful() -> None:
    def approval_of(events: list[dict[str, Any]], alerts: list[dict[str, Any]] = ()) -> Any:  # type: ignore[assignment]
        got = build_dossier(fed(events, alerts), TH)
        return got["approvals"][0], got["verdicts"]["approved_meaningfully"]

    events = sc.events()
    for e in events:
        if e["event_id"] == "e-dec":
            e["event_time"] = T0 + 25 * S  # 5 s after the view, under RS-01's 10 s
    approval, verdict = approval_of(events)
    assert approval["review_seconds"] == 5.0 and approval["too_fast"] is True
    assert approval["meaningful"] is False and verdict is False

    for e in events:
        if e["event_id"] == "e-dec":
            e["decision"] = "denied"  # the same haste on a denial: not judged
    approval, verdict = approval_of(events)
    assert approval["too_fast"] is None and approval["meaningful"] is True

    events = [e for e in sc.events() if e["event_id"] != "e-view"]
    approval, verdict = approval_of(events)
    assert approval["context_seen"] is False and approval["meaningful"] is False

    rs05 = {
        "alert_id": "rs05",
        "detector": "RS-05",
        "severity": "high",
        "approval_id": sc.APPROVAL,
        "task_id": sc.TASK,
        "time": T0 + 60 * S,
        "count": 1,
        "frameworks": [],
    }
    approval, verdict = approval_of(sc.events(), [rs05])
    assert approval["rs_detectors"] == ["RS-05"] and verdict is False


def test_long_lived_credential_is_not_ephemeral_by_the_policy_lifetime() -> None:
    events = sc.events()
    for e in events:
        if e["event_id"] == "e-iss-a":
            e["issued_via"] = "static"
            e["expires_at"] = T0 + 1 * S + 2 * 3600 * S  # 2 h, over SP-01's 1 h for agents
    got = build_dossier(fed(events), TH)
    cred = next(c for c in got["credentials"] if c["credential_id"] == sc.CRED_A)
    assert cred["lifetime_seconds"] == 7200.0 and cred["ephemeral"] is False
    assert got["verdicts"]["ephemeral"] is False
    specs = {d.spec.id: d.spec for d in all_detectors()}
    lenient = dataclasses.replace(
        specs["SP-01"],
        thresholds={**specs["SP-01"].thresholds, "max_lifetime_ai_agent_s": 3 * 3600},
    )
    got = build_dossier(fed(events), EvidenceThresholds.from_specs({"SP-01": lenient}))
    assert got["verdicts"]["ephemeral"] is True


def test_scopes_added_mid_task_and_cross_task_parent() -> None:
    events = sc.events()
    events.append(
        sc.event(
            "e-rot",
            "credential.rotated",
            T0 + 30 * S,
            identity_id=sc.A,
            credential_id=sc.CRED_A,
            scopes=["crm.read", "crm.admin"],
        )
    )
    for e in events:
        if e["event_id"] == "e-start":
            e["parent_event_id"] = "e-deleg-in-parent"
            e["attributes"] = {"parent_task_id": "task-parent"}
    got = build_dossier(fed(events), TH)
    assert got["actions"]["scopes_added_mid_task"] == ["crm.admin"]
    assert got["parent"] == {"task_id": "task-parent", "event_id": "e-deleg-in-parent"}


def test_other_tasks_events_and_alerts_are_ignored() -> None:
    state = fed(sc.events())
    before = build_dossier(state, TH)
    add_events(state, [sc.event("x", "action", T0, identity_id=sc.A, task_id="another")])
    add_alerts(state, [dict(sc.sp02_alert(), task_id="another")])
    assert build_dossier(state, TH) == before


# ---- order independence ----------------------------------------------------------------


def _feed_shuffled(
    rng: random.Random, events: list[dict[str, Any]], alerts: list[dict[str, Any]], wm: int
) -> dict[str, Any]:
    """Shuffled, in random batches, with duplicates and watermark steps in between."""
    items: list[tuple[str, Any]] = [("e", e) for e in events] + [("a", a) for a in alerts]
    items += [("e", e) for e in rng.sample(events, k=min(len(events), 5))]  # redeliveries
    rng.shuffle(items)
    state = new_state(sc.TASK)
    i = 0
    while i < len(items):
        n = rng.randint(1, 6)
        batch = items[i : i + n]
        add_events(state, [copy.deepcopy(x) for k, x in batch if k == "e"])
        add_alerts(state, [copy.deepcopy(x) for k, x in batch if k == "a"])
        observe_watermark(state, rng.randint(T0, wm))
        next_record(state, TH)  # emitting in between must not change the contents
        if rng.random() < 0.5:  # a restart: the state comes back from the changelog
            state = orjson.loads(orjson.dumps(state))
        i += n
    observe_watermark(state, wm)
    return build_dossier(state, TH)


@pytest.mark.parametrize("seed", range(40))
def test_same_inputs_same_dossier_under_shuffles(seed: int) -> None:
    events = [*sc.events(), sc.late_revocation()]
    alerts = [sc.sp02_alert(1), sc.sp02_alert(2)]
    wm = sc.LATE_REVOCATION + 60 * S
    reference = build_dossier(fed(events, alerts, wm), TH)
    assert _feed_shuffled(random.Random(seed), events, alerts, wm) == reference


def test_a_replayed_copy_with_other_enrichment_gives_one_answer() -> None:
    later = sc.events()
    for e in later:
        if e.get("credential"):
            e["credential"] = dict(e["credential"], revoked_at=sc.COMPLETED + 10 * S)
    one = fed([*sc.events(), *later])
    two = fed([*later, *sc.events()])
    assert build_dossier(one, TH) == build_dossier(two, TH)


# ---- bounds ----------------------------------------------------------------------------


def _many_actions(n: int) -> list[dict[str, Any]]:
    return [
        sc.event(
            f"act-{i:04d}",
            "action",
            T0 + 100 * S + i * S,
            identity_id=sc.A,
            resource=f"crm://accounts/{i:04d}",
            policy_decision="deny" if i % 10 == 0 else "allow",
            policy_id=f"pol-{i % 30}",
            policy_reason="why " * 100,  # long text is cut
            outcome="success",
            sensitivity="low",
        )
        for i in range(n)
    ]


def test_lists_are_bounded_and_say_what_they_left_out() -> None:
    n = dossier_module.MAX_ACTIONS + 300
    actions = _many_actions(n)
    state = fed([*sc.events(), *actions])
    got = build_dossier(state, TH)["actions"]
    assert got["total"] == n + 4
    assert got["itemised"] == dossier_module.MAX_ACTIONS
    assert sum(got["by_decision"].values()) == n + 4
    assert got["by_decision"]["deny"] == n // 10 + 1
    assert got["denied_but_executed"] == n // 10
    assert len(got["denied_but_executed_ids"]) == dossier_module.IDS_LIMIT
    assert (
        got["denied_but_executed_ids_left_out"]
        == (dossier_module.MAX_ACTIONS - 4 + 9) // 10 - dossier_module.IDS_LIMIT
    )
    assert len(got["resources"]) == dossier_module.LIST_LIMIT
    # the earliest actions are itemised: the scenario's 3 resources and 196 of these
    assert (
        got["resources_left_out"] == 3 + dossier_module.MAX_ACTIONS - 4 - dossier_module.LIST_LIMIT
    )
    assert len(got["policies"]) == dossier_module.LIST_LIMIT and got["policies_left_out"] > 0
    assert all(len(p["reason"]) <= dossier_module.MAX_TEXT for p in got["policies"])
    assert len(orjson.dumps(state)) < 200_000


@pytest.mark.parametrize("seed", range(5))
def test_bounded_dossier_is_order_independent_too(seed: int) -> None:
    events = [*sc.events(), *_many_actions(dossier_module.MAX_ACTIONS + 50)]
    reference = build_dossier(fed(events), TH)
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)
    assert build_dossier(fed(shuffled), TH) == reference


def test_stage2_finding_notices_count_as_findings() -> None:
    notice = {
        "event_id": f"finding:{sc.SP02_ALERT_ID}:{sc.TASK}",
        "event_type": "_finding",
        "event_time": sc.COMPLETED + sc.GRACE_MS,
        "detector": "SP-02",
    }
    state = fed(sc.events())
    add_events(state, [notice, notice])
    (finding,) = build_dossier(state, TH)["findings"]
    assert (finding["alert_id"], finding["detector"], finding["count"]) == (
        sc.SP02_ALERT_ID,
        "SP-02",
        1,
    )
    assert build_dossier(state, TH)["verdicts"]["safe"] is False


def test_advance_is_the_one_call_per_step() -> None:
    from pipeline.evidence import advance

    state = new_state(sc.TASK)
    first = advance(state, TH, events=sc.events(), watermark=sc.COMPLETED)
    assert first is not None and first["revision"] == 0
    assert advance(state, TH, events=sc.events()) is None
    second = advance(state, TH, alerts=[sc.sp02_alert()], watermark=sc.COMPLETED + sc.GRACE_MS)
    assert second is not None and second["revision"] == 1


def test_forget_at_is_a_week_after_the_grace_or_the_last_event() -> None:
    from pipeline.evidence import forget_at
    from pipeline.evidence.dossier import KEEP_MS

    state = fed(sc.events())
    assert forget_at(state, TH) == sc.COMPLETED + sc.GRACE_MS + KEEP_MS
    unfinished = fed([e for e in sc.events() if e["event_type"] != "task.completed"])
    assert forget_at(unfinished, TH) == sc.COMPLETED + 10 * S + KEEP_MS  # A's revocation
