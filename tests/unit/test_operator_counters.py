"""The operator's counters on /metrics (issue 16): governance counts a Prometheus user can
take rates of, alerts by severity, Redis and broker errors."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from pipeline.flow.stage1 import Stage1Stats
from pipeline.flow.stage2 import Stage2Stats
from pipeline.metrics import MetricRecord
from pipeline.observability import CORRECTED, GOVERNANCE_COUNTERS, BrokerOutageFilter, render
from pipeline.simulate.generator import Simulator
from tests.support.inprocess import InProcess

START = 1_790_000_000_000


def test_governance_counters_count_the_input_once() -> None:
    """Counted where stage 2 applies each global metric delta (once per item, whatever
    the partitions): the counts equal what the input holds, by the contract's rules."""
    sim = Simulator(5, start_ms=START, rate=50.0, violations={"RS-01": 0.1, "SP-02": 0.05})
    pipe = InProcess(2, identities={r["identity_id"]: r for r in sim.registry()})
    events = sim.events(3000) + list(sim.finish())
    for i in range(0, len(events), 200):
        pipe.read(i // 200 % 2, events[i : i + 200])
    pipe.idle({0, 1}, seconds=3600)
    counted, corrections = pipe.stage2.stats.governance, pipe.stage2.stats.corrections
    actions = [e for e in events if e["event_type"] == "action"]
    completed = {e["task_id"] for e in events if e["event_type"] == "task.completed"}
    decided = {e["approval_id"] for e in events if e["event_type"] == "approval.decided"}
    assert counted["actions_total"] == len(actions) > 500
    assert counted["actions_authorized"] == sum(
        e.get("policy_decision") == "allow" for e in actions
    )
    assert counted["actions_with_credential"] == sum(bool(e.get("credential_id")) for e in actions)
    assert counted["actions_attributable"] == len(actions)  # the registry knows them all
    assert counted["tasks_completed"] == len(completed) > 50
    assert counted["approvals_decided"] == len(decided) > 10
    # Injected violations: some tasks counted safe were taken back by later findings.
    assert 0 < corrections["tasks_safe"] <= counted["tasks_safe"] <= counted["tasks_succeeded"]
    assert set(corrections) <= set(CORRECTED)
    # The published windows (those closed so far) never hold more than was counted.
    for name in GOVERNANCE_COUNTERS:
        published = sum(getattr(m, name) for m in latest_global(pipe.metrics))
        assert published <= counted[name] - corrections[name], name


def latest_global(records: list[MetricRecord]) -> list[MetricRecord]:
    latest: dict[int, MetricRecord] = {}
    for r in records:
        if r.dimension == "global" and r.revision >= getattr(
            latest.get(r.window_start), "revision", -1
        ):
            latest[r.window_start] = r
    return list(latest.values())


def test_alerts_total_has_a_severity_label() -> None:
    stage2 = Stage2Stats(
        alerts_by_detector=Counter({"AZ-02": 3, "SP-01": 2}),
        alerts_by_severity=Counter({("AZ-02", "high"): 2, ("AZ-02", "critical"): 1}),
    )
    stage2.alerts_by_severity["SP-01", "medium"] += 2
    page = render(Stage1Stats(), stage2, None)
    lines = [line for line in page.splitlines() if line.startswith("govpipe_alerts_total{")]
    assert lines == [
        'govpipe_alerts_total{detector="AZ-02",severity="critical"} 1',
        'govpipe_alerts_total{detector="AZ-02",severity="high"} 2',
        'govpipe_alerts_total{detector="SP-01",severity="medium"} 2',
    ]


def test_governance_and_correction_families_are_always_there() -> None:
    stage2 = Stage2Stats()
    stage2.count_delta({"c": {"tasks_completed": 4, "tasks_safe": 3, "actions_total": 9}})
    stage2.count_delta({"c": {"tasks_safe": -1, "approvals_meaningful": -2}})
    page = render(Stage1Stats(), stage2, None).splitlines()
    assert "govpipe_tasks_completed_total 4" in page
    assert "govpipe_tasks_safe_total 3" in page
    assert "govpipe_tasks_safe_corrections_total 1" in page
    assert "govpipe_approvals_meaningful_corrections_total 2" in page
    assert "govpipe_approvals_decided_total 0" in page  # known before anything happens
    assert "# TYPE govpipe_actions_ephemeral_total counter" in page


class Enricher:
    errors = 7


def test_redis_and_broker_error_counters() -> None:
    page = render(Stage1Stats(), Stage2Stats(), None, redis_errors=Enricher.errors)
    assert "govpipe_redis_errors_total 7" in page.splitlines()
    counted = BrokerOutageFilter(quiet_s=0.05)

    def record(name: str, msg: str, *args: Any, level: int = logging.ERROR) -> None:
        counted.filter(logging.LogRecord(name, level, __file__, 1, msg, args, None))

    before = Counter(counted.errors)
    record("aiokafka.conn", "Unable connect to node with id %d: %s", 1, "refused")
    record("aiokafka.cluster", "Unable to update metadata from [1]")
    record("aiokafka.consumer.fetcher", "Failed fetch messages from 1: NodeNotReadyError")
    record("aiokafka.consumer.group_coordinator", "Heartbeat send request failed: x")
    record("pipeline.app", "delivery failed (%s); resending", "KafkaTimeoutError", level=30)
    record("aiokafka.conn", "an unrelated line")
    deadline = time.monotonic() + 5  # the outage's closing line, so it ends in this test
    while counted._since is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    grown = Counter(counted.errors)
    grown.subtract(before)
    assert +grown == Counter(connect=1, metadata=1, fetch=1, group=1, produce=1)
    page = render(Stage1Stats(), Stage2Stats(), None, broker_errors=counted.errors)
    assert 'govpipe_broker_errors_total{op="produce"} 1' in page.splitlines()


def test_switching_every_detector_off_changes_no_count_that_needs_no_finding() -> None:
    """Stage 1 routed an event only where an enabled detector read it, so a policy that
    switched detectors off (evidence off too) lost actions and task and approval
    outcomes from the metrics. The counts that no finding moves must not depend on the
    detector switches; they are checked against the input itself."""
    from pipeline.detectors.policy import parse_policy
    from pipeline.detectors.registry import all_detectors

    off = parse_policy(
        "version: 1\ndetectors:\n"
        + "".join(f"  {d.spec.id}:\n    enabled: false\n" for d in all_detectors())
    )
    sim = Simulator(5, start_ms=START, rate=50.0, violations={"RS-01": 0.1, "SP-02": 0.05})
    events = sim.events(3000) + list(sim.finish())
    counts = []
    for policy, evidence in ((None, True), (off, False)):
        pipe = InProcess(
            2,
            policy=policy,
            evidence=evidence,
            identities={r["identity_id"]: r for r in sim.registry()},
        )
        for i in range(0, len(events), 200):
            pipe.read(i // 200 % 2, events[i : i + 200])
        pipe.idle({0, 1}, seconds=3600)
        counts.append(pipe.stage2.stats.governance)
    actions = [e for e in events if e["event_type"] == "action"]
    completed = {e["task_id"] for e in events if e["event_type"] == "task.completed"}
    decided = {e["approval_id"] for e in events if e["event_type"] == "approval.decided"}
    for name, expected in (
        ("actions_total", len(actions)),
        ("actions_authorized", sum(e.get("policy_decision") == "allow" for e in actions)),
        ("actions_with_credential", sum(bool(e.get("credential_id")) for e in actions)),
        ("tasks_completed", len(completed)),
        ("approvals_decided", len(decided)),
    ):
        assert [c[name] for c in counts] == [expected, expected], name
    for name in ("tasks_succeeded", "task_credentials_completed", "task_credentials_revoked"):
        assert counts[1][name] == counts[0][name] > 0, name
