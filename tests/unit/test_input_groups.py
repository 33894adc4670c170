"""Stage 1 takes a fetched batch in bounded groups (app.input_groups)."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.app import input_groups


def _records(*sizes: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(value=b"x" * n if n else None, n=i) for i, n in enumerate(sizes)]


def test_groups_keep_order_and_stay_under_the_bound() -> None:
    batch = _records(*[300] * 50)
    groups = input_groups(batch, max_bytes=1000)
    assert [r.n for g in groups for r in g] == list(range(50))
    assert all(sum(len(r.value) for r in g) <= 1000 for g in groups)
    assert [len(g) for g in groups][:-1] == [3] * (len(groups) - 1)


def test_a_record_larger_than_the_bound_goes_alone() -> None:
    groups = input_groups(_records(10, 5000, 10, 10), max_bytes=1000)
    assert [[r.n for r in g] for g in groups] == [[0], [1], [2, 3]]


def test_tombstones_and_an_empty_batch() -> None:
    assert input_groups([]) == []
    assert [[r.n for r in g] for g in input_groups(_records(0, 0, 0), max_bytes=1)] == [[0, 1, 2]]
