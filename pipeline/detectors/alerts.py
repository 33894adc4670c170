"""Findings -> ``governance.alerts.v1`` records: OCSF 1.1 Detection Finding + govpipe fields.

One alert is one incident. Its id is a UUIDv5 of detector|subject|window_start for
windowed findings, and of detector|subject|period for single-event findings, where
the period is the dedup period (``dedup_s``, 1 h by default) holding the finding's
event time: fixed periods of event time, so the id does not depend on the order
occurrences arrive in. Every occurrence inside the period is an OCSF Update
(activity 2) that adds its evidence; none is dropped. A replay or a crash-restart
yields Updates of the same ids, never a second page. ``record_alert`` keeps, per
subject, which ids were already sent. See docs/contracts/alerts.md.

Alerts carry ids and numbers only (``evidence.facts`` is restricted to scalars and
lists of scalars, strings bounded); raw attribute values never reach them.
"""

from __future__ import annotations

import uuid
from typing import Any, Final, Literal

from pipeline.detectors.base import DetectorSpec, Finding, State
from pipeline.detectors.common import CONTEXT_FIELDS
from pipeline.detectors.state import ALERTS, AlertEntry, AlertJson, parts

#: Fixed namespace for alert ids (never change it: ids would change with it).
ALERT_NAMESPACE: Final = uuid.UUID("6f1d3a52-6c55-5b0e-9a57-3c8f1c2b7a10")
OCSF_VERSION: Final = "1.1.0"
CLASS_UID: Final = 2004  # Detection Finding
CATEGORY_UID: Final = 2  # Findings
SEVERITY_ID: Final = {"low": 2, "medium": 3, "high": 4, "critical": 5}
ACTIVITY_ID: Final = {"create": 1, "update": 2}
#: Alerts remembered per subject for dedup; the least recently seen is forgotten first.
MAX_ALERTS_PER_SUBJECT: Final = 256
MAX_FACT_TEXT: Final = 256
MAX_FACT_ITEMS: Final = 50
MAX_EVIDENCE_EVENTS: Final = 50
#: Approvals a finding names in ``evidence.approval_ids`` (the approvals its review
#: effects reach, ``flow/outcomes.finding_notices``); the rest are counted, not named.
MAX_EVIDENCE_APPROVALS: Final = 500

Activity = Literal["create", "update"]
#: The alert's subject fields: those a finding's context may carry (common.py).
SUBJECT_FIELDS: Final = CONTEXT_FIELDS


def alert_id(finding: Finding, dedup_ms: int = 3_600_000) -> str:
    """Deterministic: one id per detector, subject and window (windowed findings)
    or dedup period of event time (single-event findings)."""
    key = f"{finding.detector}|{finding.subject}"
    if finding.window_start is not None:
        key += f"|{finding.window_start}"
    else:
        key += f"|p{finding.time - finding.time % max(1, dedup_ms)}"
    return str(uuid.uuid5(ALERT_NAMESPACE, key))


def period_end(finding: Finding, dedup_ms: int = 3_600_000) -> int:
    """Event time after which no occurrence can carry the finding's alert id: the end
    of its dedup period (single-event findings), or of its window."""
    if finding.window_start is not None:
        return int(finding.window_end if finding.window_end is not None else finding.time)
    dedup = max(1, dedup_ms)
    return finding.time - finding.time % dedup + dedup


def record_alert(
    state: State, alert_id: str, time: int, n: int = 1, until: int | None = None
) -> tuple[Activity, int]:
    """Remember ``n`` occurrences of an alert id for this subject: ("create", n) the
    first time, then ("update", total so far).

    ``state[ALERTS]`` maps id -> ``AlertEntry`` (``detectors/state.py``), bounded to
    ``MAX_ALERTS_PER_SUBJECT`` (an id forgotten that long ago is created afresh);
    ``until`` is the id's ``period_end``, which keeps it in the dedup record after the
    subject expired (``flow/expiry.py``).
    """
    seen = parts(state).setdefault(ALERTS, {})
    raw = seen.pop(alert_id, None)
    if raw is None:
        entry = AlertEntry(n, time, time, until)
        first = True
    else:
        entry = AlertEntry.from_json(raw)
        first = entry.count == 0
        entry.count += n
        entry.first, entry.last = min(entry.first, time), max(entry.last, time)
        if until is not None:
            entry.until = until
    seen[alert_id] = entry.to_json()  # re-inserted: dict order is least- to most-recently seen
    while len(seen) > MAX_ALERTS_PER_SUBJECT:
        del seen[next(iter(seen))]
    return ("create" if first else "update"), entry.count


def _entry(state: State, alert_id: str) -> AlertEntry | None:
    raw: AlertJson | None = parts(state).get(ALERTS, {}).get(alert_id)
    return AlertEntry.from_json(raw) if raw else None


def first_seen(state: State, alert_id: str) -> int | None:
    entry = _entry(state, alert_id)
    return entry.first if entry else None


def last_seen(state: State, alert_id: str) -> int | None:
    entry = _entry(state, alert_id)
    return entry.last if entry else None


def _fact(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value[:MAX_FACT_TEXT]
    if isinstance(value, list | tuple):
        return [_fact(v) for v in value[:MAX_FACT_ITEMS] if not isinstance(v, dict | list)]
    return str(value)[:MAX_FACT_TEXT]


def to_alert(
    finding: Finding,
    spec: DetectorSpec,
    *,
    activity: Activity,
    count: int,
    product_version: str,
    first_seen_time: int | None = None,
    last_seen_time: int | None = None,
    dedup_ms: int = 3_600_000,
    occurrences: int = 1,
) -> dict[str, Any]:
    """The alert record (docs/contracts/alerts.md). ``spec`` is the policy-effective spec."""
    uid = alert_id(finding, dedup_ms)
    severity = finding.severity or spec.severity
    activity_id = ACTIVITY_ID[activity]
    start = finding.window_start
    first = min(x for x in (first_seen_time, start, finding.time) if x is not None)
    last = max(x for x in (finding.time, finding.window_end, last_seen_time) if x is not None)
    alert: dict[str, Any] = {
        # OCSF 1.1 Detection Finding
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity.capitalize(),
        "type_uid": CLASS_UID * 100 + activity_id,
        "severity_id": SEVERITY_ID[severity],
        "time": finding.time,
        "count": count,
        "message": spec.title,
        "status_id": 1,
        "status": "New",
        "finding_info": {
            "uid": uid,
            "title": spec.title,
            "desc": spec.description,
            "types": [spec.id],
            "first_seen_time": first,
            "last_seen_time": last,
            "analytic": {"uid": spec.id, "name": spec.title, "type_id": 1, "type": "Rule"},
        },
        "metadata": {
            "product": {"name": "govpipe", "vendor_name": "govpipe", "version": product_version},
            "version": OCSF_VERSION,
        },
        # govpipe fields (docs/contracts/alerts.md): downstream rules depend on these
        "alert_id": uid,
        "detector": spec.id,
        "severity": severity,
        **{name: finding.context.get(name) for name in SUBJECT_FIELDS},
        # optional: the acting identity's registry team and mode, and how many
        # occurrences of the incident this record adds (metrics count occurrences)
        "team": finding.context.get("team"),
        "mode": finding.context.get("mode"),
        "occurrences": occurrences,
        "window_start": finding.window_start,
        "window_end": finding.window_end,
        "evidence": {
            "event_ids": [str(e) for e in finding.event_ids[:MAX_EVIDENCE_EVENTS]],
            # bounded: how many of this record's events the list leaves out
            "event_ids_omitted": max(0, len(finding.event_ids) - MAX_EVIDENCE_EVENTS),
            "facts": {str(k): _fact(v) for k, v in finding.facts.items()},
        },
        "frameworks": [{"framework": f.framework, "control": f.control} for f in spec.frameworks],
        # OCSF defines remediation as an object; the sentence is its ``desc``.
        "remediation": {"desc": spec.remediation},
    }
    if finding.approval_ids:
        # optional: the approvals a finding on an approver or requester is about
        # (RS-02/03/07), so consumers and the metrics can reach each of them
        approvals = [str(a) for a in finding.approval_ids]
        alert["evidence"]["approval_ids"] = approvals[:MAX_EVIDENCE_APPROVALS]
        alert["evidence"]["approval_ids_omitted"] = max(0, len(approvals) - MAX_EVIDENCE_APPROVALS)
    return alert
