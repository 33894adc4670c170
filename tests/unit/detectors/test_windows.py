"""Window helpers: bounded, replay-safe, event time only."""

from __future__ import annotations

import json

from pipeline.detectors import windows as w


def test_count_in_window_is_idempotent_and_slides() -> None:
    s: dict[str, object] = {}
    assert w.count_in_window(s, "c", 0, "a", 10) == 1
    assert w.count_in_window(s, "c", 5, "b", 10) == 2
    assert w.count_in_window(s, "c", 5, "b", 10) == 2  # replayed event
    assert w.count_in_window(s, "c", 10, "c", 10) == 2  # "a" at 0 left exactly at 10
    json.dumps(s)


def test_count_cap_and_late_events() -> None:
    s: dict[str, object] = {}
    for i in range(10):
        w.count_in_window(s, "c", i, str(i), 100, cap=3)
    assert w.count_in_window(s, "c", 10, "x", 100, cap=3) == 3
    assert w.count_in_window(s, "c", -200, "old", 100, cap=3) == 3  # too late: not counted


def test_ratio_in_window() -> None:
    s: dict[str, object] = {}
    w.ratio_in_window(s, "r", 0, "a", True, 10)
    w.ratio_in_window(s, "r", 1, "b", False, 10)
    assert w.ratio_in_window(s, "r", 2, "c", True, 10) == (2, 3)
    assert w.ratio_in_window(s, "r", 10, "d", True, 10) == (2, 3)  # "a" left


def test_distinct_in_window_keeps_last_seen() -> None:
    s: dict[str, object] = {}
    w.distinct_in_window(s, "d", 0, "x", 10)
    w.distinct_in_window(s, "d", 5, "y", 10)
    assert w.distinct_in_window(s, "d", 9, "x", 10) == {"y": 5, "x": 9}
    assert w.distinct_in_window(s, "d", 15, "z", 10) == {"x": 9, "z": 15}


def test_expectations_fire_in_deadline_order_and_rearm() -> None:
    s: dict[str, object] = {}
    w.expect(s, "e", "b", 20, {"n": 2})
    w.expect(s, "e", "a", 10, {"n": 1})
    w.expect(s, "e", "a", 99)  # replay keeps the first deadline
    w.expect(s, "e", "c", 30)
    assert s["_deadline"] == 10
    assert w.satisfy(s, "e", "c", 30) is True  # at the deadline is in time
    assert w.satisfy(s, "e", "zz", 0) is False
    del s["_deadline"]  # the engine clears it before on_watermark
    assert w.expired(s, "e", 20) == [("a", {"n": 1}), ("b", {"n": 2})]
    assert "_deadline" not in s
    w.expect(s, "e", "d", 40)
    assert w.satisfy(s, "e", "d", 41) is False  # too late
    assert w.expired(s, "e", 39) == []
    assert s.get("_deadline") == 40
