"""Topic administration on confluent-kafka's AdminClient (works on Tansu and Apache Kafka)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pipeline.errors import InfraError
from pipeline.settings import Settings
from pipeline.topics import TopicSpec, topic_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicResult:
    name: str
    status: str  # created | exists | failed
    detail: str = ""


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.confluent_config())


def create_topics(
    settings: Settings, specs: list[TopicSpec] | None = None, timeout: float = 30.0
) -> list[TopicResult]:
    """Create every topic idempotently: an existing topic is left as it is and reported."""
    specs = specs if specs is not None else topic_specs(settings)
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise InfraError(
            f"broker at {settings.kafka_bootstrap_servers} unreachable: {exc}"
        ) from None
    results: list[TopicResult] = []
    new = [
        NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
        for s in specs
        if s.name not in existing
    ]
    results.extend(TopicResult(s.name, "exists") for s in specs if s.name in existing)
    if new:
        futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout)
                results.append(TopicResult(name, "created"))
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    results.append(TopicResult(name, "exists"))
                else:
                    results.append(TopicResult(name, "failed", str(err)))
    order = {s.name: i for i, s in enumerate(specs)}
    results.sort(key=lambda r: order.get(r.name, 0))
    return results
