"""TTLCache: freshness, LRU bound, stats per distinct key, invalidation."""

from __future__ import annotations

import pytest

from pipeline.enrichment.cache import CacheStats, TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fresh_entries_hit_and_expired_entries_miss() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(max_entries=10, ttl_s=2.0, clock=clock)
    cache.put_many([("a", 1), ("b", 2)])
    found, missing = cache.lookup(["a", "b", "c"])
    assert found == {"a": 1, "b": 2} and missing == ["c"]
    clock.now += 1.999
    assert cache.lookup(["a"])[0] == {"a": 1}
    clock.now += 0.001  # exactly ttl later: stale
    found, missing = cache.lookup(["a"])
    assert found == {} and missing == ["a"]
    assert cache.stats() == CacheStats(hits=3, misses=2, size=2, evictions=0)
    assert cache.stats().hit_ratio == pytest.approx(3 / 5)


def test_least_recently_used_entry_is_evicted_first() -> None:
    cache: TTLCache[str, int] = TTLCache(max_entries=2, ttl_s=60, clock=Clock())
    cache.put_many([("a", 1), ("b", 2)])
    cache.lookup(["a"])  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.stats().evictions == 1
    assert len(cache) == 2


def test_invalidate_and_replace_keeps_expiry() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(max_entries=10, ttl_s=2.0, clock=clock)
    cache.put("a", 1)
    clock.now += 1.5
    assert cache.replace("a", 2) is True
    assert cache.replace("zz", 9) is False
    assert cache.get("a") == 2
    clock.now += 0.6  # the replaced value expires with the original read
    assert cache.get("a") is None
    cache.put("b", 1)
    cache.invalidate(["b", "never-there"])
    assert cache.lookup(["b"])[1] == ["b"]


def test_zero_ttl_disables_caching_and_bad_bounds_are_refused() -> None:
    cache: TTLCache[str, int] = TTLCache(max_entries=10, ttl_s=0.0, clock=Clock())
    cache.put("a", 1)
    assert cache.lookup(["a"])[1] == ["a"]
    with pytest.raises(ValueError):
        TTLCache(max_entries=0)
    with pytest.raises(ValueError):
        TTLCache(ttl_s=-1)


def test_stats_add_and_reset() -> None:
    cache: TTLCache[str, int] = TTLCache(clock=Clock())
    cache.lookup(["x"])
    total = cache.stats() + CacheStats(hits=3, misses=0, size=0, evictions=0)
    assert (total.hits, total.misses, total.lookups) == (3, 1, 4)
    cache.reset_stats()
    assert cache.stats().lookups == 0
    assert CacheStats(0, 0, 0, 0).hit_ratio == 0.0


def test_expired_entries_go_as_new_ones_come_not_only_when_full() -> None:
    """A worker that sees ever new keys (credentials) must not hold ``max_entries`` of
    them, nearly all dead: expired entries leave at the next store."""
    cache: TTLCache[str, int] = TTLCache(max_entries=1000, ttl_s=2.0, clock=lambda: 0.0)
    cache.put_many(((f"k{i}", i) for i in range(100)), now=0.0)
    cache.lookup(["k5"], now=1.0)  # a hit: moved to the end, not renewed
    cache.put_many([("fresh", 1)], now=1.5)
    assert len(cache) == 101  # nothing expired yet
    cache.put_many([("new", 2)], now=3.0)
    assert len(cache) == 2 and "fresh" in cache and "new" in cache
    assert cache.stats().evictions == 0  # expiry is not an eviction
