"""SL-01 secret in telemetry: a credential-like value was found inside an event.

Stage 1 has already replaced the value with ``[REDACTED:kind]`` and listed where it
was (``_secrets``); this finding says where and what kind, never the value. A leak
means the secret is in every log and trace store the raw event reached, so it must
be rotated, not just scrubbed. Rate-limited per subject and set of (path, kind): an
agent that logs its key on every call yields one finding per period.
"""

from __future__ import annotations

from pipeline.detectors.base import DEFAULT_DEDUP_S, DetectorSpec, Event
from pipeline.detectors.common import capped
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import UNATTRIBUTED, Facts, single_event
from pipeline.records import EVENT_TYPES

__all__ = ["DETECTOR", "SPEC", "UNATTRIBUTED"]

SPEC = DetectorSpec(
    id="SL-01",
    title="Secret in telemetry",
    description=(
        "A credential-like value appeared inside an event (redacted before anything was published)."
    ),
    severity="high",
    subject="identity",
    event_types=EVENT_TYPES,
    thresholds={"dedup_s": DEFAULT_DEDUP_S},  # per subject and (paths, kinds)
    frameworks=(
        owasp_nhi(2),
        nist_csf("PR.DS-01"),
        nist_csf("PR.DS-02"),
        ai_rmf("MEASURE 2.7"),
        maestro(5),
    ),
    remediation=(
        "Rotate the leaked secret now, then stop the emitting code from logging it (and purge "
        "it from upstream log stores)."
    ),
)


def _secrets(event: Event) -> list[dict[str, object]]:
    return [s for s in event.get("_secrets") or [] if isinstance(s, dict)]


def match(event: Event) -> bool:
    return bool(_secrets(event))


def facts(event: Event) -> Facts:
    found = _secrets(event)
    return {
        "secret_paths": capped({str(s.get("path")) for s in found}),
        "secret_kinds": capped({str(s.get("kind")) for s in found}),
        "secrets_found": len(found),
        "event_type": event["event_type"],
    }


DETECTOR = single_event(SPEC, match, facts)
