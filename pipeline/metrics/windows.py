"""Tumbling event-time windows of metric deltas, emitted as ``MetricRecord`` revisions.

Rules (docs/event-time.md; all times are event times, nothing reads a clock):

* A window is ``[start, start + size)``; an item exactly at a boundary is in the
  window that starts there (``deltas.window_start``).
* ``advance(watermark)`` emits every (window, dimension) whose end the watermark has
  reached (``end <= watermark``): revision 0.
* A delta for an emitted window while ``watermark <= end + allowed_lateness`` is
  applied and the window's record is emitted again at the next ``advance`` with
  ``revision + 1``. Same Kafka key (``record_key``), so the compacted topic keeps the
  newest; at-least-once output stays correct.
* A delta for an older window is NOT applied: its ``n`` is added to ``late_events``
  of the window the watermark is in (same dimension), i.e. the window it arrived in.
* Windows are evicted once the watermark is past ``end + allowed_lateness``.
* Windows close on the watermark only, never early because of a count: closing
  early during a backfill (when one input partition runs hours ahead of another)
  turned later corrections into ``late_events``. Their memory is bounded where the
  skew is made: stage 1 pauses an input partition running more than
  ``max_partition_skew_s`` ahead of the slowest (watermark alignment), so about
  ``(skew + lateness) / size + 2`` starts are open per size. ``retention`` is only
  the count past which one warning says that bound is not holding.

The whole state is one JSON-able dict (``state``), so it can live in a faust Table;
faust only persists a value that is assigned back (``table[key] = windows.state``).
Deterministic: the same deltas and watermarks in the same order give the same
records, ``emitted_at`` included (it is the watermark, not the wall clock).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

from pipeline.metrics.deltas import DIMENSION_ORDER, Delta, check_window_sizes, merge_delta
from pipeline.metrics.record import MetricRecord, build_record, record_key

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_RETENTION", "MetricWindows", "record_key"]

DEFAULT_RETENTION: Final = 512
STATE_VERSION: Final = 1

State = dict[str, Any]


def _record_order(r: MetricRecord) -> tuple[int, int, int, str]:
    return (
        r.window_start,
        r.window_size_ms,
        DIMENSION_ORDER.get(r.dimension, 99),
        r.dimension_value,
    )


class MetricWindows:
    """Open windows of one metrics-agent key (or of a whole partition: any deltas mix)."""

    def __init__(
        self,
        window_sizes: Sequence[int],
        allowed_lateness_ms: int,
        retention: int = DEFAULT_RETENTION,
        state: State | None = None,
    ) -> None:
        if allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms must be >= 0")
        if retention < 1:
            raise ValueError("retention must be >= 1")
        self.window_sizes = check_window_sizes(window_sizes)
        self.allowed_lateness_ms = allowed_lateness_ms
        self.retention = retention
        #: Deltas of a window size not configured (e.g. from before a config change).
        self.ignored = 0
        if state is None:
            state = {"v": STATE_VERSION, "wm": None, "floor": {}, "g": {}}
        elif state.get("v") != STATE_VERSION:
            raise ValueError(f"metric window state version {state.get('v')!r} is not supported")
        self._state: State = state

    @property
    def state(self) -> State:
        """The JSON-able state (adopted, not copied: assign it back to the Table)."""
        return self._state

    @property
    def watermark(self) -> int | None:
        wm: int | None = self._state["wm"]
        return wm

    @property
    def next_deadline(self) -> int | None:
        """The smallest watermark at which ``advance`` has work (emit or evict), or None.

        Lets a caller holding many instances (e.g. one per Table key) advance only
        the ones that are due instead of all of them on every batch.
        """
        deadlines = []
        for group in self._state["g"].values():
            end = group["ws"] + group["w"]
            pending = not group["done"] or group["dirty"]
            deadlines.append(end if pending else end + self.allowed_lateness_ms + 1)
        return min(deadlines, default=None)

    @property
    def open_windows(self) -> int:
        """Window starts (all sizes) still held."""
        return len(self._state["g"])

    # ---- input -------------------------------------------------------------------

    def add(self, delta: Delta) -> None:
        """Apply one delta, or count it as late (see the module rules)."""
        w, ws = delta["w"], delta["ws"]
        if w not in self.window_sizes:
            if not self.ignored:
                log.warning("metric delta for window size %s ms ignored: not configured", w)
            self.ignored += 1
            return
        if self._too_late(w, ws):
            n = delta.get("n", 0)
            if n:
                group, cell = self._cell(w, self._current_start(w), delta["dim"], delta["val"])
                cell["c"]["late_events"] = cell["c"].get("late_events", 0) + n
                self._touch(group, delta["dim"], delta["val"])
            return
        group, cell = self._cell(w, ws, delta["dim"], delta["val"])
        merge_delta(cell, delta)  # type: ignore[arg-type]  # a cell is a delta plus "rev"
        self._touch(group, delta["dim"], delta["val"])

    def add_all(self, deltas: Iterable[Delta]) -> None:
        for delta in deltas:
            self.add(delta)

    # ---- output ------------------------------------------------------------------

    def advance(self, watermark: int) -> list[MetricRecord]:
        """Move the watermark (never back) and return the records now due."""
        old = self._state["wm"]
        wm = watermark if old is None else max(int(old), watermark)
        self._state["wm"] = wm
        out: list[MetricRecord] = []
        groups: dict[str, Any] = self._state["g"]
        lateness = self.allowed_lateness_ms
        for key in list(groups):
            group = groups[key]
            end = group["ws"] + group["w"]
            if end <= wm:
                out.extend(self._emit(group, wm))
                if end + lateness < wm:
                    del groups[key]
        self._enforce_retention(out, wm)
        out.sort(key=_record_order)
        return out

    # ---- internals ---------------------------------------------------------------

    def _too_late(self, w: int, ws: int) -> bool:
        wm = self._state["wm"]
        if wm is not None and ws + w + self.allowed_lateness_ms < wm:
            return True
        floor = self._state["floor"].get(str(w))
        return floor is not None and ws <= floor

    def _current_start(self, w: int) -> int:
        """The window the watermark is in: where late items are counted."""
        wm = self._state["wm"]
        floor = self._state["floor"].get(str(w))
        candidates: list[int] = []
        if wm is not None:
            candidates.append(wm - wm % w)
        if floor is not None:
            candidates.append(floor + w)
        return max(candidates)

    def _cell(self, w: int, ws: int, dim: str, val: str) -> tuple[dict[str, Any], dict[str, Any]]:
        groups = self._state["g"]
        gkey = f"{w}|{ws}"
        group = groups.get(gkey)
        if group is None:
            group = groups[gkey] = {"w": w, "ws": ws, "done": False, "dirty": {}, "cells": {}}
        ckey = f"{dim}|{val}"
        cell = group["cells"].get(ckey)
        if cell is None:
            cell = group["cells"][ckey] = {
                "dim": dim,
                "val": val,
                "n": 0,
                "c": {},
                "h": {},
                "a": {},
                "rev": -1,
            }
        return group, cell

    @staticmethod
    def _touch(group: dict[str, Any], dim: str, val: str) -> None:
        if group["done"]:
            group["dirty"][f"{dim}|{val}"] = 1

    def _emit(self, group: dict[str, Any], wm: int) -> list[MetricRecord]:
        cells = group["cells"]
        if group["done"]:
            keys = list(group["dirty"])
        else:
            keys = list(cells)
            group["done"] = True
        group["dirty"] = {}
        out = []
        for key in keys:
            cell = cells[key]
            cell["rev"] += 1
            out.append(
                build_record(
                    window_size_ms=group["w"],
                    window_start=group["ws"],
                    dimension=cell["dim"],
                    dimension_value=cell["val"],
                    counters=cell["c"],
                    histograms=cell["h"],
                    alerts=cell["a"],
                    revision=cell["rev"],
                    emitted_at=wm,
                )
            )
        return out

    def _enforce_retention(self, out: list[MetricRecord], wm: int) -> None:
        """Say once when more starts are open than the skew bound allows (see the
        module doc); they stay open until the watermark closes them."""
        groups: dict[str, Any] = self._state["g"]
        if len(groups) > self.retention * len(self.window_sizes) and not self._state.get("warned"):
            self._state["warned"] = True
            log.warning(
                "%d metric windows open (watermark %s): an input partition is holding the "
                "watermark back; windows close when it catches up or goes idle",
                len(groups),
                wm,
            )
