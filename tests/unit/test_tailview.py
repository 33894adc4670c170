"""`govpipe tail` renderings, and its read loop against a fake consumer."""

from __future__ import annotations

import io

import orjson
import pytest
from confluent_kafka import KafkaError

from pipeline.commands.tail import follow, renderer
from pipeline.metrics.codec import MetricCodec
from pipeline.metrics.record import MetricRecord, build_record
from pipeline.tailview import (
    RESET,
    clean,
    clock,
    duration,
    format_alert,
    format_dlq,
    format_metric,
    preview,
    ratio,
)

T = 1_764_000_180_000  # 16:03:00 UTC


def alert(**over) -> bytes:
    base = {
        "class_uid": 2004,
        "activity_id": 1,
        "time": T + 5000,
        "alert_id": "5f0c7a1e-0000-5000-8000-000000000001",
        "detector": "SP-01",
        "severity": "high",
        "identity_id": "agent-7",
        "approver": None,
        "message": "Long-lived credential used",
        "evidence": {"event_ids": ["e1"], "facts": {"lifetime_s": 864000, "no_expiry": False}},
    }
    base.update(over)
    return orjson.dumps(base)


def metric(**counts) -> MetricRecord:
    return build_record(
        window_size_ms=60_000,
        window_start=T,
        dimension=counts.pop("dimension", "global"),
        dimension_value=counts.pop("dimension_value", "all"),
        counters=counts,
        histograms={},
        alerts={"SP-01": 3, "RS-01": 5},
        revision=0,
        emitted_at=T + 60_000,
    )


# ---- helpers ---------------------------------------------------------------------------


def test_clean_escapes_terminal_control_and_bounds_length() -> None:
    assert clean("ok\x1b[31mred\n") == "ok\\x1b[31mred\\n"
    assert clean("a" * 100, 10) == "a" * 10 + "…"
    assert clean("zero\u200bwidth") == "zero\\u200bwidth"


def test_preview_is_the_first_120_chars_escaped() -> None:
    raw = b"\x00\x01{" + b"x" * 300
    shown = preview(raw)
    assert shown.startswith("\\x00\\x01{") and shown.endswith("…")
    assert shown.count("x") == 117 + 2  # 117 of the value, 2 in the escapes
    assert preview(b"\xff\xfe") == "\\xff\\xfe"
    assert preview(None) == "<null>"


def test_clock_and_duration() -> None:
    assert clock(T) == "2025-11-24T16:03:00Z"
    assert clock(T, with_seconds=False) == "2025-11-24T16:03Z"
    assert clock("soon") == "????-??-??T??:??:??Z" and clock(10**20) == "????-??-??T??:??:??Z"
    assert [duration(ms) for ms in (60_000, 3_600_000, 90_000, 86_400_000, 1500)] == [
        "1m",
        "1h",
        "90s",
        "1d",
        "1500ms",
    ]


def test_ratio_shows_numerator_and_denominator_and_na_for_nothing() -> None:
    assert ratio("success", 47, 50, 0.94) == "success 94.0% (47/50)"
    assert ratio("safe", 0, 0, None) == "safe n/a (0/0)"


# ---- alerts ----------------------------------------------------------------------------


def test_alert_one_liner() -> None:
    line = format_alert(alert())
    assert line.startswith("2025-11-24T16:03:05Z NEW high     SP-01 identity=agent-7")
    assert "| Long-lived credential used" in line
    assert "lifetime_s=864000" in line and "[5f0c7a1e]" in line
    assert "approver" not in line  # null fields are left out
    assert "\x1b" not in line


def test_alert_update_with_approver_and_colour_by_severity() -> None:
    line = format_alert(
        alert(activity_id=2, severity="critical", approver="boss@example.com", detector="RS-05"),
        colour=True,
    )
    assert line.startswith("\x1b[1;97;41m") and RESET in line
    assert "UPD critical RS-05" in line and "approver=boss@example.com" in line
    assert format_alert(alert(severity="low"), colour=True).startswith("\x1b[36m")


def test_hostile_alert_fields_cannot_drive_the_terminal() -> None:
    line = format_alert(alert(identity_id="x\x1b]0;pwned\x07", severity="\x1b[2J"), colour=True)
    assert "\x1b]" not in line and "\x1b[2J" not in line and "\x07" not in line


def test_alert_facts_holding_epoch_ms_are_iso_times_and_durations_stay_numbers() -> None:
    facts = {"completed_at": T + 812, "review_ms": 4200, "first_seen_time": T, "count_at": 3}
    line = format_alert(alert(evidence={"facts": facts}))
    assert "completed_at=2025-11-24T16:03:00Z" in line
    assert "first_seen_time=2025-11-24T16:03:00Z" in line
    assert "review_ms=4200" in line and "count_at=3" in line
    assert str(T) not in line


def test_json_alerts_keep_epoch_ms() -> None:
    value = alert(evidence={"facts": {"completed_at": T}})
    _, out, _ = run([[FakeMessage(value)]], kind="alerts", as_json=True, limit=1)
    assert orjson.loads(out[0])["evidence"]["facts"]["completed_at"] == T
    assert orjson.loads(out[0])["time"] == T + 5000


@pytest.mark.parametrize("value", [b"", b"not json", b"[1]", orjson.dumps({"a": 1})])
def test_non_alerts_raise_value_error(value) -> None:
    with pytest.raises(ValueError):
        format_alert(value)


# ---- metrics ---------------------------------------------------------------------------


def test_metric_line_puts_success_beside_safe_then_governance_in_order() -> None:
    line = format_metric(
        metric(
            tasks_completed=50,
            tasks_succeeded=47,
            tasks_safe=40,
            actions_total=500,
            actions_authorized=490,
            actions_attributable=495,
            actions_with_credential=400,
            actions_ephemeral=320,
            task_credentials_completed=3,
            task_credentials_revoked=3,
            approvals_decided=4,
            approvals_meaningful=2,
            alerts_total=8,
        )
    )
    assert line.startswith(
        "2025-11-24T16:03Z  1m global  success 94.0% (47/50) | safe 80.0% (40/50) ‖ "
    )
    order = ["success", "safe", "authorised", "attributable", "ephemeral", "revoked", "meaningful"]
    positions = [line.index(word) for word in order]
    assert positions == sorted(positions)
    assert "authorised 98.0% (490/500)" in line
    assert "ephemeral 80.0% (320/400)" in line
    assert "revoked 100.0% (3/3)" in line
    assert "meaningful review 50.0% (2/4)" in line
    assert "alerts 8 (RS-01 5, SP-01 3)" in line


def test_metric_line_for_an_empty_dimension_window() -> None:
    line = format_metric(metric(dimension="identity", dimension_value="agent\n7", late_events=2))
    assert "identity=agent\\n7" in line
    assert "success n/a (0/0)" in line and "review p50 n/a" in line and "late 2" in line


def test_metric_line_shows_revisions_and_quantiles() -> None:
    r = MetricRecord(
        T,
        T + 60_000,
        60_000,
        "platform",
        "crm",
        median_review_seconds=12.345,
        p95_action_latency_ms=480.7,
        revision=2,
    )
    line = format_metric(r)
    assert "platform=crm" in line and "review p50 12.3s" in line
    assert "latency p95 481ms" in line and "rev 2" in line


# ---- dead letters ----------------------------------------------------------------------


def test_dlq_line_has_code_source_batch_index_redaction_message_and_preview() -> None:
    headers = [
        ("error.code", b"invalid_field"),
        ("error.message", b"event_time: not a timestamp"),
        ("source.topic", b"agent.events.v1"),
        ("source.partition", b"3"),
        ("source.offset", b"1234"),
        ("source.batch_index", b"17"),
        ("redacted", b"true"),
    ]
    line = format_dlq(b'{"event_id": "x", "token": "[REDACTED]"}\n', headers)
    assert line.startswith('invalid_field src=agent.events.v1/3@1234 #17 [redacted] "event_time')
    assert line.endswith('value={"event_id": "x", "token": "[REDACTED]"}\\n')


def test_dlq_line_without_headers_or_value() -> None:
    assert format_dlq(None, None) == '? src=?/?@? "" value=<null>'


# ---- the read loop ---------------------------------------------------------------------


class FakeError:
    def __init__(self, code: int, fatal: bool = False) -> None:
        self._code, self._fatal = code, fatal

    def code(self) -> int:
        return self._code

    def fatal(self) -> bool:
        return self._fatal

    def str(self) -> str:
        return f"error {self._code}"


class FakeMessage:
    def __init__(self, value, partition=0, offset=0, headers=None, error=None) -> None:
        self._v, self._p, self._o, self._h, self._e = value, partition, offset, headers, error

    def value(self):
        return self._v

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def headers(self):
        return self._h

    def error(self):
        return self._e


class FakeConsumer:
    def __init__(self, polls) -> None:
        self.polls = list(polls)

    def consume(self, n, timeout):
        return self.polls.pop(0) if self.polls else []


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def eof(p: int) -> FakeMessage:
    return FakeMessage(None, p, error=FakeError(KafkaError._PARTITION_EOF))


def run(polls, kind="metrics", **kw):
    out, err = io.StringIO(), io.StringIO()
    render = renderer(
        kind, as_json=kw.pop("as_json", False), colour=False, metric_codec=MetricCodec()
    )
    code = follow(
        FakeConsumer(polls),
        render,
        partitions=kw.pop("partitions", 2),
        out=out,
        err=err,
        clock=FakeClock(),
        **kw,
    )
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


def test_bad_metric_records_are_one_line_warnings_and_the_rest_shows() -> None:
    good = MetricCodec().encode(metric(tasks_completed=2, tasks_succeeded=1))
    polls = [
        [FakeMessage(b"\x00\x00\x00\x03\xe7junk", 0, 5), FakeMessage(good, 1, 9)],
        [eof(0), eof(1)],
    ]
    code, out, err = run(polls, keep_following=False, idle_s=1.0)
    assert code == 0
    assert len(out) == 1 and "success 50.0% (1/2)" in out[0]
    assert err == ["! metrics p0@5: skipped, undecodable (schema id 999 is not local)"]


def test_json_metrics_and_limit() -> None:
    good = MetricCodec("json").encode(metric(actions_total=3))
    code, out, _ = run(
        [[FakeMessage(good), FakeMessage(good), FakeMessage(good)]], limit=2, as_json=True
    )
    assert code == 0 and len(out) == 2
    assert orjson.loads(out[0])["actions_total"] == 3


def test_no_follow_waits_for_eof_on_every_partition_or_long_silence() -> None:
    # only partition 0 reports EOF: stops after 5 x idle of silence, not before
    code, out, _ = run([[eof(0)]], keep_following=False, idle_s=1.0)
    assert code == 0 and out == []


def test_alert_and_dlq_rendering_through_the_loop() -> None:
    _, out, err = run([[FakeMessage(b"nope", 0, 3), FakeMessage(alert())]], kind="alerts", limit=1)
    assert out[0].startswith("2025-11-24T16:03:05Z NEW high")
    assert len(err) == 1 and err[0].startswith("! alerts p0@3: skipped, not JSON")
    _, out, _ = run(
        [[FakeMessage(b"\x01\x02", headers=[("error.code", b"invalid_json")])]],
        kind="dlq",
        as_json=True,
        limit=1,
    )
    assert orjson.loads(out[0]) == {
        "headers": {"error.code": "invalid_json"},
        "preview": "\\x01\\x02",
    }


def test_fatal_kafka_error_surfaces() -> None:
    from pipeline.errors import InfraError

    with pytest.raises(InfraError):
        run([[FakeMessage(None, error=FakeError(-150, fatal=True))]], limit=1)


def test_waiting_line_offers_from_beginning() -> None:
    from pipeline.tailview import waiting_line

    assert waiting_line("governance.alerts.v1", 1234) == (
        "waiting for new records on governance.alerts.v1… "
        "(1,234 already there: --from-beginning to read them)"
    )
    assert waiting_line("t", 0).endswith("(--from-beginning to read what is there)")
    assert waiting_line("t", None).endswith("(--from-beginning to read what is there)")
