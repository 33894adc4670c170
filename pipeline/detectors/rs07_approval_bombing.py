"""RS-07 approval bombing: denied again and again, then approved, within minutes.

The MFA push-bombing pattern applied to agent approvals: a requester (the human an
agent acts for, else the agent) keeps asking until a tired approver gives in. Fires
on the approval that follows at least five denials inside the window; those denials
are then spent, so the next finding needs a new run of denials.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors import _ordered as ordered
from pipeline.detectors.base import (
    MINUTE,
    SECOND,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf

#: Denials remembered per requester (beyond the threshold they add nothing).
MAX_DENIALS = 100
MAX_EVIDENCE = 20

SPEC = DetectorSpec(
    id="RS-07",
    title="Approval bombing",
    description=(
        "At least 5 denied approval requests followed by an approval for the same requester "
        "within 10 minutes."
    ),
    severity="high",
    subject="requester",
    event_types=frozenset({"approval.decided"}),
    window_ms=10 * MINUTE,
    thresholds={"min_denials": 5, "window_s": 10 * MINUTE // SECOND},
    frameworks=(
        nist_csf("DE.AE-02"),
        nist_csf("PR.AA-05"),
        ai_rmf("GOVERN 3.2"),
        maestro(7),
    ),
    remediation=(
        "Revoke or re-review the approval that followed the denials, check whether the "
        "requester's agent is compromised, and throttle repeated requests after a denial."
    ),
)

#: Held record layout: [event_time, event_id, decision, approval_id, approver, platform,
#: environment, identity_id, on_behalf_of].
FIELDS = (
    "decision",
    "approval_id",
    "approver",
    "platform",
    "environment",
    "identity_id",
    "on_behalf_of",
)


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    ordered.hold(state, events, *FIELDS)
    return _advance(ctx, state)


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    return _advance(ctx, state)


def _advance(ctx: Context, state: State) -> list[Finding]:
    window = int(ctx.thresholds["window_s"]) * SECOND
    findings: list[Finding] = []
    for record in ordered.release(ctx, state):
        t, decision = record[0], record[2]
        denials: list[list[Any]] = [d for d in state.get("denials", []) if d[0] > t - window]
        if decision == "denied":
            denials.append([t, record[1], record[3]])
            del denials[: max(len(denials) - MAX_DENIALS, 0)]
        elif decision == "approved" and len(denials) >= int(ctx.thresholds["min_denials"]):
            findings.append(_finding(ctx, record, denials, window))
            denials = []
        state["denials"] = denials
    state.pop("_deadline", None)
    if (deadline := ordered.next_held(state)) is not None:
        state["_deadline"] = deadline
    return findings


def _finding(ctx: Context, approval: list[Any], denials: list[list[Any]], window: int) -> Finding:
    t = approval[0]
    context = {
        "approval_id": approval[3],
        "approver": approval[4],
        "platform": approval[5],
        "environment": approval[6],
        "identity_id": approval[7],
        "on_behalf_of": approval[8],
    }
    return Finding(
        detector=ctx.spec.id,
        subject=ctx.subject,
        event_ids=[d[1] for d in denials[-MAX_EVIDENCE:]] + [approval[1]],
        facts={
            "denials": len(denials),
            "min_denials": int(ctx.thresholds["min_denials"]),
            "seconds_first_denial_to_approval": (t - denials[0][0]) / SECOND,
            "window_seconds": window // SECOND,
            "denied_approval_ids": sorted({d[2] for d in denials if d[2]})[:MAX_EVIDENCE],
            "approved_approval_id": approval[3],
        },
        window_start=denials[0][0],
        window_end=t,
        time=t,
        context={k: v for k, v in context.items() if v},
    )


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
