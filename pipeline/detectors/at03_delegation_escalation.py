"""AT-03 delegation escalation: a delegate receives scopes its delegator does not hold.

A delegation may only pass on what the delegator has: the scopes its identity is
allowed (registry) or its credential grants (globs like ``crm.*`` cover). Holdings
that are not configured (unknown identity, no allowed_scopes, no known credential)
are not "nothing": with no configured source at all the delegation is not judged,
as SP-04 does; AT-01 reports the unknown identity. Rate-limited per delegate and
excess scopes, so each distinct escalation is reported once per period.
"""

from __future__ import annotations

from pipeline.detectors.base import DEFAULT_DEDUP_S, Context, DetectorSpec, Event
from pipeline.detectors.common import capped, covered, credential_of, identity_of
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import Facts, single_event

SPEC = DetectorSpec(
    id="AT-03",
    title="Delegation escalation",
    description=(
        "A delegation passed on scopes the delegating identity does not hold (neither allowed "
        "in the registry nor granted by its credential)."
    ),
    severity="high",
    subject="identity",
    event_types=frozenset({"delegation"}),
    thresholds={"dedup_s": DEFAULT_DEDUP_S},  # per delegator, delegate and excess scopes
    frameworks=(
        owasp_nhi(5),
        nist_csf("PR.AA-05"),
        ai_rmf("MANAGE 2.4"),
        ai_rmf("MEASURE 2.7"),
        maestro(7),
    ),
    remediation=(
        "Have the delegation service intersect delegated scopes with the delegator's own, and "
        "revoke the delegate's excess grant."
    ),
    needs_registry=True,  # the delegator's allowed_scopes come from the registry
)


def held_scopes(event: Event) -> tuple[list[str], list[str]] | None:
    """(scopes the delegator holds, their sources), or None when nothing is configured."""
    held: list[str] = []
    sources: list[str] = []
    identity, credential = identity_of(event), credential_of(event)
    if identity.get("known") and identity.get("allowed_scopes"):
        held += list(identity["allowed_scopes"])
        sources.append("identity.allowed_scopes")
    if credential.get("known") and credential.get("scopes"):
        held += list(credential["scopes"])
        sources.append("credential.scopes")
    return (held, sources) if sources else None


def judge(event: Event, ctx: Context) -> Facts | None:
    delegated = [s for s in event.get("scopes") or [] if s]
    holdings = held_scopes(event)
    if not delegated or holdings is None:
        return None
    held, sources = holdings
    excess = sorted({s for s in delegated if not covered(s, held)})
    if not excess:
        return None
    return {
        "delegate_identity_id": event.get("delegate_identity_id"),
        "excess_scopes": capped(excess),
        "delegated_scopes": capped(delegated),
        "held_from": sources,
    }


DETECTOR = single_event(SPEC, judge=judge)
