"""Typed records at each boundary: the input event (docs/contracts/input.md) and the rejection.

``AgentEvent`` mirrors ``schemas/agent_event.avsc`` field by field (a test keeps
them in sync). Every limit below exists because every input field is hostile.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class EventType(StrEnum):
    ACTION = "action"
    CREDENTIAL_ISSUED = "credential.issued"
    CREDENTIAL_ROTATED = "credential.rotated"
    CREDENTIAL_REVOKED = "credential.revoked"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_VIEWED = "approval.viewed"
    APPROVAL_DECIDED = "approval.decided"
    TASK_STARTED = "task.started"
    TASK_COMPLETED = "task.completed"
    DELEGATION = "delegation"


EVENT_TYPES: frozenset[str] = frozenset(t.value for t in EventType)

#: Sane bounds for event time (2000-01-01 .. 2100-01-01): anything else is a unit bug.
MIN_EPOCH_MS = 946_684_800_000
MAX_EPOCH_MS = 4_102_444_800_000
MAX_ID = 256
MAX_TEXT = 4096
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 128
MAX_SCOPES = 256


def to_epoch_ms(value: Any) -> Any:
    """Accept epoch milliseconds or an ISO-8601 string (naive = UTC)."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("not an ISO-8601 timestamp or epoch milliseconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


EpochMs = Annotated[int, BeforeValidator(to_epoch_ms), Field(ge=MIN_EPOCH_MS, le=MAX_EPOCH_MS)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Level = Annotated[Literal["low", "medium", "high", "critical"], BeforeValidator(_lower)]
Decision = Annotated[Literal["allow", "deny"], BeforeValidator(_lower)]
Outcome = Annotated[Literal["success", "failure", "error"], BeforeValidator(_lower)]
ApprovalDecision = Annotated[Literal["approved", "denied"], BeforeValidator(_lower)]
Scope = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
AttrKey = Annotated[str, Field(min_length=1, max_length=MAX_ATTRIBUTE_KEY)]


class AgentEvent(BaseModel):
    """One event of ``agent.events.v1``; fields that do not apply are None."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)

    event_id: Id
    event_type: EventType
    event_time: EpochMs
    platform: Id
    environment: Id | None = None
    identity_id: Id | None = None
    on_behalf_of: Id | None = None
    task_id: Id | None = None
    trace_id: Id | None = None
    parent_event_id: Id | None = None
    action: Id | None = None
    resource: Text | None = None
    scope: Scope | None = None
    sensitivity: Level | None = None
    credential_id: Id | None = None
    policy_decision: Decision | None = None
    policy_id: Id | None = None
    policy_reason: Text | None = None
    outcome: Outcome | None = None
    latency_ms: Annotated[int, Field(ge=0, le=10**12, strict=False)] | None = None
    credential_kind: Id | None = None
    issued_via: Id | None = None
    scopes: Annotated[list[Scope], Field(max_length=MAX_SCOPES)] | None = None
    expires_at: EpochMs | None = None
    approval_id: Id | None = None
    approver: Id | None = None
    decision: ApprovalDecision | None = None
    risk: Level | None = None
    justification: Text | None = None
    delegate_identity_id: Id | None = None
    attributes: Annotated[dict[AttrKey, Text], Field(max_length=MAX_ATTRIBUTES)] = Field(
        default_factory=dict
    )


class AgentEventBatch(BaseModel):
    """Many events in one record (``schemas/agent_event_batch.avsc``)."""

    events: list[AgentEvent]


#: Names of the fields in contract order (used by codecs and the schema test).
EVENT_FIELDS: tuple[str, ...] = tuple(AgentEvent.model_fields)
