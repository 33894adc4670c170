"""One-line renderings of alerts, metrics and dead letters for ``govpipe tail``.

Pure functions (no I/O, no clock), so every format is unit-tested. Everything shown
comes from topics anyone may write to: text is escaped (no terminal control
sequences get through) and bounded, and a record that does not parse becomes a
one-line warning, never an exception. Times shown to people are ISO-8601 UTC
(``2025-11-24T16:03:05Z``); the ``--json`` views keep the records' epoch ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from pipeline.metrics.record import MetricRecord

PREVIEW_CHARS: Final = 120
MAX_FIELD: Final = 80
RESET: Final = "\x1b[0m"
SEVERITY_COLOUR: Final = {
    "critical": "\x1b[1;97;41m",  # bold white on red
    "high": "\x1b[1;31m",
    "medium": "\x1b[33m",
    "low": "\x1b[36m",
}
ACTIVITY: Final = {1: "NEW", 2: "UPD"}

Headers = Iterable[tuple[str, bytes | str | None]] | None


def clean(value: Any, limit: int = MAX_FIELD) -> str:
    """Printable, bounded text: non-printables escaped (\\n, \\x1b, \\u200b ...)."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    text = text[:limit]
    if not text.isprintable():
        text = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
        )
    return text + "…" if cut else text


def preview(value: bytes | None, limit: int = PREVIEW_CHARS) -> str:
    """The first ``limit`` characters of a raw value, safe to print."""
    if value is None:
        return "<null>"
    return clean(value.decode("utf-8", "backslashreplace"), limit)


#: Epoch ms from 2001-09-09 to 2286-11-20: a fact in this range named *_at, *_time or
#: *_ms is a point in time; smaller *_ms values are durations and stay numbers.
EPOCH_MS_RANGE: Final = (10**12, 10**13)
TIME_SUFFIXES: Final = ("_at", "_time", "_ms")


def clock(ms: Any, with_seconds: bool = True) -> str:
    """Epoch ms as ISO-8601 UTC (``2025-11-24T16:03:05Z``, or ``…T16:03Z``); else '?'."""
    unknown = "????-??-??T??:??:??Z" if with_seconds else "????-??-??T??:??Z"
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        return unknown
    try:
        dt = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return unknown
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ" if with_seconds else "%Y-%m-%dT%H:%MZ")


def fact_value(name: str, value: Any) -> Any:
    """A fact as people read it: epoch ms under a time-like name become ISO-8601 UTC."""
    if (
        name.endswith(TIME_SUFFIXES)
        and isinstance(value, int)
        and not isinstance(value, bool)
        and EPOCH_MS_RANGE[0] <= value < EPOCH_MS_RANGE[1]
    ):
        return clock(value)
    return value


def duration(ms: int) -> str:
    """60000 -> '1m', 3600000 -> '1h', 90000 -> '90s'."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def paint(text: str, severity: str | None, colour: bool) -> str:
    code = SEVERITY_COLOUR.get(severity or "")
    return f"{code}{text}{RESET}" if colour and code else text


def warning(kind: str, partition: int, offset: int, reason: str) -> str:
    """The line for a record that cannot be shown."""
    return f"! {kind} p{partition}@{offset}: skipped, {clean(reason, 200)}"


def waiting_line(topic: str, existing: int | None) -> str:
    """What a tail says when it starts at the end of ``topic`` (``existing`` records there)."""
    if existing:
        there = f"{existing:,} already there: --from-beginning to read them"
    else:
        there = "--from-beginning to read what is there"
    return f"waiting for new records on {clean(topic, 120)}… ({there})"


# ---- alerts ----------------------------------------------------------------------------


def format_alert(value: bytes | None, *, colour: bool = False) -> str:
    """``2025-11-24T16:03:05Z NEW high SP-01 identity=… approver=… | title | facts | id``.

    Raises ValueError for a value that is not an alert (the caller warns).
    """
    if not value:
        raise ValueError("empty value")
    try:
        alert = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(alert, dict) or not alert.get("detector"):
        raise ValueError("not an alert (no detector)")
    severity = str(alert.get("severity") or "")
    activity = ACTIVITY.get(alert.get("activity_id"), "???")  # type: ignore[arg-type]
    detector = clean(alert["detector"], 12)
    head = f"{clock(alert.get('time'))} {activity} {clean(severity, 8):<8} {detector}"
    subject = " ".join(
        f"{name.removesuffix('_id')}={clean(alert[name], 48)}"
        for name in ("identity_id", "approver", "credential_id", "task_id", "approval_id")
        if alert.get(name)
    )
    info = alert.get("finding_info")
    title = alert.get("message") or (info.get("title") if isinstance(info, dict) else None)
    evidence = alert.get("evidence")
    facts = evidence.get("facts") if isinstance(evidence, dict) else None
    fact_text = ""
    if isinstance(facts, dict) and facts:
        fact_text = " ".join(
            f"{clean(k, 24)}={clean(fact_value(str(k), v), 24)}"
            for k, v in list(facts.items())[:6]
            if v is not None
        )
    parts = [paint(head, severity, colour)]
    if subject:
        parts.append(subject)
    if title:
        parts.append(f"| {clean(title, 60)}")
    if fact_text:
        parts.append(f"| {fact_text}")
    if alert.get("alert_id"):
        parts.append(f"[{clean(alert['alert_id'], 36)[:8]}]")
    return " ".join(parts)


# ---- metrics ---------------------------------------------------------------------------


def ratio(label: str, numerator: int, denominator: int, rate: float | None) -> str:
    """``label 94.0% (47/50)``; ``label n/a (0/0)`` when there is nothing to divide."""
    shown = "n/a" if rate is None else f"{rate * 100:.1f}%"
    return f"{label} {shown} ({numerator}/{denominator})"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}{unit}" if value < 100 else f"{value:.0f}{unit}"


def format_metric(record: MetricRecord) -> str:
    """Productivity beside governance: success vs safe first, then the governance rates."""
    r = record
    where = "global" if r.dimension == "global" else f"{r.dimension}={clean(r.dimension_value, 40)}"
    head = f"{clock(r.window_start, with_seconds=False)} {duration(r.window_size_ms):>3} {where}"
    completion = " | ".join(
        (
            ratio("success", r.tasks_succeeded, r.tasks_completed, r.successful_completion_rate),
            ratio("safe", r.tasks_safe, r.tasks_completed, r.safe_completion_rate),
        )
    )
    governance = " | ".join(
        (
            ratio("authorised", r.actions_authorized, r.actions_total, r.authorized_action_rate),
            ratio(
                "attributable", r.actions_attributable, r.actions_total, r.attributable_action_rate
            ),
            ratio(
                "ephemeral",
                r.actions_ephemeral,
                r.actions_with_credential,
                r.ephemeral_credential_rate,
            ),
            ratio(
                "revoked",
                r.task_credentials_revoked,
                r.task_credentials_completed,
                r.revoked_on_completion_rate,
            ),
            ratio(
                "meaningful review",
                r.approvals_meaningful,
                r.approvals_decided,
                r.meaningful_review_rate,
            ),
        )
    )
    by_detector = ", ".join(
        f"{clean(d, 12)} {n}"
        for d, n in sorted(r.alerts_by_detector.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    )
    extras = [
        f"review p50 {_number(r.median_review_seconds, 's')}",
        f"latency p95 {_number(r.p95_action_latency_ms, 'ms')}",
        f"alerts {r.alerts_total}" + (f" ({by_detector})" if by_detector else ""),
    ]
    if r.late_events:
        extras.append(f"late {r.late_events}")
    if r.revision:
        extras.append(f"rev {r.revision}")
    return f"{head}  {completion} ‖ {governance} · " + " · ".join(extras)


# ---- dead letters ----------------------------------------------------------------------


def header_map(headers: Headers) -> dict[str, str]:
    """Kafka headers as text (the last value of a repeated name wins)."""
    out: dict[str, str] = {}
    for name, raw in headers or ():
        if raw is None:
            out[name] = ""
        elif isinstance(raw, bytes):
            out[name] = raw.decode("utf-8", "backslashreplace")
        else:
            out[name] = str(raw)
    return out


def format_dlq(value: bytes | None, headers: Headers, *, colour: bool = False) -> str:
    """``code src=topic/partition@offset #batch_index [redacted] "message" value=…``."""
    h = header_map(headers)
    code = clean(h.get("error.code") or "?", 40)
    topic = clean(h.get("source.topic") or "?", 60)
    partition = clean(h.get("source.partition") or "?", 6)
    source = f"src={topic}/{partition}@{clean(h.get('source.offset') or '?', 20)}"
    parts = [paint(code, "medium", colour), source]
    if h.get("source.batch_index"):
        parts.append(f"#{clean(h['source.batch_index'], 8)}")
    if h.get("redacted") == "true":
        parts.append("[redacted]")
    parts.append(f'"{clean(h.get("error.message") or "", 160)}"')
    parts.append(f"value={preview(value)}")
    return " ".join(parts)


def dlq_json(value: bytes | None, headers: Headers) -> dict[str, Any]:
    """The ``--json`` view of a dead letter: headers and a safe preview, not raw bytes."""
    return {"headers": header_map(headers), "preview": preview(value)}
