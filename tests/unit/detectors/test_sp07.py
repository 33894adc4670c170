"""SP-07 credential reuse across identities or environments."""

from __future__ import annotations

from pipeline.detectors.base import DAY, HOUR
from pipeline.detectors.sp07_credential_reuse import DETECTOR

from .factory import T0, enriched, run


def use(t: int, identity: str = "agent-1", env: str = "prod") -> dict[str, object]:
    return enriched("action", t, identity_id=identity, environment=env)


def test_two_identities_in_a_day_fire() -> None:
    first = use(T0)
    [f] = run(DETECTOR, [first, use(T0 + HOUR, "agent-2")])
    assert f.facts["identities"] == ["agent-1", "agent-2"] and f.facts["distinct_identities"] == 2
    assert f.window_start == T0 and f.context["credential_id"] == "cred-1"
    assert first["event_id"] in f.event_ids


def test_two_environments_fire() -> None:
    [f] = run(DETECTOR, [use(T0), use(T0 + 1, env="staging")])
    assert f.facts["environments"] == ["prod", "staging"]


def test_one_identity_one_environment_is_clean() -> None:
    assert run(DETECTOR, [use(T0 + i * HOUR) for i in range(30)]) == []


def test_edge_window_24h() -> None:
    assert len(run(DETECTOR, [use(T0), use(T0 + DAY - 1, "agent-2")])) == 1
    assert run(DETECTOR, [use(T0), use(T0 + DAY, "agent-2")]) == []


def test_episode_updates_then_new_episode() -> None:
    events = [
        use(T0),
        use(T0 + 1, "agent-2"),
        use(T0 + 2, "agent-2"),  # nothing new
        use(T0 + 3, "agent-3"),  # new identity: same episode (an Update)
        use(T0 + DAY + 10, "agent-1"),
        use(T0 + DAY + 11, "agent-4"),  # new episode
    ]
    findings = run(DETECTOR, events)
    assert [(f.window_start, f.facts["distinct_identities"]) for f in findings] == [
        (T0, 2),
        (T0, 3),
        (T0 + DAY + 10, 2),
    ]


def test_threshold_override() -> None:
    assert run(DETECTOR, [use(T0), use(T0 + 1, "agent-2")], thresholds={"min_identities": 3}) == []
