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

import copy
import io
import json
import struct
from collections.abc import Mapping
from typing import Any, Final

import fastavro
import orjson

from pipeline.codec import MAGIC, load_schema
from pipeline.errors import InfraError, RejectedInput

#: Local catalogue id of the evidence schema (events use 1 and 2, metrics 10).
LOCAL_EVIDENCE_SCHEMA_ID: Final = 20
EVIDENCE_RECORD: Final = "io.govpipe.v1.EvidenceDossier"
DEFAULT_TOPIC: Final = "governance.evidence.v1"
#: A dossier larger than this is not one govpipe wrote (its lists are bounded).
MAX_RECORD_BYTES: Final = 1024 * 1024


def evidence_schema() -> dict[str, Any]:
    """``schemas/evidence.avsc`` as JSON (with logical types: what registries get)."""
    return load_schema("evidence.avsc")


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    return schema


def _parse(schema: dict[str, Any]) -> Any:
    return fastavro.parse_schema(_strip_logical(copy.deepcopy(schema)))


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
        self.subject = f"{topic}-value"
        self._client = client
        if client is None and registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._client = SchemaRegistryClient.new_client({"url": registry_url})
        self._reader = _parse(evidence_schema())
        self._writer_schema = writer_schema or evidence_schema()
        self._writer = _parse(self._writer_schema) if writer_schema else self._reader
        self._writers: dict[int, Any] = {}
        self._schema_id: int | None = None
        if self._client is None:
            self._schema_id = LOCAL_EVIDENCE_SCHEMA_ID
            self._writers[LOCAL_EVIDENCE_SCHEMA_ID] = self._writer

    @property
    def uses_registry(self) -> bool:
        return self._client is not None

    def register(self) -> int:
        """The writer schema's id: local, or registered under ``{topic}-value``."""
        if self._schema_id is not None:
            return self._schema_id
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema_id = int(
                self._client.register_schema(
                    self.subject, Schema(json.dumps(self._writer_schema), "AVRO")
                )
            )
        except SchemaRegistryError as exc:
            raise InfraError(
                f"schema registry refused {self.subject} ({exc.http_status_code}): "
                "is the change backward compatible?"
            ) from None
        except Exception as exc:
            raise InfraError(f"schema registry unreachable ({type(exc).__name__})") from None
        self._writers[schema_id] = self._writer
        self._schema_id = schema_id
        return schema_id

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(struct.pack(">bI", MAGIC, self.register()))
        fastavro.schemaless_writer(buf, self._writer, dict(record))
        return buf.getvalue()

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

    def _writer_for(self, schema_id: int) -> Any:
        found = self._writers.get(schema_id)
        if found is not None:
            return found
        if self._client is None:
            raise RejectedInput("unknown_schema_id", f"schema id {schema_id} is not local")
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise RejectedInput(
                    "unknown_schema_id", f"schema id {schema_id} is not in the registry"
                ) from None
            raise InfraError(f"schema registry error {exc.http_status_code}") from None
        except Exception as exc:
            raise InfraError(f"schema registry unreachable ({type(exc).__name__})") from None
        try:
            parsed_json = json.loads(schema.schema_str)
            name = parsed_json.get("name", "")
            full = name if "." in name else f"{parsed_json.get('namespace')}.{name}"
            if full != EVIDENCE_RECORD:
                raise RejectedInput("unsupported_schema", f"schema id {schema_id} is {full}")
            parsed = _parse(parsed_json)
        except RejectedInput:
            raise
        except Exception as exc:
            raise RejectedInput(
                "unsupported_schema", f"schema id {schema_id} does not parse ({type(exc).__name__})"
            ) from None
        self._writers[schema_id] = parsed
        return parsed

    def _decode_avro(self, value: bytes) -> dict[str, Any]:
        if len(value) < 5:
            raise RejectedInput("invalid_avro", "Confluent wire header is truncated")
        (schema_id,) = struct.unpack_from(">I", value, 1)
        writer = self._writer_for(schema_id)
        buf = io.BytesIO(value)
        buf.seek(5)
        try:
            reader = None if writer is self._reader else self._reader
            datum: Any = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:
            raise RejectedInput(
                "invalid_avro", f"Avro does not decode: {type(exc).__name__}"
            ) from None
        if buf.tell() != len(value):
            raise RejectedInput("invalid_avro", "trailing bytes after the Avro datum")
        if not isinstance(datum, dict):
            raise RejectedInput("invalid_avro", "Avro datum is not a record")
        return datum
