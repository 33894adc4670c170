"""Every topic govpipe reads or writes: name, partitions, configs, codecs. Nowhere else.

Deployment files (docker-compose.yml, k8s/) are checked against this registry by tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.settings import Settings

Role = Literal["input", "dlq", "alerts", "metrics", "evidence", "internal"]

MiB = 1024 * 1024
#: Records up to this size reach the worker (and, if bad, the DLQ) instead of
#: bouncing at the broker; the worker itself rejects above ``max_record_bytes``.
MAX_MESSAGE_BYTES = 8 * MiB

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic as created by ``govpipe topics create`` and declared in k8s/."""

    role: Role
    name: str
    partitions: int
    replication_factor: int
    key: str
    value: str
    doc: str
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of docs/contracts/ and docs/internals.md, sized from settings."""
    rf = settings.replication_factor
    return [
        TopicSpec(
            "input",
            settings.topic_events,
            settings.events_partitions,
            rf,
            key="identity_id or task_id (any; not relied on)",
            value="AgentEvent | AgentEventBatch: Confluent-wire Avro or UTF-8 JSON",
            doc="Raw agent events from platforms.",
            config={"retention.ms": str(7 * DAY_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)},
        ),
        TopicSpec(
            "dlq",
            settings.topic_dlq,
            settings.output_partitions,
            rf,
            key="source key",
            value="original bytes (or a redacted copy, header redacted=true)",
            doc="Every record or event that could not be processed, with the reason in headers.",
            config={"retention.ms": str(30 * DAY_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)},
        ),
        TopicSpec(
            "alerts",
            settings.topic_alerts,
            settings.output_partitions,
            rf,
            key="alert_id",
            value="OCSF Detection Finding (JSON) + govpipe fields",
            doc="One alert per finding; repeats are OCSF Updates of the same alert_id.",
            config={"retention.ms": str(90 * DAY_MS)},
        ),
        TopicSpec(
            "metrics",
            settings.topic_metrics,
            settings.output_partitions,
            rf,
            key="window_start|window_size|dimension|dimension_value",
            value="GovernanceMetric (Confluent-wire Avro)",
            doc="Rolling productivity and governance metrics per window and dimension.",
            config={"cleanup.policy": "compact,delete", "retention.ms": str(90 * DAY_MS)},
        ),
        TopicSpec(
            "evidence",
            settings.topic_evidence,
            settings.output_partitions,
            rf,
            key="task_id",
            value="EvidenceDossier (Confluent-wire Avro)",
            doc="One evidence dossier per task; compaction keeps each task's newest revision.",
            config={"cleanup.policy": "compact,delete", "retention.ms": str(400 * DAY_MS)},
        ),
        TopicSpec(
            "internal",
            settings.topic_subjects,
            settings.subjects_partitions,
            rf,
            key="partition number (records are placed explicitly by subject hash)",
            value="SubjectBatch: validated, enriched events for one stage-2 partition",
            doc="Stage 1 → stage 2, co-partitioned with the detector and metric tables.",
            config={"retention.ms": str(DAY_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)},
        ),
    ]


def spec_for(settings: Settings, role: Role) -> TopicSpec:
    """The spec of one role's topic."""
    for spec in topic_specs(settings):
        if spec.role == role:
            return spec
    raise KeyError(role)
