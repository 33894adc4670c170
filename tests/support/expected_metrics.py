"""An independent reference of governance.metrics.v1 counts, for tests only.

Written from docs/contracts/metrics.md with plain loops and no import from ``pipeline.metrics``, so
a shared bug cannot make the pipeline agree with itself. Given enriched events
(``event["identity"]`` / ``event["credential"]`` as stage 1 adds them) plus which
tasks got a finding and which approvals got an RS finding, it returns the expected
counters per (window_size_ms, window_start, dimension, dimension_value).

Conventions (the pipeline's stage 2 must follow the same ones):

* an item is in the window ``[start, start + size)`` holding its time;
* dimensions: ``("global", "all")``; ``("platform", event platform)``;
  ``("team", identity.team)`` when the registry has a team; ``("identity",
  identity_id)`` when the event names one;
* actions: counted at their ``event_time``;
* tasks: counted at the ``task.completed`` time; succeeded = ``outcome`` success;
  safe = succeeded and the task is not in ``tasks_with_findings``;
* task credentials: each credential issued (``credential.issued``) for a task that
  completed, counted at the completion with the completion's dimensions; revoked =
  a ``credential.revoked`` for it at or before completion + ``grace_ms``;
* approvals: counted at ``approval.decided``; meaningful = not in
  ``approvals_with_rs``; review seconds = decided - requested (when the request is
  among the events);
* alerts (optional): ``(time, detector[, platform[, identity_id]])``: counted in the
  global dimension and in the platform and identity ones when given (not by team: an
  alert does not carry the registry team).

No late events here: feed it what arrived in time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

HOUR = 3_600_000
DAY = 24 * HOUR
MAX_TTL_MS = {"ai_agent": HOUR, "workload": DAY, "service_account": 90 * DAY}
OTHER_TTL_MS = DAY
GRACE_MS = 5 * 60 * 1000

COUNT_FIELDS = (
    "tasks_completed",
    "tasks_succeeded",
    "tasks_safe",
    "actions_total",
    "actions_authorized",
    "actions_attributable",
    "actions_with_credential",
    "actions_ephemeral",
    "task_credentials_completed",
    "task_credentials_revoked",
    "approvals_decided",
    "approvals_meaningful",
    "alerts_total",
)
RATES = {
    "successful_completion_rate": ("tasks_succeeded", "tasks_completed"),
    "safe_completion_rate": ("tasks_safe", "tasks_completed"),
    "authorized_action_rate": ("actions_authorized", "actions_total"),
    "attributable_action_rate": ("actions_attributable", "actions_total"),
    "ephemeral_credential_rate": ("actions_ephemeral", "actions_with_credential"),
    "revoked_on_completion_rate": ("task_credentials_revoked", "task_credentials_completed"),
    "meaningful_review_rate": ("approvals_meaningful", "approvals_decided"),
}

Key = tuple[int, int, str, str]


def _dims(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = [("global", "all")]
    if event.get("platform") is not None:
        out.append(("platform", str(event["platform"])))
    identity = event.get("identity") or {}
    if identity.get("team") is not None:
        out.append(("team", str(identity["team"])))
    if event.get("identity_id") is not None:
        out.append(("identity", str(event["identity_id"])))
    if identity.get("known") is True:  # the registry mode; a known identity without one
        out.append(("mode", str(identity.get("mode") or "autonomous")))  # is autonomous
    return out


def _empty() -> dict[str, Any]:
    row: dict[str, Any] = {name: 0 for name in COUNT_FIELDS}
    row["alerts_by_detector"] = {}
    row["review_seconds"] = []
    row["latencies_ms"] = []
    return row


def expected_metrics(
    events: Iterable[Mapping[str, Any]],
    window_sizes: Iterable[int],
    *,
    tasks_with_findings: set[str] = frozenset(),  # type: ignore[assignment]
    approvals_with_rs: set[str] = frozenset(),  # type: ignore[assignment]
    alerts: Iterable[tuple[Any, ...]] = (),
    grace_ms: int = GRACE_MS,
) -> dict[Key, dict[str, Any]]:
    """Expected counters (plus raw review seconds and latencies) per window and dimension."""
    events = list(events)
    sizes = list(window_sizes)
    table: dict[Key, dict[str, Any]] = {}

    def rows(time: int, dims: list[tuple[str, str]]) -> list[dict[str, Any]]:
        found = []
        for size in sizes:
            start = (time // size) * size
            for dim, value in dims:
                key = (size, start, dim, value)
                if key not in table:
                    table[key] = _empty()
                found.append(table[key])
        return found

    requested_at: dict[str, int] = {}
    revoked_at: dict[str, int] = {}
    issued_for_task: dict[str, list[str]] = {}
    for e in events:
        if e["event_type"] == "approval.requested" and e.get("approval_id"):
            requested_at.setdefault(e["approval_id"], e["event_time"])
        if e["event_type"] == "credential.revoked" and e.get("credential_id"):
            revoked_at.setdefault(e["credential_id"], e["event_time"])
        if e["event_type"] == "credential.issued" and e.get("task_id") and e.get("credential_id"):
            issued_for_task.setdefault(e["task_id"], []).append(e["credential_id"])

    for e in events:
        t = e["event_time"]
        kind = e["event_type"]
        if kind == "action":
            identity = e.get("identity") or {}
            credential = e.get("credential") or {}
            for row in rows(t, _dims(e)):
                row["actions_total"] += 1
                if e.get("policy_decision") == "allow":
                    row["actions_authorized"] += 1
                if identity.get("known") is True:
                    row["actions_attributable"] += 1
                if e.get("credential_id") is not None:
                    row["actions_with_credential"] += 1
                    ephemeral = False
                    if credential.get("known") is True:
                        if credential.get("issued_via") == "jit":
                            ephemeral = True
                        else:
                            limit = MAX_TTL_MS.get(identity.get("kind") or "", OTHER_TTL_MS)
                            life = credential.get("lifetime_ms")
                            ephemeral = life is not None and life <= limit
                    if ephemeral:
                        row["actions_ephemeral"] += 1
                if isinstance(e.get("latency_ms"), int):
                    row["latencies_ms"].append(e["latency_ms"])
        elif kind == "task.completed":
            succeeded = e.get("outcome") == "success"
            safe = succeeded and e.get("task_id") not in tasks_with_findings
            creds = issued_for_task.get(e.get("task_id") or "", [])
            for row in rows(t, _dims(e)):
                row["tasks_completed"] += 1
                row["tasks_succeeded"] += int(succeeded)
                row["tasks_safe"] += int(safe)
                for cred in creds:
                    row["task_credentials_completed"] += 1
                    if cred in revoked_at and revoked_at[cred] <= t + grace_ms:
                        row["task_credentials_revoked"] += 1
        elif kind == "approval.decided":
            aid = e.get("approval_id")
            for row in rows(t, _dims(e)):
                row["approvals_decided"] += 1
                if aid not in approvals_with_rs:
                    row["approvals_meaningful"] += 1
                if aid in requested_at:
                    row["review_seconds"].append((t - requested_at[aid]) / 1000)
    for alert in alerts:
        t, detector = alert[0], alert[1]
        dims = [("global", "all")]
        if len(alert) > 2 and alert[2]:
            dims.append(("platform", alert[2]))
        if len(alert) > 3 and alert[3]:
            dims.append(("identity", alert[3]))
        for row in rows(t, dims):
            row["alerts_total"] += 1
            row["alerts_by_detector"][detector] = row["alerts_by_detector"].get(detector, 0) + 1
    return table


def exact_quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of raw values (compare with the pipeline within 10%)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def differences(
    expected: Mapping[Key, Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    *,
    relative_error: float = 0.1,
) -> list[str]:
    """What differs between the expectation and the newest revision of each record.

    ``records`` are record dicts as read from governance.metrics.v1 (any order; the
    highest ``revision`` per key wins, as on the compacted topic).
    """
    newest: dict[Key, Mapping[str, Any]] = {}
    for r in records:
        key = (r["window_size_ms"], r["window_start"], r["dimension"], r["dimension_value"])
        if key not in newest or r["revision"] >= newest[key]["revision"]:
            newest[key] = r
    problems = []
    for key in sorted(set(expected) - set(newest)):
        problems.append(f"{key}: expected a record, none arrived")
    for key in sorted(set(newest) - set(expected)):
        if any(newest[key].get(name) for name in COUNT_FIELDS):
            problems.append(f"{key}: unexpected record with counts")
    for key in sorted(set(expected) & set(newest)):
        want, got = expected[key], newest[key]
        for name in COUNT_FIELDS:
            if want[name] != got.get(name):
                problems.append(f"{key}: {name} expected {want[name]}, got {got.get(name)}")
        if want["alerts_by_detector"] != (got.get("alerts_by_detector") or {}):
            problems.append(f"{key}: alerts_by_detector differ")
        for rate, (num, den) in RATES.items():
            expect = want[num] / want[den] if want[den] else None
            value = got.get(rate)
            if (expect is None) != (value is None) or (
                expect is not None and abs(expect - value) > 1e-9
            ):
                problems.append(f"{key}: {rate} expected {expect}, got {value}")
        for name, values, q in (
            ("median_review_seconds", want["review_seconds"], 0.5),
            ("p95_action_latency_ms", want["latencies_ms"], 0.95),
        ):
            exact = exact_quantile(values, q)
            value = got.get(name)
            if (exact is None) != (value is None) or (
                exact is not None and abs(value - exact) > relative_error * exact + 1e-9
            ):
                problems.append(f"{key}: {name} expected ~{exact}, got {value}")
    return problems
