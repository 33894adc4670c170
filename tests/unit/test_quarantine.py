"""Quarantine, not a stop: a detector that raises on one event loses that event only.

The other detectors still judge it, the raising detector's state is what it was
before the failing call, the copy goes to the dead-letter topic with
``detector_error``, and the partition moves on.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pipeline.detectors.base import Context, Detector, DetectorSpec, Event, Finding, State
from pipeline.detectors.engine import DetectionEngine, DetectorError
from pipeline.detectors.registry import all_detectors
from pipeline.flow.route import route
from pipeline.flow.stage1 import Stage1Stats
from pipeline.flow.stage2 import PARTITION_KEY, Stage2, apply_writes, quarantine_letter
from pipeline.observability import render
from tests.unit.detectors.factory import enriched

T0 = 1_764_000_000_000
LATENESS = 60_000
SECRET = "AKIAIOSFODNN7EXAMPLE"


def _boom(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    """Remembers every id it sees; raises (quoting a value) on ids starting with 'bad'
    after it has already changed its state."""
    out = []
    for event in events:
        state.setdefault("ids", []).append(event["event_id"])
        if str(event["event_id"]).startswith("bad"):
            raise ValueError(f"cannot handle {event['resource']}")
        out.append(
            Finding(ctx.spec.id, ctx.subject, [event["event_id"]], {}, time=event["event_time"])
        )
    return out


def _timer(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    state["_deadline"] = events[-1]["event_time"]
    return []


def _timer_fails(ctx: Context, state: State) -> list[Finding]:
    state["broken"] = True
    raise RuntimeError("timer bug")


def spec(id_: str) -> DetectorSpec:
    return DetectorSpec(
        id=id_,
        title="Test rule",
        description="raises on some events",
        severity="low",
        subject="identity",
        event_types=frozenset({"action"}),
        window_ms=None,
        thresholds={},
        frameworks=(),
        remediation="-",
    )


BOOM = Detector(spec("ZZ-01"), _boom)
TIMER = Detector(spec("ZZ-02"), _timer, _timer_fails)


def action(event_id: str, t: int = T0) -> dict[str, Any]:
    return enriched(
        "action",
        t,
        event_id=event_id,
        policy_decision=None,
        identity_id="agent-q",
        resource=f"s3://bucket/{SECRET}",
    )


# -- the engine ------------------------------------------------------------------------


def test_a_raising_batch_is_retried_event_by_event_and_only_the_bad_one_is_left_out() -> None:
    engine = DetectionEngine(detectors=[*all_detectors(), BOOM])
    state: State = {}
    errors: list[DetectorError] = []
    events = [action("ok-1"), action("bad-2", T0 + 1), action("ok-3", T0 + 2)]
    findings = engine.process("identity", "agent-q", state, events, T0, errors=errors)
    assert [(e.detector, e.error, e.event["event_id"]) for e in errors if e.event] == [
        ("ZZ-01", "ValueError", "bad-2")
    ]
    assert sorted(f.event_ids[0] for f in findings if f.detector == "ZZ-01") == ["ok-1", "ok-3"]
    # the bad event's call left no trace in the detector's state
    assert state["ZZ-01"] == {"ids": ["ok-1", "ok-3"]}
    # every other detector judged all three (AZ-01: no policy decision)
    az01 = [f for f in findings if f.detector == "AZ-01"]
    assert {i for f in az01 for i in f.event_ids} == {"ok-1", "bad-2", "ok-3"}


def test_without_an_error_list_the_exception_propagates() -> None:
    engine = DetectionEngine(detectors=[BOOM])
    with pytest.raises(ValueError):
        engine.process("identity", "agent-q", {}, [action("bad-1")], T0)


def test_a_raising_timer_is_dropped_not_fired_again() -> None:
    engine = DetectionEngine(detectors=[TIMER])
    state: State = {}
    errors: list[DetectorError] = []
    engine.process("identity", "agent-q", state, [action("ok-1")], T0 - 1, errors=errors)
    assert engine.next_deadline(state) == T0 and not errors
    engine.process("identity", "agent-q", state, [], T0, errors=errors)
    assert [(e.detector, e.error, e.event) for e in errors] == [("ZZ-02", "RuntimeError", None)]
    assert engine.next_deadline(state) is None and "broken" not in state.get("ZZ-02", {})


# -- stage 2 ---------------------------------------------------------------------------


class Store(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key, default)


def items_of(stage: Stage2, events: list[dict[str, Any]]) -> list[Any]:
    return route(events, 1, stage.engine.subject_kinds_for).get(0, [])


def test_stage2_dead_letters_the_copy_counts_logs_ids_only_and_moves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = Stage2(DetectionEngine(detectors=[*all_detectors(), BOOM]), 1, LATENESS, "test")
    store = Store()
    with caplog.at_level(logging.WARNING):
        out = stage.process(store, 0, 4, T0, items_of(stage, [action("bad-1")]))
    assert [q["event"]["event_id"] for q in out.quarantined] == ["bad-1"]
    assert {a["detector"] for a in out.alerts} >= {"AZ-01"}, "the others still fire"
    assert "ZZ-01" not in {a["detector"] for a in out.alerts}
    assert stage.stats.detector_errors == {"ZZ-01": 1} and stage.stats.dead_letters == 1
    text = caplog.text
    assert "ZZ-01" in text and "bad-1" in text and "ValueError" in text
    assert SECRET not in text and "cannot handle" not in text
    letter = quarantine_letter(out.quarantined[0], "govpipe.subjects.v1", 0)
    headers = dict(letter.headers)
    assert headers["error.code"] == b"detector_error"
    assert headers["error.detector"] == b"ZZ-01"
    assert headers["source.topic"] == b"govpipe.subjects.v1"
    assert headers["source.offset"] == b"4"
    assert b'"event_id":"bad-1"' in letter.value and b'"identity"' not in letter.value
    # the partition moves on: the next event is judged by the detector again
    after = stage.process(store, 0, 5, T0 + 1, items_of(stage, [action("ok-2", T0 + 1)]))
    assert "ZZ-01" in {a["detector"] for a in after.alerts} and not after.quarantined
    page = render(Stage1Stats(), stage.stats, None)
    assert 'govpipe_detector_errors_total{detector="ZZ-01"} 1' in page
    assert 'govpipe_dlq_records_total{code="detector_error"} 1' in page


def test_unsent_dead_letters_are_resent_after_a_crash_and_not_after_delivery() -> None:
    def engine() -> DetectionEngine:
        return DetectionEngine(detectors=[*all_detectors(), BOOM])

    stage = Stage2(engine(), 1, LATENESS, "test")
    store = Store()
    first = stage.process(store, 0, 0, T0, items_of(stage, [action("bad-1")]))
    assert store[PARTITION_KEY.format(0)]["out"]["quarantined"] == first.quarantined
    restarted = Stage2(engine(), 1, LATENESS, "test")
    again = restarted.process(store, 0, 0, T0, items_of(restarted, [action("bad-1")]))
    assert again.replayed and again.quarantined == first.quarantined
    restarted.mark_sent(store, 0, 0)
    third = Stage2(engine(), 1, LATENESS, "test")
    out = third.process_unit(store, 0, [(0, T0, items_of(third, [action("bad-1")]))])
    apply_writes(store, out.writes)
    assert not out.quarantined and out.skipped == 1


def test_the_first_failure_resets_the_state_and_later_ones_restore_it_exactly() -> None:
    """No snapshot is taken before a detector has raised (it costs ~25% of stage 2):
    its first failure resets its state for the subject, later ones restore it."""
    engine = DetectionEngine(detectors=[BOOM])
    state: State = {}
    errors: list[DetectorError] = []
    engine.process("identity", "agent-q", state, [action("ok-1")], T0, errors=errors)
    assert state["ZZ-01"] == {"ids": ["ok-1"]} and not errors
    engine.process("identity", "agent-q", state, [action("bad-2", T0 + 1)], T0, errors=errors)
    assert errors[-1].reset and "ZZ-01" not in state
    engine.process("identity", "agent-q", state, [action("ok-3", T0 + 2)], T0, errors=errors)
    engine.process("identity", "agent-q", state, [action("bad-4", T0 + 3)], T0, errors=errors)
    assert not errors[-1].reset and state["ZZ-01"] == {"ids": ["ok-3"]}
