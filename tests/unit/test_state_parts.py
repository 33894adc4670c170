"""The typed parts of a subject's state (``detectors/state.py``): the positional records
read and written in the persisted JSON layout, and misuse caught by mypy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.detectors import alerts
from pipeline.detectors.state import ALERTS, META, AlertEntry, RelayedFinding, SubjectMeta
from pipeline.flow import expiry


def test_alert_entry_reads_both_layouts_and_writes_them_back() -> None:
    assert AlertEntry.from_json([2, 10, 20]) == AlertEntry(2, 10, 20, None)
    assert AlertEntry.from_json([2, 10, 20]).to_json() == [2, 10, 20]
    assert AlertEntry.from_json([2, 10, 20, 99]).to_json() == [2, 10, 20, 99]


def test_record_alert_keeps_the_json_layout() -> None:
    state: dict[str, object] = {}
    assert alerts.record_alert(state, "a", 10, until=100) == ("create", 1)
    assert state == {ALERTS: {"a": [1, 10, 10, 100]}}
    # an entry of the layout before period ends were kept: counted on, period added
    state[ALERTS] = {"b": [3, 5, 7]}
    assert alerts.record_alert(state, "b", 4) == ("update", 4)
    assert state[ALERTS] == {"b": [4, 4, 7]}
    assert alerts.record_alert(state, "b", 9, until=50) == ("update", 5)
    assert state[ALERTS] == {"b": [5, 4, 9, 50]}
    assert (alerts.first_seen(state, "b"), alerts.last_seen(state, "b")) == (4, 9)


def test_subject_meta_round_trip() -> None:
    assert SubjectMeta.from_json(None) == SubjectMeta()
    assert SubjectMeta.from_json([5, None, 9, None]).to_json() == [5, None, 9, None]
    state: dict[str, object] = {META: [5, None, None, None]}
    expiry.touch(state, "credential", [{"event_time": 7, "event_type": "credential.revoked"}], [3])
    assert state[META] == [7, 7, None, 3]


def test_relayed_finding_round_trip() -> None:
    assert RelayedFinding.from_json(["RS-02", 5]) == RelayedFinding("RS-02", 5)
    assert RelayedFinding("RS-02", 5).to_json() == ["RS-02", 5]


MISUSE = """
from typing import Any
from pipeline.detectors.state import parts, task_outcomes, read_approval_outcomes

def f(state: dict[str, Any]) -> None:
    parts(state)["_hedl"] = []
    task_outcomes(state)["dnoe"] = {}
    dec = read_approval_outcomes(state).get("dec")
    if dec:
        dec["judged"] = "yes"
"""


def test_mypy_catches_a_misspelt_part_or_field(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    source = tmp_path / "misuse.py"
    source.write_text(textwrap.dedent(MISUSE))
    root = Path(__file__).resolve().parents[2]
    stdout, _, status = api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            str(root / "pyproject.toml"),
            str(source),
        ]
    )
    assert status == 1, stdout
    assert '"_hedl"' in stdout
    assert '"dnoe"' in stdout
    assert "judged" in stdout
