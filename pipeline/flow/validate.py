"""Stage 1, step 1: bytes → validated events, and a Rejection for everything else.

One bad event inside a batch is rejected alone; the rest of the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.codec import DecodedRecord, decode_avro, decode_json, frame
from pipeline.errors import RejectedInput
from pipeline.flow.event_check import check_event
from pipeline.flow.schemas import SchemaResolver
from pipeline.records import AgentEvent

Event = dict[str, Any]


@dataclass(slots=True)
class Rejection:
    """Why one record (or one event of a batch record) cannot be processed."""

    code: str
    message: str
    payload: bytes
    batch_index: int | None = None


@dataclass(slots=True)
class ValidatedRecord:
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    fmt: str = "json"
    batch: bool = False


def rejection_code(exc: ValidationError) -> tuple[str, str]:
    """A stable DLQ code and a value-free message from pydantic's first error."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    name = loc[0] if loc else "event"
    if first["type"] == "missing":
        code = "missing_field"
    elif name == "event_type":
        code = "unknown_event_type"
    elif name == "attributes":
        code = "invalid_attributes"
    else:
        code = "invalid_field"
    where = ".".join(loc) or "event"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return code, f"{where}: {first['msg']}{more}"


_validate = AgentEvent.__pydantic_validator__.validate_python


def validate_event(raw: Any, *, from_utf8: bool = False) -> Event:
    """A normalised event dict (epoch-ms times, lower-case enums) or RejectedInput.

    The common case goes through ``check_event`` (the model's rules, hand-written);
    whatever it does not accept, valid or not, goes through the pydantic model.
    ``from_utf8``: the strings of ``raw`` were decoded from UTF-8 bytes.
    """
    if raw.__class__ is dict:
        checked = check_event(raw, from_utf8=from_utf8)
        if checked is not None:
            return checked
    elif not isinstance(raw, dict):
        raise RejectedInput("invalid_event", f"a batch element is a {type(raw).__name__}")
    try:
        model = _validate(raw)
    except ValidationError as exc:
        raise RejectedInput(*rejection_code(exc)) from None
    event: Event = dict(model.__dict__)
    event["event_type"] = str(event["event_type"].value)
    return event


def _element_bytes(raw: Any) -> bytes:
    """The bytes of one rejected batch element, replayable on its own.

    orjson refuses nesting deeper than 254 (its decoder accepts 1024) and
    ``repr`` hits the recursion limit well before that, so a deeply nested
    element is written by an iterative encoder instead (it used to make the
    whole record an ``internal_error``).
    """
    try:
        return orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return _dumps_iterative(raw)


def _scalar_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(str(value))  # whatever it was, a string says what it held


def _dumps_iterative(raw: Any) -> bytes:
    """JSON of ``raw`` (dicts, lists, scalars) without recursion, so any depth."""
    out: list[bytes] = []
    stack: list[Any] = [raw]
    literal = bytes  # tokens already encoded sit on the stack as bytes
    while stack:
        item = stack.pop()
        if item.__class__ is literal:
            out.append(item)
        elif isinstance(item, dict):
            parts: list[Any] = [b"{"]
            for n, (key, value) in enumerate(item.items()):
                parts += [b"," if n else b"", _scalar_bytes(str(key)) + b":", value]
            parts.append(b"}")
            stack.extend(reversed(parts))
        elif isinstance(item, list | tuple):
            parts = [b"["]
            for n, value in enumerate(item):
                parts += [b"," if n else b"", value]
            parts.append(b"]")
            stack.extend(reversed(parts))
        else:
            out.append(_scalar_bytes(item))
    return b"".join(out)


class Validator:
    """Decodes and validates records; knows the size limits and schema ids."""

    def __init__(
        self, resolver: SchemaResolver, max_record_bytes: int, max_events_per_record: int
    ) -> None:
        self.resolver = resolver
        self.max_record_bytes = max_record_bytes
        self.max_events = max_events_per_record

    def schema_ids(self, values: list[bytes | None]) -> set[int]:
        """Schema ids these records need (to resolve them before ``validate``)."""
        ids: set[int] = set()
        for value in values:
            if value and len(value) >= 5 and value[0] == 0:
                ids.add(int.from_bytes(value[1:5], "big"))
        return ids

    def decode(self, value: bytes | None) -> DecodedRecord:
        fmt, schema_id = frame(value, self.max_record_bytes)
        assert value is not None
        if fmt == "avro":
            assert schema_id is not None
            return decode_avro(value, self.resolver.get(schema_id))
        return decode_json(value)

    def validate(self, value: bytes | None) -> ValidatedRecord:
        out = ValidatedRecord()
        try:
            decoded = self.decode(value)
        except RejectedInput as exc:
            out.rejections.append(Rejection(exc.code, exc.message, value or b""))
            return out
        out.fmt, out.batch = decoded.fmt, decoded.batch
        if len(decoded.events) > self.max_events:
            out.rejections.append(
                Rejection(
                    "batch_too_large",
                    f"{len(decoded.events)} events in one record, limit is {self.max_events}",
                    value or b"",
                )
            )
            return out
        events = out.events
        for index, raw in enumerate(decoded.events):
            # Decoded from UTF-8 (Avro or orjson): no string holds a lone surrogate.
            event = check_event(raw) if raw.__class__ is dict else None
            if event is not None:
                events.append(event)
                continue
            try:
                events.append(validate_event(raw, from_utf8=True))
            except RejectedInput as exc:
                if not decoded.batch:
                    out.rejections.append(Rejection(exc.code, exc.message, value or b""))
                else:
                    out.rejections.append(
                        Rejection(exc.code, exc.message, _element_bytes(raw), index)
                    )
        return out
