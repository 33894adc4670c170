"""governance.metrics.v1 may only evolve BACKWARD compatibly, one history file per version.

Warehouses and sinks read the topic with the newest schema, including data written
years ago; a Schema Registry with BACKWARD compatibility would refuse a breaking
change at deploy time. This test refuses it at review time instead:

* every ``schemas/history/metric/vN.avsc`` reads data of ``vN-1`` (fastavro schema
  resolution on sample data), and passes a structural check (new fields have
  defaults, removed fields had defaults, no type narrowed, enum symbols only added
  and only to an enum with a default);
* ``schemas/metric.avsc`` equals the newest history entry.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import fastavro
import pytest

from pipeline.codec import schemas_dir

HISTORY = schemas_dir() / "history" / "metric"
CURRENT = schemas_dir() / "metric.avsc"
HOW_TO = (
    "Every change to schemas/metric.avsc needs a new history file: copy it to "
    "schemas/history/metric/v{next}.avsc (never edit an existing one). Keep changes "
    "backward compatible: add fields WITH defaults, only widen types (int->long->double, "
    "T->[null,T]), only add enum symbols (the enum keeps its default). A breaking change "
    "needs a new topic (governance.metrics.v2), not a new version of this one."
)


def history() -> list[tuple[int, Path]]:
    found = []
    for path in HISTORY.glob("*.avsc"):
        match = re.fullmatch(r"v(\d+)\.avsc", path.name)
        assert match, f"{path} is not named vN.avsc. {HOW_TO.format(next='N')}"
        found.append((int(match.group(1)), path))
    return sorted(found)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def pairs() -> list[tuple[Path, Path]]:
    versions = [p for _, p in history()]
    return list(itertools.pairwise(versions))


# ---- the structural check ---------------------------------------------------------------

PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def _kind(t: Any) -> str:
    if isinstance(t, list):
        return "union"
    if isinstance(t, dict):
        return str(t["type"]) if t.get("logicalType") is None else f"{t['type']}:{t['logicalType']}"
    return str(t)


def _readable(old: Any, new: Any, path: str) -> list[str]:
    """Problems reading data written as ``old`` with reader type ``new``."""
    if isinstance(old, list):
        problems = []
        for branch in old:
            if not any(not _readable(branch, nb, path) for nb in _branches(new)):
                problems.append(f"{path}: type narrowed, {_kind(branch)} no longer accepted")
        return problems
    if isinstance(new, list):
        if any(not _readable(old, nb, path) for nb in new):
            return []
        return [f"{path}: type changed, {_kind(old)} not in the new union"]
    ko, kn = _kind(old), _kind(new)
    if isinstance(old, dict) and isinstance(new, dict) and old["type"] == new["type"]:
        if old["type"] == "record":
            return record_problems(old, new, path)
        if old["type"] == "map":
            return _readable(old["values"], new["values"], f"{path}<values>")
        if old["type"] == "array":
            return _readable(old["items"], new["items"], f"{path}<items>")
        if old["type"] == "enum":
            return enum_problems(old, new, path)
    if ko == kn:
        return []
    if kn in PROMOTIONS.get(ko, set()):
        return []
    return [f"{path}: type changed from {ko} to {kn} (narrowed or incompatible)"]


def _branches(t: Any) -> list[Any]:
    return t if isinstance(t, list) else [t]


def enum_problems(old: dict[str, Any], new: dict[str, Any], path: str) -> list[str]:
    removed = [s for s in old["symbols"] if s not in new["symbols"]]
    added = [s for s in new["symbols"] if s not in old["symbols"]]
    problems = []
    if removed:
        problems.append(f"{path}: enum symbols removed {removed}")
    if added and ("default" not in old or "default" not in new):
        problems.append(f"{path}: enum symbols added {added} to an enum without a default")
    return problems


def record_problems(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[str]:
    old_fields = {f["name"]: f for f in old["fields"]}
    new_fields = {f["name"]: f for f in new["fields"]}
    problems = []
    for name, field in new_fields.items():
        if name not in old_fields and "default" not in field:
            problems.append(f"{path}{name}: field added without a default")
    for name, field in old_fields.items():
        if name not in new_fields and "default" not in field:
            problems.append(f"{path}{name}: field removed but it had no default")
    for name in old_fields.keys() & new_fields.keys():
        problems += _readable(old_fields[name]["type"], new_fields[name]["type"], f"{path}{name}")
    return problems


# ---- resolution on sample data ---------------------------------------------------------


def _strip(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip(s) for s in schema]
    return schema


def sample(t: Any, populated: bool, pick: int) -> Any:
    """A datum of type ``t``: every optional value set (``populated``) or left null."""
    if isinstance(t, list):
        non_null = [b for b in t if b != "null"]
        if (not populated and "null" in t) or not non_null:
            return None
        return sample(non_null[pick % len(non_null)], populated, pick)
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":
            return {f["name"]: sample(f["type"], populated, pick) for f in t["fields"]}
        if kind == "enum":
            return t["symbols"][pick % len(t["symbols"])]
        if kind == "map":
            return {"k": sample(t["values"], populated, pick)} if populated else {}
        if kind == "array":
            return [sample(t["items"], populated, pick)] if populated else []
        return sample(kind, populated, pick)
    return {
        "long": 7,
        "int": 7,
        "double": 0.5,
        "float": 0.5,
        "string": "x",
        "bytes": b"x",
        "boolean": True,
        "null": None,
    }[t]


def resolution_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    writer = fastavro.parse_schema(_strip(copy.deepcopy(old)))
    reader = fastavro.parse_schema(_strip(copy.deepcopy(new)))
    problems = []
    for populated, pick in itertools.product((True, False), range(8)):
        datum = sample(_strip(old), populated, pick)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, datum)
        buf.seek(0)
        try:
            got = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # SchemaResolutionError and friends
            problems.append(f"new schema cannot read old data: {type(exc).__name__}: {exc}")
            break
        for field in new["fields"]:
            if field["name"] not in datum and got.get(field["name"]) != field.get("default"):
                problems.append(f"{field['name']}: default not applied to old data")
    return problems


# ---- the tests -------------------------------------------------------------------------


def test_history_starts_at_v1_without_gaps() -> None:
    numbers = [n for n, _ in history()]
    assert numbers, f"no schema history in {HISTORY}. {HOW_TO.format(next=1)}"
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"schema history {numbers} has gaps. {HOW_TO.format(next=len(numbers) + 1)}"
    )


def test_current_schema_is_the_newest_history_entry() -> None:
    (number, newest), *_ = reversed(history())
    assert load(CURRENT) == load(newest), (
        f"schemas/metric.avsc differs from {newest.relative_to(schemas_dir().parent)}. "
        + HOW_TO.format(next=number + 1)
    )


def test_every_history_entry_parses_and_is_the_metric_record() -> None:
    for _, path in history():
        schema = load(path)
        fastavro.parse_schema(copy.deepcopy(schema))
        assert (schema["namespace"], schema["name"]) == ("io.govpipe.v1", "GovernanceMetric"), path


def test_each_version_reads_data_of_the_previous() -> None:
    for old, new in pairs():
        problems = resolution_problems(load(old), load(new)) + record_problems(load(old), load(new))
        assert not problems, (
            f"{new.name} is not BACKWARD compatible with {old.name}: "
            + "; ".join(problems)
            + ". "
            + HOW_TO.format(next=new.stem[1:])
        )


def test_the_current_schema_keeps_the_enum_default_and_defaults_for_counts() -> None:
    schema = load(CURRENT)
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["dimension"]["type"]["default"] in fields["dimension"]["type"]["symbols"]
    for name, field in fields.items():
        if isinstance(field["type"], list):
            assert field["type"][0] == "null" and field["default"] is None, name
        elif field["type"] == "long" and name != "window_size_ms":
            assert field["default"] == 0, name


# ---- the checker catches what it must (so a green run means something) -----------------


def _current() -> dict[str, Any]:
    return copy.deepcopy(load(CURRENT))


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def _evolutions() -> dict[str, dict[str, Any]]:
    out = {}
    s = _current()
    s["fields"].append({"name": "tasks_cancelled", "type": "long"})
    out["added without default"] = s
    s = _current()
    s["fields"] = [f for f in s["fields"] if f["name"] != "dimension_value"]
    out["removed without default"] = s
    s = _current()
    _field(s, "actions_total")["type"] = "int"
    out["narrowed long to int"] = s
    s = _current()
    _field(s, "safe_completion_rate")["type"] = "double"
    out["nullable made required"] = s
    s = _current()
    _field(s, "dimension")["type"]["symbols"].remove("team")
    out["enum symbol removed"] = s
    return out


#: What fastavro's resolution alone refuses. The rest only the structural check sees: a
#: removed field or a dropped null branch reads the sample fine yet breaks old readers or
#: null data, and a removed enum symbol silently turns into the default ("unknown").
RESOLUTION_CATCHES = {"added without default", "narrowed long to int"}


@pytest.mark.parametrize("change", list(_evolutions()))
def test_checker_rejects_breaking_change(change: str) -> None:
    old, new = _current(), _evolutions()[change]
    assert record_problems(old, new), f"structural check misses: {change}"
    if change in RESOLUTION_CATCHES:
        assert resolution_problems(old, new), f"resolution check misses: {change}"


def test_checker_rejects_enum_symbols_added_without_a_default() -> None:
    old = _current()
    del _field(old, "dimension")["type"]["default"]
    new = copy.deepcopy(old)
    _field(new, "dimension")["type"]["symbols"].append("environment")
    assert any("enum symbols added" in p for p in record_problems(old, new))


def test_checker_accepts_compatible_changes() -> None:
    old, new = _current(), _current()
    new["fields"].append({"name": "tasks_cancelled", "type": "long", "default": 0})
    new["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    _field(new, "dimension")["type"]["symbols"].append("environment")
    _field(new, "window_size_ms")["type"] = "double"  # widened
    assert record_problems(old, new) == []
    assert resolution_problems(old, new) == []
