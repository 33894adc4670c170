"""SP-05: a sensitive action (high/critical, or a policy ``sensitive_actions`` glob) not run
under a JIT credential.

The riskiest actions are exactly where a standing static key hurts most: a JIT
credential ties the action to a task-sized grant. "JIT" is ``issued_via: jit`` on the
event or in the registry, or, with no ``issued_via`` known, a ``jit_token`` kind. A
credential nobody can prove to be JIT counts as not JIT.
"""

from __future__ import annotations

from pipeline.detectors.base import (
    HOUR,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.common import credential_of, event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.policy import policy_of
from pipeline.detectors.windows import renotify

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
    event_types=frozenset({"action"}),
    window_ms=None,
    thresholds={
        "min_sensitivity": "high",  # low | medium | high | critical
        "renotify_s": HOUR // 1000,  # per credential and action
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


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    findings = []
    policy = policy_of(ctx)
    floor = LEVELS.get(str(ctx.thresholds["min_sensitivity"]).lower(), LEVELS["high"])
    for event in events:
        level = LEVELS.get(str(event.get("sensitivity") or "").lower(), 0)
        by_level = level >= floor
        by_action = policy.is_sensitive_action(event.get("action"))
        if not (by_level or by_action):
            continue
        cred = credential_of(event)
        issued_via = event.get("issued_via") or cred.get("issued_via")
        kind = event.get("credential_kind") or cred.get("kind")
        if issued_via == "jit" or (issued_via is None and kind == "jit_token"):
            continue
        t = int(event["event_time"])
        tag = str(event.get("action") or "")
        if not renotify(state, tag, t, int(ctx.thresholds["renotify_s"] * 1000)):
            continue
        findings.append(
            Finding(
                detector=ID,
                subject=ctx.subject,
                event_ids=[str(event["event_id"])],
                facts={
                    "action": event.get("action"),
                    "sensitivity": event.get("sensitivity"),
                    "sensitive_by": "sensitivity" if by_level else "action_pattern",
                    "min_sensitivity": ctx.thresholds["min_sensitivity"],
                    "issued_via": issued_via,
                    "credential_kind": kind,
                },
                time=t,
                context=event_context(event),
            )
        )
    return findings


DETECTOR = Detector(spec=SPEC, on_events=on_events)
