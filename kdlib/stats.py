"""The noise a claim is judged against: a paired bootstrap over images and over seeds (protocol §8).

A claim compares settings (students at tau 1 and at tau 4, say), each a group of runs. What we
measure of a run is a mean over images (agreement, accuracy, KL per image) or a number per run
(CKA). Two things make a measured difference uncertain:

- the images: another test set of the same size would give other numbers. Every replicate
  resamples the images with replacement, the same images for every run (paired: a difference
  between two runs on the same images has far less noise than either number alone);
- the seeds: another seed gives another network. Where a group holds several runs (seeds, a
  sample of the setting), every replicate also resamples them, with the small-sample correction
  that gives the resampled mean the variance s^2 / n of the usual standard error (a plain
  bootstrap of n values has (n - 1) / n of it: half, for two seeds). A group of one run, or a run
  that is itself the object of the claim (the teacher a student is compared with), is kept fixed.

`bootstrap` returns the statistic on the data as measured with a 95 % percentile interval over
REPLICATES replicates; `Interval.position` says whether the interval lies above, below or around a
threshold, which is how every claim turns numbers into a verdict (kdlib.claims). The replicates
come from a fixed seed, so a verdict is a function of the runs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95   # two-sided percentile interval
REPLICATES = 2000   # bootstrap replicates
SEED = 20211206     # of the replicates' generator (NeurIPS 2021's first day), fixed: verdicts are reproducible
_CHUNK = 250        # replicates per block: (block, images) weights stay small at 50,000 images

POSITIONS = ("above", "below", "within")


@dataclass(frozen=True)
class Group:
    """The runs of one setting, as the values a statistic is computed from.

    values: (runs, images) per-image values (e.g. 1.0 where two models agree), or (runs,) one
        number per run (e.g. CKA, which is not a mean over images).
    fixed: True when the runs are not a sample of seeds (a single teacher the students are
        compared with): they are never resampled, only their images are.
    setting: groups that name the same setting hold different values of the same runs (in the same
        order: the agreement and the KL of one set of students, say); a replicate then draws the
        same seeds for all of them. None: this group's own runs.
    """

    values: np.ndarray
    fixed: bool = False
    setting: str | None = None

    def __post_init__(self):
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim not in (1, 2) or v.shape[0] == 0 or (v.ndim == 2 and v.shape[1] == 0):
            raise ValueError(f"values must be (runs,) or (runs, images) with at least one of each, got shape {v.shape}")
        object.__setattr__(self, "values", v)

    @property
    def runs(self) -> int:
        return self.values.shape[0]

    @property
    def per_image(self) -> bool:
        return self.values.ndim == 2

    @property
    def resampled(self) -> bool:
        """Whether the replicates resample this group's runs (seeds)."""
        return not self.fixed and self.runs > 1


@dataclass(frozen=True)
class Interval:
    """A statistic as measured (`estimate`) and its bootstrap distribution's summary."""

    estimate: float
    low: float    # (1 - CONFIDENCE) / 2 quantile of the replicates
    high: float   # (1 + CONFIDENCE) / 2 quantile
    se: float     # standard deviation of the replicates

    def position(self, threshold: float = 0.0) -> str:
        """"above" when the whole interval lies above `threshold`, "below" when below it, else "within"."""
        if self.low > threshold:
            return "above"
        if self.high < threshold:
            return "below"
        return "within"

    def scaled(self, factor: float) -> "Interval":
        """The same interval in other units (e.g. x 100 for percentage points)."""
        lo, hi = sorted((self.low * factor, self.high * factor))
        return Interval(self.estimate * factor, lo, hi, abs(self.se * factor))

    def text(self, digits: int = 2, unit: str = "") -> str:
        """'3.10 [1.20, 5.00]' (the estimate and its 95 % interval)."""
        return f"{self.estimate:.{digits}f}{unit} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap(groups: Mapping[str, Group], statistic: Callable[[dict[str, np.ndarray]], np.ndarray],
              replicates: int = REPLICATES, seed: int = SEED) -> Interval:
    """`statistic` of the groups' means, with its paired bootstrap interval.

    statistic: maps {group name: (R,) array of that group's mean value} to an (R,) array, for R
        replicates at once (it is also called with R = 1 for the estimate on the data as measured).
    Every per-image group must cover the same images (they are resampled together).
    """
    if not groups:
        raise ValueError("groups must hold at least one group of runs")
    sizes = {g.values.shape[1] for g in groups.values() if g.per_image}
    if len(sizes) > 1:
        raise ValueError(f"per-image groups must cover the same images; got sizes {sorted(sizes)}")
    n_images = sizes.pop() if sizes else 0
    for setting in {g.setting for g in groups.values()} - {None}:
        runs = {g.runs for g in groups.values() if g.setting == setting}
        if len(runs) > 1:
            raise ValueError(f"groups of setting {setting!r} must hold the same runs; got {sorted(runs)} runs")
    rng = np.random.default_rng(seed)

    def means(weights: np.ndarray | None) -> dict[str, np.ndarray]:
        """Each group's mean value per replicate, (R,), from image weights (R, N) (None: as measured)."""
        out, drawn_seeds = {}, {}  # setting -> the runs this block of replicates draws
        for name, g in groups.items():
            if g.per_image:
                per_run = (g.values.mean(1)[None, :] if weights is None else weights @ g.values.T)  # (R, runs)
            else:
                per_run = np.broadcast_to(g.values, (1 if weights is None else len(weights), g.runs))
            centre = per_run.mean(1)
            if weights is not None and g.resampled:
                key = g.setting if g.setting is not None else ("group", name)
                if key not in drawn_seeds:
                    drawn_seeds[key] = rng.integers(0, g.runs, size=per_run.shape)
                drawn = np.take_along_axis(per_run, drawn_seeds[key], axis=1).mean(1)
                centre = centre + np.sqrt(g.runs / (g.runs - 1)) * (drawn - centre)
            out[name] = centre
        return out

    def evaluate(weights, r):
        with np.errstate(divide="ignore", invalid="ignore"):  # a ratio may divide by zero: judged below
            return np.asarray(statistic(means(weights)), dtype=np.float64).reshape(r)

    estimate = float(evaluate(None, 1)[0])
    draws = []
    for start in range(0, replicates, _CHUNK):
        r = min(_CHUNK, replicates - start)
        weights = (rng.multinomial(n_images, np.full(n_images, 1 / n_images), size=r) / n_images if n_images
                   else np.zeros((r, 0)))
        draws.append(evaluate(weights, r))
    draws = np.concatenate(draws)
    finite = draws[np.isfinite(draws)]
    if len(finite) < 0.9 * len(draws):  # e.g. a ratio whose denominator is often zero
        return Interval(estimate, -np.inf, np.inf, np.inf)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), float(finite.std(ddof=1)))


def describe_noise(groups: Mapping[str, Group]) -> str:
    """What a bootstrap over `groups` resamples, in words, for a claim's 'noise' field."""
    images = {g.values.shape[1] for g in groups.values() if g.per_image}
    seeds = list(dict.fromkeys(f"{g.setting or name}: {g.runs}" for name, g in groups.items() if g.resampled))
    over = [f"{images.pop():,} images"] if images else []
    over.append(f"seeds ({', '.join(seeds)} runs)" if seeds else "no seeds (one run per setting)")
    return f"{int(100 * CONFIDENCE)} % interval of {REPLICATES:,} bootstrap replicates over {' and '.join(over)}"
