"""Run plans and result tables for the experiments E0-E7 (SPEC §6).

Each `e*_specs` function says which runs an experiment needs at a scale; identical specs in two
experiments are one cached run (the self-distilled student of teacher 0 serves E1, E2, E4 and
E6's baseline, say). Notebooks call these, `executor.run_all`, and the table helpers below.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdlib import metrics
from kdlib.cache import Run
from kdlib.config import StudentSpec, TeacherSpec
from kdlib.losses import ensemble_logits
from kdlib.scales import Scale


# ---------------------------------------------------------------------------------------------
# Run plans

def teachers(scale: Scale, norm: str = "batch") -> list[TeacherSpec]:
    """E0: the teacher pool, seeds 0..n-1."""
    return [TeacherSpec(recipe=scale.teacher, seed=i, norm=norm) for i in range(scale.n_teachers)]


def self_distillation_specs(scale: Scale, tau: float = 4.0) -> list[StudentSpec]:
    """E1: students of teacher 0 with seeds 0..k-1 (trial ids)."""
    t0 = teachers(scale)[0]
    return [StudentSpec(recipe=scale.student, teachers=(t0,), seed=s, tau=tau)
            for s in range(scale.self_distill_students)]


def ensemble_specs(scale: Scale) -> list[StudentSpec]:
    """E2: one student per ensemble of the first m teachers."""
    pool = teachers(scale)
    return [StudentSpec(recipe=scale.student, teachers=tuple(pool[:m]), seed=0) for m in scale.ensemble_sizes]


def initialisation_specs(scale: Scale, norm: str, lambdas: Sequence[float] | None = None) -> list[StudentSpec]:
    """E3: students started at lam * teacher 0 + (1 - lam) * random, for the model with `norm`."""
    t0 = teachers(scale, norm)[0]
    return [StudentSpec(recipe=scale.student, teachers=(t0,), norm=norm, init="interpolate", lam=float(lam))
            for lam in (scale.lambdas if lambdas is None else lambdas)]


def cka_specs(scale: Scale) -> dict[str, StudentSpec]:
    """E4: a random-init student and one started from the teacher's initial weights."""
    t0 = teachers(scale)[0]
    return {"random": StudentSpec(recipe=scale.student, teachers=(t0,)),
            "teacher_init": StudentSpec(recipe=scale.student, teachers=(t0,), init="teacher_init")}


def temperature_specs(scale: Scale, taus: Sequence[float] | None = None) -> dict[str, StudentSpec]:
    """E5: students of the largest ensemble at each tau, and at tau 4 with MixUp."""
    pool = tuple(teachers(scale)[:max(scale.ensemble_sizes)])
    specs = {f"tau={tau:g}": StudentSpec(recipe=scale.student, teachers=pool, tau=float(tau))
             for tau in (scale.taus if taus is None else taus)}
    mixup = dataclasses.replace(scale.student, mixup=True)
    specs["tau=4 + MixUp"] = StudentSpec(recipe=mixup, teachers=pool, tau=4.0)
    return specs


def optimiser_specs(scale: Scale) -> dict[str, StudentSpec]:
    """E6: self-distillation without weight decay: SGD, SGD trained longer, Adam."""
    t0 = teachers(scale)[0]
    sgd = dataclasses.replace(scale.student, weight_decay=0.0)
    long = dataclasses.replace(sgd, epochs=sgd.epochs * scale.long_factor)
    adam = dataclasses.replace(sgd, optimizer="adam", lr=scale.adam_lr)
    return {f"SGD, {sgd.epochs} epochs": StudentSpec(recipe=sgd, teachers=(t0,)),
            f"SGD, {long.epochs} epochs": StudentSpec(recipe=long, teachers=(t0,)),
            f"Adam (lr {scale.adam_lr:g}), {adam.epochs} epochs": StudentSpec(recipe=adam, teachers=(t0,))}


def all_specs(scale: Scale) -> list:
    """Every run the report needs at `scale`, teachers first, without duplicates."""
    specs = [*teachers(scale), *[teachers(scale, n)[0] for n in scale.lambda_norms],
             *self_distillation_specs(scale), *ensemble_specs(scale),
             *[s for n in scale.lambda_norms for s in initialisation_specs(scale, n)],
             *cka_specs(scale).values(), *temperature_specs(scale).values(), *optimiser_specs(scale).values()]
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


def agreement_split(teacher: Run, other_teacher: Run, student: Run) -> dict[str, int]:
    """E1: test images where two independent teachers agree ("easy"), where they disagree but
    the student agrees with its teacher (agreement added by distillation), and the rest."""
    t = teacher.test_logits().argmax(1)
    o = other_teacher.test_logits().argmax(1)
    s = student.test_logits().argmax(1)
    easy = t == o
    return {"agreed by independent teachers": int(easy.sum()),
            "agreed only after distillation": int((~easy & (s == t)).sum()),
            "still disagreeing": int((~easy & (s != t)).sum())}


# E4: two students' representations count as similar when no stage's CKA with the teacher differs
# by more than this (the E4 chapter and the E7 summary use the same criterion).
SIMILAR_CKA_GAP = 0.1


def cka_gap(a: Run, b: Run) -> float:
    """The largest stage-wise difference between two students' CKA with their teacher (E4)."""
    return max(abs(x - y) for x, y in zip(a.metrics["cka"], b.metrics["cka"]))


def history_series(run: Run, key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of `key` in a run's history, skipping epochs where it was not measured."""
    pts = [(h["epoch"], h[key]) for h in run.history if key in h and not (isinstance(h[key], float) and math.isnan(h[key]))]
    return [p[0] for p in pts], [p[1] for p in pts]


def untrained_cka(teacher: Run, dataset, device="cpu") -> list[float]:
    """E4's floor: CKA between the trained teacher and an untrained network of the same
    architecture, on the same fixed test subset as the runs' `cka` metric."""
    from kdlib import evaluate as ev
    from kdlib.train import initial_model, resolve_device

    dev = resolve_device(device)
    untrained = initial_model(StudentSpec(recipe=teacher.spec.recipe, teachers=(teacher.spec,), seed=0,
                                          norm=teacher.spec.norm)).to(dev)
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

    def run(self, specs):
        """Runs for a list (or dict) of specs, from the cache or trained now."""
        from kdlib.executor import run_all

        if isinstance(specs, dict):
            return dict(zip(specs, self.run(list(specs.values()))))
        return run_all(list(specs), self.dataset, executor=self.executor, device=self.device)


def open_experiment(scale: str = "reduced", data: str = "", device: str = "auto",
                    executor: str = "inline") -> Experiment:
    """Validate a notebook's parameters and load its data.

    data: "" means `kdlib.data.default_source()` ($KDLIB_DATA, else torchvision's download).
    Each bad parameter raises a ValueError (or FileNotFoundError) that names it.
    """
    from kdlib import data as kdata
    from kdlib.executor import check_executor
    from kdlib.scales import get_scale
    from kdlib.train import resolve_device

    for name, value in (("scale", scale), ("data", data), ("device", device), ("executor", executor)):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    check_executor(executor)
    resolve_device(device)
    sc = get_scale(scale)
    source = data or kdata.default_source()
    if source != "torchvision" and not Path(source).expanduser().exists():
        name = "data" if data else "$KDLIB_DATA"
        raise FileNotFoundError(f"{name}={source!r} does not exist; allowed: '' ($KDLIB_DATA, else "
                                "torchvision's download), 'torchvision', or the path of a CIFAR-100 "
                                "class-folder tree or .tar.gz of one")
    dataset = kdata.load(sc.data_spec(source))
    return Experiment(scale=sc, dataset=dataset, device=device, executor=executor)


def check_number(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    """A notebook parameter that must be a number in [low, high] (or (low, high])."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)
