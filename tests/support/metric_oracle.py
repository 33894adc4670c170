"""governance.metrics.v1 computed from the contract, independently of the pipeline.

The input is what a user can see from outside: the events published, the identity
registry, the alert records read from governance.alerts.v1 and the policy values
the worker runs under (SP-01's maximum lifetimes, SP-02's grace). Nothing here
imports ``pipeline.metrics`` or ``pipeline.flow``, and nothing follows the
implementation's bookkeeping (when a correction travels, which alert activity it
reacts to): only the metric definitions. Plain loops.

Definitions (issue 12, "metrics follow findings"):

* windows are tumbling ``[start, start + size)`` by event time; an item sits in the
  window holding its time;
* dimensions of an event: ``global/all``; ``platform``; ``team`` = the registry team
  of its ``identity_id`` (when the registry has one); ``identity`` = its
  ``identity_id``; ``mode`` = the registry mode of its ``identity_id`` when the
  registry has the identity (``autonomous`` when the entry has no mode; an identity
  the registry lacks is in no mode);
* actions, at their ``event_time``: authorised = ``policy_decision`` allow;
  attributable = ``identity_id`` known to the registry; with credential =
  ``credential_id`` set; ephemeral = that credential was issued JIT, or its lifetime
  (``expires_at`` - issue time; no expiry = not ephemeral) is within SP-01's
  maximum for the acting identity's kind (``other`` for humans, unknown identities
  and kinds without a limit). The credential's terms are those in force at the
  action: its first ``credential.issued`` at or before the action gives the issue
  time and ``issued_via``, the newest issuance or rotation at or before the action
  that carries ``expires_at`` gives the expiry; a credential with no issuance seen
  by then is not ephemeral;
* tasks, at their (first) ``task.completed``: succeeded = ``outcome`` success; safe
  = succeeded and no alert record (Create or Update) names the task in ``task_id``;
* task credentials, at the task's completion with its dimensions: every credential
  issued for the task (``credential.issued`` with that ``task_id``); revoked = a
  ``credential.revoked`` of it at or before completion + SP-02's grace;
* approvals, at their (first) ``approval.decided``: meaningful = no alert record of
  an RS-* detector names the approval in ``approval_id`` or ``evidence.approval_ids``
  (RS-02/03/07, raised on an approver or requester), or lists in
  ``evidence.event_ids`` an event that carries that ``approval_id``; review seconds
  = decided - first requested (when the request was published);
* alerts: occurrences of findings, Create or Update, in the window of the record's
  ``time``, in ``global``, ``platform``, ``identity``, ``team`` and ``mode`` (registry
  team and mode of the alert's ``identity_id``, as for events). The occurrences a
  record adds come from OCSF's ``count`` (occurrences of the incident so far): its
  ``count`` minus the highest ``count`` of the same alert id's other records below it.
  One occurrence per record makes this "every record counts once"; a record delivered
  twice (at-least-once output) adds nothing the second time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
LIFETIME_KINDS = ("ai_agent", "workload", "service_account")

Key = tuple[int, int, str, str]


@dataclass(frozen=True)
class PolicyValues:
    """The policy values the metrics depend on, as numbers (read from the policy the
    worker runs under, so an override reaches the oracle as a value)."""

    #: identity kind -> SP-01 maximum credential lifetime (ms); "other" for the rest
    max_lifetime_ms: Mapping[str, int]
    #: SP-02 grace after task completion (ms)
    grace_ms: int

    @classmethod
    def from_thresholds(cls, sp01: Mapping[str, Any], sp02: Mapping[str, Any]) -> PolicyValues:
        """From SP-01's and SP-02's effective thresholds (``policy.thresholds(spec)``)."""
        limits = {k: int(sp01[f"max_lifetime_{k}_s"] * 1000) for k in LIFETIME_KINDS}
        limits["other"] = int(sp01["max_lifetime_other_s"] * 1000)
        return cls(limits, int(sp02["grace_s"] * 1000))

    def limit(self, kind: str | None) -> int:
        if kind is not None and kind != "other" and kind in self.max_lifetime_ms:
            return self.max_lifetime_ms[kind]
        return self.max_lifetime_ms["other"]


def _empty() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COUNT_FIELDS, 0)
    row["alerts_by_detector"] = {}
    row["review_seconds"] = []
    row["latencies_ms"] = []
    return row


def _credential_terms(
    events: list[Mapping[str, Any]],
) -> dict[str, list[tuple[int, str, Mapping[str, Any]]]]:
    """credential_id -> its issued/rotated events as (time, type, event), by time."""
    terms: dict[str, list[tuple[int, str, Mapping[str, Any]]]] = {}
    for e in events:
        if e["event_type"] in ("credential.issued", "credential.rotated") and e.get(
            "credential_id"
        ):
            terms.setdefault(str(e["credential_id"]), []).append(
                (int(e["event_time"]), str(e["event_type"]), e)
            )
    for history in terms.values():
        history.sort(key=lambda x: (x[0], x[1] != "credential.issued"))
    return terms


def _ephemeral(history: list[tuple[int, str, Mapping[str, Any]]], at: int, limit_ms: int) -> bool:
    issued = [h for h in history if h[1] == "credential.issued" and h[0] <= at]
    if not issued:
        return False
    issue_time, _, first = issued[0]
    if first.get("issued_via") == "jit":
        return True
    expires = None
    for t, _, e in history:
        if t > at:
            break
        if e.get("expires_at") is not None:
            expires = int(e["expires_at"])
    return expires is not None and expires - issue_time <= limit_ms


def expected_metrics(
    events: Iterable[Mapping[str, Any]],
    registry: Iterable[Mapping[str, Any]],
    alerts: Iterable[Mapping[str, Any]],
    window_sizes: Iterable[int],
    policy: PolicyValues,
) -> dict[Key, dict[str, Any]]:
    """Expected counters (plus raw review seconds and latencies) per window and dimension."""
    events = list(events)
    sizes = list(window_sizes)
    identities = {str(i["identity_id"]): i for i in registry}
    table: dict[Key, dict[str, Any]] = {}

    def dims(platform: Any, identity_id: Any) -> list[tuple[str, str]]:
        out = [("global", "all")]
        if platform is not None:
            out.append(("platform", str(platform)))
        team = (identities.get(str(identity_id)) or {}).get("team")
        if identity_id is not None and team is not None:
            out.append(("team", str(team)))
        if identity_id is not None:
            out.append(("identity", str(identity_id)))
        entry = identities.get(str(identity_id)) if identity_id is not None else None
        if entry is not None:
            out.append(("mode", str(entry.get("mode") or "autonomous")))
        return out

    def rows(time: int, where: list[tuple[str, str]]) -> list[dict[str, Any]]:
        found = []
        for size in sizes:
            start = (time // size) * size
            for dim, value in where:
                found.append(table.setdefault((size, start, dim, value), _empty()))
        return found

    # the alert records, and the occurrences each one adds (by OCSF count)
    records = list(alerts)
    added: list[tuple[Mapping[str, Any], int]] = []
    highest: dict[str, int] = {}
    for a in sorted(records, key=lambda a: (str(a["alert_id"]), int(a.get("count") or 1))):
        aid, count = str(a["alert_id"]), int(a.get("count") or 1)
        added.append((a, max(0, count - highest.get(aid, 0))))
        highest[aid] = max(count, highest.get(aid, 0))

    tasks_with_findings = {str(a["task_id"]) for a in records if a.get("task_id")}
    approval_of_event = {
        str(e["event_id"]): str(e["approval_id"]) for e in events if e.get("approval_id")
    }
    approvals_with_rs: set[str] = set()
    for a in records:
        if not str(a["detector"]).startswith("RS-"):
            continue
        if a.get("approval_id"):
            approvals_with_rs.add(str(a["approval_id"]))
        evidence = a.get("evidence") or {}
        for eid in evidence.get("event_ids") or []:
            if str(eid) in approval_of_event:
                approvals_with_rs.add(approval_of_event[str(eid)])
        approvals_with_rs.update(str(x) for x in evidence.get("approval_ids") or [])

    requested_at: dict[str, int] = {}
    revoked_at: dict[str, int] = {}
    issued_for_task: dict[str, set[str]] = {}
    completed: dict[str, Mapping[str, Any]] = {}
    decided: dict[str, Mapping[str, Any]] = {}
    for e in sorted(events, key=lambda e: e["event_time"]):
        kind, t = e["event_type"], int(e["event_time"])
        if kind == "approval.requested" and e.get("approval_id"):
            requested_at.setdefault(str(e["approval_id"]), t)
        elif kind == "credential.revoked" and e.get("credential_id"):
            revoked_at.setdefault(str(e["credential_id"]), t)
        elif kind == "credential.issued" and e.get("task_id") and e.get("credential_id"):
            issued_for_task.setdefault(str(e["task_id"]), set()).add(str(e["credential_id"]))
        elif kind == "task.completed" and e.get("task_id"):
            completed.setdefault(str(e["task_id"]), e)
        elif kind == "approval.decided" and e.get("approval_id"):
            decided.setdefault(str(e["approval_id"]), e)
    terms = _credential_terms(events)

    for e in events:
        if e["event_type"] != "action":
            continue
        t = int(e["event_time"])
        identity = identities.get(str(e.get("identity_id")))
        cred = e.get("credential_id")
        ephemeral = cred is not None and _ephemeral(
            terms.get(str(cred), []), t, policy.limit((identity or {}).get("kind"))
        )
        for row in rows(t, dims(e.get("platform"), e.get("identity_id"))):
            row["actions_total"] += 1
            row["actions_authorized"] += int(e.get("policy_decision") == "allow")
            row["actions_attributable"] += int(identity is not None)
            row["actions_with_credential"] += int(cred is not None)
            row["actions_ephemeral"] += int(ephemeral)
            if isinstance(e.get("latency_ms"), int):
                row["latencies_ms"].append(e["latency_ms"])

    for task, e in completed.items():
        t = int(e["event_time"])
        succeeded = e.get("outcome") == "success"
        safe = succeeded and task not in tasks_with_findings
        creds = sorted(issued_for_task.get(task, ()))
        revoked = [c for c in creds if c in revoked_at and revoked_at[c] <= t + policy.grace_ms]
        for row in rows(t, dims(e.get("platform"), e.get("identity_id"))):
            row["tasks_completed"] += 1
            row["tasks_succeeded"] += int(succeeded)
            row["tasks_safe"] += int(safe)
            row["task_credentials_completed"] += len(creds)
            row["task_credentials_revoked"] += len(revoked)

    for aid, e in decided.items():
        t = int(e["event_time"])
        for row in rows(t, dims(e.get("platform"), e.get("identity_id"))):
            row["approvals_decided"] += 1
            row["approvals_meaningful"] += int(aid not in approvals_with_rs)
            if aid in requested_at and requested_at[aid] <= t:
                row["review_seconds"].append((t - requested_at[aid]) / 1000)

    for a, n in added:
        detector = str(a["detector"])
        if not n:
            continue
        for row in rows(int(a["time"]), dims(a.get("platform"), a.get("identity_id"))):
            row["alerts_total"] += n
            row["alerts_by_detector"][detector] = row["alerts_by_detector"].get(detector, 0) + n
    return table


def exact_quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of raw values (compare with the pipeline within 10%)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def newest(records: Iterable[Mapping[str, Any]]) -> dict[Key, Mapping[str, Any]]:
    """The highest revision per key, as the compacted topic keeps it."""
    out: dict[Key, Mapping[str, Any]] = {}
    for r in records:
        key = (r["window_size_ms"], r["window_start"], r["dimension"], r["dimension_value"])
        if key not in out or r["revision"] >= out[key]["revision"]:
            out[key] = r
    return out


def differences(
    expected: Mapping[Key, Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    *,
    relative_error: float = 0.1,
    until: int | None = None,
) -> list[str]:
    """What differs between the expectation and the newest revision of each record.

    ``until``: compare only windows that end at or before it (event time the worker
    was driven past); later windows may legitimately still be open.
    """
    got_all = newest(records)
    want_all = dict(expected)
    if until is not None:
        got_all = {k: v for k, v in got_all.items() if k[1] + k[0] <= until}
        want_all = {k: v for k, v in want_all.items() if k[1] + k[0] <= until}
    problems = []
    for key in sorted(set(want_all) - set(got_all)):
        counts = {n: want_all[key][n] for n in COUNT_FIELDS if want_all[key][n]}
        problems.append(f"{key}: expected a record {counts}, none arrived")
    for key in sorted(set(got_all) - set(want_all)):
        counts = {n: got_all[key].get(n) for n in COUNT_FIELDS if got_all[key].get(n)}
        if counts:
            problems.append(f"{key}: unexpected record with counts {counts}")
    for key in sorted(set(want_all) & set(got_all)):
        want, got = want_all[key], got_all[key]
        for name in COUNT_FIELDS:
            if want[name] != got.get(name):
                problems.append(f"{key}: {name} expected {want[name]}, got {got.get(name)}")
        if want["alerts_by_detector"] != (got.get("alerts_by_detector") or {}):
            problems.append(
                f"{key}: alerts_by_detector expected {want['alerts_by_detector']}, "
                f"got {got.get('alerts_by_detector')}"
            )
        for rate, (num, den) in RATES.items():
            expect = want[num] / want[den] if want[den] else None
            value = got.get(rate)
            if (expect is None) != (value is None) or (
                expect is not None and value is not None and abs(expect - value) > 1e-9
            ):
                problems.append(f"{key}: {rate} expected {expect}, got {value}")
        for name, values, q in (
            ("median_review_seconds", want["review_seconds"], 0.5),
            ("p95_action_latency_ms", want["latencies_ms"], 0.95),
        ):
            exact = exact_quantile(values, q)
            value = got.get(name)
            if (exact is None) != (value is None) or (
                exact is not None
                and value is not None
                and abs(value - exact) > relative_error * exact + 1e-9
            ):
                problems.append(f"{key}: {name} expected ~{exact}, got {value}")
    return problems


def summarize(problems: list[str], limit: int = 40) -> str:
    """Problems grouped by field, then the first ``limit`` lines."""
    by_field: dict[str, int] = {}
    for p in problems:
        field = p.split(": ", 1)[1].split(" ", 1)[0] if ": " in p else p
        by_field[field] = by_field.get(field, 0) + 1
    head = ", ".join(f"{f} x{n}" for f, n in sorted(by_field.items(), key=lambda x: -x[1]))
    return f"{len(problems)} differences ({head}):\n" + "\n".join(problems[:limit])
