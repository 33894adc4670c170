"""RS-01 too-fast approval: approved faster than anyone can read what was asked.

The review clock starts at the request, or at the approver's first view of it when
there is one: a request can wait unread in a queue, and the time that matters is
the time the approver had it in front of them. Judged once the watermark passes
the decision, so a view that arrives slightly out of order still counts. Denials
are not judged: a hasty "no" grants nothing.
"""

from __future__ import annotations

from pipeline.detectors import _approvals as approvals
from pipeline.detectors.base import (
    REVIEW_EFFECTS,
    SECOND,
    Context,
    Detector,
    DetectorSpec,
    Finding,
    State,
)
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import finding

HIGH_RISK = frozenset({"high", "critical"})

SPEC = DetectorSpec(
    id="RS-01",
    title="Too-fast approval",
    description=(
        "An approval was decided within the minimum review time of its request (or of the "
        "approver first viewing it): under 30 s for high/critical risk, under 10 s otherwise."
    ),
    severity="medium",
    subject="approval",
    event_types=frozenset({"approval.requested", "approval.viewed", "approval.decided"}),
    thresholds={"min_review_s": 10, "min_review_high_risk_s": 30},
    provides={  # the evidence dossier's "review time ok" (pipeline/evidence)
        "min_review_ms": lambda thresholds: int(thresholds["min_review_s"]) * 1000,
        "min_review_high_risk_ms": lambda th: int(th["min_review_high_risk_s"]) * 1000,
    },
    frameworks=(nist_csf("PR.AA-05"), ai_rmf("GOVERN 3.2"), ai_rmf("MEASURE 2.8"), maestro(6)),
    remediation=(
        "Review the approved action with the approver and enforce a minimum review time "
        "(or a second approver) for requests of this risk."
    ),
    effects=REVIEW_EFFECTS,
)


def _verdict(ctx: Context, state: State, decided: approvals.Brief) -> list[Finding]:
    finding = _finding(ctx, state, decided)
    return [finding] if finding is not None else []


def _finding(ctx: Context, state: State, decided: approvals.Brief) -> Finding | None:
    if decided["decision"] != "approved":
        return None
    requested = state.get("requested")
    if requested is not None and requested["t"] > decided["t"]:
        requested = None  # a "request" after its decision starts no review
    view = approvals.first_view_by(state, decided["approver"], decided["t"])
    starts = [s for s in (requested, view) if s is not None]
    if not starts:
        return None  # nothing to measure from; RS-04/RS-06 cover the missing parts
    start = max(starts, key=lambda s: s["t"])
    risk = (requested or {}).get("risk") or decided["risk"]
    high = risk in HIGH_RISK
    minimum_s = ctx.thresholds["min_review_high_risk_s" if high else "min_review_s"]
    review_ms = decided["t"] - start["t"]
    if review_ms >= minimum_s * SECOND:
        return None
    return finding(
        ctx,
        event_ids=[s["id"] for s in starts] + [decided["id"]],
        facts={
            "review_seconds": review_ms / SECOND,
            "min_review_seconds": minimum_s,
            "review_started_by": "approval.viewed" if start is view else "approval.requested",
            "risk": risk,
            "requested_at": requested["t"] if requested else None,
            "viewed_at": view["t"] if view else None,
            "decided_at": decided["t"],
        },
        time=decided["t"],
        context=approvals.approval_context(state, decided),
        severity="high" if high else None,
    )


on_events, on_watermark = approvals.judged_once(_verdict)
DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
