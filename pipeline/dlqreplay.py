"""Choosing and describing dead letters to replay (``govpipe dlq replay``); pure functions.

A dead letter (docs/contracts/dlq.md) holds the original bytes and key of a record that could
not be processed, with the reason in headers. Replay sends those bytes and that key,
unchanged, back to the input topic once the producer or govpipe is fixed, with one
header, ``replayed.from: <dlq topic>@<partition>:<offset>``, naming the dead letter.

Records marked ``redacted: true`` are skipped by default: a secret-like value was
replaced before they were written, so their bytes are not what the producer sent
(``--include-redacted`` replays them as they are). Nothing here prints a payload;
``preview`` is the only view of one, short and escaped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from pipeline.tailview import Headers, clean, header_map, preview

REPLAYED_FROM: Final = "replayed.from"
NO_CODE: Final = "(none)"
PREVIEW_CHARS: Final = 80

Decision = Literal["replay", "other_code", "redacted"]


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which dead letters to replay. ``codes`` None = every code."""

    codes: frozenset[str] | None = None
    include_redacted: bool = False


def parse_codes(values: Iterable[str] | None) -> frozenset[str] | None:
    """``--code a --code b,c`` -> {a, b, c}; nothing given -> None (every code)."""
    codes = {c.strip() for v in values or () for c in v.split(",") if c.strip()}
    return frozenset(codes) or None


def error_code(headers: Mapping[str, str]) -> str:
    return headers.get("error.code") or NO_CODE


def is_redacted(headers: Mapping[str, str]) -> bool:
    return headers.get("redacted", "").strip().lower() == "true"


def decide(headers: Mapping[str, str], rule: ReplayFilter) -> Decision:
    """Whether one dead letter (its headers, as text) is replayed, and if not why."""
    if rule.codes is not None and error_code(headers) not in rule.codes:
        return "other_code"
    if is_redacted(headers) and not rule.include_redacted:
        return "redacted"
    return "replay"


def replayed_from(topic: str, partition: int, offset: int) -> str:
    return f"{topic}@{partition}:{offset}"


def replay_headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Headers of the replayed record: only where it came from (the error headers stay
    in the DLQ; a record that fails again gets fresh ones)."""
    return [(REPLAYED_FROM, replayed_from(topic, partition, offset).encode())]


@dataclass(slots=True)
class ReplayCounts:
    replay: Counter[str] = field(default_factory=Counter)
    other_code: Counter[str] = field(default_factory=Counter)
    redacted: Counter[str] = field(default_factory=Counter)
    read: int = 0

    def add(self, decision: Decision, code: str) -> None:
        self.read += 1
        {"replay": self.replay, "other_code": self.other_code, "redacted": self.redacted}[decision][
            code
        ] += 1

    @property
    def replayed(self) -> int:
        return sum(self.replay.values())


def _by_code(counts: Counter[str]) -> str:
    return ", ".join(f"{clean(c, 40)} {n}" for c, n in sorted(counts.items(), key=_order))


def _order(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def summary_lines(
    counts: ReplayCounts,
    *,
    source: str,
    target: str,
    dry_run: bool,
    limited: bool = False,
    truncated: bool = False,
) -> list[str]:
    """What ``dlq replay`` says at the end: counts by code, never payloads."""
    verb = "would replay" if dry_run else "replayed"
    lines = [
        f"{verb} {counts.replayed} of {counts.read} dead letter(s) read from "
        f"{clean(source, 120)} to {clean(target, 120)}"
    ]
    width = max((len(clean(c, 40)) for c in counts.replay), default=0)
    for code, n in sorted(counts.replay.items(), key=_order):
        lines.append(f"  {clean(code, 40):<{width}}  {n}")
    skipped_code = sum(counts.other_code.values())
    if skipped_code:
        lines.append(f"skipped {skipped_code} with other codes ({_by_code(counts.other_code)})")
    skipped_redacted = sum(counts.redacted.values())
    if skipped_redacted:
        lines.append(
            f"skipped {skipped_redacted} redacted ({_by_code(counts.redacted)}): their bytes "
            "were altered when a secret-like value was removed, so they are not what the "
            "producer sent; --include-redacted replays them anyway"
        )
    if limited:
        lines.append("stopped at --limit: more dead letters may match")
    if truncated:
        lines.append("stopped at --max-seconds: the DLQ was not read to the end")
    return lines


def show_line(
    partition: int, offset: int, key: bytes | None, value: bytes | None, headers: Headers
) -> str:
    """``--show``: where a dead letter is, its code, and a short escaped preview."""
    h = header_map(headers)
    flags = " [redacted]" if is_redacted(h) else ""
    return (
        f"p{partition}@{offset} {clean(error_code(h), 40)}{flags} "
        f"key={preview(key, 40)} value={preview(value, PREVIEW_CHARS)}"
    )
