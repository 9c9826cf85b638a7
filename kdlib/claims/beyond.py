"""Questions the study left open, answered from the report's runs (protocol §9).

Verdicts that are ours, not the paper's, judged by the same family rule (kdlib.claims.rules),
numbered by the study's questions: B1 hard labels, B2 a capacity gap, B3 the number of classes,
B4 fidelity and generalisation, B5 calibration transfer, B6 where a student disagrees with its
teacher. Each is a function from runs to a `Verdict`. B4 reads every student the report trains,
each as a `Taught` (the study's table lists them: kdlib.study.students).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from kdlib import metrics, tables
from kdlib.claims import text
from kdlib.claims.evidence import (agreement_per_image, correct_per_image, fixed, group, own_agreement, own_teachers,
                                   pair_agreement, paired, seeds_of, teacher_logits)
from kdlib.claims.rules import ABOVE, AGREEMENT_DELTA, BELOW, MOST, SHARE_DELTA, Part, family
from kdlib.claims.verdict import Verdict, part, why_not
from kdlib.stats import Group, rank_correlation

DEEP = "deep teacher's students"  # B2's group of the deeper teacher's students
STRONG = 0.5    # B4: a rank correlation this strong would make agreement a good guide to a student's gain
TRANSFER = 0.5  # B5: "transfers well" = at least half of a teacher's change in ECE reaches its student


class Taught(NamedTuple):
    """A student with what it learned from: the setting it belongs to, the teacher runs (an
    ensemble's members), and the test labels of its data (B3's students have fewer classes)."""

    setting: str
    run: object
    teachers: list
    labels: np.ndarray


@dataclass(frozen=True)
class ClassRuns:
    """B3: the runs at one class count, and the test labels of its data."""

    teachers: list
    students: list
    labels: np.ndarray


def agreement_and_gain(taught: Sequence[Taught]) -> tuple[np.ndarray, np.ndarray]:
    """Per student: its test agreement with its (ensemble) teacher and its test accuracy minus the
    teacher's, as fractions (B4's two axes)."""
    agreement = np.array([agreement_per_image(t.teachers, [t.run])[0].mean() for t in taught])
    teacher_acc = np.array([(teacher_logits(t.teachers).argmax(1).numpy() == t.labels).mean() for t in taught])
    gain = np.array([correct_per_image([t.run], t.labels)[0].mean() for t in taught]) - teacher_acc
    return agreement, gain


def by_setting(taught: Sequence[Taught], values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The settings of `taught`, in order of first appearance, and the mean of `values` (one per
    student) over each setting's students."""
    settings = list(dict.fromkeys(t.setting for t in taught))
    return settings, np.array([np.mean([v for t, v in zip(taught, values) if t.setting == s]) for s in settings])


def fidelity_and_generalisation(pairs: Sequence[Taught]) -> Verdict:
    """B4. Closer matching does not reliably bring better generalisation: across the report's settings,
    the rank correlation of their students' mean test agreement with the own teacher and mean test
    accuracy minus that teacher's lies below STRONG.

    The unit is the setting, not the student: the students of one setting share its recipe and
    teachers, and their agreement and gain move together, so counted one by one they would pass for
    many more independent draws than they are (a student-level Fisher-z interval covered about 81 %
    in a simulation of the report's settings). Each setting is one draw: its students' mean."""
    claim = (f"Matching the teacher more closely does not reliably make a better student: across the report's "
             f"settings, the rank correlation between their students' agreement with the own teacher and the "
             f"accuracy they gain over it is below {STRONG:g}.")
    agreement, gain = agreement_and_gain(pairs)
    settings, mean_agreement = by_setting(pairs, agreement)
    _, mean_gain = by_setting(pairs, gain)
    iv = rank_correlation(mean_agreement, mean_gain)
    k = len(settings)
    parts = (Part("rank correlation of agreement and accuracy gain, over settings", iv, STRONG, BELOW, "",
                  {"units": {"settings": k}, "runs_per_unit": {"settings": round(len(pairs) / max(k, 1), 2)},
                   "images": 0, "fixed": [],
                   "model": f"Fisher-z interval over {k} settings, each its students' mean"}),)
    if k < 4:
        return Verdict("b4-fidelity-generalisation", "B4", "closer matching, no better student", claim,
                       f"Needs at least four settings, got {k}.", parts)
    evidence = (f"{len(pairs)} students in {k} settings agree with their teachers on {100 * agreement.min():.1f} to "
                f"{100 * agreement.max():.1f} % of the test images and gain {100 * gain.min():+.1f} to "
                f"{100 * gain.max():+.1f} points of accuracy over them; over the settings' means the rank correlation "
                f"is {parts[0].text()}.")
    why = why_not(parts, if_fails="Settings whose students match their teachers more closely are, at this scale, the "
                                  "ones whose students gain more.")
    return Verdict("b4-fidelity-generalisation", "B4", "closer matching, no better student", claim, evidence, parts,
                   why, scope="the report's settings, each one draw (its students' mean); they share teachers")


def ece_per_run(runs: Sequence, labels: np.ndarray) -> np.ndarray:
    y = torch.as_tensor(labels)
    return np.array([metrics.ece(r.test_logits(), y) for r in runs])


def calibration_gaps(runs: Sequence, labels: np.ndarray) -> np.ndarray:
    """(runs, images): each run's per-image calibration gap on the test set (kdlib.metrics.calibration_gap)."""
    y = torch.as_tensor(labels)
    return np.stack([metrics.calibration_gap(r.test_logits(), y).numpy() for r in runs])


def calibration_transfer(by_size: Mapping[int, Sequence], pool: Sequence, labels: np.ndarray) -> Verdict:
    """B5. Calibration does not transfer well: across ensemble sizes, the slope of the students'
    calibration error on their (ensemble) teachers' lies below TRANSFER; seed-paired.

    The calibration error is the calibration part of the test NLL, what temperature scaling would
    remove (kdlib.metrics.calibration_gap): a mean of per-image values, so the test images' noise is
    counted for students and teachers alike, and nearly unbiased where the binned ECE of a few
    thousand images has a floor that compresses a well-calibrated student's change (protocol §9)."""
    claim = (f"Calibration does not transfer well through distillation: across ensemble sizes, less than "
             f"{TRANSFER:g} of a change in the teacher's calibration error (the part of its test NLL that "
             "temperature scaling removes) reaches its students (the slope of one on the other).")
    sizes = sorted(by_size)
    if len(sizes) < 2:
        return Verdict("b5-calibration", "B5", "calibration does not transfer", claim,
                       "Needs students of at least two ensemble sizes.")
    y = torch.as_tensor(labels)
    teachers = {m: teacher_logits(pool[:m]) for m in sizes}
    settings = dict(zip(sizes, paired(*(by_size[m] for m in sizes))))
    groups = {}
    for m in sizes:
        groups[f"m = {m}"] = group(calibration_gaps(settings[m], labels), settings[m], "seeds")
        groups[f"teacher, m = {m}"] = fixed(metrics.calibration_gap(teachers[m], y).numpy()[None])

    def slope(means):
        s = np.stack([means[f"m = {k}"] for k in sizes])
        t = np.stack([means[f"teacher, m = {k}"] for k in sizes])
        tc = t - t.mean(0)
        return (tc * (s - s.mean(0))).sum(0) / (tc ** 2).sum(0)

    parts = family([part("slope of the students' calibration error on the teacher's", groups, slope, TRANSFER, BELOW,
                         "")])
    rows = ", ".join(f"m = {m}: teacher {groups[f'teacher, m = {m}'].values.mean():.4f} nats (ECE "
                     f"{metrics.ece(teachers[m], y):.3f}), students {tables.fmt(list(groups[f'm = {m}'].values.mean(1)), digits=4)} "
                     f"nats (ECE {tables.fmt(list(ece_per_run(settings[m], labels)), digits=3)})" for m in sizes)
    evidence = (f"Calibration error, the part of the test NLL temperature scaling removes, by ensemble size ({rows}); "
                f"the slope is {parts[0].text()}.")
    why = why_not(parts, if_fails="The students' calibration follows their teachers'.")
    return Verdict("b5-calibration", "B5", "calibration does not transfer", claim, evidence, parts, why,
                   scope=f"students of the first m of these {len(pool)} teachers, m in {sizes}")


def where_they_disagree(teacher, students: Sequence, pool: Sequence) -> Verdict:
    """B6. A student's disagreements with its teacher lie mostly where independent teachers disagree:
    of the images a student disagrees on, the share on which its teacher and another teacher of the
    pool disagree (averaged over the others) lies above MOST. `teacher`: one run (teacher 0, of every
    student), or one teacher per student, each in the pool."""
    claim = (f"A student departs from its teacher mostly where independent training departs too: more than "
             f"{MOST:g} of the test images it disagrees with its teacher on are images where the teacher and an "
             "independently trained one disagree.")
    own = own_teachers(teacher, students)
    mine = [teacher] * len(students) if own is None else own
    if not all(any(t is not m for t in pool) for m in mine):
        return Verdict("b6-where-they-disagree", "B6", "disagreements where teachers disagree", claim,
                       "Needs at least two teachers.")
    # (runs, images): how often the student's teacher and the other teachers of the pool disagree on an image
    contested = np.stack([1 - np.mean([agreement_per_image([m], [t])[0] for t in pool if t is not m], axis=0)
                          for m in mine])
    away = 1 - own_agreement(mine, students)                                                     # (runs, images)
    groups = {"disagreements on contested images": group(away * contested, students, "students"),
              "disagreements": group(away, students, "students"), "contested": fixed(contested[:1])}
    parts = family([part("share of the student's disagreements on contested images", groups,
                          lambda m: m["disagreements on contested images"] / m["disagreements"], MOST, ABOVE, "")])
    evidence = (f"Students disagree with their teacher on {text.pct(away)} of the test images; the teacher and "
                f"an independent one disagree on {100 * contested.mean():.2f} %. Of the students' disagreements, "
                f"{parts[0].text()} fall on those contested images (chance would put {contested.mean():.3f} there).")
    why = why_not(parts,
               if_fails="Most of what the students leave unmatched lies on images independent teachers agree on.")
    return Verdict("b6-where-they-disagree", "B6", "disagreements where teachers disagree", claim, evidence, parts,
                   why, scope=(f"the students of teacher {teacher.spec.seed}, against these {len(pool)} teachers"
                               if own is None else f"{len(students)} students, each against its own teacher and "
                               f"the other {len(pool) - 1}"))


def hard_labels(by_alpha: Mapping[float, Sequence], teacher) -> Verdict:
    """B1. Hard labels make a more teacher-like student: test agreement at the largest alpha minus
    at alpha 0, seed-paired, above 0."""
    claim = ("Hard labels help the student match its teacher: with the label loss weighted at the largest α, "
             "students agree more with their teacher than with none (α = 0).")
    alphas = sorted(by_alpha)
    if len(alphas) < 2 or alphas[0] != 0.0:
        return Verdict("b1-hard-labels", "B1", "hard labels raise agreement", claim,
                       "Needs students at α = 0 and at one α above it.")
    top = alphas[-1]
    base, high = paired(by_alpha[0.0], by_alpha[top])
    groups = {"α = 0": group(agreement_per_image([teacher], base), base, "seeds"),
              f"α = {top:g}": group(agreement_per_image([teacher], high), high, "seeds")}
    parts = family([part(f"test agreement, α = {top:g} minus α = 0", groups,
                          lambda m: 100 * (m[f"α = {top:g}"] - m["α = 0"]), 0.0, ABOVE, "points",
                          effect=AGREEMENT_DELTA)])
    shown = "; ".join(f"α = {a:g}: {text.pct(agreement_per_image([teacher], by_alpha[a]))} agreement, "
                      f"{tables.fmt_metric(by_alpha[a], 'test_acc', 100)} % accuracy ({text.seeds(by_alpha[a])})"
                      for a in alphas)
    evidence = (f"Test agreement with the teacher and accuracy by α: {shown}. The seed-paired difference is "
                f"{parts[0].text()}.")
    why = why_not(parts, if_fails="The label loss did not bring the students closer to their teacher.")
    return Verdict("b1-hard-labels", "B1", "hard labels raise agreement", claim, evidence, parts, why,
                   scope=f"the students of teacher {teacher.spec.seed}")


def disagreement_share(students: Sequence, teachers: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(students, images) agreement with teachers[0] and (1, images) mean agreement between the
    teachers' pairs: the two parts of the share of independent disagreement a student keeps."""
    agree = agreement_per_image(teachers[:1], students)
    pairs = np.stack(pair_agreement(teachers))
    return agree, pairs.mean(0, keepdims=True)


def richer_soft_labels(by_count: Mapping[int, ClassRuns]) -> Verdict:
    """B3. With more classes the student keeps less of the disagreement independent training leaves:
    the share at the most classes minus at the fewest, below 0; each count on its own test images."""
    claim = ("With more classes, soft labels carry the teacher further: the share of independent teachers' "
             "disagreement a student keeps is smaller at the most classes than at the fewest.")
    counts = sorted(k for k, c in by_count.items() if len(c.teachers) >= 2 and c.students)
    if len(counts) < 2:
        return Verdict("b3-classes", "B3", "fidelity gap shrinks with classes", claim,
                       "Needs students and two teachers at two class counts at least.")
    few, most = counts[0], counts[-1]
    groups = {}
    for k in (few, most):
        c = by_count[k]
        agree, pairs = disagreement_share(c.students, c.teachers)
        groups[f"students, {k} classes"] = Group(agree, units=seeds_of(c.students), images=f"{k} classes")
        groups[f"teacher pairs, {k} classes"] = Group(pairs, fixed=True, images=f"{k} classes")

    def share(m, k):
        return (1 - m[f"students, {k} classes"]) / (1 - m[f"teacher pairs, {k} classes"])

    parts = family([part(f"share kept, {most} minus {few} classes", groups,
                          lambda m: share(m, most) - share(m, few), 0.0, BELOW, "", effect=SHARE_DELTA)])
    rows = []
    for k in counts:
        agree, pairs = disagreement_share(by_count[k].students, by_count[k].teachers)
        rows.append(f"{k} classes: students agree {text.pct(agree)}, teachers {100 * pairs.mean():.2f} %, share "
                    f"{np.mean((1 - agree.mean(1)) / (1 - pairs.mean())):.3f}")
    evidence = f"{'; '.join(rows)}. The difference in share is {parts[0].text()}."
    why = why_not(parts, if_fails="More classes did not let the students keep less of the independent disagreement.")
    return Verdict("b3-classes", "B3", "fidelity gap shrinks with classes", claim, evidence, parts, why,
                   scope=f"self-distillation on the first {', '.join(map(str, counts))} classes, one teacher pair "
                         "or pool per count")


def capacity_gap(deep, deep_students: Sequence, teacher, students: Sequence, pool: Sequence) -> Verdict:
    """B2. Fidelity is lower across a capacity gap: the share of independent disagreement kept by the
    students of a deeper teacher minus that kept by self-distilled students (E1's), seed-paired, above 0."""
    claim = ("Fidelity is lower across a capacity gap: students of a deeper teacher keep more of the disagreement "
             "independent training leaves than self-distilled students do.")
    if len(pool) < 2 or not deep_students or not students:
        return Verdict("b2-capacity-gap", "B2", "a capacity gap lowers fidelity", claim,
                       "Needs a deeper teacher's students, E1's students and two pool teachers.")
    gap, own = paired(deep_students, students)
    deep_pairs = np.stack([agreement_per_image([deep], [t])[0] for t in pool]).mean(0, keepdims=True)
    own_agree, own_pairs = disagreement_share(own, [teacher, *[t for t in pool if t is not teacher]])
    groups = {DEEP: group(agreement_per_image([deep], gap), gap, "seeds"),
              "E1's students": group(own_agree, own, "seeds"),
              "deep teacher vs the pool": fixed(deep_pairs), "pool pairs": fixed(own_pairs)}

    def kept(m, who, base):
        return (1 - m[who]) / (1 - m[base])

    parts = family([part("share kept, deeper teacher minus self-distillation", groups,
                          lambda m: kept(m, DEEP, "deep teacher vs the pool")
                          - kept(m, "E1's students", "pool pairs"), 0.0, ABOVE, "", effect=SHARE_DELTA)])
    evidence = (f"The PreResNet-{deep.spec.depth} teacher reaches {100 * deep.metrics['test_acc']:.2f} % test accuracy "
                f"(the pool's PreResNet-20s {tables.fmt_metric(pool, 'test_acc', 100)} %). Its students agree with it "
                f"on "
                f"{text.pct(groups[DEEP].values)} of the test images, "
                f"against {100 * deep_pairs.mean():.2f} % for independent PreResNet-20s; E1's students agree "
                f"{text.pct(own_agree)} with their teacher, independent teachers {100 * own_pairs.mean():.2f} %. "
                f"The difference in the share kept is {parts[0].text()}.")
    why = why_not(parts,
               if_fails="Across the gap the students kept no more of the independent disagreement than in "
                        "self-distillation.")
    return Verdict("b2-capacity-gap", "B2", "a capacity gap lowers fidelity", claim, evidence, parts, why,
                   scope=f"one PreResNet-{deep.spec.depth} teacher (seed {deep.spec.seed}) and teacher "
                         f"{teacher.spec.seed}")
