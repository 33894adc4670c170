"""The Avro schema and the pydantic model are the same contract, field by field."""

from __future__ import annotations

import types
import typing

import fastavro
import pytest

from pipeline.codec import batch_schema, event_schema
from pipeline.records import EVENT_FIELDS, AgentEvent

DESIGN_FIELDS = (
    "event_id event_type event_time platform environment identity_id on_behalf_of task_id "
    "trace_id parent_event_id action resource scope sensitivity credential_id policy_decision "
    "policy_id policy_reason outcome latency_ms credential_kind issued_via scopes expires_at "
    "approval_id approver decision risk justification delegate_identity_id attributes"
).split()
REQUIRED = {"event_id", "event_type", "event_time", "platform"}


def avro_fields() -> dict[str, dict]:
    return {f["name"]: f for f in event_schema()["fields"]}


def test_field_names_and_order_match_design() -> None:
    assert list(avro_fields()) == DESIGN_FIELDS
    assert list(EVENT_FIELDS) == DESIGN_FIELDS


@pytest.mark.parametrize("name", DESIGN_FIELDS)
def test_nullability_and_defaults_agree(name: str) -> None:
    field = avro_fields()[name]
    model_field = AgentEvent.model_fields[name]
    if name in REQUIRED:
        assert model_field.is_required()
        assert not isinstance(field["type"], list)
        assert "default" not in field
    elif name == "attributes":
        assert field["type"] == {"type": "map", "values": "string"}
        assert field["default"] == {}
        assert not model_field.is_required()
    else:
        assert isinstance(field["type"], list) and field["type"][0] == "null"
        assert field["default"] is None, "optional fields default to null so the schema evolves"
        assert model_field.default is None


def _base_type(annotation: object) -> object:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin is typing.Annotated:
        return _base_type(typing.get_args(annotation)[0])
    return annotation


def _avro_kind(avro_type: object) -> object:
    if isinstance(avro_type, list):
        avro_type = next(t for t in avro_type if t != "null")
    return avro_type


@pytest.mark.parametrize("name", DESIGN_FIELDS)
def test_types_agree(name: str) -> None:
    avro = _avro_kind(avro_fields()[name]["type"])
    py = _base_type(AgentEvent.model_fields[name].annotation)
    if name in ("event_time", "expires_at"):
        assert avro == {"type": "long", "logicalType": "timestamp-millis"}
        assert py is int
    elif name == "latency_ms":
        assert avro == "long" and py is int
    elif name == "scopes":
        assert avro == {"type": "array", "items": "string"}
        assert typing.get_origin(py) is list
    elif name == "attributes":
        assert typing.get_origin(py) is dict
    elif name == "event_type":
        assert avro == "string"
    else:
        assert avro == "string", name
        assert py is str or typing.get_origin(py) is typing.Literal, name


def test_schemas_parse_and_batch_wraps_events() -> None:
    fastavro.parse_schema(event_schema())
    batch = batch_schema()
    fastavro.parse_schema(batch)
    assert batch["fields"][0]["type"]["items"]["name"] == "AgentEvent"
