"""Every claim on synthetic runs built so that it holds, does not hold, and is inconclusive.

A fake run carries what a claim reads from a real one: predictions (and logits) per split, metrics
and a history. Predictions are built image by image, so each case's agreement is known exactly.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kdlib import claims
from kdlib.claims import FAILS, HOLDS, INCONCLUSIVE

N = 2000        # test images
N_TRAIN = 1000  # training images
C = 10          # classes


def logits_of(pred: np.ndarray, scale: float = 4.0) -> torch.Tensor:
    """Logits whose argmax is `pred`: `scale` on the predicted class, 0 elsewhere."""
    z = torch.zeros(len(pred), C)
    z[torch.arange(len(pred)), torch.as_tensor(pred)] = scale
    return z


class FakeRun:
    def __init__(self, test, train_aug=None, *, seed=0, tau=4.0, epochs=10, metrics=None, history=None,
                 test_scale=4.0, teacher=False):
        self.spec = SimpleNamespace(seed=seed, tau=tau, recipe=SimpleNamespace(epochs=epochs))
        self._test = logits_of(np.asarray(test), test_scale)
        self._train_aug = None if train_aug is None else np.asarray(train_aug)
        self.teacher = teacher
        self.metrics = {"test_acc": 0.5, "train_acc": 0.95, "test_agreement": 0.7, "train_aug_agreement": 0.8,
                        "teacher_test_acc": 0.5, "cka": [0.9, 0.8, 0.7], **(metrics or {})}
        self.history = history if history is not None else [{"epoch": 8, "test_agreement": 0.70},
                                                            {"epoch": 10, "test_agreement": 0.705}]

    def test_logits(self):
        return self._test

    def stored_logits(self, split):
        if split == "test":
            return self._test
        if self.teacher and self._train_aug is not None:
            return logits_of(self._train_aug)
        return None

    def predictions(self, split):
        if split == "test":
            return self._test.argmax(1)
        return torch.as_tensor(self._train_aug)


def copy_on(reference: np.ndarray, fraction: float, other: int = 9, offset: int = 0) -> np.ndarray:
    """`reference` on the first `fraction` of the images (from `offset`, cyclically), `other` elsewhere."""
    n = len(reference)
    out = np.full(n, other)
    idx = (np.arange(int(round(fraction * n))) + offset) % n
    out[idx] = reference[idx]
    return out


LABELS = np.arange(N) % C
TEACHER = np.zeros(N, dtype=int)  # teacher 0 predicts class 0 everywhere


# ---------------------------------------------------------------------------------------------
# 1. student accuracy

@pytest.mark.parametrize("student_fraction, expected", [(0.50, HOLDS), (0.30, FAILS), (0.401, INCONCLUSIVE)])
def test_student_accuracy(student_fraction, expected):
    teacher = FakeRun(copy_on(LABELS, 0.40, other=9))  # right on 40 % of the images (label 9 excepted)
    students = [FakeRun(copy_on(LABELS, student_fraction + d, other=9), seed=s) for s, d in enumerate((0, 0.002))]
    v = claims.student_accuracy(teacher, students, LABELS)
    assert v.verdict == expected, v
    assert (v.why == "") == (expected == HOLDS)
    assert "points" in v.evidence and v.parts[0].interval.low < v.parts[0].interval.high


# ---------------------------------------------------------------------------------------------
# 2. far from faithful

@pytest.mark.parametrize("fraction, expected", [(0.70, HOLDS), (1.0, FAILS), (1 - 1 / N, INCONCLUSIVE)])
def test_far_from_faithful(fraction, expected):
    teacher = FakeRun(TEACHER)
    students = [FakeRun(copy_on(TEACHER, fraction), seed=s) for s in range(2)]
    assert claims.far_from_faithful(teacher, students).verdict == expected


# ---------------------------------------------------------------------------------------------
# 3. beyond independent training: both baselines

def three_teachers():
    t0 = TEACHER
    t1 = copy_on(t0, 0.6, other=1)
    t2 = copy_on(t0, 0.6, other=2, offset=int(0.2 * N))
    return [FakeRun(t, seed=i) for i, t in enumerate((t0, t1, t2))]


def test_beyond_independent_holds_against_both_baselines():
    students = [FakeRun(copy_on(TEACHER, f, other=3), seed=s) for s, f in enumerate((0.75, 0.74))]
    v = claims.beyond_independent(three_teachers(), students)
    assert v.verdict == HOLDS and [p.verdict for p in v.parts] == [HOLDS, HOLDS]
    assert "paper's baseline" in v.parts[0].name and "study's baseline" in v.parts[1].name


def test_beyond_independent_fails_when_students_side_with_another_teacher():
    teachers = three_teachers()
    students = [FakeRun(teachers[1].predictions("test").numpy(), seed=s) for s in range(2)]
    v = claims.beyond_independent(teachers, students)
    assert v.parts[0].verdict == FAILS and v.verdict == FAILS and v.why


def test_beyond_independent_is_inconclusive_when_every_network_agrees_alike():
    """Each network copies one hidden labelling on a random 60 % of the images: a student is no
    closer to its teacher than to any other network, up to noise."""
    rng = np.random.default_rng(3)
    hidden = rng.integers(0, C, N)

    def network():
        return np.where(rng.random(N) < 0.6, hidden, rng.integers(0, C, N))

    teachers = [FakeRun(network(), seed=i) for i in range(3)]
    students = [FakeRun(network(), seed=s) for s in range(2)]
    v = claims.beyond_independent(teachers, students)
    assert v.verdict == INCONCLUSIVE and FAILS not in [p.verdict for p in v.parts]


def test_beyond_independent_needs_two_teachers():
    assert claims.beyond_independent([FakeRun(TEACHER)], [FakeRun(TEACHER)]).verdict == INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# 4. ensemble size

@pytest.mark.parametrize("small, large, expected", [(0.60, 0.70, HOLDS), (0.70, 0.60, FAILS),
                                                    (0.65, 0.652, INCONCLUSIVE)])
def test_ensemble_size(small, large, expected):
    pool = [FakeRun(TEACHER, seed=i) for i in range(3)]  # identical members: the ensemble predicts class 0
    by_size = {1: [FakeRun(copy_on(TEACHER, small + d), seed=s) for s, d in enumerate((0, 0.003))],
               3: [FakeRun(copy_on(TEACHER, large + d), seed=s) for s, d in enumerate((0, 0.003))]}
    v = claims.ensemble_size(by_size, pool)
    assert v.verdict == expected
    assert (v.why == "") == (expected == HOLDS)


# ---------------------------------------------------------------------------------------------
# 5. a sharp transition in lambda

TRAIN_TEACHER = np.zeros(N_TRAIN, dtype=int)


def lambda_runs(agreements: dict[float, float]):
    teacher = FakeRun(TEACHER, TRAIN_TEACHER, teacher=True, metrics={"train_acc": 0.95})
    return teacher, {l: [FakeRun(TEACHER, copy_on(TRAIN_TEACHER, a))] for l, a in agreements.items()}


@pytest.mark.parametrize("curve, expected", [
    ([0.60, 0.61, 0.62, 0.95, 0.97, 0.98], HOLDS),        # one step carries 33 of 38 points
    ([0.60, 0.68, 0.76, 0.84, 0.92, 0.97], FAILS),        # a steady climb: no step is most of it
    ([0.60, 0.62, 0.64, 0.73, 0.75, 0.78], INCONCLUSIVE),  # the largest step is half the rise, within noise
    ([0.60, 0.60, 0.601, 0.60, 0.60, 0.601], INCONCLUSIVE),  # no rise to speak of
])
def test_sharp_transition(curve, expected):
    grid = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    teacher, runs = lambda_runs({**dict(zip(grid, curve)), 1.0: 1.0})
    v = claims.sharp_transition({"LayerNorm": (teacher, runs)})
    assert v.verdict == expected, v
    assert "λ = 1" in v.evidence  # shown, never deciding


def test_sharp_transition_ignores_lambda_one_and_needs_a_dense_grid():
    teacher, runs = lambda_runs({0.0: 0.6, 0.1: 0.61, 0.2: 0.62, 0.3: 0.63, 0.5: 0.64, 1.0: 1.0})
    assert claims.sharp_transition({"LayerNorm": (teacher, runs)}).verdict == FAILS  # lambda = 1 does not count
    teacher, runs = lambda_runs({0.0: 0.6, 0.25: 0.62, 0.5: 0.98, 1.0: 1.0})
    coarse = claims.sharp_transition({"LayerNorm": (teacher, runs)})
    assert coarse.verdict == INCONCLUSIVE and "too coarse" in coarse.why
    # two models: one claim, holding only where both hold
    sharp = lambda_runs({0.0: .6, .1: .61, .2: .62, .3: .95, .4: .97, .5: .98, 1.0: 1.0})
    steady = lambda_runs({0.0: .6, .1: .68, .2: .76, .3: .84, .4: .92, .5: .97, 1.0: 1.0})
    both = claims.sharp_transition({"LayerNorm": sharp, "BatchNorm": steady})
    assert both.verdict == FAILS and len(both.parts) == 4 and both.parts[2].name.startswith("BatchNorm: ")
    assert claims.sharp_transition({"LayerNorm": sharp, "BatchNorm": sharp}).verdict == HOLDS


# ---------------------------------------------------------------------------------------------
# 6. CKA without agreement

@pytest.mark.parametrize("cka_init, agree_init, expected", [
    ((0.95, 0.951), 0.70, HOLDS),         # higher CKA, same agreement
    ((0.95, 0.951), 0.85, FAILS),         # higher CKA, and much higher agreement
    ((0.90, 0.93), 0.70, INCONCLUSIVE),   # CKA moves by less than its spread over seeds
])
def test_cka_not_agreement(cka_init, agree_init, expected):
    teacher = FakeRun(TEACHER)
    random = [FakeRun(copy_on(TEACHER, 0.70 + d), seed=s, metrics={"cka": [c, 0.8, 0.7]})
              for s, (d, c) in enumerate(((0, 0.90), (0.002, 0.92)))]
    init = [FakeRun(copy_on(TEACHER, agree_init + d), seed=s, metrics={"cka": [c, 0.8, 0.7]})
            for s, (d, c) in enumerate(zip((0, 0.002), cka_init))]
    assert claims.cka_not_agreement(teacher, random, init).verdict == expected


# ---------------------------------------------------------------------------------------------
# 7. temperature and MixUp

@pytest.mark.parametrize("low, high, mix_scale, expected", [
    (0.60, 0.70, 3.0, HOLDS),         # tau raises agreement; MixUp's softer student cuts the KL
    (0.70, 0.60, 3.0, FAILS),         # tau lowers agreement
    (0.60, 0.70, 8.0, FAILS),         # MixUp raises the KL without raising agreement
    (0.65, 0.652, 3.0, INCONCLUSIVE),  # tau's difference is inside the noise
])
def test_temperature_and_mixup(low, high, mix_scale, expected):
    pool = [FakeRun(TEACHER, seed=i, test_scale=3.0) for i in range(3)]

    def students(fraction, tau, scale=6.0):
        return [FakeRun(copy_on(TEACHER, fraction + d), seed=s, tau=tau, test_scale=scale)
                for s, d in enumerate((0, 0.002))]

    v = claims.temperature_and_mixup(students(low, 1.0), students(high, 4.0), students(high, 4.0, mix_scale), pool)
    assert v.verdict == expected, v


# ---------------------------------------------------------------------------------------------
# 8. optimiser and training length

def optimiser_runs(base, long, adam):
    teacher = FakeRun(TEACHER, TRAIN_TEACHER, teacher=True)

    def runs(f):
        return [FakeRun(copy_on(TEACHER, f + d), copy_on(TRAIN_TEACHER, f + d), seed=s)
                for s, d in enumerate((0, 0.003))]
    return runs(base), {"long": runs(long), "adam": runs(adam)}, teacher


@pytest.mark.parametrize("long, expected", [(0.72, HOLDS), (0.95, FAILS), (0.85, INCONCLUSIVE)])
def test_optimiser_and_length(long, expected):
    base, alternatives, teacher = optimiser_runs(0.70, long, 0.71)
    v = claims.optimiser_and_length(base, alternatives, teacher)
    assert v.verdict == expected, v
    assert len(v.parts) == 4 and {"test", "augmented training"} <= {p.name.split(" on ")[1].split(" images")[0]
                                                                    for p in v.parts}


# ---------------------------------------------------------------------------------------------
# Combining, levelling, output

def test_combine():
    assert claims.combine([HOLDS, HOLDS]) == HOLDS
    assert claims.combine([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert claims.combine([INCONCLUSIVE, FAILS]) == FAILS
    assert claims.combine([]) == INCONCLUSIVE


def test_rise_over_last_fifth_and_regime():
    run = FakeRun(TEACHER, epochs=50, history=[{"epoch": e, "test_agreement": a}
                                               for e, a in ((0, 0.1), (30, 0.6), (40, 0.65), (45, 0.66), (50, 0.68))])
    assert claims.rise_over_last_fifth(run) == pytest.approx(3.0)  # epochs 40 -> 50
    assert claims.rise_over_last_fifth(FakeRun(TEACHER, history=[{"epoch": 10, "test_agreement": 0.5}])) is None
    teachers = [FakeRun(TEACHER, metrics={"train_acc": a}) for a in (0.95, 0.91)]
    r = claims.regime(teachers, [run])
    assert r["teachers_fit"] and not r["students_levelled"] and r["mean_rise"] == pytest.approx(3.0)
    assert not claims.regime([FakeRun(TEACHER, metrics={"train_acc": 0.89})], [run])["teachers_fit"]
    settled = FakeRun(TEACHER, epochs=50, history=[{"epoch": 40, "test_agreement": 0.66},
                                                   {"epoch": 50, "test_agreement": 0.665}])
    assert claims.regime(teachers, [run, settled, settled])["mean_rise"] == pytest.approx(4 / 3)
    assert claims.regime(teachers, [settled, settled])["students_levelled"]


def test_verdicts_serialise_and_render():
    v = claims.far_from_faithful(FakeRun(TEACHER), [FakeRun(copy_on(TEACHER, 0.7), seed=s) for s in range(2)])
    record = json.loads(json.dumps(v.to_json()))
    assert record["id"] == "e1-fidelity" and record["verdict"] == HOLDS and record["noise"] == v.noise
    assert record["parts"][0]["interval"][0] < record["parts"][0]["estimate"] < record["parts"][0]["interval"][1]
    assert "**Holds.**" in claims.markdown([v]) and "bootstrap" in claims.markdown([v])
    table = claims.summary_table([v])
    assert "| E1 · far from faithful (`e1-fidelity`) | **holds** | 100 % minus test agreement: " in table
