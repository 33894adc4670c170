"""AT-04 human use of an NHI: a browser user agent or an interactive session."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.at04_human_use_of_nhi import DETECTOR, SPEC
from pipeline.detectors.base import HOUR, Context, Finding
from tests.unit.detectors.factory import T0, enriched

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def feed(events: list[Any], state: dict[str, Any] | None = None) -> list[Finding]:
    ctx = Context(SPEC, dict(SPEC.thresholds), "agent-1", T0)
    return DETECTOR.on_events(ctx, {} if state is None else state, events)


def used(attributes: dict[str, str], t: int = T0, **fields: Any) -> dict[str, Any]:
    return enriched("action", t, attributes=attributes, **fields)


def test_fires_on_a_browser_user_agent_without_echoing_it() -> None:
    event = used({"http.user_agent": FIREFOX})
    [finding] = feed([event])
    assert finding.facts["signal"] == "browser_user_agent"
    assert finding.facts["attribute"] == "http.user_agent"
    assert finding.facts["browser"] == "Mozilla"
    assert finding.facts["identity_kind"] == "ai_agent"
    assert FIREFOX not in str(finding.facts)


def test_fires_on_an_interactive_session() -> None:
    assert feed([used({"interactive": "true"})])[0].facts["signal"] == "interactive_flag"
    assert feed([used({"session_type": "Interactive"})])[0].facts["signal"] == (
        "interactive_session"
    )


def test_negative_sdk_user_agent_and_batch_sessions() -> None:
    assert feed([used({"user_agent": "python-httpx/0.27"})]) == []
    assert feed([used({"interactive": "false", "session_type": "batch"})]) == []


def test_negative_humans_and_unknown_identities_are_not_nhis() -> None:
    assert feed([used({"User-Agent": FIREFOX}, identity={"kind": "human"})]) == []
    assert feed([used({"User-Agent": FIREFOX}, identity={"known": False, "kind": None})]) == []


def test_edge_once_per_signal_per_hour() -> None:
    state: dict[str, Any] = {}
    assert len(feed([used({"useragent": FIREFOX})], state)) == 1
    assert len(feed([used({"useragent": FIREFOX}, t=T0 + HOUR - 1)], state)) == 1
    assert len(feed([used({"interactive": "1"}, t=T0 + HOUR - 1)], state)) == 1
    assert len(feed([used({"useragent": FIREFOX}, t=T0 + HOUR)], state)) == 1
