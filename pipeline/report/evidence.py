"""One task's evidence page (``govpipe trace task ID --html FILE``): self-contained HTML.

Same rules as the report (``render.py``): inline CSS and SVG, no scripts, no URLs (a
page ``govpipe report`` writes has one relative link back to it), a
``default-src 'none'`` CSP, and every value from the topic through ``esc``. Pure: the
generation time is passed in. The SVG draws each credential's life against the
task's completion and revocation deadline, so "revoked late" is visible at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pipeline.evidence.views import VERDICTS
from pipeline.report.charts import esc
from pipeline.report.render import CSP, CSS
from pipeline.tailview import clock

Record = Mapping[str, Any]

EVIDENCE_CSS: Final = """
.verdicts { display: flex; flex-wrap: wrap; gap: 8px; margin: 4px 0 0; }
.v { padding: 4px 12px; border-radius: 999px; font-size: 13.5px; font-weight: 600; }
.v.yes { background: #e3f4ec; color: #1f7a55; } .v.no { background: #fbe5e3; color: #b0322a; }
.v.na { background: #eef0f4; color: #667085; font-weight: 400; }
ol.chain { list-style: none; margin: 6px 0 0; padding: 0; }
ol.chain li { margin: 0 0 6px; padding-left: 18px; border-left: 2px solid #d6dbe4; }
ol.chain li.human { border-left-color: #2f5fd0; font-weight: 600; }
ol.chain .deleg { color: #667085; font-size: 13px; margin-left: 12px; }
.broken { color: #b0322a; font-weight: 600; }
td.yes { color: #1f7a55; font-weight: 600; } td.no { color: #b0322a; font-weight: 600; }
td.na { color: #667085; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 14px; }
.kv dt { color: #667085; } .kv dd { margin: 0; }
.quote { font-style: italic; overflow-wrap: anywhere; }
section { overflow-x: auto; }
section th, section td { padding-left: 7px; padding-right: 7px; }
section td.id { white-space: nowrap; overflow-wrap: normal; }
"""

_CLASS = {True: "yes", False: "no", None: "na"}


def _t(ms: Any) -> str:
    return "\u2013" if ms is None else esc(clock(ms))


def _v(value: Any) -> str:
    return "\u2013" if value is None or value == "" else esc(value)


def _flag(value: bool | None, yes: str = "yes", no: str = "no") -> str:
    text = {True: yes, False: no, None: "\u2013"}[value]
    return f'<td class="{_CLASS[value]}">{esc(text)}</td>'


def _more(n: Any, what: str = "more") -> str:
    return f' <span class="det">(+{int(n)} {esc(what)})</span>' if n else ""


def _verdicts(dossier: Record) -> str:
    verdicts = dossier.get("verdicts") or {}
    pills = []
    for key, label in VERDICTS:
        value = verdicts.get(key)
        mark = {True: "\u2714", False: "\u2718", None: "\u00b7"}[value]
        pills.append(f'<span class="v {_CLASS[value]}">{mark} {esc(label)}</span>')
    pending = dossier.get("pending") or []
    note = (
        f'<p class="det">waiting for: {esc(", ".join(str(p) for p in pending))}</p>'
        if pending
        else ""
    )
    return f'<section><h2>Verdicts</h2><div class="verdicts">{"".join(pills)}</div>{note}</section>'


def _chain(chain: Record, dossier: Record) -> str:
    items = []
    human = chain.get("human")
    if human:
        items.append(
            f'<li class="human">{esc(human)} <span class="det">human principal</span></li>'
        )
    else:
        items.append('<li class="broken">no human principal</li>')
    for link in chain.get("links") or []:
        delegs = "".join(
            f'<div class="deleg">{_v(d.get("delegator"))} \u2192 {_v(d.get("delegate"))} '
            f"[{esc(', '.join(str(s) for s in d.get('scopes') or []))}]</div>"
            for d in link.get("delegations") or []
        )
        via = link.get("via")
        onward = (
            f'<div class="deleg">delegated onward: {_v(via.get("delegator"))} \u2192 '
            f"{_v(via.get('delegate'))}</div>"
            if via
            else ""
        )
        items.append(
            f'<li>task <span class="id">{_v(link.get("task_id"))}</span> started by '
            f'<span class="id">{_v(link.get("initiator"))}</span> '
            f'<span class="det">({_v(link.get("initiator_kind"))}, mode '
            f"{_v(link.get('initiator_mode'))})</span>{delegs}{onward}</li>"
        )
    broken = ""
    if not chain.get("complete"):
        broken = f'<p class="broken">chain incomplete: {_v(chain.get("broken"))}</p>'
    ident = dossier.get("initiator") or {}
    facts = "".join(
        f"<dt>{esc(k)}</dt><dd>{_v(ident.get(k))}</dd>"
        for k in ("identity_id", "kind", "owner", "team", "environment", "risk_tier", "mode")
    )
    known = "" if ident.get("known") else '<p class="broken">initiator not in the registry</p>'
    return (
        "<section><h2>Who acted, for whom</h2>"
        f'<ol class="chain">{"".join(items)}</ol>{broken}'
        f'<h2 style="margin-top:14px">Initiating identity</h2><dl class="kv">{facts}</dl>{known}'
        "</section>"
    )


def credential_timeline(dossier: Record, width: int = 1000) -> str:
    """Inline SVG: one bar per credential from issuance to revocation (or expiry), the
    completion and the end of the revocation grace marked."""
    creds = [c for c in dossier.get("credentials") or [] if c.get("issued_at") is not None]
    completed = dossier.get("completed_at")
    if not creds:
        return ""
    ends = [c.get("revoked_at") or c.get("expires_at") or c["issued_at"] for c in creds]
    points = [c["issued_at"] for c in creds] + [int(e) for e in ends]
    if completed is not None:
        points.append(int(completed))
    lo, hi = min(points), max(points)
    span = max(1, hi - lo)
    left, right, row = 170, 20, 26
    height = 30 + row * len(creds)

    def x(t: int) -> float:
        return float(left + (width - left - right) * (t - lo) / span)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="credential lifetimes">'
    ]
    if completed is not None:
        cx = x(int(completed))
        parts.append(
            f'<line x1="{cx:.1f}" y1="4" x2="{cx:.1f}" y2="{height - 4}" stroke="#2f5fd0" '
            'stroke-dasharray="4 3"/>'
            f'<text x="{cx + 4:.1f}" y="14" font-size="11" fill="#2f5fd0">completed</text>'
        )
    for i, (c, end) in enumerate(zip(creds, ends, strict=True)):
        y = 24 + i * row
        good = c.get("revoked_within_grace")
        colour = {True: "#3f9c78", False: "#d0453b", None: "#98a2b3"}[good]
        x0, x1 = x(c["issued_at"]), x(int(end))
        parts.append(
            f'<text x="4" y="{y + 12}" font-size="12" fill="#1d2433">'
            f"{esc(str(c.get('credential_id'))[:24])}</text>"
            f'<rect x="{x0:.1f}" y="{y}" width="{max(2.0, x1 - x0):.1f}" height="14" rx="3" '
            f'fill="{colour}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _credentials(dossier: Record) -> str:
    rows = []
    for c in dossier.get("credentials") or []:
        within = c.get("revoked_within_grace") if c.get("issued_in_task") else None
        rows.append(
            f'<tr><td class="id">{_v(c.get("credential_id"))}</td>'
            f'<td class="id">{_v(c.get("identity_id"))}</td>'
            f"<td>{_v(c.get('kind'))} / {_v(c.get('issued_via'))}</td>"
            f"<td>{_t(c.get('issued_at'))}</td><td>{_t(c.get('expires_at'))}</td>"
            f"<td>{_t(c.get('revoked_at'))}</td>"
            f'<td class="n">{_v(c.get("lifetime_seconds"))}</td>'
            f"{_flag(c.get('ephemeral'))}{_flag(within)}"
            f'<td class="n">{int(c.get("actions") or 0)}</td>'
            f"<td>{esc(', '.join(str(s) for s in c.get('scopes') or []))}"
            f"{_more(c.get('scopes_left_out'))}</td></tr>"
        )
    if not rows:
        return '<section><h2>Credentials</h2><p class="empty">none</p></section>'
    return (
        "<section><h2>Credentials</h2>"
        + credential_timeline(dossier)
        + "<table><tr><th>id</th><th>held by</th><th>kind / via</th><th>issued</th>"
        "<th>expires</th><th>revoked</th><th class=n>lifetime s</th><th>ephemeral</th>"
        "<th>revoked in grace</th><th class=n>actions</th><th>scopes</th></tr>"
        + "".join(rows)
        + "</table>"
        + _more(dossier.get("credentials_left_out"), "more credentials")
        + "</section>"
    )


def _approvals(dossier: Record) -> str:
    rows = []
    for a in dossier.get("approvals") or []:
        too_fast = a.get("too_fast")
        rows.append(
            f'<tr><td class="id">{_v(a.get("approval_id"))}</td><td>{_v(a.get("approver"))}</td>'
            f"<td>{_v(a.get('decision'))}</td><td>{_v(a.get('risk'))}</td>"
            f"<td>{_t(a.get('requested_at'))}</td><td>{_t(a.get('viewed_at'))}</td>"
            f"<td>{_t(a.get('decided_at'))}</td>"
            f'<td class="n">{_v(a.get("review_seconds"))}</td>'
            f"{_flag(a.get('context_seen'))}"
            f"{_flag(None if too_fast is None else not too_fast, 'ok', 'too fast')}"
            f"<td>{esc(', '.join(str(x) for x in a.get('rs_detectors') or []))}</td>"
            f"{_flag(a.get('meaningful'))}</tr>"
        )
    if not rows:
        return '<section><h2>Approvals</h2><p class="empty">none</p></section>'
    return (
        "<section><h2>Approvals</h2><table><tr><th>id</th><th>approver</th><th>decision</th>"
        "<th>risk</th><th>requested</th><th>viewed</th><th>decided</th>"
        "<th class=n>review s</th><th>context seen</th><th>review time</th><th>findings</th>"
        "<th>meaningful</th></tr>" + "".join(rows) + "</table></section>"
    )


def _counts(counts: Mapping[str, Any]) -> str:
    return esc(" \u00b7 ".join(f"{k} {v}" for k, v in counts.items())) or "\u2013"


def _actions(dossier: Record) -> str:
    acts = dossier.get("actions") or {}
    policies = "".join(
        f'<tr><td class="n">{int(p.get("actions") or 0)}</td><td>{_v(p.get("decision"))}</td>'
        f'<td class="id">{_v(p.get("policy_id"))}</td>'
        f'<td class="quote">{_v(p.get("reason"))}</td></tr>'
        for p in acts.get("policies") or []
    )
    facts = [
        ("total", f"{int(acts.get('total') or 0)} ({int(acts.get('itemised') or 0)} itemised)"),
        ("policy decision", _counts(acts.get("by_decision") or {})),
        ("sensitivity", _counts(acts.get("by_sensitivity") or {})),
        ("outcome", _counts(acts.get("by_outcome") or {})),
        (
            "denied but executed",
            f"{int(acts.get('denied_but_executed') or 0)} "
            + esc(", ".join(str(x) for x in acts.get("denied_but_executed_ids") or []))
            + _more(acts.get("denied_but_executed_ids_left_out")),
        ),
        ("ran without an allow", str(int(acts.get("executed_without_allow") or 0))),
        ("unattributable", str(int(acts.get("unattributable") or 0))),
        (
            "resources",
            (esc(", ".join(str(r) for r in acts.get("resources") or [])) or "\u2013")
            + _more(acts.get("resources_left_out")),
        ),
        (
            "scopes added mid-task",
            esc(", ".join(str(s) for s in acts.get("scopes_added_mid_task") or [])) or "none",
        ),
    ]
    kv = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in facts)
    justifications = "".join(
        f'<p class="quote">\u201c{esc(j)}\u201d</p>' for j in acts.get("justifications") or []
    )
    return (
        f'<section><h2>Actions</h2><dl class="kv">{kv}</dl>'
        + (
            "<h2 style='margin-top:14px'>Policy decisions and reasons</h2><table><tr>"
            "<th class=n>actions</th><th>decision</th><th>policy</th><th>reason</th></tr>"
            + policies
            + "</table>"
            + _more(acts.get("policies_left_out"), "more policy rows")
            if policies
            else ""
        )
        + (
            "<h2 style='margin-top:14px'>Justifications given</h2>" + justifications
            if justifications
            else ""
        )
        + "</section>"
    )


def _findings(dossier: Record) -> str:
    rows = "".join(
        f"<tr><td><b>{_v(f.get('detector'))}</b></td><td>{_v(f.get('severity'))}</td>"
        f'<td class="id">{_v(f.get("alert_id"))}</td><td>{_t(f.get("time"))}</td>'
        f'<td class="n">{int(f.get("count") or 1)}</td>'
        f"<td>{esc(', '.join(str(x) for x in f.get('frameworks') or []))}</td></tr>"
        for f in dossier.get("findings") or []
    )
    if not rows:
        return '<section><h2>Findings</h2><p class="empty">none</p></section>'
    return (
        "<section><h2>Findings</h2><table><tr><th>detector</th><th>severity</th><th>alert</th>"
        "<th>first seen</th><th class=n>count</th><th>framework controls</th></tr>"
        + rows
        + "</table>"
        + _more(dossier.get("findings_left_out"), "more findings")
        + "</section>"
    )


def render_evidence_page(
    trace: Record,
    *,
    generated_at_ms: int,
    sources: Sequence[str] = (),
    back_href: str | None = None,
) -> str:
    """The whole page for one ``{"dossier": …, "chain": …}``. ``back_href``: a relative
    link back to the report that wrote the page (``govpipe report``); none otherwise."""
    d: Record = trace["dossier"]
    back = (
        f'<p class="sub"><a href="{esc(back_href)}">\u2190 back to the report</a></p>'
        if back_href
        else ""
    )
    header = (
        '<header class="top"><div>'
        + back
        + f'<h1>Evidence: task <span class="id">{_v(d.get("task_id"))}</span></h1>'
        f'<p class="sub">{_v(d.get("platform"))} / {_v(d.get("environment"))} \u00b7 '
        f"started {_t(d.get('started_at'))} \u00b7 completed {_t(d.get('completed_at'))} "
        f"\u00b7 outcome {_v(d.get('outcome'))}</p></div>"
        f'<div class="meta">revision <b>{int(d.get("revision") or 0)}</b><br>'
        f"generated {esc(clock(generated_at_ms))}</div></header>"
    )
    body = "".join(
        (
            header,
            _verdicts(d),
            _chain(trace.get("chain") or {}, d),
            _credentials(d),
            _approvals(d),
            _actions(d),
            _findings(d),
            "<footer>From "
            + esc(", ".join(sources) or "governance.evidence.v1")
            + (
                ". Generated by govpipe report.</footer>"
                if back_href
                else ". Generated by govpipe trace.</footer>"
            ),
        )
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>govpipe \u00b7 evidence \u00b7 {_v(d.get('task_id'))}</title>"
        f"<style>{CSS}{EVIDENCE_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
