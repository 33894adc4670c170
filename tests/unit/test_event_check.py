"""``check_event`` (the hand-written fast path) agrees with the pydantic model.

Thousands of random and hostile dicts, built field by field from values on
both sides of every rule of ``pipeline/records.py``, go through the model and
through ``validate_event`` / ``Validator.validate`` (fast path first): the same
accept/reject, the same normalised dict (keys, order, values, value types) and
the same DLQ code and message. ``check_event`` itself may only say None or the
model's own answer.
"""

from __future__ import annotations

import enum
import json
import random
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from pipeline.codec import AvroEncoder
from pipeline.errors import RejectedInput
from pipeline.flow.event_check import check_event
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.validate import Validator, rejection_code, validate_event
from pipeline.records import (
    EVENT_FIELDS,
    EVENT_TYPES,
    MAX_ATTRIBUTE_KEY,
    MAX_EPOCH_MS,
    MAX_ID,
    MAX_TEXT,
    MIN_EPOCH_MS,
    AgentEvent,
)
from tests.support.events import make_event

MISSING = object()


class Color(enum.StrEnum):
    HIGH = "high"
    ACTION = "action"


class Sub(str):
    pass


IDS_OK = ["a", "agent-7", "x" * MAX_ID, "é" * MAX_ID, "😀" * MAX_ID, "  padded  ", "a\x00b", "A"]
IDS_BAD = ["", "x" * (MAX_ID + 1), "é" * (MAX_ID + 1), 7, 1.5, True, [], {}, b"id"]
TEXT_OK = ["", "free text", "t" * MAX_TEXT, "ü" * MAX_TEXT]
TEXT_BAD = ["t" * (MAX_TEXT + 1), 3, ["x"]]
TIMES_OK = [
    MIN_EPOCH_MS,
    MAX_EPOCH_MS,
    1_764_000_000_000,
    "1764000000000",
    " 1764000000000 ",
    "2025-11-24T16:00:00Z",
    "2025-11-24T17:00:00+01:00",
    "2025-11-24T16:00:00.123",
    "2025-11-24",
]
TIMES_BAD = [
    MIN_EPOCH_MS - 1,
    MAX_EPOCH_MS + 1,
    1_764_000_000,
    -5,
    True,
    1.764e12,
    1_764_000_000_000.5,
    "yesterday",
    "2025-13-01T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "-1764000000000",
    "",
    None,
    [],
    2**70,
]


def choice_values(allowed: list[str]) -> list[Any]:
    upper = [a.upper() for a in allowed] + [a.capitalize() for a in allowed]
    return [*allowed, *upper, "nope", "", " high", "hİgh", 1, ["low"], {}]


def pool(name: str) -> list[Any]:
    """Values for one field: good ones, bad ones, odd types, absent."""
    if name in ("event_id", "platform"):
        return [*IDS_OK, *IDS_OK, *IDS_BAD, None, MISSING, Sub("s"), Color.HIGH]
    if name == "event_type":
        types = sorted(EVENT_TYPES)
        return [
            *types,
            *types,
            "Action",
            "rm -rf",
            "",
            None,
            MISSING,
            1,
            Color.ACTION,
            Sub("action"),
        ]
    if name in ("event_time", "expires_at"):
        optional = [None, None, MISSING] if name == "expires_at" else [MISSING]
        return [*TIMES_OK, *TIMES_OK, *TIMES_BAD, *optional]
    if name in ("resource", "policy_reason", "justification"):
        return [None, None, MISSING, *TEXT_OK, *TEXT_BAD, Sub("t")]
    if name in ("sensitivity", "risk"):
        return [
            None,
            None,
            MISSING,
            *choice_values(["low", "medium", "high", "critical"]),
            Color.HIGH,
        ]
    if name == "policy_decision":
        return [None, None, MISSING, *choice_values(["allow", "deny"])]
    if name == "outcome":
        return [None, None, MISSING, *choice_values(["success", "failure", "error"])]
    if name == "decision":
        return [None, None, MISSING, *choice_values(["approved", "denied"])]
    if name == "latency_ms":
        return [None, None, MISSING, 0, 20, 10**12, 10**12 + 1, -1, True, 2.0, 2.5, "20", "x"]
    if name == "scopes":
        return [
            None,
            None,
            MISSING,
            [],
            ["crm.read"],
            ["crm.read", "mail.send"],
            ["s"] * 256,
            ["s"] * 257,
            ["x" * MAX_ID],
            ["x" * (MAX_ID + 1)],
            [""],
            ["ok", 3],
            ("crm.read",),
            {"crm.read"},
            "crm.read",
            [Sub("s")],
        ]
    if name == "attributes":
        return [
            MISSING,
            MISSING,
            {},
            {},
            {"user_agent": "python-httpx/0.27", "region": "eu-west-1"},
            {f"k{n}": "v" for n in range(64)},
            {f"k{n}": "v" for n in range(65)},
            {"k" * MAX_ATTRIBUTE_KEY: "v"},
            {"k" * (MAX_ATTRIBUTE_KEY + 1): "v"},
            {"": "v"},
            {"k": "v" * MAX_TEXT},
            {"k": "v" * (MAX_TEXT + 1)},
            {"k": 1},
            {"k": None},
            {"k": {"nested": "x"}},
            {1: "v"},
            {"k": Sub("v")},
            None,
            [],
            "k=v",
        ]
    return [*IDS_OK, *IDS_BAD, None, None, None, None, MISSING, MISSING, Sub("s")]


POOLS = {name: pool(name) for name in EVENT_FIELDS}


def random_raw(rng: random.Random, keep: float) -> dict[Any, Any]:
    """A realistic event with each field replaced by a pool value with odds 1 - keep."""
    raw: dict[Any, Any] = {}
    base = make_event(rng.randrange(1000))
    for name in EVENT_FIELDS:
        if rng.random() < keep:
            value = base.get(name, MISSING)
        else:
            value = rng.choice(POOLS[name])
        if value is not MISSING:
            raw[name] = value
    if rng.random() < 0.2:
        raw["extra_field"] = rng.choice(["x", 1, None, {"a": 1}])
    if rng.random() < 0.05:
        raw[7] = "non-string key"
    if rng.random() < 0.3:  # another key order
        items = list(raw.items())
        rng.shuffle(items)
        raw = dict(items)
    elif rng.random() < 0.5:  # every field present, in order (as Avro gives them)
        raw = {name: raw.get(name) for name in EVENT_FIELDS} | {
            k: v for k, v in raw.items() if k not in EVENT_FIELDS
        }
        if raw["attributes"] is None and rng.random() < 0.8:
            raw["attributes"] = {}
    return raw


def model_answer(raw: Any) -> tuple[str, Any]:
    """What the pydantic model alone says (the reference)."""
    try:
        model = AgentEvent.model_validate(raw)
    except ValidationError as exc:
        return "reject", rejection_code(exc)
    event = dict(model.__dict__)
    event["event_type"] = str(event["event_type"].value)
    return "accept", event


def typed(value: Any) -> Any:
    """A value with the exact type of every part spelled out (``==`` hides str subclasses)."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


def public_answer(raw: Any, from_utf8: bool = False) -> tuple[str, Any]:
    try:
        return "accept", validate_event(raw, from_utf8=from_utf8)
    except RejectedInput as exc:
        return "reject", (exc.code, exc.message)


def assert_same(raw: dict[Any, Any]) -> bool:
    """Checks the contract on ``raw``; True when the fast path answered."""
    verdict, expected = model_answer(raw)
    fast = check_event(raw, from_utf8=False)
    if fast is not None:
        assert verdict == "accept", (raw, expected)
        assert typed(fast) == typed(expected)
    got_verdict, got = public_answer(raw)
    assert got_verdict == verdict
    assert typed(got) == typed(expected) if verdict == "accept" else got == expected
    return fast is not None


@pytest.mark.parametrize("keep", [0.95, 0.8, 0.0])
def test_random_dicts_agree_with_the_model(keep: float) -> None:
    rng = random.Random(int(keep * 100))
    fast = accepted = 0
    for _ in range(3000):
        raw = random_raw(rng, keep)
        fast += assert_same(raw)
        accepted += model_answer(raw)[0] == "accept"
    if keep > 0.9:
        assert accepted > 1000  # both sides of the rules are exercised
        # odd types the model coerces (bytes, str subclasses, floats, "20") are left to it
        assert fast > 0.7 * accepted
    elif keep > 0.5:
        assert 0 < fast < accepted


def test_valid_events_take_the_fast_path() -> None:
    for i in range(200):
        event = make_event(i)
        assert check_event(event) == model_answer(event)[1]
        assert check_event({name: event.get(name) for name in EVENT_FIELDS} | {"attributes": {}})


def test_surrogates_are_left_to_the_model() -> None:
    for raw in (
        make_event(0, identity_id="\ud800"),
        make_event(0, scopes=["ok", "\udfff"]),
        make_event(0, attributes={"k": "\ud83d"}),
        make_event(0, attributes={"\ud83d": "v"}),
    ):
        assert check_event(raw, from_utf8=False) is None
        assert public_answer(raw) == model_answer(raw)
        assert model_answer(raw)[0] == "reject"


def test_result_is_a_fresh_dict() -> None:
    raw = make_event(1, scopes=["a"], attributes={"k": "v"})
    event = check_event(raw)
    assert event is not None and event is not raw
    assert event["scopes"] is not raw["scopes"] and event["attributes"] is not raw["attributes"]
    empty = check_event({k: v for k, v in raw.items() if k != "attributes"})
    assert empty is not None and empty["attributes"] == {}
    empty["attributes"]["x"] = "y"  # the default is not shared
    again = check_event({k: v for k, v in raw.items() if k != "attributes"})
    assert again is not None and again["attributes"] == {}


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_validator_records_agree_with_the_model(fmt: str) -> None:
    """Through the decoders: same events, same rejections (codes, messages, indexes)."""
    rng = random.Random(13)
    validator = Validator(SchemaResolver(), 10_000_000, 10_000)
    enc = AvroEncoder()
    for _ in range(40):
        raws = [random_raw(rng, keep=0.9) for _ in range(50)]
        if fmt == "avro":
            # Avro carries only what its schema can: keep the events it can encode.
            encodable = []
            for raw in raws:
                try:
                    enc.event(raw)
                except Exception:
                    continue
                encodable.append(raw)
            value = enc.batch(encodable)
        else:
            value = json.dumps(raws, default=repr).encode()
        decoded = validator.decode(value).events
        result = validator.validate(value)
        expected_events, expected_rejections = [], []
        for index, raw in enumerate(decoded):
            verdict, answer = model_answer(raw)
            if verdict == "accept":
                expected_events.append(typed(answer))
            else:
                expected_rejections.append((*answer, index))
        assert [typed(e) for e in result.events] == expected_events
        assert [(r.code, r.message, r.batch_index) for r in result.rejections] == (
            expected_rejections
        )
        for r in result.rejections:
            assert orjson.loads(r.payload) == orjson.loads(orjson.dumps(decoded[r.batch_index]))
