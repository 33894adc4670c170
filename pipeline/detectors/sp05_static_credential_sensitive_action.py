"""SP-05: a sensitive action (high/critical, or a policy ``sensitive_actions`` glob) not run
under a JIT credential.

The riskiest actions are exactly where a standing static key hurts most: a JIT
credential ties the action to a task-sized grant. "JIT" is ``issued_via: jit`` on the
event or in the registry, or, with no ``issued_via`` known, a ``jit_token`` kind. A
credential nobody can prove to be JIT counts as not JIT, but only once the
watermark has passed the action: until then its issuance may still arrive (events
of one credential can sit on different input partitions), so the action waits
in the credential's state instead of being judged on a registry that has not
seen the issuance yet.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import (
    DEFAULT_DEDUP_S,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.common import credential_of, event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import finding
from pipeline.detectors.policy import policy_of
from pipeline.detectors.windows import set_deadline

ID = "SP-05"
LEVELS = {"low": 1, "medium": 2, "high": 3, "critical": 4}

SPEC = DetectorSpec(
    id=ID,
    title="Static credential used for a sensitive action",
    description=(
        "A high- or critical-sensitivity action (or one matching the policy's sensitive "
        "actions) ran under a credential that was not issued just in time."
    ),
    severity="high",
    subject="credential",
    event_types=frozenset({"action", "credential.issued"}),
    thresholds={
        "min_sensitivity": "high",  # low | medium | high | critical
        "dedup_s": DEFAULT_DEDUP_S,  # per credential and action
    },
    frameworks=(
        owasp_nhi(7),
        owasp_nhi(4),
        nist_csf("PR.AA-03"),
        nist_csf("PR.AA-05"),
        ai_rmf("MEASURE 2.7"),
        maestro(6),
    ),
    remediation=(
        "Require a JIT credential, issued for the task and scoped to it, for this action."
    ),
)


#: Sensitive actions waiting for their credential's provenance (bounded per credential).
MAX_WAITING = 256


def _provenance(event: Event, state: State) -> tuple[str | None, str | None]:
    """(issued_via, kind) from the event, the issuance seen here, or the registry."""
    cred = credential_of(event)
    seen = state.get("issued") or {}
    issued_via = event.get("issued_via") or seen.get("via") or cred.get("issued_via")
    kind = event.get("credential_kind") or seen.get("kind") or cred.get("kind")
    return issued_via, kind


def _judge(
    ctx: Context, state: State, item: dict[str, Any], issued_via: str | None, kind: str | None
) -> Finding | None:
    if issued_via == "jit" or (issued_via is None and kind == "jit_token"):
        return None
    t = int(item["t"])
    return finding(
        ctx,
        event_ids=[str(item["event_id"])],
        facts={
            "action": item["action"],
            "sensitivity": item["sensitivity"],
            "sensitive_by": item["by"],
            "min_sensitivity": ctx.thresholds["min_sensitivity"],
            "issued_via": issued_via,
            "credential_kind": kind,
        },
        time=t,
        context=item["context"],
    )


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    findings = []
    policy = policy_of(ctx)
    floor = LEVELS.get(str(ctx.thresholds["min_sensitivity"]).lower(), LEVELS["high"])
    waiting: dict[str, dict[str, Any]] = state.setdefault("waiting", {})
    for event in events:
        if event["event_type"] == "credential.issued":
            if event.get("issued_via") or event.get("credential_kind"):
                state["issued"] = {
                    "via": event.get("issued_via"),
                    "kind": event.get("credential_kind"),
                }
            continue
        level = LEVELS.get(str(event.get("sensitivity") or "").lower(), 0)
        by_level = level >= floor
        by_action = policy.is_sensitive_action(event.get("action"))
        if not (by_level or by_action):
            continue
        t = int(event["event_time"])
        eid = str(event["event_id"])
        item: dict[str, Any] = {
            "event_id": eid,
            "t": t,
            "action": event.get("action"),
            "sensitivity": event.get("sensitivity"),
            "by": "sensitivity" if by_level else "action_pattern",
            "context": event_context(event),
        }
        issued_via, kind = _provenance(event, state)
        # Nothing says how the credential was issued yet: its issuance may be on
        # another input partition. Wait until the watermark passes the action, when
        # every issuance before it has arrived (or is late), then judge.
        if issued_via is None and kind is None and len(waiting) < MAX_WAITING:
            waiting[eid] = item
            set_deadline(state, t)
            continue
        found = _judge(ctx, state, item, issued_via, kind)
        if found is not None:
            findings.append(found)
    if not waiting:
        state.pop("waiting", None)
    return findings


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    findings = []
    waiting: dict[str, dict[str, Any]] = state.get("waiting") or {}
    seen = state.get("issued") or {}
    for key, item in sorted(waiting.items(), key=lambda kv: (kv[1]["t"], kv[0])):
        if item["t"] > ctx.watermark:
            continue
        del waiting[key]
        found = _judge(ctx, state, item, seen.get("via"), seen.get("kind"))
        if found is not None:
            findings.append(found)
    if waiting:
        set_deadline(state, min(int(i["t"]) for i in waiting.values()))
    else:
        state.pop("waiting", None)
    return findings


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
