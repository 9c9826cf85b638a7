"""Run plans share runs across experiments; summaries are computed correctly."""

import pytest
import torch

from kdlib import experiments as ex
from kdlib.cache import RunCache
from kdlib.config import StudentSpec, TeacherSpec
from kdlib.scales import SCALES, get_scale


@pytest.mark.parametrize("name", list(SCALES))
def test_plans_are_valid_and_share_runs(name):
    sc = get_scale(name)
    t = ex.teachers(sc)
    assert [x.seed for x in t] == list(range(sc.n_teachers))
    e1 = ex.self_distillation_specs(sc)
    assert len(e1) == sc.self_distill_students and all(s.teachers == (t[0],) for s in e1)
    e2 = ex.ensemble_specs(sc)
    assert [len(s.teachers) for s in e2] == list(sc.ensemble_sizes)
    assert max(sc.ensemble_sizes) <= sc.n_teachers
    # identical configurations are one cached run across experiments
    assert e2[0] == e1[0] == ex.cka_specs(sc)["random"]
    assert ex.temperature_specs(sc)["tau=4"] == e2[-1]
    for norm in sc.lambda_norms:
        e3 = ex.initialisation_specs(sc, norm)
        assert [s.lam for s in e3] == [float(l) for l in sc.lambdas]
        assert all(s.norm == norm and s.teachers[0].norm == norm for s in e3)
    e5 = ex.temperature_specs(sc)
    assert e5["tau=4 + MixUp"].recipe.mixup and not e5["tau=4"].recipe.mixup
    e6 = list(ex.optimiser_specs(sc).values())
    assert all(s.recipe.weight_decay == 0 for s in e6)
    assert e6[1].recipe.epochs == sc.long_factor * e6[0].recipe.epochs
    assert e6[2].recipe.optimizer == "adam" and e6[2].recipe.lr == sc.adam_lr
    everything = ex.all_specs(sc)
    assert len(everything) == len(set(everything))
    assert isinstance(everything[0], TeacherSpec)


def test_mean_std_fmt_and_points():
    assert ex.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert ex.mean_std([5.0]) == (5.0, 0.0)
    assert ex.fmt([0.5, 0.7], 100) == "60.00 ± 14.14"
    assert ex.fmt([0.5], 100) == "50.00"
    assert ex.points(3.104) == "3.10 points higher"
    assert ex.points(-1) == "1.00 points lower"
    assert ex.points(0.001) == "no different"


class FakeRun:
    def __init__(self, logits, seed=0):
        self._logits = logits
        self.spec = TeacherSpec(recipe=get_scale("tiny").teacher, seed=seed)

    def test_logits(self):
        return self._logits


def _onehot(labels, classes=4):
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).float() * 10


def test_pairwise_and_cross_agreement_and_split():
    a = FakeRun(_onehot([0, 1, 2, 3]), 0)
    b = FakeRun(_onehot([0, 1, 3, 2]), 1)
    s = FakeRun(_onehot([0, 2, 2, 0]))
    pairs = ex.pairwise([a, b])
    assert pairs[0]["pair"] == "0-1" and pairs[0]["agreement"] == 0.5
    cross = ex.cross_agreement(s, [b])
    assert cross[0]["agreement"] == 0.25
    # easy: images 0, 1 (a == b); disputed 2, 3: student sides with a on 2 only
    assert ex.agreement_split(a, b, s) == {"agreed by independent teachers": 2,
                                           "agreed only after distillation": 1, "still disagreeing": 1}
    ens = ex.ensemble_test_logits([a, b])
    torch.testing.assert_close(ens.exp().sum(1), torch.ones(4))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(scale="huge"), ValueError, "scale must be one of"),
    (dict(scale=3), ValueError, "scale must be a string"),
    (dict(device="gpu"), ValueError, "device must be"),
    (dict(executor="spark"), ValueError, "executor must be one of"),
    (dict(data="/nonexistent/cifar.tar.gz"), FileNotFoundError, "data='/nonexistent/cifar.tar.gz' does not exist"),
])
def test_open_experiment_rejects_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ex.open_experiment(**{"scale": "tiny", **kwargs})


@pytest.mark.parametrize("value", [2, -0.1, float("nan"), "0.5", True])
def test_check_number(value):
    with pytest.raises(ValueError, match=r"lam must be a number in \[0, 1\]"):
        ex.check_number("lam", value, 0, 1)
    assert ex.check_number("tau", 4, 0, float("inf"), low_open=True) == 4.0
    with pytest.raises(ValueError, match=r"tau must be a number in \(0, inf\]"):
        ex.check_number("tau", 0, 0, float("inf"), low_open=True)


def test_cka_gap_is_the_largest_stage_difference():
    from types import SimpleNamespace
    a = SimpleNamespace(metrics={"cka": [0.90, 0.80, 0.70]})
    b = SimpleNamespace(metrics={"cka": [0.95, 0.60, 0.72]})
    assert ex.cka_gap(a, b) == pytest.approx(0.20) == ex.cka_gap(b, a)
    assert ex.cka_gap(a, b) > ex.SIMILAR_CKA_GAP
