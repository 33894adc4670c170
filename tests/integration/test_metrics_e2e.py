"""Rolling metrics through the real broker and Redis, checked against an independent count.

The expected figures come from ``tests/support/expected_metrics.py`` (plain loops, no
code shared with ``pipeline.metrics``) over the enriched events stage 2 actually saw
and the alerts it raised; the newest revision of every record on the metrics topic
must match them, for every dimension — also when the worker is killed mid-scenario.
"""

from __future__ import annotations

import uuid

import pytest

from pipeline.simulate import Simulator
from tests.support.expected_metrics import differences, expected_metrics
from tests.support.scenario import MINUTE, clear_registry, load_registry, run_scenario

pytestmark = pytest.mark.integration

START = 1_790_000_000_000
APPROVAL_SUBJECT_RS = {"RS-01", "RS-04", "RS-05", "RS-06"}


@pytest.mark.parametrize(
    "kill_after_s",
    [None, 2.0],
    ids=["uninterrupted", "kill9"],
)
def test_metrics_match_independent_counts(
    settings_factory, worker_factory, redis_url, kill_after_s
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    settings = settings_factory(redis_key_prefix=prefix)
    sim = Simulator(
        11,
        start_ms=START,
        rate=100,
        violations={"SP-01": 0.04, "SP-02": 0.04, "AZ-01": 0.04, "RS-01": 0.04, "RS-04": 0.04},
        sp03_jump=False,
    )
    registry = sim.registry()
    load_registry(redis_url, prefix, registry)
    try:
        events = sim.events(3000) + list(sim.finish())
        out = run_scenario(
            settings,
            lambda name: worker_factory(settings, name=name).start(timeout=90),
            registry,
            events,
            kill_after_s=kill_after_s,
        )
    finally:
        clear_registry(redis_url, prefix)
    creates = out.creates
    assert creates, "the injected violations raised no alert"
    unique = {e["event_id"]: e for e in out.seen}
    expected = expected_metrics(
        unique.values(),
        [MINUTE],
        tasks_with_findings={a["task_id"] for a in creates if a.get("task_id")},
        approvals_with_rs={
            a["approval_id"]
            for a in creates
            if a["detector"] in APPROVAL_SUBJECT_RS and a.get("approval_id")
        },
        alerts=[(a["time"], a["detector"], a["platform"], a["identity_id"]) for a in creates],
    )
    assert out.metrics, "no metric record arrived"
    assert {r["dimension"] for r in out.metrics} == {"global", "platform", "team", "identity"}
    problems = differences(expected, out.metrics)
    assert not problems, "\n".join(problems[:40])
