"""AT-04 human use of an NHI: a person driving a non-human identity by hand.

A service account, workload or agent identity used from a browser, or in a session
the platform marks interactive, means a human holds its credentials: its actions are
no longer attributable to the automation, and the human's own access controls are
bypassed. Evidence names the signal and the attribute key, never the value (user
agents and session fields can carry anything).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.detectors.base import DEFAULT_DEDUP_S, Context, DetectorSpec, Event
from pipeline.detectors.common import identity_of
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import Facts, single_event

#: Attribute keys naming a user agent once case and punctuation are dropped.
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
TRUE = frozenset({"true", "1", "yes", "y"})

SPEC = DetectorSpec(
    id="AT-04",
    title="Human use of a non-human identity",
    description=(
        "A non-human identity (agent, service account, workload) was used interactively: a "
        "browser user agent, or a session marked interactive."
    ),
    severity="medium",
    subject="identity",
    event_types=frozenset({"action", "delegation", "task.started", "approval.requested"}),
    thresholds={
        "non_human_kinds": ["ai_agent", "service_account", "workload"],
        "browser_markers": ["Mozilla/", "Chrome/", "Safari/", "Firefox/", "Edg/"],
        "dedup_s": DEFAULT_DEDUP_S,  # per identity and signal
    },
    frameworks=(
        owasp_nhi(10),
        nist_csf("PR.AA-01"),
        nist_csf("DE.CM-03"),
        ai_rmf("GOVERN 2.1"),
        maestro(7),
    ),
    remediation=(
        "Rotate the identity's credentials, give the person their own account, and restrict "
        "the identity to non-interactive use (e.g. workload identity federation)."
    ),
    needs_registry=True,  # the identity's kind comes from the registry
)


def interactive_signal(
    attributes: Mapping[str, str], markers: list[str]
) -> tuple[str, str, str | None] | None:
    """(signal, attribute key, browser marker) for the first interactive sign, else None."""
    lowered = [m.lower() for m in markers]
    for key, value in attributes.items():
        name = _NOT_ALNUM.sub("", key.lower())
        text = str(value).lower()
        if "useragent" in name:
            hit = next((m for m, low in zip(markers, lowered, strict=True) if low in text), None)
            if hit is not None:
                return "browser_user_agent", key, hit.rstrip("/")
        elif name == "interactive" and text.strip() in TRUE:
            return "interactive_flag", key, None
        elif name in ("sessiontype", "sessionkind") and text.strip() == "interactive":
            return "interactive_session", key, None
    return None


def judge(event: Event, ctx: Context) -> Facts | None:
    identity = identity_of(event)
    kinds = {str(k) for k in ctx.thresholds["non_human_kinds"]}
    if not identity.get("known") or identity.get("kind") not in kinds:
        return None
    markers = [str(m) for m in ctx.thresholds["browser_markers"]]
    signal = interactive_signal(event.get("attributes") or {}, markers)
    if signal is None:
        return None
    name, key, browser = signal
    return {
        "signal": name,
        "attribute": key,
        "browser": browser,
        "identity_kind": identity.get("kind"),
        "event_type": event["event_type"],
        "action": event.get("action"),
    }


DETECTOR = single_event(SPEC, judge=judge)
