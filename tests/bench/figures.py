"""The shape every benchmark module's main() returns: figure name -> its distribution.

A figure is a dict with min, median, p99 and n (the number of samples); "value", when present,
is its headline number, else the headline is the median (p99 for a name that says p99).
tests/bench/run.py gathers them into bench-results.json.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

MIN_SAMPLES = 30  # every figure of `make bench` comes from at least this many


def p99(samples: Sequence[float]) -> float:
    """Nearest-rank 99th percentile: with fewer than 100 samples, the largest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def distribution(samples: Sequence[float], *, digits: int = 4, **extra: Any) -> dict[str, Any]:
    if not samples:
        raise ValueError("a figure needs at least one sample")
    return {
        "min": round(min(samples), digits),
        "median": round(statistics.median(samples), digits),
        "p99": round(p99(samples), digits),
        "n": len(samples),
        **extra,
    }


def is_figure(value: Any) -> bool:
    return isinstance(value, dict) and ("median" in value or "value" in value)


def headline(name: str, figure: dict[str, Any]) -> float:
    if "value" in figure:
        return float(figure["value"])
    if "p99" in name and "p99" in figure:
        return float(figure["p99"])
    return float(figure["median"])
