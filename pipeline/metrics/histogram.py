"""Mergeable log-scale histograms for medians and percentiles (review time, latency).

Exact quantiles cannot be merged across partitions, revisions or windows; counts in
fixed buckets can (just add them). Buckets follow DDSketch's scheme: bucket ``i``
holds values in ``(GAMMA**(i-1), GAMMA**i]`` and is read back as
``2 * GAMMA**i / (GAMMA + 1)``, so any quantile read from it is within
``RELATIVE_ERROR`` (10%) of a true value of the data. Zero (and anything below it)
has its own bucket ``"z"`` read back as 0. Keys are strings so a histogram is plain
JSON (faust Table state, the internal topic) and an Avro ``map<long>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from functools import lru_cache
from typing import Final

RELATIVE_ERROR: Final = 0.1
GAMMA: Final = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA: Final = math.log(GAMMA)
ZERO: Final = "z"

Histogram = dict[str, int]


@lru_cache(maxsize=65_536)
def bucket_of(value: float) -> str:
    """The bucket key of a value (cached: latencies and review times repeat a lot)."""
    if value <= 0:
        return ZERO
    return str(math.ceil(math.log(value) / _LOG_GAMMA))


def value_of(bucket: str) -> float:
    """The value a bucket stands for (within ``RELATIVE_ERROR`` of everything in it)."""
    if bucket == ZERO:
        return 0.0
    return 2 * GAMMA ** int(bucket) / (GAMMA + 1)


def _order(bucket: str) -> float:
    return -math.inf if bucket == ZERO else int(bucket)


def merge_into(dst: MutableMapping[str, int], src: Mapping[str, int]) -> None:
    """Add ``src``'s counts to ``dst`` (the whole point of fixed buckets)."""
    for bucket, count in src.items():
        dst[bucket] = dst.get(bucket, 0) + count


def normalized(hist: Mapping[str, int]) -> Histogram:
    """Non-zero buckets in value order (stable output for records and tests)."""
    return {b: c for b, c in sorted(hist.items(), key=lambda bc: _order(bc[0])) if c}


def quantile(hist: Mapping[str, int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1), or None for an empty histogram."""
    items = sorted(((b, c) for b, c in hist.items() if c > 0), key=lambda bc: _order(bc[0]))
    total = sum(c for _, c in items)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket, count in items:
        seen += count
        if seen >= rank:
            return float(f"{value_of(bucket):.6g}")
    return float(f"{value_of(items[-1][0]):.6g}")  # pragma: no cover - rank <= total
