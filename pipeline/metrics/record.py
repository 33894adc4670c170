"""``MetricRecord``: one record of ``governance.metrics.v1`` (``schemas/metric.avsc``).

Each rate travels with its numerator and denominator so a warehouse can re-aggregate
across windows (sum the counts, divide again); a rate is None when its denominator
is 0 (no data is not 0%). Medians and percentiles come from the mergeable histograms,
which are published too (bucket -> count, see ``histogram.py``) for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

from pipeline.metrics.deltas import ACTION_LATENCY_MS, REVIEW_SECONDS
from pipeline.metrics.histogram import normalized, quantile

#: Avro enum symbols of ``dimension``; ``unknown`` is the reader's default for symbols
#: added by a newer writer.
DIMENSION_SYMBOLS: Final = ("global", "platform", "team", "identity", "unknown", "mode")


@dataclass(frozen=True, slots=True)
class MetricRecord:
    window_start: int
    window_end: int
    window_size_ms: int
    dimension: str
    dimension_value: str
    # productivity
    tasks_completed: int = 0
    tasks_succeeded: int = 0
    successful_completion_rate: float | None = None
    # governance
    tasks_safe: int = 0
    safe_completion_rate: float | None = None
    actions_total: int = 0
    actions_authorized: int = 0
    authorized_action_rate: float | None = None
    actions_attributable: int = 0
    attributable_action_rate: float | None = None
    actions_with_credential: int = 0
    actions_ephemeral: int = 0
    ephemeral_credential_rate: float | None = None
    task_credentials_completed: int = 0
    task_credentials_revoked: int = 0
    revoked_on_completion_rate: float | None = None
    approvals_decided: int = 0
    approvals_meaningful: int = 0
    meaningful_review_rate: float | None = None
    median_review_seconds: float | None = None
    p95_action_latency_ms: float | None = None
    alerts_total: int = 0
    alerts_by_detector: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    review_seconds_histogram: dict[str, int] = field(default_factory=dict)
    action_latency_ms_histogram: dict[str, int] = field(default_factory=dict)
    revision: int = 0
    emitted_at: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in schema field order (JSON and Avro datum)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricRecord:
        """Tolerant of fields it does not know (a newer writer) and of missing ones."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def rate(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator > 0 else None


def build_record(
    *,
    window_size_ms: int,
    window_start: int,
    dimension: str,
    dimension_value: str,
    counters: Mapping[str, int],
    histograms: Mapping[str, Mapping[str, int]],
    alerts: Mapping[str, int],
    revision: int,
    emitted_at: int,
) -> MetricRecord:
    """A record from summed deltas: rates, median and p95 computed here, once."""
    c = counters.get
    tasks, succeeded, safe = c("tasks_completed", 0), c("tasks_succeeded", 0), c("tasks_safe", 0)
    actions = c("actions_total", 0)
    authorized, attributable = c("actions_authorized", 0), c("actions_attributable", 0)
    with_cred, ephemeral = c("actions_with_credential", 0), c("actions_ephemeral", 0)
    creds, revoked = c("task_credentials_completed", 0), c("task_credentials_revoked", 0)
    approvals, meaningful = c("approvals_decided", 0), c("approvals_meaningful", 0)
    review = normalized(histograms.get(REVIEW_SECONDS, {}))
    latency = normalized(histograms.get(ACTION_LATENCY_MS, {}))
    return MetricRecord(
        window_start=window_start,
        window_end=window_start + window_size_ms,
        window_size_ms=window_size_ms,
        dimension=dimension,
        dimension_value=dimension_value,
        tasks_completed=tasks,
        tasks_succeeded=succeeded,
        successful_completion_rate=rate(succeeded, tasks),
        tasks_safe=safe,
        safe_completion_rate=rate(safe, tasks),
        actions_total=actions,
        actions_authorized=authorized,
        authorized_action_rate=rate(authorized, actions),
        actions_attributable=attributable,
        attributable_action_rate=rate(attributable, actions),
        actions_with_credential=with_cred,
        actions_ephemeral=ephemeral,
        ephemeral_credential_rate=rate(ephemeral, with_cred),
        task_credentials_completed=creds,
        task_credentials_revoked=revoked,
        revoked_on_completion_rate=rate(revoked, creds),
        approvals_decided=approvals,
        approvals_meaningful=meaningful,
        meaningful_review_rate=rate(meaningful, approvals),
        median_review_seconds=quantile(review, 0.5),
        p95_action_latency_ms=quantile(latency, 0.95),
        alerts_total=c("alerts_total", 0),
        alerts_by_detector=dict(sorted((k, v) for k, v in alerts.items() if v)),
        late_events=c("late_events", 0),
        review_seconds_histogram=review,
        action_latency_ms_histogram=latency,
        revision=revision,
        emitted_at=emitted_at,
    )


def record_key(record: MetricRecord) -> bytes:
    """The Kafka key: revisions of one window and dimension share it (compaction)."""
    return (
        f"{record.window_start}|{record.window_size_ms}|{record.dimension}|{record.dimension_value}"
    ).encode()
