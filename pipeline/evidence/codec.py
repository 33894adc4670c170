"""``governance.evidence.v1`` records: Confluent-wire Avro, keyed by ``task_id``.

Like the metrics topic (``pipeline/metrics/codec.py``): the value is written with the
local schema id, or with the id registered under the subject ``{topic}-value`` when a
Schema Registry is configured. ``decode`` takes Avro (first byte 0x00) or JSON (for
tools) and resolves older writer schemas against the current one, so a dossier
written with ``schemas/history/evidence/v1.avsc`` reads with the defaults of v2.
Timestamps stay epoch-ms ints (logical types are stripped for the codec only; the
bytes are the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from pipeline.avro_topic import AvroTopic
from pipeline.codec import MAGIC, load_schema
from pipeline.errors import RejectedInput

#: Local catalogue id of the evidence schema (events use 1 and 2, metrics 10).
LOCAL_EVIDENCE_SCHEMA_ID: Final = 20
EVIDENCE_RECORD: Final = "io.govpipe.v1.EvidenceDossier"
DEFAULT_TOPIC: Final = "governance.evidence.v1"
#: A dossier larger than this is not one govpipe wrote (its lists are bounded).
MAX_RECORD_BYTES: Final = 1024 * 1024


def evidence_schema() -> dict[str, Any]:
    """``schemas/evidence.avsc`` as JSON (with logical types: what registries get)."""
    return load_schema("evidence.avsc")


def record_key(record: Mapping[str, Any]) -> bytes:
    """The Kafka key: ``task_id`` in UTF-8 (every revision of a task shares it)."""
    return str(record["task_id"]).encode("utf-8")


class EvidenceCodec:
    """Encode dossier records (``pipeline.evidence.dossier.next_record``) as Avro; decode
    Avro or JSON. ``client``: a ``SchemaRegistryClient`` (``mock://`` in tests);
    ``writer_schema`` overrides the schema written (tests of older versions). Call
    ``register()`` once at start, off the event loop."""

    def __init__(
        self,
        *,
        topic: str = DEFAULT_TOPIC,
        registry_url: str | None = None,
        client: Any = None,
        writer_schema: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self._avro = AvroTopic(
            evidence_schema(),
            local_id=LOCAL_EVIDENCE_SCHEMA_ID,
            topic=topic,
            registry_url=registry_url,
            client=client,
            writer_schema=writer_schema,
        )
        self.subject = self._avro.subject

    @property
    def uses_registry(self) -> bool:
        return self._avro.uses_registry

    def register(self) -> int:
        """The writer schema's id: local, or registered under ``{topic}-value``."""
        return self._avro.register()

    def encode(self, record: Mapping[str, Any]) -> bytes:
        return self._avro.encode(dict(record))

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """Either format; anything else raises ``RejectedInput`` (never a crash)."""
        if not value:
            raise RejectedInput("empty_record", "record has no value")
        if len(value) > MAX_RECORD_BYTES:
            raise RejectedInput("record_too_large", "dossier larger than any govpipe writes")
        if value[0] == MAGIC:
            return self._decode_avro(value)
        try:
            datum = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RejectedInput("invalid_json", f"not JSON: {exc.msg}") from None
        if not isinstance(datum, dict) or not isinstance(datum.get("task_id"), str):
            raise RejectedInput("invalid_json", "JSON is not a dossier (no task_id)")
        return datum

    def _decode_avro(self, value: bytes) -> dict[str, Any]:
        datum = self._avro.decode(value)
        if not isinstance(datum, dict):
            raise RejectedInput("invalid_avro", "Avro datum is not a record")
        return datum
