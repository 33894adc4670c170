"""Delivering one scenario through the real broker in different ways, and comparing.

Used by ``tests/integration/test_delivery_order.py``: the same events published in
event-time order on one partition, or keyed by ``identity_id`` across several
partitions (each partition in event-time order, as a keyed producer writes them),
must give the same findings and the same final metric revisions however the worker
reads them (docs/event-time.md: "a replay or backfill of the same events yields the same
findings"; the pipeline must not depend on the producer's key).

Nothing here moves event time with heartbeats: after the backlog the worker is left
alone, so caught-up idle input partitions must stop holding the watermark back.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.codec import AvroEncoder
from pipeline.flow.route import copies, decode_subject_batch
from pipeline.metrics import MetricCodec
from pipeline.settings import Settings
from tests.support.kafka import produce

#: Events per Avro batch record on the input topic.
BATCH = 100

MetricKey = tuple[int, int, str, str]
#: Record fields that say when or how often a window was emitted, not what it counts.
NOT_COUNTS = frozenset(
    {"window_start", "window_end", "window_size_ms", "dimension", "dimension_value"}
    | {"revision", "emitted_at"}
)


def partition_of(event: Mapping[str, Any], partitions: int) -> int:
    """The input partition of a producer keyed by ``identity_id`` (identity-less events
    by platform). crc32, not Kafka's murmur2: only a stable spread matters here."""
    key = event.get("identity_id") or event.get("platform") or ""
    return zlib.crc32(str(key).encode()) % partitions


def publish_in_order(settings: Settings, events: Sequence[Mapping[str, Any]]) -> int:
    """All events on partition 0, in the given (event-time) order; returns records."""
    enc = AvroEncoder()
    records = [enc.batch(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]
    return produce(settings.kafka_bootstrap_servers, settings.topic_events, records, partition=0)


def keyed_partitions(
    events: Iterable[Mapping[str, Any]], partitions: int
) -> dict[int, list[Mapping[str, Any]]]:
    """Events per input partition, each partition's in event-time order."""
    out: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e["event_time"]):
        out[partition_of(e, partitions)].append(e)
    return dict(out)


def publish_keyed(settings: Settings, events: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Events keyed across ``settings.events_partitions``, batched per partition;
    returns the number of events per partition."""
    enc = AvroEncoder()
    parts = keyed_partitions(events, settings.events_partitions)
    for p, evs in sorted(parts.items()):
        records = [enc.batch(evs[i : i + BATCH]) for i in range(0, len(evs), BATCH)]
        produce(settings.kafka_bootstrap_servers, settings.topic_events, records, partition=p)
    return {p: len(evs) for p, evs in sorted(parts.items())}


@dataclass
class Delivery:
    """What one delivery produced, read back from the output topics."""

    name: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    forwarded: set[str] = field(default_factory=set)  # event ids on the internal topic
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: (seconds since the worker started, events forwarded, alert records, metric records)
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)

    def progress(self) -> str:
        """When stage 1 had forwarded everything and when the outputs stopped growing."""
        if not self.timeline:
            return "no output"
        last = self.timeline[-1]
        fwd = next(t for t, f, _, _ in self.timeline if f == last[1])
        first_alert = next((t for t, _, a, _ in self.timeline if a), None)
        return (
            f"all forwarded at {fwd:.1f}s, first alert at {first_alert}s, "
            f"last output at {last[0]:.1f}s"
        )

    @property
    def creates(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a.get("activity_id") == 1]


class OutputReader:
    """One consumer over the internal, alerts and metrics topics, read from the start."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": f"test-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.max.bytes": 50 * 1024 * 1024,
                "max.partition.fetch.bytes": 10 * 1024 * 1024,
            }
        )
        assignment = []
        for topic in (settings.topic_subjects, settings.topic_alerts, settings.topic_metrics):
            md = self.consumer.list_topics(topic, timeout=10)
            parts = sorted(md.topics[topic].partitions)
            assert parts, f"topic {topic} has no partitions"
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts]
        self.consumer.assign(assignment)
        self.codec = MetricCodec()
        self.out = Delivery("")
        self.last_new = time.monotonic()
        self.started = time.monotonic()

    def stage2_output(self) -> int:
        """Alert and metric records read so far (stage 2's progress)."""
        return len(self.out.alerts) + len(self.out.metrics)

    def poll(self, timeout: float = 0.5) -> int:
        """Read what is there; returns how many records arrived."""
        got = 0
        for m in self.consumer.consume(200, timeout=timeout):
            value = m.value()
            if m.error() or value is None:
                continue
            got += 1
            topic = m.topic()
            if topic == self.settings.topic_subjects:
                _, items = decode_subject_batch(value)
                self.out.forwarded.update(
                    str(c.event["event_id"]) for c in copies(items) if c.primary
                )
            elif topic == self.settings.topic_alerts:
                self.out.alerts.append(orjson.loads(value))
            else:
                self.out.metrics.append(self.codec.decode(value).to_dict())
        if got:
            self.last_new = time.monotonic()
            o = self.out
            o.timeline.append(
                (self.last_new - self.started, len(o.forwarded), len(o.alerts), len(o.metrics))
            )
        return got

    def where(self) -> str:
        """Progress so far, for notes."""
        o = self.out
        return (
            f"{time.monotonic() - self.started:.1f}s: {len(o.forwarded)} events forwarded, "
            f"{len(o.alerts)} alert and {len(o.metrics)} metric records read"
        )

    def wait_stage2(self, at_least: int, max_s: float = 120.0) -> int:
        """Until stage 2 has written ``at_least`` alert and metric records (stage 1
        forwards a few thousand events in well under a second, so "mid-stream" is
        measured on stage 2's output); returns the count."""
        deadline = time.monotonic() + max_s
        while self.stage2_output() < at_least:
            assert time.monotonic() < deadline, (
                f"only {self.stage2_output()} of {at_least} output records in {max_s}s"
            )
            self.poll(0.05)
        return self.stage2_output()

    def settle(self, expected_events: int, quiet_s: float, max_s: float = 300.0) -> Delivery:
        """Until every event was forwarded and no output arrived for ``quiet_s``."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            self.poll()
            if (
                len(self.out.forwarded) >= expected_events
                and time.monotonic() - self.last_new > quiet_s
            ):
                break
        else:
            self.out.notes.append(f"outputs still moving after {max_s}s")
        return self.out

    def close(self) -> None:
        self.consumer.close()


# ---- comparison ------------------------------------------------------------------------


@dataclass
class Findings:
    """Per alert_id: detectors named, Creates, and the union of evidence event ids."""

    detectors: dict[str, set[str]] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)
    evidence: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, alerts: Iterable[Mapping[str, Any]]) -> Findings:
        f = cls()
        for a in alerts:
            aid = str(a["alert_id"])
            f.detectors.setdefault(aid, set()).add(str(a["detector"]))
            f.evidence.setdefault(aid, set()).update(
                str(e) for e in (a.get("evidence") or {}).get("event_ids") or []
            )
            if a.get("activity_id") == 1:
                f.creates[aid] += 1
        return f

    def detector(self, aid: str) -> str:
        return "/".join(sorted(self.detectors.get(aid, {"?"})))


def newest_revisions(records: Iterable[Mapping[str, Any]]) -> dict[MetricKey, Mapping[str, Any]]:
    """The highest revision per (window_size_ms, window_start, dimension, value)."""
    newest: dict[MetricKey, Mapping[str, Any]] = {}
    for r in records:
        key = (r["window_size_ms"], r["window_start"], r["dimension"], r["dimension_value"])
        if key not in newest or r["revision"] >= newest[key]["revision"]:
            newest[key] = r
    return newest


def _short(ids: Iterable[str], n: int = 4) -> str:
    ids = sorted(ids)
    more = f" (+{len(ids) - n} more)" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def finding_problems(name: str, alerts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Within one delivery: each alert_id has one detector and exactly one Create."""
    f = Findings.of(alerts)
    out = []
    for aid in sorted(f.detectors):
        if len(f.detectors[aid]) > 1:
            out.append(f"{name}: alert {aid} named by several detectors {f.detector(aid)}")
        if f.creates[aid] != 1:
            out.append(f"{name}: {f.detector(aid)} alert {aid} has {f.creates[aid]} Creates")
    return out


def compare_findings(base: Delivery, other: Delivery) -> list[str]:
    """Readable differences of ``other``'s findings from ``base``'s."""
    a, b = Findings.of(base.alerts), Findings.of(other.alerts)
    out: list[str] = []
    only_a, only_b = set(a.detectors) - set(b.detectors), set(b.detectors) - set(a.detectors)
    per_det: dict[str, list[set[str]]] = defaultdict(lambda: [set(), set()])
    for aid in only_a:
        per_det[a.detector(aid)][0].add(aid)
    for aid in only_b:
        per_det[b.detector(aid)][1].add(aid)
    for det in sorted(per_det):
        lost, gained = per_det[det]
        parts = []
        if lost:
            parts.append(f"lost {len(lost)} [{_short(lost)}]")
        if gained:
            parts.append(f"gained {len(gained)} [{_short(gained)}]")
        out.append(
            f"{other.name} vs {base.name}: {det}: "
            + "; ".join(parts)
            + f" (alert ids {sum(1 for x in a.detectors if a.detector(x) == det)}"
            f" vs {sum(1 for x in b.detectors if b.detector(x) == det)})"
        )
    for aid in sorted(set(a.detectors) & set(b.detectors)):
        det = a.detector(aid)
        if a.detectors[aid] != b.detectors[aid]:
            out.append(f"{other.name}: alert {aid} is {b.detector(aid)}, {base.name} says {det}")
        if a.evidence[aid] != b.evidence[aid]:
            missing, extra = a.evidence[aid] - b.evidence[aid], b.evidence[aid] - a.evidence[aid]
            out.append(
                f"{other.name} vs {base.name}: {det} alert {aid} evidence differs:"
                + (f" missing {_short(missing)}" if missing else "")
                + (f" extra {_short(extra)}" if extra else "")
            )
    out += finding_problems(other.name, other.alerts)
    return out


def _counts(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in NOT_COUNTS}


def compare_metrics(base: Delivery, other: Delivery, limit: int = 30) -> list[str]:
    """Differences of the newest metric revisions, every counter and histogram compared
    (rates follow from the counters; ``revision`` and ``emitted_at`` are not compared)."""
    a, b = newest_revisions(base.metrics), newest_revisions(other.metrics)
    out: list[str] = []
    fields_differing: Counter[str] = Counter()
    detail: list[str] = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            fields_differing["(record missing)"] += 1
            detail.append(f"{key}: no record in {other.name}")
            continue
        if key not in a:
            fields_differing["(record extra)"] += 1
            detail.append(f"{key}: record in {other.name} only ({_nonzero(b[key])})")
            continue
        ca, cb = _counts(a[key]), _counts(b[key])
        diffs = [
            f"{n} {ca.get(n)!r} -> {cb.get(n)!r}"
            for n in sorted(set(ca) | set(cb))
            if ca.get(n) != cb.get(n)
        ]
        for n in sorted(set(ca) | set(cb)):
            if ca.get(n) != cb.get(n):
                fields_differing[n] += 1
        if diffs:
            detail.append(f"{key}: " + "; ".join(diffs))
    if detail:
        summary = ", ".join(f"{n} x{c}" for n, c in fields_differing.most_common())
        out.append(
            f"{other.name} vs {base.name}: {len(detail)} of {len(set(a) | set(b))} metric "
            f"keys differ ({summary})"
        )
        out += [f"  {line}" for line in detail[:limit]]
        if len(detail) > limit:
            out.append(f"  ... {len(detail) - limit} more")
    return out


def _nonzero(record: Mapping[str, Any]) -> str:
    return (
        ", ".join(f"{k}={v}" for k, v in _counts(record).items() if isinstance(v, int) and v)
        or "all zero"
    )


def summary(d: Delivery) -> str:
    per = Counter(Findings.of(d.alerts).detector(aid) for aid in Findings.of(d.alerts).detectors)
    return (
        f"{d.name}: {d.seconds:.1f}s, {len(d.forwarded)} events forwarded, "
        f"{len(d.alerts)} alert records ({len(d.creates)} Creates), "
        f"{len(newest_revisions(d.metrics))} metric keys; per detector {dict(sorted(per.items()))}"
        + f"; {d.progress()}"
        + (f"; notes: {'; '.join(d.notes)}" if d.notes else "")
    )
