"""SP-04: an action's scope is outside its credential's scopes or its identity's allowed scopes,
or was added to the credential after the task began using it (scope added mid-task).

Per credential: scopes granted are tracked with the time they were granted (from
``credential.issued`` / ``credential.rotated``; the registry's scopes when the
issuance was not seen), and each task's first use of the credential. An action
fires when its scope is covered by neither list, or when the grant covering it is
newer than the task's first use. An identity with no ``allowed_scopes`` in the
registry is not checked against them (unconfigured, not "nothing allowed").
"""

from __future__ import annotations

from pipeline.detectors.base import (
    DEFAULT_DEDUP_S,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.common import (
    capped,
    covered,
    credential_of,
    event_context,
    identity_of,
    issuance_known,
    scope_covers,
)
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import finding

ID = "SP-04"
MAX_SCOPES = 256
MAX_TASKS = 64

SPEC = DetectorSpec(
    id=ID,
    title="Out-of-scope use",
    description=(
        "An action exercised a scope outside its credential's scopes or its identity's "
        "allowed scopes, or one added to the credential mid-task."
    ),
    severity="high",
    subject="credential",
    event_types=frozenset({"credential.issued", "credential.rotated", "action"}),
    thresholds={"dedup_s": DEFAULT_DEDUP_S},  # per credential and scope
    frameworks=(
        owasp_nhi(5),
        nist_csf("PR.AA-05"),
        nist_csf("DE.CM-03"),
        ai_rmf("MEASURE 2.7"),
        maestro(3),
    ),
    remediation=(
        "Block the scope at the policy point, review how the agent obtained it, and re-issue "
        "the credential with the task's scopes only."
    ),
)


def _cap(mapping: dict[str, int], limit: int) -> None:
    while len(mapping) > limit:
        del mapping[next(iter(mapping))]


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    findings = []
    granted: dict[str, int] = state.setdefault("granted", {})
    tasks: dict[str, int] = state.setdefault("tasks", {})
    for event in events:
        t = int(event["event_time"])
        kind = event["event_type"]
        task = event.get("task_id")
        if task:
            tasks[task] = min(t, tasks.get(task, t))
            _cap(tasks, MAX_TASKS)
        if kind == "credential.issued":
            if t > int(state.get("issued", -1)):
                state["issued"] = t
                granted.clear()
                granted.update({s: t for s in (event.get("scopes") or [])[:MAX_SCOPES]})
            continue
        if kind == "credential.rotated":
            if event.get("scopes") is not None:
                new = list(event["scopes"])[:MAX_SCOPES]
                kept = {s: granted.get(s, t) for s in new}
                granted.clear()
                granted.update(kept)
                state["issued"] = state.get("issued", t)
            continue
        scope = event.get("scope")
        if not scope:
            continue
        cred = credential_of(event)
        if "issued" in state:
            cred_scopes: list[str] | None = list(granted)
        elif issuance_known(cred):
            cred_scopes = list(cred.get("scopes") or [])
        else:
            cred_scopes = None  # unknown credential or issuance: not a scope fact
        identity = identity_of(event)
        allowed = list(identity.get("allowed_scopes") or []) if identity.get("known") else []

        reasons = []
        if cred_scopes is not None and not covered(scope, cred_scopes):
            reasons.append("outside_credential_scopes")
        if allowed and not covered(scope, allowed):
            reasons.append("outside_identity_allowed_scopes")
        grants = [g_t for g, g_t in granted.items() if scope_covers(g, scope)]
        granted_at = min(grants) if grants else None
        task_first = tasks.get(task) if task else None
        if granted_at is not None and task_first is not None and granted_at > task_first:
            reasons.append("scope_added_mid_task")
        if not reasons:
            continue
        findings.append(
            finding(
                ctx,
                event_ids=[str(event["event_id"])],
                facts={
                    "scope": scope,
                    "reasons": reasons,
                    "credential_scopes": None if cred_scopes is None else capped(cred_scopes),
                    "identity_allowed_scopes": capped(allowed),
                    "scope_granted_at": granted_at,
                    "task_first_use_at": task_first,
                },
                time=t,
                context=event_context(event),
            )
        )
    return findings


DETECTOR = Detector(spec=SPEC, on_events=on_events)
