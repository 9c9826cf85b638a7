"""How an interval becomes a verdict (protocol §8).

A claim has one or more parts. Each part is a quantity (a difference, a ratio, a width), the
boundary the claim puts it against, and the side of the boundary the claim says it lies on. The
boundary is 0 for a plain direction, or a margin declared in docs/protocol.md §8, which says when
(non-inferiority, non-superiority, "far from", "most of").

The family rule, for a claim of k parts:
- it **holds** when every part's 95 % interval lies on the claimed side of its boundary (an
  intersection-union test: a false claim passes with at most 5 % probability, however many parts);
- it **does not hold** when some part's interval at 1 - 0.05 / k (Bonferroni over the k parts) lies
  on the other side: a true claim is rejected with at most 5 % probability;
- otherwise it is **inconclusive**: the runs do not decide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdlib.stats import CONFIDENCE, Interval, noise_text

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
ABOVE, BELOW = "above", "below"
OPPOSITE = {ABOVE: BELOW, BELOW: ABOVE}

# The margins, declared with their reasons in docs/protocol.md §8 (which says when: before any run on the
# exact pixels was read).
NON_INFERIORITY = -1.0   # points: E1, a student within 1 point of its teacher's accuracy is as accurate
FAR_FROM_FAITHFUL = 0.5  # E1: the student keeps over half the disagreement independent training leaves
JUMP_WINDOW = (0.25, 0.375)  # E3: where the paper's LayerNorm curve jumps (78.96 % at 0.25 ... 97.55 % at 0.375)
NO_HIGHER = 1.0          # points: E4, a rise in agreement under 1 point is no higher agreement
MOST = 0.5               # E3, E6: "most of" a rise or a gap means more than half of it
LEVELLED = 1.0           # points: agreement that rose less than this over the last fifth has levelled off


@dataclass(frozen=True)
class Part:
    """One comparison inside a claim, with everything its verdict was decided from."""

    name: str           # e.g. "against the paper's baseline"
    interval: Interval  # the quantity, in `unit`
    boundary: float     # what the interval is judged against
    claimed: str        # ABOVE or BELOW: the side of the boundary the claim says the quantity lies on
    unit: str           # "points", "" (a ratio), "λ"
    noise: dict         # kdlib.stats.noise_model of the groups it was computed from
    family: int = 1     # parts in the claim (the Bonferroni factor of "does not hold")

    @property
    def against_confidence(self) -> float:
        return 1 - (1 - CONFIDENCE) / self.family

    @property
    def verdict(self) -> str:
        if self.interval.position(self.boundary) == self.claimed:
            return HOLDS
        if self.interval.position(self.boundary, self.against_confidence) == OPPOSITE[self.claimed]:
            return FAILS
        return INCONCLUSIVE

    @property
    def rule(self) -> str:
        side = "above" if self.claimed == ABOVE else "below"
        unit = f" {self.unit}" if self.unit and self.unit != "λ" else ""
        against = (f"its {100 * self.against_confidence:.4g} % interval (Bonferroni over {self.family} parts)"
                   if self.family > 1 else "its interval")
        return (f"holds if the 95 % interval lies {side} {self.boundary:g}{unit}; does not hold if {against} lies "
                f"{OPPOSITE[self.claimed]} it; inconclusive otherwise")

    @property
    def noise_text(self) -> str:
        return noise_text(self.noise)

    def claimed_opposite_words(self) -> str:
        return "its interval lies " + OPPOSITE[self.claimed]

    def reason(self) -> str:
        """Why this part did not hold, in words (empty when it holds). An inconclusive part whose 95 %
        interval lies against the claim says so, and names the wider Bonferroni interval that reaches
        across the boundary: "inside the noise" alone would contradict the interval printed beside it."""
        b = f"{self.boundary:g}"
        if self.verdict == HOLDS:
            return ""
        if self.verdict == FAILS:
            return f"{self.claimed_opposite_words()} {b}, against the claim"
        if self.interval.position(self.boundary) == OPPOSITE[self.claimed]:
            low, high = self.interval.bounds(self.against_confidence)
            d = self.digits
            return (f"{self.claimed_opposite_words()} {b} at 95 %, but its {100 * self.against_confidence:.4g} % "
                    f"interval (Bonferroni over {self.family} parts), [{low:.{d}f}, {high:.{d}f}], reaches "
                    f"across it: not decided against the claim")
        return f"its interval reaches across {b}: inside the noise"

    @property
    def digits(self) -> int:
        """Decimals the part's numbers are printed with: 2 for points, 3 for ratios and other units."""
        return 2 if self.unit == "points" else 3

    def text(self) -> str:
        return self.interval.text(self.digits) + (f" {self.unit}" if self.unit and self.unit != "λ" else "")

    def to_json(self) -> dict:
        return {"name": self.name, "verdict": self.verdict, **self.interval.to_json(), "unit": self.unit,
                "boundary": self.boundary, "claimed_side": self.claimed, "rule": self.rule,
                "against_confidence": self.against_confidence, "noise": self.noise, "noise_text": self.noise_text}


def family(parts: Sequence[tuple]) -> tuple[Part, ...]:
    """Parts from (name, interval, boundary, claimed, unit, noise) tuples, each knowing the family's size."""
    return tuple(Part(*p, family=len(parts)) for p in parts)


def combine(parts: Sequence[Part]) -> str:
    """The family rule: holds if every part holds, does not hold if any part is against, else inconclusive."""
    verdicts = [p.verdict for p in parts]
    if not verdicts:
        return INCONCLUSIVE
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return FAILS if FAILS in verdicts else INCONCLUSIVE


def rise_width(curve: np.ndarray, grid: Sequence[float], low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """The lambda-width over which a curve climbs from `low` to `high` of its rise (E3).

    curve: (points, R) values at the grid's lambdas (ascending), for R replicates at once. The rise
    runs from the first point to the last; each level's lambda is where the piecewise-linear curve
    first reaches it. NaN where the curve does not rise. A width in lambda does not depend on how
    densely the grid samples a step (a straight line over [0, 0.5] has width 0.4 on any grid that
    spans it; a step between two grid points at most their spacing)."""
    c = np.asarray(curve, dtype=np.float64)
    lam = np.asarray(grid, dtype=np.float64)
    rise = c[-1] - c[0]
    out = []
    for level in (low, high):
        target = c[0] + level * rise
        crossing = np.full(c.shape[1], np.nan)
        for k in range(len(lam) - 1):
            a, b = c[k], c[k + 1]
            hit = np.isnan(crossing) & (b >= target) & (a < target)
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = (target - a) / (b - a)
            crossing = np.where(hit, lam[k] + frac * (lam[k + 1] - lam[k]), crossing)
        out.append(crossing)
    width = out[1] - out[0]
    return np.where(rise > 0, width, np.nan)



def interpolate(curve: np.ndarray, grid: Sequence[float], at: float) -> np.ndarray:
    """The piecewise-linear curve (points, R) at lambda `at` (inside the grid)."""
    lam = np.asarray(grid, dtype=np.float64)
    if not lam[0] <= at <= lam[-1]:
        raise ValueError(f"lambda {at} lies outside the grid {list(grid)}")
    k = min(int(np.searchsorted(lam, at, side="right")) - 1, len(lam) - 2)
    w = (at - lam[k]) / (lam[k + 1] - lam[k])
    return (1 - w) * curve[k] + w * curve[k + 1]


def window_share(curve: np.ndarray, grid: Sequence[float], window: tuple[float, float] = JUMP_WINDOW) -> np.ndarray:
    """The share of a curve's rise (first point to last) that happens inside the lambda `window` (E3).

    curve: (points, R) at the grid's lambdas (ascending), R replicates at once; the window's ends are
    read off the piecewise-linear curve, so any grid spanning the window gives the same quantity. A
    ratio of two differences of means: smooth, so its noise follows from the linearisation. A steady
    rise over [0, 0.5] puts 0.25 of itself in a window of 0.125; a jump inside the window, 1."""
    c = np.asarray(curve, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (interpolate(c, grid, window[1]) - interpolate(c, grid, window[0])) / (c[-1] - c[0])
