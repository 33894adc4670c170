"""A Table written by an older revision still restores (issue 13: typed state parts).

``data/legacy_state.json.gz`` holds a stage-2 Table in the layout of the revision
before the typed per-owner state parts (every part: detector states, ``_held``,
``_alerts``, ``_m``, ``_ev``, ``_rv``, ``_seen``, ``_x``, metric windows, the dedup
record), written by ``tests/support/legacy_state.py``, and what that revision sent
after a restart on it. The current code, restarted on the same Table with the same
traffic, must send the same alerts (ids, activity, counts, evidence) and dossiers.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tests.support.legacy_state import feed, outputs, restarted

FIXTURE = Path(__file__).parent / "data" / "legacy_state.json.gz"


def _fixture() -> dict[str, Any]:
    return orjson.loads(gzip.decompress(FIXTURE.read_bytes()))  # type: ignore[no-any-return]


def test_fixture_holds_every_part_of_the_old_layout() -> None:
    table = _fixture()["table"]
    parts = Counter(
        p for k, v in table.items() if not k.startswith("__") for p in v if p.startswith("_")
    )
    for part in ("_held", "_alerts", "_m", "_ev", "_rv", "_seen", "_x", "_src"):
        assert parts[part], part
    assert any(k.startswith("__dedup__:") for k in table)
    assert any("mw" in v for k, v in table.items() if k.startswith("metrics:"))


def test_restart_on_an_old_table_sends_what_the_old_code_sent() -> None:
    fixture = _fixture()
    harness = restarted(fixture["table"], fixture["next_offset"], fixture["identities"])
    feed(harness, fixture["events"])
    got, expected = outputs(harness), fixture["expected"]
    assert [a["alert_id"] for a in got["alerts"]] == [a["alert_id"] for a in expected["alerts"]]
    assert got["alerts"] == expected["alerts"]

    # Every dossier record, each once and the same to the byte but for ``emitted_at``;
    # not in the same order across tasks. A task (its timers and its dossier) now runs on
    # the task clock, which waits for the progress every partition relays
    # (stage2._task_clock): dossiers judged at a timer may go out a record later, and
    # their ``emitted_at``, that clock, is never after the old code's (the watermark).
    def by_revision(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
        keyed = {(r["task_id"], r["revision"]): r for r in records}
        assert len(keyed) == len(records)  # no record twice
        return keyed

    got_d, expected_d = by_revision(got["evidence"]), by_revision(expected["evidence"])
    assert set(got_d) == set(expected_d)
    for key, record in got_d.items():
        old = expected_d[key]
        assert {**record, "emitted_at": None} == {**old, "emitted_at": None}, key
        assert record["emitted_at"] <= old["emitted_at"], key
    # the restored alert bookkeeping: each repeated occurrence is an Update (count 2)
    updates = [a for a in got["alerts"] if a["activity_id"] == 2 and a["count"] == 2]
    assert len(updates) >= 10
