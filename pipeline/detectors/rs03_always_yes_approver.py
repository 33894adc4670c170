"""RS-03 always-yes approver: an approver who (nearly) never says no.

Over enough decisions a real reviewer denies some; 95% or more approved over 50 or
more decisions in a day says the approval step is not filtering anything. The rate
is over a sliding window of the approver's decisions (exact, in event-time order).
Once it fires, that window [first decision, +24 h) is reported: decisions inside it
are not counted again, and the next finding needs a fresh window of decisions after
it, so a persistent rubber-stamper is reported once a day, not once a decision.
"""

from __future__ import annotations

from pipeline.detectors.base import DAY, REVIEW_EFFECTS, SECOND, Context, DetectorSpec
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import Facts, Record, Window, event_ratio

SPEC = DetectorSpec(
    id="RS-03",
    title="Always-yes approver",
    description=("An approver approved at least 95% of at least 50 decisions within 24 hours."),
    severity="medium",
    subject="approver",
    event_types=frozenset({"approval.decided"}),
    window_ms=DAY,
    thresholds={"min_approval_rate": 0.95, "min_decisions": 50, "window_s": DAY // SECOND},
    frameworks=(nist_csf("PR.AA-05"), ai_rmf("GOVERN 3.2"), ai_rmf("MEASURE 2.8"), maestro(6)),
    remediation=(
        "Sample this approver's recent approvals for re-review and check that their queue "
        "gives them the context and time to deny."
    ),
    effects=REVIEW_EFFECTS,
)


def facts(window: Window, ctx: Context) -> Facts:
    return {
        "approval_rate": round(window.hits / window.count, 4),
        "approved_in_window": window.hits,
        "decisions_in_window": window.count,
        "min_approval_rate": float(ctx.thresholds["min_approval_rate"]),
        "min_decisions": int(ctx.thresholds["min_decisions"]),
        "window_seconds": (window.end - window.start) // SECOND,
    }


def approved(record: Record) -> bool:
    return bool(record["decision"] == "approved")


DETECTOR = event_ratio(
    SPEC,
    fields=("decision", "approval_id", "platform", "environment"),
    hit=approved,
    min_count="min_decisions",
    min_ratio="min_approval_rate",
    facts=facts,
)
