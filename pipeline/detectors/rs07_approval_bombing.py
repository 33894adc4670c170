"""RS-07 approval bombing: denied again and again, then approved, within minutes.

The MFA push-bombing pattern applied to agent approvals: a requester (the human an
agent acts for, else the agent) keeps asking until a tired approver gives in. Fires
on the approval that follows at least five denials inside the window; those denials
are then spent, so the next finding needs a new run of denials.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import MINUTE, REVIEW_EFFECTS, SECOND, Context, DetectorSpec
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import MAX_EVIDENCE, Facts, Record, Window, count_then

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
    frameworks=(nist_csf("DE.AE-02"), nist_csf("PR.AA-05"), ai_rmf("GOVERN 3.2"), maestro(7)),
    remediation=(
        "Revoke or re-review the approval that followed the denials, check whether the "
        "requester's agent is compromised, and throttle repeated requests after a denial."
    ),
    effects=REVIEW_EFFECTS,
)

#: What the alert names: the approval that followed the denials, and who was involved.
CONTEXT = ("approval_id", "approver", "platform", "environment", "identity_id", "on_behalf_of")


def facts(window: Window, ctx: Context) -> Facts:
    denials = window.records[:-1]
    return {
        "denials": window.count,
        "min_denials": int(ctx.thresholds["min_denials"]),
        "seconds_first_denial_to_approval": (window.end - window.start) / SECOND,
        "window_seconds": int(ctx.thresholds["window_s"]),
        "denied_approval_ids": sorted({d["approval_id"] for d in denials if d["approval_id"]})[
            :MAX_EVIDENCE
        ],
        "approved_approval_id": window.last["approval_id"],
    }


def context(window: Window, ctx: Context) -> dict[str, Any]:
    return {name: window.last[name] for name in CONTEXT if window.last[name]}


def denied(record: Record) -> bool:
    return bool(record["decision"] == "denied")


def approved(record: Record) -> bool:
    return bool(record["decision"] == "approved")


DETECTOR = count_then(
    SPEC,
    fields=("decision", *CONTEXT),
    counted=denied,
    trigger=approved,
    threshold="min_denials",
    facts=facts,
    context=context,
)
