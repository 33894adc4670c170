"""Rolling metrics through the real broker and Redis, checked against the contract.

The expected figures come from ``tests/support/metric_oracle.py``: plain loops over
what a user sees from outside — the events published, the identity registry, the
alert records read from governance.alerts.v1 and the policy values the worker runs
under — with no code shared with ``pipeline.metrics`` or ``pipeline.flow``. The
newest revision of every record on the metrics topic must match them, for every
dimension: also when the worker is killed mid-scenario, and when a policy file
overrides SP-01's maximum lifetimes (the ephemeral rate must follow the same
effective TTL as SP-01).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.detectors.policy import load_policy
from pipeline.detectors.registry import all_detectors
from pipeline.simulate import Simulator
from tests.support.metric_oracle import PolicyValues, differences, expected_metrics, summarize
from tests.support.scenario import MINUTE, clear_registry, load_registry, run_scenario

pytestmark = pytest.mark.integration

START = 1_790_000_000_000
#: SP-05's injected credential is a manual 30-minute agent token: ephemeral under the default
#: 1-hour agent maximum, not under this one (and then SP-01 fires on it too).
SHORT_AGENT_TTL = """\
version: 1
detectors:
  SP-01: {thresholds: {max_lifetime_ai_agent_s: 1200}}
"""

#: Each mode held to its own standard (docs/policy.md): SP-05 off for reporting models
#: and critical for autonomous agents (and identities without a mode), SP-01 stricter
#: for autonomous ones; the metrics' ephemeral rate keeps the detector-level maximum.
BY_MODE = """\
version: 1
detectors:
  SP-05: {modes: {reporting: {enabled: false}, autonomous: {severity: critical}}}
  SP-01: {modes: {autonomous: {thresholds: {max_lifetime_ai_agent_s: 1200}}}}
"""


def policy_values(policy_file: Path | None) -> PolicyValues:
    """SP-01's and SP-02's effective thresholds under the worker's policy, as numbers."""
    policy = load_policy(policy_file)
    specs = {d.spec.id: d.spec for d in all_detectors()}
    return PolicyValues.from_thresholds(
        policy.thresholds(specs["SP-01"]), policy.thresholds(specs["SP-02"])
    )


@pytest.mark.parametrize(
    ("kill_after_s", "policy_text"),
    [(None, None), (2.0, None), (None, SHORT_AGENT_TTL), (None, BY_MODE)],
    ids=["uninterrupted", "kill9", "policy-override", "policy-by-mode"],
)
def test_metrics_match_independent_counts(
    settings_factory, worker_factory, redis_url, tmp_path, kill_after_s, policy_text
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    overrides: dict[str, object] = {"redis_key_prefix": prefix}
    if policy_text is not None:
        (tmp_path / "policy.yaml").write_text(policy_text)
        overrides["policy_file"] = tmp_path / "policy.yaml"
    settings = settings_factory(**overrides)
    sim = Simulator(
        11,
        start_ms=START,
        rate=100,
        violations={
            "SP-01": 0.04,
            "SP-02": 0.04,
            "SP-04": 0.04,
            "SP-05": 0.04,
            "AZ-01": 0.04,
            "RS-01": 0.04,
            "RS-04": 0.04,
        },
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
    assert out.creates, "the injected violations raised no alert"
    expected = expected_metrics(
        events, registry, out.alerts, [MINUTE], policy_values(settings.policy_file)
    )
    assert out.metrics, "no metric record arrived"
    dimensions = {r["dimension"] for r in out.metrics}
    assert dimensions == {"global", "platform", "team", "identity", "mode"}
    problems = differences(expected, out.metrics)
    assert not problems, summarize(problems)
    if policy_text is BY_MODE:
        modes = {r["identity_id"]: r.get("mode") or "autonomous" for r in registry}
        sp05 = [a for a in out.alerts if a["detector"] == "SP-05"]
        # Under the default policy this scenario raises SP-05 on reporting identities
        # too (10 Creates of 29, measured offline through the real engine); here none.
        assert sp05, "no SP-05 alert to judge the policy by"
        for alert in sp05:  # the alert's mode is the registry's; its severity the mode's
            mode = modes.get(alert.get("identity_id") or "")
            assert alert.get("mode") == mode
            assert mode != "reporting"
            assert alert["severity"] == ("critical" if mode in (None, "autonomous") else "high")
