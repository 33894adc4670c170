"""Batch folding of events and outcomes into metric deltas."""

from __future__ import annotations

import time

import orjson
import pytest

from pipeline.metrics.deltas import (
    AlertRaised,
    ApprovalDecided,
    Correction,
    TaskCompleted,
    TaskCredentialCompleted,
    alert_deltas,
    approval_deltas,
    combine,
    correction_deltas,
    credential_deltas,
    outcome_deltas,
    routing_key,
    task_deltas,
)
from pipeline.metrics.histogram import bucket_of
from pipeline.metrics.windows import MetricWindows
from tests.support.expected_metrics import differences, expected_metrics
from tests.unit.metrics.factory import BASE, HOUR, MIN, action, action_deltas, random_actions

DIMS = ["global", "platform", "team", "identity", "mode"]


def by_key(deltas):
    return {(d["w"], d["ws"], d["dim"], d["val"]): d for d in deltas}


def test_one_action_lands_in_every_dimension_it_has() -> None:
    deltas = by_key(action_deltas([action(BASE + 5)], [MIN]))
    assert set(deltas) == {
        (MIN, BASE, "global", "all"),
        (MIN, BASE, "platform", "crm"),
        (MIN, BASE, "team", "sales"),
        (MIN, BASE, "identity", "agent-a"),
        (MIN, BASE, "mode", "reporting"),
    }
    d = deltas[(MIN, BASE, "global", "all")]
    assert d["n"] == 1
    assert d["c"] == {
        "actions_total": 1,
        "actions_authorized": 1,
        "actions_attributable": 1,
        "actions_with_credential": 1,
        "actions_ephemeral": 1,
    }
    assert d["h"] == {"action_latency_ms": {bucket_of(100): 1}}
    assert d["a"] == {}


def test_no_team_and_no_identity_mean_no_such_dimension() -> None:
    no_team = by_key(action_deltas([action(BASE, "svc-c")], [MIN]))
    assert {k[2] for k in no_team} == {"global", "platform", "identity", "mode"}
    assert (MIN, BASE, "mode", "autonomous") in no_team  # known, no mode in its view
    anonymous = by_key(action_deltas([action(BASE, None)], [MIN]))
    assert {k[2] for k in anonymous} == {"global", "platform"}
    c = anonymous[(MIN, BASE, "global", "all")]["c"]
    assert c["actions_attributable"] == 0


def test_unknown_identity_is_not_attributable_but_keeps_its_identity_window() -> None:
    deltas = by_key(action_deltas([action(BASE, "ghost")], [MIN]))
    assert deltas[(MIN, BASE, "identity", "ghost")]["c"]["actions_attributable"] == 0
    assert not any(k[2] == "mode" for k in deltas)  # unknown to the registry: no mode


def test_only_actions_are_counted() -> None:
    other = dict(action(BASE), event_type="task.started")
    assert action_deltas([other], [MIN]) == []


def test_boundary_event_opens_the_next_window() -> None:
    deltas = by_key(action_deltas([action(BASE + MIN - 1), action(BASE + MIN)], [MIN]))
    assert deltas[(MIN, BASE, "global", "all")]["n"] == 1
    assert deltas[(MIN, BASE + MIN, "global", "all")]["n"] == 1


def test_several_window_sizes_even_when_not_multiples() -> None:
    t = BASE + 100_000  # 1 min 40 s
    deltas = by_key(action_deltas([action(t)], [MIN, 90_000, HOUR]))
    starts = {(k[0], k[1]) for k in deltas if k[2] == "global"}
    assert starts == {(MIN, BASE + MIN), (90_000, BASE + 90_000), (HOUR, BASE)}


@pytest.mark.parametrize(
    ("kwargs", "ephemeral"),
    [
        ({"issued_via": "jit", "lifetime_ms": 1000 * HOUR}, 1),  # JIT whatever its lifetime
        ({"issued_via": "static", "lifetime_ms": HOUR}, 1),  # ai_agent max TTL exactly
        ({"issued_via": "static", "lifetime_ms": HOUR + 1}, 0),
        ({"issued_via": "static", "lifetime_ms": None}, 0),  # never expires
        ({"credential_known": False}, 0),  # nothing to judge
    ],
)
def test_ephemeral_credential_rules_for_an_ai_agent(kwargs, ephemeral) -> None:
    d = by_key(action_deltas([action(BASE, **kwargs)], [MIN]))[(MIN, BASE, "global", "all")]
    assert d["c"]["actions_with_credential"] == 1
    assert d["c"]["actions_ephemeral"] == ephemeral


@pytest.mark.parametrize(
    ("identity_id", "lifetime", "ephemeral"),
    [
        ("agent-b", 24 * HOUR, 1),  # workload: 24 h
        ("agent-b", 24 * HOUR + 1, 0),
        ("svc-c", 90 * 24 * HOUR, 1),  # service account: 90 d
        ("svc-c", 90 * 24 * HOUR + 1, 0),
        ("ghost", 24 * HOUR, 1),  # unknown kind: 24 h, as SP-01
        ("ghost", 24 * HOUR + 1, 0),
    ],
)
def test_max_ttl_depends_on_identity_kind(identity_id, lifetime, ephemeral) -> None:
    event = action(BASE, identity_id, issued_via="static", lifetime_ms=lifetime)
    d = by_key(action_deltas([event], [MIN]))[(MIN, BASE, "global", "all")]
    assert d["c"]["actions_ephemeral"] == ephemeral


def test_max_ttl_is_configurable() -> None:
    event = action(BASE, issued_via="static", lifetime_ms=2 * HOUR)
    d = action_deltas([event], [MIN], max_ttl_ms={"ai_agent": 3 * HOUR})[0]
    assert d["c"]["actions_ephemeral"] == 1


def test_action_without_credential_is_outside_the_ephemeral_denominator() -> None:
    d = action_deltas([action(BASE, credential_id=None)], [MIN])[0]
    assert d["c"]["actions_with_credential"] == 0
    assert d["c"]["actions_ephemeral"] == 0


def test_deny_and_missing_decision_are_not_authorized() -> None:
    events = [action(BASE, decision="deny"), action(BASE, decision=None), action(BASE)]
    d = action_deltas(events, [MIN])[0]
    assert (d["c"]["actions_total"], d["c"]["actions_authorized"]) == (3, 1)


def test_bad_event_time_or_latency_does_not_break_the_batch() -> None:
    events = [dict(action(BASE), event_time="soon"), action(BASE, latency_ms=None), action(BASE)]
    d = action_deltas(events, [MIN])[0]
    assert d["n"] == 2
    assert sum(d["h"]["action_latency_ms"].values()) == 1


def test_one_delta_per_window_and_dimension_per_batch() -> None:
    events = random_actions(2000)
    deltas = action_deltas(events, [MIN, HOUR])
    keys = [(d["w"], d["ws"], d["dim"], d["val"]) for d in deltas]
    assert len(keys) == len(set(keys))
    assert keys == sorted(
        keys,
        key=lambda k: (k[0], k[1], DIMS.index(k[2]), k[3]),
    )


def test_deltas_are_plain_json() -> None:
    deltas = action_deltas(random_actions(300), [MIN]) + outcome_deltas(
        [ApprovalDecided(BASE, 12.5, True), AlertRaised(BASE, "SP-01")], [MIN]
    )
    assert orjson.loads(orjson.dumps(deltas)) == deltas


def test_actions_agree_with_the_independent_calculator() -> None:
    events = random_actions(3000, seed=11)
    sizes = [MIN, 5 * MIN]
    windows = MetricWindows(sizes, allowed_lateness_ms=0)
    for i in range(0, len(events), 250):  # batches, as stage 1 sends them
        windows.add_all(action_deltas(events[i : i + 250], sizes))
    records = windows.advance(BASE + HOUR)
    expected = expected_metrics(events, sizes)
    assert differences(expected, [r.to_dict() for r in records]) == []


# ---- outcomes --------------------------------------------------------------------------


def test_tasks_success_versus_safe() -> None:
    tasks = [
        TaskCompleted(BASE, "crm", "sales", "agent-a", succeeded=True, safe=True),
        TaskCompleted(BASE, "crm", "sales", "agent-a", succeeded=True, safe=False),
        TaskCompleted(BASE, "crm", None, None, succeeded=False, safe=True),  # failed: never safe
    ]
    d = by_key(task_deltas(tasks, [MIN]))
    assert d[(MIN, BASE, "global", "all")]["c"] == {
        "tasks_completed": 3,
        "tasks_succeeded": 2,
        "tasks_safe": 1,
    }
    assert d[(MIN, BASE, "team", "sales")]["c"]["tasks_completed"] == 2
    assert d[(MIN, BASE, "identity", "agent-a")]["n"] == 2


def test_task_credentials() -> None:
    items = [TaskCredentialCompleted(BASE, True), TaskCredentialCompleted(BASE, False)]
    (d,) = credential_deltas(items, [MIN])
    assert d["c"] == {"task_credentials_completed": 2, "task_credentials_revoked": 1}
    assert d["dim"] == "global"


def test_approvals_with_review_histogram() -> None:
    items = [
        ApprovalDecided(BASE, 3.0, meaningful=False),
        ApprovalDecided(BASE, 40.0, meaningful=True),
        ApprovalDecided(BASE, None, meaningful=True),
        ApprovalDecided(BASE, 0.0, meaningful=False),
    ]
    (d,) = approval_deltas(items, [MIN])
    assert d["c"] == {"approvals_decided": 4, "approvals_meaningful": 2}
    assert d["h"]["review_seconds"] == {bucket_of(3.0): 1, bucket_of(40.0): 1, "z": 1}


def test_alerts_by_detector() -> None:
    items = [
        AlertRaised(BASE, "SP-01", platform="crm"),
        AlertRaised(BASE + 1, "SP-01"),
        AlertRaised(BASE, "RS-01"),
    ]
    d = by_key(alert_deltas(items, [MIN]))
    assert d[(MIN, BASE, "global", "all")]["c"] == {"alerts_total": 3}
    assert d[(MIN, BASE, "global", "all")]["a"] == {"SP-01": 2, "RS-01": 1}
    assert d[(MIN, BASE, "platform", "crm")]["a"] == {"SP-01": 1}


def test_correction_flips_safe_in_the_completion_window() -> None:
    later = BASE + 10 * MIN
    completed_at = BASE + 30_000
    (d, *_rest) = correction_deltas(
        [Correction(completed_at, "tasks_safe", -1, "crm", "sales", "agent-a")], [MIN]
    )
    assert (d["ws"], d["dim"], d["c"]) == (BASE, "global", {"tasks_safe": -1})
    assert later > d["ws"] + d["w"]  # the correction targets the old window, not "now"


def test_correction_of_an_unknown_counter_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown counter"):
        correction_deltas([Correction(BASE, "tasks_happy", 1)], [MIN])  # type: ignore[arg-type]


def test_mixed_outcomes_fold_into_one_delta_per_window_and_dimension() -> None:
    items = [
        TaskCompleted(BASE, "crm", None, None, True, True),
        ApprovalDecided(BASE + 1, 20.0, True, platform="crm"),
        AlertRaised(BASE + 2, "AZ-01", platform="crm"),
    ]
    d = by_key(outcome_deltas(items, [MIN]))
    assert set(d) == {(MIN, BASE, "global", "all"), (MIN, BASE, "platform", "crm")}
    assert d[(MIN, BASE, "platform", "crm")]["n"] == 3


def test_combine_merges_same_window_and_dimension() -> None:
    a = action_deltas([action(BASE)], [MIN])
    b = outcome_deltas([AlertRaised(BASE, "SP-01"), ApprovalDecided(BASE, 5.0, True)], [MIN])
    merged = by_key(combine(a + b + a))
    g = merged[(MIN, BASE, "global", "all")]
    assert g["n"] == 4
    assert g["c"]["actions_total"] == 2
    assert g["c"]["alerts_total"] == 1
    assert g["a"] == {"SP-01": 1}
    assert sum(g["h"]["action_latency_ms"].values()) == 2
    assert sum(g["h"]["review_seconds"].values()) == 1


def test_routing_key_groups_all_windows_of_a_dimension_value() -> None:
    deltas = action_deltas([action(BASE), action(BASE + HOUR)], [MIN, HOUR])
    keys = {routing_key(d) for d in deltas}
    assert keys == {
        "global|all",
        "platform|crm",
        "team|sales",
        "identity|agent-a",
        "mode|reporting",
    }


@pytest.mark.parametrize("sizes", [[], [0], [-5]])
def test_window_sizes_must_be_positive(sizes) -> None:
    with pytest.raises(ValueError):
        action_deltas([action(BASE)], sizes)


def test_ten_thousand_actions_fold_fast() -> None:
    """The budget is 20 ms on the dev machine; the bound here leaves CI headroom."""
    events = random_actions(10_000, seed=3, span_ms=30_000)
    best = min(_timed(lambda: action_deltas(events, [MIN, HOUR])) for _ in range(5))
    assert best < 0.1, f"action_deltas took {best * 1000:.1f} ms for 10k events"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_the_calculator_comparison_does_notice_a_wrong_count() -> None:
    events = random_actions(200, seed=5)
    windows = MetricWindows([MIN], allowed_lateness_ms=0)
    windows.add_all(action_deltas(events, [MIN]))
    records = [r.to_dict() for r in windows.advance(BASE + HOUR)]
    records[0]["actions_authorized"] += 1
    records[1]["attributable_action_rate"] = 0.5
    records[2]["p95_action_latency_ms"] *= 1.5
    problems = differences(expected_metrics(events, [MIN]), records)
    assert any("actions_authorized" in p for p in problems)
    assert any("attributable_action_rate" in p for p in problems)
    assert any("p95_action_latency_ms" in p for p in problems)
