"""Realistic synthetic metrics and alerts for the report (tests and the docs screenshot).

Not a substitute for a real run: it exists so the report can be built and looked at
without a worker. The organisation comes from the simulator's world (same platforms,
teams, agents and approvers as ``govpipe simulate``); alerts are made by the real
``to_alert`` from the real detector specs; metric records by the real
``build_record``, 1-minute and 1-hour windows, global / platform / team / identity /
mode,
with a few revisions. The story: a steady gap between successful and safe
completion, and a 20-minute incident in which one sales agent runs tasks under a
static key that is never revoked (SP-05 / SP-02 / SP-01 spike, the gap widens).

    python -m pipeline.report.sample report.html [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from pipeline import __version__
from pipeline.detectors.alerts import record_alert, to_alert
from pipeline.detectors.base import DetectorSpec, Finding
from pipeline.metrics.codec import MetricCodec
from pipeline.metrics.record import MetricRecord, build_record

MINUTE: Final = 60_000
HOUR: Final = 60 * MINUTE
#: 2025-11-24 14:00 UTC
DEFAULT_START: Final = 1_763_992_800_000
DEFAULT_MINUTES: Final = 120

#: Detector -> alerts over two hours in steady state; a detector not listed (a new
#: one, a user's rule) gets ``DEFAULT_RATE``. What each alert is about (its subject
#: kind) comes from the detector's spec.
RATES: Final = {
    "SP-01": 34,
    "SP-02": 26,
    "AZ-01": 22,
    "RS-01": 20,
    "RS-04": 13,
    "SP-05": 9,
    "AT-01": 9,
    "SP-04": 7,
    "AT-02": 6,
    "RS-06": 5,
    "SL-01": 4,
    "RS-02": 3,
    "AZ-02": 3,
    "SP-06": 3,
    "AT-03": 2,
    "RS-05": 2,
    "SP-07": 2,
    "SP-08": 2,
    "AT-04": 1,
    "RS-03": 1,
    "RS-07": 1,
    "SP-03": 1,
}
DEFAULT_RATE: Final = 1
#: The incident's extra alerts per minute at its peak.
INCIDENT_RATES: Final = (("SP-02", 3.2), ("SP-05", 1.4), ("SP-01", 0.5), ("AZ-01", 0.3))
#: Subject kinds whose alerts are about approvals (they name an approver, no task).
APPROVAL_KINDS: Final = frozenset({"approval", "approver", "requester"})


@dataclass(frozen=True, slots=True)
class Actor:
    identity_id: str
    team: str
    platform: str


@dataclass(frozen=True, slots=True)
class Sample:
    metrics: list[MetricRecord]
    alerts: list[dict[str, Any]]  # as published: creates and some updates

    def metric_values(self, codec: MetricCodec | None = None) -> list[tuple[bytes, bytes]]:
        """(key, Avro value) pairs, as the worker publishes them."""
        from pipeline.metrics.record import record_key

        codec = codec or MetricCodec()
        return [(record_key(r), codec.encode(r)) for r in self.metrics]

    def alert_values(self) -> list[tuple[bytes, bytes]]:
        """(alert_id, JSON value) pairs, as the worker publishes them."""
        return [(str(a["alert_id"]).encode(), orjson.dumps(a)) for a in self.alerts]


def _specs() -> dict[str, DetectorSpec]:
    from pipeline.detectors.registry import all_detectors

    return {d.spec.id: d.spec for d in all_detectors()}


def _zipf_choice(rng: random.Random, items: Sequence[Any], s: float = 1.1) -> Any:
    weights = [1 / (i + 1) ** s for i in range(len(items))]
    return rng.choices(items, weights)[0]


def _world_actors(seed: int) -> tuple[list[Actor], list[str], list[str]]:
    from pipeline.simulate.world import build_world

    world = build_world(seed)
    actors = [
        Actor(a.identity_id, a.team, pw.spec.name) for pw in world.platforms for a in pw.agents
    ]
    approvers = [h for pw in world.platforms for h in pw.approvers] + world.stamp_approvers[:2]
    requesters = [h for pw in world.platforms for h in pw.requesters]
    return actors, approvers, requesters


def _facts(detector: str, rng: random.Random) -> dict[str, Any]:
    if detector == "SP-01":
        return {"lifetime_s": rng.choice([None, 7_776_000, 31_536_000, 172_800]), "max_s": 3600}
    if detector == "SP-02":
        return {"seconds_after_completion": rng.randint(301, 3_600), "grace_s": 300}
    if detector in ("RS-01",):
        return {"review_seconds": round(rng.uniform(1.2, 9.5), 1), "min_review_s": 10}
    if detector == "RS-02":
        return {"decisions": rng.randint(10, 31), "window_s": 60}
    if detector == "SP-05":
        return {"sensitivity": rng.choice(["high", "critical"]), "issued_via": "static"}
    return {}


def _alerts(
    rng: random.Random,
    start: int,
    minutes: int,
    actors: list[Actor],
    approvers: list[str],
    requesters: list[str],
    incident: tuple[int, int],
    incident_actor: Actor,
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], Actor]]]:
    """(published alerts incl. updates, [(distinct alert, its actor)])."""
    specs = _specs()
    ordered_actors = actors[:]
    rng.shuffle(ordered_actors)
    ordered_approvers = approvers[:]
    rng.shuffle(ordered_approvers)
    published: list[dict[str, Any]] = []
    distinct: list[tuple[dict[str, Any], Actor]] = []
    state: dict[str, Any] = {}
    scale = minutes / DEFAULT_MINUTES

    def emit(detector: str, t: int, actor: Actor, approver: str | None, n: int) -> None:
        spec = specs[detector]
        subject_kind = spec.subject
        about_approval = subject_kind in APPROVAL_KINDS
        credential = f"cred-{actor.identity_id.split('-', 1)[-1]}-{rng.randint(1, 3)}"
        task = f"task-{rng.getrandbits(40):010x}"
        approval = f"apr-{rng.getrandbits(32):08x}"
        subject = {
            "credential": credential,
            "task": task,
            "identity": actor.identity_id,
            "approval": approval,
            "approver": approver or "",
            "requester": rng.choice(requesters),
        }[subject_kind]
        ws = (t // spec.window_ms) * spec.window_ms if spec.window_ms else None
        finding = Finding(
            detector=detector,
            subject=subject,
            event_ids=[f"{rng.getrandbits(64):016x}" for _ in range(rng.randint(1, 3))],
            facts=_facts(detector, rng),
            window_start=ws,
            window_end=ws + spec.window_ms if ws is not None and spec.window_ms else None,
            time=t,
            context={
                "identity_id": actor.identity_id,
                "credential_id": credential if subject_kind in ("credential", "task") else None,
                "task_id": None if about_approval else task,
                "approval_id": approval if about_approval else None,
                "approver": approver,
                "platform": actor.platform,
                "environment": "prod",
            },
        )
        alert: dict[str, Any] = {}
        for i in range(n):
            activity, count = record_alert(state, f"{detector}|{subject}", t + i * MINUTE)
            alert = to_alert(
                finding, spec, activity=activity, count=count, product_version=__version__
            )
            if i:
                alert["time"] = t + i * MINUTE
            published.append(alert)
        distinct.append((alert, actor))

    for detector in [*(d for d in RATES if d in specs), *sorted(set(specs) - set(RATES))]:
        per_two_hours = RATES.get(detector, DEFAULT_RATE)
        n = max(1, round(per_two_hours * scale * rng.uniform(0.8, 1.2)))
        for _ in range(n):
            t = start + rng.randrange(minutes * MINUTE)
            actor = _zipf_choice(rng, ordered_actors)
            approver = (
                _zipf_choice(rng, ordered_approvers, 1.4)
                if specs[detector].subject in APPROVAL_KINDS
                else None
            )
            emit(detector, t, actor, approver, 1 + (rng.random() < 0.15))
    # the incident: a sales agent on a static key, tasks never revoked
    lo, hi = incident
    for minute in range(lo, hi):
        # ramps up, then down as the key is rotated
        strength = math.sin(math.pi * (minute - lo + 0.5) / (hi - lo))
        for detector, per_minute in INCIDENT_RATES:
            for _ in range(_poisson(rng, per_minute * strength)):
                t = start + minute * MINUTE + rng.randrange(MINUTE)
                emit(detector, t, incident_actor, None, 1 + (rng.random() < 0.3))
    published.sort(key=lambda a: int(a["time"]))
    return published, distinct


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth; means here are small)."""
    limit, k, p = math.exp(-max(mean, 0.0)), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _counts(
    rng: random.Random, actions_mean: float, tasks_mean: float, unsafe: int, incident: bool
) -> dict[str, int]:
    actions = max(0, round(rng.gauss(actions_mean, actions_mean * 0.18)))
    tasks = max(0, round(rng.gauss(tasks_mean, tasks_mean * 0.25)))
    succeeded = sum(rng.random() < 0.965 for _ in range(tasks))
    quiet_unsafe = sum(rng.random() < 0.06 for _ in range(succeeded))
    safe = max(0, succeeded - min(succeeded, unsafe + quiet_unsafe))
    with_credential = round(actions * rng.uniform(0.86, 0.93))
    creds = round(tasks * rng.uniform(1.0, 1.5))
    approvals = sum(rng.random() < 0.35 for _ in range(max(tasks, 1)))
    counters = {
        "tasks_completed": tasks,
        "tasks_succeeded": succeeded,
        "tasks_safe": safe,
        "actions_total": actions,
        "actions_authorized": round(actions * rng.uniform(0.955, 0.99)),
        "actions_attributable": round(actions * rng.uniform(0.985, 1.0)),
        "actions_with_credential": with_credential,
        "actions_ephemeral": round(with_credential * rng.uniform(0.55, 0.7 if incident else 0.9)),
        "task_credentials_completed": creds,
        "task_credentials_revoked": round(creds * rng.uniform(0.55 if incident else 0.86, 0.98)),
        "approvals_decided": approvals,
        "approvals_meaningful": round(approvals * rng.uniform(0.7, 0.95)),
    }
    return counters


#: Per-team volume (actions, tasks per minute) and how the team fares.
TEAM_VOLUME: Final = {
    "sales-ops": (95.0, 9.0),
    "platform-eng": (140.0, 12.0),
    "finance-ops": (45.0, 4.0),
    "customer-support": (120.0, 14.0),
}
#: The mode of autonomy each team's agents mostly run in: the sample's mode windows are
#: the sums of their teams' (no extra draws, so the rest of a seed's sample is unchanged).
TEAM_MODE: Final = {
    "sales-ops": "autonomous",
    "platform-eng": "autonomous",
    "finance-ops": "assistant",
    "customer-support": "reporting",
}


def make_sample(
    seed: int = 7, *, start: int = DEFAULT_START, minutes: int = DEFAULT_MINUTES
) -> Sample:
    """A deterministic sample for ``seed``."""
    rng = random.Random(f"report-sample:{seed}")
    actors, approvers, requesters = _world_actors(seed)
    incident = (minutes * 45 // 100, minutes * 45 // 100 + max(2, minutes // 6))
    sales = [a for a in actors if a.team == "sales-ops"] or actors
    incident_actor = sales[min(2, len(sales) - 1)]
    published, distinct = _alerts(
        rng, start, minutes, actors, approvers, requesters, incident, incident_actor
    )
    # alerts per (minute, team) and task-level findings make the unsafe tasks
    unsafe: Counter[tuple[int, str]] = Counter()
    by_window: dict[tuple[int, str, str], Counter[str]] = defaultdict(Counter)
    for alert, actor in distinct:
        ws = (int(alert["time"]) // MINUTE) * MINUTE
        if alert.get("task_id"):  # an alert naming a task makes it unsafe
            unsafe[(ws, actor.team)] += 1
        for dim, value in (
            ("global", "all"),
            ("team", actor.team),
            ("platform", actor.platform),
            ("identity", actor.identity_id),
            ("mode", TEAM_MODE.get(actor.team, "autonomous")),
        ):
            by_window[(ws, dim, value)][alert["detector"]] += 1
    platforms_of: dict[str, list[str]] = defaultdict(list)
    for a in actors:
        if a.platform not in platforms_of[a.team]:
            platforms_of[a.team].append(a.platform)

    records: list[MetricRecord] = []
    hourly: dict[tuple[int, str, str], Counter[str]] = defaultdict(Counter)
    for m in range(minutes):
        ws = start + m * MINUTE
        in_incident = incident[0] <= m < incident[1]
        # a gentle daily-traffic curve
        load = 0.8 + 0.35 * math.sin(math.pi * m / max(minutes, 1))
        totals: Counter[str] = Counter()
        by_mode: dict[str, Counter[str]] = defaultdict(Counter)
        for team, (actions_mean, tasks_mean) in TEAM_VOLUME.items():
            counters = _counts(
                rng,
                actions_mean * load,
                tasks_mean * load,
                unsafe[(ws, team)],
                in_incident and team == "sales-ops",
            )
            totals.update(counters)
            by_mode[TEAM_MODE[team]].update(counters)
            for dim, value in (("team", team), ("platform", platforms_of[team][0])):
                alerts = by_window.get((ws, dim, value), Counter())
                records.append(_record(MINUTE, ws, dim, value, counters, alerts, 0))
                hourly[((ws // HOUR) * HOUR, dim, value)].update(counters)
        for mode, counters in sorted(by_mode.items()):
            alerts = by_window.get((ws, "mode", mode), Counter())
            records.append(_record(MINUTE, ws, "mode", mode, dict(counters), alerts, 0))
            hourly[((ws // HOUR) * HOUR, "mode", mode)].update(counters)
        alerts = by_window.get((ws, "global", "all"), Counter())
        records.append(_record(MINUTE, ws, "global", "all", dict(totals), alerts, 0))
        hourly[((ws // HOUR) * HOUR, "global", "all")].update(totals)
        # a few windows revised by late events: the report must use the last revision
        if m % 17 == 5:
            late = dict(totals)
            late["actions_total"] += 3
            late["actions_authorized"] += 3
            records.append(_record(MINUTE, ws, "global", "all", late, alerts, 1))
    for (ws, dim, value), counters in sorted(hourly.items()):
        alerts = Counter[str]()
        for (aws, adim, avalue), c in by_window.items():
            if adim == dim and avalue == value and ws <= aws < ws + HOUR:
                alerts.update(c)
        records.append(_record(HOUR, ws, dim, value, dict(counters), alerts, 0))
    return Sample(records, published)


def _record(
    size: int,
    ws: int,
    dim: str,
    value: str,
    counters: dict[str, int],
    alerts: Counter[str],
    revision: int,
) -> MetricRecord:
    counters = {**counters, "alerts_total": sum(alerts.values())}
    return build_record(
        window_size_ms=size,
        window_start=ws,
        dimension=dim,
        dimension_value=value,
        counters=counters,
        histograms={},
        alerts=dict(alerts),
        revision=revision,
        emitted_at=ws + size + revision * MINUTE,
    )


def sample_data(seed: int = 7, **kwargs: Any) -> Any:
    """``ReportData`` of a sample, decoded as ``collect`` would decode the topics."""
    from pipeline.report.collect import report_data

    sample = make_sample(seed, **kwargs)
    return report_data(
        (v for _, v in sample.metric_values()),
        (v for _, v in sample.alert_values()),
        metrics_topic="governance.metrics.v1",
        alerts_topic="governance.alerts.v1",
    )


#: Verdicts a sample task's findings turn red (every finding makes the task unsafe).
_RED_VERDICTS: Final = {
    "SP-01": "ephemeral",
    "SP-05": "ephemeral",
    "SP-02": "revoked_on_completion",
    "AZ-01": "authorised",
    "AZ-02": "authorised",
    "AT-01": "attributable",
    "AT-02": "attributable",
}
#: Rows of the sample's "Tasks with findings" table (the real report lists up to 200).
SAMPLE_TASK_ROWS: Final = 12


def sample_dossiers(seed: int, alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The few dossier fields the "Tasks with findings" table reads (platform, team,
    verdicts) for each task the alerts name: a stand-in for the evidence topic, with
    verdicts red where the task's detectors say so."""
    actors, _, _ = _world_actors(seed)
    team_of = {a.identity_id: a.team for a in actors}
    out: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        task = alert.get("task_id")
        if not task:
            continue
        dossier = out.setdefault(
            str(task),
            {
                "task_id": str(task),
                "revision": 0,
                "platform": alert.get("platform"),
                "initiator": {
                    "identity_id": alert.get("identity_id"),
                    "team": team_of.get(str(alert.get("identity_id"))),
                },
                "verdicts": {
                    "succeeded": True,
                    "safe": False,
                    "authorised": True,
                    "attributable": True,
                    "ephemeral": True,
                    "revoked_on_completion": True,
                    "approved_meaningfully": None,
                },
            },
        )
        red = _RED_VERDICTS.get(str(alert.get("detector")))
        if red is not None:
            dossier["verdicts"][red] = False
    return list(out.values())


def write_sample_report(path: Path | str, *, seed: int = 7) -> Path:
    """Render the sample into ``path`` (HTML), with its "Tasks with findings" table."""
    from pipeline.evidence.source import MemorySource
    from pipeline.report.build import render_data, write_atomically
    from pipeline.report.dossiers import task_findings

    data = sample_data(seed)
    generated = DEFAULT_START + (DEFAULT_MINUTES + 5) * MINUTE
    source = MemorySource(sample_dossiers(seed, data.alerts))
    tasks = task_findings(
        data.alerts, source, limit=SAMPLE_TASK_ROWS, topic="governance.evidence.v1"
    )
    page, _ = render_data(data, generated_at_ms=generated, tasks=tasks)
    out = Path(path)
    write_atomically(out, page)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report.sample")
    parser.add_argument("out", type=Path, help="the HTML file to write")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.monotonic()
    out = write_sample_report(args.out, seed=args.seed)
    print(f"{out} ({out.stat().st_size:,} bytes, {time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
