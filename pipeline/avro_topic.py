"""Confluent-wire Avro for one output topic: the local schema id or a registry's.

The metrics and evidence topics share this: a value is written with the local
catalogue id, or with the id registered under ``{topic}-value`` when a Schema
Registry is configured, so sinks can fetch the schema by id. Decoding resolves an
older or newer writer schema against the current one (Avro schema resolution:
defaults fill fields a writer lacked). Timestamps stay epoch-ms ints: logical types
are stripped for the codec only, the bytes are the same.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from typing import Any

import fastavro

from pipeline.codec import MAGIC, strip_logical
from pipeline.errors import InfraError, RejectedInput


def parse_schema(schema: dict[str, Any]) -> Any:
    """A schema ready for fastavro, logical types stripped (the input is not changed)."""
    return fastavro.parse_schema(strip_logical(copy.deepcopy(schema)))


def _full_name(schema: dict[str, Any]) -> str:
    name = str(schema.get("name", ""))
    return name if "." in name else f"{schema.get('namespace')}.{name}"


class AvroTopic:
    """One record schema on one topic. ``client``: a ``SchemaRegistryClient`` (or a
    ``mock://`` one in tests); ``writer_schema`` overrides the schema written (tests
    of other versions). Registry calls are synchronous: call ``register()`` once at
    start, off the event loop, not per record."""

    def __init__(
        self,
        schema: dict[str, Any],
        *,
        local_id: int,
        topic: str,
        registry_url: str | None = None,
        client: Any = None,
        writer_schema: dict[str, Any] | None = None,
    ) -> None:
        self.record_name = _full_name(schema)
        self.subject = f"{topic}-value"
        self._client = client
        if client is None and registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._client = SchemaRegistryClient.new_client({"url": registry_url})
        self._reader = parse_schema(schema)
        self._writer_schema = writer_schema or schema
        self._writer = parse_schema(self._writer_schema) if writer_schema else self._reader
        self._writers: dict[int, Any] = {}
        self._schema_id: int | None = None
        if self._client is None:
            self._schema_id = local_id
            self._writers[local_id] = self._writer

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

    def encode(self, datum: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(struct.pack(">bI", MAGIC, self.register()))
        fastavro.schemaless_writer(buf, self._writer, datum)
        return buf.getvalue()

    def decode(self, value: bytes) -> Any:
        """The datum of a Confluent-wire value (first byte 0x00); ``RejectedInput``
        for anything that is not one of this topic's records (never a crash)."""
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
            full = _full_name(parsed_json)
            if full != self.record_name:
                raise RejectedInput("unsupported_schema", f"schema id {schema_id} is {full}")
            parsed = parse_schema(parsed_json)
        except RejectedInput:
            raise
        except Exception as exc:
            raise RejectedInput(
                "unsupported_schema", f"schema id {schema_id} does not parse ({type(exc).__name__})"
            ) from None
        self._writers[schema_id] = parsed
        return parsed
