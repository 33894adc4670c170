"""Window helpers over JSON-able detector state (plain dicts and lists, ms event times).

Detector state is persisted as JSON by stage 2 (a faust Table), so these helpers keep
only dicts of str -> int/list and never objects. Every helper is bounded: a cap on
entries keeps one noisy subject from growing its state without limit (the oldest
entries go first). All times are event times; nothing here reads a clock.

Windows are half-open on the left: an entry at ``t0`` is in the window at ``now`` while
``now - t0 < window_ms``; exactly ``window_ms`` later it has left.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors.state import DEADLINE as DEADLINE  # re-exported for rules

State = dict[str, Any]

DEFAULT_CAP = 1000


def _evict(entries: dict[str, Any], horizon: int, time_of: Any = lambda v: v) -> None:
    """Drop entries whose time is at or before ``horizon`` (insertion order ~ time order)."""
    for key in [k for k, v in entries.items() if time_of(v) <= horizon]:
        del entries[key]


def _cap(entries: dict[str, Any], cap: int) -> None:
    while len(entries) > cap:
        del entries[next(iter(entries))]


def _now(state: State, key: str, t: int) -> int:
    """The newest event time seen for ``key``: a late event never moves the window back."""
    marker = f"{key}@"
    now = max(t, int(state.get(marker, t)))
    state[marker] = now
    return now


def count_in_window(
    state: State, key: str, t: int, item_id: str, window_ms: int, cap: int = DEFAULT_CAP
) -> int:
    """Sliding count of distinct items (event ids) in the last ``window_ms``.

    Keyed by id so a replayed event (at-least-once delivery) is not counted twice.
    At most ``cap`` items are kept; past that the count saturates at ``cap``.
    """
    entries: dict[str, int] = state.setdefault(key, {})
    now = _now(state, key, t)
    if t > now - window_ms:
        entries.setdefault(item_id, t)
    _evict(entries, now - window_ms)
    _cap(entries, cap)
    return len(entries)


def ratio_in_window(
    state: State,
    key: str,
    t: int,
    item_id: str,
    hit: bool,
    window_ms: int,
    cap: int = DEFAULT_CAP,
) -> tuple[int, int]:
    """(hits, total) over the last ``window_ms``, e.g. approvals among decisions (RS-03).

    Idempotent on ``item_id`` like ``count_in_window``; at most ``cap`` items.
    """
    entries: dict[str, list[int]] = state.setdefault(key, {})
    now = _now(state, key, t)
    if t > now - window_ms:
        entries.setdefault(item_id, [t, int(hit)])
    _evict(entries, now - window_ms, lambda v: v[0])
    _cap(entries, cap)
    return sum(v[1] for v in entries.values()), len(entries)


def distinct_in_window(
    state: State, key: str, t: int, value: str, window_ms: int, cap: int = 64
) -> dict[str, int]:
    """Distinct values seen in the last ``window_ms`` -> last time seen (SP-07 reuse).

    Returns the live mapping (do not mutate). At most ``cap`` values: enough to prove
    "more than a few", which is all a reuse rule needs.
    """
    entries: dict[str, int] = state.setdefault(key, {})
    now = _now(state, key, t)
    if t > now - window_ms:
        entries[value] = max(t, entries.pop(value, t))  # re-insert: keeps order ~ recency
    _evict(entries, now - window_ms)
    _cap(entries, cap)
    return entries


def set_deadline(state: State, deadline: int | None) -> None:
    """Ask the engine for a timer: ``state[DEADLINE]`` becomes the earliest one wanted."""
    if deadline is None:
        return
    current = state.get(DEADLINE)
    state[DEADLINE] = deadline if current is None else min(int(current), deadline)


def expect(
    state: State,
    key: str,
    token: str,
    deadline: int,
    payload: Any = None,
    cap: int = DEFAULT_CAP,
) -> None:
    """Register "``token`` must be satisfied by ``deadline``" (A seen; B expected by A+T).

    Re-registering a token keeps the first deadline (replays do not extend it). Beyond
    ``cap`` open expectations the oldest is dropped (reported nowhere: a bound, not a
    finding). Arms the engine timer.
    """
    pending: dict[str, list[Any]] = state.setdefault(key, {})
    pending.setdefault(token, [deadline, payload])
    _cap(pending, cap)
    set_deadline(state, deadline)


def satisfy(state: State, key: str, token: str, t: int) -> bool:
    """B arrived at ``t``: clears the expectation if in time (``t <= deadline``)."""
    pending: dict[str, list[Any]] = state.get(key, {})
    entry = pending.get(token)
    if entry is None or t > entry[0]:
        return False
    del pending[token]
    return True


def expired(state: State, key: str, watermark: int) -> list[tuple[str, Any]]:
    """Pop expectations whose deadline the watermark has reached; re-arm for the rest.

    Call from ``on_watermark``: (token, payload) pairs in deadline order.
    """
    pending: dict[str, list[Any]] = state.get(key, {})
    gone = sorted(
        ((v[0], k, v[1]) for k, v in pending.items() if v[0] <= watermark),
        key=lambda x: (x[0], x[1]),
    )
    for _, token, _ in gone:
        del pending[token]
    if pending:
        set_deadline(state, min(v[0] for v in pending.values()))
    return [(token, payload) for _, token, payload in gone]
