"""`govpipe trace` reading dossiers from a real broker: the latest revision per task.

Stage 2 does not publish dossiers yet, so this test publishes them itself (every
revision of the must-show task in order, a child task delegated from it, garbage) and
reads them back the way the command does: the topic scan, the codec, the chain.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pipeline.cli import build_parser
from pipeline.commands.trace import run, topic_source
from pipeline.evidence import (
    EvidenceThresholds,
    add_alerts,
    add_events,
    new_state,
    next_record,
    observe_watermark,
)
from pipeline.evidence.codec import EvidenceCodec, record_key
from tests.unit.evidence import _scenario as sc
from tests.unit.evidence.test_dossier import expected_must_show
from tests.unit.evidence.test_trace_views import child_task

pytestmark = pytest.mark.integration

TH = EvidenceThresholds.defaults()


def revisions() -> list[dict[str, Any]]:
    """The must-show task's records as stage 2 would emit them, revision by revision."""
    state = new_state(sc.TASK)
    steps = [
        (sc.events(), [], sc.COMPLETED + 10_000),
        ([], [], sc.COMPLETED + sc.GRACE_MS),
        ([], [sc.sp02_alert()], sc.COMPLETED + sc.GRACE_MS),
        ([sc.late_revocation()], [], sc.LATE_REVOCATION + 60_000),
    ]
    out = []
    for events, alerts, wm in steps:
        add_events(state, events)
        add_alerts(state, alerts)
        observe_watermark(state, wm)
        record = next_record(state, TH)
        assert record is not None
        out.append(record)
    return out


def create_topic(settings: Any, name: str) -> None:
    admin = AdminClient(settings.confluent_config())
    futures = admin.create_topics(
        [
            NewTopic(
                name, num_partitions=2, replication_factor=1, config={"cleanup.policy": "compact"}
            )
        ]
    )
    for future in futures.values():
        future.result(30)


def test_trace_reads_the_latest_revision_from_the_broker(settings_factory, tmp_path: Path) -> None:
    settings = settings_factory()
    topic = f"t{uuid.uuid4().hex[:8]}.governance.evidence.v1"
    create_topic(settings, topic)
    codec = EvidenceCodec(topic=topic)
    records = revisions()
    assert [r["revision"] for r in records] == [0, 1, 2, 3]
    producer = Producer(settings.confluent_config())
    for record in [*records, child_task()]:
        producer.produce(topic, codec.encode(record), key=record_key(record))
    producer.produce(topic, b"\x00\x00\x00\x00\x14not avro", key=b"junk")
    assert producer.flush(30) == 0

    def trace(*argv: str) -> tuple[int, str, Any]:
        args = build_parser().parse_args(["trace", *argv, "--topic", topic, "--idle", "1"])
        source = topic_source(args, settings)
        out = io.StringIO()
        return run(args, source, out=out), out.getvalue(), source

    code, text, source = trace("task", "task-child", "--json")
    assert code == 0
    (only,) = orjson.loads(text)["tasks"]
    assert only["chain"]["complete"] is True and only["chain"]["human"] == sc.HUMAN
    parent = only["chain"]["links"][0]
    assert parent["task_id"] == sc.TASK and parent["via"]["delegate"] == sc.B
    assert (source.records, source.skipped) == (6, 1)

    html = tmp_path / "evidence.html"
    code, text, _ = trace("task", sc.TASK, "--json", "--html", str(html))
    assert code == 0
    dossier = orjson.loads(text)["tasks"][0]["dossier"]
    assert dossier["revision"] == 3
    want = expected_must_show()
    for key in want:
        assert dossier[key] == want[key], key
    assert "cred-b" in html.read_text("utf-8")

    code, text, _ = trace("alert", sc.SP02_ALERT_ID)
    assert code == 0 and f"task {sc.TASK}" in text and "✘ safe" in text
