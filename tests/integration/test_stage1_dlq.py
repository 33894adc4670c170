"""Stage 1 through the real broker: valid events forwarded once, hostile input to the DLQ."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from pipeline.codec import AvroEncoder, encode_json_batch
from pipeline.flow.route import copies as copies_of
from pipeline.flow.route import decode_subject_batch
from tests.support.events import batch_with_one_bad, hostile_records, make_event
from tests.support.kafka import consume_until_quiet, produce

pytestmark = pytest.mark.integration


def forwarded_ids(bootstrap: str, topic: str) -> Counter[str]:
    """Primary copies per event id; every (event, subject) copy must be unique too."""
    ids: Counter[str] = Counter()
    copies: Counter[tuple[str, str, str]] = Counter()
    for rec in consume_until_quiet(bootstrap, topic, quiet_s=4, expect=1):
        assert rec.value is not None
        _, items = decode_subject_batch(rec.value)
        ids.update(c.event["event_id"] for c in copies_of(items) if c.primary)
        copies.update((c.event["event_id"], c.kind, c.subject) for c in copies_of(items))
    assert not copies or max(copies.values()) == 1, "an event reached a subject twice"
    return ids


def test_valid_forwarded_once_and_hostile_to_dlq(settings_factory, worker_factory) -> None:
    settings = settings_factory()
    enc = AvroEncoder()
    records: list[bytes] = []
    valid: list[dict] = []
    # 1,000 valid events: Avro and JSON, single-event records and batches.
    events = [make_event(i) for i in range(1000)]
    for i, event in enumerate(events[:200]):
        records.append(enc.event(event) if i % 2 else orjson.dumps(event))
    for start in range(200, 1000, 100):
        chunk = events[start : start + 100]
        records.append(enc.batch(chunk) if start % 200 else encode_json_batch(chunk))
    valid.extend(events)
    # Hostile: 100 records of 10 kinds, plus batches with one bad event among good ones.
    hostile = hostile_records(5000)
    expected_codes: Counter[str] = Counter()
    for code, value, n in hostile:
        records.append(value)
        expected_codes[code] += n
    for k in range(5):
        value, good = batch_with_one_bad(10_000 + k * 20, 20)
        records.append(value)
        valid.extend(good)
        expected_codes["missing_field"] += 1
    produce(settings.kafka_bootstrap_servers, settings.topic_events, records)

    worker = worker_factory(settings).start()
    ids = forwarded_ids(settings.kafka_bootstrap_servers, settings.topic_subjects)
    dlq = consume_until_quiet(settings.kafka_bootstrap_servers, settings.topic_dlq, quiet_s=3)

    assert worker.alive(), worker.log_text()[-2000:]
    assert set(ids) == {e["event_id"] for e in valid}
    assert max(ids.values()) == 1, "an event was forwarded twice without a restart"
    assert Counter(r.headers["error.code"].decode() for r in dlq) == expected_codes
    for rec in dlq:
        for header in ("error.message", "source.topic", "source.partition", "source.offset"):
            assert header in rec.headers
        assert rec.headers["source.topic"].decode() == settings.topic_events
    in_batch = [r for r in dlq if "source.batch_index" in r.headers]
    assert len(in_batch) == 5
    assert all(r.headers["source.batch_index"] == b"10" for r in in_batch)
    # Bytes are kept for replay (no secrets in these records).
    originals = {v for _, v, _ in hostile}
    whole = [r for r in dlq if "source.batch_index" not in r.headers]
    assert all(r.value in originals for r in whole)
