"""The policy file (``GOVPIPE_POLICY``): thresholds, switches and lists for the detectors.

```yaml
version: 1
allowed_lateness_ms: 300000
privileged_scopes: ["*admin*", "iam.*"]        # globs; replaces the default list
sensitive_actions: ["*.export", "payments.*"]  # globs; replaces the default list
detectors:
  SP-01: {enabled: true, severity: high, thresholds: {max_lifetime_ai_agent_s: 3600}}
  SP-05:
    modes:                                     # by the acting identity's registry mode
      reporting: {enabled: false}
      autonomous: {severity: critical}
  SP-01: {modes: {autonomous: {thresholds: {max_lifetime_ai_agent_s: 900}}}}
exceptions:
  identities: {SP-01: [agent-x], "*": [agent-test]}   # "*" = every detector
  approvers:  {RS-03: [bob@example.com]}
```

Errors name the file line (``policy.yaml:12: detectors.SP-01.thresholds.x: unknown
threshold``): YAML nodes keep their marks, and each error's path is mapped back to
the closest key that exists. Unknown detector ids, unknown threshold names and
thresholds of the wrong type are errors, because a typo there silently keeps the
default and looks like it worked. Every problem is found in one pass (the schema's
and the name and type checks together, in file order); only invalid YAML stops at
its first error.

Modes (``modes``, keyed ``reporting`` / ``assistant`` / ``autonomous``: the acting
identity's registry ``mode``, docs/contracts/state.md) refine a detector for the
findings and events of identities in that mode; what a mode leaves out is the
detector's own setting. ``enabled`` and ``severity`` apply to every detector, per
finding, by the ``mode`` in the finding's context (the identity the finding is about;
none = ``autonomous``, the strictest). ``thresholds`` per mode apply only to detectors
that judge each event on its own (``Detector.per_event``: the ``single_event`` driver),
which the engine runs per mode with that mode's thresholds; other detectors keep state
across events of several identities, so ``policy check`` refuses their per-mode
thresholds, and ``dedup_s`` (it decides the alert id) may not differ by mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from pipeline.detectors.base import DAY, MINUTE, Context, Detector, DetectorSpec, Severity
from pipeline.detectors.base import DEFAULT_DEDUP_S as DEFAULT_DEDUP_S  # engine.py reads it here
from pipeline.detectors.common import glob_match
from pipeline.errors import ConfigError

DEFAULT_PRIVILEGED_SCOPES: tuple[str, ...] = (
    "*admin*",
    "iam.*",
    "secrets.*",
    "kms.*",
    "*:write-all",
    "*.write-all",
)
DEFAULT_SENSITIVE_ACTIONS: tuple[str, ...] = (
    "*.delete",
    "*.bulk_delete",
    "*.export",
    "*.transfer",
    "iam.*",
    "secrets.*",
    "payments.*",
)
ALL = "*"  # exceptions key meaning "every detector"
#: The registry modes (``enrichment.keys.IDENTITY_MODES``), and the one a finding or
#: event without a mode is judged by: the strictest.
Mode = Literal["reporting", "assistant", "autonomous"]
MODES: tuple[Mode, ...] = ("reporting", "assistant", "autonomous")
DEFAULT_MODE: Mode = "autonomous"

Pattern = StrictStr
Name = StrictStr


class _Strict(BaseModel):
    """Unknown keys are errors (a typo must not silently keep a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModeSettings(_Strict):
    """A detector's settings for the identities of one mode (unset = the detector's)."""

    enabled: StrictBool | None = None
    severity: Severity | None = None
    thresholds: dict[str, Any] = Field(default_factory=dict)


class DetectorSettings(_Strict):
    enabled: StrictBool | None = None
    severity: Severity | None = None
    thresholds: dict[str, Any] = Field(default_factory=dict)
    modes: dict[Mode, ModeSettings] = Field(default_factory=dict)


def mode_of_context(context: Mapping[str, Any]) -> str:
    """The mode a finding is judged by: its context's ``mode``, else the strictest."""
    mode = context.get("mode")
    return mode if mode in MODES else DEFAULT_MODE


def mode_of_event(event: Mapping[str, Any]) -> str:
    """The mode an event is judged by: its identity's registry mode, else the strictest
    (no identity, one the registry does not know, or a view from before modes)."""
    identity = event.get("identity")
    mode = identity.get("mode") if isinstance(identity, Mapping) else None
    return mode if mode in MODES else DEFAULT_MODE


class Exceptions(_Strict):
    #: detector id (or "*") -> identity ids whose findings are suppressed
    identities: dict[str, list[Name]] = Field(default_factory=dict)
    #: detector id (or "*") -> approvers whose findings are suppressed
    approvers: dict[str, list[Name]] = Field(default_factory=dict)


class Policy(_Strict):
    """The parsed policy; ``DEFAULT_POLICY`` when no file is configured."""

    version: Literal[1]
    allowed_lateness_ms: StrictInt = Field(default=5 * MINUTE, ge=0, le=DAY)
    privileged_scopes: tuple[Pattern, ...] = DEFAULT_PRIVILEGED_SCOPES
    sensitive_actions: tuple[Pattern, ...] = DEFAULT_SENSITIVE_ACTIONS
    detectors: dict[str, DetectorSettings] = Field(default_factory=dict)
    exceptions: Exceptions = Field(default_factory=Exceptions)

    def is_privileged(self, scope: str | None) -> bool:
        return glob_match(scope, self.privileged_scopes) is not None

    def is_sensitive_action(self, action: str | None) -> bool:
        return glob_match(action, self.sensitive_actions) is not None

    def _settings(self, detector_id: str) -> DetectorSettings:
        return self.detectors.get(detector_id) or DetectorSettings()

    def enabled(self, spec: DetectorSpec) -> bool:
        flag = self._settings(spec.id).enabled
        return spec.enabled if flag is None else flag

    def severity(self, spec: DetectorSpec) -> Severity | None:
        """The override, or None to keep the detector's own severity."""
        return self._settings(spec.id).severity

    def thresholds(self, spec: DetectorSpec) -> dict[str, Any]:
        return {**spec.thresholds, **self._settings(spec.id).thresholds}

    def modes(self, detector_id: str) -> Mapping[str, ModeSettings]:
        """The detector's per-mode settings (only the modes the file names)."""
        return cast("Mapping[str, ModeSettings]", self._settings(detector_id).modes)

    def enabled_in(self, spec: DetectorSpec, mode: str) -> bool:
        """Is the detector on for identities of ``mode``? (its mode setting, else its own)"""
        flag = self.modes(spec.id).get(mode, ModeSettings()).enabled
        return self.enabled(spec) if flag is None else flag

    def runs(self, spec: DetectorSpec) -> bool:
        """Must the detector run at all: on for itself or for some mode."""
        return self.enabled(spec) or any(m.enabled for m in self.modes(spec.id).values())

    def mode_severity(self, detector_id: str, mode: str) -> Severity | None:
        """The severity override for ``mode``, or None (then the detector's)."""
        settings = self.modes(detector_id).get(mode)
        return settings.severity if settings is not None else None

    def mode_thresholds(self, spec: DetectorSpec, mode: str) -> dict[str, Any] | None:
        """The thresholds for ``mode`` when the file tunes them, else None."""
        settings = self.modes(spec.id).get(mode)
        if settings is None or not settings.thresholds:
            return None
        return {**self.thresholds(spec), **settings.thresholds}

    def excepted(self, detector_id: str, context: Mapping[str, Any]) -> bool:
        """Is this finding's identity or approver on the detector's exception list?"""
        for field, table in (
            ("identity_id", self.exceptions.identities),
            ("approver", self.exceptions.approvers),
        ):
            value = context.get(field)
            if value and (value in table.get(detector_id, ()) or value in table.get(ALL, ())):
                return True
        return False


DEFAULT_POLICY = Policy(version=1)


def policy_of(ctx: Context) -> Policy:
    """The policy a detector runs under (the default one when the engine passed none)."""
    return ctx.policy if isinstance(ctx.policy, Policy) else DEFAULT_POLICY


class PolicyError(ConfigError):
    """An invalid policy file; ``errors`` holds one ``file:line: path: message`` each,
    every problem found, in file order (the worker prints them all and stops)."""

    def __init__(self, errors: Sequence[str]) -> None:
        n = len(errors)
        head = f"invalid policy ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n  ".join([head, *errors]))
        self.errors = list(errors)


Loc = tuple[str | int, ...]


Pos = tuple[int, int]  # (1-based line, column): errors are listed in file order


def _mark(node: yaml.Node) -> Pos:
    return node.start_mark.line + 1, node.start_mark.column


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, Pos], dupes: list[tuple[Loc, Pos]]) -> None:
    """Record where every key / item under ``node`` starts; note duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, str(key.value))
            if child in out:
                dupes.append((child, _mark(key)))
            out[child] = _mark(key)
            _lines(value, child, out, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*loc, i)] = _mark(item)
            _lines(item, (*loc, i), out, dupes)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _pos_of(loc: Loc, lines: Mapping[Loc, Pos]) -> Pos:
    """Where ``loc`` is in the file, or the closest enclosing key that exists."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1, 0


#: Schema errors in the words the threshold checks use (pydantic's own text otherwise).
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _schema_message(err: Mapping[str, Any]) -> str:
    if err["type"] == "literal_error":  # severity, version
        return f"expected {err.get('ctx', {}).get('expected', 'one of the listed values')}"
    return _MESSAGES.get(str(err["type"]), str(err["msg"]))


def _schema_loc(loc: Sequence[Any]) -> Loc:
    """pydantic's location as a path in the file (a bad mapping key is named by the key)."""
    parts = [p for p in loc if p != "[key]"]
    return tuple(p if isinstance(p, int) else str(p) for p in parts)


def _threshold_problem(default: Any, value: Any) -> str | None:
    """Overrides must keep the default's type (and numbers are never negative)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected a number"
        if isinstance(default, int) and not isinstance(value, int):
            return "expected a whole number"
        return "must not be negative" if value < 0 else None
    if isinstance(default, str):
        return None if isinstance(value, str) else "expected a string"
    if isinstance(default, list | tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "expected a list of strings"
    return None


def _threshold_checks(
    spec: DetectorSpec, thresholds: Any, where: Loc, problems: list[tuple[Loc, str]]
) -> None:
    for name, value in thresholds.items() if isinstance(thresholds, dict) else ():
        loc: Loc = (*where, str(name))
        default = spec.thresholds.get(name, DEFAULT_DEDUP_S if name == "dedup_s" else None)
        if default is None:
            problems.append((loc, "unknown threshold"))
        elif (problem := _threshold_problem(default, value)) is not None:
            problems.append((loc, problem))


def _mode_checks(
    det_id: str, detector: Detector | None, modes: Any, problems: list[tuple[Loc, str]]
) -> None:
    """Per-mode thresholds only where the engine can honour them (module doc)."""
    for mode, settings in modes.items() if isinstance(modes, dict) else ():
        thresholds = settings.get("thresholds") if isinstance(settings, dict) else None
        if not isinstance(thresholds, dict) or not thresholds:
            continue
        where: Loc = ("detectors", det_id, "modes", str(mode), "thresholds")
        if detector is None or not detector.per_event:
            problems.append(
                (
                    where,
                    "thresholds per mode are supported only for detectors that judge each "
                    "event on its own (single-event rules); set severity or enabled per "
                    "mode, or the threshold for every mode",
                )
            )
            continue
        if "dedup_s" in thresholds:
            problems.append(
                ((*where, "dedup_s"), "dedup_s cannot differ by mode (it decides the alert id)")
            )


def _raw_checks(
    data: Mapping[str, Any],
    specs: Mapping[str, DetectorSpec],
    detectors_by_id: Mapping[str, Detector] | None = None,
) -> list[tuple[Loc, str]]:
    """The checks the schema cannot make (detector ids, threshold names and types, empty
    patterns), run on the raw document so they are reported together with the schema's
    errors: whatever has the wrong shape here was already reported by the schema."""
    problems: list[tuple[Loc, str]] = []
    detectors = data.get("detectors")
    for det_id, settings in detectors.items() if isinstance(detectors, dict) else ():
        if not isinstance(det_id, str):
            continue
        spec = specs.get(det_id)
        if spec is None:
            problems.append((("detectors", det_id), "unknown detector"))
            continue
        if not isinstance(settings, dict):
            continue
        _threshold_checks(
            spec, settings.get("thresholds"), ("detectors", det_id, "thresholds"), problems
        )
        modes = settings.get("modes")
        for mode, mode_settings in modes.items() if isinstance(modes, dict) else ():
            if isinstance(mode_settings, dict):
                where: Loc = ("detectors", det_id, "modes", str(mode), "thresholds")
                _threshold_checks(spec, mode_settings.get("thresholds"), where, problems)
        known = detectors_by_id.get(det_id) if detectors_by_id is not None else None
        if detectors_by_id is not None:
            _mode_checks(det_id, known, modes, problems)
    exceptions = data.get("exceptions")
    for table in ("identities", "approvers"):
        entries = exceptions.get(table) if isinstance(exceptions, dict) else None
        for det_id in entries if isinstance(entries, dict) else ():
            if isinstance(det_id, str) and det_id != ALL and det_id not in specs:
                problems.append((("exceptions", table, det_id), "unknown detector"))
    for field in ("privileged_scopes", "sensitive_actions"):
        patterns = data.get(field)
        for i, pattern in enumerate(patterns if isinstance(patterns, list) else ()):
            if isinstance(pattern, str) and not pattern.strip():
                problems.append(((field, i), "empty pattern"))
    return problems


def _render(name: str, errors: list[tuple[Pos, str]]) -> list[str]:
    """``file:line: message``, in file order."""
    return [f"{name}:{pos[0]}: {msg}" for pos, msg in sorted(errors, key=lambda e: e[0])]


def parse_policy(
    text: str,
    name: str = "policy.yaml",
    specs: Iterable[DetectorSpec] | None = None,
    detectors: Iterable[Detector] | None = None,
) -> Policy:
    """Parse and validate policy YAML; ``specs`` defaults to every registered detector.

    ``detectors`` (default: every registered one when ``specs`` is not given) lets the
    per-mode thresholds be checked against what each detector can honour; with only
    ``specs``, per-mode thresholds are refused for every detector."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError([f"{name}:{line}: invalid YAML: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{name}:1: invalid YAML: {exc}"]) from None

    # Every problem is collected (schema, names, types, duplicates) and reported at
    # once, in file order: fixing a policy should not take one round per mistake.
    lines: dict[Loc, Pos] = {}
    dupes: list[tuple[Loc, Pos]] = []
    if node is not None:
        _lines(node, (), lines, dupes)
    errors = [(pos, f"{_dotted(loc)}: duplicate key") for loc, pos in dupes]
    if not isinstance(data, dict):
        errors.append(((1, 0), "the policy must be a mapping with 'version: 1'"))
        raise PolicyError(_render(name, errors))
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _schema_loc(err["loc"])
            errors.append((_pos_of(loc, lines), f"{_dotted(loc)}: {_schema_message(err)}"))
    chosen = list(detectors) if detectors is not None else None
    if specs is None:
        from pipeline.detectors.registry import all_detectors

        if chosen is None:
            chosen = list(all_detectors())
        specs = [d.spec for d in chosen]
    by_id = {d.spec.id: d for d in chosen} if chosen is not None else {}
    for loc, msg in _raw_checks(data, {s.id: s for s in specs}, by_id):
        errors.append((_pos_of(loc, lines), f"{_dotted(loc)}: {msg}"))
    if errors or policy is None:
        raise PolicyError(_render(name, errors))
    return policy


def load_policy(path: str | Path | None) -> Policy:
    """The policy at ``path``, or the defaults when no file is configured."""
    if path is None:
        return DEFAULT_POLICY
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {file}: {exc.strerror or exc}") from None
    return parse_policy(text, str(file))
