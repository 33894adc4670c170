"""Realistic NHI / agent traffic with injected violations (``govpipe simulate``).

``Simulator`` makes the stream, ``build_world`` the organisation and its identity
registry, ``INJECTORS`` one event sequence per detection id. Injected events carry
``attributes["sim.injected"]`` (the detector id) and ``attributes["sim.case"]``
(one value per case): simulator metadata, harmless to the pipeline.
"""

from __future__ import annotations

from pipeline.simulate.generator import (
    SP03_HOLD_MS,
    DirtyRecords,
    SimStats,
    Simulator,
    check_violations,
    parse_violations,
)
from pipeline.simulate.scenarios import CLEAN_LIMITS, DETECTOR_IDS, INJECTORS
from pipeline.simulate.world import PRIVILEGED_SCOPES, World, build_world, write_registry

__all__ = [
    "CLEAN_LIMITS",
    "DETECTOR_IDS",
    "INJECTORS",
    "PRIVILEGED_SCOPES",
    "SP03_HOLD_MS",
    "DirtyRecords",
    "SimStats",
    "Simulator",
    "World",
    "build_world",
    "check_violations",
    "parse_violations",
    "write_registry",
]
