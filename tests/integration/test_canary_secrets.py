"""Canary secrets (issue 15, item 5): credential-like values planted everywhere an
input can carry text must not come out anywhere.

Each canary is unique to this run (random body) and one of the kinds
``pipeline/redact.py`` recognises. They go into every string field of the input
contract that is not an enum, into attribute values, attribute keys and
secret-named attributes, and into JSON text nested in an attribute value, of
otherwise valid events (so they reach stage 2, fire SL-01 and feed the metrics);
and into records that go to the dead-letter topic (bad events alone and inside
batches, truncated JSON and Avro, record keys). A real worker handles them, once
with text logs and once with JSON logs, at DEBUG. Then no canary's secret part
may appear in the alerts, the metric records, the internal subjects topic, the
worker's ``/metrics`` page, its log, or any dead letter (every dead letter that
held one is marked ``redacted: true``, and its redacted copy holds none either).
"""

from __future__ import annotations

import random
import string
import time
import urllib.request
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest

from pipeline.codec import AvroEncoder
from pipeline.records import MAX_ID
from tests.support.events import make_event
from tests.support.kafka import consume_until_quiet, produce

pytestmark = pytest.mark.integration

#: String fields of the input contract that are not ids with meaning to the pipeline
#: (event_id, event_type) or enums; each gets a canary in some event.
TEXT_FIELDS = (
    "platform", "environment", "identity_id", "on_behalf_of", "task_id", "trace_id",
    "parent_event_id", "action", "resource", "scope", "credential_id", "policy_id",
    "policy_reason", "credential_kind", "issued_via", "approval_id", "approver",
    "justification", "delegate_identity_id",
)  # fmt: skip


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def canaries(seed: int) -> list[tuple[str, str, str]]:
    """(kind, text to plant, secret part that must never come out)."""
    rng = random.Random(seed)
    up, low, dig = string.ascii_uppercase, string.ascii_lowercase, string.digits
    alnum = up + low + dig
    out: list[tuple[str, str, str]] = []

    def add(kind: str, text: str, needle: str | None = None) -> None:
        out.append((kind, text, needle or text))

    aws_id = "AKIA" + _rand(rng, up + dig, 16)
    add("aws_access_key_id", aws_id)
    aws_secret = _rand(rng, alnum + "/+", 40)
    add("aws_secret_access_key", f"AWS_SECRET_ACCESS_KEY={aws_secret}", aws_secret)
    gh = "ghp_" + _rand(rng, alnum, 36) + "Q"
    add("github_token", gh)
    add("github_pat", "github_pat_" + _rand(rng, alnum, 22) + "_" + _rand(rng, alnum, 59) + "Z")
    add("gitlab_token", "glpat-" + _rand(rng, alnum, 20) + "X")
    add("slack_token", "xoxb-" + _rand(rng, dig, 12) + "-" + _rand(rng, alnum, 24) + "K")
    hook = (
        "T" + _rand(rng, up + dig, 8) + "/B" + _rand(rng, up + dig, 8) + "/" + _rand(rng, alnum, 24)
    )
    add("slack_webhook", f"https://hooks.slack.com/services/{hook}", hook)
    add("stripe_key", "sk_live_" + _rand(rng, alnum, 24) + "A")
    add("anthropic_key", "sk-ant-api03-" + _rand(rng, alnum, 40) + "B")
    add("openai_key", "sk-proj-" + _rand(rng, low, 10) + _rand(rng, up, 10) + _rand(rng, dig, 10))
    add("gcp_api_key", "AIza" + _rand(rng, alnum, 35))

    def b64u(n: int) -> str:
        return _rand(rng, alnum + "-_", n)

    jwt = "eyJhbGciOiJIUzI1NiJ9." + "eyJ" + b64u(40) + "." + b64u(43)
    add("jwt", jwt, jwt[21:])
    bearer = _rand(rng, alnum, 30) + "9Z"
    add("bearer_token", f"Authorization: Bearer {bearer}", bearer)
    body = "\n".join(_rand(rng, alnum + "+/", 64) for _ in range(4))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    add("private_key", pem, body.splitlines()[1])
    password = _rand(rng, alnum, 14) + "!7"
    add("url_password", f"postgres://svc:{password}@db.internal:5432/app", password)
    named = _rand(rng, alnum, 18) + "#4"
    add("named_password", f"db_password={named}", named)
    return out


def valid_events(seed: int) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Every canary in every text field (one event each), and in attributes."""
    planted = canaries(seed)
    events: list[dict[str, Any]] = []
    n = 0
    for kind, text, _ in planted:
        for name in TEXT_FIELDS:
            value = text
            if len(value) > MAX_ID - 10 and name not in (
                "resource",
                "policy_reason",
                "justification",
            ):
                value = text.replace("\n", " ")[: MAX_ID - 10]
                if _needle(planted, kind) not in value:
                    continue  # does not fit an id field whole
            events.append(make_event(50_000 + n, **{name: f"see {value} here"}))
            n += 1
        needle = _needle(planted, kind)
        nested = orjson.dumps(
            {"request": {"headers": {"authorization": text}, "args": ["--token", text]}}
        ).decode()
        events += [
            make_event(50_000 + n, attributes={"note": text, "user_agent": "curl/8"}),
            make_event(50_000 + n + 1, attributes={"db_password": needle, "x": "y"}),
            make_event(50_000 + n + 2, attributes={text[:128]: "value"}),
            make_event(50_000 + n + 3, attributes={"payload": nested}),
            make_event(50_000 + n + 4, scopes=["crm.read", text[:MAX_ID]]),
        ]
        n += 5
    return events, planted


def _needle(planted: list[tuple[str, str, str]], kind: str) -> str:
    return next(n for k, _, n in planted if k == kind)


def dead_records(planted: list[tuple[str, str, str]]) -> list[tuple[bytes | None, bytes]]:
    """Records that go to the DLQ, each holding a canary (some in the key)."""
    enc = AvroEncoder()
    out: list[tuple[bytes | None, bytes]] = []
    for i, (_, text, _) in enumerate(planted):
        base = 60_000 + i * 10
        out.append((None, orjson.dumps(make_event(base, event_type="nope", justification=text))))
        out.append((None, orjson.dumps(make_event(base + 1, attributes={"a": {"b": text}}))))
        out.append((None, orjson.dumps(make_event(base + 2, justification=text))[:-3]))
        batch = [make_event(base + 3), make_event(base + 4, latency_ms=text), make_event(base + 5)]
        out.append((None, orjson.dumps(batch)))
        avro = enc.event(make_event(base + 6, justification=text))
        out.append((None, avro[: len(avro) - 3]))
        out.append((text.encode(), b"not json " + text.encode()))
    return out


def joined(*parts: bytes | None) -> bytes:
    """A record's key, value and headers as one blob to search, each apart: glued
    together, a value cut one character short of a canary plus a header starting with
    that character ("…OH" + "invalid_json") spelled a canary that no part holds."""
    return b"\n".join(p or b"" for p in parts)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode("utf-8", "replace")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_canary_secrets_come_out_nowhere(
    settings_factory: Any, worker_factory: Any, log_format: str
) -> None:
    seed = uuid.uuid4().int
    events, planted = valid_events(seed)
    dead = dead_records(planted)
    settings = settings_factory(log_format=log_format, log_level="DEBUG")
    bootstrap = settings.kafka_bootstrap_servers
    enc = AvroEncoder()
    records: list[tuple[bytes | None, bytes]] = []
    for i in range(0, len(events), 50):
        chunk = events[i : i + 50]
        records.append((None, enc.batch(chunk) if i % 100 else orjson.dumps(chunk)))
    records += [(None, orjson.dumps(e)) for e in events[:40]]  # single-event records too
    records += dead
    produce(bootstrap, settings.topic_events, records)

    worker = worker_factory(settings, name=f"canary-{log_format}").start(timeout=90)
    subjects = consume_until_quiet(bootstrap, settings.topic_subjects, quiet_s=4, expect=1)
    dlq = consume_until_quiet(bootstrap, settings.topic_dlq, quiet_s=3, expect=1)
    # move event time on so windowed outputs (metrics) close
    last = max(e["event_time"] for e in events)
    for k, minutes in enumerate((5, 10, 20)):
        beat = make_event(70_000 + k, event_type="task.started", event_time=last + minutes * 60_000)
        produce(bootstrap, settings.topic_events, [enc.event(beat)])
        time.sleep(2)
    alerts = consume_until_quiet(bootstrap, settings.topic_alerts, quiet_s=4, expect=1)
    metrics = consume_until_quiet(bootstrap, settings.topic_metrics, quiet_s=3)
    evidence = consume_until_quiet(bootstrap, settings.topic_evidence, quiet_s=3)
    page = scrape(settings.web_port)
    assert worker.alive(), worker.log_text()[-3000:]
    log = worker.log_text()

    # the run did what it should: events through, SL-01 fired, dead letters out
    assert subjects and alerts and metrics and evidence
    sl01 = [orjson.loads(r.value or b"{}") for r in alerts]
    assert sum(a.get("detector") == "SL-01" for a in sl01) > 0
    assert len(dlq) >= len(dead)
    if log_format == "json":
        assert log.lstrip().startswith("{"), log[:500]

    needles = [(kind, needle.encode()) for kind, _, needle in planted]

    def leaks(blob: bytes) -> list[str]:
        return [kind for kind, needle in needles if needle in blob]

    found: Counter[str] = Counter()
    outputs = (
        ("alerts", alerts),
        ("metrics", metrics),
        ("evidence", evidence),
        ("subjects", subjects),
    )
    for where, recs in outputs:
        for rec in recs:
            for kind in leaks(joined(rec.key, rec.value)):
                found[f"{where}:{kind}"] += 1
    for kind in leaks(page.encode()):
        found[f"/metrics:{kind}"] += 1
    for kind in leaks(log.encode()):
        found[f"log:{kind}"] += 1
    unmarked_with_canary = 0
    for rec in dlq:
        blob = joined(rec.key, rec.value, *rec.headers.values())
        for kind in leaks(blob):
            found[f"dlq:{kind}"] += 1
        if rec.headers.get("redacted") != b"true":
            unmarked_with_canary += any(
                needle in (rec.key or b"") + (rec.value or b"")
                for _, text, _ in planted
                for needle in [text.encode()]
            )
    examples = [line[:400] for line in log.splitlines() if leaks(line.encode())][:3]
    examples += [
        f"dlq {r.headers.get('error.code')!r} key={(r.key or b'')[:80]!r} "
        f"value={(r.value or b'')[:300]!r}"
        for r in dlq
        if leaks(joined(r.key, r.value, *r.headers.values()))
    ][:4]
    assert not found, "\n".join([str(dict(found)), *examples])
    assert unmarked_with_canary == 0
    marked = sum(r.headers.get("redacted") == b"true" for r in dlq)
    print(
        f"canaries ({log_format} logs): {len(planted)} kinds, {len(events)} valid events, "
        f"{len(dead)} dead records; alerts {len(alerts)} (SL-01 "
        f"{sum(a.get('detector') == 'SL-01' for a in sl01)}), metric records {len(metrics)}, "
        f"evidence records {len(evidence)}, "
        f"dlq {len(dlq)} ({marked} marked redacted), log {len(log.splitlines())} lines; leaks 0"
    )
