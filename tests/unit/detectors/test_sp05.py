"""SP-05 static credential for a sensitive action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.detectors.base import HOUR, MINUTE
from pipeline.detectors.sp05_static_credential_sensitive_action import DETECTOR

from .factory import T0, enriched, incidents, run

STATIC = {"issued_via": "static", "kind": "api_key"}


def act(
    t: int = T0, sensitivity: str = "high", credential: Mapping[str, Any] = STATIC, **kw: Any
) -> dict[str, object]:
    kw.setdefault("action", "crm.records.update")
    return enriched("action", t, sensitivity=sensitivity, credential=credential, **kw)


def test_high_sensitivity_under_static_key_fires() -> None:
    [f] = run(DETECTOR, [act()])
    assert f.facts["issued_via"] == "static" and f.facts["sensitive_by"] == "sensitivity"
    assert f.context["credential_id"] == "cred-1"


def test_under_jit_credential_is_clean() -> None:
    assert run(DETECTOR, [act(credential={})]) == []


def test_edge_medium_is_below_high_and_override_lowers_the_floor() -> None:
    assert run(DETECTOR, [act(sensitivity="medium")]) == []
    assert len(run(DETECTOR, [act(sensitivity="high")])) == 1
    assert (
        len(run(DETECTOR, [act(sensitivity="medium")], thresholds={"min_sensitivity": "medium"}))
        == 1
    )


def test_sensitive_action_pattern_fires_at_low_sensitivity() -> None:
    [f] = run(DETECTOR, [act(sensitivity="low", action="crm.records.export")])
    assert f.facts["sensitive_by"] == "action_pattern"


def test_jit_is_judged_from_kind_when_issued_via_unknown() -> None:
    assert run(DETECTOR, [act(credential={"issued_via": None, "kind": "jit_token"})]) == []
    assert len(run(DETECTOR, [act(credential={"issued_via": None, "kind": "api_key"})])) == 1


def test_dedup_edge_one_hour() -> None:
    assert incidents(run(DETECTOR, [act(T0), act(T0 + HOUR - 1)])) == [1, 2]
    assert incidents(run(DETECTOR, [act(T0), act(T0 + HOUR)])) == [1, 1]


UNKNOWN = {"known": False, "issued_via": None, "kind": None}


def unknown_act(t: int = T0) -> dict[str, object]:
    event = act(t, credential=UNKNOWN)
    event["credential_kind"] = None
    return event


def test_unknown_provenance_waits_for_the_watermark_then_counts_as_not_jit() -> None:
    states: dict = {}
    assert run(DETECTOR, [unknown_act()], watermark=T0 - 1, states=states) == []
    [f] = run(DETECTOR, [], watermark=T0, states=states)  # edge: watermark at the action
    assert f.facts["issued_via"] is None and f.time == T0
    assert "waiting" not in states["cred-1"]


def test_issuance_arriving_after_the_action_but_before_the_watermark_decides() -> None:
    """The issuance sat on another input partition and came second."""
    states: dict = {}
    assert run(DETECTOR, [unknown_act()], watermark=T0 - 1, states=states) == []
    issued = enriched("credential.issued", T0 - MINUTE, issued_via="jit")
    assert run(DETECTOR, [issued], watermark=T0 + MINUTE, states=states) == []
    static = enriched("credential.issued", T0 - MINUTE, issued_via="static")
    states = {}
    run(DETECTOR, [unknown_act()], watermark=T0 - 1, states=states)
    [f] = run(DETECTOR, [static], watermark=T0 + MINUTE, states=states)
    assert f.facts["issued_via"] == "static"
