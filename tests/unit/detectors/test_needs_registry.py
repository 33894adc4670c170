"""Detectors that need the identity registry leave out the events of a registry gap.

Stage 1 marks an event it enriched while the registry marker was absent or empty
(``REGISTRY_GAP``); the engine does not hand such an event to the detectors whose spec
``needs_registry`` (docs/operations.md#govpiperegistrynotready), every other detector
still judges it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.detectors import registry
from pipeline.detectors.base import REGISTRY_GAP, DetectorSpec, Event, State
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.registry import all_detectors, spec_problems

from .factory import T0, enriched

#: The documented set (docs/operations.md, "Which detectors need the registry"): the
#: per-event detectors whose verdict reads the identity registry.
NEEDS_REGISTRY = {"AT-01", "AT-03", "AT-04", "SP-01", "SP-06", "SP-08"}
DOC = Path(__file__).parents[3] / "docs" / "operations.md"


def test_each_builtin_flag_is_set_as_documented() -> None:
    flagged = {d.spec.id for d in all_detectors() if d.spec.needs_registry}
    assert flagged == NEEDS_REGISTRY
    assert all(d.per_event for d in all_detectors() if d.spec.needs_registry)
    assert DetectionEngine().registry_ids == tuple(sorted(NEEDS_REGISTRY))
    text = DOC.read_text()
    section = text[text.index("Which detectors need the registry") :]
    table = section[section.index("| detector") :]
    table = table[: table.index("\n\n")]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert {i for i, row in rows.items() if "| yes |" in row} == NEEDS_REGISTRY
    assert set(rows) == {d.spec.id for d in all_detectors()}


def violating() -> list[Event]:
    """One event per registry-dependent detector that fires on it, plus AZ-01's."""
    scopes = {"allowed_scopes": ["crm.read"]}
    return [
        # AT-01: an identity the registry does not list
        enriched("action", T0, identity_id="ghost", identity={"known": False}),
        # AT-03: delegates scopes its delegator's allowed_scopes do not cover
        enriched(
            "delegation",
            T0 + 1,
            identity_id="agent-3",
            identity=scopes,
            credential=None,
            delegate_identity_id="agent-9",
            scopes=["crm.delete"],
        ),
        # AT-04: a browser on an agent's identity
        enriched("action", T0 + 2, identity_id="agent-4", attributes={"user_agent": "Mozilla/5.0"}),
        # SP-01: a credential that never expires
        enriched(
            "action",
            T0 + 3,
            identity_id="agent-5",
            credential_id="cred-5",
            credential={"issued_at": T0 - 1000, "expires_at": None, "lifetime_ms": None},
        ),
        # SP-06: an offboarded identity acts
        enriched("action", T0 + 4, identity_id="agent-6", identity={"status": "offboarded"}),
        # SP-08: no owner
        enriched("action", T0 + 5, identity_id="agent-8", identity={"owner": None}),
        # AZ-01 (no registry): no policy decision
        enriched("action", T0 + 6, identity_id="agent-7", policy_decision=None),
    ]


def detectors_found(events: list[Event]) -> set[str]:
    engine = DetectionEngine()
    states: dict[tuple[str, str], State] = {}
    batches: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        for key in engine.subject_kinds_for(event):
            batches.setdefault(key, []).append(event)
    found: set[str] = set()
    for (kind, subject), batch in batches.items():
        state = states.setdefault((kind, subject), {})
        found |= {f.detector for f in engine.process(kind, subject, state, batch, T0 + 10)}
    return found


def test_engine_runs_them_on_unmarked_events() -> None:
    assert detectors_found(violating()) >= NEEDS_REGISTRY | {"AZ-01"}


def test_engine_skips_them_on_marked_events_and_runs_the_others() -> None:
    marked = [{**e, REGISTRY_GAP: True} for e in violating()]
    found = detectors_found(marked)
    assert not found & NEEDS_REGISTRY, found
    assert "AZ-01" in found


def test_a_marked_event_beside_an_unmarked_one_in_one_call() -> None:
    engine = DetectionEngine()
    gap = enriched("action", T0, identity_id="ghost", identity={"known": False})
    later = enriched("action", T0 + 1, identity_id="ghost", identity={"known": False})
    findings = engine.process("identity", "ghost", {}, [{**gap, REGISTRY_GAP: True}, later], T0)
    at01 = [f for f in findings if f.detector == "AT-01"]
    assert [f.event_ids for f in at01] == [[later["event_id"]]]


def test_the_flag_must_be_a_bool() -> None:
    spec = next(d.spec for d in all_detectors() if d.spec.id == "AT-01")
    bad = dataclasses.replace(spec, needs_registry="yes")  # type: ignore[arg-type]
    assert ("needs_registry", "needs_registry is not true or false") in spec_problems(bad)
    assert spec_problems(spec) == []


STATEFUL_RULE = """
from pipeline.detectors.base import Detector, DetectorSpec

SPEC = DetectorSpec(
    id="ACME-02",
    title="t",
    description="d",
    severity="low",
    subject="identity",
    event_types=frozenset({"action"}),
    remediation="r",
    needs_registry=True,
)
DETECTOR = Detector(SPEC, lambda ctx, state, events: [])
"""


def test_a_stateful_rule_cannot_need_the_registry(tmp_path: Path) -> None:
    (tmp_path / "acme_02.py").write_text(STATEFUL_RULE)
    with pytest.raises(registry.RegistryError, match="needs_registry is for per-event"):
        registry.rules_dir_entries(tmp_path)


def test_the_default_is_false() -> None:
    fields = {f.name: f for f in dataclasses.fields(DetectorSpec)}
    assert fields["needs_registry"].default is False


def test_effects_and_provides_are_checked() -> None:
    """Readers of effects and provided quantities would ignore a typo or fail late."""
    spec = all_detectors()[0].spec
    bad_effect = dataclasses.replace(spec, effects=frozenset({"marks_task_unsafe", "mark_unsafe"}))
    assert [f for f, _ in spec_problems(bad_effect)] == ["effects"]
    assert "'mark_unsafe'" in spec_problems(bad_effect)[0][1]
    as_text = dataclasses.replace(spec, effects="marks_task_unsafe")
    assert [f for f, _ in spec_problems(as_text)] == ["effects"]
    fails = dataclasses.replace(spec, provides={"grace_ms": lambda t: t["no_such"] * 1000})
    assert spec_problems(fails) == [
        ("provides", "provides['grace_ms'] fails on the thresholds: KeyError")
    ]
    not_callable = dataclasses.replace(spec, provides={"grace_ms": 5})
    assert [f for f, _ in spec_problems(not_callable)] == ["provides"]
    assert spec_problems(dataclasses.replace(spec, provides={"ok_ms": lambda t: 1})) == []


def test_one_quantity_has_one_provider(tmp_path: Path) -> None:
    """Two detectors providing one name: ``kinds.provided`` would pick one silently."""
    from pipeline.detectors.registry import RegistryError, builtin_entries, combine

    entries = builtin_entries()
    provider = next(e for e in entries if "revocation_grace_ms" in e.detector.spec.provides)
    other = next(e for e in entries if not e.detector.spec.provides)
    twin = dataclasses.replace(
        other,
        detector=dataclasses.replace(
            other.detector,
            spec=dataclasses.replace(other.detector.spec, provides=provider.detector.spec.provides),
        ),
    )
    with pytest.raises(RegistryError, match="'revocation_grace_ms' is already provided by"):
        combine([e for e in entries if e is not other] + [twin])
