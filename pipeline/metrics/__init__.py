"""Rolling productivity and governance metrics (docs/contracts/metrics.md).

Batch-first, in three steps: ``deltas`` folds a batch of events / outcomes into one
delta per (window, dimension); ``windows.MetricWindows`` adds deltas into tumbling
event-time windows and emits ``MetricRecord`` revisions as the watermark moves;
``codec.MetricCodec`` writes them as Confluent-wire Avro (or JSON).
"""

from __future__ import annotations

from pipeline.metrics.codec import LOCAL_METRIC_SCHEMA_ID, MetricCodec, metric_schema
from pipeline.metrics.deltas import (
    DIMENSIONS,
    GLOBAL_VALUE,
    AlertRaised,
    ApprovalDecided,
    Correction,
    Delta,
    TaskCompleted,
    TaskCredentialCompleted,
    action_deltas,
    alert_deltas,
    approval_deltas,
    combine,
    correction_deltas,
    credential_deltas,
    outcome_deltas,
    routing_key,
    task_deltas,
)
from pipeline.metrics.record import MetricRecord, record_key
from pipeline.metrics.windows import MetricWindows

__all__ = [
    "DIMENSIONS",
    "GLOBAL_VALUE",
    "LOCAL_METRIC_SCHEMA_ID",
    "AlertRaised",
    "ApprovalDecided",
    "Correction",
    "Delta",
    "MetricCodec",
    "MetricRecord",
    "MetricWindows",
    "TaskCompleted",
    "TaskCredentialCompleted",
    "action_deltas",
    "alert_deltas",
    "approval_deltas",
    "combine",
    "correction_deltas",
    "credential_deltas",
    "metric_schema",
    "outcome_deltas",
    "record_key",
    "routing_key",
    "task_deltas",
]
