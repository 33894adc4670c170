"""``govpipe trace``'s client of the workers' interactive query (``evidence/query.py``).

``WorkerFirst`` is a ``DossierSource``: ``get`` asks a running stage-2 worker (one HTTP
request; the worker forwards it once to the task's owner), and reads the compacted
evidence topic only when no worker answers or the owner holds no dossier for the task
(its state is forgotten a while after completion; the topic keeps history). ``search``
(by alert, identity, approval, delegation event) has no key to route by: it reads the
topic. ``answers`` records which source gave each dossier, so the command can say so
without changing what it prints.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import orjson

from pipeline.evidence.query import TASK_PATH
from pipeline.evidence.source import DossierSource, Query, Record

#: Seconds to wait for a worker before reading the topic instead.
DEFAULT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Reply:
    """A worker's answer: ``held`` True (``dossier`` set), False (the owner has none),
    or None (no answer: ``reason`` says why)."""

    held: bool | None
    dossier: Record | None = None
    worker: str | None = None
    partition: int | None = None
    reason: str | None = None
    #: the evidence topic the worker publishes to
    topic: str | None = None


def ask_worker(base_url: str, task_id: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Reply:
    """``GET {base_url}/evidence/task?id=TASK``; never raises."""
    url = base_url.rstrip("/") + TASK_PATH + "?" + urllib.parse.urlencode({"id": task_id})
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:  # 404 and 503 carry an answer too
        raw = exc.read()
    except (OSError, ValueError) as exc:
        return Reply(None, reason=f"no worker answered at {base_url}: {_why(exc)}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Reply(None, reason=f"{base_url} is not a govpipe stage-2 worker with evidence")
    if not isinstance(body, dict) or "held" not in body:
        return Reply(None, reason=f"{base_url} is not a govpipe stage-2 worker with evidence")
    held = body.get("held")
    dossier = body.get("dossier")
    if held is True and not (isinstance(dossier, dict) and dossier.get("task_id") == task_id):
        return Reply(None, reason=f"{base_url} answered with another task's dossier")
    partition = body.get("partition")
    return Reply(
        held if isinstance(held, bool) else None,
        dossier if held is True else None,
        str(body["worker"]) if body.get("worker") else None,
        partition if isinstance(partition, int) else None,
        str(body.get("reason") or "") or None,
        str(body["topic"]) if body.get("topic") else None,
    )


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__


@dataclass
class WorkerFirst:
    """Ask the worker for a task, the topic for the rest (module doc)."""

    url: str
    #: the evidence topic's scan, built on first use (a ``TopicScan``)
    topic: Callable[[], DossierSource]
    topic_name: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    ask: Callable[[str, str, float], Reply] = ask_worker
    #: (task id, where its answer came from), in the order asked
    answers: list[tuple[str, str]] = field(default_factory=list)
    searched: bool = False
    unreachable: Reply | None = None
    _scan: DossierSource | None = None

    def _topic(self) -> DossierSource:
        if self._scan is None:
            self._scan = self.topic()
        return self._scan

    def get(self, task_id: str) -> Record | None:
        # a worker that did not answer is not asked again by this command (a chain
        # would wait for it once per link)
        reply = self.unreachable or self.ask(self.url, task_id, self.timeout_s)
        if reply.held is not None and reply.topic not in (None, self.topic_name):
            reason = f"no worker answered at {self.url} for {self.topic_name} "
            reply = Reply(None, reason=reason + f"(it publishes to {reply.topic})")
        if reply.held is None and (reply.reason or "").startswith("no worker answered"):
            self.unreachable = reply
        if reply.held is True:
            where = reply.worker or self.url
            self.answers.append((task_id, f"worker {where} (partition {reply.partition})"))
            return reply.dossier
        found = self._topic().get(task_id)
        if reply.held is False:
            why = f"worker {reply.worker or self.url} holds no dossier for it"
        else:
            why = reply.reason or "no worker answered"
        self.answers.append((task_id, f"topic {self.topic_name} ({why})"))
        return found

    def search(self, query: Query) -> list[Record]:
        self.searched = True
        return self._topic().search(query)

    def describe(self) -> list[str]:
        """Which source answered: the search, then each dossier looked up by key."""
        lines = [f"search: answered from the topic {self.topic_name}"] if self.searched else []
        return lines + [f"task {task}: answered by the {where}" for task, where in self.answers]
