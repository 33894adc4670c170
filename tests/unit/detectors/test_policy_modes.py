"""Policy per mode of autonomy: what the file may say, and the real engine applying it."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.detectors.base import DAY, HOUR, MINUTE, Event, Finding, State
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.policy import PolicyError, parse_policy

from .factory import T0, enriched


def policy(text: str) -> DetectionEngine:
    return DetectionEngine(parse_policy("version: 1\n" + text))


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse_policy("version: 1\n" + text, "p.yaml")
    return exc.value.errors


def sensitive_use(mode: str | None, identity_id: str = "agent-1") -> Event:
    """An action SP-05 flags: high sensitivity under a static key, by an identity of
    ``mode`` (None: a view without a mode; "unknown": an identity the registry lacks)."""
    if mode == "unknown":
        identity: dict[str, Any] = {"known": False, "kind": None, "team": None, "mode": None}
    else:
        identity = {} if mode is None else {"mode": mode}
    return enriched(
        "action",
        T0,
        identity_id=identity_id,
        sensitivity="high",
        identity=identity,
        credential={"issued_via": "static", "kind": "api_key"},
    )


def sp05(engine: DetectionEngine, event: Event) -> list[Finding]:
    found = engine.process("credential", "cred-1", {}, [event], T0)
    return [f for f in found if f.detector == "SP-05"]


MODES_05 = """
detectors:
  SP-05:
    modes:
      reporting: {enabled: false}
      autonomous: {severity: critical}
"""


def test_severity_and_enabled_per_mode_for_a_stateful_detector() -> None:
    engine = policy(MODES_05)
    assert sp05(engine, sensitive_use("reporting")) == []
    [assistant] = sp05(engine, sensitive_use("assistant"))
    assert assistant.severity == "high"  # the mode sets nothing: the detector's own
    [autonomous] = sp05(engine, sensitive_use("autonomous"))
    assert autonomous.severity == "critical" and autonomous.context["mode"] == "autonomous"
    [alert] = engine.alerts({}, [autonomous], product_version="t")
    assert alert["severity"] == "critical" and alert["mode"] == "autonomous"


def test_no_mode_is_held_to_the_autonomous_standard() -> None:
    engine = policy(MODES_05)
    [no_mode] = sp05(engine, sensitive_use(None))
    [unknown] = sp05(engine, sensitive_use("unknown"))
    assert no_mode.severity == unknown.severity == "critical"
    assert "mode" not in unknown.context


def test_mode_severity_beats_the_detector_severity() -> None:
    engine = policy(
        "detectors:\n  SP-05: {severity: low, modes: {autonomous: {severity: critical}}}\n"
    )
    assert [f.severity for f in sp05(engine, sensitive_use("assistant"))] == ["low"]
    assert [f.severity for f in sp05(engine, sensitive_use("autonomous"))] == ["critical"]


def test_off_for_itself_on_for_one_mode_still_runs_and_routes() -> None:
    engine = policy("detectors:\n  SP-05: {enabled: false, modes: {autonomous: {enabled: true}}}\n")
    assert "SP-05" in engine.enabled_ids
    assert ("credential", "cred-1") in engine.subject_kinds_for(sensitive_use("reporting"))
    assert sp05(engine, sensitive_use("assistant")) == []
    assert len(sp05(engine, sensitive_use("autonomous"))) == 1
    off = policy("detectors:\n  SP-05: {enabled: false, modes: {reporting: {severity: low}}}\n")
    assert "SP-05" not in off.enabled_ids


def test_timer_findings_use_the_mode_kept_with_the_task() -> None:
    """SP-02 fires on the watermark, with no event at hand: the mode comes from the
    context it kept from the task's events."""
    engine = policy(
        "detectors:\n  SP-02:\n    modes:\n      reporting: {enabled: false}\n"
        "      autonomous: {severity: high}\n"
    )
    done, deadline = T0 + 10 * MINUTE, T0 + 15 * MINUTE

    def run(mode: str) -> list[Finding]:
        state: State = {}
        ident = {"mode": mode}
        events = [
            enriched("credential.issued", T0, expires_at=T0 + DAY, identity=ident),
            enriched("task.completed", done, identity=ident),
        ]
        engine.process("task", "task-1", state, events, T0)
        return [
            f
            for f in engine.process("task", "task-1", state, [], deadline)
            if f.detector == "SP-02"
        ]

    assert run("reporting") == []
    assert [f.severity for f in run("assistant")] == ["medium"]
    assert [f.severity for f in run("autonomous")] == ["high"]


def long_lived(mode: str, identity_id: str) -> Event:
    """SP-01 material: an agent's credential living 30 minutes (the default max is 1 h)."""
    return enriched(
        "action",
        T0,
        identity_id=identity_id,
        identity={"mode": mode},
        credential={"issued_at": T0 - 30 * MINUTE, "expires_at": T0},
    )


def test_thresholds_per_mode_for_a_single_event_detector() -> None:
    engine = policy(
        "detectors:\n  SP-01:\n    modes:\n"
        "      autonomous: {thresholds: {max_lifetime_ai_agent_s: 900}}\n"
        "      reporting: {thresholds: {max_lifetime_ai_agent_s: 7200}}\n"
    )
    events = [long_lived("autonomous", "agent-a"), long_lived("assistant", "agent-b")]
    events.append(long_lived("reporting", "agent-c"))
    found = [
        f for f in engine.process("credential", "cred-1", {}, events, T0) if f.detector == "SP-01"
    ]
    assert [(f.context["identity_id"], f.facts["max_lifetime_s"]) for f in found] == [
        ("agent-a", 900)
    ]
    assert engine.specs["SP-01"].thresholds["max_lifetime_ai_agent_s"] == 3600  # unchanged
    two_hours = enriched(
        "action",
        T0,
        identity_id="agent-c",
        identity={"mode": "reporting"},
        credential={"issued_at": T0 - 2 * HOUR - 1, "expires_at": T0},
    )
    [over] = [
        f
        for f in engine.process("credential", "cred-2", {}, [two_hours], T0)
        if f.detector == "SP-01"
    ]
    assert over.facts["max_lifetime_s"] == 7200


def test_check_refuses_what_the_engine_cannot_honour() -> None:
    errors = problems(
        "detectors:\n"
        "  SP-02:\n"
        "    modes:\n"
        "      autonomous: {thresholds: {grace_s: 60}}\n"
        "  SP-01:\n"
        "    modes:\n"
        "      semi: {enabled: true}\n"
        "      reporting: {thresholds: {dedup_s: 60, max_lifetime_x_s: 5}}\n"
        "      assistant: {thresholds: {max_lifetime_ai_agent_s: fast}, colour: red}\n"
    )
    assert errors[0].startswith("p.yaml:5: detectors.SP-02.modes.autonomous.thresholds: ")
    assert "only for detectors that judge each event on its own" in errors[0]
    text = "\n".join(errors)
    assert "p.yaml:8: detectors.SP-01.modes.semi: expected 'reporting'" in text
    assert "p.yaml:9: detectors.SP-01.modes.reporting.thresholds.dedup_s: dedup_s cannot" in text
    assert "p.yaml:9: detectors.SP-01.modes.reporting.thresholds.max_lifetime_x_s: unknown" in text
    assert (
        "p.yaml:10: detectors.SP-01.modes.assistant.thresholds.max_lifetime_ai_agent_s: "
        "expected a number" in text
    )
    assert "p.yaml:10: detectors.SP-01.modes.assistant.colour: unknown key" in text


def test_check_accepts_severity_and_enabled_per_mode_everywhere() -> None:
    text = "detectors:\n" + "".join(
        f"  {i}: {{modes: {{reporting: {{enabled: false}}, autonomous: {{severity: critical}}}}}}\n"
        for i in ("SP-02", "SP-05", "RS-02", "AT-01")
    )
    parsed = parse_policy("version: 1\n" + text)
    assert parsed.modes("SP-02")["reporting"].enabled is False


def test_docs_name_exactly_the_detectors_with_thresholds_per_mode() -> None:
    import re
    from pathlib import Path

    from pipeline.detectors.registry import all_detectors

    text = (Path(__file__).resolve().parents[3] / "docs" / "policy.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `thresholds` |"))
    named = set(re.findall(r"[A-Z]{2}-\d{2}", row))
    assert named == {d.spec.id for d in all_detectors() if d.per_event}
