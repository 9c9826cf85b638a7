"""What the notebooks of E0-E7 work with (protocol §6): their entry point `open_experiment`, and the
analyses that compare runs.

The run plans are kdlib.plans; a plan
runs through `Experiment.run` (kdlib.execute.run_all); kdlib.tables formats the numbers and
kdlib.plots draws the histories.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from kdlib import data as kdata
from kdlib import evaluate as ev
from kdlib import landscape, metrics, plans
from kdlib.cache import Run
from kdlib.config import StudentSpec
from kdlib.data import Dataset
from kdlib.device import resolve_device
from kdlib.execute import MissingRunsError, cached_runs, run_all
from kdlib.losses import ensemble_logits
from kdlib.parameters import Parameters
from kdlib.plans import OnClasses, flatten
from kdlib.scales import Scale
from kdlib.train import TrainSet, initial_model


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


def disagreement_groups(teacher_pred: torch.Tensor, other_pred: torch.Tensor, student_pred: torch.Tensor
                        ) -> dict[str, tuple[torch.Tensor, str]]:
    """B6's three groups of test images, from the top-1 predictions (N,) of a student's teacher, an
    independent teacher and the student: name -> (a boolean mask, what the group means). Images on
    which both teachers and the student agree are in none."""
    t, o, s = teacher_pred, other_pred, student_pred
    return {"agreed by independent teachers": ((t == o) & (s != t),
                                               "the two teachers agree, yet the student departs from its teacher"),
            "agreed only after distillation": ((t != o) & (s == t),
                                               "the teachers disagree, and the student takes its own teacher's answer"),
            "still disagreeing": ((t != o) & (s != t), "the teachers disagree, and the student does not follow its own")}


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
    dev = resolve_device(device)
    untrained = initial_model(StudentSpec(recipe=teacher.spec.recipe, teachers=(teacher.spec,), seed=0,
                                          norm=teacher.spec.norm), dataset.num_classes).to(dev)
    subset = dataset.test.x[ev.cka_indices(len(dataset.test))]
    return ev.cka_by_stage(teacher.load_model(dev), untrained, subset, dev)


def initialisation_lines(experiment: "Experiment") -> list[dict]:
    """E3 seen as a landscape: for each model and each λ below 1, test loss and agreement along the
    straight line from the λ's first student (t = 0) to the teacher it was interpolated towards (t = 1),
    at the scale's points, on its number of test images (`Scale.landscape`), BatchNorm statistics (if
    any) re-estimated at each point on the training images (kdlib.landscape). Cached by the runs'
    weights, the data and the points."""
    points, images = experiment.scale.landscape()
    dev = resolve_device(experiment.device)
    test = landscape.every_kth(len(experiment.dataset.test), images)
    x, y = experiment.dataset.test.x[test], experiment.dataset.test.y[test]
    train = TrainSet(experiment.dataset.train, dev)
    out = []
    for norm, part in experiment.run(plans.initialisation_plan(experiment.scale)).items():
        teacher = part["teacher"]
        for lam, students in sorted(part["students"].items()):
            if lam >= 1:
                continue
            student = students[0]
            key = {"a": student.weights_sha256, "b": teacher.weights_sha256, "data": experiment.dataset.cache_key(),
                   "test": [int(test[0]), int(test[-1]), len(test)], "points": [float(t) for t in points],
                   "bn_views": landscape.BN_SEED}
            curve = landscape.cached_line(key, lambda s=student: landscape.line(
                s.load_model(dev), teacher.load_model(dev), x, y, train, points, dev))
            out.append({"norm": norm, "lambda": lam, "student": student.id, "seed": student.spec.seed,
                        "curve": curve, "barrier": landscape.barrier(curve)})
    return out


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
    train: bool = True  # False: cached runs only (a missing run raises kdlib.execute.MissingRunsError)

    def with_classes(self, k: int) -> "Experiment":
        """The same experiment on the first `k` classes of its data (B3, `plans.OnClasses`)."""
        return dataclasses.replace(self, dataset=kdata.load(dataclasses.replace(self.dataset.spec, num_classes=k)))

    def run(self, specs):
        """Runs for a plan (kdlib.plans: a spec, lists and dicts of them, OnClasses parts), from the
        cache or trained now, in the plan's shape.

        Every spec of the plan on the experiment's own classes goes to one `run_all` call, so
        teachers train first and runs that appear twice are one run; each OnClasses part runs on its
        classes (`with_classes`) and comes back as an OnClasses node holding its runs and labels.
        Reading the cache only (train=False), a MissingRunsError lists every missing run of the plan,
        on every number of classes.
        """
        flat = list(dict.fromkeys(flatten(specs, own_classes_only=True)))
        missing, root = [], None
        if self.train:
            found = run_all(flat, self.dataset, executor=self.executor, device=self.device,
                            logit_cache=self.scale.logit_cache)
        else:
            try:
                found = cached_runs(flat, self.dataset, device=self.device, logit_cache=self.scale.logit_cache)
            except MissingRunsError as e:
                found, missing, root = [None] * len(flat), list(e.missing), e.root
        by_spec = dict(zip(flat, found))

        def shaped(plan):
            nonlocal root
            if isinstance(plan, OnClasses):
                sub = self.with_classes(plan.classes)
                try:
                    return OnClasses(plan.classes, sub.run(plan.plan), sub.dataset.test.y.numpy())
                except MissingRunsError as e:
                    missing.extend(e.missing)
                    root = e.root
                    return None
            if isinstance(plan, dict):
                return {k: shaped(v) for k, v in plan.items()}
            if isinstance(plan, (list, tuple)):
                return [shaped(v) for v in plan]
            return by_spec[plan]
        out = shaped(specs)
        if missing:
            raise MissingRunsError(missing, root)
        return out


def open_experiment(params: Parameters | None = None, train: bool = True) -> Experiment:
    """The experiment a notebook (or the claims' command line) works with: `params` (checked when they
    were built, kdlib.parameters; default `Parameters()`) with their data loaded.

    train: True to train missing runs (the device must exist here); False to read cached runs only
        ("cuda" then only names the device the runs were made on).
    """
    params = Parameters() if params is None else params
    if not isinstance(params, Parameters):
        raise ValueError(f"params must be a kdlib.parameters.Parameters, got {type(params).__name__}")
    if train:
        resolve_device(params.device)
    sc = params.get_scale()
    dataset = kdata.load(sc.data_spec(params.source))
    return Experiment(scale=sc, dataset=dataset, device=params.device, executor=params.executor, train=train)
