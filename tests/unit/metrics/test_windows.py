"""Event-time windows of metric deltas: edges, lateness, revisions, determinism."""

from __future__ import annotations

import orjson
import pytest

from pipeline.metrics.deltas import (
    AlertRaised,
    ApprovalDecided,
    TaskCompleted,
    outcome_deltas,
)
from pipeline.metrics.histogram import RELATIVE_ERROR
from pipeline.metrics.record import MetricRecord
from pipeline.metrics.windows import MetricWindows, record_key
from tests.unit.metrics.factory import BASE, HOUR, MIN, action, action_deltas, random_actions

LATE = 2 * MIN


def windows(**kw) -> MetricWindows:
    return MetricWindows(kw.pop("sizes", [MIN]), kw.pop("lateness", LATE), **kw)


def glob(records: list[MetricRecord]) -> list[MetricRecord]:
    return [r for r in records if r.dimension == "global"]


def test_event_exactly_at_a_boundary_belongs_to_the_window_starting_there() -> None:
    w = windows()
    w.add_all(action_deltas([action(BASE + MIN)], [MIN]))
    (rec,) = glob(w.advance(BASE + 2 * MIN))
    assert (rec.window_start, rec.window_end, rec.actions_total) == (BASE + MIN, BASE + 2 * MIN, 1)


def test_emission_only_once_the_watermark_reaches_the_end() -> None:
    w = windows()
    w.add_all(action_deltas([action(BASE + 10)], [MIN]))
    assert w.advance(BASE + MIN - 1) == []
    records = w.advance(BASE + MIN)
    assert {r.dimension for r in records} == {"global", "platform", "team", "identity", "mode"}
    assert all(r.revision == 0 and r.emitted_at == BASE + MIN for r in records)
    assert w.advance(BASE + MIN + 5) == []  # nothing new: nothing re-emitted


def test_out_of_order_delta_within_lateness_re_emits_with_a_higher_revision() -> None:
    w = windows()
    w.add_all(action_deltas([action(BASE + 10)], [MIN]))
    first = glob(w.advance(BASE + MIN + 1))
    w.add_all(action_deltas([action(BASE + 20, "agent-b", platform="crm")], [MIN]))
    again = w.advance(BASE + MIN + LATE)  # watermark == end + lateness: still accepted
    g = glob(again)
    assert [r.revision for r in first] == [0]
    assert [(r.revision, r.actions_total) for r in g] == [(1, 2)]
    assert record_key(g[0]) == record_key(first[0])
    # only what changed comes again; a new dimension value starts at revision 0
    changed = {(r.dimension, r.dimension_value, r.revision) for r in again}
    assert changed == {
        ("global", "all", 1),
        ("platform", "crm", 1),
        ("team", "eng", 0),
        ("identity", "agent-b", 0),
        ("mode", "assistant", 0),
    }


def test_delta_beyond_lateness_is_counted_late_and_not_applied() -> None:
    w = windows()
    w.add_all(action_deltas([action(BASE + 10)], [MIN]))
    w.advance(BASE + MIN)
    now = BASE + MIN + LATE + 1  # just past end + lateness
    w.advance(now)
    w.add_all(action_deltas([action(BASE + 20), action(BASE + 30)], [MIN]))
    assert glob(w.advance(now)) == []  # the old window is gone and not re-emitted
    current = w.advance(now - now % MIN + MIN)
    (g,) = glob(current)
    assert (g.window_start, g.late_events, g.actions_total) == (now - now % MIN, 2, 0)
    assert g.authorized_action_rate is None
    ident = [r for r in current if r.dimension == "identity"]
    assert [(r.dimension_value, r.late_events) for r in ident] == [("agent-a", 2)]


def test_windows_are_evicted_once_past_lateness() -> None:
    w = windows()
    w.add_all(action_deltas([action(BASE + 10)], [MIN]))
    w.advance(BASE + MIN + LATE)
    assert w.open_windows == 1
    w.advance(BASE + MIN + LATE + 1)
    assert w.open_windows == 0


def test_watermark_never_goes_back() -> None:
    w = windows()
    w.advance(BASE + 10 * MIN)
    w.advance(BASE)
    assert w.watermark == BASE + 10 * MIN


def test_rates_are_null_when_denominators_are_zero() -> None:
    w = windows()
    w.add_all(outcome_deltas([AlertRaised(BASE, "SP-01")], [MIN]))
    (r,) = w.advance(BASE + MIN)
    assert r.alerts_total == 1 and r.alerts_by_detector == {"SP-01": 1}
    for name in (
        "successful_completion_rate",
        "safe_completion_rate",
        "authorized_action_rate",
        "attributable_action_rate",
        "ephemeral_credential_rate",
        "revoked_on_completion_rate",
        "meaningful_review_rate",
        "median_review_seconds",
        "p95_action_latency_ms",
    ):
        assert getattr(r, name) is None, name


def test_rates_with_numerators_and_denominators() -> None:
    w = windows()
    w.add_all(
        outcome_deltas(
            [TaskCompleted(BASE, "crm", None, None, True, i < 3) for i in range(4)]
            + [TaskCompleted(BASE, "crm", None, None, False, False)],
            [MIN],
        )
    )
    r = glob(w.advance(BASE + MIN))[0]
    assert (r.tasks_completed, r.tasks_succeeded, r.tasks_safe) == (5, 4, 3)
    assert r.successful_completion_rate == pytest.approx(0.8)
    assert r.safe_completion_rate == pytest.approx(0.6)


def test_histograms_merge_across_partitions_and_revisions() -> None:
    # two partitions each send their half; a late part arrives within lateness
    lat_a = [action(BASE + i, latency_ms=10 + i) for i in range(50)]
    lat_b = [action(BASE + i, latency_ms=1000 + i) for i in range(45)]
    late = [action(BASE + i, latency_ms=5000) for i in range(10)]
    reviews = [ApprovalDecided(BASE, float(s), True) for s in (5, 10, 20, 40, 80)]
    w = windows()
    w.add_all(action_deltas(lat_a, [MIN]))
    w.add_all(action_deltas(lat_b, [MIN]))
    w.add_all(outcome_deltas(reviews, [MIN]))
    r0 = glob(w.advance(BASE + MIN))[0]
    w.add_all(action_deltas(late, [MIN]))
    r1 = glob(w.advance(BASE + MIN))[0]
    values = sorted([e["latency_ms"] for e in lat_a + lat_b])
    exact0 = values[95 - 1 - 4]  # nearest rank ceil(0.95 * 95) = 91
    assert abs(r0.p95_action_latency_ms - exact0) <= RELATIVE_ERROR * exact0
    assert abs(r1.p95_action_latency_ms - 5000) <= RELATIVE_ERROR * 5000
    assert abs(r0.median_review_seconds - 20) <= RELATIVE_ERROR * 20
    assert sum(r1.action_latency_ms_histogram.values()) == 105
    assert r1.revision == 1


def test_deterministic_including_a_json_round_trip_of_the_state() -> None:
    events = random_actions(1500, seed=2, span_ms=20 * MIN)
    events.sort(key=lambda e: e["event_time"])
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    late = action_deltas(random_actions(50, seed=9, span_ms=20 * MIN), [MIN, 5 * MIN])

    def run(round_trip: bool) -> list[MetricRecord]:
        w = windows(sizes=[MIN, 5 * MIN])
        out = []
        for batch in batches:
            w.add_all(action_deltas(batch, [MIN, 5 * MIN]))
            out += w.advance(batch[-1]["event_time"])
            if round_trip:
                w = MetricWindows([MIN, 5 * MIN], LATE, state=orjson.loads(orjson.dumps(w.state)))
        w.add_all(late)
        out += w.advance(BASE + HOUR)
        return out

    a, b, c = run(False), run(False), run(True)
    assert a == b == c
    assert any(r.revision > 0 for r in a) and any(r.late_events for r in a)


def test_same_totals_whatever_the_batching() -> None:
    events = random_actions(600, seed=4)
    one = windows(lateness=0)
    one.add_all(action_deltas(events, [MIN]))
    many = windows(lateness=0)
    for e in events:
        many.add_all(action_deltas([e], [MIN]))
    assert one.advance(BASE + HOUR) == many.advance(BASE + HOUR)


def test_many_open_windows_wait_for_the_watermark_and_none_closes_early(caplog) -> None:
    w = windows(retention=2)
    for i in range(5):
        w.add_all(action_deltas([action(BASE + i * MIN)], [MIN]))
    assert w.advance(BASE) == []  # a backfill ahead of the watermark: nothing closes
    assert w.open_windows == 5
    assert "metric windows open" in caplog.text  # said once, not acted on
    w.add_all(action_deltas([action(BASE + 5)], [MIN]))  # a correction for the first
    first = [r for r in glob(w.advance(BASE + MIN)) if r.window_start == BASE]
    assert [(r.revision, r.late_events) for r in first] == [(0, 0)]
    assert first[0].actions_total == 2


def test_unconfigured_window_size_is_ignored_not_fatal() -> None:
    w = windows(sizes=[MIN])
    w.add_all(action_deltas([action(BASE)], [HOUR]))
    assert w.ignored == 5  # global, platform, team, identity, mode
    assert w.advance(BASE + 2 * HOUR) == []


def test_record_key_is_window_size_and_dimension() -> None:
    w = windows()
    w.add_all(action_deltas([action(BASE)], [MIN]))
    keys = sorted(record_key(r) for r in w.advance(BASE + MIN))
    assert f"{BASE}|{MIN}|global|all".encode() in keys
    assert f"{BASE}|{MIN}|identity|agent-a".encode() in keys


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        MetricWindows([MIN], -1)
    with pytest.raises(ValueError):
        MetricWindows([MIN], 0, retention=0)
    with pytest.raises(ValueError, match="version"):
        MetricWindows([MIN], 0, state={"v": 99})


def test_a_finding_after_completion_corrects_safe_in_a_new_revision() -> None:
    from pipeline.metrics.deltas import Correction

    w = windows()
    w.add_all(outcome_deltas([TaskCompleted(BASE + 5, "crm", None, None, True, True)], [MIN]))
    (first,) = glob(w.advance(BASE + MIN))
    w.add_all(outcome_deltas([Correction(BASE + 5, "tasks_safe", -1, "crm")], [MIN]))
    (fixed,) = glob(w.advance(BASE + MIN + 30_000))
    assert (first.safe_completion_rate, first.revision) == (1.0, 0)
    assert (fixed.tasks_safe, fixed.safe_completion_rate, fixed.revision) == (0, 0.0, 1)
    assert fixed.successful_completion_rate == 1.0


def test_next_deadline_says_when_advance_has_work() -> None:
    w = windows()
    assert w.next_deadline is None
    w.add_all(action_deltas([action(BASE + 10)], [MIN]))
    assert w.next_deadline == BASE + MIN  # emission due
    w.advance(BASE + MIN)
    assert w.next_deadline == BASE + MIN + LATE + 1  # eviction due
    w.add_all(action_deltas([action(BASE + 20)], [MIN]))
    assert w.next_deadline == BASE + MIN  # a revision is due now
    w.advance(BASE + MIN)
    w.advance(BASE + MIN + LATE + 1)
    assert w.next_deadline is None and w.open_windows == 0
