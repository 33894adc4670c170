"""Enriched events for detector tests, clean by default: each test states only its violation.

``enriched(event_type, t, **fields)`` returns the dict stage 2 hands a detector: every
AgentEvent field (inapplicable ones None) plus the stage-1 enrichment. The
defaults describe a well-governed agent: known, active, owned by an active human,
using a short-lived JIT credential whose scopes cover the action, with an allow
decision recorded at request time. Nested enrichment is MERGED, so
``identity={"status": "offboarded"}`` changes one field; pass ``identity=None`` /
``credential=None`` for "no identity_id" / "no credential_id".

``run(detector, events, ...)`` drives one detector without the engine or policy
overrides: events are grouped by the detector's subject and sorted by event time,
and ``on_watermark`` fires like the engine does (``_deadline <= watermark``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pipeline.detectors.base import MINUTE, SECOND, Context, Detector, Finding, State
from pipeline.detectors.registry import subject_value

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z, a fixed event-time origin
_ids = itertools.count(1)

IDENTITY: Mapping[str, Any] = {
    "known": True,
    "kind": "ai_agent",
    "owner": "alice@example.com",
    "team": "sales",
    "environment": "prod",
    "risk_tier": "low",
    "allowed_scopes": ["crm.read", "crm.write"],
    "status": "active",
    "owner_status": "active",
}

#: Per-type fields that make the event meaningful (inapplicable fields stay None).
_BY_TYPE: Mapping[str, Mapping[str, Any]] = {
    "action": {
        "action": "crm.records.read",
        "resource": "crm://accounts/42",
        "scope": "crm.read",
        "sensitivity": "low",
        "credential_id": "cred-1",
        "policy_decision": "allow",
        "policy_id": "pol-crm-read",
        "outcome": "success",
        "latency_ms": 20,
    },
    "credential.issued": {
        "credential_id": "cred-1",
        "credential_kind": "jit_token",
        "issued_via": "jit",
        "scopes": ["crm.read"],
    },
    "credential.rotated": {"credential_id": "cred-1", "credential_kind": "jit_token"},
    "credential.revoked": {"credential_id": "cred-1", "credential_kind": "jit_token"},
    "approval.requested": {"approval_id": "appr-1", "risk": "medium", "justification": "export"},
    "approval.viewed": {"approval_id": "appr-1", "approver": "bob@example.com"},
    "approval.decided": {
        "approval_id": "appr-1",
        "approver": "bob@example.com",
        "decision": "approved",
        "risk": "medium",
    },
    "task.started": {},
    "task.completed": {"outcome": "success"},
    "delegation": {"delegate_identity_id": "agent-2", "scopes": ["crm.read"]},
}

_FIELDS = (
    "event_id event_type event_time platform environment identity_id on_behalf_of task_id "
    "trace_id parent_event_id action resource scope sensitivity credential_id policy_decision "
    "policy_id policy_reason outcome latency_ms credential_kind issued_via scopes expires_at "
    "approval_id approver decision risk justification delegate_identity_id"
).split()

CRED_LIFETIME_MS = 15 * MINUTE  # default JIT lifetime: well within every kind's max TTL
_UNSET: Any = object()


def enriched(
    event_type: str,
    t: int,
    *,
    identity: Mapping[str, Any] | None = _UNSET,
    credential: Mapping[str, Any] | None = _UNSET,
    **fields: Any,
) -> dict[str, Any]:
    """A full enriched event at event time ``t`` (ms); ``fields`` override AgentEvent fields."""
    event: dict[str, Any] = dict.fromkeys(_FIELDS)
    event.update(
        event_id=f"ev-{next(_ids):06d}",
        event_type=event_type,
        event_time=t,
        platform="crm-agents",
        environment="prod",
        identity_id="agent-1",
        on_behalf_of="alice@example.com",
        task_id="task-1",
        attributes={},
    )
    event.update(_BY_TYPE.get(event_type, {}))
    if event_type == "credential.issued":
        event["expires_at"] = t + CRED_LIFETIME_MS
    event.update(fields)

    if identity is None or event["identity_id"] is None:
        event["identity"] = None
    else:
        event["identity"] = {**IDENTITY, **(identity if identity is not _UNSET else {})}

    if credential is None or event["credential_id"] is None:
        event["credential"] = None
    else:
        event["credential"] = _credential(event, {} if credential is _UNSET else credential)
    return event


def _credential(event: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    t = event["event_time"]
    issued_at = t - MINUTE if event["event_type"] != "credential.issued" else t
    cred: dict[str, Any] = {
        "known": True,
        "identity_id": event["identity_id"],
        "kind": "jit_token",
        "issued_via": "jit",
        "scopes": list(event["scopes"] or ["crm.read"]),
        "issued_at": issued_at,
        "expires_at": issued_at + CRED_LIFETIME_MS,
        "rotated_at": None,
        "revoked_at": None,
        "last_used_at": None,
        "task_id": event["task_id"],
    }
    cred.update(over)
    if "lifetime_ms" not in over:
        exp, iss = cred["expires_at"], cred["issued_at"]
        cred["lifetime_ms"] = exp - iss if exp is not None and iss is not None else None
    return cred


def run(
    detector: Detector,
    events: list[dict[str, Any]],
    *,
    watermark: int | None = None,
    thresholds: Mapping[str, Any] | None = None,
    states: dict[str, State] | None = None,
    policy: Any = None,
) -> list[Finding]:
    """Feed ``events`` to one detector per subject, then fire timers up to ``watermark``.

    ``states`` (subject -> state) persists across calls when the test passes one in.
    ``policy`` defaults to the built-in policy (privileged scopes, sensitive actions).
    """
    from pipeline.detectors.policy import DEFAULT_POLICY

    spec = detector.spec
    merged = {**spec.thresholds, **(thresholds or {})}
    states = {} if states is None else states
    wm = watermark if watermark is not None else -1
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(events, key=lambda e: e["event_time"]):
        if event["event_type"] not in spec.event_types:
            continue
        subject = subject_value(spec.subject, event)
        if subject is not None:
            by_subject.setdefault(subject, []).append(event)
    findings: list[Finding] = []
    for subject, batch in by_subject.items():
        ctx = Context(spec, merged, subject, wm, policy or DEFAULT_POLICY)
        findings += detector.on_events(ctx, states.setdefault(subject, {}), batch)
    for subject, state in states.items():
        deadline = state.get("_deadline")
        if deadline is not None and deadline <= wm:
            del state["_deadline"]
            ctx = Context(spec, merged, subject, wm, policy or DEFAULT_POLICY)
            findings += detector.on_watermark(ctx, state)
    return findings


__all__ = ["CRED_LIFETIME_MS", "IDENTITY", "MINUTE", "SECOND", "T0", "enriched", "run"]


def incidents(findings: list[Finding]) -> list[int]:
    """The activity of each finding's alert (1 Create, 2 Update), in order, through
    the engine's dedup: every occurrence is a finding, and the alert id groups the
    occurrences of one subject per dedup period of event time."""
    from pipeline.detectors.engine import DetectionEngine

    engine = DetectionEngine()
    state: State = {}
    return [
        a["activity_id"] for f in findings for a in engine.alerts(state, [f], product_version="t")
    ]
