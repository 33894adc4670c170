"""SP-03: a privileged scope held through a whole window and never exercised.

Standing privilege nobody uses is pure attack surface. Per credential: the
privileged scopes (policy ``privileged_scopes`` globs) it holds are tracked from
issuance (or first sighting, from the registry's scopes) in consecutive windows of
``window_s`` anchored there; when the watermark passes a window's end, each scope
held since its start and not exercised by any action inside it is reported. Use is
recorded by window index, so a later use cannot hide an earlier idle window.
Revocation or expiry inside a window ends tracking (the privilege was not standing).
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import DAY, Context, Detector, DetectorSpec, Event, Finding, State
from pipeline.detectors.common import capped, covered, credential_of, event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import finding, threshold_ms
from pipeline.detectors.policy import policy_of
from pipeline.detectors.windows import set_deadline

ID = "SP-03"
MAX_SCOPES = 64

SPEC = DetectorSpec(
    id=ID,
    title="Standing unused privilege",
    description=(
        "A credential held a privileged scope for a whole window without one action exercising it."
    ),
    severity="low",
    subject="credential",
    event_types=frozenset(
        {"credential.issued", "credential.rotated", "credential.revoked", "action"}
    ),
    window_ms=7 * DAY,
    thresholds={"window_s": 7 * DAY // 1000},
    frameworks=(
        owasp_nhi(5),
        nist_csf("PR.AA-05"),
        ai_rmf("GOVERN 1.5"),
        ai_rmf("MANAGE 2.4"),
        maestro(6),
    ),
    remediation=(
        "Remove the unused privileged scopes from the credential (or grant them just in "
        "time when a task needs them)."
    ),
)


def _start(ctx: Context, state: State, event: Event, scopes: list[str], t: int) -> None:
    """Begin tracking at ``t`` (window 0 starts here); no privileged scope, no state."""
    policy = policy_of(ctx)
    privileged = [s for s in scopes if policy.is_privileged(s)][:MAX_SCOPES]
    state.clear()
    if not privileged:
        return
    state.update(
        anchor=t,
        window=0,
        held={s: t for s in privileged},
        used={},
        expires=(
            event.get("expires_at")  # on an issuance, None means "never"
            if event["event_type"] != "action"
            else credential_of(event).get("expires_at")
        ),
        event_id=event["event_id"],
        ctx=event_context(event),
    )
    set_deadline(state, t + threshold_ms(ctx, "window_s"))


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    window_ms = threshold_ms(ctx, "window_s")
    policy = policy_of(ctx)
    for event in events:
        t = int(event["event_time"])
        kind = event["event_type"]
        if state.get("revoked") is not None:
            return []
        if kind == "credential.issued":
            if "anchor" not in state or t > int(state["anchor"]):
                _start(ctx, state, event, list(event.get("scopes") or []), t)
        elif kind == "credential.revoked":
            state.clear()
            state["revoked"] = t
            set_deadline(state, t + window_ms)  # forget the credential after a window
        elif kind == "credential.rotated":
            if event.get("expires_at"):
                state["expires"] = event["expires_at"]
            if event.get("scopes") is None:
                continue
            if "anchor" not in state:
                _start(ctx, state, event, list(event["scopes"]), t)
                continue
            now = [s for s in event["scopes"] if policy.is_privileged(s)]
            state["held"] = {s: state["held"].get(s, t) for s in now[:MAX_SCOPES]}
        elif kind == "action":
            cred = credential_of(event)
            if "anchor" not in state and cred.get("known"):
                revoked = cred.get("revoked_at")
                if revoked is None or int(revoked) > t:
                    _start(ctx, state, event, list(cred.get("scopes") or []), t)
            scope = event.get("scope")
            if scope and "anchor" in state:
                index = (t - int(state["anchor"])) // window_ms
                for held in state["held"]:
                    if covered(scope, [held]):
                        marks: list[int] = state["used"].setdefault(held, [])
                        if index not in marks:
                            marks.append(index)
                            del marks[:-4]
    return []


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    if state.get("revoked") is not None or "anchor" not in state:
        state.clear()
        return []
    window_ms = threshold_ms(ctx, "window_s")
    findings: list[Finding] = []
    while True:
        index = int(state["window"])
        start = int(state["anchor"]) + index * window_ms
        end = start + window_ms
        if end > ctx.watermark:
            set_deadline(state, end)
            return findings
        expires = state.get("expires")
        if expires is not None and int(expires) <= end:
            state.clear()  # expired inside the window: not standing privilege
            return findings
        held: dict[str, Any] = state["held"]
        if not held:
            state.clear()  # rotated down to no privileged scope: nothing standing
            return findings
        used: dict[str, list[int]] = state["used"]
        unused = [s for s, since in held.items() if since <= start and index not in used.get(s, [])]
        if unused:
            findings.append(
                finding(
                    ctx,
                    event_ids=[str(state["event_id"])],
                    facts={
                        "window_s": ctx.thresholds["window_s"],
                        "unused_privileged_scopes": capped(unused),
                        "privileged_scopes_held": capped(held),
                    },
                    window_start=start,
                    window_end=end,
                    time=end,
                    context={**state.get("ctx", {}), "credential_id": ctx.subject},
                )
            )
        state["window"] = index + 1
        for marks in state["used"].values():
            marks[:] = [m for m in marks if m > index]


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
