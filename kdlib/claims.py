"""The paper's claims as code: from runs to a verdict, its evidence and its noise (protocol §8).

    python -m kdlib.claims --scale reduced [--data SRC] [--device auto] [--json PATH]

Each claim is one function from the runs of its experiment to a `Verdict`: "holds", "does not
hold" or "inconclusive", the numbers behind it, and the noise they were judged against. A claim's
numbers are differences (or ratios) between settings, each with a 95 % interval from a paired
bootstrap over images and seeds (kdlib.stats). The rule is always the same: a difference whose
interval lies on the claimed side of zero supports the claim, one on the other side contradicts
it, and one whose interval straddles zero is inside the noise: inconclusive, never yes or no.
Claims with several parts hold when every part holds and do not hold when any part does not.

Two claims say "most": a jump that is most of a rise (E3), a change that closes most of a gap
(E6). Most means more than half (MOST); the interval decides on which side of it a ratio lies.
The only other constant is the interval's confidence (kdlib.stats.CONFIDENCE).

`evaluate(runs)` judges all eight from a `ClaimRuns` (the runs of E0-E6, from
`collect(experiment)`); the E7 chapter prints its table, and the command line reproduces it from
the run cache without training anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kdlib import metrics
from kdlib.losses import ensemble_logits
from kdlib.stats import Group, Interval, bootstrap, describe_noise

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
MOST = 0.5        # "most of": more than half (E3's jump, E6's gap)
MIN_STEPS = 4     # E3: steps between adjacent lambdas below 1 needed to tell a jump from a steady rise
LEVELLED = 1.0    # points: agreement that rose less than this over the last fifth has levelled off


@dataclass(frozen=True)
class Part:
    """One comparison inside a claim."""

    name: str           # e.g. "against the paper's baseline"
    verdict: str        # one of VERDICTS
    interval: Interval  # the compared quantity, in the units of `unit`
    unit: str           # "points", "" (a ratio) ...
    rule: str           # how the interval decides, in words
    noise: str          # what the bootstrap resampled
    boundary: float = 0.0  # the value the interval is judged against (0, or MOST for a ratio)

    def to_json(self) -> dict:
        return {"name": self.name, "verdict": self.verdict, "estimate": self.interval.estimate,
                "interval": [self.interval.low, self.interval.high], "se": self.interval.se,
                "unit": self.unit, "boundary": self.boundary, "rule": self.rule, "noise": self.noise}


@dataclass(frozen=True)
class Verdict:
    """A claim of the paper, judged on our runs."""

    id: str             # stable identifier, e.g. "e1-accuracy"
    experiment: str     # "E1"
    title: str          # a few words, e.g. "student at least as accurate"
    claim: str          # the paper's claim, in one sentence
    verdict: str        # one of VERDICTS
    evidence: str       # the numbers, in a sentence or two
    parts: tuple[Part, ...] = ()
    why: str = ""       # when the claim does not hold or is inconclusive: what its runs show

    @property
    def noise(self) -> str:
        return "; ".join(dict.fromkeys(p.noise for p in self.parts)) or "not estimated"

    def to_json(self) -> dict:
        return {"id": self.id, "experiment": self.experiment, "title": self.title, "claim": self.claim,
                "verdict": self.verdict,
                "evidence": self.evidence, "noise": self.noise, "why": self.why,
                "parts": [p.to_json() for p in self.parts]}


def combine(verdicts: Sequence[str]) -> str:
    """A claim of several parts: holds if all hold, does not hold if any does not, else inconclusive."""
    if not verdicts:
        return INCONCLUSIVE
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def directional(interval: Interval, threshold: float = 0.0) -> str:
    """Claimed: the quantity exceeds `threshold`. Interval above it: holds; below: does not; else inconclusive."""
    return {"above": HOLDS, "below": FAILS, "within": INCONCLUSIVE}[interval.position(threshold)]


RULE_ABOVE = "holds if the interval lies above 0, does not hold if below 0, inconclusive if it straddles 0"


# ---------------------------------------------------------------------------------------------
# What a claim reads from a run: per-image values on a split

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


def levelling(runs: Sequence, what: str) -> str:
    """A sentence on whether these runs' test agreement had levelled off, computed from their histories."""
    rises = [x for x in (rise_over_last_fifth(r) for r in runs) if x is not None]
    if not rises:
        return ""
    top = max(rises)
    if top < LEVELLED:
        return (f"The {what} had levelled off: agreement rose by at most {top:.1f} points over the last fifth "
                "of training.")
    return (f"The {what} had not all levelled off: agreement still rose by up to {top:.1f} points over the last "
            "fifth of training, so where they end depends on the training length.")


def unresolved(parts: Sequence[Part]) -> str:
    """The parts that did not hold, in words: what was measured, its interval, and why it decides nothing
    (or decides against the claim)."""
    out = []
    for p in parts:
        if p.verdict == HOLDS:
            continue
        interval = p.interval.text(3 if not p.unit else 2) + (f" {p.unit}" if p.unit else "")
        reason = (f"straddling {p.boundary:g}, inside the noise" if p.verdict == INCONCLUSIVE else "against the claim")
        out.append(f"{p.name}: {interval}, {reason} ({p.noise.split(' over ', 1)[-1]})")
    return "; ".join(out) + "." if out else ""


def _pct(values) -> str:
    """'m ± s %' over runs: `values` holds one fraction per run, or (runs, images) per-image values."""
    v = np.asarray(values, dtype=float)
    v = 100 * (v.mean(1) if v.ndim == 2 else v)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f} %" if len(v) > 1 else f"{v.mean():.2f} %"


def _mean_metric(runs: Sequence, key: str) -> float:
    return float(np.mean([r.metrics[key] for r in runs]))


def _seeds(runs: Sequence) -> str:
    return f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"


# ---------------------------------------------------------------------------------------------
# The claims (protocol §8, in the paper's order)

def student_accuracy(teacher, students: Sequence, labels: np.ndarray) -> Verdict:
    """1. A self-distilled student is at least as accurate as its teacher (E1)."""
    correct = correct_per_image(students, labels)
    groups = {"students": Group(correct), "teacher": Group(correct_per_image([teacher], labels), fixed=True)}
    diff = bootstrap(groups, lambda m: 100 * (m["students"] - m["teacher"]))
    verdict = directional(diff)
    part = Part("student minus teacher, test accuracy", verdict, diff, "points", RULE_ABOVE, describe_noise(groups))
    evidence = (f"Students ({_seeds(students)}) reach {_pct(correct)} test accuracy, their teacher "
                f"{_pct(groups['teacher'].values)}: a difference of {diff.text()} points.")
    why = ""
    if verdict != HOLDS:
        rises = [x for x in (rise_over_last_fifth(r, "test_acc") for r in students) if x is not None]
        why = (f"The students fit {_pct([r.metrics['train_acc'] for r in students])} of their clean training set, "
               f"the teacher {100 * teacher.metrics['train_acc']:.2f} %"
               + (f"; their test accuracy moved by {min(rises):+.1f} to {max(rises):+.1f} points over the last fifth "
                  "of training" if rises else "") + ".")
    return Verdict("e1-accuracy", "E1", "students at least as accurate",
                   "A self-distilled student is at least as accurate as its teacher.",
                   verdict, evidence, (part,), why)


def far_from_faithful(teacher, students: Sequence) -> Verdict:
    """2. Students are far from faithful: agreement well below 100 % (E1)."""
    agree = agreement_per_image([teacher], students)
    groups = {"students": Group(agree)}
    gap = bootstrap(groups, lambda m: 100 * (1 - m["students"]))
    verdict = HOLDS if gap.low > 0 else (FAILS if gap.high <= 0 else INCONCLUSIVE)
    rule = ("holds if the interval of the gap to 100 % lies above 0; does not hold if the students agree with "
            "their teacher on every image; inconclusive otherwise")
    part = Part("100 % minus test agreement", verdict, gap, "points", rule, describe_noise(groups))
    evidence = (f"Students agree with their teacher on {_pct(agree)} of "
                f"the test images ({_pct([r.metrics['train_aug_agreement'] for r in students])} of the augmented "
                f"training images): {gap.text()} points short of a copy.")
    why = "" if verdict == HOLDS else "The students reproduce their teacher's predictions on (nearly) every test image."
    return Verdict("e1-fidelity", "E1", "far from faithful",
                   "Students are far from faithful: agreement well below 100 %.",
                   verdict, evidence, (part,), why)


def beyond_independent(teachers: Sequence, students: Sequence) -> Verdict:
    """3. Distillation adds fidelity beyond independent training (E0, E1): a student of teacher 0
    agrees more with its teacher than with teachers it never saw (the paper's baseline) and than
    two independent teachers agree with each other (the study's baseline)."""
    claim = ("Distillation adds fidelity beyond independent training: a student agrees more with its own teacher "
             "than with teachers it never saw, and than independent teachers agree with each other.")
    if len(teachers) < 2:
        return Verdict("e0-baselines", "E0, E1", "fidelity beyond independent training", claim, INCONCLUSIVE,
                       "Needs at least two teachers.")
    own = agreement_per_image(teachers[:1], students)
    others = np.mean([agreement_per_image([t], students) for t in teachers[1:]], axis=0)  # (students, N)
    paper = {"own teacher": Group(own, setting="students"), "other teachers": Group(others, setting="students")}
    lift_paper = bootstrap(paper, lambda m: 100 * (m["own teacher"] - m["other teachers"]))
    pair_values = np.stack([agreement_per_image([a], [b])[0] for i, a in enumerate(teachers) for b in teachers[i + 1:]])
    study = {"students": Group(own), "teacher pairs": Group(pair_values)}
    lift_study = bootstrap(study, lambda m: 100 * (m["students"] - m["teacher pairs"]))
    parts = (Part("against the paper's baseline (own teacher minus teachers i ≠ 0)", directional(lift_paper),
                  lift_paper, "points", RULE_ABOVE, describe_noise(paper)),
             Part("against the study's baseline (student minus teacher-teacher agreement)", directional(lift_study),
                  lift_study, "points", RULE_ABOVE, describe_noise(study)))
    verdict = combine([p.verdict for p in parts])
    evidence = (f"Students of teacher 0 agree {100 * own.mean():.2f} % with it and {100 * others.mean():.2f} % with "
                f"teachers {', '.join(str(t.spec.seed) for t in teachers[1:])}, which they never saw "
                f"({lift_paper.text()} points more, the paper's baseline); independent teachers agree "
                f"{100 * pair_values.mean():.2f} % with each other ({lift_study.text()} points more, the study's "
                "baseline).")
    why = ""
    if verdict != HOLDS:
        why = ("Distillation from teacher 0 left its students no closer to it than to independent networks: "
               + "; ".join(f"{p.name}: {p.interval.text()} points" for p in parts if p.verdict != HOLDS) + ".")
    return Verdict("e0-baselines", "E0, E1", "fidelity beyond independent training", claim, verdict, evidence,
                   parts, why)


def ensemble_size(by_size: Mapping[int, Sequence], pool: Sequence) -> Verdict:
    """4. Agreement rises with the ensemble's size (E2): the largest ensemble's students against
    the smallest's, each measured against its own ensemble."""
    claim = "Students of larger teacher ensembles agree more with their teacher."
    sizes = sorted(by_size)
    if len(sizes) < 2:
        return Verdict("e2-ensembles", "E2", "more teachers, more agreement", claim, INCONCLUSIVE,
                       "Needs at least two ensemble sizes.")
    lo, hi = sizes[0], sizes[-1]
    groups = {f"m={m}": Group(agreement_per_image(pool[:m], by_size[m])) for m in (lo, hi)}
    diff = bootstrap(groups, lambda m: 100 * (m[f"m={hi}"] - m[f"m={lo}"]))
    verdict = directional(diff)
    part = Part(f"agreement at m = {hi} minus m = {lo}", verdict, diff, "points", RULE_ABOVE, describe_noise(groups))
    rows = "; ".join(f"m = {m}: {_pct(agreement_per_image(pool[:m], by_size[m]))} "
                     f"(ensemble accuracy {100 * _mean_metric(by_size[m], 'teacher_test_acc'):.2f} %)" for m in sizes)
    evidence = f"Test agreement with the ensemble: {rows}. Difference {diff.text()} points."
    why = ""
    if verdict != HOLDS:
        gain = 100 * (_mean_metric(by_size[hi], "teacher_test_acc") - _mean_metric(by_size[lo], "teacher_test_acc"))
        why = (f"The {hi}-teacher ensemble is {gain:.2f} points more accurate than a single teacher, and its students "
               f"reach {100 * _mean_metric(by_size[hi], 'test_acc'):.2f} % against "
               f"{100 * _mean_metric(by_size[lo], 'test_acc'):.2f} % for students of one teacher. "
               + levelling([r for m in (lo, hi) for r in by_size[m]], "students"))
    return Verdict("e2-ensembles", "E2", "more teachers, more agreement", claim, verdict, evidence, (part,), why)


def _transition(teacher, by_lambda: Mapping[float, Sequence], model: str) -> tuple[list[Part], str, str, str]:
    """(parts, verdict, evidence, why) of claim 5 for one model."""
    prefix = f"{model}: " if model else ""
    grid = sorted(l for l in by_lambda if l < 1)
    curve = {l: agreement_per_image([teacher], by_lambda[l], "train_aug") for l in sorted(by_lambda)}
    shown = (f"{prefix}train agreement " if prefix else "Train agreement ") + ", ".join(f"{100 * curve[l].mean():.1f} % at λ = {l:g}"
                                                     for l in sorted(by_lambda))
    if len(grid) - 1 < MIN_STEPS:
        return ([], INCONCLUSIVE, f"{shown}. The grid has {len(grid) - 1} steps below λ = 1; telling a jump from a "
                f"steady rise needs at least {MIN_STEPS}.", f"{prefix}the λ grid is too coarse at this scale.")
    groups = {f"{l:g}": Group(curve[l]) for l in grid}

    def stacked(m):
        return np.stack([m[f"{l:g}"] for l in grid])  # (lambdas, R)

    total = bootstrap(groups, lambda m: 100 * (stacked(m)[-1] - stacked(m)[0]))
    ratio = bootstrap(groups, lambda m: np.diff(stacked(m), axis=0).max(0) / (stacked(m)[-1] - stacked(m)[0]))
    steps = np.diff([curve[l].mean() for l in grid])
    k = int(np.argmax(steps))
    noise = describe_noise(groups)
    rise = Part(f"{prefix}total rise, λ = 0 to {grid[-1]:g}", directional(total), total, "points", RULE_ABOVE, noise)
    if rise.verdict != HOLDS:
        sharp = Part(f"{prefix}largest step / total rise", INCONCLUSIVE, ratio, "",
                     "not judged: the total rise is not above the noise", noise)
        verdict = rise.verdict
    else:
        sharp = Part(f"{prefix}largest step / total rise", directional(ratio, MOST), ratio, "",
                     f"holds if the interval lies above {MOST:g}, does not hold if below, inconclusive if it straddles",
                     noise, MOST)
        verdict = sharp.verdict
    evidence = (f"{shown}. The largest step, {100 * steps[k]:.1f} points between λ = {grid[k]:g} and {grid[k + 1]:g}, "
                f"is {ratio.text()} of the {total.text()}-point rise up to λ = {grid[-1]:g}.")
    why = ""
    if verdict != HOLDS:
        why = (f"{prefix}the rise is spread over the grid, in steps of "
               + ", ".join(f"{100 * s:+.1f}" for s in steps) + f" points between neighbouring λ up to {grid[-1]:g}; "
               f"the teacher fits {100 * teacher.metrics['train_acc']:.1f} % of its clean training set.")
        falls = [(grid[i], grid[i + 1], -100 * s) for i, s in enumerate(steps) if s < 0 and total.low > 0]
        single = all(len(by_lambda[l]) == 1 for l in grid)
        if falls and single:
            a, b, drop = max(falls, key=lambda f: f[2])
            why += (f" Agreement falls by {drop:.1f} points from λ = {a:g} to {b:g}: with one student per λ the "
                    "spread over seeds, which the bootstrap over images does not include, is at least that large.")
    return [rise, sharp], verdict, evidence, why


def sharp_transition(models: Mapping[str, tuple]) -> Verdict:
    """5. Fidelity jumps sharply at an intermediate lambda (E3): on train agreement (augmented
    training images, eval mode), the largest rise between adjacent lambdas below 1 is most (> MOST)
    of the rise from lambda = 0 to the largest lambda below 1; lambda = 1 is shown, never decides.

    models: model name (e.g. "LayerNorm") -> (the teacher, {lambda: students}); the claim holds
    when it holds for every model run."""
    claim = "Fidelity jumps sharply at an intermediate λ: one step between neighbouring λ carries most of the rise."
    named = len(models) > 1
    results = [_transition(teacher, by_lambda, name if named else "") for name, (teacher, by_lambda) in models.items()]
    parts = tuple(p for r in results for p in r[0])
    verdict = combine([r[1] for r in results])
    evidence = " ".join(r[2] for r in results)
    why = " ".join(r[3] for r in results if r[3])
    return Verdict("e3-transition", "E3", "a sharp transition in λ", claim, verdict, evidence, parts,
                   why[:1].upper() + why[1:])


def cka_not_agreement(teacher, random: Sequence, teacher_init: Sequence) -> Verdict:
    """6. A teacher-init student has higher CKA with its teacher (stage 1 at least) but no higher
    agreement (E4): CKA's difference must lie above 0, agreement's must not."""
    claim = "A student started from the teacher's initial weights has higher CKA with it, but no higher agreement."
    cka = {"teacher init": Group([r.metrics["cka"][0] for r in teacher_init]),
           "random init": Group([r.metrics["cka"][0] for r in random])}
    d_cka = bootstrap(cka, lambda m: m["teacher init"] - m["random init"])
    agree = {"teacher init": Group(agreement_per_image([teacher], teacher_init)),
             "random init": Group(agreement_per_image([teacher], random))}
    d_agree = bootstrap(agree, lambda m: 100 * (m["teacher init"] - m["random init"]))
    parts = (Part("CKA at stage 1, teacher init minus random init", directional(d_cka), d_cka, "", RULE_ABOVE,
                  describe_noise(cka)),
             Part("test agreement, teacher init minus random init", FAILS if d_agree.position() == "above" else HOLDS,
                  d_agree, "points", "holds unless the interval lies above 0 (teacher init significantly more "
                  "faithful)", describe_noise(agree)))
    verdict = combine([p.verdict for p in parts])

    def stages(runs):
        return " / ".join(f"{np.mean([r.metrics['cka'][i] for r in runs]):.3f}" for i in range(3))

    evidence = (f"CKA with the teacher at stages 1 / 2 / 3: {stages(teacher_init)} from the teacher's initial "
                f"weights ({_seeds(teacher_init)}), {stages(random)} from random ones ({_seeds(random)}); stage 1 "
                f"difference {d_cka.text(3)}. Agreement {_pct(agree['teacher init'].values)} "
                f"vs {_pct(agree['random init'].values)}: {d_agree.text()} points.")
    why = ""
    if verdict != HOLDS:
        why = unresolved(parts)
    return Verdict("e4-cka", "E4", "CKA without agreement", claim, verdict, evidence, parts, why)


def temperature_and_mixup(low: Sequence, high: Sequence, mixup: Sequence, pool: Sequence) -> Verdict:
    """7. A higher temperature raises agreement (`high` vs `low`, students of the same ensemble);
    MixUp (at `high`'s temperature) lowers KL by a larger fraction than it lowers disagreement (E5)."""
    claim = "A higher temperature raises agreement; MixUp lowers the KL more than it raises agreement."
    t_lo, t_hi = low[0].spec.tau, high[0].spec.tau
    lo, hi, plain = f"τ = {t_lo:g}", f"τ = {t_hi:g}", f"τ = {t_hi:g} without MixUp"
    tau = {lo: Group(agreement_per_image(pool, low)), hi: Group(agreement_per_image(pool, high))}
    d_tau = bootstrap(tau, lambda m: 100 * (m[hi] - m[lo]))
    mix = {"agree": Group(agreement_per_image(pool, high), setting=plain),
           "kl": Group(kl_per_image(pool, high), setting=plain),
           "agree mixup": Group(agreement_per_image(pool, mixup), setting="MixUp"),
           "kl mixup": Group(kl_per_image(pool, mixup), setting="MixUp")}

    def relative_gain(m):
        kl_cut = (m["kl"] - m["kl mixup"]) / m["kl"]                        # fraction of the KL removed
        disagreement_cut = (m["agree mixup"] - m["agree"]) / (1 - m["agree"])  # fraction of disagreement removed
        return kl_cut - disagreement_cut

    d_mix = bootstrap(mix, relative_gain)
    parts = (Part(f"agreement at τ = {t_hi:g} minus τ = {t_lo:g}", directional(d_tau), d_tau, "points", RULE_ABOVE,
                  describe_noise(tau)),
             Part("MixUp: fraction of KL removed minus fraction of disagreement removed", directional(d_mix), d_mix, "",
                  RULE_ABOVE, describe_noise(mix)))
    verdict = combine([p.verdict for p in parts])
    evidence = (f"Agreement {_pct(tau[lo].values)} at τ = {t_lo:g} and {_pct(tau[hi].values)} at "
                f"τ = {t_hi:g} ({d_tau.text()} points). MixUp at τ = {t_hi:g}: agreement "
                f"{_pct(mix['agree mixup'].values)}, KL {mix['kl'].values.mean():.3f} → "
                f"{mix['kl mixup'].values.mean():.3f}; "
                f"fraction of the KL removed minus fraction of the disagreement removed {d_mix.text(3)}.")
    why = ""
    if verdict != HOLDS:
        why = unresolved(parts) + " " + levelling([*low, *high, *mixup], "students")
    return Verdict("e5-temperature", "E5", "temperature and MixUp", claim, verdict, evidence, parts, why)


def optimiser_and_length(base: Sequence, alternatives: Mapping[str, Sequence], teacher) -> Verdict:
    """8. Neither longer training nor Adam closes the gap, on test and on train agreement (E6): the
    fraction of the baseline's gap to 100 % that an alternative closes stays below MOST."""
    claim = "Neither longer training nor Adam closes the gap to the teacher, on test or on training images."
    parts, agree = [], {}
    for split in ("test", "train_aug"):
        agree[split] = {label: agreement_per_image([teacher], runs, split)
                        for label, runs in {"baseline": base, **alternatives}.items()}
    for name in alternatives:
        for split, where in (("test", "test"), ("train_aug", "augmented training")):
            groups = {"base": Group(agree[split]["baseline"]), "alt": Group(agree[split][name])}
            closed = bootstrap(groups, lambda m: (m["alt"] - m["base"]) / (1 - m["base"]))
            verdict = {"below": HOLDS, "above": FAILS, "within": INCONCLUSIVE}[closed.position(MOST)]
            parts.append(Part(f"{name}: fraction of the gap closed on {where} images", verdict, closed, "",
                              f"holds if the interval lies below {MOST:g}, does not hold if above, inconclusive "
                              "if it straddles", describe_noise(groups), MOST))
    verdict = combine([p.verdict for p in parts])
    rows = [f"{label}: {_pct(agree['test'][label])} test, {_pct(agree['train_aug'][label])} train"
            for label in agree["test"]]
    closed = [f"{p.name.split(':')[0]} {p.interval.text()} ({'test' if ' test ' in p.name else 'train'})"
              for p in parts]
    evidence = ("Agreement with the teacher, " + "; ".join(rows) + ". Fraction of the baseline's gap to 100 % "
                "closed: " + "; ".join(closed) + ".")
    why = ""
    if verdict != HOLDS:
        why = (unresolved(parts) + f" Closing the gap means closing more than {MOST:g} of it. "
               + levelling(base, "baseline students"))
    return Verdict("e6-optimiser", "E6", "neither optimiser nor length closes the gap", claim, verdict, evidence,
                   tuple(parts), why)


# ---------------------------------------------------------------------------------------------
# From an experiment's runs to all verdicts

@dataclass
class ClaimRuns:
    """The runs every claim reads, by experiment (kdlib.experiments' plans at one scale)."""

    labels: np.ndarray                          # test labels (N,)
    teachers: list                              # E0: the BatchNorm pool, seeds 0..n-1
    self_distilled: list                        # E1: students of teacher 0
    ensembles: dict[int, list]                  # E2: ensemble size m -> its students (seeds)
    lambda_teachers: dict[str, object]          # E3: norm -> the teacher interpolated towards
    lambdas: dict[str, dict[float, list]]       # E3: norm -> lambda -> students (seeds)
    cka: dict[str, list]                        # E4: "random", "teacher_init" -> students
    temperatures: dict[float, list]             # E5: tau -> students of the largest ensemble
    mixup: list                                 # E5: tau 4 with MixUp
    optimisers: dict[str, list] = field(default_factory=dict)  # E6: setting -> students; first = baseline


NORM_NAMES = {"layer": "LayerNorm", "batch": "BatchNorm"}


def evaluate(runs: ClaimRuns) -> list[Verdict]:
    """The eight claims' verdicts, in the paper's order."""
    t0 = runs.teachers[0]
    pool = runs.teachers[:max(runs.ensembles)] if runs.ensembles else runs.teachers
    taus = sorted(runs.temperatures)
    high = 4.0 if 4.0 in runs.temperatures else taus[-1]
    (base, *alts) = runs.optimisers.items()
    out = [student_accuracy(t0, runs.self_distilled, runs.labels),
           far_from_faithful(t0, runs.self_distilled),
           beyond_independent(runs.teachers, runs.self_distilled),
           ensemble_size(runs.ensembles, runs.teachers)]
    out += [sharp_transition({NORM_NAMES[n]: (runs.lambda_teachers[n], runs.lambdas[n]) for n in runs.lambdas}),
            cka_not_agreement(t0, runs.cka["random"], runs.cka["teacher_init"]),
            temperature_and_mixup(runs.temperatures[taus[0]], runs.temperatures[high], runs.mixup, pool),
            optimiser_and_length(base[1], dict(alts), t0)]
    return out


def collect(experiment) -> ClaimRuns:
    """The runs of every claim for a `kdlib.experiments.Experiment` (trained if it trains, else cached)."""
    from kdlib import experiments as ex

    sc = experiment.scale
    temps = experiment.run(ex.temperature_specs(sc))
    mixup = temps.pop(ex.MIXUP)
    return ClaimRuns(
        labels=experiment.dataset.test.y.numpy(),
        teachers=experiment.run(ex.teachers(sc)),
        self_distilled=experiment.run(ex.self_distillation_specs(sc)),
        ensembles=experiment.run(ex.ensemble_specs(sc)),
        lambda_teachers={n: experiment.run(ex.teachers(sc, n)[:1])[0] for n in sc.lambda_norms},
        lambdas={n: experiment.run(ex.initialisation_specs(sc, n)) for n in sc.lambda_norms},
        cka=experiment.run(ex.cka_specs(sc)),
        temperatures={runs[0].spec.tau: runs for runs in temps.values()},
        mixup=mixup,
        optimisers=experiment.run(ex.optimiser_specs(sc)))


def markdown(verdicts: Sequence[Verdict]) -> str:
    """The verdicts as a Markdown list, for the end of a chapter."""
    return "\n".join(f"- **{v.verdict.capitalize()}.** {v.claim} {v.evidence} *Judged against:* {v.noise}."
                     + (f" {v.why}" if v.why else "") for v in verdicts)


def regime(teachers: Sequence, students: Sequence) -> dict:
    """Is a scale in the paper's regime? Its teachers fit their clean training set (each >= 90 %;
    the study's teachers 93.74 %) and its students' test agreement levelled off: over the last fifth
    of training it rose by less than LEVELLED points, on average over the students (one student's
    rise between two evaluations carries the noise of its test set). Returns the numbers and both
    answers."""
    fit = [100 * t.metrics["train_acc"] for t in teachers]
    rises = [x for x in (rise_over_last_fifth(s) for s in students) if x is not None]
    mean_rise = float(np.mean(rises)) if rises else None
    return {"teacher_train_acc": fit, "teachers_fit": min(fit) >= 90.0, "rises": rises, "mean_rise": mean_rise,
            "students_levelled": mean_rise is not None and mean_rise < LEVELLED}


def summary_table(verdicts: Sequence[Verdict]) -> str:
    """The E7 table as Markdown: each claim, its verdict and the comparisons that decided it."""
    rows = ["| claim | verdict | deciding comparisons, 95 % interval |", "|---|---|---|"]
    for v in verdicts:
        deciding = "; ".join(f"{p.name}: {p.interval.text(3 if not p.unit else 2)}"
                             + (f" {p.unit}" if p.unit else "") for p in v.parts) or v.evidence
        verdict = f"**{v.verdict}**" if v.verdict == HOLDS else v.verdict
        rows.append(f"| {v.experiment} · {v.title} (`{v.id}`) | {verdict} | {deciding} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    from kdlib import experiments as ex
    from kdlib.runs import MissingRunsError
    from kdlib.scales import SCALES

    parser = argparse.ArgumentParser(prog="python -m kdlib.claims",
                                     description="The verdicts of the paper's claims on the runs cached for a scale "
                                                 "(nothing is trained).")
    parser.add_argument("--scale", default="reduced", choices=tuple(SCALES), help="the scale the runs were made at")
    parser.add_argument("--data", default="", help="CIFAR-100 source the runs used (default: $KDLIB_DATA, else "
                                                   "torchvision)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="the device the runs were trained on: it decides 'auto' precision, part of their ids")
    parser.add_argument("--json", type=Path, help="also write the verdicts here as JSON")
    args = parser.parse_args(argv)
    try:
        exp = ex.open_experiment(args.scale, args.data, args.device, "inline", train=False)
        verdicts = evaluate(collect(exp))
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    except MissingRunsError as e:
        print(f"kdlib.claims: {e}", file=sys.stderr)
        return 1
    for v in verdicts:
        print(f"[{v.verdict}] {v.experiment}: {v.claim}\n    {v.evidence}\n    noise: {v.noise}"
              + (f"\n    why: {v.why}" if v.why else ""))
    held = sum(v.verdict == HOLDS for v in verdicts)
    print(f"\n{held} of {len(verdicts)} claims hold at the {args.scale!r} scale.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"scale": args.scale, "data": exp.dataset.describe(),
                                         "claims": [v.to_json() for v in verdicts]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
