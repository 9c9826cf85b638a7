"""Run plans and result tables for the experiments E0-E7 (protocol §6).

Each `e*_specs` function says which runs an experiment needs at a scale; identical specs in two
experiments are one cached run (the self-distilled students of teacher 0 serve E1, E2 at m = 1 and
E4, say). Notebooks call these through `Experiment.run` (kdlib.runs.run_all) and the table helpers
below.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdlib import metrics
from kdlib.checks import check_number, check_str  # noqa: F401  (check_number: the notebooks' parameters)
from kdlib.cache import Run
from kdlib.config import StudentSpec, TeacherSpec
from kdlib.losses import ensemble_logits
from kdlib.scales import SEED_STRIDE, Scale


# ---------------------------------------------------------------------------------------------
# Run plans. A setting that a claim compares has `scale.seeds` students (trial ids 0..seeds-1),
# so that the claims can judge differences against the spread over seeds (kdlib.claims).
# The seeds below are local: each spec's seed is run_seed(scale, local seed), which is the local
# seed itself at seed_base 0.

MIXUP = "tau=4 + MixUp"  # E5's MixUp setting, in temperature_specs


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


def flatten(specs) -> list:
    """The specs in a plan (a spec, or lists and dicts of them), in order."""
    if isinstance(specs, dict):
        return [s for v in specs.values() for s in flatten(v)]
    if isinstance(specs, (list, tuple)):
        return [s for v in specs for s in flatten(v)]
    return [specs]


def all_specs(scale: Scale) -> list:
    """Every run the report needs at `scale`, teachers first, without duplicates."""
    specs = [*teachers(scale), *[teachers(scale, n)[0] for n in scale.lambda_norms],
             *flatten([self_distillation_specs(scale), ensemble_specs(scale),
                       [initialisation_specs(scale, n) for n in scale.lambda_norms], cka_specs(scale),
                       temperature_specs(scale), optimiser_specs(scale)])]
    return list(dict.fromkeys(specs))


# ---------------------------------------------------------------------------------------------
# Summaries

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(values: Sequence[float] | float, scale: float = 1.0, digits: int = 2) -> str:
    """'m ± s' of values x scale (e.g. scale=100 for percentages); a lone value without ± ."""
    if isinstance(values, (int, float)):
        return f"{values * scale:.{digits}f}"
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def points(diff: float, digits: int = 2) -> str:
    """A signed difference in percentage points as words: '3.10 points higher' / 'lower'."""
    if abs(diff) < 0.5 * 10**-digits:
        return "no different"
    return f"{abs(diff):.{digits}f} points {'higher' if diff > 0 else 'lower'}"


def ensemble_test_logits(runs: Sequence[Run]) -> torch.Tensor:
    """Test logits of the ensemble of `runs` (log of mean probabilities), (N, C)."""
    return ensemble_logits(torch.stack([r.test_logits() for r in runs]))


def pairwise(runs: Sequence[Run]) -> list[dict]:
    """Test agreement and symmetric KL for every pair of `runs` (E0 baseline (a))."""
    out = []
    logits = [r.test_logits() for r in runs]
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            out.append({"pair": f"{i}-{j}", "agreement": metrics.agreement(logits[i], logits[j]),
                        "symmetric_kl": metrics.symmetric_kl(logits[i], logits[j])})
    return out


def cross_agreement(student: Run, other_teachers: Sequence[Run]) -> list[dict]:
    """The paper's baseline (E0 (b)): a student of teacher j measured against teachers i != j."""
    s = student.test_logits()
    return [{"teacher": f"teacher {t.spec.seed}", "agreement": metrics.agreement(t.test_logits(), s),
             "kl": metrics.kl(t.test_logits(), s)} for t in other_teachers]


def agreement_partition(teacher: Run, other_teacher: Run, student: Run) -> dict[tuple[str, str], int]:
    """E1: the test images counted by two questions, each image in exactly one cell: do two
    independent teachers (the student's and another) agree on it, and does the student agree with
    its own teacher? Keys: ("teachers agree" | "teachers disagree", "student agrees" | "student disagrees")."""
    t, o, s = (r.test_logits().argmax(1) for r in (teacher, other_teacher, student))
    out = {}
    for teachers_agree, tname in ((True, "teachers agree"), (False, "teachers disagree")):
        for student_agrees, sname in ((True, "student agrees"), (False, "student disagrees")):
            out[(tname, sname)] = int((((t == o) == teachers_agree) & ((s == t) == student_agrees)).sum())
    return out


def agreement_decomposition(teacher_pair_agreement: float, student_agreement: float) -> dict[str, float]:
    """E1: the study's decomposition of the test set, as differences of rates (fractions), not as
    groups of images: what two independent teachers agree on, what a distilled student agrees on
    beyond that, and what it still disagrees on (the study's 6,319 / 817 / 2,864 per 10,000 images
    are 63.19 %, 71.36 - 63.19 % and 100 - 71.36 %)."""
    return {"independent teachers agree": teacher_pair_agreement,
            "student's agreement beyond that": student_agreement - teacher_pair_agreement,
            "student still disagrees": 1 - student_agreement}


def history_series(run: Run, key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of `key` in a run's history, skipping epochs where it was not measured."""
    pts = [(h["epoch"], h[key]) for h in run.history if key in h and not (isinstance(h[key], float) and math.isnan(h[key]))]
    return [p[0] for p in pts], [p[1] for p in pts]


def untrained_cka(teacher: Run, dataset, device="cpu") -> list[float]:
    """E4's floor: CKA between the trained teacher and an untrained network of the same
    architecture, on the same fixed test subset as the runs' `cka` metric."""
    from kdlib import evaluate as ev
    from kdlib.device import resolve_device
    from kdlib.train import initial_model

    dev = resolve_device(device)
    untrained = initial_model(StudentSpec(recipe=teacher.spec.recipe, teachers=(teacher.spec,), seed=0,
                                          norm=teacher.spec.norm), dataset.num_classes).to(dev)
    subset = dataset.test.x[ev.cka_indices(len(dataset.test))]
    return ev.cka_by_stage(teacher.load_model(dev), untrained, subset, dev)


# ---------------------------------------------------------------------------------------------
# The notebooks' entry point

@dataclasses.dataclass
class Experiment:
    """What a notebook works with: the scale, the loaded data and how to run."""

    scale: Scale
    dataset: object  # kdlib.data.Dataset
    device: str
    executor: str
    train: bool = True  # False: cached runs only (a missing run raises kdlib.runs.MissingRunsError)

    def run(self, specs):
        """Runs for a plan: a list (or dict, or dict of lists) of specs, from the cache or trained now.

        Every spec of the plan goes to one `run_all` call, so teachers train first and runs that
        appear twice are one run; the result has the plan's shape.
        """
        from kdlib.runs import cached_runs, run_all

        flat = list(dict.fromkeys(flatten(specs)))
        if self.train:
            found = run_all(flat, self.dataset, executor=self.executor, device=self.device,
                            logit_cache=self.scale.logit_cache)
        else:
            found = cached_runs(flat, self.dataset, device=self.device, logit_cache=self.scale.logit_cache)
        by_spec = dict(zip(flat, found))

        def shaped(plan):
            if isinstance(plan, dict):
                return {k: shaped(v) for k, v in plan.items()}
            if isinstance(plan, (list, tuple)):
                return [shaped(v) for v in plan]
            return by_spec[plan]
        return shaped(specs)


def open_experiment(scale: str = "reduced", data: str = "", device: str = "auto",
                    executor: str = "inline", seed_base: int = 0, train: bool = True) -> Experiment:
    """Validate a notebook's parameters and load its data.

    data: "" means `kdlib.data.default_source()` ($KDLIB_DATA, else the offline copy
    ../shared/data/cifar100-jpg.tar.gz if there is one, else torchvision's download).
    seed_base: the draw of seeds the plans use (kdlib.scales.Scale.seed_base; 0: the usual seeds).
    Each bad parameter raises a ValueError (or FileNotFoundError) that names it.
    """
    from kdlib import data as kdata
    from kdlib.runs import check_executor
    from kdlib.scales import get_scale
    from kdlib.device import check_device_name, resolve_device

    for name, value in (("scale", scale), ("data", data), ("device", device), ("executor", executor)):
        check_str(name, value)
    sc = get_scale(scale, seed_base)
    check_executor(executor)
    if train:
        resolve_device(device)  # without training, "cuda" only names the device the runs were made on
    else:
        check_device_name(device)
    source = data or kdata.default_source()
    if source != "torchvision" and not Path(source).expanduser().exists():
        name = "data" if data else "$KDLIB_DATA"
        raise FileNotFoundError(f"{name}={source!r} does not exist; allowed: '' (kdlib.data.default_source(): "
                                f"$KDLIB_DATA, else {kdata.OFFLINE_COPY} if it exists, else torchvision's "
                                "download), 'torchvision', or the path of a CIFAR-100 class-folder tree or "
                                ".tar.gz of one")
    dataset = kdata.load(sc.data_spec(source))
    return Experiment(scale=sc, dataset=dataset, device=device, executor=executor, train=train)
