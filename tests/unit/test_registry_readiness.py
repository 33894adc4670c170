"""Registry readiness: the marker, the watch's log lines, the gauge and the health page."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pipeline.enrichment.readiness import RegistryStatus, RegistryWatch, status_of
from pipeline.errors import InfraError
from pipeline.flow.stage1 import Stage1Stats
from pipeline.flow.stage2 import Stage2Stats
from pipeline.observability import health, render

KEY = "nhi:registry"
LOADED = {"loaded_at": "1790000000000", "identities": "42", "generation": "3"}


def test_marker_present_with_identities_is_ready() -> None:
    status = status_of(LOADED, KEY)
    assert status == RegistryStatus(True, "", 1_790_000_000_000, 42, 3)
    assert status.as_dict() == {
        "ready": True,
        "loaded_at": "2026-09-21T14:13:20Z",
        "identities": 42,
        "generation": 3,
    }


@pytest.mark.parametrize("marker", [None, {}])
def test_no_marker_is_not_ready_and_says_what_to_do(marker: dict[str, str] | None) -> None:
    status = status_of(marker, KEY)
    assert not status.ready
    assert KEY in status.reason and "govpipe identities load FILE" in status.reason
    assert "events are processed" in status.reason


def test_a_load_of_no_identities_or_garbage_is_not_ready() -> None:
    assert not status_of({**LOADED, "identities": "0"}, KEY).ready
    garbage = status_of({"loaded_at": "soon", "identities": "-1", "generation": "x" * 30}, KEY)
    assert not garbage.ready and garbage.loaded_at_ms is None and garbage.generation is None


class Marker:
    """What Redis answers, step by step (an InfraError is an outage)."""

    def __init__(self, *answers: dict[str, str] | InfraError | None) -> None:
        self.answers = list(answers)

    async def __call__(self) -> dict[str, str] | None:
        answer = self.answers.pop(0)
        if isinstance(answer, InfraError):
            raise answer
        return answer


def test_watch_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    reloaded = {**LOADED, "generation": "4", "identities": "43"}
    outage = InfraError("redis unavailable at redis://127.0.0.1:6379/0 (ConnectionError)")
    read = Marker(None, None, outage, None, LOADED, LOADED, reloaded)
    watch = RegistryWatch(read, KEY)

    async def go() -> list[bool | None]:
        seen = []
        for _ in range(7):
            status = await watch.check()
            seen.append(None if status is None else status.ready)
        return seen

    with caplog.at_level(logging.INFO, logger="pipeline.enrichment.readiness"):
        seen = asyncio.run(go())
    # An outage keeps the last status: Redis trouble is not a lost registry.
    assert seen == [False, False, False, False, True, True, True]
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0][0] == "WARNING" and lines[0][1].startswith("identity registry not ready: ")
    assert lines[1] == (
        "WARNING",
        "identity registry ready again: 42 identities loaded at 2026-09-21T14:13:20Z "
        "(generation 3); identities are known from now on",
    )
    assert lines[2] == (
        "INFO",
        "identity registry reloaded: 43 identities at 2026-09-21T14:13:20Z (generation 4)",
    )


def test_watch_before_the_first_read_and_for_other_enrichers() -> None:
    assert RegistryWatch(Marker(), KEY).status is None
    assert RegistryWatch.of(object()) is None  # e.g. the tests' in-memory enricher


def test_gauge_on_the_metrics_page() -> None:
    def page(status: RegistryStatus | None) -> list[str]:
        text = render(Stage1Stats(), Stage2Stats(), None, now=1_790_000_100.0, registry=status)
        lines = text.splitlines()
        return [x for x in lines if "govpipe_registry" in x and "gap_events" not in x]

    assert page(None) == []  # not checked yet: nothing rather than a false 0
    assert "govpipe_registry_ready 1" in page(status_of(LOADED, KEY))
    assert "govpipe_registry_loaded_timestamp_seconds 1790000000.0" in page(status_of(LOADED, KEY))
    missing = page(status_of(None, KEY))
    assert "govpipe_registry_ready 0" in missing
    assert not any(line.startswith("govpipe_registry_loaded") for line in missing)


def test_health_is_degraded_not_down_without_the_registry() -> None:
    assert health(None) == {"status": "OK"}
    assert health(status_of(LOADED, KEY))["status"] == "OK"
    body = health(status_of(None, KEY))
    assert body["status"] == "DEGRADED"
    assert body["reasons"] == [status_of(None, KEY).reason]
    assert body["registry"]["ready"] is False
