"""Running events through one detection in-process: `govpipe rules test` and rule tests.

A rule is a rule file (path), a registered detector id, or a ``Detector``. Events are
input-contract events (docs/contracts/input.md), as JSON lines or dicts, validated and
redacted as stage 1 does. Enrichment is given inline: an event may carry

* ``identity``: the registry's view of its identity (``kind``, ``owner``, ``team``,
  ``environment``, ``risk_tier``, ``allowed_scopes``, ``status``, ``mode``,
  ``owner_status``; ``known`` defaults to true, missing fields are null, except a
  known identity's ``mode``, which is ``autonomous`` as in the worker);
* ``credential``: the view of its credential (``identity_id``, ``kind``, ``issued_via``,
  ``scopes``, ``issued_at``, ``expires_at``, ``rotated_at``, ``revoked_at``,
  ``last_used_at``, ``task_id``; ``lifetime_ms`` is computed when not given);

``null`` for "no enrichment"; left out, an event with an ``identity_id`` /
``credential_id`` gets the view of one the registry does not know (``known: false``),
as the worker would. The events then go one by one, in file order, through the real
``DetectionEngine`` with the policy applied, the watermark following the newest event
time minus the policy's lateness as in stage 2, and at the end it moves to ``until``
(default: the end of time) so windowed and absence rules fire.

Expectations (``--expect``) are JSON lines, one expected finding each, with any of
``detector``, ``subject``, ``severity``, ``time``, ``event_ids`` (compared as a set)
and ``facts`` (only the keys given are compared). Every expectation must match its
own finding and every finding an expectation; an empty file expects no finding.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.detectors.base import Detector, Event, Finding, State
from pipeline.detectors.policy import DEFAULT_POLICY, Policy, parse_policy
from pipeline.errors import ConfigError, RejectedInput

#: Timer firings per run before a rule is judged to re-arm its timer forever.
MAX_TIMER_FIRINGS = 1_000_000
EXPECTATION_FIELDS = ("detector", "subject", "severity", "time", "event_ids", "facts")


class RuleTestError(ConfigError):
    """A rule, events file, expectation file or policy that cannot be used (one line)."""


# -- the rule --------------------------------------------------------------------------


def _looks_like_path(rule: str) -> bool:
    return rule.endswith(".py") or "/" in rule or Path(rule).is_file()


def load_rule(rule: str | Path | Detector) -> Detector:
    """A rule file (checked like GOVPIPE_RULES_DIR's), a detector id, or a Detector."""
    from pipeline.detectors import registry

    if isinstance(rule, Detector):
        return rule
    if isinstance(rule, str) and not _looks_like_path(rule):
        entry = registry.entry_of(rule)
        if entry is None:
            raise RuleTestError(
                f"{rule}: no such detector (a rule file path, or the id of a built-in, "
                "entry-point or GOVPIPE_RULES_DIR detector)"
            )
        return entry.detector
    path = Path(rule).resolve()
    for entry in registry.entries():  # already loaded from GOVPIPE_RULES_DIR: the same one
        if entry.file is not None and Path(entry.file).resolve() == path:
            return entry.detector
    loaded = registry.load_rule_file(rule)
    registry.combine([*registry.entries(), loaded])  # its id must be free
    return loaded.detector


def load_policy_for(detector: Detector, policy: Policy | str | Path | None) -> Policy:
    """The policy to apply; a file is checked against every detector plus this one."""
    if policy is None:
        return DEFAULT_POLICY
    if isinstance(policy, Policy):
        return policy
    from pipeline.detectors.registry import all_detectors

    chosen: dict[str, Detector] = {d.spec.id: d for d in all_detectors()}
    chosen[detector.spec.id] = detector
    file = Path(policy)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleTestError(f"cannot read policy file {file}: {exc.strerror or exc}") from None
    return parse_policy(
        text, str(policy), [d.spec for d in chosen.values()], detectors=chosen.values()
    )


# -- events ----------------------------------------------------------------------------


def _unknown_identity() -> dict[str, Any]:
    from pipeline.enrichment.views import UNKNOWN_IDENTITY

    return dict(UNKNOWN_IDENTITY)


def _unknown_credential() -> dict[str, Any]:
    from pipeline.enrichment.views import UNKNOWN_CREDENTIAL

    return dict(UNKNOWN_CREDENTIAL)


_TIMES = ("issued_at", "expires_at", "rotated_at", "revoked_at", "last_used_at")


def _view(name: str, given: Any, unknown: dict[str, Any], where: str) -> dict[str, Any] | None:
    from pipeline.records import to_epoch_ms

    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise RuleTestError(f"{where}: {name}: expected an object or null")
    extra = sorted(set(given) - set(unknown))
    if extra:
        known = ", ".join(k for k in unknown if k != "known")
        raise RuleTestError(f"{where}: {name}.{extra[0]}: unknown field (one of {known})")
    view = {**unknown, "known": True, **given}
    for key in ("allowed_scopes", "scopes"):
        if key in view and view[key] is None:
            view[key] = []  # what the worker's view holds for "none listed"
    for key in _TIMES:
        if isinstance(view.get(key), str):
            try:
                view[key] = int(to_epoch_ms(view[key]))
            except ValueError:
                raise RuleTestError(f"{where}: {name}.{key}: not a time") from None
    if "mode" in unknown and view.get("known") is True:
        from pipeline.enrichment.keys import DEFAULT_MODE, IDENTITY_MODES

        mode = view.get("mode")
        if mode is None:
            view["mode"] = DEFAULT_MODE
        elif isinstance(mode, str) and mode.strip().lower() in IDENTITY_MODES:
            view["mode"] = mode.strip().lower()
        else:
            choices = ", ".join(IDENTITY_MODES)
            raise RuleTestError(f"{where}: {name}.mode: expected one of {choices}")
    if "lifetime_ms" in unknown and "lifetime_ms" not in given:
        issued, expires = view.get("issued_at"), view.get("expires_at")
        if isinstance(issued, int) and isinstance(expires, int):
            view["lifetime_ms"] = expires - issued
        else:
            view["lifetime_ms"] = None
    return view


def prepare_event(raw: Mapping[str, Any], where: str = "event") -> Event:
    """An input event (plus optional inline ``identity``/``credential``) as stage 2
    hands it to detectors: validated, normalised, redacted and enriched."""
    from pipeline.flow.validate import validate_event
    from pipeline.redact import redact_event

    if not isinstance(raw, Mapping):
        raise RuleTestError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    fields = dict(raw)
    enrichment = {k: fields.pop(k) for k in ("identity", "credential") if k in fields}
    try:
        event = validate_event(fields)
    except RejectedInput as exc:
        raise RuleTestError(f"{where}: {exc.code}: {exc.message}") from None
    clean, secrets = redact_event(event)
    if secrets:
        clean["_secrets"] = [{"path": f.path, "kind": f.kind} for f in secrets]
    for name, id_field, unknown in (
        ("identity", "identity_id", _unknown_identity()),
        ("credential", "credential_id", _unknown_credential()),
    ):
        if name in enrichment:
            if enrichment[name] is not None and not clean.get(id_field):
                raise RuleTestError(f"{where}: {name} given but the event has no {id_field}")
            clean[name] = _view(name, enrichment[name], unknown, where)
        else:
            clean[name] = unknown if clean.get(id_field) else None
    return clean


def _json_lines(path: str | Path, what: str) -> list[tuple[str, Any]]:
    """(``file:line``, parsed JSON) of each non-blank line; bad JSON names its line."""
    from pipeline.commands.publish import json_problem

    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise RuleTestError(f"cannot read {what} file {file}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            out.append((where, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise RuleTestError(f"{where}: {json_problem(line, exc)}") from None
    return out


def read_events(path: str | Path) -> list[Event]:
    """JSON lines of input events (blank lines skipped); errors name the line."""
    return [prepare_event(value, where) for where, value in _json_lines(path, "events")]


# -- running ---------------------------------------------------------------------------


def run_rule(
    rule: str | Path | Detector,
    events: Iterable[Mapping[str, Any]] | str | Path,
    *,
    policy: Policy | str | Path | None = None,
    until: int | None = None,
) -> list[Finding]:
    """Every finding of one rule over ``events``, in the order they were found.

    ``events``: input events (dicts, optionally with inline enrichment) or a JSON-lines
    file of them. ``policy``: a Policy or a policy file (default: the built-in
    defaults). ``until``: the event-time watermark to end at (default: the end of
    time, so every timer fires).
    """
    detector = load_rule(rule)
    applied = load_policy_for(detector, policy)
    if isinstance(events, str | Path):
        prepared = read_events(events)
    else:
        prepared = [prepare_event(e, f"event {n}") for n, e in enumerate(events, start=1)]
    return run_prepared(detector, prepared, applied, until)


def run_prepared(
    detector: Detector, events: Sequence[Event], policy: Policy, until: int | None = None
) -> list[Finding]:
    """``run_rule`` over events already through ``prepare_event``."""
    from pipeline.detectors.engine import DetectionEngine
    from pipeline.detectors.registry import subject_value
    from pipeline.records import MAX_EPOCH_MS

    applied = policy
    engine = DetectionEngine(applied, detectors=[detector])
    spec = detector.spec
    kind, types = spec.subject, spec.event_types
    lateness = applied.allowed_lateness_ms
    states: dict[str, State] = {}
    timers: list[tuple[int, str]] = []
    seen: set[str] = set()
    findings: list[Finding] = []
    watermark: int | None = None
    newest: int | None = None
    firings = 0

    def fire(up_to: int) -> None:
        nonlocal firings
        while timers and timers[0][0] <= up_to:
            _, subject = heapq.heappop(timers)
            state = states[subject]
            if not engine.due(state, up_to):
                continue  # stale: the subject moved its timer since
            findings.extend(engine.process(kind, subject, state, [], up_to))
            firings += 1
            if firings > MAX_TIMER_FIRINGS:
                raise RuleTestError(f"{spec.id}: timers keep firing (a deadline never moves on)")
            arm(subject)

    def arm(subject: str) -> None:
        deadline = engine.next_deadline(states[subject])
        if deadline is not None:
            heapq.heappush(timers, (deadline, subject))

    for event in events:
        if event["event_id"] in seen:
            continue  # stage 2 drops repeats by event_id
        seen.add(event["event_id"])
        before = watermark
        t = int(event["event_time"])
        newest = t if newest is None else max(newest, t)
        watermark = newest - lateness if watermark is None else max(watermark, newest - lateness)
        subject = subject_value(kind, event) if event["event_type"] in types else None
        if subject is not None:
            state = states.setdefault(subject, {})
            late = before is not None and t < before
            fresh, behind = ([], [event]) if late else ([event], None)
            findings.extend(engine.process(kind, subject, state, fresh, watermark, behind))
            arm(subject)
        fire(watermark)
    fire(MAX_EPOCH_MS if until is None else until)
    return findings


# -- findings and expectations ---------------------------------------------------------


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _plain(value: Any) -> Any:
    """JSON types only (tuples become lists, sets sorted lists)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, set | frozenset):
            return sorted(obj, key=str)
        return str(obj)

    return orjson.loads(orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS))


def finding_record(finding: Finding) -> dict[str, Any]:
    """A finding as one JSON line (the shape ``--expect`` files use)."""
    return {
        "detector": finding.detector,
        "severity": finding.severity,
        "subject": finding.subject,
        "time": iso(finding.time),
        "event_ids": list(finding.event_ids),
        "facts": _plain(finding.facts),
    }


def format_finding(finding: Finding) -> str:
    """One line a person reads: detector, severity, subject, time, events, facts."""
    facts = orjson.dumps(_plain(finding.facts), option=orjson.OPT_SORT_KEYS).decode()
    return (
        f"{finding.detector}  {finding.severity}  {finding.subject}  {iso(finding.time)}  "
        f"events={','.join(finding.event_ids)}  facts={facts}"
    )


@dataclasses.dataclass(frozen=True)
class Expectation:
    where: str  # file:line
    fields: dict[str, Any]

    def matches(self, record: Mapping[str, Any]) -> bool:
        for name, want in self.fields.items():
            got = record[name]
            if name == "event_ids":
                if set(want) != set(got):
                    return False
            elif name == "facts":
                if any(k not in got or got[k] != v for k, v in want.items()):
                    return False
            elif got != want:
                return False
        return True

    def __str__(self) -> str:
        return f"{self.where}: {orjson.dumps(self.fields).decode()}"


def _expectation(where: str, value: Any) -> Expectation:
    from pipeline.records import to_epoch_ms

    if not isinstance(value, dict):
        raise RuleTestError(f"{where}: expected a JSON object (one expected finding)")
    fields = dict(value)
    for name in fields:
        if name not in EXPECTATION_FIELDS:
            raise RuleTestError(
                f"{where}: {name}: unknown field (one of {', '.join(EXPECTATION_FIELDS)})"
            )
    ids = fields.get("event_ids")
    if "event_ids" in fields and (
        not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
    ):
        raise RuleTestError(f"{where}: event_ids: expected a list of strings")
    if "facts" in fields and not isinstance(fields["facts"], dict):
        raise RuleTestError(f"{where}: facts: expected an object")
    if "time" in fields:
        try:
            fields["time"] = iso(int(to_epoch_ms(fields["time"])))
        except (TypeError, ValueError):
            raise RuleTestError(f"{where}: time: not ISO-8601 or epoch milliseconds") from None
    return Expectation(where, fields)


def read_expectations(path: str | Path) -> list[Expectation]:
    """JSON lines of expected findings; an empty file expects none."""
    return [_expectation(where, value) for where, value in _json_lines(path, "expectations")]


def expectation(fields: Mapping[str, Any], where: str = "expectation") -> Expectation:
    """One expectation from a dict (rule tests in Python)."""
    return _expectation(where, dict(fields))


def compare(findings: Sequence[Finding], expected: Sequence[Expectation]) -> list[str]:
    """Diff lines (``- missing`` expectations, ``+ unexpected`` findings); [] = match.

    Each expectation needs a finding of its own (a maximum matching, so a loose
    expectation cannot take the finding a stricter one needs).
    """
    records = [finding_record(f) for f in findings]
    owner: dict[int, int] = {}  # finding index -> expectation index

    def claim(e: int, visited: set[int]) -> bool:
        for f, record in enumerate(records):
            if f in visited or not expected[e].matches(record):
                continue
            visited.add(f)
            if f not in owner or claim(owner[f], visited):
                owner[f] = e
                return True
        return False

    for e in range(len(expected)):
        claim(e, set())
    matched = set(owner.values())
    diff = [f"- {x}" for i, x in enumerate(expected) if i not in matched]
    diff += [f"+ {format_finding(f)}" for i, f in enumerate(findings) if i not in owner]
    return diff
