"""Stage 2 sends the same alerts, metrics and dossiers whether its Table holds the
windowed detectors' events compact (``detectors/held.py``) or whole, as a Table
written before the compact form did: the same simulator stream, once as it runs
and once with every held event written back whole after each unit."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.detectors.held import PACKED, unpack
from pipeline.detectors.state import HELD
from pipeline.flow import stage2
from pipeline.flow.stage2 import Write
from pipeline.flow.stage2_runner import UnitSizer
from pipeline.simulate import Simulator
from pipeline.simulate.scenarios import INJECTORS
from tests.support.inprocess import InProcess, Store

EVENTS = 3000
BATCH = 100


class FixedUnits(UnitSizer):
    """Units of one size whatever they cost (sized by wall time, the metric windows'
    revisions would differ run to run)."""

    def timed(self, items: int, seconds: float) -> None:
        pass


class WholeHeld:
    """The Table log, then every held event in the store unpacked (the old layout);
    counts the held events it found packed and whole."""

    def __init__(self, log: Any, store: Store) -> None:
        self.log, self.store = log, store
        self.packed = self.whole = 0

    def get(self, key: str) -> Any:
        return self.log.get(key)

    def keys(self) -> Any:
        return self.log.keys()

    async def write(self, partition: int, writes: list[Write], wait: bool = True) -> None:
        await self.log.write(partition, writes, wait)
        for key, _, value in writes:
            state = self.store.get(key) if value is not None else None
            if not isinstance(state, dict):
                continue
            held = state.get(HELD)
            if held:
                self.packed += sum(PACKED in e for e in held)
                self.whole += sum(PACKED not in e for e in held)
                state[HELD] = [unpack(e) for e in held]


def run(whole: bool) -> tuple[InProcess, WholeHeld | None]:
    sim = Simulator(
        3, start_ms=1_767_225_600_000, rate=2.0, violations={d: 0.04 for d in sorted(INJECTORS)}
    )
    events = sim.events(EVENTS)
    harness = InProcess(2, identities={str(i["identity_id"]): i for i in sim.registry()})
    harness.runner.sizer = FixedUnits()
    log = None
    if whole:
        log = harness.runner.state_log = WholeHeld(harness.runner.state_log, harness.store)
    for n, start in enumerate(range(0, len(events), BATCH)):
        harness.read(n % 2, events[start : start + BATCH])
    harness.idle({0, 1}, 3600.0)
    return harness, log


def held_events(harness: InProcess) -> list[dict[str, Any]]:
    return [e for v in harness.store.values() if isinstance(v, dict) for e in v.get(HELD) or []]


def test_outputs_are_the_same_with_whole_held_events(monkeypatch: pytest.MonkeyPatch) -> None:
    # progress at every move, not once a wall-clock second: the same windows close
    # at the same records in both runs
    monkeypatch.setattr(stage2, "PROGRESS_EVERY_S", 0.0)
    compact, _ = run(whole=False)
    legacy, log = run(whole=True)
    assert log is not None
    # both forms were there: packed by the engine, whole at the start of each unit
    assert log.packed > 1000 and log.whole > 1000
    assert held_events(compact) and all(PACKED in e for e in held_events(compact))
    # the windowed detectors (the held events' readers) found something
    windowed = {i for i, s in compact.engine.specs.items() if s.window_ms is not None}
    found = {a["detector"] for a in compact.alerts} & windowed
    assert {"SP-02", "SP-07"} <= found, found
    assert compact.alerts == legacy.alerts
    assert compact.metrics == legacy.metrics
    assert compact.evidence == legacy.evidence
    assert len(compact.alerts) > 50 and compact.metrics and compact.evidence
