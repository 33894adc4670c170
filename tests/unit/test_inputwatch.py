"""The input-partition watchdog (flow/inputwatch.py)."""

from __future__ import annotations

from pipeline.flow.inputwatch import InputWatch


def test_lag_that_nothing_reads_is_a_stall_once_per_episode() -> None:
    w = InputWatch(stall_s=60)
    assert w.check(0, {0: 10, 1: 5}, {0: 0, 1: 7}, set()) == []
    assert w.check(59, {0: 10, 1: 5}, {0: 0, 1: 7}, set()) == []
    assert w.check(60, {0: 10, 1: 5}, {0: 0, 1: 7}, set()) == [1]
    assert w.check(200, {0: 10, 1: 5}, {0: 0, 1: 7}, set()) == []  # said once
    assert w.stalls == {1: 1}
    # it reads again: a new episode can start
    assert w.check(201, {0: 10, 1: 6}, {0: 0, 1: 6}, set()) == []
    assert w.check(261, {0: 10, 1: 6}, {0: 0, 1: 6}, set()) == [1]
    assert w.stalls == {1: 2}


def test_caught_up_or_held_by_alignment_is_not_a_stall() -> None:
    w = InputWatch(stall_s=60)
    w.check(0, {0: 10, 1: 5}, {0: 0, 1: 7}, {1})
    assert w.check(1000, {0: 10, 1: 5}, {0: 0, 1: 7}, {1}) == []  # held on purpose
    # released by alignment: the clock runs from the last check that saw it held
    assert w.check(1001, {0: 10, 1: 5}, {0: 0, 1: 7}, set()) == []
    assert w.check(1059, {0: 10, 1: 5}, {0: 0, 1: 7}, set()) == []
    assert w.check(1060, {0: 10, 1: 5}, {0: 0, 1: 7}, set()) == [1]
    assert w.stalls == {1: 1}


def test_a_revoked_partition_is_forgotten() -> None:
    w = InputWatch(stall_s=60)
    w.check(0, {0: 1}, {0: 3}, set())
    w.check(30, {}, {}, set())
    assert w.check(61, {0: 1}, {0: 3}, set()) == []  # assigned again: a fresh clock
    assert w.check(121, {0: 1}, {0: 3}, set()) == [0]
