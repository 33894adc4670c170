"""`govpipe trace` and its views: chains across tasks, terminal, JSON, HTML, hostile text."""

from __future__ import annotations

import argparse
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.cli import build_parser
from pipeline.commands.trace import colour_wanted, run
from pipeline.evidence import (
    EvidenceThresholds,
    add_alerts,
    add_events,
    new_state,
    next_record,
    observe_watermark,
)
from pipeline.evidence.codec import EvidenceCodec, record_key
from pipeline.evidence.source import MemorySource, Progress, Query, TopicScan, resolve_chain
from pipeline.evidence.views import render_trace
from pipeline.report.evidence import render_evidence_page
from pipeline.report.render import CSP
from tests.unit.evidence import _scenario as sc
from tests.unit.evidence._scenario import T0, S

TH = EvidenceThresholds.defaults()
HOSTILE = "<script>alert(1)</script>\x1b[31mRED\x1b]0;title\x07\"'&"


def record_of(
    events: list[dict[str, Any]],
    alerts: list[dict[str, Any]] = (),
    task: str = sc.TASK,
    wm: int = sc.LATE_REVOCATION,
) -> dict[str, Any]:  # type: ignore[assignment]
    state = new_state(task)
    add_events(state, events)
    add_alerts(state, alerts)
    observe_watermark(state, wm)
    record = next_record(state, TH)
    assert record is not None
    return record


def must_show() -> dict[str, Any]:
    return record_of([*sc.events(), sc.late_revocation()], [sc.sp02_alert()])


def child_task() -> dict[str, Any]:
    """A task agent B starts from A's delegation event in the must-show task."""
    task = "task-child"
    events = [
        dict(
            sc.event(
                "c-start", "task.started", T0 + 30 * S, identity_id=sc.B, parent_event_id="e-deleg"
            ),
            task_id=task,
        ),
        dict(
            sc.event(
                "c-act",
                "action",
                T0 + 31 * S,
                identity_id=sc.B,
                policy_decision="allow",
                outcome="success",
                resource="crm://accounts/9",
            ),
            task_id=task,
        ),
        dict(
            sc.event("c-done", "task.completed", T0 + 40 * S, identity_id=sc.B, outcome="success"),
            task_id=task,
        ),
    ]
    return record_of(events, task=task)


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["trace", *argv])


def run_text(source: Any, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run(args(*argv), source, out=out, now_ms=T0 + 3600 * S)
    return code, out.getvalue()


# ---- the chain -------------------------------------------------------------------------


def test_chain_follows_the_parent_event_to_the_task_started_for_the_human() -> None:
    parent, child = must_show(), child_task()
    assert child["parent"] == {"task_id": None, "event_id": "e-deleg"}
    chain = resolve_chain(MemorySource([parent, child]), child)
    assert chain["complete"] is True and chain["human"] == sc.HUMAN
    assert [link["task_id"] for link in chain["links"]] == [sc.TASK, "task-child"]
    assert chain["links"][0]["via"]["delegate"] == sc.B
    assert chain["links"][0]["via"]["scopes"] == ["crm.read"]


def test_chain_says_where_it_breaks() -> None:
    child = child_task()
    chain = resolve_chain(MemorySource([child]), child)
    assert chain["complete"] is False and chain["broken"] == "parent_not_found"
    assert chain["missing_parent"] == {"task_id": None, "event_id": "e-deleg"}
    a = dict(child, task_id="loop-a", parent={"task_id": "loop-b", "event_id": None})
    b = dict(child, task_id="loop-b", parent={"task_id": "loop-a", "event_id": None})
    assert resolve_chain(MemorySource([a, b]), a)["broken"] == "loop"


def test_the_latest_revision_wins() -> None:
    first = must_show()
    older = dict(first, revision=0, outcome="failure")
    newer = dict(first, revision=2)
    assert MemorySource([newer, older]).get(sc.TASK) == newer


# ---- the command against a source --------------------------------------------------------


def test_trace_task_json_is_the_dossier_and_the_chain() -> None:
    source = MemorySource([must_show(), child_task()])
    code, text = run_text(source, "task", "task-child", "--json")
    assert code == 0
    doc = orjson.loads(text)
    assert doc["query"] == {"task_id": "task-child"}
    (only,) = doc["tasks"]
    assert only["dossier"] == child_task()
    assert only["chain"]["human"] == sc.HUMAN
    # stable for tools: keys sorted, the same bytes twice
    assert text == run_text(source, "task", "task-child", "--json")[1]
    assert list(doc) == sorted(doc)


def test_trace_task_text_shows_a_chain_across_tasks() -> None:
    code, text = run_text(MemorySource([must_show(), child_task()]), "task", "task-child")
    assert code == 0
    chain = text.split("\nchain\n")[1].split("\n  initiator")[0].splitlines()
    assert chain == [
        f"  {sc.HUMAN} (human principal)",
        f"   └─ task {sc.TASK}: started by agent-a (ai_agent, autonomous) for {sc.HUMAN}",
        "      ├─ agent-a → agent-b [crm.read]  ⇒ the task below",
        f"      └─ task task-child: started by agent-b (ai_agent, assistant) for {sc.HUMAN}",
    ]


def test_trace_task_text_shows_the_chain_and_verdicts() -> None:
    code, text = run_text(MemorySource([must_show()]), "task", sc.TASK)
    assert code == 0
    assert "\x1b[" not in text  # not a terminal: no colour
    assert f"{sc.HUMAN} (human principal)" in text
    assert "agent-a → agent-b [crm.read]" in text
    assert "✘ safe" in text and "✔ authorised" in text and "✘ revoked on completion" in text
    assert "NOT revoked within grace" in text
    assert "delegates may not delete records" in text
    assert "SP-02" in text


def test_missing_task_exits_1_with_a_line() -> None:
    code, text = run_text(MemorySource(), "task", "nope\x1b[2J")
    assert code == 1 and text == "no dossier for task id nope\\x1b[2J in the evidence\n"


def test_trace_alert_and_approval_find_their_tasks() -> None:
    source = MemorySource([must_show(), child_task()])
    code, text = run_text(source, "alert", sc.SP02_ALERT_ID, "--json")
    assert code == 0
    assert [t["dossier"]["task_id"] for t in orjson.loads(text)["tasks"]] == [sc.TASK]
    code, text = run_text(source, "approval", sc.APPROVAL)
    assert code == 0 and f"task {sc.TASK}" in text
    assert run_text(source, "alert", "unknown")[0] == 1


def test_trace_identity_lists_tasks_newest_first_since() -> None:
    source = MemorySource([must_show(), child_task()])
    code, text = run_text(source, "identity", sc.B)
    assert code == 0
    lines = text.splitlines()
    assert "2 tasks" in lines[0]
    assert "task-child" in lines[1] and sc.TASK in lines[2]
    code, text = run_text(source, "identity", sc.B, "--since", str(T0 + 20 * S), "--json")
    assert [t["dossier"]["task_id"] for t in orjson.loads(text)["tasks"]] == ["task-child"]
    assert source.search(Query(identity_id=sc.A)) == [must_show()]


def test_colour_only_on_a_terminal_without_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert colour_wanted(Tty(), {}) is True
    assert colour_wanted(Tty(), {"NO_COLOR": "1"}) is False
    assert colour_wanted(io.StringIO(), {}) is False
    coloured = render_trace({"dossier": must_show(), "chain": {}}, colour=True)
    assert "\x1b[32m✔ succeeded" in coloured and "\x1b[1;31m✘ safe" in coloured


# ---- hostile text ------------------------------------------------------------------------


def hostile_record() -> dict[str, Any]:
    events = sc.events()
    for e in events:
        for field in ("policy_reason", "resource", "justification", "approver", "platform"):
            if e.get(field):
                e[field] = HOSTILE
        if e["event_id"] == "e-deleg":
            e["scopes"] = [HOSTILE]
    alert = dict(
        sc.sp02_alert(), detector=HOSTILE, frameworks=[{"framework": HOSTILE, "control": HOSTILE}]
    )
    record = record_of(events, [alert])
    record["task_id"] = HOSTILE
    record["initiator"]["team"] = HOSTILE
    return record


def test_terminal_view_escapes_control_characters() -> None:
    record = hostile_record()
    text = render_trace({"dossier": record, "chain": resolve_chain(MemorySource([record]), record)})
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[31mRED" in text


def test_json_keeps_values_exact() -> None:
    record = hostile_record()
    code, text = run_text(MemorySource([record]), "task", HOSTILE, "--json")
    assert code == 0
    assert orjson.loads(text)["tasks"][0]["dossier"] == record


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs


def test_html_page_escapes_everything_and_has_no_scripts_or_urls(tmp_path: Path) -> None:
    record = hostile_record()
    out = tmp_path / "evidence.html"
    code, _ = run_text(MemorySource([record]), "task", HOSTILE, "--html", str(out))
    assert code == 0
    page = out.read_text("utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert CSP in page
    parsed = _Collect()
    parsed.feed(page)
    assert "script" not in parsed.tags and "a" not in parsed.tags and "img" not in parsed.tags
    assert not any(name.startswith("on") for name, _ in parsed.attrs)
    assert not re.search(r"(?i)(href|src)\s*=", page)
    assert "svg" in parsed.tags  # the credential timeline


def test_html_page_of_a_clean_task() -> None:
    clean = record_of(sc.clean_events(), task="task-clean")
    page = render_evidence_page({"dossier": clean, "chain": {}}, generated_at_ms=T0)
    assert page.count('class="v yes"') == 7 and 'class="v no"' not in page


# ---- the topic scan ----------------------------------------------------------------------


class _Msg:
    def __init__(self, key: bytes | None, value: bytes | None) -> None:
        self.key, self.value = key, value


def test_topic_scan_keeps_the_latest_revision_skips_garbage_and_honours_tombstones() -> None:
    codec = EvidenceCodec()
    first = must_show()
    later = dict(first, revision=first["revision"] + 1)
    child = child_task()
    msgs = [
        _Msg(record_key(later), codec.encode(later)),
        _Msg(record_key(first), codec.encode(first)),  # older revision read later
        _Msg(b"x", b"\x00garbage"),
        _Msg(record_key(child), codec.encode(child)),
        _Msg(record_key(child), None),  # tombstone
    ]
    scan = TopicScan(msgs, codec)
    assert scan.get(sc.TASK) == later
    assert scan.get("task-child") is None
    assert (scan.records, scan.skipped) == (5, 1)


def test_progress_only_for_long_reads() -> None:
    ticks = iter([0.0, 0.5, 1.5, 1.7, 3.0, 3.1])
    stream = io.StringIO()
    progress = Progress(stream, clock=lambda: next(ticks))
    progress(10, 1)  # 0.5 s: nothing
    progress(20, 2)  # 1.5 s: shown
    progress(30, 3)  # 1.7 s: throttled
    progress(40, 4)  # 3.0 s: shown
    progress(50, 5, done=True)
    assert stream.getvalue().splitlines() == [
        "reading evidence: 20 records, 2 tasks…",
        "reading evidence: 40 records, 4 tasks…",
        "read 50 records, 5 tasks",
    ]


@pytest.mark.parametrize("what", ["task", "alert", "identity", "approval"])
def test_the_cli_knows_every_trace_command(what: str) -> None:
    parsed = args(what, "x")
    assert parsed.trace_what == what and callable(parsed.handler)


def test_html_page_passes_the_report_page_checks() -> None:
    from tests.unit.test_report_render import assert_no_external_resources, check_html

    for record in (must_show(), hostile_record(), child_task()):
        page = render_evidence_page({"dossier": record, "chain": {}}, generated_at_ms=T0)
        checker = check_html(page)  # balanced tags, doctype
        assert_no_external_resources(page, checker)
