"""Prometheus text exposition and JSON logs for the worker.

The counters live in the stages' own stats objects (plain ints, no locking:
one event loop); this module only renders them, so a scrape costs nothing on
the hot path. Names follow Prometheus conventions: ``_total`` for counters,
base units (seconds, ratio).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.enrichment.readiness import RegistryStatus
from pipeline.flow.stage1 import Stage1Stats
from pipeline.flow.stage2 import Stage2Stats
from pipeline.metrics.deltas import COUNTERS
from pipeline.redact import redact_text

#: The metric counters of docs/contracts/metrics.md that are exported as Prometheus
#: counters ``govpipe_<name>_total`` (alerts and late events have their own families).
GOVERNANCE_COUNTERS: tuple[str, ...] = tuple(
    c for c in COUNTERS if c not in ("alerts_total", "late_events")
)
#: Counters a later finding corrects downwards (a task counted safe, an approval counted
#: meaningful): their corrections are ``govpipe_<name>_corrections_total``.
CORRECTED = ("tasks_safe", "approvals_meaningful")
_HELP = {
    "tasks_completed": "Tasks completed (first task.completed per task_id).",
    "tasks_succeeded": "Completed tasks with outcome success.",
    "tasks_safe": "Completed tasks counted safe (succeeded, no finding on the task yet).",
    "actions_total": "Action events.",
    "actions_authorized": "Actions with policy_decision allow.",
    "actions_attributable": "Actions whose identity the registry knows.",
    "actions_with_credential": "Actions naming a credential.",
    "actions_ephemeral": "Actions under an ephemeral credential (JIT or within SP-01's TTL).",
    "task_credentials_completed": "Credentials of completed tasks, judged after the grace.",
    "task_credentials_revoked": "Of those, revoked by completion + grace.",
    "approvals_decided": "Approvals decided (first decision per approval_id).",
    "approvals_meaningful": "Decided approvals counted meaningful (no RS finding yet).",
}


def governance_metric_name(counter: str) -> str:
    return f"govpipe_{counter.removesuffix('_total')}_total"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_: str, samples: Iterable[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                self.lines.append(f"{name}{{{inner}}} {value}")
            else:
                self.lines.append(f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _dlq_by_code(stage1: Stage1Stats, stage2: Stage2Stats) -> Counter[str]:
    """Dead letters of both stages: stage 2 sends only ``detector_error``."""
    out = Counter(stage1.dlq_by_code)
    if stage2.dead_letters:
        out["detector_error"] += stage2.dead_letters
    return out


def render(
    stage1: Stage1Stats,
    stage2: Stage2Stats,
    cache: Any | None,
    now: float | None = None,
    *,
    registry: RegistryStatus | None = None,
    redis_errors: int | None = None,
    broker_errors: Mapping[str, int] | None = None,
) -> str:
    """The /metrics page (``registry``: the last registry check, None before the first;
    ``redis_errors``: the enricher's failed Redis calls; ``broker_errors``: by operation,
    this process's :data:`BROKER_ERRORS` unless given)."""
    now_ms = (time.time() if now is None else now) * 1000
    w = _Writer()
    w.metric(
        "govpipe_records_in_total",
        "counter",
        "Kafka records read by stage.",
        [({"stage": "1"}, stage1.records_in), ({"stage": "2"}, stage2.records_in)],
    )
    w.metric(
        "govpipe_events_in_total",
        "counter",
        "Events decoded (stage 1) or subject copies (2).",
        [({"stage": "1"}, stage1.events_in), ({"stage": "2"}, stage2.items_in)],
    )
    w.metric(
        "govpipe_events_out_total",
        "counter",
        "Valid events forwarded by stage 1.",
        [({"stage": "1"}, stage1.events_out)],
    )
    w.metric(
        "govpipe_dlq_records_total",
        "counter",
        "Dead-lettered records or events by error code.",
        [({"code": code}, n) for code, n in sorted(_dlq_by_code(stage1, stage2).items())],
    )
    inputs = sorted(stage1.inputs.items())
    w.metric(
        "govpipe_input_partition_lag",
        "gauge",
        "Records of an owned input partition not read yet (end offset - next offset), "
        "at the last watermark tick.",
        [({"partition": str(p)}, v.lag) for p, v in inputs if v.lag is not None],
    )
    w.metric(
        "govpipe_input_partition_paused",
        "gauge",
        "1 while watermark alignment holds an input partition (ahead of the slowest).",
        [({"partition": str(p)}, int(v.aligned_pause)) for p, v in inputs],
    )
    w.metric(
        "govpipe_input_partition_fetching",
        "gauge",
        "1 while the consumer fetches an input partition (0: paused by alignment, a "
        "rebalance or a full stream buffer).",
        [({"partition": str(p)}, int(v.fetching)) for p, v in inputs],
    )
    w.metric(
        "govpipe_input_stalls_total",
        "counter",
        "Times an input partition with records left was neither held by alignment nor "
        "read for a minute (logged with the consumer's view).",
        [
            ({"partition": str(p)}, stage1.input_stalls.get(p, 0))
            for p in sorted({*stage1.inputs, *stage1.input_stalls})
        ],
    )
    w.metric(
        "govpipe_input_partition_idle",
        "gauge",
        "1 while an input partition is idle (caught up and silent): it does not hold "
        "the watermark back.",
        [({"partition": str(p)}, int(v.idle)) for p, v in inputs],
    )
    w.metric(
        "govpipe_secrets_redacted_total",
        "counter",
        "Secret-like values redacted in events.",
        [({}, stage1.secrets_redacted)],
    )
    w.metric(
        "govpipe_alerts_total",
        "counter",
        "Alert records published by detector and severity (creates and updates).",
        [
            ({"detector": d, "severity": s}, n)
            for (d, s), n in sorted(stage2.alerts_by_severity.items())
        ],
    )
    # Governance counts in processing time: counted where stage 2 applies each global
    # metric delta (once per item), so rate() of them gives the governance rates; a
    # rate that later findings correct is (counted - corrections) / denominator.
    for counter in GOVERNANCE_COUNTERS:
        w.metric(
            governance_metric_name(counter),
            "counter",
            _HELP.get(counter, counter.replace("_", " ").capitalize() + "."),
            [({}, stage2.governance[counter])],
        )
    for counter in sorted({*CORRECTED, *stage2.corrections}):
        w.metric(
            f"govpipe_{counter}_corrections_total",
            "counter",
            f"Items counted in govpipe_{counter}_total that a later finding took back.",
            [({}, stage2.corrections[counter])],
        )
    w.metric(
        "govpipe_alerts_activity_total",
        "counter",
        "Alerts by OCSF activity.",
        [
            ({"activity": "create"}, stage2.alerts_created),
            ({"activity": "update"}, stage2.alerts_updated),
        ],
    )
    w.metric(
        "govpipe_detector_errors_total",
        "counter",
        "Detector calls that raised, by detector (the event copy is dead-lettered).",
        [({"detector": d}, n) for d, n in sorted(stage2.detector_errors.items())],
    )
    w.metric(
        "govpipe_duplicate_events_total",
        "counter",
        "Event copies dropped as replays.",
        [({}, stage2.duplicates)],
    )
    w.metric(
        "govpipe_late_events_total",
        "counter",
        "Events later than the allowed lateness.",
        [({}, stage2.late_events)],
    )
    w.metric(
        "govpipe_registry_gap_events_total",
        "counter",
        "Events enriched while the identity registry was not ready: the detectors "
        "that need it did not judge them.",
        [({}, stage2.registry_gap_events)],
    )
    w.metric(
        "govpipe_revocations_relayed_total",
        "counter",
        "Revocations without task_id that stage 1 could not route to their task (the "
        "credential's Redis hash had lost it) and stage 2 relayed from the credential.",
        [({}, stage2.revocations_relayed)],
    )
    w.metric(
        "govpipe_progress_flushed_total",
        "counter",
        "Stage-2 progress reports the once-a-second rate limit held back and the worker's "
        "timer sent later (the last one of a stream that went quiet; tasks wait for it).",
        [({}, stage2.progress_flushed)],
    )
    w.metric(
        "govpipe_timers_fired_total",
        "counter",
        "Absence checks fired by the watermark.",
        [({}, stage2.timers_fired)],
    )
    w.metric(
        "govpipe_stage2_units_total",
        "counter",
        "Stage-2 units (one partition's records of a batch, one state write each).",
        [({}, stage2.units)],
    )
    w.metric(
        "govpipe_stage2_states_restored_total",
        "counter",
        "States restored from redo chunks after a restart.",
        [({}, stage2.states_restored)],
    )
    w.metric(
        "govpipe_stage2_offset_gaps_total",
        "counter",
        "Assignments where input resumed past the recovered state and was read again.",
        [({}, stage2.offset_gaps)],
    )
    if cache is not None:
        w.metric(
            "govpipe_enrichment_cache_lookups_total",
            "counter",
            "Registry cache lookups.",
            [({"result": "hit"}, cache.hits), ({"result": "miss"}, cache.misses)],
        )
        w.metric(
            "govpipe_enrichment_cache_hit_ratio",
            "gauge",
            "Hits / lookups since start.",
            [({}, round(cache.hit_ratio, 6))],
        )
    w.metric(
        "govpipe_redis_batch_seconds",
        "summary",
        "Redis time per stage-1 batch (with retries).",
        [],
    )
    w.lines.append(f"govpipe_redis_batch_seconds_sum {stage1.redis_seconds_sum:.6f}")
    w.lines.append(f"govpipe_redis_batch_seconds_count {stage1.redis_calls}")
    if redis_errors is not None:
        w.metric(
            "govpipe_redis_errors_total",
            "counter",
            "Failed Redis calls (each retried with backoff; input pauses meanwhile).",
            [({}, redis_errors)],
        )
    errors = BROKER_ERRORS if broker_errors is None else broker_errors
    w.metric(
        "govpipe_broker_errors_total",
        "counter",
        "Kafka client errors by operation (connect, metadata, fetch, group, produce).",
        [({"op": op}, errors.get(op, 0)) for op in sorted({*BROKER_OPS, *errors})],
    )
    if registry is not None:
        w.metric(
            "govpipe_registry_ready",
            "gauge",
            "1 when the identity registry marker is in Redis with identities, else 0.",
            [({}, 1 if registry.ready else 0)],
        )
        if registry.loaded_at_ms is not None:
            w.metric(
                "govpipe_registry_loaded_timestamp_seconds",
                "gauge",
                "When the identity registry was last loaded (Unix time).",
                [({}, registry.loaded_at_ms / 1000)],
            )
    w.metric(
        "govpipe_state_entries",
        "gauge",
        "Stage-2 Table entries held by this worker (subjects, metric windows, records).",
        [({}, stage2.state_entries)],
    )
    w.metric(
        "govpipe_state_expired_total",
        "counter",
        "Finished subjects deleted from the stage-2 Table (a changelog tombstone each).",
        [({}, stage2.subjects_expired)],
    )
    w.metric(
        "govpipe_state_abandoned_total",
        "counter",
        "Of the deleted subjects, tasks never completed and approvals never decided, "
        "silent for GOVPIPE_ABANDONED_AFTER_S.",
        [({}, stage2.subjects_abandoned)],
    )
    w.metric(
        "govpipe_dedup_record_total",
        "counter",
        "Expired subjects whose alert ids went to the dedup record, and ones taken back.",
        [({"op": "kept"}, stage2.dedup_kept), ({"op": "recalled"}, stage2.dedup_recalled)],
    )
    lags = []
    for stage, newest in (("1", stage1.newest_event_ms), ("2", stage2.newest_event_ms)):
        if newest is not None:
            lags.append(({"stage": stage}, round(max(0.0, now_ms - newest) / 1000, 3)))
    w.metric(
        "govpipe_processing_lag_seconds",
        "gauge",
        "Wall clock minus the newest event time processed (event-time lag).",
        lags,
    )
    return w.text()


def health(registry: RegistryStatus | None) -> dict[str, Any]:
    """The ``/`` page: ``OK``, or ``DEGRADED`` with the reasons. Degraded is not down
    (always HTTP 200, so probes keep the worker): it processes events meanwhile."""
    reasons = [registry.reason] if registry is not None and not registry.ready else []
    body: dict[str, Any] = {"status": "DEGRADED" if reasons else "OK"}
    if reasons:
        body["reasons"] = reasons
    if registry is not None:
        body["registry"] = registry.as_dict()
    return body


class JsonFormatter(logging.Formatter):
    """One JSON object per line; messages pass through secret redaction."""

    def format(self, record: logging.LogRecord) -> str:
        message, _ = redact_text(record.getMessage())
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        if record.exc_info:
            payload["exc"] = redact_text(self.formatException(record.exc_info))[0]
        return json.dumps(payload, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """The text format, with secret-like values redacted from every line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))[0]


#: Kafka client lines that mean "the broker cannot be reached" (aiokafka logs them at
#: ERROR, about 40 a second while it retries: 2,080 lines in a 30 s outage, measured).
_BROKER_DOWN = re.compile(
    r"Unable connect to node|Unable to update metadata|Connection refused|"
    r"KafkaConnectionError|NodeNotReadyError|Connection at \S+ closed|"
    r"Marking the coordinator dead|Group Coordinator Request failed|"
    r"Heartbeat send request failed|Error sending HeartbeatRequest|"
    r"Failed fetch messages|Unable to request metadata|Timeout connecting to"
)
_BROKER_LOGGERS = ("aiokafka", "faust.transport", "pipeline.app", "mode")

#: Broker error lines by operation: ``govpipe_broker_errors_total{op}``. The Kafka
#: client reports connection trouble only through its log, so the errors are counted
#: where its lines are filtered (every line, logged or held back), plus govpipe's own
#: "delivery failed" / "enqueue failed" retries (op ``produce``).
BROKER_OPS = ("connect", "metadata", "fetch", "group", "produce")
BROKER_ERRORS: Counter[str] = Counter()
_BROKER_OP = (
    ("produce", re.compile(r"^(?:delivery|enqueue) failed")),
    ("metadata", re.compile(r"metadata")),
    ("fetch", re.compile(r"Failed fetch messages")),
    ("group", re.compile(r"Heartbeat|[Cc]oordinator")),
    ("connect", re.compile(r".")),
)
_PRODUCE_FAILED = _BROKER_OP[0][1]


def _broker_op(record: logging.LogRecord) -> str | None:
    """The operation a broker error line is about, or None if it is not one."""
    if record.levelno < logging.WARNING:
        return None
    if record.name.startswith("pipeline."):
        try:
            if _PRODUCE_FAILED.search(record.getMessage()):
                return "produce"
        except Exception:  # a broken format string is not ours to judge
            return None
    if not _is_broker_error(record):
        return None
    message = record.getMessage()
    return next(op for op, pattern in _BROKER_OP[1:] if pattern.search(message))


def _is_broker_error(record: logging.LogRecord) -> bool:
    if record.levelno < logging.WARNING or not record.name.startswith(_BROKER_LOGGERS):
        return False
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is not ours to judge
        return False
    return _BROKER_DOWN.search(message) is not None


class BrokerOutageFilter(logging.Filter):
    """One line when the broker becomes unreachable, one when the errors stop.

    While the broker is away the Kafka client logs every failed connect, metadata
    request, fetch and heartbeat (the worker itself keeps retrying, never exits).
    The first such line is replaced by one WARNING saying so; the rest are counted,
    not written; when none has come for ``quiet_s`` a WARNING says the broker
    answers again, after how long, and how many lines were held back.
    """

    logger_name = "govpipe.broker"

    def __init__(self, quiet_s: float = 5.0) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last = 0.0
        self._held = 0

    @property
    def errors(self) -> Counter[str]:
        """Broker error lines seen so far by operation (the process-wide count)."""
        return BROKER_ERRORS

    def filter(self, record: logging.LogRecord) -> bool:
        op = _broker_op(record)
        if op is not None:
            BROKER_ERRORS[op] += 1
        if op is None or not _is_broker_error(record):
            return True
        now = time.monotonic()
        with self._lock:
            self._last = now
            if self._since is not None:
                self._held += 1
                return False
            self._since, self._held = now, 0
        first = redact_text(record.getMessage())[0][:300]
        record.msg = (
            "broker unreachable (%s: %s); retrying until it answers, input held meanwhile "
            "(further connection errors are counted, not logged)"
        )
        record.args = (record.name, first)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.name = self.logger_name
        record.exc_info = record.exc_text = None
        threading.Thread(target=self._watch, name="broker-outage-log", daemon=True).start()
        return True

    def _watch(self) -> None:
        """Wait until the errors stop, then say so once."""
        while True:
            with self._lock:
                assert self._since is not None
                quiet = time.monotonic() - self._last
                if quiet >= self.quiet_s:
                    lasted, held = self._last - self._since, self._held
                    self._since = None
                    break
            time.sleep(max(0.1, self.quiet_s - quiet))
        logging.getLogger(self.logger_name).warning(
            "broker reachable again: connection errors for %.1f s, none since %.0f s "
            "(%d lines held back)",
            lasted,
            self.quiet_s,
            held,
        )


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for faust's Worker (it installs handlers itself)."""
    formatter = (
        {"()": f"{__name__}.JsonFormatter"}
        if fmt == "json"
        else {
            "()": f"{__name__}.RedactingFormatter",
            "format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        }
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"govpipe": formatter},
        "filters": {"broker_outage": {"()": f"{__name__}.BrokerOutageFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "govpipe",
                "filters": ["broker_outage"],
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }
