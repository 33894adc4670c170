"""SP-07: one credential used by several identities, or in several environments, in a window.

A credential is one identity's, in one environment: shared use breaks attribution and
isolation. Distinct identities and environments are kept per credential over a
sliding ``window_s``; crossing either threshold opens an episode (one alert,
``window_start`` = the earliest use among those counted) and a new identity or
environment during the episode updates it. After ``window_s`` a new episode may open.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.detectors.base import DAY, Context, DetectorSpec
from pipeline.detectors.common import capped
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import Facts, value_count

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


def facts(seen: Mapping[str, Mapping[str, int]], ctx: Context) -> Facts:
    th = ctx.thresholds
    ids, envs = seen["identity_id"], seen["environment"]
    return {
        "window_s": th["window_s"],
        "identities": capped(ids),
        "environments": capped(envs),
        "distinct_identities": len(ids),
        "distinct_environments": len(envs),
        "min_identities": th["min_identities"],
        "min_environments": th["min_environments"],
    }


DETECTOR = value_count(
    SPEC, values={"identity_id": "min_identities", "environment": "min_environments"}, facts=facts
)
