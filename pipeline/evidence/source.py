"""Where ``govpipe trace`` finds dossiers, and how it follows a delegation chain.

The lookup is one small interface, ``DossierSource``: ``get`` a task's latest dossier
by key, ``search`` by a ``Query`` (an alert, an identity since a time, an approval, the
delegation event a child task started from). Today's implementation reads the
compacted evidence topic once (``TopicScan``: latest revision per task, in memory);
an interactive-query endpoint on the stage-2 worker that owns the task can implement
the same two methods later without touching the views.

A dossier only knows its own task. Its ``parent`` names the task it was delegated
from (``task_id``, when task.started carried the ``parent_task_id`` attribute) and/or
the event it started from (``event_id``: task.started's ``parent_event_id``, when that
is not an event of the task). ``resolve_chain`` walks those links at read time
through the parents' dossiers, up to the task started for a human, and says where
(and why) it stops.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TextIO

from pipeline.errors import InfraError, RejectedInput
from pipeline.evidence.codec import EvidenceCodec

Record = dict[str, Any]
#: Links followed before a chain is called too deep (a loop is caught earlier).
MAX_CHAIN_DEPTH: Final = 16


@dataclass(frozen=True, slots=True)
class Query:
    """One secondary lookup; exactly one of the selectors is set."""

    alert_id: str | None = None
    identity_id: str | None = None
    approval_id: str | None = None
    delegation_event_id: str | None = None
    #: with ``identity_id``: only tasks started (or completed) at or after this time (ms)
    since_ms: int | None = None


class DossierSource(Protocol):
    """Latest dossiers by task, and by what they contain."""

    def get(self, task_id: str) -> Record | None: ...

    def search(self, query: Query) -> list[Record]: ...


def _task_time(record: Mapping[str, Any]) -> int:
    return int(record.get("started_at") or record.get("completed_at") or 0)


def matches(record: Mapping[str, Any], query: Query) -> bool:
    """Does a dossier answer ``query``? (Pure: any source can use it.)"""
    if query.alert_id is not None:
        return any(f.get("alert_id") == query.alert_id for f in record.get("findings") or [])
    if query.approval_id is not None:
        return any(a.get("approval_id") == query.approval_id for a in record.get("approvals") or [])
    if query.delegation_event_id is not None:
        return any(
            d.get("event_id") == query.delegation_event_id for d in record.get("delegations") or []
        )
    if query.identity_id is not None:
        if query.since_ms is not None and _task_time(record) < query.since_ms:
            return False
        initiator = (record.get("initiator") or {}).get("identity_id")
        actors = {a.get("identity_id") for a in record.get("actors") or []}
        return query.identity_id == initiator or query.identity_id in actors
    return False


def newest_first(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (-_task_time(r), str(r.get("task_id"))))


class MemorySource:
    """Dossiers held in memory, latest revision per task (tests, and the topic scan)."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self.latest: dict[str, Record] = {}
        for record in records:
            self.offer(record)

    def offer(self, record: Record) -> None:
        """Keep ``record`` unless a higher revision of its task is already held."""
        task = str(record["task_id"])
        held = self.latest.get(task)
        if held is None or int(record.get("revision") or 0) >= int(held.get("revision") or 0):
            self.latest[task] = record

    def get(self, task_id: str) -> Record | None:
        return self.latest.get(task_id)

    def search(self, query: Query) -> list[Record]:
        return newest_first(r for r in self.latest.values() if matches(r, query))


class Progress:
    """Progress of a long read on stderr: at most one update a second, only once a
    read has taken more than a second (a short read prints nothing)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = clock()
        self.last = self.start
        self.shown = False

    def __call__(self, records: int, tasks: int, *, done: bool = False) -> None:
        now = self.clock()
        if done:
            if self.shown:
                self._write(f"read {records:,} records, {tasks:,} tasks\n")
            return
        if now - self.start < 1.0 or now - self.last < 1.0:
            return
        self.last = now
        self.shown = True
        self._write(f"reading evidence: {records:,} records, {tasks:,} tasks…\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass


class TopicScan:
    """The compacted evidence topic read once to the end: latest revision per task.

    ``reader`` yields ``Consumed``-like records (``key``, ``value``); ``codec`` decodes
    values. Tombstones (no value) delete their key; records that do not decode are
    counted in ``skipped``, never raised.
    """

    def __init__(
        self,
        reader: Iterable[Any],
        codec: EvidenceCodec | None = None,
        progress: Callable[..., None] | None = None,
    ) -> None:
        self._reader = reader
        self._codec = codec or EvidenceCodec()
        self._progress = progress
        self._memory: MemorySource | None = None
        self.records = 0
        self.skipped = 0

    def _loaded(self) -> MemorySource:
        if self._memory is not None:
            return self._memory
        memory = MemorySource()
        for consumed in self._reader:
            self.records += 1
            if consumed.value is None:
                if consumed.key is not None:
                    memory.latest.pop(consumed.key.decode("utf-8", "replace"), None)
                continue
            try:
                memory.offer(self._codec.decode(consumed.value))
            except RejectedInput:
                self.skipped += 1
            except InfraError:
                raise
            if self._progress is not None:
                self._progress(self.records, len(memory.latest))
        if self._progress is not None:
            self._progress(self.records, len(memory.latest), done=True)
        self._memory = memory
        return memory

    def get(self, task_id: str) -> Record | None:
        return self._loaded().get(task_id)

    def search(self, query: Query) -> list[Record]:
        return self._loaded().search(query)


# ---- the chain ---------------------------------------------------------------------------


def _link(record: Mapping[str, Any], via: Mapping[str, Any] | None) -> Record:
    initiator = record.get("initiator") or {}
    return {
        "task_id": record.get("task_id"),
        "principal": record.get("principal"),
        "initiator": initiator.get("identity_id"),
        "initiator_kind": initiator.get("kind"),
        "initiator_mode": initiator.get("mode"),
        "delegations": [
            {
                "event_id": d.get("event_id"),
                "delegator": d.get("delegator"),
                "delegate": d.get("delegate"),
                "scopes": d.get("scopes") or [],
            }
            for d in record.get("delegations") or []
        ],
        "via": dict(via) if via is not None else None,
    }


def resolve_chain(source: DossierSource, record: Mapping[str, Any]) -> Record:
    """The chain from the human down to ``record``'s task, parents first.

    Each link is a task: its principal, initiator and in-task delegations, and ``via``,
    the delegation (in the parent) the next task started from. ``complete`` is true
    when the top task was started for a human principal and every link resolved;
    otherwise ``broken`` says why (``parent_not_found``, ``loop``, ``too_deep``,
    ``no_human_principal``).
    """
    links = [_link(record, None)]
    seen = {str(record.get("task_id"))}
    current: Mapping[str, Any] = record
    broken: str | None = None
    missing: Record | None = None
    while True:
        parent = current.get("parent")
        if not parent:
            break
        if len(links) > MAX_CHAIN_DEPTH:
            broken = "too_deep"
            break
        found: Mapping[str, Any] | None = None
        if parent.get("task_id"):
            found = source.get(str(parent["task_id"]))
        if found is None and parent.get("event_id"):
            hits = source.search(Query(delegation_event_id=str(parent["event_id"])))
            found = hits[0] if hits else None
        if found is None:
            broken, missing = "parent_not_found", dict(parent)
            break
        if str(found.get("task_id")) in seen:
            broken = "loop"
            break
        seen.add(str(found.get("task_id")))
        via = next(
            (
                d
                for d in found.get("delegations") or []
                if parent.get("event_id") and d.get("event_id") == parent.get("event_id")
            ),
            None,
        )
        links.insert(0, _link(found, via))
        current = found
    human = links[0]["principal"]
    if broken is None and not human:
        broken = "no_human_principal"
    return {
        "human": human,
        "complete": broken is None,
        "broken": broken,
        "missing_parent": missing,
        "links": links,
    }
