"""A small bounded TTL + LRU cache, looked up once per distinct key per batch.

The cache sits in front of Redis so a warm worker reads Redis only for keys it
has not seen within ``ttl_s``. The TTL is short on purpose: the registry is
owned by external systems, and a change there (an identity disabled, a
credential revoked by another worker) must become visible within seconds.
Values are shared between events and must be treated as read-only.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters per distinct-key lookup (a batch hitting one key 40 times counts once)."""

    hits: int
    misses: int
    size: int
    evictions: int

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def __add__(self, other: CacheStats) -> CacheStats:
        return CacheStats(
            self.hits + other.hits,
            self.misses + other.misses,
            self.size + other.size,
            self.evictions + other.evictions,
        )


class TTLCache(Generic[K, V]):
    """Bounded mapping whose entries expire ``ttl_s`` after they were stored."""

    __slots__ = ("_data", "_evictions", "_hits", "_misses", "clock", "max_entries", "ttl_s")

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl_s < 0:
            raise ValueError("ttl_s must not be negative")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def lookup(self, keys: Iterable[K], now: float | None = None) -> tuple[dict[K, V], list[K]]:
        """Split distinct ``keys`` into fresh cached values and the keys to fetch."""
        if now is None:
            now = self.clock()
        data = self._data
        get = data.get
        touch = data.move_to_end
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            entry = get(key)
            if entry is not None and entry[0] > now:
                found[key] = entry[1]
                touch(key)
            else:
                missing.append(key)
        self._hits += len(found)
        self._misses += len(missing)
        return found, missing

    def get(self, key: K, now: float | None = None) -> V | None:
        """One value if present and fresh; does not count in the stats."""
        entry = self._data.get(key)
        if entry is None or entry[0] <= (self.clock() if now is None else now):
            return None
        return entry[1]

    def put(self, key: K, value: V, now: float | None = None) -> None:
        self.put_many(((key, value),), now)

    def put_many(self, items: Iterable[tuple[K, V]], now: float | None = None) -> None:
        """Store values; expired entries at the least recently used end go, and the
        least recently used ones when the cache is still full.

        Without the first, an expired entry stayed until the cache was full: a worker
        seeing ever new credentials held ``max_entries`` of them, nearly all dead (the
        soak's traffic brings ~4,800 new credentials a simulated day, so its credential
        cache filled at about day 10, where the worker's RSS ended its steepest rise)."""
        at = self.clock() if now is None else now
        expires = at + self.ttl_s
        data = self._data
        for key, value in items:
            data[key] = (expires, value)
            data.move_to_end(key)
        # Entries are in order of their last use; a hit moves one to the end without
        # renewing it, so an expired entry can sit behind a live one for a while.
        while data:
            oldest = next(iter(data.values()))
            if oldest[0] > at:
                break
            data.popitem(last=False)
        overflow = len(data) - self.max_entries
        if overflow > 0:
            self._evictions += overflow
            for _ in range(overflow):
                data.popitem(last=False)

    def replace(self, key: K, value: V) -> bool:
        """Swap a cached value but keep its expiry (local knowledge must not extend
        the life of what was read from Redis); False if the key is not cached."""
        entry = self._data.get(key)
        if entry is None:
            return False
        self._data[key] = (entry[0], value)
        return True

    def invalidate(self, keys: Iterable[K]) -> None:
        pop = self._data.pop
        for key in keys:
            pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, len(self._data), self._evictions)

    def reset_stats(self) -> None:
        self._hits = self._misses = self._evictions = 0
