"""The paper's claims as code: from runs to a verdict, its evidence and its noise (protocol §8).

    python -m kdlib.claims --scale reduced [--data SRC] [--device auto] [--seed-base N] [--json PATH]

- `kdlib.claims.rules`: parts, boundaries, margins and the family rule (holds / does not hold /
  inconclusive);
- `kdlib.claims.evidence`: what a claim reads from runs, as groups for the noise model (kdlib.stats);
- `kdlib.claims.paper`: the eight claims, one function each;
- `kdlib.claims.beyond`: the questions the study left open (B1-B6, protocol §9), judged the same way;
- `kdlib.claims.text`: their sentences and tables.

`collect(experiment)` gathers the runs every claim reads (`ClaimRuns`), `evaluate(runs)` judges
all eight, `questions(runs)` the questions beyond the paper; `chapter(experiment, "E5")` gives one chapter's, from that chapter's runs only. The E7 chapter prints the table, and the
command line reproduces it from the run cache without training anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _sp

from kdlib.claims import beyond as _beyond
from kdlib.claims.evidence import rise_over_last_fifth
from kdlib.claims.paper import (Verdict, beyond_independent, cka_not_agreement, ensemble_size, far_from_faithful,
                                optimiser_and_length, sharp_transition, student_accuracy, temperature_and_mixup)
from kdlib.claims.rules import ABOVE, FAILS, HOLDS, INCONCLUSIVE, LEVELLED, VERDICTS, Part, combine
from kdlib.claims.text import markdown, summary_table
from kdlib.stats import CONFIDENCE
from kdlib.tables import NORM_NAMES

__all__ = ["ClaimRuns", "FAILS", "HOLDS", "INCONCLUSIVE", "NORM_NAMES", "Part", "VERDICTS", "Verdict", "chapter",
           "collect", "combine", "deciding_runs", "evaluate", "markdown", "power", "power_table", "questions", "regime",
           "summary_table", "main"]


@dataclass
class ClaimRuns:
    """The runs every claim reads, by experiment (kdlib.plans at one scale)."""

    labels: np.ndarray                          # test labels (N,)
    teachers: list                              # E0: the BatchNorm pool
    self_distilled: list                        # E1: students of teacher 0
    ensembles: dict[int, list]                  # E2: ensemble size m -> its students (seeds)
    lambda_teachers: dict[str, object]          # E3: norm -> the teacher interpolated towards
    lambdas: dict[str, dict[float, list]]       # E3: norm -> lambda -> students
    cka: dict[str, list]                        # E4: "random", "teacher_init" -> students
    temperatures: dict[float, list]             # E5: tau -> students of the largest ensemble
    mixup: list                                 # E5: tau 4 with MixUp
    optimisers: dict[str, list] = field(default_factory=dict)  # E6: setting -> students; first = baseline
    ensemble_pool: int = 0                      # E5: students learn from the first this many teachers (0: all)
    alphas: dict[float, list] = field(default_factory=dict)  # B1: alpha -> students of teacher 0
    class_counts: dict = field(default_factory=dict)          # B3: k -> kdlib.claims.beyond.ClassRuns (fewer classes)
    capacity: dict[str, list] = field(default_factory=dict)   # B2: "teacher" (a PreResNet-56), "students" of it


# Each claim: its id, the experiments it belongs to, the ClaimRuns fields it reads, and how it is judged.
CLAIMS = (
    ("e1-accuracy", ("E1",), ("teachers", "self_distilled"),
     lambda r: student_accuracy(r.teachers[0], r.self_distilled, r.labels)),
    ("e1-fidelity", ("E1",), ("teachers", "self_distilled"),
     lambda r: far_from_faithful(r.teachers[0], r.self_distilled, r.teachers)),
    ("e0-baselines", ("E0", "E1"), ("teachers", "self_distilled"),
     lambda r: beyond_independent(r.teachers, r.self_distilled)),
    ("e2-ensembles", ("E2",), ("teachers", "ensembles"), lambda r: ensemble_size(r.ensembles, r.teachers)),
    ("e3-transition", ("E3",), ("lambda_teachers", "lambdas"),
     lambda r: sharp_transition({NORM_NAMES[n]: (r.lambda_teachers[n], r.lambdas[n]) for n in r.lambdas})),
    ("e4-cka", ("E4",), ("teachers", "cka"),
     lambda r: cka_not_agreement(r.teachers[0], r.cka["random"], r.cka["teacher_init"])),
    ("e5-temperature", ("E5",), ("teachers", "temperatures", "mixup"),
     lambda r: temperature_and_mixup(r.temperatures[min(r.temperatures)], r.temperatures[_high(r)], r.mixup,
                                     r.teachers[:r.ensemble_pool or len(r.teachers)])),
    ("e6-optimiser", ("E6",), ("teachers", "optimisers"),
     lambda r: optimiser_and_length(next(iter(r.optimisers.values())), dict(list(r.optimisers.items())[1:]),
                                    r.teachers[0])),
)


EVERY_FIELD = ("teachers", "self_distilled", "ensembles", "lambda_teachers", "lambdas", "cka", "temperatures", "mixup",
               "optimisers", "alphas", "capacity", "class_counts")

# The questions beyond the paper (protocol §9), in the same form: B4 reads every student the report trains.
BEYOND = (
    ("b1-hard-labels", ("B1",), ("teachers", "alphas"), lambda r: _beyond.hard_labels(r.alphas, r.teachers[0])),
    ("b2-capacity-gap", ("B2",), ("teachers", "self_distilled", "capacity"),
     lambda r: _beyond.capacity_gap(r.capacity.get("teacher", [None])[0], r.capacity.get("students", []),
                                    r.teachers[0] if r.teachers else None, r.self_distilled, r.teachers)),
    ("b3-classes", ("B3",), ("teachers", "self_distilled", "class_counts"),
     lambda r: _beyond.richer_soft_labels({**r.class_counts, _classes(r): _beyond.ClassRuns(
         r.teachers, r.self_distilled, r.labels)})),
    ("b4-fidelity-generalisation", ("B4",), EVERY_FIELD,
     lambda r: _beyond.fidelity_and_generalisation(_beyond.students_by_setting(r))),
    ("b5-calibration", ("B5",), ("teachers", "ensembles"),
     lambda r: _beyond.calibration_transfer(r.ensembles, r.teachers, r.labels)),
    ("b6-where-they-disagree", ("B6",), ("teachers", "self_distilled"),
     lambda r: _beyond.where_they_disagree(r.teachers[0], r.self_distilled, r.teachers)),
)


def _classes(runs: ClaimRuns) -> int:
    """The number of classes of the runs' own data (the test labels' largest id + 1: the first k classes)."""
    return int(runs.labels.max()) + 1


def _high(runs: ClaimRuns) -> float:
    return 4.0 if 4.0 in runs.temperatures else max(runs.temperatures)


def evaluate(runs: ClaimRuns, experiment: str | None = None) -> list[Verdict]:
    """The claims' verdicts in the paper's order: all eight, or those of one `experiment` ("E5")."""
    return [judge(runs) for _, experiments, _, judge in CLAIMS if experiment is None or experiment in experiments]


def questions(runs: ClaimRuns, question: str | None = None) -> list[Verdict]:
    """The verdicts on the questions beyond the paper (protocol §9): all, or one ("B5")."""
    return [judge(runs) for _, names, _, judge in BEYOND if question is None or question in names]


def chapter(experiment, name: str) -> list[Verdict]:
    """The verdicts a chapter ends with: the claims of experiment `name` ("E1", or "B4" for a
    question beyond the paper), on the runs that chapter has (`experiment`: a
    kdlib.experiments.Experiment; nothing outside those claims' plans is run)."""
    for table, judge in ((CLAIMS, evaluate), (BEYOND, questions)):
        fields = {f for _, names, needs, _ in table if name in names for f in needs}
        if fields:
            return judge(collect(experiment, fields), name)
    known = sorted({e for table in (CLAIMS, BEYOND) for _, es, _, _ in table for e in es})
    raise ValueError(f"name must be one of {known}, got {name!r}")


def collect(experiment, fields=None) -> ClaimRuns:
    """The runs the claims read for a `kdlib.experiments.Experiment` (trained if it trains, else
    cached): every field, or only `fields` (the others stay empty)."""
    from kdlib import plans

    sc = experiment.scale
    want = set(fields) if fields is not None else None

    def get(name, plan):
        return experiment.run(plan()) if want is None or name in want else None

    temps = get("temperatures", lambda: plans.temperature_specs(sc)) or {}
    if want is not None and "mixup" in want and not temps:
        temps = experiment.run(plans.temperature_specs(sc))
    mixup = temps.pop(plans.MIXUP, [])
    return ClaimRuns(
        labels=experiment.dataset.test.y.numpy(),
        teachers=get("teachers", lambda: plans.teachers(sc)) or [],
        self_distilled=get("self_distilled", lambda: plans.self_distillation_specs(sc)) or [],
        ensembles=get("ensembles", lambda: plans.ensemble_specs(sc)) or {},
        lambda_teachers=get("lambda_teachers", lambda: {n: plans.teachers(sc, n)[0] for n in sc.lambda_norms}) or {},
        lambdas=get("lambdas", lambda: {n: plans.initialisation_specs(sc, n) for n in sc.lambda_norms}) or {},
        cka=get("cka", lambda: plans.cka_specs(sc)) or {},
        temperatures={runs[0].spec.tau: runs for runs in temps.values()},
        mixup=mixup,
        optimisers=get("optimisers", lambda: plans.optimiser_specs(sc)) or {},
        ensemble_pool=max(sc.ensemble_sizes),
        alphas=get("alphas", lambda: plans.alpha_specs(sc)) or {},
        capacity=get("capacity", lambda: plans.capacity_specs(sc)) or {},
        class_counts=(_class_runs(experiment) if want is None or "class_counts" in want else {}))


def _class_runs(experiment) -> dict:
    """B3's runs: for each class count of the plan, its teachers and students on the first k classes."""
    from kdlib import plans
    from kdlib.claims.beyond import ClassRuns

    out = {}
    for k, plan in plans.class_count_specs(experiment.scale).items():
        sub = experiment.with_classes(k)
        got = sub.run(plan)
        out[k] = ClassRuns(got["teachers"], got["students"], sub.dataset.test.y.numpy())
    return out


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


def power(part: Part, effect: float | None = None, target: float = 0.8, most: int = 64) -> int | None:
    """Units (seeds) per block that would decide `part` with probability `target` if the quantity's
    true value were `effect` (default: the estimate measured), from the part's measured variance
    parts: the seed part scales as 1 / units, the images' part stays. As the interval does, each
    part keeps its own t quantile (its degrees of freedom: U - 1 per block, summed over pooled
    blocks): decided when |effect - boundary| exceeds the half-width of the interval that decides
    (95 % on the claimed side; on the other side the family's Bonferroni interval, as the rule
    needs to say "does not hold") plus the `target` quantile's. None when no count up to `most`
    would, no variance was measured, or the part's noise is not a seed model (B4's students as
    draws)."""
    if "model" in part.noise:
        return None
    iv = part.interval
    effect = iv.estimate if effect is None else effect
    units = max(part.noise["units"].values(), default=0)
    blocks = len(part.noise["units"]) if part.noise.get("pooled_seeds") else 1
    distance = abs(effect - part.boundary)
    claimed_side = (effect > part.boundary) == (part.claimed == ABOVE)
    confidence = CONFIDENCE if claimed_side else part.against_confidence
    if not math.isfinite(iv.seeds) or units < 2 or not math.isfinite(distance):
        return None
    per_unit = iv.seeds * units  # the seed part of one unit per block
    for n in range(2, most + 1):
        seeds = per_unit / n
        pieces = [(seeds, (n - 1) * blocks), (iv.images, math.inf)]

        def half(q):
            return math.sqrt(sum(v * (_sp.t.ppf(q, d) if math.isfinite(d) else _sp.norm.ppf(q)) ** 2
                                 for v, d in pieces if v > 0))

        if half(0.5 + confidence / 2) + half(target) < distance:
            return n
    return None


def deciding_runs(verdict: Verdict) -> str:
    """A sentence on how many seeds per setting would decide an undecided claim, from its parts'
    measured variance (`power`, at the effect measured)."""
    undecided = [(p, power(p)) for p in verdict.parts if p.verdict == INCONCLUSIVE]
    if not undecided:
        return ""
    said = [f"{p.name}: {n} seeds per setting" if n else f"{p.name}: more than 64 seeds per setting (the effect "
            "measured is too close to the boundary)" for p, n in undecided]
    return ("From the variance these runs measured, deciding it at the effect measured would take (80 % power) "
            + "; ".join(said) + ".")


def main(argv: Sequence[str] | None = None) -> int:
    from kdlib.claims.cli import main as cli_main

    return cli_main(argv)


def power_table(verdicts: Sequence[Verdict]) -> str:
    """Markdown: for every part, its seeds now, its verdict, and the seeds per setting that would
    decide it with 80 % probability at the effect measured (`power`)."""
    rows = ["| claim | part | seeds per setting now | verdict | seeds to decide it (80 % power, effect as measured) |",
            "|---|---|---|---|---|"]
    for v in verdicts:
        for p in v.parts:
            units = max(p.noise["units"].values(), default=0)
            needed = power(p)
            said = ("not a seed count" if "model" in p.noise else needed if needed is not None else "> 64")
            rows.append(f"| {v.experiment} · {v.title} | {p.name}: {p.text()} | {units} | {p.verdict} | {said} |")
    return "\n".join(rows)
