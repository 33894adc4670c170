"""SP-07: one credential used by several identities, or in several environments, in a window.

A credential is one identity's, in one environment: shared use breaks attribution and
isolation. Distinct identities and environments are kept per credential over a
sliding ``window_s``; crossing either threshold opens an episode (one alert,
``window_start`` = the earliest use among those counted) and a new identity or
environment during the episode updates it. After ``window_s`` a new episode may open.
"""

from __future__ import annotations

from pipeline.detectors.base import DAY, Context, Detector, DetectorSpec, Event, Finding, State
from pipeline.detectors.common import capped, event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.windows import distinct_in_window

ID = "SP-07"

SPEC = DetectorSpec(
    id=ID,
    title="Credential reuse",
    description=(
        "One credential was used by several identities or in several environments "
        "within the window."
    ),
    severity="high",
    subject="credential",
    event_types=frozenset({"action"}),
    window_ms=DAY,
    thresholds={"window_s": DAY // 1000, "min_identities": 2, "min_environments": 2},
    frameworks=(
        owasp_nhi(9),
        owasp_nhi(8),
        nist_csf("PR.AA-01"),
        nist_csf("PR.AA-03"),
        ai_rmf("MEASURE 2.7"),
        maestro(4),
    ),
    remediation=(
        "Issue one credential per identity and environment, rotate this one, and find who "
        "else holds it."
    ),
)


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    findings = []
    th = ctx.thresholds
    window_ms = int(th["window_s"] * 1000)
    first_ids: dict[str, str] = state.setdefault("first_event", {})
    for event in events:
        t = int(event["event_time"])
        identity, env = event.get("identity_id"), event.get("environment")
        ids = distinct_in_window(state, "ids", t, identity or "", window_ms) if identity else None
        envs = distinct_in_window(state, "envs", t, env, window_ms) if env else None
        ids = ids if ids is not None else state.get("ids", {})
        envs = envs if envs is not None else state.get("envs", {})
        for prefix, value in (("i:", identity), ("e:", env)):
            if value:
                first_ids.setdefault(prefix + value, str(event["event_id"]))
        live = {f"i:{v}" for v in ids} | {f"e:{v}" for v in envs}
        for key in [k for k in first_ids if k not in live]:
            del first_ids[key]
        if len(ids) < th["min_identities"] and len(envs) < th["min_environments"]:
            continue
        episode = state.get("episode")
        if episode is not None and t < episode[0] + window_ms:
            if len(ids) <= episode[1] and len(envs) <= episode[2]:
                continue  # nothing new in this episode
            start = int(episode[0])
        else:
            start = min([*ids.values(), *envs.values()])
        state["episode"] = [start, len(ids), len(envs)]
        findings.append(
            Finding(
                detector=ID,
                subject=ctx.subject,
                event_ids=sorted(set(first_ids.values()) | {str(event["event_id"])}),
                facts={
                    "window_s": th["window_s"],
                    "identities": capped(ids),
                    "environments": capped(envs),
                    "distinct_identities": len(ids),
                    "distinct_environments": len(envs),
                    "min_identities": th["min_identities"],
                    "min_environments": th["min_environments"],
                },
                window_start=start,
                window_end=t,
                time=t,
                context=event_context(event, credential_id=ctx.subject),
            )
        )
    return findings


DETECTOR = Detector(spec=SPEC, on_events=on_events)
