"""The one percentile convention every benchmark and load test of this repository reports.

Nearest rank (no interpolation): the smallest sample such that at least ``p`` % of the samples
are at or below it. ``percentile(xs, 99)`` of 100 samples is the 99th smallest; of 10 samples,
the largest. Empty input is NaN.
"""

from __future__ import annotations

import math


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile (``p`` in 0-100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
