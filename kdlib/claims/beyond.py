"""Questions the study left open, answered from the report's runs (protocol §9).

Three verdicts that are ours, not the paper's, judged by the same family rule (kdlib.claims.rules):
B4 fidelity and generalisation, B5 calibration transfer, B6 where a student disagrees with its
teacher. Each is a function from runs to a `Verdict`; `students_with_teachers` lists every student
the report trains with the teacher runs it learned from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from kdlib import metrics, tables
from kdlib.claims import text
from kdlib.claims.evidence import agreement_per_image, correct_per_image, fixed, group, paired, teacher_logits
from kdlib.claims.paper import Verdict, _part, _why
from kdlib.claims.rules import ABOVE, BELOW, MOST, Part, family
from kdlib.stats import rank_correlation
from kdlib.tables import NORM_NAMES

STRONG = 0.5    # B4: a rank correlation this strong would make agreement a good guide to a student's gain
TRANSFER = 0.5  # B5: "transfers well" = at least half of a teacher's change in ECE reaches its student


def students_by_setting(runs) -> list[tuple[str, object, list]]:
    """Every student of a `kdlib.claims.ClaimRuns`, once, as (setting, student, the teacher runs it
    learned from: an ensemble's members for an ensemble student), in the experiments' order. A run
    in two settings (E1's students are E2's at m = 1) is listed under the first."""
    pool = runs.teachers
    ensemble = pool[:runs.ensemble_pool or len(pool)]
    settings = [("E1", runs.self_distilled, pool[:1]),
                *((f"E2 m = {m}", students, pool[:m]) for m, students in runs.ensembles.items()),
                *((f"E3 {NORM_NAMES.get(norm, norm)} λ = {lam:g}", students, [runs.lambda_teachers[norm]])
                  for norm, curve in runs.lambdas.items() for lam, students in curve.items()),
                *((f"E4 {start.replace('_', ' ')}", students, pool[:1]) for start, students in runs.cka.items()),
                *((f"E5 τ = {tau:g}", students, ensemble) for tau, students in runs.temperatures.items()),
                ("E5 τ = 4 + MixUp", runs.mixup, ensemble),
                *((f"E6 {name}", students, pool[:1]) for name, students in runs.optimisers.items())]
    seen, out = set(), []
    for setting, students, teachers in settings:
        for s in students:
            key = getattr(s, "id", None) or id(s)
            if key not in seen and teachers:
                seen.add(key)
                out.append((setting, s, list(teachers)))
    return out


def students_with_teachers(runs) -> list[tuple[object, list]]:
    """Every student of a `kdlib.claims.ClaimRuns`, once, with its teacher runs (`students_by_setting`)."""
    return [(s, teachers) for _, s, teachers in students_by_setting(runs)]


def agreement_and_gain(pairs: Sequence[tuple[object, Sequence]], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (student, teacher runs): its test agreement with that (ensemble) teacher and its test
    accuracy minus the teacher's, as fractions (B4's two axes)."""
    agreement = np.array([agreement_per_image(t, [s])[0].mean() for s, t in pairs])
    teacher_acc = np.array([(teacher_logits(t).argmax(1).numpy() == labels).mean() for _, t in pairs])
    gain = np.array([correct_per_image([s], labels)[0].mean() for s, _ in pairs]) - teacher_acc
    return agreement, gain


def fidelity_and_generalisation(pairs: Sequence[tuple[object, Sequence]], labels: np.ndarray) -> Verdict:
    """B4. Closer matching does not reliably bring better generalisation: across students, the rank
    correlation of test agreement with the own teacher and test accuracy minus that teacher's lies
    below STRONG."""
    claim = (f"Matching the teacher more closely does not reliably make a better student: across the report's "
             f"students, the rank correlation between agreement with the own teacher and the accuracy gained over "
             f"it is below {STRONG:g}.")
    agreement, gain = agreement_and_gain(pairs, labels)
    iv = rank_correlation(agreement, gain)
    parts = (Part("rank correlation of agreement and accuracy gain", iv, STRONG, BELOW, "",
                  {"units": {"students": len(pairs)}, "runs_per_unit": {"students": 1}, "images": 0, "fixed": [],
                   "model": f"Fisher-z interval over {len(pairs)} students, one draw each"}),)
    if len(pairs) < 4:
        return Verdict("b4-fidelity-generalisation", "B4", "closer matching, no better student", claim,
                       f"Needs at least four students, got {len(pairs)}.", parts)
    evidence = (f"{len(pairs)} students agree with their teachers on {100 * agreement.min():.1f} to "
                f"{100 * agreement.max():.1f} % of the test images and gain {100 * gain.min():+.1f} to "
                f"{100 * gain.max():+.1f} points of accuracy over them; the rank correlation is {parts[0].text()}.")
    why = _why(parts, "Students that match their teachers more closely are, at this scale, the ones that gain more.")
    return Verdict("b4-fidelity-generalisation", "B4", "closer matching, no better student", claim, evidence, parts,
                   why, scope="the students of the report's settings, one draw each (they share teachers and seeds)")


def ece_per_run(runs: Sequence, labels: np.ndarray) -> np.ndarray:
    y = torch.as_tensor(labels)
    return np.array([metrics.ece(r.test_logits(), y) for r in runs])


def calibration_transfer(by_size: Mapping[int, Sequence], pool: Sequence, labels: np.ndarray) -> Verdict:
    """B5. Calibration does not transfer well: the slope of the students' test ECE on their
    (ensemble) teachers' across ensemble sizes lies below TRANSFER; seed-paired."""
    claim = (f"Calibration does not transfer well through distillation: across ensemble sizes, less than "
             f"{TRANSFER:g} of a change in the teacher's test ECE reaches its students (the slope of one on the "
             "other).")
    sizes = sorted(by_size)
    if len(sizes) < 2:
        return Verdict("b5-calibration", "B5", "calibration does not transfer", claim,
                       "Needs students of at least two ensemble sizes.")
    y = torch.as_tensor(labels)
    teacher = np.array([metrics.ece(teacher_logits(pool[:m]), y) for m in sizes])
    settings = paired(*(by_size[m] for m in sizes))
    groups = {f"m = {m}": group(ece_per_run(students, labels), students, "seeds")
              for m, students in zip(sizes, settings)}
    centred = teacher - teacher.mean()

    def slope(m):
        s = np.stack([m[f"m = {k}"] for k in sizes])
        return (centred[:, None] * (s - s.mean(0))).sum(0) / (centred ** 2).sum()

    parts = family([_part("slope of student ECE on teacher ECE", groups, slope, TRANSFER, BELOW, "")])
    rows = ", ".join(f"m = {m}: teacher {teacher[i]:.3f}, students "
                     f"{tables.fmt(list(ece_per_run(settings[i], labels)), digits=3)}" for i, m in enumerate(sizes))
    evidence = f"Test ECE by ensemble size ({rows}); the slope is {parts[0].text()}."
    why = _why(parts, "The students' calibration follows their teachers'.")
    return Verdict("b5-calibration", "B5", "calibration does not transfer", claim, evidence, parts, why,
                   scope=f"students of the first m of these {len(pool)} teachers, m in {sizes}")


def where_they_disagree(teacher, students: Sequence, pool: Sequence) -> Verdict:
    """B6. A student's disagreements with its teacher lie mostly where independent teachers disagree:
    of the images a student disagrees on, the share on which teacher 0 and another teacher of the
    pool disagree (averaged over the others) lies above MOST."""
    claim = (f"A student departs from its teacher mostly where independent training departs too: more than "
             f"{MOST:g} of the test images it disagrees with its teacher on are images where the teacher and an "
             "independently trained one disagree.")
    others = [t for t in pool if t is not teacher]
    if not others:
        return Verdict("b6-where-they-disagree", "B6", "disagreements where teachers disagree", claim,
                       "Needs at least two teachers.")
    contested = 1 - np.mean([agreement_per_image([teacher], [t])[0] for t in others], axis=0)  # (images,)
    away = 1 - agreement_per_image([teacher], students)                                         # (runs, images)
    groups = {"disagreements on contested images": group(away * contested, students, "students"),
              "disagreements": group(away, students, "students"), "contested": fixed(contested[None])}
    parts = family([_part("share of the student's disagreements on contested images", groups,
                          lambda m: m["disagreements on contested images"] / m["disagreements"], MOST, ABOVE, "")])
    evidence = (f"Students disagree with their teacher on {text.pct(away)} of the test images; the teacher and "
                f"an independent one disagree on {100 * contested.mean():.2f} %. Of the students' disagreements, "
                f"{parts[0].text()} fall on those contested images (chance would put {contested.mean():.3f} there).")
    why = _why(parts, "Most of what the students leave unmatched lies on images independent teachers agree on.")
    return Verdict("b6-where-they-disagree", "B6", "disagreements where teachers disagree", claim, evidence, parts,
                   why, scope=f"the students of teacher {teacher.spec.seed}, against these {len(pool)} teachers")
