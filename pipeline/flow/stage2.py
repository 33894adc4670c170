"""Stage 2 (stateful): per-subject detector state, event-time watermark, deduplicated alerts.

One internal record (one stage-1 batch for this partition) is processed at a
time, and each touched subject's state is written once per record. Crash
safety without transactions (DESIGN §3b):

* duplicates from stage-1 replays are dropped per subject by event id;
* the outputs of a record are written to the partition's entry *before* the
  subject states (same changelog partition, so Kafka keeps that order): if any
  state of the record survived a crash, its outputs did too, and the replayed
  record re-sends the very same alerts (same ids, same activity) instead of
  recomputing them from a state that already counts them. The worker flushes
  the changelog before it sends alerts.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.detectors.engine import DetectionEngine
from pipeline.flow.route import Item, partition_for, subject_key

Event = dict[str, Any]
PARTITION_KEY = "__partition__:{}"
#: Per subject, how many recent event ids are remembered for dedup.
SEEN_MAX = 2048


class StateStore(Protocol):
    """What stage 2 needs of a faust Table (a dict in unit tests)."""

    def get(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def keys(self) -> Any: ...


@dataclass(slots=True)
class Stage2Output:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: primary copies of new events, and late ones (for metrics)
    new_events: list[Event] = field(default_factory=list)
    late_events: int = 0
    duplicates: int = 0
    watermark: int | None = None
    replayed: bool = False


@dataclass
class Stage2Stats:
    items_in: int = 0
    duplicates: int = 0
    late_events: int = 0
    alerts_created: int = 0
    alerts_updated: int = 0
    timers_fired: int = 0
    records_in: int = 0
    alerts_by_detector: Counter[str] = field(default_factory=Counter)
    #: newest event time this worker's stage 2 has seen (ms), for the lag gauge
    newest_event_ms: int | None = None


class Stage2:
    def __init__(
        self,
        engine: DetectionEngine,
        partitions: int,
        allowed_lateness_ms: int,
        product_version: str,
    ) -> None:
        self.engine = engine
        self.partitions = partitions
        self.lateness = allowed_lateness_ms
        self.version = product_version
        self.stats = Stage2Stats()
        #: partition → heap of (deadline, subject key); rebuilt from the store
        self._timers: dict[int, list[tuple[int, str]]] = {}

    # -- timers ---------------------------------------------------------------
    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their timer index is rebuilt if they come back."""
        for p in partitions:
            self._timers.pop(p, None)

    def _index(self, store: StateStore, partition: int) -> list[tuple[int, str]]:
        heap = self._timers.get(partition)
        if heap is None:
            heap = []
            for key in list(store.keys()):
                if key.startswith("__") or partition_for(key, self.partitions) != partition:
                    continue
                state = store.get(key)
                deadline = self.engine.next_deadline(state) if state else None
                if deadline is not None:
                    heap.append((deadline, key))
            heapq.heapify(heap)
            self._timers[partition] = heap
        return heap

    # -- records --------------------------------------------------------------
    def process(
        self,
        store: StateStore,
        partition: int,
        offset: int,
        upstream_wm: int | None,
        items: list[Item],
    ) -> Stage2Output:
        pkey = PARTITION_KEY.format(partition)
        pstate: dict[str, Any] = store.get(pkey) or {"wm": None, "out": None}
        last = pstate.get("out")
        if last is not None and last.get("offset") == offset and not last.get("sent"):
            # The same record again after a crash: send what was computed, no more.
            return Stage2Output(alerts=last["alerts"], watermark=pstate["wm"], replayed=True)
        before: int | None = pstate.get("wm")
        watermark = before
        if upstream_wm is not None:
            candidate = upstream_wm - self.lateness
            watermark = candidate if watermark is None else max(watermark, candidate)
        out = Stage2Output(watermark=watermark)
        self.stats.items_in += len(items)
        heap = self._index(store, partition)
        groups: dict[str, list[tuple[Event, bool]]] = defaultdict(list)
        kinds: dict[str, tuple[str, str]] = {}
        for kind, subject, event, primary in items:
            key = subject_key(kind, subject)
            groups[key].append((event, primary))
            kinds[key] = (kind, subject)
        wm_for_detectors = watermark if watermark is not None else -(2**62)
        dirty: dict[str, dict[str, Any]] = {}
        for key, pairs in groups.items():
            kind, subject = kinds[key]
            state: dict[str, Any] = store.get(key) or {}
            seen: dict[str, int] = state.setdefault("_seen", {})
            fresh: list[Event] = []
            late: list[Event] = []
            for event, primary in pairs:
                eid = event["event_id"]
                if eid in seen:
                    out.duplicates += 1
                    continue
                seen[eid] = event["event_time"]
                is_late = before is not None and event["event_time"] < before
                (late if is_late else fresh).append(event)
                if primary:
                    out.new_events.append(event)
                    if is_late:
                        out.late_events += 1
            while len(seen) > SEEN_MAX:
                del seen[next(iter(seen))]
            if not fresh and not late:
                continue
            findings = self.engine.process(kind, subject, state, fresh, wm_for_detectors, late)
            out.alerts += self.engine.alerts(state, findings, product_version=self.version)
            dirty[key] = state
            deadline = self.engine.next_deadline(state)
            if deadline is not None:
                heapq.heappush(heap, (deadline, key))
        if watermark is not None:
            self._fire_timers(store, dirty, heap, watermark, out)
        self.stats.records_in += 1
        if upstream_wm is not None and (
            self.stats.newest_event_ms is None or upstream_wm > self.stats.newest_event_ms
        ):
            self.stats.newest_event_ms = upstream_wm
        for alert in out.alerts:
            self.stats.alerts_by_detector[alert["detector"]] += 1
            if alert["activity_id"] == 1:
                self.stats.alerts_created += 1
            else:
                self.stats.alerts_updated += 1
        self.stats.duplicates += out.duplicates
        self.stats.late_events += out.late_events
        store[pkey] = {
            "wm": watermark,
            "out": {"offset": offset, "alerts": out.alerts, "sent": False},
        }
        for key, state in dirty.items():
            store[key] = state
        return out

    def _fire_timers(
        self,
        store: StateStore,
        dirty: dict[str, dict[str, Any]],
        heap: list[tuple[int, str]],
        watermark: int,
        out: Stage2Output,
    ) -> None:
        while heap and heap[0][0] <= watermark:
            _, key = heapq.heappop(heap)
            state = dirty.get(key) or store.get(key)
            if not state or not self.engine.due(state, watermark):
                continue  # stale entry: the subject moved its timer or was handled
            kind, _, subject = key.partition(":")
            findings = self.engine.process(kind, subject, state, [], watermark)
            self.stats.timers_fired += 1
            out.alerts += self.engine.alerts(state, findings, product_version=self.version)
            dirty[key] = state
            nxt = self.engine.next_deadline(state)
            if nxt is not None:
                heapq.heappush(heap, (nxt, key))

    def mark_sent(self, store: StateStore, partition: int, offset: int) -> None:
        """The record's outputs were delivered: a replay must not send them again."""
        pkey = PARTITION_KEY.format(partition)
        pstate = store.get(pkey)
        if pstate and pstate.get("out", {}).get("offset") == offset:
            store[pkey] = {"wm": pstate["wm"], "out": {"offset": offset, "sent": True}}
