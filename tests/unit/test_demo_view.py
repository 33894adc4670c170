"""The demo's per-team table: rates from summed counts, shared denominators counted once."""

from __future__ import annotations

from pipeline.demo import DemoView


def record(start: int, dim: str, value: str, revision: int = 0, **counts: int) -> dict:
    return {
        "window_start": start,
        "window_size_ms": 60_000,
        "dimension": dim,
        "dimension_value": value,
        "revision": revision,
        **counts,
    }


def test_rates_sum_windows_and_keep_the_newest_revision() -> None:
    view = DemoView()
    view.add_metric(
        record(
            0,
            "global",
            "all",
            tasks_completed=10,
            tasks_succeeded=9,
            tasks_safe=5,
            actions_total=100,
            actions_authorized=90,
            actions_attributable=100,
        )
    )
    view.add_metric(
        record(
            60_000,
            "global",
            "all",
            tasks_completed=10,
            tasks_succeeded=10,
            tasks_safe=10,
            actions_total=100,
            actions_authorized=100,
            actions_attributable=100,
        )
    )
    # a later revision of the first window replaces it
    view.add_metric(
        record(
            0,
            "global",
            "all",
            revision=1,
            tasks_completed=10,
            tasks_succeeded=9,
            tasks_safe=4,
            actions_total=100,
            actions_authorized=90,
            actions_attributable=100,
        )
    )
    view.add_metric(record(0, "team", "sales-ops", actions_total=4, actions_authorized=1))
    table = view.governance_table()
    all_row = next(line for line in table if line.startswith("ALL"))
    cells = all_row.split()[1:]
    assert cells[:4] == ["95.0%", "70.0%", "95.0%", "100.0%"]  # success, safe, auth, attrib
    assert cells[4:] == ["-", "-", "-"]  # nothing to divide: not 0%
    team_row = next(line for line in table if line.startswith("sales-ops"))
    assert team_row.split()[3] == "25.0%"


def test_no_windows_yet_says_so() -> None:
    assert "no metric window closed yet" in DemoView().governance_table()[0]
