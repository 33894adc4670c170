"""RS-03 always-yes approver: an approver who (nearly) never says no.

Over enough decisions a real reviewer denies some; 95% or more approved over 50 or
more decisions in a day says the approval step is not filtering anything. The rate
is over a sliding window of the approver's decisions (exact, in event-time order).
Once it fires, that window [first decision, +24 h) is reported: decisions inside it
are not counted again, and the next finding needs a fresh window of decisions after
it, so a persistent rubber-stamper is reported once a day, not once a decision.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors import _ordered as ordered
from pipeline.detectors.base import (
    DAY,
    SECOND,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf

#: Decisions held in the sliding window: past this the oldest go (the rate is then over
#: the latest MAX_RECENT decisions, still far more than the minimum).
MAX_RECENT = 2000
#: Ids kept as evidence (the most recent decisions of the window).
MAX_EVIDENCE = 20

SPEC = DetectorSpec(
    id="RS-03",
    title="Always-yes approver",
    description=("An approver approved at least 95% of at least 50 decisions within 24 hours."),
    severity="medium",
    subject="approver",
    event_types=frozenset({"approval.decided"}),
    window_ms=DAY,
    thresholds={"min_approval_rate": 0.95, "min_decisions": 50, "window_s": DAY // SECOND},
    frameworks=(
        nist_csf("PR.AA-05"),
        ai_rmf("GOVERN 3.2"),
        ai_rmf("MEASURE 2.8"),
        maestro(6),
    ),
    remediation=(
        "Sample this approver's recent approvals for re-review and check that their queue "
        "gives them the context and time to deny."
    ),
)

#: Held record layout: [event_time, event_id, decision, platform, environment].
FIELDS = ("decision", "platform", "environment")


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    ordered.hold(state, events, *FIELDS)
    return _advance(ctx, state)


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    return _advance(ctx, state)


def _advance(ctx: Context, state: State) -> list[Finding]:
    window = int(ctx.thresholds["window_s"]) * SECOND
    findings: list[Finding] = []
    for record in ordered.release(ctx, state):
        t = record[0]
        reported = state.get("reported_until")
        if reported is not None and t < reported:
            continue  # inside a window already reported
        recent: list[list[Any]] = state.setdefault("recent", [])
        recent.append([t, int(record[2] == "approved")])
        drop = 0
        while drop < len(recent) and recent[drop][0] <= t - window:
            drop += 1
        del recent[: max(drop, len(recent) - MAX_RECENT)]
        evidence: list[str] = state.setdefault("evidence", [])
        evidence.append(record[1])
        del evidence[: max(len(evidence) - MAX_EVIDENCE, 0)]
        finding = _check(ctx, state, record, recent, window)
        if finding is not None:
            findings.append(finding)
    state.pop("_deadline", None)
    if (deadline := ordered.next_held(state)) is not None:
        state["_deadline"] = deadline
    return findings


def _check(
    ctx: Context, state: State, record: list[Any], recent: list[list[Any]], window: int
) -> Finding | None:
    total = len(recent)
    approved = sum(r[1] for r in recent)
    rate = float(ctx.thresholds["min_approval_rate"])
    if total < int(ctx.thresholds["min_decisions"]) or approved < rate * total - 1e-9:
        return None
    start = recent[0][0]
    evidence = list(state["evidence"])
    state["reported_until"] = start + window
    state["recent"], state["evidence"] = [], []
    return Finding(
        detector=ctx.spec.id,
        subject=ctx.subject,
        event_ids=evidence,
        facts={
            "approval_rate": round(approved / total, 4),
            "approved_in_window": approved,
            "decisions_in_window": total,
            "min_approval_rate": rate,
            "min_decisions": int(ctx.thresholds["min_decisions"]),
            "window_seconds": window // SECOND,
        },
        window_start=start,
        window_end=start + window,
        time=record[0],
        context=_context(ctx.subject, platform=record[3], environment=record[4]),
    )


def _context(approver: str, **fields: Any) -> dict[str, Any]:
    return {"approver": approver, **{k: v for k, v in fields.items() if v}}


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
