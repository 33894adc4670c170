"""SP-01 long-lived credential used."""

from __future__ import annotations

from pipeline.detectors.base import DAY, HOUR, MINUTE
from pipeline.detectors.sp01_long_lived_credential import DETECTOR

from .factory import T0, enriched, incidents, run


def use(t: int, lifetime: int | None, kind: str = "ai_agent", **cred: object) -> dict[str, object]:
    expires = None if lifetime is None else T0 + lifetime
    return enriched(
        "action",
        t,
        identity={"kind": kind},
        credential={"issued_at": T0, "expires_at": expires, **cred},
    )


def test_agent_credential_over_one_hour_fires() -> None:
    [f] = run(DETECTOR, [use(T0 + MINUTE, 2 * HOUR)])
    assert f.detector == "SP-01" and f.subject == "cred-1"
    assert f.facts["lifetime_s"] == 7200 and f.facts["max_lifetime_s"] == 3600
    assert f.context["identity_id"] == "agent-1" and f.context["credential_id"] == "cred-1"
    assert f.window_start is None


def test_no_expiry_fires() -> None:
    [f] = run(DETECTOR, [use(T0 + MINUTE, None)])
    assert f.facts["no_expiry"] is True and f.facts["lifetime_s"] is None


def test_short_jit_credential_is_clean() -> None:
    assert run(DETECTOR, [enriched("action", T0)]) == []


def test_edge_exactly_max_is_clean_one_ms_over_fires() -> None:
    assert run(DETECTOR, [use(T0, HOUR)]) == []
    assert len(run(DETECTOR, [use(T0, HOUR + 1)])) == 1


def test_max_depends_on_identity_kind() -> None:
    assert run(DETECTOR, [use(T0, DAY, kind="workload")]) == []
    assert len(run(DETECTOR, [use(T0, DAY + 1, kind="workload")])) == 1
    assert run(DETECTOR, [use(T0, 90 * DAY, kind="service_account")]) == []
    assert len(run(DETECTOR, [use(T0, 90 * DAY + 1, kind="service_account")])) == 1
    assert len(run(DETECTOR, [use(T0, DAY + 1, kind="human")])) == 1  # "other": 24 h


def test_unknown_credential_or_unknown_issuance_is_not_judged() -> None:
    assert run(DETECTOR, [use(T0, None, known=False)]) == []
    assert run(DETECTOR, [use(T0, 2 * HOUR, issued_at=None)]) == []


def test_a_hash_with_lifecycle_marks_only_is_not_judged() -> None:
    """The revocation was applied before the issuance (another input partition)."""
    revoked_first = use(T0, None, issued_at=None, issued_via=None, revoked_at=T0)
    revoked_first["credential"]["kind"] = None  # type: ignore[index]
    assert run(DETECTOR, [revoked_first]) == []
    # a registry entry that says what the credential is, without an issuance time, is judged
    static = {"issued_at": None, "kind": "api_key", "issued_via": "static"}
    assert len(run(DETECTOR, [use(T0, None, **static)])) == 1


def test_repeats_are_each_reported_and_grouped_per_day_on_event_time() -> None:
    day = T0 - T0 % DAY + DAY  # dedup periods are fixed days of event time (UTC)
    events = [use(day + i * HOUR, None) for i in range(24)] + [use(day + DAY, None)]
    findings = run(DETECTOR, events)
    assert [f.time for f in findings] == [e["event_time"] for e in events]
    assert incidents(findings) == [1] + [2] * 23 + [1]  # dedup_s: one day


def test_policy_threshold_override() -> None:
    assert run(DETECTOR, [use(T0, 2 * HOUR)], thresholds={"max_lifetime_ai_agent_s": 7200}) == []
