"""``govpipe trace`` output: a readable terminal view and stable JSON. Pure functions.

Everything shown comes from a topic anyone with write access can fill, so every
string goes through ``tailview.clean`` (control characters and terminal escapes are
shown escaped, lengths bounded). Colour (green/red verdicts) is the caller's choice:
none when stdout is not a terminal or ``NO_COLOR`` is set. Times are ISO-8601 UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from pipeline.tailview import clean, clock

Record = Mapping[str, Any]

GREEN: Final = "\x1b[32m"
RED: Final = "\x1b[1;31m"
DIM: Final = "\x1b[2m"
BOLD: Final = "\x1b[1m"
RESET: Final = "\x1b[0m"

#: Verdicts in the order people read them, with their labels.
VERDICTS: Final = (
    ("succeeded", "succeeded"),
    ("safe", "safe"),
    ("authorised", "authorised"),
    ("attributable", "attributable"),
    ("ephemeral", "ephemeral"),
    ("revoked_on_completion", "revoked on completion"),
    ("approved_meaningfully", "approved meaningfully"),
)
TEXT_WIDTH: Final = 120


def to_json(payload: Any) -> str:
    """Stable JSON for tools: sorted keys, two-space indent, epoch-ms times."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()


def trace_payload(query: Mapping[str, Any], traces: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``--json`` document of every trace command: the question and the tasks
    answering it, each ``{"dossier": …, "chain": …}``."""
    return {"query": dict(query), "tasks": [dict(t) for t in traces]}


class Painter:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if self.colour else text

    def verdict(self, value: bool | None, label: str, pending: bool = False) -> str:
        if value is True:
            return self(f"✔ {label}", GREEN)
        if value is False:
            return self(f"✘ {label}", RED)
        return self(f"· {label} ({'pending' if pending else 'n/a'})", DIM)

    def flag(self, value: bool | None, yes: str, no: str) -> str:
        if value is True:
            return self(yes, GREEN)
        if value is False:
            return self(no, RED)
        return self("?", DIM)


def _s(value: Any, limit: int = 80) -> str:
    return "-" if value is None or value == "" else clean(value, limit)


def _t(ms: Any) -> str:
    return "-" if ms is None else clock(ms)


def _secs(value: Any) -> str:
    if value is None:
        return "-"
    seconds = float(value)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _more(n: Any) -> str:
    return f" (+{int(n)} more)" if n else ""


def _counts(counts: Mapping[str, Any]) -> str:
    return " · ".join(f"{_s(k, 40)} {int(v)}" for k, v in counts.items()) or "-"


def _identity_line(ident: Mapping[str, Any]) -> str:
    parts = [_s(ident.get("kind"), 40)]
    if ident.get("owner"):
        parts.append(f"owner {_s(ident.get('owner'))}")
    if ident.get("team"):
        parts.append(f"team {_s(ident.get('team'))}")
    if ident.get("environment"):
        parts.append(f"env {_s(ident.get('environment'), 40)}")
    if ident.get("risk_tier"):
        parts.append(f"risk {_s(ident.get('risk_tier'), 40)}")
    parts.append(f"mode {_s(ident.get('mode'), 40)}")
    if ident.get("known") is False:
        parts.append("NOT IN THE REGISTRY")
    return " · ".join(parts)


def render_chain(chain: Mapping[str, Any], dossier: Record, p: Painter) -> list[str]:
    lines = ["chain"]
    human = chain.get("human")
    lines.append(
        f"  {p(_s(human), BOLD)} (human principal)"
        if human
        else "  " + p("no human principal", RED)
    )
    depth = 1
    for link in chain.get("links") or []:
        pad = "   " * depth
        mode = _s(link.get("initiator_mode"), 40)
        lines.append(
            f"{pad}└─ task {_s(link.get('task_id'))}: started by {_s(link.get('initiator'))} "
            f"({_s(link.get('initiator_kind'), 40)}, {mode})"
            + (f" for {_s(link.get('principal'))}" if link.get("principal") else "")
        )
        via = link.get("via") or {}
        for d in link.get("delegations") or []:
            scopes = ", ".join(_s(s, 60) for s in d.get("scopes") or []) or "no scopes"
            onward = via and d.get("event_id") == via.get("event_id")
            lines.append(
                f"{pad}   ├─ {_s(d.get('delegator'))} → {_s(d.get('delegate'))} [{scopes}]"
                + ("  ⇒ the task below" if onward else "")
            )
        depth += 1
    if not chain.get("complete"):
        why = _s(chain.get("broken"), 40)
        missing = chain.get("missing_parent") or {}
        detail = ""
        if missing:
            detail = (
                f": parent task {_s(missing.get('task_id'))}, "
                f"event {_s(missing.get('event_id'))} not found"
            )
        lines.append("  " + p(f"chain incomplete ({why}){detail}", RED))
    initiator = dossier.get("initiator") or {}
    lines.append(f"  initiator {_s(initiator.get('identity_id'))}: {_identity_line(initiator)}")
    for actor in dossier.get("actors") or []:
        if actor.get("identity_id") == initiator.get("identity_id"):
            continue
        lines.append(
            f"  actor {_s(actor.get('identity_id'))}: {_identity_line(actor)}, "
            f"{int(actor.get('actions') or 0)} actions"
        )
    if dossier.get("actors_left_out"):
        lines.append(f"  (+{int(dossier['actors_left_out'])} more identities)")
    return lines


def render_trace(trace: Mapping[str, Any], *, colour: bool = False) -> str:
    """One task: header, chain, verdicts, credentials, approvals, actions, findings."""
    p = Painter(colour)
    d: Record = trace["dossier"]
    pending = set(d.get("pending") or [])
    out = [
        p(f"task {_s(d.get('task_id'))}", BOLD)
        + f"  {_s(d.get('platform'))}/{_s(d.get('environment'), 40)}"
        + f"  started {_t(d.get('started_at'))}  completed {_t(d.get('completed_at'))}"
        + f"  outcome {_s(d.get('outcome'), 20)}  (revision {int(d.get('revision') or 0)})"
    ]
    out += render_chain(trace.get("chain") or {}, d, p)

    verdicts = d.get("verdicts") or {}
    waiting = {
        "revoked_on_completion": bool(pending & {"revocation_grace", "task_completion"}),
        "approved_meaningfully": "approval_decision" in pending,
        "succeeded": "task_completion" in pending,
        "safe": "task_completion" in pending,
    }
    out.append("verdicts")
    out.append(
        "  "
        + "  ".join(
            p.verdict(verdicts.get(k), label, waiting.get(k, False)) for k, label in VERDICTS
        )
    )
    if pending:
        out.append("  waiting for: " + ", ".join(_s(x, 40) for x in sorted(pending)))

    out.append("credentials")
    for c in d.get("credentials") or []:
        out.append(
            f"  {_s(c.get('credential_id'))}  {_s(c.get('kind'), 40)}"
            f" via {_s(c.get('issued_via'), 40)}"
            f"  held by {_s(c.get('identity_id'))}  issued {_t(c.get('issued_at'))}"
            f"  expires {_t(c.get('expires_at'))}  lifetime {_secs(c.get('lifetime_seconds'))}"
            f"  revoked {_t(c.get('revoked_at'))}  {int(c.get('actions') or 0)} actions"
        )
        marks = [p.flag(c.get("ephemeral"), "ephemeral", "NOT ephemeral")]
        if c.get("issued_in_task"):
            marks.append(
                p.flag(
                    c.get("revoked_within_grace"),
                    "revoked within grace",
                    "NOT revoked within grace",
                )
            )
        else:
            marks.append("issued outside the task")
        scopes = ", ".join(_s(s, 60) for s in c.get("scopes") or [])
        out.append(
            "      "
            + "  ".join(marks)
            + (f"  scopes {scopes}{_more(c.get('scopes_left_out'))}" if scopes else "")
        )
    if not d.get("credentials"):
        out.append("  none")
    out.append(
        f"  {_more(d.get('credentials_left_out')).strip()}" if d.get("credentials_left_out") else ""
    )

    out.append("approvals")
    for a in d.get("approvals") or []:
        rs = ", ".join(_s(x, 20) for x in a.get("rs_detectors") or [])
        out.append(
            f"  {_s(a.get('approval_id'))}  {_s(a.get('decision'), 20)} by {_s(a.get('approver'))}"
            f"  risk {_s(a.get('risk'), 20)}  requested {_t(a.get('requested_at'))}"
            f"  viewed {_t(a.get('viewed_at'))}  decided {_t(a.get('decided_at'))}"
            f"  review {_secs(a.get('review_seconds'))}"
        )
        out.append(
            "      "
            + "  ".join(
                [
                    p.flag(a.get("context_seen"), "context seen", "context NOT seen"),
                    p.flag(
                        None if a.get("too_fast") is None else not a.get("too_fast"),
                        "review time ok",
                        "TOO FAST",
                    ),
                    p.flag(a.get("meaningful"), "meaningful", "NOT meaningful"),
                ]
            )
            + (f"  findings {rs}" if rs else "")
        )
    if not d.get("approvals"):
        out.append("  none")

    acts = d.get("actions") or {}
    out.append(
        f"actions  {int(acts.get('total') or 0)} total"
        + (
            f" ({int(acts.get('itemised') or 0)} itemised)"
            if acts.get("itemised") != acts.get("total")
            else ""
        )
    )
    out.append(f"  policy decision  {_counts(acts.get('by_decision') or {})}")
    out.append(f"  sensitivity      {_counts(acts.get('by_sensitivity') or {})}")
    out.append(f"  outcome          {_counts(acts.get('by_outcome') or {})}")
    dbe = int(acts.get("denied_but_executed") or 0)
    out.append(
        f"  {'denied but executed':<22}"
        + (
            p(f"{dbe}: " + ", ".join(_s(x) for x in acts.get("denied_but_executed_ids") or []), RED)
            + _more(acts.get("denied_but_executed_ids_left_out"))
            if dbe
            else p("none", GREEN)
        )
    )
    for name, key in (
        ("ran without an allow", "executed_without_allow"),
        ("unattributable", "unattributable"),
    ):
        n = int(acts.get(key) or 0)
        out.append(f"  {name:<22}{p(str(n), RED) if n else p('none', GREEN)}")
    out.append("  policies")
    for row in acts.get("policies") or []:
        reason = row.get("reason")
        out.append(
            f"    {int(row.get('actions') or 0)} x {_s(row.get('decision'), 10):<5}"
            f" {_s(row.get('policy_id'))}"
            + (f": {clean(reason, 200)!s}" if reason else ": (no reason given)")
        )
    if acts.get("policies_left_out"):
        out.append(f"    (+{int(acts['policies_left_out'])} more)")
    resources = ", ".join(_s(r, 120) for r in acts.get("resources") or [])
    out.append(f"  resources  {resources or '-'}{_more(acts.get('resources_left_out'))}")
    added = ", ".join(_s(s, 60) for s in acts.get("scopes_added_mid_task") or [])
    out.append(
        "  scopes added mid-task  "
        + (p(added, RED) if added else p("none", GREEN))
        + _more(acts.get("scopes_added_mid_task_left_out"))
    )
    for text in acts.get("justifications") or []:
        out.append(f"  justification  “{clean(text, 200)}”")
    if acts.get("justifications_left_out"):
        out.append(f"  (+{int(acts['justifications_left_out'])} more justifications)")

    out.append("findings")
    for f in d.get("findings") or []:
        out.append(
            f"  {p(_s(f.get('detector'), 20), RED)} {_s(f.get('severity'), 20)}"
            f"  {_s(f.get('alert_id'))}  first {_t(f.get('time'))}"
            f"  count {int(f.get('count') or 1)}"
            f"  {', '.join(_s(x, 60) for x in f.get('frameworks') or [])}"
        )
    if not d.get("findings"):
        out.append("  " + p("none", GREEN))
    elif d.get("findings_left_out"):
        out.append(f"  (+{int(d['findings_left_out'])} more)")
    return "\n".join(line for line in out if line) + "\n"


def render_identity(identity_id: str, dossiers: Sequence[Record], *, colour: bool = False) -> str:
    """An identity's tasks, newest first: one line each with its verdicts."""
    p = Painter(colour)
    if not dossiers:
        return f"no task of {clean(identity_id)} in the evidence\n"
    lines = [p(f"identity {clean(identity_id)}: {len(dossiers)} tasks", BOLD)]
    for d in dossiers:
        verdicts = d.get("verdicts") or {}
        marks = " ".join(
            p("✔", GREEN)
            if verdicts.get(k) is True
            else p("✘", RED)
            if verdicts.get(k) is False
            else p("·", DIM)
            for k, _ in VERDICTS
        )
        lines.append(
            f"  {_t(d.get('started_at'))}  {_s(d.get('task_id'))}  {_s(d.get('outcome'), 20)}"
            f"  {marks}  {len(d.get('findings') or [])} findings"
        )
    lines.append("  verdicts: " + ", ".join(label for _, label in VERDICTS))
    return "\n".join(lines) + "\n"
