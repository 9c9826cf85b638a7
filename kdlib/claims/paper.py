"""The paper's eight claims, each a function from runs to a Verdict (protocol §8).

Each claim names its parts (the quantities it is decided on), their boundaries and claimed sides,
and the groups of runs their noise comes from (kdlib.stats); kdlib.claims.rules turns them into
a verdict. Settings compared at the same seed (students of one seed in two settings share its
initial weights and data order) are paired by seed; the teachers a claim speaks of are fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kdlib import tables
from kdlib.claims import text
from kdlib.claims.evidence import (agreement_per_image, correct_per_image, fixed, group, kl_per_image,
                                   own_agreement, own_teachers, pair_agreement, paired, rise_over_last_fifth,
                                   seeds_of)
from kdlib.claims.rules import (ABOUT_HALF, ABOVE, AGREEMENT_DELTA, BELOW, CKA_DELTA, FAR_FROM_FAITHFUL, FRACTION_DELTA,
                                JUMP_WINDOW, KL_DELTA, MARGIN, MOST, NO_HIGHER, NON_INFERIORITY, family, planned,
                                rise_width, window_share)
from kdlib.claims.verdict import Verdict, part, why_not


# ---------------------------------------------------------------------------------------------
# 1-3: E0 and E1

def student_accuracy(teacher, students: Sequence, labels: np.ndarray) -> Verdict:
    """1. A self-distilled student is at least as accurate as its teacher: non-inferiority, the
    student's test accuracy minus the teacher's above NON_INFERIORITY points (E1).

    teacher: the one teacher of every student (fixed: the verdict speaks of it), or one teacher per
    student (the students of several teachers: each student and its own teacher are one unit, so the
    spread between teachers is counted, protocol §8)."""
    own = own_teachers(teacher, students)
    correct = correct_per_image(students, labels)
    if own is None:
        groups = {"students": group(correct, students), "teacher": fixed(correct_per_image([teacher], labels))}
        whose = "their teacher"
    else:
        groups = {"students": group(correct, students, "pairs"),
                  "teacher": group(correct_per_image(own, labels), students, "pairs")}
        whose = "their own teachers"
    parts = family([part("student minus teacher, test accuracy", groups,
                         lambda m: 100 * (m["students"] - m["teacher"]), NON_INFERIORITY, ABOVE, "points",
                         effect=planned(MARGIN, "e1-accuracy"))])
    evidence = (f"Students ({text.seeds(students)}) reach {text.pct(correct)} test accuracy, {whose} "
                f"{text.pct(groups['teacher'].values)}: a difference of {parts[0].text()}.")
    teachers = [teacher] if own is None else own
    theirs = (f"{100 * teacher.metrics['train_acc']:.2f} %" if own is None else
              text.pct([t.metrics.get('train_acc', np.nan) for t in teachers]))
    fit = (f"The students fit {text.pct([r.metrics['train_acc'] for r in students])} of their clean training set, "
           f"the teacher{'s' if own else ''} {theirs}"
           if all("train_acc" in r.metrics for r in [*students, *teachers]) else "")
    rises = [x for x in (rise_over_last_fifth(r, "test_acc") for r in students) if x is not None]
    moved = (f"their test accuracy moved by {min(rises):+.1f} to {max(rises):+.1f} points over the last fifth of "
             "training" if rises else "")
    said = "; ".join(x for x in (fit, moved) if x)
    why = why_not(parts, (text.capital(said) + ".") if said else "")
    scope = (f"the students of one teacher (seed {teacher.spec.seed})" if own is None else
             f"{len(students)} students, each against its own teacher")
    return Verdict("e1-accuracy", "E1", "students at least as accurate",
                   f"A self-distilled student is at least as accurate as its teacher (within {-NON_INFERIORITY:g} "
                   "point).", evidence, parts, why, scope=scope)


def far_from_faithful(teacher, students: Sequence, pool: Sequence) -> Verdict:
    """2. Students are far from faithful: the student's disagreement with its teacher, as a share of
    the disagreement between independently trained teachers (pairs of `pool`), above
    FAR_FROM_FAITHFUL (E1). A near-copy has a share near 0 and fails. `teacher`: one run, or one
    teacher per student (as for `student_accuracy`)."""
    own = own_teachers(teacher, students)
    agree = agreement_per_image([teacher], students) if own is None else own_agreement(own, students)
    pairs = pair_agreement(pool)
    if not pairs:
        return Verdict("e1-fidelity", "E1", "far from faithful", "Needs at least two teachers.", "")
    groups = {"students": group(agree, students), "teacher pairs": fixed(np.stack(pairs))}
    parts = family([part("student's disagreement / independent teachers' disagreement", groups,
                         lambda m: (1 - m["students"]) / (1 - m["teacher pairs"]), FAR_FROM_FAITHFUL, ABOVE, "",
                         effect=planned(MARGIN, "e1-fidelity"))])
    augmented = (f" ({text.pct([r.metrics['train_aug_agreement'] for r in students])} of the augmented training "
                 "images)" if all("train_aug_agreement" in r.metrics for r in students) else "")
    evidence = (f"Students agree with their {'teacher' if own is None else 'own teachers'} on {text.pct(agree)} of "
                f"the test images{augmented}; independent teachers agree on {100 * np.mean(pairs):.2f} %. The "
                f"students keep {parts[0].text()} of the disagreement independent training leaves.")
    why = why_not(parts,
                  if_fails="The students are closer to copies of their teacher than to independently trained networks.")
    scope = (f"the students of teacher {teacher.spec.seed}, against these {len(pool)} teachers" if own is None else
             f"{len(students)} students, each against its own teacher, and these {len(pool)} teachers")
    return Verdict("e1-fidelity", "E1", "far from faithful",
                   f"Students are far from faithful: they keep more than {FAR_FROM_FAITHFUL:g} of the disagreement "
                   "two independently trained teachers have.", evidence, parts, why, scope=scope)


def beyond_independent(teachers: Sequence, students: Sequence, own: Sequence | None = None) -> Verdict:
    """3. Distillation adds fidelity beyond independent training (E0, E1): a student agrees more with
    its teacher than with teachers it never saw (the paper's baseline) and than independent teachers
    agree with each other (the study's baseline).

    teachers: the pool of independently trained teachers; without `own`, teachers[0] is every
    student's teacher and the others are the ones it never saw; with `own` (one teacher per student,
    each in the pool), each student against its own and against the rest of the pool."""
    claim = ("Distillation adds fidelity beyond independent training: a student agrees more with its own teacher "
             "than with teachers it never saw, and than independent teachers agree with each other.")
    if len(teachers) < 2:
        return Verdict("e0-baselines", "E0, E1", "fidelity beyond independent training", claim, "Needs at least "
                       "two teachers.")
    if own is None:
        own_agree = agreement_per_image(teachers[:1], students)
        others = np.mean([agreement_per_image([t], students) for t in teachers[1:]], axis=0)  # (students, N)
        unseen = "teachers i ≠ 0"
    else:
        own = own_teachers(own, students)
        own_agree = own_agreement(own, students)
        others = np.stack([np.mean([agreement_per_image([t], [s])[0] for t in teachers if t is not mine], axis=0)
                           for s, mine in zip(students, own)])
        unseen = "the teachers it never saw"
    pairs = np.stack(pair_agreement(teachers))
    paper = {"own teacher": group(own_agree, students, "students"),
             "other teachers": group(others, students, "students")}
    study = {"students": group(own_agree, students), "teacher pairs": fixed(pairs)}
    parts = family([
        part(f"against the paper's baseline (own teacher minus {unseen})", paper,
             lambda m: 100 * (m["own teacher"] - m["other teachers"]), 0.0, ABOVE, "points", effect=AGREEMENT_DELTA),
        part("against the study's baseline (student minus teacher-teacher agreement)", study,
             lambda m: 100 * (m["students"] - m["teacher pairs"]), 0.0, ABOVE, "points",
             effect=planned(AGREEMENT_DELTA, "e0-study-baseline"))])
    if own is None:
        who = (f"Students of teacher 0 agree {100 * own_agree.mean():.2f} % with it and {100 * others.mean():.2f} % with "
               f"teachers {', '.join(str(t.spec.seed) for t in teachers[1:])}, which they never saw")
        scope = f"the students of teacher {teachers[0].spec.seed}, against these {len(teachers)} teachers"
    else:
        who = (f"Each student agrees {100 * own_agree.mean():.2f} % with its own teacher and {100 * others.mean():.2f} % "
               f"with the {len(teachers) - 1} other teachers, which it never saw")
        scope = f"{len(students)} students, each against its own teacher and the other {len(teachers) - 1}"
    evidence = (f"{who} ({parts[0].text()} more, the paper's baseline); independent teachers agree "
                f"{100 * pairs.mean():.2f} % with each other ({parts[1].text()} more, the study's baseline).")
    why = why_not(parts, if_fails=("Distillation from teacher 0 left its students no closer to it than to independent "
                                   "networks." if own is None else "Distillation left the students no closer to "
                                   "their own teachers than to independent networks."))
    return Verdict("e0-baselines", "E0, E1", "fidelity beyond independent training", claim, evidence, parts, why,
                   scope=scope)


# ---------------------------------------------------------------------------------------------
# 4-8: E2-E6

def ensemble_size(by_size: Mapping[int, Sequence], pool: Sequence, own: Mapping[int, Sequence] | None = None
                  ) -> Verdict:
    """4. Agreement rises with the ensemble's size (E2): the largest ensemble's students against
    the smallest's, each measured against its own ensemble.

    Without `own`, the students of size m learned from the first m teachers of `pool` and students of
    one seed are paired across sizes (they share initial weights and data order); with `own`
    ({m: each student's ensemble, as lists of member runs}), the students of each size are
    independent runs, compared unpaired."""
    claim = "Students of larger teacher ensembles agree more with their teacher."
    sizes = sorted(by_size)
    if len(sizes) < 2:
        return Verdict("e2-ensembles", "E2", "more teachers, more agreement", claim, "Needs at least two ensemble "
                       "sizes.")
    lo, hi = sizes[0], sizes[-1]
    if own is None:
        by_size = {**by_size, **dict(zip((lo, hi), paired(by_size[lo], by_size[hi])))}
        agree = {m: agreement_per_image(pool[:m], by_size[m]) for m in sizes}
        block = "seeds"
    else:
        agree = {m: own_agreement(own[m], by_size[m]) for m in sizes}
        block = None  # each size its own runs: unpaired
    groups = {f"m={m}": group(agree[m], by_size[m], block) for m in (lo, hi)}
    parts = family([part(f"agreement at m = {hi} minus m = {lo}", groups,
                         lambda m: 100 * (m[f"m={hi}"] - m[f"m={lo}"]), 0.0, ABOVE, "points",
                         effect=planned(AGREEMENT_DELTA, "e2-ensembles"))])
    rows = "; ".join(f"m = {m}: {text.pct(agree[m])} (ensemble accuracy "
                     f"{100 * tables.mean_metric(by_size[m], 'teacher_test_acc'):.2f} %)" for m in sizes)
    evidence = f"Test agreement with the ensemble: {rows}. Difference {parts[0].text()}."
    gain = 100 * (tables.mean_metric(by_size[hi], "teacher_test_acc")
                  - tables.mean_metric(by_size[lo], "teacher_test_acc"))
    why = why_not(parts, f"The {hi}-teacher ensemble is {gain:.2f} points more accurate than a single teacher.",
               text.levelling([r for m in (lo, hi) for r in by_size[m]], "students"))
    return Verdict("e2-ensembles", "E2", "more teachers, more agreement", claim, evidence, parts, why)


def sharp_transition(models: Mapping[str, tuple]) -> Verdict:
    """5. Fidelity jumps sharply at an intermediate lambda (E3): on train agreement (augmented
    training images, eval mode), the curve over the lambdas below 1 rises, and more than half
    (MOST) of that rise happens inside JUMP_WINDOW (rules.window_share). Each lambda's students are
    independent runs (seeds of their own), each lambda with its own spread over seeds (they spread
    more where the curve climbs); lambda = 1 is shown, never decides.

    models: model name (e.g. "LayerNorm") -> (the teacher, {lambda: students})."""
    lo, hi = JUMP_WINDOW
    claim = (f"Fidelity jumps sharply at an intermediate λ: most of the rise in train agreement happens between "
             f"λ = {lo:g} and {hi:g}, where the paper's curve jumps.")
    specs, shown, whys = [], [], []
    named = len(models) > 1
    for model, (teacher, by_lambda) in models.items():
        prefix = f"{model}: " if named else ""

        def lead(sentence: str, prefix=prefix) -> str:  # the model's name, or a capital, starts it
            return prefix + sentence if prefix else text.capital(sentence)

        grid = sorted(l for l in by_lambda if l < 1)
        curve = {l: agreement_per_image([teacher], by_lambda[l], "train_aug") for l in sorted(by_lambda)}
        shown.append(lead("train agreement " + ", ".join(f"{100 * curve[l].mean():.1f} % at λ = {l:g} "
                                                           f"({len(by_lambda[l])})" for l in sorted(by_lambda))))
        if len(grid) < 2 or not grid[0] <= lo < hi <= grid[-1]:
            whys.append(lead(f"the λ grid below 1 ({', '.join(f'{l:g}' for l in grid)}) does not span the window "
                             f"[{lo:g}, {hi:g}]."))
            continue
        groups = {f"{l:g}": group(curve[l], by_lambda[l], f"λ = {l:g}") for l in grid}

        def stacked(m, grid=grid):
            return np.stack([m[f"{l:g}"] for l in grid])

        specs.append(part(f"{prefix}rise in train agreement, λ = {grid[0]:g} to {grid[-1]:g}", groups,
                          lambda m, s=stacked: 100 * (s(m)[-1] - s(m)[0]), 0.0, ABOVE, "points",
                          effect=planned(AGREEMENT_DELTA, "e3-rise")))
        specs.append(part(f"{prefix}share of the rise between λ = {lo:g} and {hi:g}", groups,
                          lambda m, s=stacked, g=grid: window_share(s(m), g), MOST, ABOVE, "",
                          effect=planned(MARGIN, "e3-share")))
        means = np.array([[curve[l].mean()] for l in grid])
        shown.append(lead(f"the middle 80 % of the rise spans λ = {rise_width(means, grid)[0]:.2f} (descriptive)"))
        steps = np.diff([curve[l].mean() for l in grid])
        whys.append(lead("steps of " + ", ".join(f"{100 * s:+.1f}" for s in steps)
                         + f" points between neighbouring λ up to {grid[-1]:g}; the teacher fits "
                         f"{100 * teacher.metrics['train_acc']:.1f} % of its clean training set."))
    parts = family(specs)
    judged = "; ".join(f"{p.name}: {p.text()}" for p in parts)
    evidence = ". ".join(shown + ([text.capital(judged)] if parts else [])) + "."
    why = why_not(parts, " ".join(whys))
    return Verdict("e3-transition", "E3", "a sharp transition in λ", claim, evidence, parts,
                   text.capital(why))


def cka_not_agreement(teacher, random: Sequence, teacher_init: Sequence) -> Verdict:
    """6. A teacher-init student has higher CKA with its teacher at stage 1 (difference above 0)
    but no higher agreement (difference below NO_HIGHER points: non-superiority) (E4); paired by
    seed (the same data order)."""
    claim = (f"A student started from the teacher's initial weights has higher CKA with it, but no higher "
             f"agreement (not {NO_HIGHER:g} point or more).")
    random, teacher_init = paired(random, teacher_init)
    cka = {"teacher init": group([r.metrics["cka"][0] for r in teacher_init], teacher_init, "seeds"),
           "random init": group([r.metrics["cka"][0] for r in random], random, "seeds")}
    a_init, a_rand = agreement_per_image([teacher], teacher_init), agreement_per_image([teacher], random)
    agree = {"teacher init": group(a_init, teacher_init, "seeds"), "random init": group(a_rand, random, "seeds")}
    parts = family([
        part("CKA at stage 1, teacher init minus random init", cka,
             lambda m: m["teacher init"] - m["random init"], 0.0, ABOVE, "", effect=planned(CKA_DELTA, "e4-cka")),
        part("test agreement, teacher init minus random init", agree,
             lambda m: 100 * (m["teacher init"] - m["random init"]), NO_HIGHER, BELOW, "points",
             effect=planned(MARGIN, "e4-agreement"))])

    def stages(runs):
        return " / ".join(f"{np.mean([r.metrics['cka'][i] for r in runs]):.3f}" for i in range(3))

    evidence = (f"CKA with the teacher at stages 1 / 2 / 3: {stages(teacher_init)} from the teacher's initial "
                f"weights ({text.seeds(teacher_init)}), {stages(random)} from random ones ({text.seeds(random)}); "
                f"stage 1 difference {parts[0].text()}. Agreement {text.pct(a_init)} vs {text.pct(a_rand)}: "
                f"{parts[1].text()}.")
    return Verdict("e4-cka", "E4", "CKA without agreement", claim, evidence, parts, why_not(parts))


def mixup_relative_gain(m: Mapping[str, np.ndarray]) -> np.ndarray:
    """E5's third part: the fraction of the KL MixUp removes minus the fraction of the disagreement it
    removes, from the groups' means ("agree", "kl", "agree mixup", "kl mixup")."""
    kl_cut = (m["kl"] - m["kl mixup"]) / m["kl"]
    disagreement_cut = (m["agree mixup"] - m["agree"]) / (1 - m["agree"])
    return kl_cut - disagreement_cut


def temperature_and_mixup(low: Sequence, high: Sequence, mixup: Sequence, pool: Sequence) -> Verdict:
    """7. A higher temperature raises agreement (`high` vs `low`); MixUp (at `high`'s temperature)
    lowers the KL, and by a larger fraction than it lowers the disagreement (E5); all students of
    one ensemble, paired by seed."""
    t_lo, t_hi = low[0].spec.tau, high[0].spec.tau
    claim = ("A higher temperature raises agreement; MixUp lowers the KL, and by a larger fraction than it "
             "lowers the disagreement.")
    low, high, mixup = paired(low, high, mixup)
    a_lo, a_hi, a_mix = (agreement_per_image(pool, r) for r in (low, high, mixup))
    k_hi, k_mix = kl_per_image(pool, high), kl_per_image(pool, mixup)
    tau = {"low": group(a_lo, low, "seeds"), "high": group(a_hi, high, "seeds")}
    kl = {"plain": group(k_hi, high, "seeds"), "mixup": group(k_mix, mixup, "seeds")}
    mix = {"agree": group(a_hi, high, "seeds"), "kl": group(k_hi, high, "seeds"),
           "agree mixup": group(a_mix, mixup, "seeds"), "kl mixup": group(k_mix, mixup, "seeds")}

    parts = family([
        part(f"agreement at τ = {t_hi:g} minus τ = {t_lo:g}", tau, lambda m: 100 * (m["high"] - m["low"]),
             0.0, ABOVE, "points", effect=planned(AGREEMENT_DELTA, "e5-temperature")),
        part(f"KL with MixUp minus without (τ = {t_hi:g})", kl, lambda m: m["mixup"] - m["plain"], 0.0, BELOW,
             "nats", effect=planned(KL_DELTA, "e5-kl")),
        part("MixUp: fraction of the KL removed minus fraction of the disagreement removed", mix, mixup_relative_gain,
             0.0, ABOVE, "", effect=planned(FRACTION_DELTA, "e5-fractions"))])
    evidence = (f"Agreement {text.pct(a_lo)} at τ = {t_lo:g} and {text.pct(a_hi)} at τ = {t_hi:g} "
                f"({parts[0].text()}). MixUp at τ = {t_hi:g}: agreement {text.pct(a_mix)}, KL {k_hi.mean():.3f} → "
                f"{k_mix.mean():.3f} ({parts[1].text()}); fraction of the KL removed minus fraction of the "
                f"disagreement removed {parts[2].text()}.")
    return Verdict("e5-temperature", "E5", "temperature and MixUp", claim, evidence, parts,
                   why_not(parts, text.levelling([*low, *high, *mixup], "students")))


def optimiser_and_length(base: Sequence, alternatives: Mapping[str, Sequence], teacher) -> Verdict:
    """8. Neither longer training nor Adam closes the gap, on test and on train agreement (E6): the
    fraction of the baseline's gap to 100 % that an alternative closes lies below MOST; paired by
    seed (the same initial weights)."""
    claim = "Neither longer training nor Adam closes the gap to the teacher, on test or on training images."
    base, *others = paired(base, *alternatives.values())
    alternatives = dict(zip(alternatives, others))
    agree = {split: {label: agreement_per_image([teacher], runs, split)
                     for label, runs in {"baseline": base, **alternatives}.items()}
             for split in ("test", "train_aug")}
    specs, labels = [], []
    for name, runs in alternatives.items():
        for split, where in (("test", "test"), ("train_aug", "augmented training")):
            labels.append(f"{name} ({'test' if split == 'test' else 'train'})")
            groups = {"base": group(agree[split]["baseline"], base, "seeds"),
                      "alt": group(agree[split][name], runs, "seeds")}
            adam = getattr(getattr(runs[0].spec, "recipe", None), "optimizer", "") == "adam"
            effect = (planned(ABOUT_HALF, "e6-adam" if adam else "e6-long") if split == "test" else ABOUT_HALF)
            specs.append(part(f"{name}: fraction of the gap closed on {where} images", groups,
                              lambda m: (m["alt"] - m["base"]) / (1 - m["base"]), MOST, BELOW, "", effect=effect))
    parts = family(specs)
    rows = [f"{label}: {text.pct(agree['test'][label])} test, {text.pct(agree['train_aug'][label])} train"
            for label in agree["test"]]
    evidence = ("Agreement with the teacher, " + "; ".join(rows) + ". Fraction of the baseline's gap to 100 % "
                "closed: " + "; ".join(f"{label} {p.text()}" for label, p in zip(labels, parts)) + ".")
    return Verdict("e6-optimiser", "E6", "neither optimiser nor length closes the gap", claim, evidence, parts,
                   why_not(parts, f"Closing the gap means closing more than {MOST:g} of it.",
                        text.levelling(base, "baseline students")))
