"""Numbers over runs as the book prints them: mean ± std over seeds, differences in words, and the
display names of the models (one definition for the notebooks and kdlib.claims)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NORM_NAMES = {"layer": "LayerNorm", "batch": "BatchNorm"}  # a spec's `norm` -> its name in tables and prose


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(values: Sequence[float] | float, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """'m ± s' of values x scale (e.g. scale=100 for percentages), then `unit` (" %"); a lone value
    without ± ."""
    if isinstance(values, (int, float)):
        return f"{values * scale:.{digits}f}{unit}"
    m, s = mean_std([v * scale for v in values])
    return (f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}") + unit


def metric(runs: Sequence, key: str, scale: float = 1.0) -> list[float]:
    """`scale` x the metric `key` of each run (scale=100: a fraction as a percentage)."""
    return [scale * r.metrics[key] for r in runs]


def fmt_metric(runs: Sequence, key: str, scale: float = 1.0, digits: int = 2) -> str:
    """'m ± s' over runs of metric `key` x scale: fmt_metric(students, "test_acc", 100) -> '61.20 ± 0.35'."""
    return fmt([r.metrics[key] for r in runs], scale, digits)


def mean_metric(runs: Sequence, key: str, scale: float = 1.0) -> float:
    """The mean over runs of metric `key` x scale."""
    return mean_std(metric(runs, key, scale))[0]


def points(diff: float, digits: int = 2) -> str:
    """A signed difference in percentage points as words: '3.10 points higher' / 'lower'."""
    if abs(diff) < 0.5 * 10**-digits:
        return "no different"
    return f"{abs(diff):.{digits}f} points {'higher' if diff > 0 else 'lower'}"
