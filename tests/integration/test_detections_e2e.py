"""Detections end to end through the real broker and Redis.

* a scenario with a positive case of every detector fires each of them;
* 10,000 events of clean simulated traffic raise no alert at all;
* a kill -9 in the middle of the scenario, then a restart: the same set of findings,
  and no alert_id is ever created twice.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from pipeline.detectors.registry import all_detectors
from pipeline.simulate import Simulator
from tests.support.scenario import Outcome, clear_registry, load_registry, run_scenario

pytestmark = pytest.mark.integration

START = 1_790_000_000_000
ALL_IDS = sorted(d.spec.id for d in all_detectors())


def scenario(seed: int, inject: bool) -> tuple[list[dict], list[dict]]:
    sim = Simulator(seed, start_ms=START, rate=100, sp03_jump=True)
    events: list[dict] = []
    if inject:
        for detector in ALL_IDS:
            sim.inject(detector)
            events += sim.events(150)
    else:
        events += sim.events(10_000)
    events += list(sim.finish())
    return sim.registry(), events


def run(settings_factory, worker_factory, redis_url, registry, events, kill=None) -> Outcome:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    settings = settings_factory(redis_key_prefix=prefix)
    load_registry(redis_url, prefix, registry)
    try:
        return run_scenario(
            settings,
            lambda name: worker_factory(settings, name=name).start(timeout=90),
            registry,
            events,
            kill_after_s=kill,
        )
    finally:
        clear_registry(redis_url, prefix)


def test_clean_traffic_raises_no_alert(settings_factory, worker_factory, redis_url) -> None:
    registry, events = scenario(21, inject=False)
    assert len(events) >= 10_000
    out = run(settings_factory, worker_factory, redis_url, registry, events)
    assert len({e["event_id"] for e in out.seen}) >= 10_000
    summary = Counter(a["detector"] for a in out.alerts)
    assert not out.alerts, f"clean traffic raised alerts: {dict(summary)}; first: {out.alerts[0]}"


def test_every_detector_fires_and_kill9_keeps_findings(
    settings_factory, worker_factory, redis_url
) -> None:
    registry, events = scenario(5, inject=True)
    calm = run(settings_factory, worker_factory, redis_url, registry, events)
    fired = {a["detector"] for a in calm.creates}
    assert fired == set(ALL_IDS), f"did not fire: {sorted(set(ALL_IDS) - fired)}"
    crashed = run(settings_factory, worker_factory, redis_url, registry, events, kill=2.0)
    creates = Counter(a["alert_id"] for a in crashed.creates)
    twice = [aid for aid, n in creates.items() if n > 1]
    assert not twice, f"{len(twice)} alert ids created twice after kill -9"
    assert set(creates) == {a["alert_id"] for a in calm.creates}
