"""Run plans: which runs each chapter of the report needs at a scale (protocol §6, §9).

A plan is specs in a shape: a spec, a list of them, or a dict of plans keyed by the setting compared;
`kdlib.experiments.Experiment.run` gives back the runs in the same shape. An `OnClasses` node is a
part of a plan run on the first k classes of the data (B3). Identical specs in two chapters are one
cached run (the self-distilled students of teacher 0 serve E1, E2 at m = 1 and E4, say). A setting
that a claim compares has `scale.seeds` students (trial ids 0..seeds-1), so that the claims can judge
differences against the spread over seeds (kdlib.claims). The seeds below are local: each spec's
seed is run_seed(scale, local seed), which is the local seed itself at seed_base 0. Which chapter
uses which plan is the study's table, kdlib.study.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdlib.config import StudentSpec, TeacherSpec
from kdlib.scales import SEED_STRIDE, Scale


MIXUP = "tau=4 + MixUp"  # E5's MixUp setting, in temperature_specs


@dataclass(frozen=True)
class OnClasses:
    """A part of a plan run on the first `classes` classes of the data (B3). In the runs a plan gives
    back, the same node holds the runs in `plan`'s shape and the test labels of those classes."""

    classes: int
    plan: object
    labels: np.ndarray | None = None  # the test labels of the first `classes` classes, once run


def run_seed(scale: Scale, local_seed: int) -> int:
    """The seed of local seed `local_seed` under `scale`'s draw of seeds:
    SEED_STRIDE * scale.seed_base + local_seed (local_seed itself at seed_base 0; any two bases give
    disjoint seeds, since every local seed stays below SEED_STRIDE)."""
    assert 0 <= local_seed < SEED_STRIDE, f"local seed {local_seed} outside [0, {SEED_STRIDE})"
    return SEED_STRIDE * scale.seed_base + local_seed


def teachers(scale: Scale, norm: str = "batch") -> list[TeacherSpec]:
    """E0: the teacher pool, local seeds 0..n-1 (E3 uses the first of the `norm` model)."""
    return [TeacherSpec(recipe=scale.teacher_recipe(norm), seed=run_seed(scale, i), norm=norm)
            for i in range(scale.n_teachers)]


def self_distillation_specs(scale: Scale, tau: float = 4.0) -> list[StudentSpec]:
    """E1: students of teacher 0 with local seeds 0..k-1 (trial ids)."""
    t0 = teachers(scale)[0]
    return [StudentSpec(recipe=scale.student, teachers=(t0,), seed=run_seed(scale, s), tau=tau)
            for s in range(scale.self_distill_students)]


def ensemble_specs(scale: Scale) -> dict[int, list[StudentSpec]]:
    """E2: for each ensemble size m, students of the first m teachers (local seeds 0..seeds-1; m = 1
    are E1's students)."""
    pool = teachers(scale)
    return {m: [StudentSpec(recipe=scale.student, teachers=tuple(pool[:m]), seed=run_seed(scale, s))
                for s in range(scale.seeds)]
            for m in scale.ensemble_sizes}


def initialisation_specs(scale: Scale, norm: str, lambdas: Sequence[float] | None = None
                         ) -> dict[float, list[StudentSpec]]:
    """E3: for each lambda, students started at lam * teacher 0 + (1 - lam) * random, for the model
    with `norm`: `lambda_seeds` students at every lambda below 1, one at lambda = 1 (shown, never
    deciding). Each lambda has seeds of its own (`lambda_seed`), so the points of the curve are
    independent runs: no two lambdas share a random initialisation or a data order, and the claim's
    noise model treats them as independent (protocol §8)."""
    t0 = teachers(scale, norm)[0]
    recipe = scale.student_recipe(norm)
    return {float(lam): [StudentSpec(recipe=recipe, teachers=(t0,), norm=norm, init="interpolate", lam=float(lam),
                                     seed=run_seed(scale, lambda_seed(lam, s)))
                         for s in range(scale.lambda_seeds if lam < 1 else 1)]
            for lam in (scale.lambdas if lambdas is None else lambdas)}


def initialisation_plan(scale: Scale) -> dict[str, dict]:
    """E3 for every model of `scale.lambda_norms`: the teacher interpolated towards, and its students
    by lambda (`initialisation_specs`)."""
    return {norm: {"teacher": teachers(scale, norm)[0], "students": initialisation_specs(scale, norm)}
            for norm in scale.lambda_norms}


def lambda_seed(lam: float, trial: int) -> int:
    """E3's local seed of trial `trial` at `lam`: 10000 * trial + 1000 * lam (lambda = 0.375, trial 1:
    10375), a function of the lambda itself, so a lambda keeps its runs whatever grid it is part of,
    and no two (lambda, trial) pairs share a seed (run_seed puts it in the scale's draw)."""
    return 10000 * trial + round(1000 * lam)


def cka_specs(scale: Scale) -> dict[str, list[StudentSpec]]:
    """E4: random-init students (E1's) and students started from the teacher's initial weights."""
    t0 = teachers(scale)[0]
    return {"random": self_distillation_specs(scale),
            "teacher_init": [StudentSpec(recipe=scale.student, teachers=(t0,), init="teacher_init",
                                         seed=run_seed(scale, s)) for s in range(scale.seeds)]}


def temperature_specs(scale: Scale, taus: Sequence[float] | None = None) -> dict[str, list[StudentSpec]]:
    """E5: students of the largest ensemble at each tau, and at tau 4 with MixUp (seeds each)."""
    pool = tuple(teachers(scale)[:max(scale.ensemble_sizes)])
    specs = {f"tau={tau:g}": [StudentSpec(recipe=scale.student, teachers=pool, tau=float(tau),
                                          seed=run_seed(scale, s)) for s in range(scale.seeds)]
             for tau in (scale.taus if taus is None else taus)}
    mixup = dataclasses.replace(scale.student, mixup=True)
    specs[MIXUP] = [StudentSpec(recipe=mixup, teachers=pool, tau=4.0, seed=run_seed(scale, s))
                    for s in range(scale.seeds)]
    return specs


def optimiser_specs(scale: Scale) -> dict[str, list[StudentSpec]]:
    """E6: self-distillation without weight decay: SGD (the baseline, first), SGD trained longer, Adam."""
    t0 = teachers(scale)[0]
    sgd = dataclasses.replace(scale.student, weight_decay=0.0)
    long = dataclasses.replace(sgd, epochs=sgd.epochs * scale.long_factor)
    adam = dataclasses.replace(sgd, optimizer="adam", lr=scale.adam_lr)
    return {name: [StudentSpec(recipe=r, teachers=(t0,), seed=run_seed(scale, s)) for s in range(scale.seeds)]
            for name, r in ((f"SGD, {sgd.epochs} epochs", sgd), (f"SGD, {long.epochs} epochs", long),
                            (f"Adam (lr {scale.adam_lr:g}), {adam.epochs} epochs", adam))}


def alpha_specs(scale: Scale) -> dict[float, list[StudentSpec]]:
    """B1: self-distillation with the label cross-entropy weighted alpha (protocol §3): alpha 0 is E1's
    students; the largest alpha has E1's seeds (seed-paired with them), the others `grid_seeds()`."""
    e1 = self_distillation_specs(scale)
    top = max(scale.alphas, default=0.0)
    return {0.0: e1, **{float(a): [dataclasses.replace(s, alpha=float(a)) for s in
                                   e1[:len(e1) if a == top else scale.grid_seeds()]]
                        for a in sorted(scale.alphas)}}


def capacity_specs(scale: Scale) -> dict[str, list]:
    """B2: a PreResNet-56 teacher (local seed 0, the teachers' recipe) and PreResNet-20 students of it
    with E1's seeds (paired with E1's students of teacher 0)."""
    deep = TeacherSpec(recipe=scale.teacher, seed=run_seed(scale, 0), depth=56)
    return {"teacher": [deep],
            "students": [dataclasses.replace(s, teachers=(deep,)) for s in self_distillation_specs(scale)]}


def class_count_specs(scale: Scale) -> dict[int, dict[str, list]]:
    """B3: for each class count k of the grid (besides the scale's own, which is E0's and E1's), two
    teachers (local seeds 0 and 1) and students of the first: E1's number at the fewest classes,
    `grid_seeds()` at the others. Each is run on the first k classes (`Experiment.with_classes(k)`)."""
    fewest = min(scale.class_counts, default=0)
    pool = teachers(scale)[:2]
    return {k: {"teachers": pool,
                "students": self_distillation_specs(scale)[:scale.self_distill_students if k == fewest
                                                           else scale.grid_seeds()]}
            for k in sorted(scale.class_counts)}


def class_count_plan(scale: Scale) -> dict[int, OnClasses]:
    """B3's plan: `class_count_specs`, each count's runs on the first k classes."""
    return {k: OnClasses(k, plan) for k, plan in class_count_specs(scale).items()}


def with_classes(specs, classes: int | None = None) -> list[tuple[int | None, object]]:
    """(classes, spec) for every spec of a plan, in order: `classes` None on the data's own classes, k
    inside an OnClasses part (the same spec on fewer classes is another run)."""
    if isinstance(specs, OnClasses):
        return with_classes(specs.plan, specs.classes)
    if isinstance(specs, dict):
        return [x for v in specs.values() for x in with_classes(v, classes)]
    if isinstance(specs, (list, tuple)):
        return [x for v in specs for x in with_classes(v, classes)]
    return [(classes, specs)]


def flatten(specs, own_classes_only: bool = False) -> list:
    """The specs in a plan (a spec, or lists and dicts of them, or OnClasses parts), in order; with
    `own_classes_only`, without the parts run on fewer classes. On the runs a plan gave back, the runs."""
    if isinstance(specs, OnClasses):
        return [] if own_classes_only else flatten(specs.plan)
    if isinstance(specs, dict):
        return [s for v in specs.values() for s in flatten(v, own_classes_only)]
    if isinstance(specs, (list, tuple)):
        return [s for v in specs for s in flatten(v, own_classes_only)]
    return [specs]
