"""The life of one approval as the RS-01/04/05/06 detectors keep it (subject: approval).

Each of these rules is judged once, when the decision is final *and* complete: the
watermark has passed the decision's event time, so a request or view that arrived a
little late (within the allowed lateness) is already in the state. Judged approvals
keep only a ``done`` marker, so a redelivered decision does not judge them twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.detectors.base import Context, Event, Finding, OnEvents, OnWatermark, State
from pipeline.detectors.common import event_context, identity_of
from pipeline.detectors.windows import DEADLINE

#: Distinct viewers remembered per approval (a real review has one or two).
MAX_VIEWERS = 16

Brief = dict[str, Any]


def brief(event: Event) -> Brief:
    """What the rules need of one approval event (JSON-able, no payload)."""
    return {
        "t": int(event["event_time"]),
        "id": str(event["event_id"]),
        "approver": event.get("approver"),
        "decision": event.get("decision"),
        "risk": event.get("risk"),
        "identity_id": event.get("identity_id"),
        "on_behalf_of": event.get("on_behalf_of"),
        "owner": identity_of(event).get("owner"),
        "context": event_context(event),
    }


def _keep_earliest(slot: dict[str, Any], key: str, event: Event) -> None:
    current = slot.get(key)
    if current is None or int(event["event_time"]) < current["t"]:
        slot[key] = brief(event)


def viewer_key(approver: str | None) -> str:
    return (approver or "").casefold()


def note(state: State, events: list[Event]) -> None:
    """Remember the earliest request, each viewer's first view and the first decision."""
    if state.get("done"):
        return
    for event in events:
        kind = event["event_type"]
        if kind == "approval.requested":
            _keep_earliest(state, "requested", event)
        elif kind == "approval.decided":
            _keep_earliest(state, "decided", event)
        elif kind == "approval.viewed":
            views: dict[str, Brief] = state.setdefault("views", {})
            key = viewer_key(event.get("approver"))
            if key in views or len(views) < MAX_VIEWERS:
                _keep_earliest(views, key, event)


def decided_and_complete(ctx: Context, state: State) -> Brief | None:
    """The decision once the watermark has passed it (then call ``finish``); else None.

    Until then a timer is armed at the decision's event time.
    """
    decided: Brief | None = state.get("decided")
    if state.get("done") or decided is None:
        return None
    if decided["t"] > ctx.watermark:
        state[DEADLINE] = decided["t"]
        return None
    return decided


def finish(state: State) -> None:
    """Judged: keep only a marker (the engine drops empty state, which would re-judge)."""
    decided_at = state.get("decided", {}).get("t")
    state.clear()
    state["done"] = decided_at if decided_at is not None else True


def first_view_by(state: State, approver: str | None, before: int) -> Brief | None:
    """The approver's first view at or before ``before``; any viewer's if none is named."""
    views: dict[str, Brief] = state.get("views", {})
    if approver:
        view = views.get(viewer_key(approver))
        return view if view is not None and view["t"] <= before else None
    earlier = [v for v in views.values() if v["t"] <= before]
    return min(earlier, key=lambda v: v["t"]) if earlier else None


def approval_context(state: State, decided: Brief) -> dict[str, Any]:
    """Alert context: who asked comes from the request, who decided from the decision."""
    requested: Brief = state.get("requested") or {}
    ctx = {**decided["context"], **requested.get("context", {})}
    if decided.get("approver"):
        ctx["approver"] = decided["approver"]
    return ctx


Verdict = Callable[[Context, State, Brief], list[Finding]]


def judged_once(verdict: Verdict) -> tuple[OnEvents, OnWatermark]:
    """The on_events / on_watermark pair of a detector that judges each approval once,
    when the watermark has passed its decision: note the events, wait, judge, finish."""

    def judge(ctx: Context, state: State) -> list[Finding]:
        decided = decided_and_complete(ctx, state)
        if decided is None:
            return []
        findings = verdict(ctx, state, decided)
        finish(state)
        return findings

    def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
        note(state, events)
        return judge(ctx, state)

    return on_events, judge
