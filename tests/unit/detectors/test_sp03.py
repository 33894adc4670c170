"""SP-03 standing unused privilege (windows of 7 d, privileged scopes from the policy)."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import DAY, HOUR
from pipeline.detectors.policy import Policy
from pipeline.detectors.sp03_standing_unused_privilege import DETECTOR

from .factory import T0, enriched, run

WEEK = 7 * DAY


def issued(**over: Any) -> dict[str, object]:
    return enriched(
        "credential.issued", T0, scopes=["crm.read", "crm.admin"], expires_at=None, **over
    )


def act(t: int, scope: str) -> dict[str, object]:
    return enriched("action", t, scope=scope)


def test_privileged_scope_never_used_in_window_fires() -> None:
    [f] = run(DETECTOR, [issued(), act(T0 + HOUR, "crm.read")], watermark=T0 + WEEK)
    assert f.facts["unused_privileged_scopes"] == ["crm.admin"]
    assert (f.window_start, f.window_end) == (T0, T0 + WEEK)
    assert f.context["credential_id"] == "cred-1"


def test_used_privileged_scope_is_clean() -> None:
    assert run(DETECTOR, [issued(), act(T0 + DAY, "crm.admin")], watermark=T0 + WEEK) == []


def test_edge_use_one_ms_before_window_end_counts_at_end_does_not() -> None:
    assert run(DETECTOR, [issued(), act(T0 + WEEK - 1, "crm.admin")], watermark=T0 + WEEK) == []
    assert len(run(DETECTOR, [issued(), act(T0 + WEEK, "crm.admin")], watermark=T0 + WEEK)) == 1


def test_edge_watermark_one_ms_before_window_end_does_not_fire() -> None:
    assert run(DETECTOR, [issued()], watermark=T0 + WEEK - 1) == []


def test_revoked_or_expiring_inside_window_is_not_standing() -> None:
    revoked = [issued(), enriched("credential.revoked", T0 + DAY)]
    assert run(DETECTOR, revoked, watermark=T0 + WEEK) == []
    expiring = [enriched("credential.issued", T0, scopes=["iam.admin"], expires_at=T0 + WEEK)]
    assert run(DETECTOR, expiring, watermark=T0 + WEEK) == []


def test_each_window_is_judged_on_its_own() -> None:
    states: dict[str, dict[str, object]] = {}
    events = [issued(), act(T0 + DAY, "crm.admin"), act(T0 + 2 * WEEK + DAY, "crm.admin")]
    findings = run(DETECTOR, events, watermark=T0 + 3 * WEEK, states=states)
    assert [(f.window_start, f.window_end) for f in findings] == [(T0 + WEEK, T0 + 2 * WEEK)]
    assert states["cred-1"]["_deadline"] == T0 + 4 * WEEK


def test_seeded_from_registry_scopes_when_issuance_unseen() -> None:
    first = enriched(
        "action",
        T0,
        scope="crm.read",
        credential={"scopes": ["crm.read", "iam.roles.write"], "expires_at": None},
    )
    [f] = run(DETECTOR, [first], watermark=T0 + WEEK)
    assert f.facts["unused_privileged_scopes"] == ["iam.roles.write"]


def test_no_privileged_scope_keeps_no_state() -> None:
    states: dict[str, dict[str, object]] = {}
    run(DETECTOR, [enriched("credential.issued", T0)], watermark=T0, states=states)
    assert states["cred-1"] == {}


def test_privileged_scopes_come_from_the_policy() -> None:
    policy = Policy(version=1, privileged_scopes=("crm.read",))
    [f] = run(DETECTOR, [issued()], watermark=T0 + WEEK, policy=policy)
    assert f.facts["unused_privileged_scopes"] == ["crm.read"]
