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
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.detectors.engine import DetectionEngine
from pipeline.flow import outcomes
from pipeline.flow.route import Item, partition_for, subject_key
from pipeline.metrics import MetricRecord, MetricWindows, action_deltas, combine, routing_key
from pipeline.metrics.deltas import Outcome, outcome_deltas

Event = dict[str, Any]
PARTITION_KEY = "__partition__:{}"
#: Subject kind of a metric dimension's windows (fed by deltas routed back to us).
METRICS = "metrics"
#: Item kind by which each stage-2 partition tells every partition how far it got.
#: Metric windows close on the slowest partition's progress (a minimum, as
#: watermarks combine): a delta is only late if its source was already past it.
PROGRESS = "progress"
PROGRESS_EVERY_S = 1.0
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
    #: items for the internal topic (metric deltas, finding notices), by routing
    items: list[Item] = field(default_factory=list)
    metrics: list[MetricRecord] = field(default_factory=list)
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
        window_sizes_ms: tuple[int, ...] = (60_000,),
        metrics_lateness_ms: int = 15 * 60_000,
        grace_ms: int = 300_000,
    ) -> None:
        self.engine = engine
        self.partitions = partitions
        self.lateness = allowed_lateness_ms
        self.version = product_version
        self.window_sizes = window_sizes_ms
        self.metrics_lateness = metrics_lateness_ms
        self.grace = grace_ms
        self.stats = Stage2Stats()
        #: partition → heap of (deadline, subject key); rebuilt from the store.
        #: Detector and task timers run on the detection watermark; metric windows
        #: on the newest event time (their own lateness handles revisions).
        self._timers: dict[int, list[tuple[int, str]]] = {}
        self._metric_timers: dict[int, list[tuple[int, str]]] = {}
        self._progress_sent: dict[int, tuple[float, int]] = {}

    # -- timers ---------------------------------------------------------------
    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their timer index is rebuilt if they come back."""
        for p in partitions:
            self._timers.pop(p, None)
            self._metric_timers.pop(p, None)

    def _windows(self, state: dict[str, Any]) -> MetricWindows:
        return MetricWindows(self.window_sizes, self.metrics_lateness, state=state.get("mw"))

    def _deadline(self, key: str, state: dict[str, Any]) -> int | None:
        if key.startswith(METRICS + ":"):
            return self._windows(state).next_deadline if state.get("mw") else None
        found = [
            d
            for d in (
                self.engine.next_deadline(state),
                outcomes.task_deadline(state, self.grace) if key.startswith("task:") else None,
                outcomes.approval_deadline(state) if key.startswith("approval:") else None,
            )
            if d is not None
        ]
        return min(found) if found else None

    def _heap(self, key: str, partition: int) -> list[tuple[int, str]]:
        timers = self._metric_timers if key.startswith(METRICS + ":") else self._timers
        return timers[partition]

    def _index(self, store: StateStore, partition: int) -> None:
        if partition in self._timers:
            return
        self._timers[partition], self._metric_timers[partition] = [], []
        for key in list(store.keys()):
            if key.startswith("__") or partition_for(key, self.partitions) != partition:
                continue
            state = store.get(key)
            deadline = self._deadline(key, state) if state else None
            if deadline is not None:
                self._heap(key, partition).append((deadline, key))
        heapq.heapify(self._timers[partition])
        heapq.heapify(self._metric_timers[partition])

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
            return Stage2Output(
                alerts=last["alerts"],
                items=[tuple(i) for i in last.get("items", [])],  # type: ignore[misc]
                metrics=[MetricRecord.from_dict(m) for m in last.get("metrics", [])],
                watermark=pstate["wm"],
                replayed=True,
            )
        before: int | None = pstate.get("wm")
        watermark = before
        newest: int | None = pstate.get("newest")
        if upstream_wm is not None:
            candidate = upstream_wm - self.lateness
            watermark = candidate if watermark is None else max(watermark, candidate)
            newest = upstream_wm if newest is None else max(newest, upstream_wm)
        out = Stage2Output(watermark=watermark)
        self.stats.items_in += len(items)
        self._index(store, partition)
        heap = self._timers[partition]
        found: list[Outcome] = []
        groups: dict[str, list[tuple[Event, bool]]] = defaultdict(list)
        kinds: dict[str, tuple[str, str]] = {}
        for kind, subject, event, primary in items:
            key = subject_key(kind, subject)
            groups[key].append((event, primary))
            kinds[key] = (kind, subject)
        wm_for_detectors = watermark if watermark is not None else -(2**62)
        dirty: dict[str, dict[str, Any]] = {}
        sources: dict[str, int] = dict(pstate.get("sources") or {})
        for key, pairs in groups.items():
            kind, subject = kinds[key]
            if kind == PROGRESS:
                for event, _ in pairs:
                    src = str(event["from"])
                    sources[src] = max(sources.get(src, event["newest"]), event["newest"])
                continue
            if kind == METRICS:
                self._add_deltas(store, key, pairs, dirty, partition)
                continue
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
            alerts = self.engine.alerts(state, findings, product_version=self.version)
            out.alerts += alerts
            found += outcomes.track(kind, state, fresh + late, alerts)
            out.items += outcomes.finding_notices(kind, alerts)
            dirty[key] = state
            deadline = self._deadline(key, state)
            if deadline is not None:
                heapq.heappush(heap, (deadline, key))
        if watermark is not None:
            found += self._fire_timers(store, dirty, heap, watermark, out)
        found += outcomes.alert_outcomes(out.alerts)
        actions = [e for e in out.new_events if e.get("event_type") == "action"]
        deltas = combine(
            action_deltas(actions, self.window_sizes) + outcome_deltas(found, self.window_sizes)
        )
        out.items += [
            (
                METRICS,
                routing_key(d),
                {
                    "event_id": f"d:{partition}:{offset}:{i}",
                    "event_time": d["ws"],
                    "src": [partition, offset, i],
                    "delta": d,
                },
                False,
            )
            for i, d in enumerate(deltas)
        ]
        if newest is not None:
            out.items += self._progress(partition, newest)
        if len(sources) >= self.partitions:
            self._advance_metrics(store, dirty, partition, min(sources.values()), out)
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
            "newest": newest,
            "sources": sources,
            "out": {
                "offset": offset,
                "alerts": out.alerts,
                "items": out.items,
                "metrics": [m.to_dict() for m in out.metrics],
                "sent": False,
            },
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
    ) -> list[Outcome]:
        found: list[Outcome] = []
        while heap and heap[0][0] <= watermark:
            _, key = heapq.heappop(heap)
            state = dirty.get(key) or store.get(key)
            deadline = self._deadline(key, state) if state else None
            if not state or deadline is None or deadline > watermark:
                continue  # stale entry: the subject moved its timer or was handled
            kind, _, subject = key.partition(":")
            findings = self.engine.process(kind, subject, state, [], watermark)
            self.stats.timers_fired += 1
            alerts = self.engine.alerts(state, findings, product_version=self.version)
            out.alerts += alerts
            found += outcomes.track(kind, state, [], alerts)
            out.items += outcomes.finding_notices(kind, alerts)
            if kind == "task":
                found += outcomes.judge_credentials(state, watermark, self.grace)
            elif kind == "approval":
                found += outcomes.judge_approval(state, watermark)
            dirty[key] = state
            nxt = self._deadline(key, state)
            if nxt is not None:
                heapq.heappush(heap, (nxt, key))
        return found

    # -- metrics --------------------------------------------------------------
    def _progress(self, partition: int, newest: int) -> list[Item]:
        """At most once a second, when it moved: this partition's newest event time."""
        now = time.monotonic()
        last = self._progress_sent.get(partition)
        if last is not None and (last[1] >= newest or now - last[0] < PROGRESS_EVERY_S):
            return []
        self._progress_sent[partition] = (now, newest)
        return [
            (
                PROGRESS,
                str(target),
                {
                    "event_id": f"progress:{partition}:{newest}",
                    "from": partition,
                    "newest": newest,
                    "event_time": newest,
                },
                False,
            )
            for target in range(self.partitions)
        ]

    def _add_deltas(
        self,
        store: StateStore,
        key: str,
        pairs: list[tuple[Event, bool]],
        dirty: dict[str, dict[str, Any]],
        partition: int,
    ) -> None:
        """Apply deltas once each: per source partition, (offset, index) only grows."""
        state: dict[str, Any] = dirty.get(key) or store.get(key) or {}
        applied: dict[str, list[int]] = state.setdefault("_src", {})
        windows = self._windows(state)
        for event, _ in pairs:
            src_partition, src_offset, index = event["src"]
            last = applied.get(str(src_partition))
            if last is not None and [src_offset, index] <= last:
                continue
            applied[str(src_partition)] = [src_offset, index]
            windows.add(event["delta"])
        state["mw"] = windows.state
        dirty[key] = state
        deadline = windows.next_deadline
        if deadline is not None:
            heapq.heappush(self._metric_timers[partition], (deadline, key))

    def _advance_metrics(
        self,
        store: StateStore,
        dirty: dict[str, dict[str, Any]],
        partition: int,
        newest: int,
        out: Stage2Output,
    ) -> None:
        heap = self._metric_timers[partition]
        while heap and heap[0][0] <= newest:
            _, key = heapq.heappop(heap)
            state = dirty.get(key) or store.get(key)
            if not state or not state.get("mw"):
                continue
            windows = self._windows(state)
            deadline = windows.next_deadline
            if deadline is None or deadline > newest:
                if deadline is not None:
                    heapq.heappush(heap, (deadline, key))
                continue
            out.metrics += windows.advance(newest)
            state["mw"] = windows.state
            dirty[key] = state
            nxt = windows.next_deadline
            if nxt is not None:
                heapq.heappush(heap, (nxt, key))

    def mark_sent(self, store: StateStore, partition: int, offset: int) -> None:
        """The record's outputs were delivered: a replay must not send them again."""
        pkey = PARTITION_KEY.format(partition)
        pstate = store.get(pkey)
        if pstate and pstate.get("out", {}).get("offset") == offset:
            store[pkey] = {"wm": pstate["wm"], "out": {"offset": offset, "sent": True}}
