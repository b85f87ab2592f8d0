"""Median, spread and percentiles over a handful of runs or samples (pure)."""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: with 20 samples p99 is the largest one."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def spread_pct(values: Sequence[float]) -> float | None:
    """(max - min) / median, in percent: how far apart the repeated runs landed."""
    if len(values) < 2:
        return 0.0 if values else None
    mid = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / mid if mid else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b
