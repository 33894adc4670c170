"""Wire formats of agent.events.v1: Confluent-framed Avro and UTF-8 JSON, single or batch.

Decoding is split in two on purpose: ``frame`` looks at the bytes and says which
schema id (if any) they need, so the caller can resolve unknown ids against a
Schema Registry asynchronously; ``decode`` then runs synchronously and fast.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import fastavro
import orjson

from pipeline.avro_reader import Fallback, Reader, compile_reader
from pipeline.errors import RejectedInput

MAGIC = 0
#: Ids of the local catalogue, used when no Schema Registry is configured.
LOCAL_EVENT_SCHEMA_ID = 1
LOCAL_BATCH_SCHEMA_ID = 2
EVENT_RECORD = "io.govpipe.v1.AgentEvent"
BATCH_RECORD = "io.govpipe.v1.AgentEventBatch"


def schemas_dir() -> Path:
    """``schemas/`` of the checkout, or the copy packed into the wheel."""
    repo = Path(__file__).resolve().parent.parent / "schemas"
    if (repo / "agent_event.avsc").is_file():
        return repo
    return Path(str(resources.files("pipeline").joinpath("_schemas")))


def load_schema(name: str) -> dict[str, Any]:
    """A schema file of ``schemas/`` as JSON (references not yet expanded)."""
    data: dict[str, Any] = json.loads((schemas_dir() / name).read_text("utf-8"))
    return data


def event_schema() -> dict[str, Any]:
    return load_schema("agent_event.avsc")


def batch_schema() -> dict[str, Any]:
    """The batch schema with the event schema inlined (self-contained for registries)."""
    batch = load_schema("agent_event_batch.avsc")
    batch["fields"][0]["type"]["items"] = event_schema()
    return batch


def strip_logical(schema: Any) -> Any:
    """Read timestamp-millis as plain longs: same bytes, no datetime round trip."""
    if isinstance(schema, dict):
        return {k: strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical(s) for s in schema]
    return schema


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A writer schema ready for fast decoding; ``batch`` when it wraps events.

    ``reader`` is the schema compiled by ``pipeline.avro_reader`` (None when it
    uses types that reader leaves to fastavro).
    """

    schema_id: int
    parsed: Any
    batch: bool
    reader: Reader | None = None


def prepare_writer_schema(schema_id: int, schema: Mapping[str, Any]) -> WriterSchema:
    """Parse a writer schema (local or from a registry) for decoding."""
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    full = name if "." in name or not namespace else f"{namespace}.{name}"
    if full not in (EVENT_RECORD, BATCH_RECORD):
        raise RejectedInput(
            "unsupported_schema", f"schema id {schema_id} is {full or 'unnamed'}, not an event"
        )
    parsed = fastavro.parse_schema(strip_logical(copy.deepcopy(dict(schema))))
    return WriterSchema(schema_id, parsed, full == BATCH_RECORD, compile_reader(parsed))


def local_catalogue() -> dict[int, WriterSchema]:
    """The schemas of ``schemas/`` under fixed ids."""
    return {
        LOCAL_EVENT_SCHEMA_ID: prepare_writer_schema(LOCAL_EVENT_SCHEMA_ID, event_schema()),
        LOCAL_BATCH_SCHEMA_ID: prepare_writer_schema(LOCAL_BATCH_SCHEMA_ID, batch_schema()),
    }


Format = Literal["avro", "json"]


def frame(value: bytes | None, max_bytes: int) -> tuple[Format, int | None]:
    """Classify a record: Avro (with its schema id) or JSON. Rejects what is neither."""
    if value is None or len(value) == 0:
        raise RejectedInput("empty_record", "record has no value")
    if len(value) > max_bytes:
        raise RejectedInput(
            "record_too_large", f"record is {len(value)} bytes, limit is {max_bytes}"
        )
    if value[0] == MAGIC:
        if len(value) < 5:
            raise RejectedInput("invalid_avro", "Confluent wire header is truncated")
        (schema_id,) = struct.unpack_from(">I", value, 1)
        return "avro", schema_id
    return "json", None


@dataclass(slots=True)
class DecodedRecord:
    """The raw event mappings of one record, not yet validated."""

    fmt: Format
    batch: bool
    events: list[Any]


def decode_avro(value: bytes, writer: WriterSchema) -> DecodedRecord:
    """Decode a Confluent-framed Avro record with its writer schema.

    The compiled reader decodes what it can vouch for (see ``avro_reader``);
    anything else, including every malformed record, is decoded by fastavro,
    whose result or error is the reference.
    """
    if writer.reader is not None:
        try:
            fast, end = writer.reader(value, 5)
        except Fallback:
            pass
        else:
            if end == len(value):
                if writer.batch:
                    return DecodedRecord("avro", True, list(fast["events"]))
                return DecodedRecord("avro", False, [fast])
    buf = io.BytesIO(value)
    buf.seek(5)
    try:
        datum: Any = fastavro.schemaless_reader(buf, writer.parsed, None)
    except (EOFError, UnicodeDecodeError, ValueError, IndexError, struct.error) as exc:
        raise RejectedInput("invalid_avro", f"Avro does not decode: {type(exc).__name__}") from None
    except Exception as exc:
        raise RejectedInput("invalid_avro", f"Avro does not decode: {type(exc).__name__}") from None
    if buf.tell() != len(value):
        raise RejectedInput(
            "invalid_avro", f"{len(value) - buf.tell()} trailing bytes after the Avro datum"
        )
    if writer.batch:
        return DecodedRecord("avro", True, list(datum["events"]))
    return DecodedRecord("avro", False, [datum])


def decode_json(value: bytes) -> DecodedRecord:
    """Decode a UTF-8 JSON object (one event) or array (a batch)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedInput("invalid_encoding", f"not UTF-8 at byte {exc.start}") from None
    try:
        datum = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RejectedInput("invalid_json", f"not JSON: {exc.msg} at {exc.pos}") from None
    if isinstance(datum, dict):
        return DecodedRecord("json", False, [datum])
    if isinstance(datum, list):
        return DecodedRecord("json", True, datum)
    raise RejectedInput("invalid_json", f"JSON {type(datum).__name__} is not an event or a batch")


# ---- encoding (publishing side) ----------------------------------------------------


def _avro_datum(event: Mapping[str, Any]) -> dict[str, Any]:
    from pipeline.records import EVENT_FIELDS

    out = {name: event.get(name) for name in EVENT_FIELDS}
    if out["attributes"] is None:
        out["attributes"] = {}
    return out


class AvroEncoder:
    """Confluent-framed Avro for events and batches (local ids or registry ids)."""

    def __init__(
        self,
        event_schema_id: int = LOCAL_EVENT_SCHEMA_ID,
        batch_schema_id: int = LOCAL_BATCH_SCHEMA_ID,
    ) -> None:
        self._event_id = event_schema_id
        self._batch_id = batch_schema_id
        self._event = fastavro.parse_schema(strip_logical(event_schema()))
        self._batch = fastavro.parse_schema(strip_logical(batch_schema()))

    def event(self, event: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(struct.pack(">bI", MAGIC, self._event_id))
        fastavro.schemaless_writer(buf, self._event, _avro_datum(event))
        return buf.getvalue()

    def batch(self, events: Iterable[Mapping[str, Any]]) -> bytes:
        buf = io.BytesIO()
        buf.write(struct.pack(">bI", MAGIC, self._batch_id))
        fastavro.schemaless_writer(buf, self._batch, {"events": [_avro_datum(e) for e in events]})
        return buf.getvalue()


def encode_json(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def encode_json_batch(events: Iterable[Mapping[str, Any]]) -> bytes:
    return orjson.dumps([{k: v for k, v in e.items() if v is not None} for e in events])
