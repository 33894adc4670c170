"""The must-show task of issue 14, as enriched events and alerts (shared by the tests).

A task started for a human (alice) by agent A; A delegates to agent B with a subset of
its scopes; B gets a JIT credential; an approval is viewed and decided; four actions,
one denied by policy with a reason; A's credential is revoked in time, B's late.
"""

from __future__ import annotations

from typing import Any

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S = 1000
TASK = "task-must-show"
HUMAN = "alice@example.com"
A, B = "agent-a", "agent-b"
CRED_A, CRED_B = "cred-a", "cred-b"
APPROVAL = "ap-1"
APPROVER = "carol@example.com"
COMPLETED = T0 + 80 * S
GRACE_MS = 300 * S  # SP-02's default grace_s, checked against the spec in the tests
LATE_REVOCATION = COMPLETED + 400 * S

IDENTITIES: dict[str, dict[str, Any]] = {
    A: {
        "known": True,
        "kind": "ai_agent",
        "owner": "bob@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": ["crm.read", "crm.write", "crm.export"],
        "status": "active",
        "owner_status": "active",
    },
    B: {
        "known": True,
        "kind": "ai_agent",
        "owner": "bob@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "medium",
        "allowed_scopes": ["crm.read"],
        "status": "active",
        "owner_status": "active",
        "mode": "assistant",
    },
}


def credential_view(
    cred: str, owner: str, issued: int, revoked: int | None = None
) -> dict[str, Any]:
    return {
        "known": True,
        "identity_id": owner,
        "kind": "jit_token",
        "issued_via": "jit",
        "scopes": ["crm.read"],
        "issued_at": issued,
        "expires_at": issued + 1800 * S,
        "rotated_at": None,
        "revoked_at": revoked,
        "last_used_at": None,
        "task_id": TASK,
        "lifetime_ms": 1800 * S,
    }


def event(event_id: str, event_type: str, t: int, **fields: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "event_time": t,
        "platform": "crm-agents",
        "environment": "prod",
        "task_id": TASK,
        "on_behalf_of": HUMAN,
        "attributes": {},
    }
    e.update(fields)
    ident = e.get("identity_id")
    if ident:
        e["identity"] = IDENTITIES.get(ident, {"known": False})
    return e


def events() -> list[dict[str, Any]]:
    """Every event of the task except B's late revocation."""
    started = event("e-start", "task.started", T0, identity_id=A)
    return [
        started,
        event(
            "e-iss-a",
            "credential.issued",
            T0 + 1 * S,
            identity_id=A,
            credential_id=CRED_A,
            credential_kind="jit_token",
            issued_via="jit",
            scopes=["crm.read", "crm.write", "crm.export"],
            expires_at=T0 + 1801 * S,
            parent_event_id="e-start",
        ),
        event(
            "e-act-1",
            "action",
            T0 + 5 * S,
            identity_id=A,
            action="crm.records.read",
            resource="crm://accounts/1",
            scope="crm.read",
            sensitivity="low",
            credential_id=CRED_A,
            credential=credential_view(CRED_A, A, T0 + 1 * S),
            policy_decision="allow",
            policy_id="pol-read",
            policy_reason="reads are allowed for sales agents",
            outcome="success",
            justification="look up the account",
            parent_event_id="e-start",
        ),
        event(
            "e-deleg",
            "delegation",
            T0 + 10 * S,
            identity_id=A,
            delegate_identity_id=B,
            scopes=["crm.read"],
            credential_id=CRED_A,
            parent_event_id="e-start",
        ),
        event(
            "e-iss-b",
            "credential.issued",
            T0 + 11 * S,
            identity_id=B,
            credential_id=CRED_B,
            credential_kind="jit_token",
            issued_via="jit",
            scopes=["crm.read"],
            expires_at=T0 + 1811 * S,
            parent_event_id="e-deleg",
        ),
        event(
            "e-req",
            "approval.requested",
            T0 + 12 * S,
            identity_id=A,
            approval_id=APPROVAL,
            risk="medium",
            justification="quarterly export requested by alice",
        ),
        event("e-view", "approval.viewed", T0 + 20 * S, approval_id=APPROVAL, approver=APPROVER),
        event(
            "e-dec",
            "approval.decided",
            T0 + 60 * S,
            approval_id=APPROVAL,
            approver=APPROVER,
            decision="approved",
            risk="medium",
        ),
        event(
            "e-act-2",
            "action",
            T0 + 65 * S,
            identity_id=A,
            action="crm.records.export",
            resource="crm://exports/q3",
            scope="crm.export",
            sensitivity="high",
            credential_id=CRED_A,
            credential=credential_view(CRED_A, A, T0 + 1 * S),
            policy_decision="allow",
            policy_id="pol-export",
            policy_reason="approved export",
            outcome="success",
            approval_id=APPROVAL,
        ),
        event(
            "e-act-3",
            "action",
            T0 + 70 * S,
            identity_id=B,
            action="crm.records.read",
            resource="crm://accounts/2",
            scope="crm.read",
            sensitivity="low",
            credential_id=CRED_B,
            credential=credential_view(CRED_B, B, T0 + 11 * S),
            policy_decision="allow",
            policy_id="pol-read",
            policy_reason="reads are allowed for sales agents",
            outcome="success",
            parent_event_id="e-deleg",
        ),
        event(
            "e-act-4",
            "action",
            T0 + 75 * S,
            identity_id=B,
            action="crm.records.delete",
            resource="crm://accounts/2",
            scope="crm.write",
            sensitivity="medium",
            credential_id=CRED_B,
            credential=credential_view(CRED_B, B, T0 + 11 * S),
            policy_decision="deny",
            policy_id="pol-delete",
            policy_reason="delegates may not delete records",
            outcome="failure",
            parent_event_id="e-deleg",
        ),
        event("e-done", "task.completed", COMPLETED, identity_id=A, outcome="success"),
        # A's credential revoked in time; the revocation carries no task_id (it reaches
        # the task through the credential's registry task_id)
        event(
            "e-rev-a",
            "credential.revoked",
            COMPLETED + 10 * S,
            identity_id=A,
            credential_id=CRED_A,
            task_id=None,
        ),
    ]


def late_revocation() -> dict[str, Any]:
    return event(
        "e-rev-b",
        "credential.revoked",
        LATE_REVOCATION,
        identity_id=B,
        credential_id=CRED_B,
        credential=credential_view(CRED_B, B, T0 + 11 * S, revoked=LATE_REVOCATION),
    )


SP02_ALERT_ID = "0b6f2a8e-0000-5000-8000-00000000sp02"


def sp02_alert(count: int = 1) -> dict[str, Any]:
    return {
        "alert_id": SP02_ALERT_ID,
        "detector": "SP-02",
        "severity": "medium",
        "task_id": TASK,
        "time": COMPLETED + GRACE_MS,
        "count": count,
        "activity_id": 1 if count == 1 else 2,
        "finding_info": {"first_seen_time": COMPLETED},
        "frameworks": [
            {"framework": "OWASP-NHI", "control": "NHI-07"},
            {"framework": "NIST-CSF-2.0", "control": "PR.AA-01"},
        ],
    }


def clean_events(task: str = "task-clean") -> list[dict[str, Any]]:
    """A task with every verdict green."""
    out = []
    for e in events():
        if e["event_id"] in ("e-act-4",):
            continue
        e = dict(e, task_id=task if e.get("task_id") else None)
        out.append(e)
    out.append(
        dict(
            late_revocation(),
            event_id="e-rev-b",
            event_time=COMPLETED + 20 * S,
            credential=credential_view(CRED_B, B, T0 + 11 * S, revoked=COMPLETED + 20 * S),
            task_id=task,
        )
    )
    return out
