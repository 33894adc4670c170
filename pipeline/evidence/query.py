"""Interactive query: the stage-2 worker that owns a task answers for its dossier.

``GET /evidence/task?id=TASK`` on any stage-2 worker's web port (the port of ``/`` and
``/metrics``). A task's dossier state lives in the stage-2 state of its task subject,
on partition ``crc32("task:" + TASK) % GOVPIPE_SUBJECTS_PARTITIONS`` of the internal
topic (``flow/messages.partition_for``: govpipe's own partitioning, not faust's key
partitioning, so faust's ``app.table_route`` would look in the wrong partition). The
worker that receives the request computes that partition and:

* owns it (an active assignment of the consumer group, recovery done): reads the
  task's state (``state_of``: the last unit's redo chunk wins over the table, as
  stage 2's own recovery does) and answers with the dossier it last published,
  200, or 404 when it holds none (task not completed, never seen, or its state
  forgotten ``forget_at`` after completion: the compacted topic is the history);
* does not own it: forwards the request once to the owner's URL, which the group's
  assignment metadata carries (faust's assignor: every member's ``canonical_url``,
  ``GOVPIPE_WEB_URL``), and relays its answer;
* cannot tell (rebalancing, recovering, owner unknown, owner unreachable): 503.

The dossier is sent as the evidence topic's Avro would give it back (encoded and
decoded with the topic's codec), so a reader prints the same whichever source answered.
Answers are JSON objects with ``held`` and the evidence ``topic`` the worker publishes
to (a client checks it: a worker of another pipeline on the same port is not asked);
``pipeline.evidence.remote`` is the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pipeline.evidence.codec import EvidenceCodec
from pipeline.evidence.thresholds import EvidenceThresholds
from pipeline.flow import dossiers
from pipeline.flow.messages import partition_for, subject_key
from pipeline.flow.stage2 import PARTITION_KEY, REDO_KEY
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: The query's path on the worker's web server.
TASK_PATH: Final = "/evidence/task"
#: Set on a forwarded request: the receiver answers itself or says 503, never forwards.
FORWARDED_PARAM: Final = "forwarded"
#: Seconds a forwarded request may take.
FORWARD_TIMEOUT_S: Final = 5.0
#: Task ids longer than this are not govpipe's (events bound their fields).
MAX_TASK_ID: Final = 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP status and its JSON body."""

    status: int
    body: dict[str, Any]

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.body)


def task_partition(task_id: str, partitions: int) -> int:
    """The stage-2 partition of a task's subject (where its dossier state lives)."""
    return partition_for(subject_key("task", task_id), partitions)


def state_of(store: Any, partition: int, key: str) -> Any:
    """A subject's state as stage 2 will see it: the last unit's redo chunks hold its
    newest states (written before them), which the table may not have yet after a
    restart (``Stage2._restore``)."""
    entry = store.get(PARTITION_KEY.format(partition)) or {}
    for i in range(int(entry.get("redo") or 0)):
        chunk = store.get(REDO_KEY.format(partition, i))
        if chunk and chunk.get("done") == entry.get("done"):
            states = chunk.get("states") or {}
            if key in states:
                return states[key]
    return store.get(key)


class TaskQuery:
    """What a worker knows about the tasks of the partitions it owns (no faust here:
    ``register`` wires it to the app; tests give a dict and callables)."""

    def __init__(
        self,
        store: Any,
        thresholds: EvidenceThresholds,
        codec: EvidenceCodec,
        partitions: int,
        *,
        owned: Callable[[], set[int]],
        ready: Callable[[], bool],
        owner_of: Callable[[int], str | None],
        url: str,
    ) -> None:
        self.store = store
        self.thresholds = thresholds
        self.codec = codec
        self.partitions = partitions
        self.owned = owned
        self.ready = ready
        self.owner_of = owner_of
        self.url = url

    def local(self, task_id: str) -> Answer | str:
        """This worker's answer, or the URL of the owner to ask instead."""
        partition = task_partition(task_id, self.partitions)
        where = {"task_id": task_id, "partition": partition, "topic": self.codec.topic}
        if not self.ready():
            return Answer(503, {**where, "held": None, "reason": "rebalancing or recovering"})
        if partition not in self.owned():
            owner = self.owner_of(partition)
            if owner is None or _same(owner, self.url):
                reason = "no worker owns the partition yet"
                return Answer(503, {**where, "held": None, "reason": reason})
            return owner
        state = state_of(self.store, partition, subject_key("task", task_id))
        record = dossiers.resend(state, self.thresholds)
        if record is None:
            reason = "no published dossier in this worker's state"
            return Answer(404, {**where, "held": False, "worker": self.url, "reason": reason})
        dossier = self.codec.decode(self.codec.encode(record))
        return Answer(200, {**where, "held": True, "worker": self.url, "dossier": dossier})


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def parse_task_id(query: Mapping[str, str]) -> str | None:
    task_id = query.get("id")
    if not task_id or len(task_id) > MAX_TASK_ID:
        return None
    return task_id


def register(
    app: Any,
    store: Any,
    thresholds: EvidenceThresholds,
    codec: EvidenceCodec,
    settings: Settings,
) -> TaskQuery:
    """Serve ``TASK_PATH`` on ``app``'s web server from ``store`` (the stage-2 table)."""
    subjects_topic = settings.topic_subjects

    def owned() -> set[int]:
        return {
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == subjects_topic
        }

    def ready() -> bool:
        return not app.rebalancing and not getattr(app, "in_recovery", False)

    def owner_of(partition: int) -> str | None:
        for url, topics in app.assignor.external_topics_metadata().items():
            if partition in (topics.get(subjects_topic) or ()):
                return str(url)
        return None

    query = TaskQuery(
        store,
        thresholds,
        codec,
        settings.subjects_partitions,
        owned=owned,
        ready=ready,
        owner_of=owner_of,
        url=str(app.conf.canonical_url),
    )

    @app.page(TASK_PATH)  # type: ignore[untyped-decorator]
    async def task_page(web: Any, request: Any) -> Any:
        task_id = parse_task_id(request.query)
        if task_id is None:
            answer = Answer(400, {"held": None, "reason": "give the task id as ?id=TASK"})
        else:
            found = query.local(task_id)
            if isinstance(found, Answer):
                answer = found
            elif request.query.get(FORWARDED_PARAM):
                reason = "forwarded to a worker that does not own the partition"
                answer = Answer(503, {"task_id": task_id, "held": None, "reason": reason})
            else:
                answer = await forward(app, found, task_id)
        return web.bytes(answer.to_bytes(), content_type="application/json", status=answer.status)

    return query


async def forward(app: Any, owner: str, task_id: str) -> Answer:
    """Ask the owner (one hop) and relay its answer; 503 when it does not answer."""
    import aiohttp

    url = owner.rstrip("/") + TASK_PATH
    params = {"id": task_id, FORWARDED_PARAM: "1"}
    try:
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
        async with app.http_client.get(url, params=params, timeout=timeout) as response:
            body = orjson.loads(await response.read())
            if not isinstance(body, dict) or "held" not in body:
                raise ValueError("not an evidence answer")
            return Answer(response.status, body)
    except Exception as exc:  # the owner is away or mid-rebalance: the caller falls back
        log.info("evidence query: owner %s did not answer (%s)", owner, type(exc).__name__)
        reason = f"the owner {owner} did not answer ({type(exc).__name__})"
        return Answer(503, {"task_id": task_id, "held": None, "reason": reason})
