"""`govpipe detectors list [--markdown]`: what each detector looks for, and its defaults.

Detectors that are not built in (``govpipe.detectors`` entry points, rule files in
``GOVPIPE_RULES_DIR``) are listed with them, each with a ``source:`` line saying where
it was loaded from.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.detectors.base import DAY, HOUR, MINUTE, SECOND, DetectorSpec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("detectors", help="list the detections and their defaults")
    sub = parser.add_subparsers(dest="detectors_command", required=True)
    listing = sub.add_parser("list", help="id, title, severity, subject, window, thresholds")
    listing.add_argument("--markdown", action="store_true", help="a Markdown table (README)")
    listing.set_defaults(handler=_list)


def format_window(ms: int | None) -> str:
    if ms is None:
        return "-"
    for unit, size in (("d", DAY), ("h", HOUR), ("min", MINUTE), ("s", SECOND)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def rows(specs: list[DetectorSpec]) -> list[list[str]]:
    out = []
    for spec in specs:
        thresholds = " ".join(f"{k}={_value(v)}" for k, v in spec.thresholds.items())
        grouped: dict[str, list[str]] = {}
        for f in spec.frameworks:
            grouped.setdefault(f.framework, []).append(f.control)
        frameworks = "; ".join(f"{name} {', '.join(c)}" for name, c in grouped.items())
        out.append(
            [
                spec.id,
                spec.title,
                spec.severity,
                spec.subject,
                format_window(spec.window_ms),
                thresholds or "-",
                frameworks,
            ]
        )
    return out


HEADER = ["id", "title", "severity", "subject", "window", "default thresholds", "frameworks"]


def render_markdown(specs: list[DetectorSpec]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows(specs)]
    return "\n".join(lines)


def render_text(specs: list[DetectorSpec], sources: dict[str, str] | None = None) -> str:
    """The listing; ``sources``: detector id -> where a non-built-in one came from."""
    table = [HEADER[:5], *(r[:5] for r in rows(specs))]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    lines = []
    for spec, row in zip([None, *specs], table, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if spec is not None:
            detail = rows([spec])[0]
            lines.append(f"    thresholds: {detail[5]}")
            lines.append(f"    frameworks: {detail[6] or '-'}")
            if sources and spec.id in sources:
                lines.append(f"    source: {sources[spec.id]}")
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    from pipeline.detectors.registry import describe, entries

    loaded = entries()
    specs = [e.detector.spec for e in loaded]
    sources = {e.id: describe(e) for e in loaded if e.origin != "built-in"}
    print(render_markdown(specs) if args.markdown else render_text(specs, sources))
    return 0
