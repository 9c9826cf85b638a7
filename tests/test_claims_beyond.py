"""The questions beyond the paper (protocol §9) on synthetic runs built so that each holds, does not
hold, and is inconclusive.

The fake runs are tests/test_claims.py's: predictions built image by image, logits with `test_scale`
on the predicted class (so a run's confidence, and with its accuracy its ECE, is known exactly).
Each case goes through the claim function and through `claims.questions(ClaimRuns(...), question)`,
the path the report takes, with a ClaimRuns that holds the fields the question reads (B4: all).
"""

import json
import math

import numpy as np
import pytest
import torch

from kdlib import claims, metrics
from kdlib.claims import FAILS, HOLDS, INCONCLUSIVE, ClaimRuns
from kdlib.claims.beyond import (calibration_transfer, fidelity_and_generalisation, students_by_setting,
                                 students_with_teachers, where_they_disagree)
from kdlib.claims.evidence import teacher_logits
from test_claims import C, LABELS, N, OFFSET, TEACHER, FakeRun, copy_on, students, teacher_pool

NEEDS = {names[0]: needs for _, names, needs, _ in claims.BEYOND}


def beyond_runs(question: str, ensemble_pool: int = 0, **fields) -> ClaimRuns:
    """A ClaimRuns holding exactly the fields `question` reads (per claims.BEYOND), the rest empty."""
    assert set(fields) == set(NEEDS[question]), f"{question} reads {NEEDS[question]}, got {sorted(fields)}"
    empty = dict(labels=LABELS, teachers=[], self_distilled=[], ensembles={}, lambda_teachers={}, lambdas={},
                 cka={}, temperatures={}, mixup=[], optimisers={})
    return ClaimRuns(**{**empty, **fields}, ensemble_pool=ensemble_pool)


CASES = {}


def case(question, expected):
    def register(build):
        CASES[(question, expected)] = build
        return build
    return register


# B4. Rank correlation of agreement with the own teacher and accuracy gained over it, below 0.5

B1_TEACHER = np.where(np.arange(N) < N // 2, LABELS, (LABELS + 1) % C)  # right on the first half only


def matched(agree: float, gain: float, seed: int = 0) -> FakeRun:
    """A student agreeing with B1_TEACHER on the first `agree` of the images (agree >= 0.5) and, of the
    rest (where the teacher is wrong), right on `gain` of all images: `gain` points above it."""
    pred, k, g = B1_TEACHER.copy(), round(agree * N), round(gain * N)
    pred[k:] = (LABELS[k:] + 2) % C
    pred[k:k + g] = LABELS[k:k + g]
    return FakeRun(pred, seed=seed)


def b1_case(agree_gain):
    """The students spread over every setting of a ClaimRuns, all taught by one teacher."""
    teacher = FakeRun(B1_TEACHER)
    s = [matched(a, g, seed=i) for i, (a, g) in enumerate(agree_gain)]
    fields = dict(teachers=[teacher, FakeRun(TEACHER, seed=1)], self_distilled=s[0::9], ensembles={1: s[1::9]},
                  lambda_teachers={"layer": teacher}, lambdas={"layer": {0.0: s[2::9], 0.5: s[3::9]}},
                  cka={"random": s[4::9]}, temperatures={4.0: s[5::9]}, mixup=s[6::9],
                  optimisers={"SGD": s[7::9], "adam": s[8::9]})
    return fidelity_and_generalisation([(x, [teacher]) for x in s], LABELS), beyond_runs("B4", 1, **fields)


AGREE = [0.60 + 0.02 * i for i in range(12)]


@case("B4", HOLDS)
def _():  # the closer a student matches, the less it gains (two neighbours swapped): rho = -0.99
    gains = [0.25 - 0.02 * i for i in (0, 1, 2, 4, 3, 5, 6, 7, 8, 9, 11, 10)]
    return b1_case(list(zip(AGREE, gains)))


@case("B4", FAILS)
def _():  # gain rises with agreement but two neighbours swapped: rho = 0.99, interval above 0.5
    gains = [0.01 * i for i in (0, 1, 3, 2, 4, 5, 6, 8, 7, 9, 10, 11)]
    return b1_case(list(zip(AGREE, gains)))


@case("B4", INCONCLUSIVE)
def _():  # five students, a loose relation (rho = 0.1): Fisher's z interval spans -0.86 to 0.90
    return b1_case([(0.60, 0.02), (0.65, 0.05), (0.70, 0.01), (0.75, 0.04), (0.80, 0.03)])


# B5. Slope of the students' ECE on their teachers' across ensemble sizes, below 0.5

B2_PRED = copy_on(LABELS, 0.6)  # 64 % right (a tenth of the other 40 % is label 9), for every run of B5
SIZES = (1, 2, 3)


def confident(ece: float, seed: int) -> FakeRun:
    """A 64 %-accurate run whose every image has confidence 0.64 + ece: its ECE is `ece` (one bin)."""
    c = 0.64 + ece
    return FakeRun(copy_on(LABELS, 0.6, offset=OFFSET * seed), seed=seed, test_scale=math.log((C - 1) * c / (1 - c)))


def b2_case(slopes):
    """Teacher 0 overconfident (0.86), teachers 1 and 2 less (0.55): the ensemble's ECE falls with m
    (0.22, 0.06, 0.01). The student of seed s at size m has ECE 0.05 + slopes[s] x the teacher's."""
    pool = [FakeRun(B2_PRED, seed=i, test_scale=4.0 if i == 0 else math.log(11)) for i in range(3)]
    teacher = {m: metrics.ece(teacher_logits(pool[:m]), torch.as_tensor(LABELS)) for m in SIZES}
    by_size = {m: [confident(0.05 + k * teacher[m], s) for s, k in enumerate(slopes)] for m in SIZES}
    return calibration_transfer(by_size, pool, LABELS), beyond_runs("B5", teachers=pool, ensembles=by_size)


@case("B5", HOLDS)
def _():  # a tenth of the teacher's change reaches the students, seeds within 0.02 of it
    return b2_case((0.08, 0.10, 0.12))


@case("B5", FAILS)
def _():  # the students' ECE follows the teacher's whole: slope 1
    return b2_case((0.95, 1.00, 1.05))


@case("B5", INCONCLUSIVE)
def _():  # slope 0.5 on average, but 0.1, 0.5 and 0.9 seed by seed
    return b2_case((0.10, 0.50, 0.90))


# B6. Share of a student's disagreements with teacher 0 on images where teachers disagree, above 0.5
# teacher_pool(): teacher 0 and both others disagree on images 1600-1999, one of them on 0-399 and
# 1200-1599 (contested 0.5), neither on 400-1199.

def b3_case(starts):
    """Seed s disagrees with teacher 0 on the 300 images from starts[s] on."""
    pool = teacher_pool()
    studs = [FakeRun(copy_on(TEACHER, 0.85, other=3, offset=x + 300), seed=s) for s, x in enumerate(starts)]
    return where_they_disagree(pool[0], studs, pool), beyond_runs("B6", teachers=pool, self_distilled=studs)


@case("B6", HOLDS)
def _():  # disagreements on images 1500-1900: shares 0.83 to 1
    return b3_case((1500, 1550, 1600))


@case("B6", FAILS)
def _():  # disagreements mostly on images 450-1199, which every teacher labels alike: shares 0 to 0.08
    return b3_case((450, 600, 950))


@case("B6", INCONCLUSIVE)
def _():  # one seed on contested images, one on settled ones, one in between: shares 1, 0, 0.5
    return b3_case((1650, 600, 50))


@pytest.mark.parametrize("question, expected", list(CASES), ids=[f"{q}-{e.replace(' ', '-')}" for q, e in CASES])
def test_every_question_holds_fails_and_is_inconclusive_directly_and_through_questions(question, expected):
    v, runs = CASES[(question, expected)]()
    assert v.experiment == question and v.verdict == expected, [(p.name, p.text(), p.verdict) for p in v.parts]
    assert (v.why == "") == (expected == HOLDS), v.why
    assert v.parts and all(p.family == len(v.parts) for p in v.parts)
    (r,) = claims.questions(runs, question)
    assert r.id == v.id and r.verdict == expected
    assert [(p.name, p.interval.estimate, p.interval.bounds()) for p in r.parts] == \
        [(p.name, p.interval.estimate, p.interval.bounds()) for p in v.parts]
    if expected == INCONCLUSIVE:  # inside the noise: the interval reaches across the boundary
        assert any(p.interval.position(p.boundary) == "within" for p in r.parts)


def test_questions_gives_the_three_in_order():
    assert [names for _, names, _, _ in claims.BEYOND] == [("B4",), ("B5",), ("B6",)]
    _, runs = CASES[("B4", HOLDS)]()
    assert [v.experiment for v in claims.questions(runs)] == ["B4", "B5", "B6"]


def test_students_with_teachers_lists_each_student_once_with_its_teachers():
    pool, lam = [FakeRun(TEACHER, seed=i) for i in range(3)], FakeRun(TEACHER, seed=9)
    shared, *r = [FakeRun(TEACHER, seed=s) for s in range(10)]
    runs = ClaimRuns(labels=LABELS, teachers=pool, self_distilled=[shared], ensembles={1: [shared], 3: [r[0]]},
                     lambda_teachers={"layer": lam}, lambdas={"layer": {0.0: [r[1]], 1.0: [r[2]]}},
                     cka={"random": [r[3]], "teacher_init": [shared]}, temperatures={1.0: [r[4]], 4.0: [r[5]]},
                     mixup=[r[6]], optimisers={"SGD": [r[7]], "adam": [r[8], shared]}, ensemble_pool=2)
    got = students_with_teachers(runs)
    assert [s for s, _ in got] == [shared, *r]
    assert [setting for setting, _, _ in students_by_setting(runs)][:2] == ["E1", "E2 m = 3"]  # shared: under E1
    expected = [pool[:1], pool, [lam], [lam], pool[:1], pool[:2], pool[:2], pool[:2], pool[:1], pool[:1]]
    assert [[id(t) for t in ts] for _, ts in got] == [[id(t) for t in ts] for ts in expected]
    runs.ensemble_pool = 0  # 0: the temperature and MixUp students learn from the whole pool
    assert [len(ts) for _, ts in students_with_teachers(runs)][5:8] == [3, 3, 3]


def test_b1_needs_four_students():
    v, _ = b1_case([(0.60, 0.01), (0.70, 0.02), (0.80, 0.03)])  # rho = 1 but n - 3 = 0: no interval
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
    edges = [b1_case([(0.6, 0.01), (0.7, 0.02), (0.8, 0.03)])[0], b1_case([(0.6, 0.01), (0.7, 0.02)])[0],
             calibration_transfer({1: students((0.7, 0.71))}, pool, LABELS),
             where_they_disagree(pool[0], students((0.8, 0.81), other=3), pool[:1])]
    verdicts = [build()[0] for build in CASES.values()] + edges
    record = json.loads(json.dumps([v.to_json() for v in verdicts], allow_nan=False))
    assert [r["verdict"] for r in record] == [v.verdict for v in verdicts]
    assert record[-3]["parts"][0]["estimate"] is None  # two students: no correlation at all


def test_chapter_names_the_questions_beyond_the_paper_among_the_allowed():
    with pytest.raises(ValueError, match="name must be one of") as e:
        claims.chapter(None, "B9")
    assert all(f"'{q}'" in str(e.value) for q in ("B4", "B5", "B6", "E1"))
