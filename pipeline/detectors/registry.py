"""Finds every detector: any module in this package exporting ``DETECTOR: Detector``.

Discovery (not a hand-kept list) means adding a detector is one file plus its
tests; the registry test then insists on the test file and on unique ids.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Collection
from functools import cache

from pipeline.detectors.base import SUBJECT_FIELDS, Detector, Event

#: Machinery modules in this package: never detectors, not imported by discovery.
MACHINERY = frozenset(
    {"alerts", "base", "common", "engine", "frameworks", "policy", "registry", "windows"}
)


class RegistryError(Exception):
    """A detector module is malformed, or two detectors share an id."""


@cache
def _discover() -> tuple[tuple[str, Detector], ...]:
    """(module name, detector) for every detector module, sorted by id."""
    import pipeline.detectors as package

    found: dict[str, tuple[str, Detector]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in MACHINERY:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        detector = getattr(module, "DETECTOR", None)
        if detector is None:
            continue  # a helper module
        if not isinstance(detector, Detector):
            raise RegistryError(f"{info.name}.DETECTOR is not a Detector")
        det_id = detector.spec.id
        if det_id in found:
            raise RegistryError(f"detector id {det_id} in both {found[det_id][0]} and {info.name}")
        found[det_id] = (info.name, detector)
    return tuple(found[k] for k in sorted(found))


def all_detectors() -> tuple[Detector, ...]:
    """Every detector, sorted by id; each candidate module is imported once."""
    return tuple(d for _, d in _discover())


def detector_modules() -> dict[str, str]:
    """Detector id -> module name (the registry test checks each has a test file)."""
    return {d.spec.id: name for name, d in _discover()}


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
