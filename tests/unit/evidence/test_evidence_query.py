"""The interactive query (pipeline/evidence/query.py) and trace's client of it
(pipeline/evidence/remote.py), without a broker: the worker side on a dict store,
the client against a local HTTP server and fake workers."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pipeline.cli import build_parser
from pipeline.commands.trace import run, say_sources
from pipeline.evidence import EvidenceThresholds, add_alerts, add_events, new_state, next_record
from pipeline.evidence.codec import EvidenceCodec
from pipeline.evidence.query import Answer, TaskQuery, state_of, task_partition
from pipeline.evidence.remote import Reply, WorkerFirst, ask_worker
from pipeline.evidence.source import MemorySource, Query
from pipeline.flow.messages import partition_for
from pipeline.flow.stage2 import PARTITION_KEY, REDO_KEY
from tests.unit.evidence import _scenario as sc
from tests.unit.evidence.test_trace_views import child_task

TH = EvidenceThresholds.defaults()
CODEC = EvidenceCodec()
PARTITIONS = 6
SELF, OTHER = "http://10.0.0.1:6066", "http://10.0.0.2:6066"


def task_state() -> dict[str, Any]:
    """The must-show task's subject state as stage 2 leaves it after publishing."""
    ev = new_state(sc.TASK)
    add_events(ev, [*sc.events(), sc.late_revocation()])
    add_alerts(ev, [sc.sp02_alert()])
    assert next_record(ev, TH) is not None
    return {"_ev": ev}


def published() -> dict[str, Any]:
    """The must-show dossier as the evidence topic gives it back."""
    ev = new_state(sc.TASK)
    add_events(ev, [*sc.events(), sc.late_revocation()])
    add_alerts(ev, [sc.sp02_alert()])
    record = next_record(ev, TH)
    assert record is not None
    return CODEC.decode(CODEC.encode(record))


def query(store: dict[str, Any], owned: set[int], **kw: Any) -> TaskQuery:
    return TaskQuery(
        store,
        TH,
        CODEC,
        PARTITIONS,
        owned=lambda: owned,
        ready=kw.get("ready", lambda: True),
        owner_of=kw.get("owner_of", lambda p: OTHER),
        url=SELF,
    )


# ---- the worker side -----------------------------------------------------------------


def test_partition_is_stage_2s_own_crc32_of_the_task_subject() -> None:
    assert task_partition(sc.TASK, PARTITIONS) == partition_for(f"task:{sc.TASK}", PARTITIONS)


def test_the_owner_answers_with_the_dossier_it_published() -> None:
    p = task_partition(sc.TASK, PARTITIONS)
    answer = query({f"task:{sc.TASK}": task_state()}, {p}).local(sc.TASK)
    assert isinstance(answer, Answer) and answer.status == 200
    assert answer.body["held"] is True and answer.body["partition"] == p
    assert answer.body["topic"] == CODEC.topic
    assert answer.body["worker"] == SELF
    assert answer.body["dossier"] == published()
    assert orjson.loads(answer.to_bytes())["dossier"] == published()


def test_the_owner_says_404_for_a_task_it_does_not_hold() -> None:
    p = task_partition("task-nobody", PARTITIONS)
    answer = query({}, {p}).local("task-nobody")
    assert isinstance(answer, Answer) and answer.status == 404 and answer.body["held"] is False


def test_an_unfinished_task_has_no_dossier_yet() -> None:
    ev = new_state(sc.TASK)
    add_events(ev, [e for e in sc.events() if e["event_type"] != "task.completed"])
    assert next_record(ev, TH) is None
    p = task_partition(sc.TASK, PARTITIONS)
    answer = query({f"task:{sc.TASK}": {"_ev": ev}}, {p}).local(sc.TASK)
    assert isinstance(answer, Answer) and answer.status == 404


def test_another_worker_names_the_owner_or_says_503() -> None:
    p = task_partition(sc.TASK, PARTITIONS)
    others = set(range(PARTITIONS)) - {p}
    assert query({}, others).local(sc.TASK) == OTHER
    unknown = query({}, others, owner_of=lambda _: None).local(sc.TASK)
    assert isinstance(unknown, Answer) and unknown.status == 503
    # the group says this worker owns it but it has not got it: never forward to itself
    stale = query({}, others, owner_of=lambda _: SELF + "/").local(sc.TASK)
    assert isinstance(stale, Answer) and stale.status == 503


def test_no_answer_while_rebalancing() -> None:
    p = task_partition(sc.TASK, PARTITIONS)
    answer = query({f"task:{sc.TASK}": task_state()}, {p}, ready=lambda: False).local(sc.TASK)
    assert isinstance(answer, Answer) and answer.status == 503 and answer.body["held"] is None


def test_the_last_units_redo_chunk_wins_over_the_table() -> None:
    p, key = 2, f"task:{sc.TASK}"
    newer, older = {"v": "newer"}, {"v": "older"}
    store = {
        PARTITION_KEY.format(p): {"done": 41, "redo": 1},
        REDO_KEY.format(p, 0): {"done": 41, "states": {key: newer}},
        key: older,
    }
    assert state_of(store, p, key) == newer
    store[REDO_KEY.format(p, 0)] = {"done": 40, "states": {key: newer}}  # an older unit's
    assert state_of(store, p, key) == older
    assert state_of({key: older}, p, key) == older


# ---- the client ------------------------------------------------------------------------


class Worker(http.server.BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:
        status, body = self.replies.get(self.path, (404, b"Not Found"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def worker() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_ask_worker_reads_200_404_and_503_answers(worker: str) -> None:
    dossier = published()
    Worker.replies = {
        f"/evidence/task?id={sc.TASK}": (
            200,
            orjson.dumps({"held": True, "dossier": dossier, "worker": "w1", "partition": 1}),
        ),
        "/evidence/task?id=gone": (404, orjson.dumps({"held": False, "worker": "w1"})),
        "/evidence/task?id=busy": (503, orjson.dumps({"held": None, "reason": "rebalancing"})),
        "/evidence/task?id=a+b%2Fc": (404, orjson.dumps({"held": False})),
    }
    assert ask_worker(worker, sc.TASK) == Reply(True, dossier, "w1", 1, None)
    assert ask_worker(worker, "gone").held is False
    busy = ask_worker(worker, "busy")
    assert busy.held is None and busy.reason == "rebalancing"
    assert ask_worker(worker, "a b/c").held is False  # the id travels escaped
    # a web server that is not a govpipe stage-2 worker (faust's own 404 page)
    assert ask_worker(worker, "other").held is None
    # a worker that answers with another task's dossier is not believed
    Worker.replies[f"/evidence/task?id={sc.TASK}"] = (
        200,
        orjson.dumps({"held": True, "dossier": {**dossier, "task_id": "x"}}),
    )
    assert ask_worker(worker, sc.TASK).held is None


def test_ask_worker_says_why_when_nobody_listens() -> None:
    reply = ask_worker("http://127.0.0.1:9", sc.TASK, timeout_s=2)
    assert reply.held is None and "no worker answered at http://127.0.0.1:9" in (reply.reason or "")


def unread() -> MemorySource:
    raise AssertionError("the topic was read")


def test_worker_first_reads_no_topic_when_the_worker_answers() -> None:
    dossier = published()
    source = WorkerFirst(
        "http://w", unread, "ev", ask=lambda url, task, t: Reply(True, dossier, "http://w1", 3)
    )
    assert source.get(sc.TASK) == dossier
    assert source.describe() == [f"task {sc.TASK}: answered by the worker http://w1 (partition 3)"]


def test_worker_first_falls_back_to_the_topic_and_says_why() -> None:
    topic = MemorySource([published(), CODEC.decode(CODEC.encode(child_task()))])
    replies = {sc.TASK: Reply(False, worker="http://w1"), "task-child": Reply(None, reason="down")}
    source = WorkerFirst("http://w", lambda: topic, "ev", ask=lambda u, t, s: replies[t])
    assert source.get(sc.TASK) == published()
    assert source.get("task-child") is not None
    assert source.search(Query(alert_id="nope")) == []
    assert source.describe() == [
        "search: answered from the topic ev",
        f"task {sc.TASK}: answered by the topic ev (worker http://w1 holds no dossier for it)",
        "task task-child: answered by the topic ev (down)",
    ]


@pytest.mark.parametrize("as_json", [True, False])
def test_trace_prints_the_same_whichever_source_answered(as_json: bool) -> None:
    """Same stdout from the worker and from the topic; the chain's parent (found by its
    delegation event) comes from the topic either way."""
    records = [published(), CODEC.decode(CODEC.encode(child_task()))]
    held = MemorySource(records)

    def ask(url: str, task: str, timeout: float) -> Reply:
        found = held.get(task)
        return Reply(True, found, url, 0) if found else Reply(False)

    outputs = []
    for source in (WorkerFirst("http://w", lambda: MemorySource(records), "ev", ask=ask), held):
        out = io.StringIO()
        argv = ["trace", "task", "task-child", *(["--json"] if as_json else [])]
        assert run(build_parser().parse_args(argv), source, out=out, now_ms=sc.T0) == 0
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    assert sc.TASK in outputs[0]  # the chain reached the parent task


def test_say_sources_names_the_topic_for_a_topic_only_read() -> None:
    err = io.StringIO()
    say_sources(MemorySource(), "governance.evidence.v1", err)
    assert err.getvalue() == "answered from the topic governance.evidence.v1\n"


def test_a_worker_that_does_not_answer_is_asked_once() -> None:
    asked: list[str] = []

    def ask(url: str, task: str, timeout: float) -> Reply:
        asked.append(task)
        return Reply(None, reason=f"no worker answered at {url}: refused")

    source = WorkerFirst("http://w", lambda: MemorySource([published()]), "ev", ask=ask)
    assert source.get(sc.TASK) == published() and source.get("task-child") is None
    assert asked == [sc.TASK]
    assert source.describe()[1].endswith("(no worker answered at http://w: refused)")


def test_a_worker_of_another_evidence_topic_is_not_believed() -> None:
    dossier = published()

    def ask(url: str, task: str, timeout: float) -> Reply:
        return Reply(True, dossier, url, 1, topic="other.evidence")

    source = WorkerFirst("http://w", lambda: MemorySource(), "ev", ask=ask)
    assert source.get(sc.TASK) is None
    assert "it publishes to other.evidence" in source.describe()[0]
