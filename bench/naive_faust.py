"""SP-01, RS-01 and RS-02 written the way faust's documentation teaches (issue 17).

The "obvious implementation" govpipe is measured against: one agent, ``async for``
over the stream, every event handled on its own: one Redis read (the identity hash,
``HGETALL {prefix}identity:{id}``, the same keys the bench loads), one Table write,
and an alert sent to a topic as soon as a rule matches. Thresholds are the README's
defaults (SP-01 max lifetime 1 h ai_agent / 24 h workload / 90 d service_account /
24 h other, dedup 1 day per credential; RS-01 10 s, 30 s for high/critical risk;
RS-02 10 decisions by one approver within 60 s, one finding per burst window).

Run by bench/throughput.py as its own worker process:

  python bench/naive_faust.py worker -l warn     (configured by NAIVE_* variables)

NAIVE_BOOTSTRAP, NAIVE_APP_ID, NAIVE_INPUT, NAIVE_ALERTS, NAIVE_DATADIR, NAIVE_WEB_PORT,
NAIVE_REDIS_URL, NAIVE_PREFIX, NAIVE_PROGRESS (a file: "events alerts time" rewritten
every 0.2 s, and at once when NAIVE_EXPECT events have been handled).

Differences from govpipe, by design of the naive approach (why counts differ):
- Rules judge each event on arrival, in arrival order: no watermark, so RS-01 judges
  a decision that arrives before its request or view as "nothing to measure", and a
  late view does not count; govpipe judges once the watermark passes the decision.
- State lives in this process's Tables keyed as it arrives (no group_by repartition:
  one process holds every partition here, so the state is complete for the bench). The
  bench's input is unkeyed, so one credential's issuance and use can sit on different
  partitions and be read in either order: a use read first is not judged.
- A batched record (an Avro batch of events) is decoded whole, then its events are
  handled one by one as above; the docs' way proper is one event per record.
- SP-01 knows a credential's lifetime only from a ``credential.issued`` it has seen
  (its Table); govpipe also reads the credential hash stage 1 keeps in Redis.
- No enrichment beyond the identity kind, no policy, metrics, evidence or other rules.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import fastavro
import faust
import orjson
import redis.asyncio as aredis

from pipeline.codec import (
    LOCAL_BATCH_SCHEMA_ID,
    LOCAL_EVENT_SCHEMA_ID,
    batch_schema,
    event_schema,
    strip_logical,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_LIFETIME_MS = {
    "ai_agent": HOUR_MS,
    "workload": DAY_MS,
    "service_account": 90 * DAY_MS,
}
OTHER_MAX_MS = DAY_MS
SP01_DEDUP_MS = DAY_MS
MIN_REVIEW_MS = 10_000
MIN_REVIEW_HIGH_MS = 30_000
RS02_MIN = 10
RS02_WINDOW_MS = 60_000

env = os.environ
app = faust.App(
    env.get("NAIVE_APP_ID", "naive-faust"),
    broker=f"kafka://{env.get('NAIVE_BOOTSTRAP', 'localhost:9092')}",
    datadir=env.get("NAIVE_DATADIR", "/tmp/naive-faust"),
    web_port=int(env.get("NAIVE_WEB_PORT", "6066")),
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=6.0,
    broker_heartbeat_interval=0.5,
    broker_rebalance_timeout=5.0,
    topic_partitions=6,
    table_standby_replicas=0,
)
events_topic = app.topic(env.get("NAIVE_INPUT", "naive.events"), value_serializer="raw")
alerts_topic = app.topic(env.get("NAIVE_ALERTS", "naive.alerts"), value_serializer="raw")
credentials = app.Table("credentials", default=None)  # credential id -> issuance
approvals = app.Table("approvals", default=None)  # approval id -> request / first view
approvers = app.Table("approvers", default=None)  # approver -> recent decision times
seen = app.Table("seen", default=int)  # identity id -> events (the one write per event)

_PARSED = {
    LOCAL_EVENT_SCHEMA_ID: fastavro.parse_schema(strip_logical(event_schema())),
    LOCAL_BATCH_SCHEMA_ID: fastavro.parse_schema(strip_logical(batch_schema())),
}
_redis: aredis.Redis | None = None
_prefix = env.get("NAIVE_PREFIX", "nhi:")
_progress = Path(env.get("NAIVE_PROGRESS", "/tmp/naive-faust.progress"))
_expect = int(env.get("NAIVE_EXPECT", "0"))
_count = {"events": 0, "alerts": 0}


def decode(value: bytes) -> list[dict[str, Any]]:
    """Confluent-framed Avro (one event or a batch) with plain fastavro."""
    schema_id = int.from_bytes(value[1:5], "big")
    buf = io.BytesIO(value)
    buf.seek(5)
    datum: Any = fastavro.schemaless_reader(buf, _PARSED[schema_id], None)
    return list(datum["events"]) if schema_id == LOCAL_BATCH_SCHEMA_ID else [datum]


def _write_progress() -> None:
    tmp = _progress.with_suffix(".tmp")
    tmp.write_text(f"{_count['events']} {_count['alerts']} {time.time():.6f}\n")
    tmp.replace(_progress)


async def alert(detector: str, subject: str, event: dict[str, Any], facts: dict[str, Any]) -> None:
    _count["alerts"] += 1
    body = {
        "detector": detector,
        "subject": subject,
        "time": event["event_time"],
        "evidence": {"event_ids": [event["event_id"]], "facts": facts},
    }
    await alerts_topic.send(key=subject.encode(), value=orjson.dumps(body))


async def sp01(event: dict[str, Any], identity: dict[bytes, bytes]) -> None:
    cred_id = event.get("credential_id")
    if not cred_id:
        return
    if event["event_type"] == "credential.issued":
        credentials[cred_id] = {
            "issued_at": event["event_time"],
            "expires_at": event.get("expires_at"),
            "alerted_at": None,
        }
        return
    if event["event_type"] != "action":
        return
    cred = credentials.get(cred_id)
    if cred is None:
        return  # issuance not seen: no lifetime to judge
    kind = (identity.get(b"kind") or b"").decode()
    limit = MAX_LIFETIME_MS.get(kind, OTHER_MAX_MS)
    expires = cred["expires_at"]
    lifetime = None if expires is None else expires - cred["issued_at"]
    if lifetime is not None and lifetime <= limit:
        return
    last = cred["alerted_at"]
    if last is not None and event["event_time"] - last < SP01_DEDUP_MS:
        return
    credentials[cred_id] = {**cred, "alerted_at": event["event_time"]}
    await alert("SP-01", cred_id, event, {"lifetime_ms": lifetime, "max_lifetime_ms": limit})


async def rs01_rs02(event: dict[str, Any]) -> None:
    etype, approval_id = event["event_type"], event.get("approval_id")
    if not approval_id or not etype.startswith("approval."):
        return
    state = approvals.get(approval_id) or {}
    if etype == "approval.requested":
        approvals[approval_id] = {
            **state,
            "requested": event["event_time"],
            "risk": event.get("risk"),
        }
        return
    if etype == "approval.viewed":
        if "viewed" not in state:
            approvals[approval_id] = {**state, "viewed": event["event_time"]}
        return
    if etype != "approval.decided":
        return
    t, approver = event["event_time"], event.get("approver") or ""
    # RS-02: sliding count of one approver's decisions; one finding per burst window.
    burst = approvers.get(approver) or {"times": [], "window_end": 0}
    if t < burst["window_end"]:
        approvers[approver] = burst  # inside a burst already reported
    else:
        times = [x for x in burst["times"] if x > t - RS02_WINDOW_MS] + [t]
        if len(times) >= RS02_MIN:
            approvers[approver] = {"times": [], "window_end": times[0] + RS02_WINDOW_MS}
            await alert("RS-02", approver, event, {"decisions_in_window": len(times)})
        else:
            approvers[approver] = {"times": times, "window_end": 0}
    # RS-01: judged now, on arrival (no watermark).
    if event.get("decision") != "approved":
        return
    starts = [s for s in (state.get("requested"), state.get("viewed")) if s is not None and s <= t]
    if not starts:
        return
    risk = state.get("risk") or event.get("risk")
    minimum = MIN_REVIEW_HIGH_MS if risk in ("high", "critical") else MIN_REVIEW_MS
    review = t - max(starts)
    if review < minimum:
        await alert("RS-01", approval_id, event, {"review_ms": review, "min_review_ms": minimum})


@app.agent(events_topic)
async def detect(stream: Any) -> None:
    global _redis
    if _redis is None:
        _redis = aredis.Redis.from_url(env.get("NAIVE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    async for value in stream:
        for event in decode(value):
            identity_id = event.get("identity_id") or ""
            identity = await _redis.hgetall(f"{_prefix}identity:{identity_id}")
            seen[identity_id] += 1
            await sp01(event, identity)
            await rs01_rs02(event)
            _count["events"] += 1
            if _count["events"] == _expect:
                _write_progress()


@app.timer(0.2)
async def progress() -> None:
    _write_progress()


if __name__ == "__main__":
    app.main()
