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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdlib.reference import PLANNING
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
class Effect:
    """How large a part's effect must be to matter, and what a plan expects of it (protocol §8).

    A part whose boundary is a plain direction (0: "X raises agreement") is judged against `delta`,
    its smallest effect that matters: it holds when its interval lies beyond the boundary by more
    than delta, and does not hold when its interval lies short of that, so an effect too small to
    matter is decided instead of left open. A part whose boundary is itself a declared margin
    (non-inferiority, "far from", "most of") has delta 0."""

    delta: float = 0.0      # the smallest effect that matters, beyond the boundary, in the part's unit
    reason: str = "the boundary is itself the claim's declared margin"
    planning: float | None = None  # the effect the paper or the study published for this quantity (None: none)
    source: str = ""               # where `planning` comes from
    equivalence: float | None = None  # "about the boundary" when the 90 % interval lies within ± this

    def __post_init__(self):
        if not self.delta >= 0:
            raise ValueError(f"delta must be >= 0, got {self.delta}")


MARGIN = Effect()  # a part whose boundary is its declared margin

# The smallest effects that matter (protocol §8, with their reasons), in each part's unit.
AGREEMENT_DELTA = Effect(1.0, "one point of test agreement: 100 of the paper's 10,000 test images, three times the "
                              "spread of the study's ten teacher pairs (63.19 ± 0.33 %)")
CKA_DELTA = Effect(0.005, "less than half the paper's own difference at stage 1 (0.951 - 0.939 = 0.012)")
KL_DELTA = Effect(0.01, "a quarter of the fall the study measured (0.465 to 0.421 nats), 2 % of the KL itself")
FRACTION_DELTA = Effect(0.02, "a fifth of the study's difference between the fractions (0.095 of the KL removed, "
                              "-0.008 of the disagreement)")
# E6: "closes most of the gap" is its margin (MOST); a fraction near it is read as "about half" when its
# 90 % interval lies within 0.5 ± 0.1 (two one-sided tests): a tenth of the gap either way
ABOUT_HALF = Effect(equivalence=0.10)
SHARE_DELTA = Effect(0.10, "a tenth of the disagreement independent training leaves: at the study's teacher-pair "
                           "agreement (63 %) about 3.7 points of agreement")


def planned(effect: Effect, key: str) -> Effect:
    """`effect` with its planning effect: what the paper or the study published for the part `key`
    (kdlib.reference.PLANNING), the effect the seeds a plan needs are counted at."""
    value, source = PLANNING[key]
    return dataclasses.replace(effect, planning=float(value), source=source)


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
    effect: Effect = MARGIN  # its smallest effect that matters (delta) and its planning effect

    @property
    def against_confidence(self) -> float:
        return 1 - (1 - CONFIDENCE) / self.family

    @property
    def threshold(self) -> float:
        """What the interval is held against: the boundary moved by delta towards the claimed side."""
        return self.boundary + (self.effect.delta if self.claimed == ABOVE else -self.effect.delta)

    @property
    def verdict(self) -> str:
        if self.interval.position(self.threshold) == self.claimed:
            return HOLDS
        if self.interval.position(self.threshold, self.against_confidence) == OPPOSITE[self.claimed]:
            return FAILS
        return INCONCLUSIVE

    def _threshold_words(self) -> str:
        unit = f" {self.unit}" if self.unit and self.unit != "λ" else ""
        if not self.effect.delta:
            return f"{self.boundary:g}{unit}"
        return (f"{self.threshold:g}{unit} ({self.boundary:g} {'+' if self.claimed == ABOVE else '-'} δ = "
                f"{self.effect.delta:g}, the smallest effect that matters)")

    @property
    def rule(self) -> str:
        side = "above" if self.claimed == ABOVE else "below"
        against = (f"its {100 * self.against_confidence:.4g} % interval (Bonferroni over {self.family} parts)"
                   if self.family > 1 else "its interval")
        return (f"holds if the 95 % interval lies {side} {self._threshold_words()}; does not hold if {against} "
                f"lies {OPPOSITE[self.claimed]} it; inconclusive otherwise")

    @property
    def noise_text(self) -> str:
        return noise_text(self.noise)

    def claimed_opposite_words(self) -> str:
        return "its interval lies " + OPPOSITE[self.claimed]

    def reason(self) -> str:
        """Why this part did not hold, in words (empty when it holds). An inconclusive part whose 95 %
        interval lies against the claim says so, and names the wider Bonferroni interval that reaches
        across the threshold: "inside the noise" alone would contradict the interval printed beside it."""
        b = f"{self.threshold:g}"
        small = " (any effect is smaller than the smallest that matters, δ = " + f"{self.effect.delta:g})" \
            if self.effect.delta else ""
        if self.verdict == HOLDS:
            return ""
        if self.verdict == FAILS:
            return f"{self.claimed_opposite_words()} {b}, against the claim{small}"
        if self.interval.position(self.threshold) == OPPOSITE[self.claimed]:
            low, high = self.interval.bounds(self.against_confidence)
            d = self.digits
            return (f"{self.claimed_opposite_words()} {b} at 95 %, but its {100 * self.against_confidence:.4g} % "
                    f"interval (Bonferroni over {self.family} parts), [{low:.{d}f}, {high:.{d}f}], reaches "
                    f"across it: not decided against the claim")
        return f"its interval reaches across {b}: inside the noise"

    def finding(self) -> str:
        """What a part that sits about its boundary shows, when it declares an equivalence range: "about
        0.5" when its 90 % interval lies inside boundary ± equivalence (two one-sided tests at 5 %)."""
        eq = self.effect.equivalence
        if eq is None:
            return ""
        low, high = self.interval.bounds(1 - 2 * (1 - CONFIDENCE))  # 90 %: two one-sided 5 % tests
        if self.boundary - eq < low and high < self.boundary + eq:
            d = self.digits
            return (f"about {self.boundary:g}: its 90 % interval [{low:.{d}f}, {high:.{d}f}] lies within "
                    f"{self.boundary:g} ± {eq:g} (two one-sided tests at 5 %)")
        return ""

    @property
    def digits(self) -> int:
        """Decimals the part's numbers are printed with: 2 for points, 3 for ratios and other units."""
        return 2 if self.unit == "points" else 3

    def text(self) -> str:
        return self.interval.text(self.digits) + (f" {self.unit}" if self.unit and self.unit != "λ" else "")

    def to_json(self) -> dict:
        e = self.effect
        return {"name": self.name, "verdict": self.verdict, **self.interval.to_json(), "unit": self.unit,
                "boundary": self.boundary, "delta": e.delta, "delta_reason": e.reason, "threshold": self.threshold,
                "planning_effect": e.planning, "planning_source": e.source, "equivalence": e.equivalence,
                "finding": self.finding(), "claimed_side": self.claimed, "rule": self.rule,
                "against_confidence": self.against_confidence, "noise": self.noise, "noise_text": self.noise_text}


def family(parts: Sequence[tuple]) -> tuple[Part, ...]:
    """Parts from (name, interval, boundary, claimed, unit, noise[, effect]) tuples, each knowing the
    family's size."""
    return tuple(Part(*p[:6], family=len(parts), effect=p[6] if len(p) > 6 else MARGIN) for p in parts)


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
