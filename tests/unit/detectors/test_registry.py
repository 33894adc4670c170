"""The registry: every detector discovered, ids unique, each with its own test file."""

from __future__ import annotations

import json
import pkgutil
import re
from pathlib import Path

import pytest

import pipeline.detectors as package
from pipeline.detectors import registry
from pipeline.detectors.base import SUBJECT_FIELDS, Detector
from pipeline.records import EVENT_TYPES

from .factory import T0, enriched

TESTS = Path(__file__).parent


def test_ids_are_unique_and_sorted() -> None:
    ids = [d.spec.id for d in registry.all_detectors()]
    assert len(ids) == len(set(ids)), "two detectors share an id"
    assert ids == sorted(ids)
    assert len(set(registry.detector_modules().values())) == len(ids)


def test_every_detector_has_a_test_file() -> None:
    missing = [
        f"{det_id} ({module}.py): tests/unit/detectors/test_{det_id.lower().replace('-', '')}.py"
        for det_id, module in registry.detector_modules().items()
        if not (TESTS / f"test_{det_id.lower().replace('-', '')}.py").is_file()
    ]
    assert not missing, "detectors without tests:\n" + "\n".join(missing)


def test_every_public_module_is_machinery_or_a_detector() -> None:
    """A module that forgot ``DETECTOR = ...`` would otherwise be dropped silently."""
    detector_modules = set(registry.detector_modules().values())
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in registry.MACHINERY:
            continue
        assert info.name in detector_modules, f"{info.name}.py exports no DETECTOR"


@pytest.mark.parametrize("det", registry.all_detectors(), ids=lambda d: d.spec.id)
def test_spec_is_complete(det: Detector) -> None:
    spec = det.spec
    assert re.fullmatch(r"(SP|RS|AZ|AT|SL)-\d\d", spec.id)
    module = registry.detector_modules()[spec.id]
    assert module.startswith(spec.id.lower().replace("-", "") + "_")
    assert spec.title and spec.description and spec.remediation
    assert spec.subject in SUBJECT_FIELDS
    assert spec.event_types and spec.event_types <= EVENT_TYPES
    assert spec.frameworks
    json.dumps(dict(spec.thresholds))  # thresholds must be policy-file material
    if "window_s" in spec.thresholds:
        assert spec.window_ms == spec.thresholds["window_s"] * 1000


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    """Two rule files with one id: the error names both files (and the id's line)."""
    text = (Path(registry.__file__).parent / "az02_denied_but_executed.py").read_text()
    text = text.replace('id="AZ-02"', 'id="DUP-01"')
    (tmp_path / "a.py").write_text(text)
    (tmp_path / "b.py").write_text(text)
    line = text.splitlines().index('    id="DUP-01",') + 1
    with pytest.raises(registry.RegistryError) as caught:
        registry.combine(registry.rules_dir_entries(tmp_path))
    assert str(caught.value) == (
        f"detector id DUP-01 in both {tmp_path}/a.py:{line} and {tmp_path}/b.py:{line}"
    )


def test_detectors_for_event_type() -> None:
    ids = {d.spec.id for d in registry.detectors_for("task.completed")}
    assert "SP-02" in ids and "SP-01" not in ids


def test_subject_kinds_for_an_action() -> None:
    kinds = registry.subject_kinds_for(enriched("action", T0))
    assert ("credential", "cred-1") in kinds and ("identity", "agent-1") in kinds
    assert len(kinds) == len(set(kinds))


def test_revocation_without_task_id_routes_to_its_credentials_task() -> None:
    event = enriched("credential.revoked", T0, task_id=None, credential={"task_id": "task-9"})
    assert ("task", "task-9") in registry.subject_kinds_for(event)


def test_subject_kinds_follow_enabled_set() -> None:
    event = enriched("task.completed", T0)
    assert ("task", "task-1") in registry.subject_kinds_for(event)
    assert registry.subject_kinds_for(event, enabled=set()) == []
