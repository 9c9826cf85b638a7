"""The noise a claim is judged against: variance components over seeds and images (protocol §8).

The unit of replication is a training run; the test images are nested in the runs. A setting's
per-image values (1.0 where a student agrees with its teacher, its KL on an image, ...) follow

    y[r, i] = mu + a[r] + b[i] + e[r, i]

with a[r] the run's own effect (its seed's initial weights and data order), b[i] the image's and
e[r, i] what is left, the run's luck on that image. A claim's statistic is a function `f` of some
settings' means (a difference, a ratio, a width read off a curve). Linearised at the measured
means (a numerical gradient), its error is a weighted sum of the groups' errors, whose variance
has two parts:

- **seeds.** Runs come in *units*, independent draws of whatever a seed decides: one run, or the
  runs that share a seed's initial weights and data order across settings (seed pairing, `block`),
  or one run's several metrics (its agreement and its KL). Within a block the linearised unit
  values w[u] = sum_g grad_g * mean_g[u] are independent and identically distributed, so
  Var_u(w) / U estimates their part, with U - 1 degrees of freedom. This already holds the
  interaction e averaged over the test set.
- **images.** Another test set of the same size would give other numbers. Per image, the
  linearised value q[i] = sum_g grad_g * mean over g's runs of y[., i] varies by Var(b-part) plus
  the interaction averaged over each block's runs, which the seed part already counts: that share
  (the two-way residual variance of units x images, over U) is taken out, so no noise is counted
  twice. A `fixed` group (the one teacher a claim speaks of) is not a sample of seeds: its values
  are part of the images' share, whole.

The interval adds the two parts, each with the t quantile of its own degrees of freedom:
estimate ± sqrt(t_seeds^2 * v_seeds + t_images^2 * v_images) (Banerjee's interval), where the seed
part has U - 1 degrees of freedom (Welch-Satterthwaite over several unpaired blocks) and the images'
N - 1. A single t at the pooled degrees of freedom would be liberal: with 2 seeds a seed part that
came out small by chance would borrow the images' many degrees of freedom. With 2 or 3 seeds the
seed quantile is large (12.7 at one degree of freedom): the interval is as wide as the runs allow.
The coverage tests (tests/test_stats.py) show it covers 93-97 % at 2, 3 and 5 seeds. A block of one
unit has no seed variance to estimate: its interval is infinite (serialised as null), and the claim
inconclusive.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _sp

CONFIDENCE = 0.95  # two-sided


@dataclass(frozen=True)
class Group:
    """The runs of one setting, as the values a statistic is computed from.

    values: (runs, images) per-image values, or (runs,) one number per run (e.g. CKA).
    units: the unit each run belongs to (e.g. its seed); None: each run is a unit of its own.
    block: groups naming the same block share units: their runs with the same unit label are one
        draw (students of one seed in two settings, or two metrics of the same runs). None: a block
        of its own. Every group of a block has the same unit labels, each with as many runs.
    fixed: not a sample of seeds (the teacher a claim speaks of): only its images are noise.
    images: the set of images its per-image values are on (None: the one set every group shares).
        Groups on different sets (the test images of 5 and of 20 classes) have independent image
        noise: each set's part is estimated from its own groups, and the parts add.
    """

    values: np.ndarray
    units: tuple[Hashable, ...] | None = None
    block: str | None = None
    fixed: bool = False
    images: str | None = None

    def __post_init__(self):
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim not in (1, 2) or v.shape[0] == 0 or (v.ndim == 2 and v.shape[1] == 0):
            raise ValueError(f"values must be (runs,) or (runs, images) with at least one of each, got shape {v.shape}")
        object.__setattr__(self, "values", v)
        units = tuple(range(v.shape[0])) if self.units is None else tuple(self.units)
        if len(units) != v.shape[0]:
            raise ValueError(f"units must name one unit per run: {v.shape[0]} runs, {len(units)} units")
        counts = {u: units.count(u) for u in units}
        if len(set(counts.values())) > 1:
            raise ValueError(f"units must hold equally many runs each, got {counts}")
        object.__setattr__(self, "units", units)

    @property
    def runs(self) -> int:
        return self.values.shape[0]

    @property
    def per_image(self) -> bool:
        return self.values.ndim == 2

    @property
    def labels(self) -> list:
        """The unit labels, in first-seen order."""
        return list(dict.fromkeys(self.units))

    def unit_means(self) -> np.ndarray:
        """(units, images) or (units,): the mean of each unit's runs, in `labels` order."""
        idx = np.asarray([[i for i, u in enumerate(self.units) if u == lab] for lab in self.labels])
        return self.values[idx].mean(axis=1)


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """The q quantile of Student's t with `df` degrees of freedom (the normal's for infinite df).
    Cached: a report asks for the same few (q, df) thousands of times, and scipy's is slow."""
    return float(_sp.t.ppf(q, df) if math.isfinite(df) else _sp.norm.ppf(q))


@dataclass(frozen=True)
class Interval:
    """A statistic as measured, its standard error and degrees of freedom, and its 95 % interval.

    se: sqrt(seed part + image part); df: their Welch-Satterthwaite degrees of freedom (shown, not
    used for the interval); seeds / images: the two variance parts (in the statistic's units
    squared); units: the units of each block; components: (variance, df) of the parts the interval
    adds (`half_width`)."""

    estimate: float
    se: float
    df: float
    seeds: float = 0.0
    images: float = 0.0
    units: Mapping[str, int] = field(default_factory=dict)
    components: tuple[tuple[float, float], ...] = ()  # (variance, degrees of freedom) of each part

    def half_width(self, confidence: float = CONFIDENCE) -> float:
        """sqrt(sum_j t_j^2 * v_j): each variance part with the t quantile of its own degrees of
        freedom (Banerjee's interval: never liberal, exact when one part is all there is)."""
        if not (math.isfinite(self.se) and math.isfinite(self.estimate)):
            return math.inf
        parts = self.components or ((self.se ** 2, self.df),)
        q = 0.5 + confidence / 2
        return math.sqrt(sum(v * t_quantile(q, d) ** 2 for v, d in parts if v > 0))

    def bounds(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The two-sided `confidence` interval (infinite without a variance estimate)."""
        h = self.half_width(confidence)
        if not math.isfinite(h):
            return -math.inf, math.inf
        return self.estimate - h, self.estimate + h

    @property
    def low(self) -> float:
        return self.bounds()[0]

    @property
    def high(self) -> float:
        return self.bounds()[1]

    def position(self, boundary: float = 0.0, confidence: float = CONFIDENCE) -> str:
        """"above" when the whole interval lies above `boundary`, "below" when below it, else "within"."""
        low, high = self.bounds(confidence)
        if low > boundary:
            return "above"
        if high < boundary:
            return "below"
        return "within"

    def text(self, digits: int = 2, unit: str = "") -> str:
        """'3.10 [1.20, 5.00]' (the estimate and its 95 % interval; 'inf' where it has no bound)."""
        low, high = self.bounds()
        return f"{self.estimate:.{digits}f}{unit} [{_num(low, digits)}, {_num(high, digits)}]"

    def to_json(self) -> dict:
        """Valid JSON (no Infinity or NaN: a missing bound is null)."""
        low, high = self.bounds()
        return {"estimate": finite(self.estimate), "interval": [finite(low), finite(high)], "se": finite(self.se),
                "df": finite(self.df), "variance": {"seeds": finite(self.seeds), "images": finite(self.images)},
                "units": dict(self.units), "confidence": CONFIDENCE}


@dataclass(frozen=True)
class CorrelationInterval(Interval):
    """A rank correlation over n units with its interval on Fisher's z scale (protocol §9, B4).

    estimate: Spearman's rho; se: the standard error of atanh(rho), Bonett and Wright's
    sqrt((1 + rho^2 / 2) / (n - 3)). The bounds are tanh(atanh(rho) -/+ z * se): inside [-1, 1],
    and [-1, 1] itself when n <= 3 (nothing measured)."""

    def bounds(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        if not (math.isfinite(self.se) and math.isfinite(self.estimate)):
            return -1.0, 1.0
        z = math.atanh(min(max(self.estimate, -1 + 1e-12), 1 - 1e-12))
        q = _sp.norm.ppf(0.5 + confidence / 2)
        return math.tanh(z - q * self.se), math.tanh(z + q * self.se)

    def half_width(self, confidence: float = CONFIDENCE) -> float:
        low, high = self.bounds(confidence)
        return (high - low) / 2


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> CorrelationInterval:
    """Spearman's correlation of paired values, one pair per unit, with its Fisher-z interval
    (`CorrelationInterval`; coverage proved in tests/test_stats.py)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d and of one length, got shapes {x.shape} and {y.shape}")
    n = len(x)
    units = {"units": n}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return CorrelationInterval(math.nan, math.inf, math.nan, units=units)
    rho = float(_sp.spearmanr(x, y)[0])
    se = math.sqrt((1 + rho * rho / 2) / (n - 3)) if n > 3 else math.inf
    return CorrelationInterval(rho, se, n - 3, units=units)


def finite(x: float) -> float | None:
    """x, or None when it is infinite or NaN (JSON has neither)."""
    return float(x) if x is not None and math.isfinite(x) else None


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def estimate(groups: Mapping[str, Group], statistic: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Interval:
    """`statistic` of the groups' means, with its standard error over seeds and images.

    Each block keeps its own between-seed variance (no common spread is assumed: E3's points of one
    curve spread more where the curve climbs), and the blocks' parts add with Welch-Satterthwaite
    degrees of freedom.

    statistic: maps {group name: (R,) array of that group's mean} to an (R,) array, for R points at
        once (the measured means and the perturbed ones of the numerical gradient).
    Every per-image group of one image set (`Group.images`) must cover the same images, in the same
    order; the sets' image parts add.
    """
    if not groups:
        raise ValueError("groups must hold at least one group of runs")
    names = list(groups)
    sets = _image_sets(groups)
    blocks = _blocks(groups)

    means = np.array([groups[n].values.mean() for n in names])
    value, grad = _gradient(names, means, statistic)
    if not math.isfinite(value) or not np.all(np.isfinite(grad)):
        return Interval(value, math.inf, math.nan)

    g = dict(zip(names, grad))
    seed_parts, units = [], {}
    for block, members in blocks.items():
        w = sum(g[n] * _run_level(groups[n].unit_means()) for n in members)
        u = len(w)
        units[block] = u
        if all(g[n] == 0 for n in members):
            continue
        seed_parts.append((np.var(w, ddof=1) / u if u > 1 else math.inf, u - 1))

    image_parts = []
    for members in sets.values():
        n_images = groups[members[0]].values.shape[1]
        if n_images < 2:
            continue
        q = sum(g[n] * groups[n].values.mean(0) for n in members)
        # Var_i(q) holds the images' part plus the interaction averaged over each block's units, which
        # the seed part already counts: that share is taken out.
        spread, counted = float(np.var(q, ddof=1)), 0.0
        for block_members in blocks.values():
            x = sum(g[n] * groups[n].unit_means() for n in block_members if n in members)
            if isinstance(x, np.ndarray) and x.shape[0] > 1:
                counted += _residual_variance(x) / x.shape[0]
        if spread > counted:
            image_parts.append(((spread - counted) / n_images, n_images - 1))
    image_var = sum(v for v, _ in image_parts)
    image_df = _satterthwaite(image_parts) if image_parts else 0

    seeds = sum(v for v, _ in seed_parts)
    total = seeds + image_var
    if not math.isfinite(total):
        return Interval(value, math.inf, math.nan, seeds, image_var, units)
    # The seed blocks pool by Welch-Satterthwaite; the seeds and the images then each keep their own
    # t quantile (`Interval.half_width`): with one or two seeds per block a seed part that came out
    # small by chance would otherwise lend the interval the images' many degrees of freedom.
    seed_df = _satterthwaite([(v, d) for v, d in seed_parts if v > 0])
    pieces = tuple(p for p in ((seeds, seed_df), (image_var, image_df)) if p[0] > 0)
    df = _satterthwaite(pieces)
    return Interval(value, math.sqrt(total), df, seeds, image_var, units, pieces)


def _image_sets(groups: Mapping[str, Group]) -> dict[str | None, list[str]]:
    """Image set -> the names of its per-image groups, each set's groups covering the same images."""
    sets: dict[str | None, list[str]] = {}
    for name, g in groups.items():
        if g.per_image:
            sets.setdefault(g.images, []).append(name)
    for key, members in sets.items():
        sizes = sorted({groups[n].values.shape[1] for n in members})
        if len(sizes) > 1:
            which = "per-image groups" if key is None else f"per-image groups of image set {key!r}"
            raise ValueError(f"{which} must cover the same images; got sizes {sizes} (name groups on other "
                             "images with Group(images=...))")
    return sets


def _satterthwaite(pieces: Sequence[tuple[float, float]]) -> float:
    """The degrees of freedom of a sum of variance estimates, (sum v)^2 / sum(v^2 / df)."""
    denom = sum(v * v / d for v, d in pieces if v > 0)
    total = sum(v for v, _ in pieces)
    return total * total / denom if denom > 0 else math.inf


def _blocks(groups: Mapping[str, Group]) -> dict[str, list[str]]:
    """block name -> its groups (fixed groups belong to none); every group of a block has the same units."""
    out: dict[str, list[str]] = {}
    for name, grp in groups.items():
        if not grp.fixed:
            out.setdefault(grp.block if grp.block is not None else f"group {name}", []).append(name)
    for block, members in out.items():
        labels = {tuple(sorted(map(repr, groups[n].labels))) for n in members}
        if len(labels) > 1:
            raise ValueError(f"groups of block {block!r} must have the same units; got "
                             + "; ".join(f"{n}: {groups[n].labels}" for n in members))
        order = groups[members[0]].labels
        for n in members:  # align every group's unit order with the first one's
            if groups[n].labels != order:
                raise ValueError(f"groups of block {block!r} must list their units in the same order; "
                                 f"{n} has {groups[n].labels}, {members[0]} {order}")
    return out


def _run_level(unit_means: np.ndarray) -> np.ndarray:
    """(units,): each unit's mean over images (or its one value)."""
    return unit_means.mean(1) if unit_means.ndim == 2 else unit_means


def _residual_variance(x: np.ndarray) -> float:
    """The interaction variance of a (units, images) table: its two-way residual mean square."""
    u, n = x.shape
    resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()
    return float((resid ** 2).sum() / ((u - 1) * (n - 1))) if n > 1 else 0.0


def _gradient(names: Sequence[str], means: np.ndarray, statistic) -> tuple[float, np.ndarray]:
    """The statistic at `means` and its central-difference gradient, in one vectorised call."""
    k = len(names)
    h = 1e-6 * np.maximum(1.0, np.abs(means))
    points = np.tile(means, (2 * k + 1, 1))
    points[1:k + 1] += np.diag(h)
    points[k + 1:] -= np.diag(h)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(statistic({n: points[:, j] for j, n in enumerate(names)}), dtype=np.float64).reshape(-1)
    value = float(out[0])
    grad = (out[1:k + 1] - out[k + 1:]) / (2 * h)
    return value, grad


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The plain t interval of a mean (the reference the coverage test compares with)."""
    v = np.asarray(values, dtype=np.float64)
    return Interval(float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))), len(v) - 1).bounds(confidence)


def noise_model(groups: Mapping[str, Group]) -> dict:
    """What the noise model used for `groups`: units per block, images (summed over image sets, with
    `image_sets` when there are several), and which groups were fixed."""
    sets = {k: groups[m[0]].values.shape[1] for k, m in _image_sets(groups).items()}
    blocks = _blocks(groups)
    out = {"units": {b: len(groups[m[0]].labels) for b, m in blocks.items()},
           "runs_per_unit": {b: groups[m[0]].runs // len(groups[m[0]].labels) for b, m in blocks.items()},
           "images": sum(sets.values()),
           "fixed": [n for n, g in groups.items() if g.fixed]}
    if len(sets) > 1:
        out["image_sets"] = {str(k): n for k, n in sets.items()}
    return out


def noise_text(model: dict) -> str:
    """The noise model in words, for a claim's 'judged against' line (a `model` entry says it whole)."""
    if "model" in model:
        return f"{int(100 * CONFIDENCE)} % {model['model']}"
    blocks = model["units"]
    seeds = ", ".join(f"{b.removeprefix('group ')}: {u}" for b, u in blocks.items())
    parts = [f"seeds ({seeds} unit{'s' if sum(blocks.values()) != 1 else ''})" if blocks else "no seeds"]
    if model["images"]:
        parts.append(f"{model['images']:,} images")
    fixed = f"; fixed: {', '.join(model['fixed'])}" if model["fixed"] else ""
    return f"{int(100 * CONFIDENCE)} % t interval over {' and '.join(parts)}{fixed}"
