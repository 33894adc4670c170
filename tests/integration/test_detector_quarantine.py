"""A rule that raises on one event, through the real broker (issue 13, "Must show").

The rule is a user rule file in ``GOVPIPE_RULES_DIR``, loaded by the worker
subprocess like any other. It raises on one particular event: that event copy is
dead-lettered with ``detector_error``, every other detector still fires on it, the
rule keeps judging later events, and the worker keeps going.
"""

from __future__ import annotations

import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.codec import AvroEncoder
from tests.support.kafka import consume_until_quiet, produce

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000

RULE = textwrap.dedent(
    '''
    """Raises on actions against a 'boom' resource, finds the 'flag' ones."""

    from pipeline.detectors.base import Detector, DetectorSpec, Finding

    SPEC = DetectorSpec(
        id="ZZ-99",
        title="Flagged resource (test rule that raises)",
        description="Fires on actions against a flagged resource; has a bug on others.",
        severity="low",
        subject="identity",
        event_types=frozenset({"action"}),
        window_ms=None,
        thresholds={},
        frameworks=(),
        remediation="-",
    )


    def on_events(ctx, state, events):
        out = []
        for event in events:
            state["seen"] = state.get("seen", 0) + 1
            resource = event.get("resource") or ""
            if resource.startswith("boom"):
                raise ZeroDivisionError(resource)
            if resource.startswith("flag"):
                out.append(
                    Finding(
                        ctx.spec.id,
                        ctx.subject,
                        [event["event_id"]],
                        {"seen": state["seen"]},
                        time=event["event_time"],
                        context={"identity_id": event.get("identity_id")},
                    )
                )
        return out


    DETECTOR = Detector(SPEC, on_events)
    '''
)


def action(event_id: str, t: int, identity: str, resource: str) -> dict:
    """An action with no policy decision (AZ-01 fires on every one)."""
    return {
        "event_id": event_id,
        "event_type": "action",
        "event_time": t,
        "platform": "crm-agents",
        "identity_id": identity,
        "action": "read",
        "resource": resource,
        "outcome": "success",
    }


def test_a_rule_that_raises_dead_letters_the_copy_and_the_worker_goes_on(
    settings_factory, worker_factory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "zz99_flagged.py").write_text(RULE, "utf-8")
    settings = settings_factory(rules_dir=rules)
    bootstrap = settings.kafka_bootstrap_servers
    enc = AvroEncoder()
    tag = uuid.uuid4().hex[:6]
    first = [
        action(f"ok-{tag}-1", T0, "agent-q", "flag-1"),
        action(f"bad-{tag}", T0 + 1_000, "agent-q", "boom-secret-path"),
        action(f"ok-{tag}-2", T0 + 2_000, "agent-q", "plain"),
    ]
    produce(bootstrap, settings.topic_events, [enc.batch(first)], partition=0)
    worker = worker_factory(settings).start(timeout=90)
    dlq = consume_until_quiet(bootstrap, settings.topic_dlq, quiet_s=3, max_s=60, expect=1)
    # later events, in a record of their own: still judged by the rule that raised
    later = [action(f"ok-{tag}-3", T0 + 3_000, "agent-q", "flag-3")]
    produce(bootstrap, settings.topic_events, [enc.batch(later)], partition=0)
    deadline = time.monotonic() + 60
    alerts: list[dict] = []
    while time.monotonic() < deadline:
        alerts = [
            orjson.loads(r.value)
            for r in consume_until_quiet(bootstrap, settings.topic_alerts, quiet_s=2, max_s=30)
            if r.value is not None
        ]
        zz = {i for a in alerts if a["detector"] == "ZZ-99" for i in a["evidence"]["event_ids"]}
        if f"ok-{tag}-3" in zz:
            break
        time.sleep(1)
    assert worker.alive(), worker.log_text()[-3000:]

    assert len(dlq) == 1, [r.headers for r in dlq]
    letter = dlq[0]
    assert letter.headers["error.code"] == b"detector_error"
    assert letter.headers["error.detector"] == b"ZZ-99"
    assert letter.headers["source.topic"] == settings.topic_subjects.encode()
    assert b"ZeroDivisionError" in letter.headers["error.message"]
    assert letter.value is not None and orjson.loads(letter.value)["event_id"] == f"bad-{tag}"

    by_detector: dict[str, set[str]] = {}
    for alert in alerts:
        by_detector.setdefault(alert["detector"], set()).update(alert["evidence"]["event_ids"])
    # every other detector still saw the bad event (AZ-01: no policy decision) ...
    assert f"bad-{tag}" in by_detector.get("AZ-01", set()), by_detector
    # ... the raising rule judged the events before and after it, not it
    assert by_detector["ZZ-99"] == {f"ok-{tag}-1", f"ok-{tag}-3"}, by_detector

    log_text = worker.log_text()
    assert "detector ZZ-99 raised ZeroDivisionError on event " + f"bad-{tag}" in log_text
    assert "boom-secret-path" not in log_text
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'govpipe_detector_errors_total{detector="ZZ-99"} 1' in page
    assert 'govpipe_dlq_records_total{code="detector_error"} 1' in page
