"""A registry gap through stage 1 and stage 2 in-process (issue 15 item 2).

While the registry marker is absent, stage 1 marks the events it enriches; the
detectors that need the registry leave them out, every other detector and the metrics
still see them, stage 2 counts them, and nothing of the mark reaches an output. Once
the marker is back, the same detectors judge the events enriched from then on.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from pipeline.detectors.base import REGISTRY_GAP
from pipeline.enrichment.readiness import RegistryWatch
from pipeline.observability import render
from tests.support.events import make_event
from tests.support.inprocess import InProcess

KEY = "nhi:registry"
LOADED = {"loaded_at": "1790000000000", "identities": "1", "generation": "1"}
NEEDS_REGISTRY = ("AT-01", "AT-03", "AT-04", "SP-01", "SP-06", "SP-08")


class Marker:
    """The marker as Redis would answer (None = absent)."""

    def __init__(self) -> None:
        self.value: dict[str, str] | None = None

    async def __call__(self) -> dict[str, str] | None:
        return self.value


def unknown_actions(start: int, n: int) -> list[dict[str, object]]:
    """Actions of an identity no registry lists, with no policy decision (AZ-01)."""
    return [
        make_event(
            start + k,
            event_type="action",
            identity_id="ghost-agent",
            policy_decision=None,
            credential_id=None,
        )
        for k in range(n)
    ]


def test_gap_events_are_left_out_by_registry_detectors_then_judged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = InProcess(1, evidence=True)
    marker = Marker()
    watch = RegistryWatch(marker, KEY, paused=run.engine.registry_ids)
    run.stage1.registry = watch
    with caplog.at_level(logging.INFO, logger="pipeline.enrichment.readiness"):
        asyncio.run(watch.check())  # what the worker's task does every 5 s
        run.read(0, unknown_actions(0, 20))
        gap_alerts = list(run.alerts)
        marker.value = LOADED
        asyncio.run(watch.check())
        run.read(0, unknown_actions(1000, 5))

    gap_detectors = {a["detector"] for a in gap_alerts}
    assert not gap_detectors & set(NEEDS_REGISTRY), gap_detectors
    assert "AZ-01" in gap_detectors  # the others still judge the events
    assert run.stage2.stats.registry_gap_events == 20  # counted once per event
    assert run.stage2.stats.items_in > 0
    after = {a["detector"] for a in run.alerts[len(gap_alerts) :]}
    assert "AT-01" in after  # judged again once the registry is back
    assert run.stage2.stats.registry_gap_events == 20

    # The metrics still saw every action of the gap (25 in all, none attributable).
    assert run.stage2.stats.governance["actions_total"] == 25
    assert run.stage2.stats.governance["actions_attributable"] == 0
    # The mark never leaves the worker.
    for record in [*run.alerts, *run.evidence]:
        assert REGISTRY_GAP not in orjson.dumps(record, default=str).decode()
    page = render(run.stage1.stats, run.stage2.stats, None, registry=watch.status)
    assert "govpipe_registry_gap_events_total 20" in page

    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("identity registry not ready: ")
    assert f"{', '.join(NEEDS_REGISTRY)} do not judge the events enriched meanwhile" in lines[0]
    assert lines[1].endswith(f"and {', '.join(NEEDS_REGISTRY)} judge events again")


def test_the_first_batch_reads_the_marker_itself() -> None:
    """A worker's first batch may come before the watch's first read: stage 1 reads the
    marker then rather than judge the batch as if the registry were there."""
    run = InProcess(1, evidence=False)
    run.stage1.registry = RegistryWatch(Marker(), KEY)
    run.read(0, unknown_actions(0, 3))
    assert run.stage2.stats.registry_gap_events == 3
    assert "AT-01" not in {a["detector"] for a in run.alerts}


def test_without_a_watch_nothing_is_marked() -> None:
    run = InProcess(1, evidence=False)  # the in-memory enricher has no marker
    run.read(0, unknown_actions(0, 3))
    assert run.stage2.stats.registry_gap_events == 0
    assert "AT-01" in {a["detector"] for a in run.alerts}
