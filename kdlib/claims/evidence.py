"""What a claim reads from runs: per-image values on a split, as groups for kdlib.stats.

Every run is a unit of its own seed (`spec.seed`); groups given the same `block` pair their runs
seed by seed (settings that share a seed's initial weights or data order, or two metrics of the
same runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from kdlib import metrics
from kdlib.losses import ensemble_logits
from kdlib.claims.rules import LEVELLED
from kdlib.stats import Group


def seeds_of(runs: Sequence) -> tuple[int, ...]:
    return tuple(r.spec.seed for r in runs)


def group(values, runs: Sequence, block: str | None = None) -> Group:
    """`values` of `runs` (one row per run), each run the unit of its seed."""
    return Group(values, units=seeds_of(runs), block=block)


def paired(*settings: Sequence) -> list[list]:
    """The runs of each setting whose seed every setting has, in the first setting's seed order:
    what a seed-paired comparison can use (E1's three students against two teacher-init ones, say)."""
    common = set.intersection(*(set(seeds_of(runs)) for runs in settings))
    order = [s for s in seeds_of(settings[0]) if s in common]
    return [sorted((r for r in runs if r.spec.seed in common), key=lambda r: order.index(r.spec.seed))
            for runs in settings]


def fixed(values) -> Group:
    """Values of runs a claim speaks of (its teachers): only their images are noise."""
    return Group(values, fixed=True)


def predictions(run, split: str = "test") -> np.ndarray:
    return run.predictions(split).numpy()


def teacher_logits(teacher_runs: Sequence, split: str = "test") -> torch.Tensor:
    """The (ensemble) teacher's logits on a split, from what its member runs stored."""
    stored = [r.test_logits() if split == "test" else r.stored_logits(split) for r in teacher_runs]
    if any(s is None for s in stored):
        raise KeyError(f"a teacher run stored no logits on {split!r}")
    return stored[0] if len(stored) == 1 else ensemble_logits(torch.stack(stored))


def agreement_per_image(teacher_runs: Sequence, runs: Sequence, split: str = "test") -> np.ndarray:
    """(runs, images): 1.0 where the run's top-1 prediction equals the (ensemble) teacher's."""
    t = teacher_logits(teacher_runs, split).argmax(1).numpy()
    return np.stack([(predictions(r, split) == t).astype(np.float64) for r in runs])


def own_teachers(teacher, students: Sequence) -> list | None:
    """Each student's own teacher when `teacher` is a sequence aligned with `students` (the students of
    several teachers, each judged against its own; an item may be an ensemble's member runs), or None
    when `teacher` is one run, the teacher of every student."""
    if not isinstance(teacher, (list, tuple)):
        return None
    if len(teacher) != len(students):
        raise ValueError(f"teacher must be one run or one teacher per student; got {len(teacher)} teachers for "
                         f"{len(students)} students")
    return list(teacher)


def members(teacher) -> list:
    """A teacher as the list of its member runs (a run alone, or an ensemble's members)."""
    return list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]


def own_agreement(teachers: Sequence, runs: Sequence, split: str = "test") -> np.ndarray:
    """(runs, images): 1.0 where each run agrees with its own (ensemble) teacher, teachers[i] the
    teacher of runs[i] (a run, or an ensemble's member runs)."""
    return np.stack([agreement_per_image(members(t), [r], split)[0] for t, r in zip(teachers, runs)])


def pair_agreement(runs: Sequence) -> list[np.ndarray]:
    """(images,) per pair of `runs` (every pair, in order): 1.0 where the two runs' predictions agree
    (independent teachers' agreement, the baseline of E0, E1, B2 and B3)."""
    return [agreement_per_image([a], [b])[0] for i, a in enumerate(runs) for b in runs[i + 1:]]


def kl_per_image(teacher_runs: Sequence, runs: Sequence) -> np.ndarray:
    """(runs, test images): KL(teacher || run) per test image, nats."""
    t = teacher_logits(teacher_runs)
    return np.stack([metrics.kl_per_example(t, r.test_logits()).numpy() for r in runs])


def correct_per_image(runs: Sequence, labels: np.ndarray) -> np.ndarray:
    return np.stack([(predictions(r) == labels).astype(np.float64) for r in runs])


def rise_over_last_fifth(run, key: str = "test_agreement") -> float | None:
    """Points by which `key` rose from the last evaluation at or before 80 % of training to the end
    (None when the history has no such pair)."""
    pts = [(h["epoch"], h[key]) for h in run.history if key in h]
    before = [v for e, v in pts if e <= 0.8 * run.spec.recipe.epochs]
    if len(pts) < 2 or not before or pts[-1][0] <= 0.8 * run.spec.recipe.epochs:
        return None
    return 100 * (pts[-1][1] - before[-1])


def regime(teachers: Sequence, students: Sequence) -> dict:
    """Is a scale in the paper's regime? Its teachers fit their clean training set (each >= 90 %;
    the study's teachers 93.74 %) and its students' test agreement levelled off: over the last fifth
    of training it rose by less than LEVELLED points, on average over the students. Returns the
    numbers, both answers and the sentence that says so."""
    fit = [100 * t.metrics["train_acc"] for t in teachers]
    rises = [x for x in (rise_over_last_fifth(s) for s in students) if x is not None]
    mean_rise = float(np.mean(rises)) if rises else None
    out = {"teacher_train_acc": fit, "teachers_fit": min(fit) >= 90.0, "rises": rises, "mean_rise": mean_rise,
           "students_levelled": mean_rise is not None and mean_rise < LEVELLED}
    out["in_regime"] = out["teachers_fit"] and out["students_levelled"]
    out["words"] = ("the regime the paper studies: networks that fit their data, and students that have settled"
                    if out["in_regime"] else
                    "not the regime the paper studies, so the verdicts speak of networks unlike the paper's")
    return out
