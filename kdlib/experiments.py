"""What the notebooks of E0-E7 work with (protocol §6): their entry point `open_experiment`, and the
analyses that compare runs.

The run plans are kdlib.plans; a plan
runs through `Experiment.run` (kdlib.runs.run_all); kdlib.tables formats the numbers and
kdlib.plots draws the histories.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from kdlib import metrics
from kdlib.checks import check_str
from kdlib.cache import Run
from kdlib.data import Dataset
from kdlib.config import StudentSpec
from kdlib.losses import ensemble_logits
from kdlib.parameters import Parameters
from kdlib.plans import flatten
from kdlib.scales import Scale


# ---------------------------------------------------------------------------------------------
# Analyses (the tables' formatting: kdlib.tables; history curves: kdlib.plots)

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

@dataclasses.dataclass(frozen=True)
class Experiment:
    """What a notebook works with: the scale, the loaded data and how to run (`open_experiment`
    builds it; `with_classes` gives the same on fewer classes)."""

    scale: Scale
    dataset: Dataset
    device: str
    executor: str
    train: bool = True  # False: cached runs only (a missing run raises kdlib.runs.MissingRunsError)

    def with_classes(self, k: int) -> "Experiment":
        """The same experiment on the first `k` classes of its data (B3, `plans.class_count_specs`)."""
        from kdlib import data as kdata

        return dataclasses.replace(self, dataset=kdata.load(dataclasses.replace(self.dataset.spec, num_classes=k)))

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


def open_experiment(scale: str = Parameters.scale, data: str = Parameters.data, device: str = Parameters.device,
                    executor: str = Parameters.executor, seed_base: int = Parameters.seed_base,
                    train: bool = True) -> Experiment:
    """Validate a notebook's parameters (kdlib.parameters.Parameters) and load its data.

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
