"""The questions beyond the paper (protocol §9) on synthetic runs built so that each holds, does not
hold, and is inconclusive.

The fake runs are tests/test_claims.py's: predictions built image by image, logits with `test_scale`
on the predicted class (so a run's confidence, and with its accuracy its ECE, is known exactly).
Each case goes through the claim function and through `study.questions(StudyRuns(...), question)`,
the path the report takes, with a StudyRuns that holds the chapters the question reads (B4: all).
"""

import json
import math

import numpy as np
import pytest
import torch

from kdlib import metrics, plans, study
from kdlib.claims import FAILS, HOLDS, INCONCLUSIVE, power
from kdlib.claims.beyond import (ClassRuns, Taught, calibration_transfer, capacity_gap, fidelity_and_generalisation,
                                 hard_labels, richer_soft_labels, where_they_disagree)
from kdlib.plans import OnClasses
from kdlib.study import StudyRuns
from kdlib.claims.evidence import teacher_logits
from test_claims import C, LABELS, N, OFFSET, TEACHER, FakeRun, copy_on, students, teacher_pool

QUESTIONS = [(c.id, q) for c in study.CHAPTERS if c.part == study.BEYOND for q in c.claims]
NEEDS = {chapter: study.reads([q]) for chapter, q in QUESTIONS}


def beyond_runs(question: str, ensemble_pool: int = 0, **fields) -> StudyRuns:
    """A StudyRuns holding the runs of exactly the chapters `question` reads (per the study's table)."""
    assert set(fields) == set(NEEDS[question]), f"{question} reads {NEEDS[question]}, got {sorted(fields)}"
    return StudyRuns(LABELS, dict(fields), ensemble_pool=ensemble_pool)


CASES = {}


def case(question, expected):
    def register(build):
        CASES[(question, expected)] = build
        return build
    return register


# B4. Rank correlation of agreement with the own teacher and accuracy gained over it, below 0.5

B4_TEACHER = np.where(np.arange(N) < N // 2, LABELS, (LABELS + 1) % C)  # right on the first half only


def matched(agree: float, gain: float, seed: int = 0) -> FakeRun:
    """A student agreeing with B4_TEACHER on the first `agree` of the images (agree >= 0.5) and, of the
    rest (where the teacher is wrong), right on `gain` of all images: `gain` points above it."""
    pred, k, g = B4_TEACHER.copy(), round(agree * N), round(gain * N)
    pred[k:] = (LABELS[k:] + 2) % C
    pred[k:k + g] = LABELS[k:k + g]
    return FakeRun(pred, seed=seed)


def b4_case(agree_gain):
    """The students spread over nine settings of a StudyRuns (two students in three of them), all taught
    by one teacher."""
    teacher = FakeRun(B4_TEACHER)
    s = [matched(a, g, seed=i) for i, (a, g) in enumerate(agree_gain)]
    fields = dict(E0=[teacher, FakeRun(TEACHER, seed=1)], E1=s[0::9], E2={1: s[1::9]},
                  E3={"layer": {"teacher": teacher, "students": {0.0: s[2::9], 0.5: s[3::9]}}},
                  E4={"random": s[4::9]}, E5={"tau=4": s[5::9], plans.MIXUP: s[6::9]},
                  E6={"SGD": s[7::9], "adam": s[8::9]})
    fields.update(B1={}, B2={}, B3={})
    runs = beyond_runs("B4", 1, **fields)
    return fidelity_and_generalisation(study.students(runs)), runs


AGREE = [0.60 + 0.02 * i for i in range(12)]


@case("B4", HOLDS)
def _():  # the closer a student matches, the less it gains (two neighbours swapped): rho = -0.99
    gains = [0.25 - 0.02 * i for i in (0, 1, 2, 4, 3, 5, 6, 7, 8, 9, 11, 10)]
    return b4_case(list(zip(AGREE, gains)))


@case("B4", FAILS)
def _():  # gain rises with agreement but two neighbours swapped: rho = 0.99, interval above 0.5
    gains = [0.01 * i for i in (0, 1, 3, 2, 4, 5, 6, 8, 7, 9, 10, 11)]
    return b4_case(list(zip(AGREE, gains)))


@case("B4", INCONCLUSIVE)
def _():  # five students in five settings, a loose relation (rho = 0.1): Fisher's z interval spans -0.86 to 0.90
    return b4_case([(0.60, 0.02), (0.65, 0.05), (0.70, 0.01), (0.75, 0.04), (0.80, 0.03)])


# B5. Slope of the students' calibration error on their teachers' across ensemble sizes, below 0.5. The
# runs are built by their ECE (one confidence each); their calibration error (the part of the NLL that
# temperature scaling removes) moves with it, so the slopes keep their side of 0.5.

B5_PRED = copy_on(LABELS, 0.6)  # 64 % right (a tenth of the other 40 % is label 9), for every run of B5
SIZES = (1, 2, 3)


def confident(ece: float, seed: int) -> FakeRun:
    """A 64 %-accurate run whose every image has confidence 0.64 + ece: its ECE is `ece` (one bin)."""
    c = 0.64 + ece
    return FakeRun(copy_on(LABELS, 0.6, offset=OFFSET * seed), seed=seed, test_scale=math.log((C - 1) * c / (1 - c)))


def b5_case(slopes):
    """Teacher 0 overconfident (0.86), teachers 1 and 2 less (0.55): the ensemble's ECE falls with m
    (0.22, 0.06, 0.01). The student of seed s at size m has ECE 0.05 + slopes[s] x the teacher's."""
    pool = [FakeRun(B5_PRED, seed=i, test_scale=4.0 if i == 0 else math.log(11)) for i in range(3)]
    teacher = {m: metrics.ece(teacher_logits(pool[:m]), torch.as_tensor(LABELS)) for m in SIZES}
    by_size = {m: [confident(0.05 + k * teacher[m], s) for s, k in enumerate(slopes)] for m in SIZES}
    return calibration_transfer(by_size, pool, LABELS), beyond_runs("B5", E0=pool, E2=by_size)


@case("B5", HOLDS)
def _():  # a tenth of the teacher's change reaches the students, seeds within 0.02 of it
    return b5_case((0.08, 0.10, 0.12))


@case("B5", FAILS)
def _():  # the students' ECE follows the teacher's whole: slope 1
    return b5_case((0.95, 1.00, 1.05))


@case("B5", INCONCLUSIVE)
def _():  # slope 0.5 on average, but 0.1, 0.5 and 0.9 seed by seed
    return b5_case((0.10, 0.50, 0.90))


# B6. Share of a student's disagreements with teacher 0 on images where teachers disagree, above 0.5
# teacher_pool(): teacher 0 and both others disagree on images 1600-1999, one of them on 0-399 and
# 1200-1599 (contested 0.5), neither on 400-1199.

def b6_case(starts):
    """Seed s disagrees with teacher 0 on the 300 images from starts[s] on."""
    pool = teacher_pool()
    studs = [FakeRun(copy_on(TEACHER, 0.85, other=3, offset=x + 300), seed=s) for s, x in enumerate(starts)]
    return where_they_disagree(pool[0], studs, pool), beyond_runs("B6", E0=pool, E1=studs)


@case("B6", HOLDS)
def _():  # disagreements on images 1500-1900: shares 0.83 to 1
    return b6_case((1500, 1550, 1600))


@case("B6", FAILS)
def _():  # disagreements mostly on images 450-1199, which every teacher labels alike: shares 0 to 0.08
    return b6_case((450, 600, 950))


@case("B6", INCONCLUSIVE)
def _():  # one seed on contested images, one on settled ones, one in between: shares 1, 0, 0.5
    return b6_case((1650, 600, 50))


# B1. Test agreement at the largest alpha minus at alpha 0, seed-paired, above 0

def b1_case(base, top):
    """Students of teacher 0 at alpha 0 and 0.9 agreeing on the given fractions, seed s erring from
    image OFFSET * s on at both alphas (what a seed shares)."""
    pool = teacher_pool()
    by_alpha = {0.0: students(base), 0.9: students(top)}
    return hard_labels(by_alpha, pool[0]), beyond_runs("B1", E0=pool, B1=by_alpha)


@case("B1", HOLDS)
def _():  # every seed gains about 5 points at alpha 0.9
    return b1_case((0.70, 0.72, 0.68), (0.75, 0.77, 0.74))


@case("B1", FAILS)
def _():  # every seed loses about 6 points
    return b1_case((0.70, 0.72, 0.68), (0.64, 0.66, 0.62))


@case("B1", INCONCLUSIVE)
def _():  # +1 point on average, the seed-paired differences -5, +1 and +7
    return b1_case((0.70, 0.72, 0.68), (0.65, 0.73, 0.75))


# B2. Share of independent disagreement kept, deeper teacher's students minus E1's, seed-paired, above 0.
# The deeper teacher predicts as teacher 0 does, so it agrees with the pool on (1 + 0.6 + 0.6) / 3 of
# the images; teacher pairs agree on 0.6.

def b2_case(deep_fractions, own_fractions):
    pool = teacher_pool()
    deep = FakeRun(TEACHER, seed=0, metrics={"test_acc": 0.55})
    deep.spec.depth = 56
    deep_students, own = students(deep_fractions), students(own_fractions)
    return (capacity_gap(deep, deep_students, pool[0], own, pool),
            beyond_runs("B2", E0=pool, E1=own, B2={"teacher": [deep], "students": deep_students}))


@case("B2", HOLDS)
def _():  # across the gap the students keep 0.75 of the disagreement, in self-distillation 0.5
    return b2_case((0.80, 0.81, 0.79), (0.80, 0.81, 0.79))


@case("B2", FAILS)
def _():  # across the gap they keep 0.19, in self-distillation 0.5
    return b2_case((0.95, 0.955, 0.945), (0.80, 0.81, 0.79))


@case("B2", INCONCLUSIVE)
def _():  # +0.18 on average, the seed-paired differences +0.62, -0.13 and +0.06
    return b2_case((0.70, 0.90, 0.85), (0.80, 0.80, 0.80))


# B3. Share of independent disagreement kept, most classes minus fewest, below 0. Each count has its
# own test images: 500 at 5 classes (the first 500 of LABELS' cycle), N at the most.

def class_runs(n, shares, teacher_agreement=0.6):
    """Teachers agreeing on `teacher_agreement` of n images, students of teacher 0 keeping `shares` of
    the teachers' disagreement (agreement 1 - share x (1 - teacher_agreement)), seeds on different images."""
    ref = np.zeros(n, dtype=int)
    teachers = [FakeRun(ref, seed=0), FakeRun(copy_on(ref, teacher_agreement), seed=1)]
    studs = [FakeRun(copy_on(ref, 1 - sh * (1 - teacher_agreement), offset=(OFFSET * s) % n), seed=s)
             for s, sh in enumerate(shares)]
    return ClassRuns(teachers, studs, LABELS[:n] % 5 if n < N else LABELS)


def b3_case(few, most):
    """5 classes on 500 images and the scale's own C on N: through StudyRuns, the own count is E0's
    teachers and E1's students on the main labels (C classes), the fewer in B3's runs."""
    by_count = {5: class_runs(500, few), C: class_runs(N, most)}
    own, five = by_count[C], by_count[5]
    b3 = {5: OnClasses(5, {"teachers": five.teachers, "students": five.students}, five.labels)}
    return richer_soft_labels(by_count), beyond_runs("B3", E0=own.teachers, E1=own.students, B3=b3)


@case("B3", HOLDS)
def _():  # the share falls from 0.9 to 0.6
    return b3_case((0.90, 0.92, 0.88), (0.60, 0.61, 0.59))


@case("B3", FAILS)
def _():  # the share rises from 0.5 to 0.85
    return b3_case((0.50, 0.52, 0.48), (0.85, 0.86, 0.84))


@case("B3", INCONCLUSIVE)
def _():  # falls by 0.03 on average, the seeds of the fewest classes 0.4 apart
    return b3_case((0.55, 0.95, 0.75), (0.70, 0.72, 0.74))


@pytest.mark.parametrize("question, expected", list(CASES), ids=[f"{q}-{e.replace(' ', '-')}" for q, e in CASES])
def test_every_question_holds_fails_and_is_inconclusive_directly_and_through_questions(question, expected):
    v, runs = CASES[(question, expected)]()
    assert v.experiment == question and v.verdict == expected, [(p.name, p.text(), p.verdict) for p in v.parts]
    assert (v.why == "") == (expected == HOLDS), v.why
    assert v.parts and all(p.family == len(v.parts) for p in v.parts)
    (r,) = study.questions(runs, question)
    assert r.id == v.id and r.verdict == expected
    assert [(p.name, p.interval.estimate, p.interval.bounds()) for p in r.parts] == \
        [(p.name, p.interval.estimate, p.interval.bounds()) for p in v.parts]
    if expected == INCONCLUSIVE:  # inside the noise: the interval reaches across the boundary
        assert any(p.interval.position(p.boundary) == "within" for p in r.parts)


def test_questions_come_in_the_studys_order():
    assert [(chapter,) for chapter, _ in QUESTIONS] == [("B1",), ("B2",), ("B3",), ("B4",), ("B5",), ("B6",)]


def test_students_by_setting_lists_each_student_once_with_its_teachers_and_labels():
    pool, lam = [FakeRun(TEACHER, seed=i) for i in range(3)], FakeRun(TEACHER, seed=9)
    shared, *r = [FakeRun(TEACHER, seed=s) for s in range(12)]
    few = ClassRuns([FakeRun(TEACHER[:500], seed=20), FakeRun(TEACHER[:500], seed=21)], [r[10]], LABELS[:500])
    runs = StudyRuns(LABELS, {"E0": pool, "E1": [shared], "E2": {1: [shared], 3: [r[0]]},
                              "E3": {"layer": {"teacher": lam, "students": {0.0: [r[1]], 1.0: [r[2]]}}},
                              "E4": {"random": [r[3]], "teacher_init": [shared]},
                              "E5": {"tau=1": [r[4]], "tau=4": [r[5]], plans.MIXUP: [r[6]]},
                              "E6": {"SGD": [r[7]], "adam": [r[8], shared]}, "B1": {0.0: [shared], 0.9: [r[9]]},
                              "B3": {5: OnClasses(5, {"teachers": few.teachers, "students": few.students}, few.labels)}},
                     ensemble_pool=2)
    got = study.students(runs)
    assert [t.run for t in got] == [shared, *r[:11]]
    assert [t.setting for t in got][:2] == ["E1", "E2 m = 3"]  # shared: under E1
    assert [t.setting for t in got][-2:] == ["B1 α = 0.9", "B3 5 classes"]
    expected = [pool[:1], pool, [lam], [lam], pool[:1], pool[:2], pool[:2], pool[:2], pool[:1], pool[:1], pool[:1],
                few.teachers[:1]]
    assert [[id(t) for t in x.teachers] for x in got] == [[id(t) for t in ts] for ts in expected]
    assert len(got[-1].labels) == 500 and all(len(x.labels) == N for x in got[:-1])
    runs.ensemble_pool = 0  # 0: the temperature and MixUp students learn from the whole pool
    assert [len(x.teachers) for x in study.students(runs)][5:8] == [3, 3, 3]


def test_b4_needs_four_settings():
    v, _ = b4_case([(0.60, 0.01), (0.70, 0.02), (0.80, 0.03)])  # three settings: rho = 1 but n - 3 = 0, no interval
    assert v.verdict == INCONCLUSIVE and "at least four" in v.evidence
    assert v.parts[0].interval.bounds() == (-1.0, 1.0)


def test_b2_with_one_ensemble_size_is_inconclusive_and_has_no_parts():
    pool = teacher_pool()
    v = calibration_transfer({1: students((0.7, 0.71, 0.69))}, pool, LABELS)
    assert v.verdict == INCONCLUSIVE and v.parts == () and "two ensemble sizes" in v.evidence


def test_b3_with_one_teacher_is_inconclusive():
    pool = teacher_pool()
    v = where_they_disagree(pool[0], students((0.8, 0.81, 0.79), other=3), pool[:1])
    assert v.verdict == INCONCLUSIVE and v.parts == () and "two teachers" in v.evidence


def test_every_beyond_verdict_serialises_as_strict_json():
    pool = teacher_pool()
    edges = [b4_case([(0.6, 0.01), (0.7, 0.02), (0.8, 0.03)])[0], b4_case([(0.6, 0.01), (0.7, 0.02)])[0],
             calibration_transfer({1: students((0.7, 0.71))}, pool, LABELS),
             where_they_disagree(pool[0], students((0.8, 0.81), other=3), pool[:1])]
    verdicts = [build()[0] for build in CASES.values()] + edges
    record = json.loads(json.dumps([v.to_json() for v in verdicts], allow_nan=False))
    assert [r["verdict"] for r in record] == [v.verdict for v in verdicts]
    assert record[-3]["parts"][0]["estimate"] is None  # two students: no correlation at all


def test_chapter_names_the_questions_beyond_the_paper_among_the_allowed():
    with pytest.raises(ValueError, match="name must be one of") as e:
        study.chapter_verdicts(None, "B9")
    assert all(f"'{q}'" in str(e.value) for q in ("B1", "B2", "B3", "B4", "B5", "B6", "E1"))


def test_an_undecided_question_says_why_without_claiming_the_opposite():
    undecided, _ = CASES[("B3", INCONCLUSIVE)]()
    failed, _ = CASES[("B3", FAILS)]()
    assert "inside the noise" in undecided.why and "did not let" not in undecided.why
    assert "did not let" in failed.why


def test_the_power_table_counts_seeds_for_the_questions_and_not_for_b4s_students():
    b4, _ = CASES[("B4", HOLDS)]()
    b2, _ = CASES[("B2", INCONCLUSIVE)]()
    assert power.power(b4.parts[0]) is None
    needed = power.power(b2.parts[0])
    assert needed is None or needed > 3  # undecided at 3 seeds: more would be needed, if any count does
    table = power.power_table([b4, b2])
    assert "not a seed count" in table and table.count("\n") == 3


def test_the_json_of_what_would_decide_a_part_has_no_seed_count_for_b4():
    """B4's interval is over settings, a Fisher z with no seed and image parts: no number of seeds is
    computed for it (the appendix says "not a seed count"), and its JSON plans are empty; B1's are not."""
    b4, _ = CASES[("B4", HOLDS)]()
    assert power.plans_json(b4.parts[0]) == []
    b1, _ = CASES[("B1", INCONCLUSIVE)]()
    plans_b1 = power.plans_json(b1.parts[0])
    assert plans_b1 and plans_b1[-1]["why"] == "no effect at all" and plans_b1[-1]["decides"] == "does not hold"
    assert json.loads(json.dumps(plans_b1)) == plans_b1
