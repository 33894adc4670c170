"""Writes ``tests/unit/data/legacy_state.json.gz``: a stage-2 Table as an older revision
left it, and what that revision sent after a restart on it.

Run once with the revision whose state layout the fixture should hold (it was
written by the revision before the typed state parts, issue 13):

    .venv/bin/python -m tests.support.legacy_state tests/unit/data/legacy_state.json.gz

Simulator traffic goes through stage 1 and stage 2 in process; after ``SPLIT`` events
the Table (a dict written from the changelog bytes) is dumped, then a fresh stage 1
and stage 2 (a restart) take the rest on that Table, and their alerts and dossiers
are recorded. The rest of the traffic ends with a second occurrence of each
single-event alert of the first part (an Update only if ``_alerts`` was restored).
``test_state_layout`` repeats the restart with the current code.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import orjson

from pipeline.simulate.generator import Simulator
from pipeline.simulate.scenarios import INJECTORS
from tests.support.inprocess import InProcess

SEED = 11
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVENTS = 1200
SPLIT = 800
BATCH = 100
INPUTS = 2


def traffic() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sim = Simulator(
        SEED, start_ms=START_MS, rate=0.5, violations={d: 0.04 for d in sorted(INJECTORS)}
    )
    events = sim.events(EVENTS)
    return events, sim.registry()


def feed(harness: InProcess, events: list[dict[str, Any]]) -> None:
    for n, start in enumerate(range(0, len(events), BATCH)):
        harness.read(n % INPUTS, events[start : start + BATCH])


def repeats(harness: InProcess, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A second occurrence (new id, same time) of the events of the first part's
    single-event alerts: after the restart each must be an Update of the same alert
    id with count 2 (the restored ``_alerts``)."""
    by_id = {e["event_id"]: e for e in events}
    out = []
    for alert in harness.alerts:
        if alert["window_start"] is None and alert["activity_id"] == 1:
            event = by_id[alert["evidence"]["event_ids"][0]]
            out.append({**event, "event_id": f"{event['event_id']}-again"})
    return out


def outputs(harness: InProcess) -> dict[str, Any]:
    """What a restart sent: alerts and dossiers, without wall-clock fields."""
    return {
        "alerts": [
            {k: a[k] for k in ("alert_id", "detector", "activity_id", "count", "time", "evidence")}
            for a in harness.alerts
        ],
        "evidence": harness.evidence,
    }


def restarted(table: dict[str, Any], next_offset: dict[str, int], identities: Any) -> InProcess:
    harness = InProcess(INPUTS, identities=identities)
    harness.store.update(orjson.loads(orjson.dumps(table)))
    harness.next_offset = {int(p): o for p, o in next_offset.items()}
    return harness


def main(path: str) -> None:
    events, registry = traffic()
    identities = {str(i["identity_id"]): i for i in registry}
    first = InProcess(INPUTS, identities=identities)
    feed(first, events[:SPLIT])
    table = orjson.loads(orjson.dumps(dict(first.store)))
    next_offset = {str(p): o for p, o in first.next_offset.items()}
    rest = events[SPLIT:] + repeats(first, events[:SPLIT])
    second = restarted(table, next_offset, identities)
    feed(second, rest)
    fixture = {
        "events": rest,
        "identities": identities,
        "table": table,
        "next_offset": next_offset,
        "expected": outputs(second),
    }
    Path(path).write_bytes(gzip.compress(orjson.dumps(fixture, option=orjson.OPT_SORT_KEYS), 9))


if __name__ == "__main__":
    main(sys.argv[1])
