"""Is the identity registry loaded? (issue 15 item 2; docs/contracts/state.md)

One identity hash cannot tell "this identity is unknown" from "the registry is not
there": a Redis restarted without persistence comes back empty, and a registry may
never have been loaded. Every load (``govpipe identities load``, ``simulate
--load-registry``, the demo) writes the marker ``{prefix}registry`` in the same
transaction as the identities; :class:`RegistryWatch` reads it every few seconds.

Without the marker the worker is *degraded*, not down: events are still enriched and
processed (never held or dropped), their identities show as unknown (``known:
false``); stage 1 marks them (``REGISTRY_GAP``) so the detectors that need the
registry (``DetectorSpec.needs_registry``: AT-01 and the others, ``paused``) leave
them out instead of reporting every identity as unknown. ``/`` says why and
``govpipe_registry_ready`` is 0 until the registry is loaded again; then the worker
says so once and those detectors judge the events enriched from then on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InfraError

log = logging.getLogger(__name__)

#: Seconds between two reads of the marker (one HGETALL each).
CHECK_INTERVAL_S = 5.0

FIX = "load it with `govpipe identities load FILE`"


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """What the marker said at the last check."""

    ready: bool
    reason: str = ""  # why not ready ("" when ready)
    loaded_at_ms: int | None = None
    identities: int | None = None
    generation: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """For the health page: times in ISO-8601 UTC."""
        out: dict[str, Any] = {"ready": self.ready}
        if self.reason:
            out["reason"] = self.reason
        if self.loaded_at_ms is not None:
            out["loaded_at"] = iso_utc(self.loaded_at_ms)
        if self.identities is not None:
            out["identities"] = self.identities
        if self.generation is not None:
            out["generation"] = self.generation
        return out


def iso_utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _int(value: str | None) -> int | None:
    """A marker field as an int; anything else (someone else's garbage) is None."""
    if value is None or not value.isdigit() or len(value) > 19:
        return None
    return int(value)


def status_of(marker: Mapping[str, str] | None, key: str) -> RegistryStatus:
    """Read the marker hash (None or empty: absent)."""
    if not marker:
        return RegistryStatus(
            False,
            f"no identity registry in Redis (marker {key} absent: never loaded, or lost "
            f"with a Redis restart); events are processed and their identities show as "
            f"unknown; {FIX}",
        )
    loaded_at = _int(marker.get("loaded_at"))
    identities = _int(marker.get("identities"))
    generation = _int(marker.get("generation"))
    if not identities:
        return RegistryStatus(
            False,
            f"the identity registry marker {key} records no identities loaded; "
            f"events are processed and their identities show as unknown; {FIX}",
            loaded_at,
            identities,
            generation,
        )
    return RegistryStatus(True, "", loaded_at, identities, generation)


MarkerReader = Callable[[], Awaitable[Mapping[str, str] | None]]


class RegistryWatch:
    """Reads the marker on demand (``check``) or forever (``run``); logs each change once.

    ``status`` is None until the first successful read. A Redis error leaves it as it
    was: an outage is Redis trouble (retried and logged by the enrichment), not a
    registry that went away.
    """

    def __init__(
        self,
        read_marker: MarkerReader,
        key: str,
        interval_s: float = CHECK_INTERVAL_S,
        paused: Sequence[str] = (),
    ) -> None:
        self._read = read_marker
        self.key = key
        self.interval_s = interval_s
        #: the detectors that do not judge events while the registry is not ready (for
        #: the log lines)
        self.paused = tuple(paused)
        self.status: RegistryStatus | None = None

    @classmethod
    def of(cls, enricher: object, paused: Sequence[str] = ()) -> RegistryWatch | None:
        """The watch for an enricher that reads the marker (the Redis one), else None."""
        read = getattr(enricher, "read_registry_marker", None)
        keys = getattr(enricher, "keys", None)
        if read is None or keys is None:
            return None
        return cls(read, str(keys.registry), paused=paused)

    async def check(self) -> RegistryStatus | None:
        try:
            marker = await self._read()
        except InfraError as exc:
            log.debug("registry marker not read (%s)", exc)
            return self.status
        new = status_of(marker, self.key)
        self._report(self.status, new)
        self.status = new
        return new

    async def run(self) -> None:
        """Check now, then every ``interval_s``, until cancelled (a faust task: no
        parameters, or faust passes the app)."""
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    def _report(self, old: RegistryStatus | None, new: RegistryStatus) -> None:
        paused = ", ".join(self.paused)
        if not new.ready:
            if old is None or old.ready:
                if paused:
                    log.warning(
                        "identity registry not ready: %s; until it is, %s do not judge the "
                        "events enriched meanwhile (govpipe_registry_gap_events_total counts "
                        "them; every other detector and the metrics still see them)",
                        new.reason,
                        paused,
                    )
                else:
                    log.warning("identity registry not ready: %s", new.reason)
            return
        loaded = iso_utc(new.loaded_at_ms) if new.loaded_at_ms is not None else "an unknown time"
        if old is None:
            log.info(
                "identity registry loaded: %s identities at %s (generation %s)",
                new.identities,
                loaded,
                new.generation,
            )
        elif not old.ready:
            log.warning(
                "identity registry ready again: %s identities loaded at %s (generation %s); "
                "identities are known from now on%s",
                new.identities,
                loaded,
                new.generation,
                f" and {paused} judge events again" if paused else "",
            )
        elif old.generation != new.generation:
            log.info(
                "identity registry reloaded: %s identities at %s (generation %s)",
                new.identities,
                loaded,
                new.generation,
            )
