"""governance.evidence.v1 may only evolve BACKWARD compatibly, one history file per version.

The same checks as the metrics topic (``tests/unit/test_metric_schema_compat.py``, whose
checker this reuses): each ``schemas/history/evidence/vN.avsc`` reads data of ``vN-1``
(fastavro resolution on sample data) and passes the structural check (new fields with
defaults, removed fields had defaults, no type narrowed, enum symbols only added), and
``schemas/evidence.avsc`` is the newest entry. v1 is a real earlier version (no
``pending``, no ``mode``), so the check compares something; the broken schemas at the
end prove it would fail.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from pathlib import Path
from typing import Any

import fastavro
import pytest

from pipeline.codec import schemas_dir
from tests.unit.test_metric_schema_compat import record_problems, resolution_problems

HISTORY = schemas_dir() / "history" / "evidence"
CURRENT = schemas_dir() / "evidence.avsc"
HOW_TO = (
    "Every change to schemas/evidence.avsc needs a new history file: copy it to "
    "schemas/history/evidence/v{next}.avsc (never edit an existing one). Add fields WITH "
    "defaults (in nested records too), only widen types, only add enum symbols. A breaking "
    "change needs a new topic (governance.evidence.v2)."
)


def history(directory: Path = HISTORY) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob("*.avsc"):
        match = re.fullmatch(r"v(\d+)\.avsc", path.name)
        assert match, f"{path} is not named vN.avsc. {HOW_TO.format(next='N')}"
        found.append((int(match.group(1)), path))
    return sorted(found)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def incompatibilities(directory: Path = HISTORY) -> list[str]:
    """Every problem between consecutive versions of a history directory."""
    problems = []
    for (_, old), (_, new) in itertools.pairwise(history(directory)):
        found = resolution_problems(load(old), load(new)) + record_problems(load(old), load(new))
        problems += [f"{new.name} vs {old.name}: {p}" for p in found]
    return problems


def test_history_has_a_real_earlier_version_without_gaps() -> None:
    numbers = [n for n, _ in history()]
    assert numbers == list(range(1, len(numbers) + 1)), f"gaps in {numbers}. {HOW_TO}"
    assert len(numbers) >= 2
    assert load(HISTORY / "v1.avsc") != load(HISTORY / "v2.avsc")


def test_current_schema_is_the_newest_history_entry() -> None:
    (number, newest), *_ = reversed(history())
    assert load(CURRENT) == load(newest), HOW_TO.format(next=number + 1)


def test_every_entry_parses_and_is_the_dossier_record() -> None:
    for _, path in history():
        schema = load(path)
        fastavro.parse_schema(copy.deepcopy(schema))
        assert (schema["namespace"], schema["name"]) == ("io.govpipe.v1", "EvidenceDossier")


def test_each_version_reads_data_of_the_previous() -> None:
    problems = incompatibilities()
    assert not problems, "; ".join(problems) + ". " + HOW_TO.format(next="N")


# ---- the check fails on what it must --------------------------------------------------


def _current() -> dict[str, Any]:
    return copy.deepcopy(load(CURRENT))


def _field(fields: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(f for f in fields if f["name"] == name)


def _broken() -> dict[str, dict[str, Any]]:
    out = {}
    s = _current()
    s["fields"].append({"name": "reviewer_note", "type": "string"})
    out["top-level field added without default"] = s
    s = _current()
    _field(s["fields"], "verdicts")["type"]["fields"].append({"name": "audited", "type": "boolean"})
    out["nested field added without default"] = s
    s = _current()
    s["fields"] = [f for f in s["fields"] if f["name"] != "task_id"]
    out["required field removed"] = s
    s = _current()
    _field(s["fields"], "actions")["type"]["fields"][0]["type"] = "int"
    out["long narrowed to int"] = s
    s = _current()
    _field(s["fields"], "principal")["type"] = "string"
    out["nullable made required"] = s
    s = _current()
    creds = _field(s["fields"], "credentials")["type"]["items"]["fields"]
    _field(creds, "lifetime_seconds")["type"] = ["null", "long"]
    out["double narrowed to long inside an array"] = s
    return out


@pytest.mark.parametrize("change", list(_broken()))
def test_a_broken_schema_is_refused(change: str) -> None:
    assert record_problems(_current(), _broken()[change]), change


def test_a_broken_v3_in_the_history_fails_the_history_check(tmp_path: Path) -> None:
    for _, path in history():
        (tmp_path / path.name).write_text(path.read_text("utf-8"), "utf-8")
    assert incompatibilities(tmp_path) == []
    broken = _broken()["nested field added without default"]
    (tmp_path / f"v{len(history()) + 1}.avsc").write_text(json.dumps(broken), "utf-8")
    problems = incompatibilities(tmp_path)
    assert any("audited" in p for p in problems), problems


def test_a_compatible_v3_passes(tmp_path: Path) -> None:
    for _, path in history():
        (tmp_path / path.name).write_text(path.read_text("utf-8"), "utf-8")
    s = _current()
    s["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    _field(s["fields"], "verdicts")["type"]["fields"].append(
        {"name": "audited", "type": ["null", "boolean"], "default": None}
    )
    (tmp_path / f"v{len(history()) + 1}.avsc").write_text(json.dumps(s), "utf-8")
    assert incompatibilities(tmp_path) == []
