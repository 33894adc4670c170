"""Finds every detector: the built-in ones and the user's own, under one contract.

Three sources, loaded once per process and checked alike (docs/rules.md):

* built-in: any module of this package exporting ``DETECTOR: Detector``
  (discovery, not a hand-kept list: adding one is a file plus its tests);
* entry points of the ``govpipe.detectors`` group in installed distributions: the
  entry point names a ``Detector`` or a module exporting ``DETECTOR``;
* rule files in the settings' ``GOVPIPE_RULES_DIR``: every ``*.py`` directly in it,
  except ``_*.py`` (helpers), ``test_*.py`` / ``*_test.py`` and ``conftest.py``.

Every detector's spec is validated (id format, severity, subject kind, event types
of the input contract, JSON-able thresholds) and ids are unique across the three
sources. A problem stops the process at start with one line naming the file and
line (``RegistryError``, a ``ConfigError``), never at the first event.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import pkgutil
import re
import sys
import traceback
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args

from pipeline.detectors.base import SUBJECT_FIELDS, Detector, DetectorSpec, Effect, Event
from pipeline.errors import ConfigError

#: Machinery modules in this package: never detectors, not imported by discovery.
MACHINERY = frozenset(
    {
        "alerts",
        "base",
        "common",
        "engine",
        "frameworks",
        "held",
        "kinds",
        "policy",
        "registry",
        "state",
        "windows",
    }
)
#: The entry-point group installed packages register their detectors under.
ENTRY_POINT_GROUP = "govpipe.detectors"
#: Detector ids: upper-case letters, digits and single hyphens, starting with a letter
#: (they are policy keys, metric labels and part of alert ids).
ID_PATTERN = re.compile(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*")
MAX_ID = 32
SEVERITIES = ("low", "medium", "high", "critical")

Origin = Literal["built-in", "entry point", "rules dir"]

log = logging.getLogger(__name__)


class RegistryError(ConfigError):
    """A detector source is malformed, or two detectors share an id (one line)."""


@dataclass(frozen=True)
class Entry:
    """One registered detector and where it came from."""

    detector: Detector
    origin: Origin
    #: a file path for built-ins and rule files; ``name = value (dist)`` for entry points
    source: str
    #: the module the detector was imported from
    module: str
    #: the file of the module, when known (for line numbers)
    file: str | None = None

    @property
    def id(self) -> str:
        return self.detector.spec.id

    def where(self, field: str = "id") -> str:
        """``file:line`` of ``field`` in the spec (or the entry point's name)."""
        if self.origin == "entry point":
            located = f" ({_located(self.file, field)})" if self.file else ""
            return f"entry point {self.source}{located}"
        return _located(self.file, field) if self.file else self.source


# -- locating problems in source files ------------------------------------------------


def _display(path: str | Path) -> str:
    """A path as the user wrote it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _call_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _line_in_source(text: str, field: str) -> int | None:
    """The line of ``field=`` in a ``DetectorSpec(...)`` call, else of ``DETECTOR =``."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    assignment = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node.func) == "DetectorSpec":
            for keyword in node.keywords:
                if keyword.arg == field:
                    return keyword.value.lineno
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "DETECTOR" for t in targets):
                assignment = node.lineno
    return assignment


def _located(file: str | None, field: str = "id") -> str:
    if file is None:
        return "?"
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return _display(file)
    return f"{_display(file)}:{_line_in_source(text, field) or 1}"


def _import_problem(exc: BaseException, file: str | None) -> str:
    """``file:line: what`` for an exception raised while importing a rule."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_display(exc.filename)}:{exc.lineno or 1}: syntax error: {exc.msg}"
    frames = traceback.extract_tb(exc.__traceback__)
    line = None
    where = file
    if file is not None:
        target = str(Path(file).resolve())
        mine = [f for f in frames if str(Path(f.filename).resolve()) == target]
        if mine:
            line = mine[-1].lineno
    elif frames:
        where, line = frames[-1].filename, frames[-1].lineno
    what = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return f"{_display(where or '?')}:{line or 1}: cannot import: {what}"


# -- validation ------------------------------------------------------------------------


def spec_problems(spec: Any) -> list[tuple[str, str]]:
    """(field, message) for everything wrong with a spec; empty when it is valid."""
    from pipeline.records import EVENT_TYPES

    if not isinstance(spec, DetectorSpec):
        return [("id", f"DETECTOR.spec is a {type(spec).__name__}, not a DetectorSpec")]
    out: list[tuple[str, str]] = []
    if not isinstance(spec.id, str) or not (
        ID_PATTERN.fullmatch(spec.id) and len(spec.id) <= MAX_ID
    ):
        out.append(
            (
                "id",
                f"bad id {spec.id!r}: upper-case letters, digits and single hyphens, "
                f"starting with a letter, at most {MAX_ID} characters (e.g. ACME-01)",
            )
        )
    if not isinstance(spec.title, str) or not spec.title.strip():
        out.append(("title", "title is empty"))
    for name in ("description", "remediation"):
        if not isinstance(getattr(spec, name), str):
            out.append((name, f"{name} is not a string"))
    if spec.severity not in SEVERITIES:
        out.append(("severity", f"unknown severity {spec.severity!r} (one of {SEVERITIES})"))
    if spec.subject not in SUBJECT_FIELDS:
        kinds = ", ".join(SUBJECT_FIELDS)
        out.append(("subject", f"unknown subject kind {spec.subject!r} (one of {kinds})"))
    types = spec.event_types
    if isinstance(types, str) or not isinstance(types, Collection) or not types:
        out.append(("event_types", "event_types is empty (a set of input event types)"))
    else:
        unknown = sorted(str(t) for t in types if t not in EVENT_TYPES)
        if unknown:
            out.append(
                (
                    "event_types",
                    f"unknown event type {', '.join(map(repr, unknown))} "
                    "(docs/contracts/input.md lists them)",
                )
            )
    window = spec.window_ms
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
        out.append(("window_ms", "window_ms is not a whole number of milliseconds"))
    elif window is not None and window <= 0:
        out.append(("window_ms", "window_ms must be positive (None = no window)"))
    if not isinstance(spec.thresholds, Mapping):
        out.append(("thresholds", "thresholds is not a mapping"))
    else:
        try:
            json.dumps(dict(spec.thresholds))
        except (TypeError, ValueError):
            out.append(("thresholds", "thresholds must be JSON values (policy-file material)"))
    if not isinstance(spec.enabled, bool):
        out.append(("enabled", "enabled is not true or false"))
    if not isinstance(spec.needs_registry, bool):
        out.append(("needs_registry", "needs_registry is not true or false"))
    out += _effect_problems(spec.effects)
    out += _provides_problems(spec.provides, spec.thresholds)
    return out


def _effect_problems(effects: Any) -> list[tuple[str, str]]:
    """Effects are read by outcomes, metrics and dossiers: an unknown name would be
    silently ignored there, so it is refused here."""
    known = get_args(Effect)
    if isinstance(effects, str) or not isinstance(effects, Collection):
        return [("effects", f"effects is not a set of effect names (of {known})")]
    unknown = sorted(str(e) for e in effects if e not in known)
    if unknown:
        return [("effects", f"unknown effect {', '.join(map(repr, unknown))} (one of {known})")]
    return []


def _provides_problems(provides: Any, thresholds: Any) -> list[tuple[str, str]]:
    """Each provided quantity is a function of the thresholds that other parts call
    at start: it must answer for the spec's own thresholds now, not fail there."""
    if not isinstance(provides, Mapping):
        return [("provides", "provides is not a mapping of name -> function of the thresholds")]
    out: list[tuple[str, str]] = []
    for name, read in provides.items():
        if not isinstance(name, str) or not name.isidentifier():
            out.append(("provides", f"provided name {name!r} is not an identifier"))
        elif not callable(read):
            out.append(("provides", f"provides[{name!r}] is not a function of the thresholds"))
        elif isinstance(thresholds, Mapping):
            try:
                read(thresholds)
            except Exception as exc:  # a rule's bug, reported at load
                out.append(
                    (
                        "provides",
                        f"provides[{name!r}] fails on the thresholds: {type(exc).__name__}",
                    )
                )
    return out


def _checked(entry: Entry) -> Entry:
    det = entry.detector
    if not isinstance(det, Detector):
        where = entry.where("DETECTOR")
        raise RegistryError(f"{where}: DETECTOR must be a Detector (got {type(det).__name__})")
    problems = spec_problems(det.spec)
    if problems:
        field, message = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RegistryError(f"{entry.where(field)}: invalid spec: {message}{more}")
    for name in ("on_events", "on_watermark"):
        if not callable(getattr(det, name)):
            raise RegistryError(f"{entry.where('DETECTOR')}: DETECTOR.{name} is not callable")
    if det.spec.needs_registry and not det.per_event:
        raise RegistryError(
            f"{entry.where('needs_registry')}: invalid spec: needs_registry is for per-event "
            "detectors (single_event): a stateful one would miss the events of a registry gap"
        )
    return entry


# -- the three sources -----------------------------------------------------------------


def builtin_entries() -> list[Entry]:
    """Every detector module of this package (modules without DETECTOR are helpers)."""
    import pipeline.detectors as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in MACHINERY:
            continue
        name = f"{package.__name__}.{info.name}"
        module = importlib.import_module(name)
        detector = getattr(module, "DETECTOR", None)
        if detector is None:
            continue  # a helper module
        file = getattr(module, "__file__", None)
        found.append(_checked(Entry(detector, "built-in", _display(file or name), info.name, file)))
    return found


def _module_detector(module: ModuleType, file: str | None, origin: Origin, source: str) -> Entry:
    detector = getattr(module, "DETECTOR", None)
    if detector is None:
        where = f"{_display(file)}:1" if file else f"entry point {source}"
        raise RegistryError(
            f"{where}: no DETECTOR (a rule file exports DETECTOR = ...; helper files start with _)"
        )
    return _checked(Entry(detector, origin, source, module.__name__, file))


def entry_point_entries(group: str = ENTRY_POINT_GROUP) -> list[Entry]:
    """Detectors of the installed distributions' entry points, in name order."""
    found = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        label = f"{ep.name} = {ep.value}" + (f" ({dist.name})" if dist is not None else "")
        module_name = ep.value.partition(":")[0].strip()
        file = _module_file(module_name)
        try:
            loaded = ep.load()
        except Exception as exc:
            raise RegistryError(f"entry point {label}: {_import_problem(exc, file)}") from None
        if isinstance(loaded, ModuleType):
            found.append(_module_detector(loaded, loaded.__file__, "entry point", label))
        else:
            found.append(_checked(Entry(loaded, "entry point", label, module_name, file)))
    return found


def _module_file(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None


def is_rule_file(path: Path) -> bool:
    """Is this file in a rules directory a rule (not a helper or a test)?"""
    name = path.name
    return (
        path.suffix == ".py"
        and not name.startswith(("_", "test_", "."))
        and not name.endswith("_test.py")
        and name != "conftest.py"
    )


def load_rule_file(path: str | Path, origin: Origin = "rules dir") -> Entry:
    """Import one rule file as a module of its own and check its DETECTOR."""
    file = Path(path)
    if not file.is_file():
        raise RegistryError(f"{_display(file)}: no such rule file")
    resolved = str(file.resolve())
    stem = re.sub(r"\W", "_", file.stem)
    module_name = f"govpipe_rule_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise RegistryError(f"{_display(file)}:1: cannot import: not a Python file")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            del sys.modules[module_name]
        raise RegistryError(_import_problem(exc, resolved)) from None
    return _module_detector(module, resolved, origin, _display(file))


def rules_dir_entries(directory: str | Path) -> list[Entry]:
    """Every rule file directly in ``directory``, in name order."""
    folder = Path(directory)
    if not folder.is_dir():
        raise RegistryError(f"GOVPIPE_RULES_DIR: {folder} is not a directory")
    return [load_rule_file(p) for p in sorted(folder.iterdir()) if is_rule_file(p)]


def combine(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    """The entries sorted by id; two with one id, or two providing one quantity, are
    an error naming both places."""
    found: dict[str, Entry] = {}
    for entry in entries:
        other = found.get(entry.id)
        if other is not None:
            raise RegistryError(
                f"detector id {entry.id} in both {other.where()} and {entry.where()}"
            )
        found[entry.id] = entry
    providers: dict[str, Entry] = {}
    for entry in found.values():
        for name in entry.detector.spec.provides:
            other = providers.setdefault(name, entry)
            if other is not entry:  # readers take one value: two would be a silent choice
                raise RegistryError(
                    f"{entry.where('provides')}: {name!r} is already provided by "
                    f"{other.id} ({other.where('provides')})"
                )
    return tuple(found[k] for k in sorted(found))


def _rules_dir() -> Path | None:
    from pipeline.settings import get_settings

    return get_settings().rules_dir


@cache
def entries() -> tuple[Entry, ...]:
    """Every detector of this process (built-in, entry points, rules dir), sorted by id."""
    rules_dir = _rules_dir()
    user = rules_dir_entries(rules_dir) if rules_dir is not None else []
    found = combine([*builtin_entries(), *entry_point_entries(), *user])
    for entry in found:
        if entry.origin != "built-in":
            log.info("detector %s: %s", entry.id, describe(entry))
    return found


def reset() -> None:
    """Forget what was loaded (tests that change the rules dir or entry points)."""
    entries.cache_clear()
    detectors_for.cache_clear()
    _kinds.cache_clear()


def all_detectors() -> tuple[Detector, ...]:
    """Every detector, sorted by id; each source is loaded once per process."""
    return tuple(e.detector for e in entries())


def detector_modules() -> dict[str, str]:
    """Built-in detector id -> module name (the registry test checks each has a test file)."""
    return {e.id: e.module for e in entries() if e.origin == "built-in"}


def entry_of(detector_id: str) -> Entry | None:
    """Where the detector with this id came from (None = no such detector)."""
    return next((e for e in entries() if e.id == detector_id), None)


@cache
def detectors_for(event_type: str) -> tuple[Detector, ...]:
    """Detectors (enabled or not) that look at ``event_type``, sorted by id."""
    return tuple(d for d in all_detectors() if event_type in d.spec.event_types)


UNATTRIBUTED = "<unattributed>"


def subject_value(kind: str, event: Event) -> str | None:
    """The subject of ``kind`` an event belongs to (``base.subject_of``, plus one fallback).

    A ``credential.revoked`` without ``task_id`` still belongs to the task its
    credential was issued for (enrichment ``credential.task_id``): SP-02 needs it.
    An event with no identity belongs to the ``<unattributed>`` identity subject,
    so AT-01 and SL-01 see it.
    """
    for name in SUBJECT_FIELDS[kind]:  # base.subject_of, inlined: runs per event copy
        value = event.get(name)
        if value:
            return value if isinstance(value, str) else str(value)
    if kind == "identity":
        return UNATTRIBUTED
    if kind == "task":
        credential = event.get("credential")
        if isinstance(credential, dict) and credential.get("task_id"):
            return str(credential["task_id"])
    return None


@cache
def _kinds(event_type: str, enabled: frozenset[str] | None) -> tuple[str, ...]:
    kinds: list[str] = []
    for det in detectors_for(event_type):
        on = det.spec.enabled if enabled is None else det.spec.id in enabled
        if on and det.spec.subject not in kinds:
            kinds.append(det.spec.subject)
    return tuple(kinds)


def subject_kinds_for(
    event: Event, enabled: Collection[str] | None = None
) -> list[tuple[str, str]]:
    """(kind, value) subjects this event must be routed to, one per distinct subject.

    ``enabled``: ids of enabled detectors (the engine passes the policy's view);
    None = each spec's own ``enabled`` flag.
    """
    key = None if enabled is None else frozenset(enabled)
    out: list[tuple[str, str]] = []
    for kind in _kinds(str(event.get("event_type")), key):
        value = subject_value(kind, event)
        if value is not None:
            out.append((kind, value))
    return out


def describe(entry: Entry) -> str:
    """Where a detector comes from, for listings: ``built-in``, a user rule's file, …"""
    if entry.origin == "built-in":
        return "built-in"
    if entry.origin == "rules dir":
        return f"user rule (GOVPIPE_RULES_DIR) {entry.source}"
    return f"entry point {entry.source}"
