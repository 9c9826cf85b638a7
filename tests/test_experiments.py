"""Run plans (kdlib.plans) share runs across experiments; the analyses (kdlib.experiments) are computed correctly."""

import pytest
import torch

from kdlib import experiments as ex
from kdlib import plans, study
from kdlib.parameters import Parameters
from kdlib.cache import RunCache
from kdlib.config import StudentSpec, TeacherSpec
from kdlib.scales import SCALES, get_scale
from kdlib.checks import check_number


@pytest.mark.parametrize("name", list(SCALES))
def test_plans_are_valid_and_share_runs(name):
    sc = get_scale(name)
    t = plans.teachers(sc)
    assert [x.seed for x in t] == list(range(sc.n_teachers))
    e1 = plans.self_distillation_specs(sc)
    assert len(e1) == sc.self_distill_students and all(s.teachers == (t[0],) for s in e1)
    e2 = plans.ensemble_specs(sc)
    assert list(e2) == list(sc.ensemble_sizes)
    assert all(len(s.teachers) == m and [x.seed for x in e2[m]] == list(range(sc.seeds)) for m in e2 for s in e2[m])
    assert max(sc.ensemble_sizes) <= sc.n_teachers
    # identical configurations are one cached run across experiments
    assert e2[1] == e1[:sc.seeds] and plans.cka_specs(sc)["random"] == e1
    assert plans.temperature_specs(sc)["tau=4"] == e2[max(sc.ensemble_sizes)]
    for norm in sc.lambda_norms:
        e3 = plans.initialisation_specs(sc, norm)
        assert list(e3) == [float(l) for l in sc.lambdas]
        assert all(s.lam == l and s.norm == norm and s.teachers[0].norm == norm for l, ss in e3.items() for s in ss)
        assert all(len(ss) == (sc.lambda_seeds if l < 1 else 1) for l, ss in e3.items())
        seeds = [s.seed for ss in e3.values() for s in ss]
        assert len(seeds) == len(set(seeds)), "no two lambdas share a seed (independent points of the curve)"
        assert plans.initialisation_specs(sc, norm, [0.3])[0.3] == e3.get(0.3, plans.initialisation_specs(sc, norm, [0.3])[0.3])
        assert e3[0.0][0].teachers[0] == plans.teachers(sc, norm)[0]
        assert e3[0.0][0].recipe == sc.student_recipe(norm)
    e4 = plans.cka_specs(sc)["teacher_init"]
    assert [s.init for s in e4] == ["teacher_init"] * sc.seeds
    e5 = plans.temperature_specs(sc)
    assert all(s.recipe.mixup for s in e5[plans.MIXUP]) and not any(s.recipe.mixup for s in e5["tau=4"])
    e6 = list(plans.optimiser_specs(sc).values())
    assert all(s.recipe.weight_decay == 0 for ss in e6 for s in ss) and all(len(ss) == sc.seeds for ss in e6)
    assert e6[1][0].recipe.epochs == sc.long_factor * e6[0][0].recipe.epochs
    assert e6[2][0].recipe.optimizer == "adam" and e6[2][0].recipe.lr == sc.adam_lr
    everything = study.all_specs(sc)
    assert len(everything) == len(set(everything))
    assert isinstance(everything[0], TeacherSpec)
    assert set(plans.flatten([e1, e2, e4, e5])) <= set(everything)


def test_flatten_keeps_plan_order():
    assert plans.flatten({"a": [1, 2], "b": {"c": [3]}, "d": 4}) == [1, 2, 3, 4]


class FakeRun:
    def __init__(self, logits, seed=0):
        self._logits = logits
        self.spec = TeacherSpec(recipe=get_scale("tiny").teacher, seed=seed)

    def test_logits(self):
        return self._logits


def _onehot(labels, classes=4):
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).float() * 10


def test_pairwise_and_cross_agreement_and_partition():
    a = FakeRun(_onehot([0, 1, 2, 3]), 0)
    b = FakeRun(_onehot([0, 1, 3, 2]), 1)
    s = FakeRun(_onehot([0, 2, 2, 0]))
    pairs = ex.pairwise([a, b])
    assert pairs[0]["pair"] == "0-1" and pairs[0]["agreement"] == 0.5
    cross = ex.cross_agreement(s, [b])
    assert cross[0]["agreement"] == 0.25
    # teachers agree on images 0, 1; the student agrees with a on images 0 and 2
    cells = ex.agreement_partition(a, b, s)
    assert cells == {("teachers agree", "student agrees"): 1, ("teachers agree", "student disagrees"): 1,
                     ("teachers disagree", "student agrees"): 1, ("teachers disagree", "student disagrees"): 1}
    assert sum(cells.values()) == 4  # every image in exactly one cell
    ens = ex.ensemble_test_logits([a, b])
    torch.testing.assert_close(ens.exp().sum(1), torch.ones(4))


def test_agreement_decomposition_is_the_studys_rate_arithmetic():
    """The study's 6,319 / 817 / 2,864 of 10,000 images: 63.19 %, 71.36 - 63.19 %, 100 - 71.36 %."""
    parts = ex.agreement_decomposition(0.6319, 0.7136)
    assert [round(10000 * v) for v in parts.values()] == [6319, 817, 2864]


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(scale="huge"), ValueError, "scale must be one of"),
    (dict(scale=3), ValueError, "scale must be a string"),
    (dict(device="gpu"), ValueError, "device must be"),
    (dict(executor="spark"), ValueError, "executor must be one of"),
    (dict(data="/nonexistent/cifar.tar.gz"), FileNotFoundError, "data='/nonexistent/cifar.tar.gz' does not exist"),
])
def test_open_experiment_rejects_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ex.open_experiment(Parameters(**{"scale": "tiny", **kwargs}))


@pytest.mark.parametrize("value", [2, -0.1, float("nan"), "0.5", True])
def test_check_number(value):
    with pytest.raises(ValueError, match=r"lam must be a number in \[0, 1\]"):
        check_number("lam", value, 0, 1)
    assert check_number("tau", 4, 0, float("inf"), low_open=True) == 4.0
    with pytest.raises(ValueError, match=r"tau must be a number in \(0, inf\]"):
        check_number("tau", 0, 0, float("inf"), low_open=True)


# ---------------------------------------------------------------------------------------------
# Another draw of seeds: seed_base

def _plans(sc) -> dict:
    """Every plan function's output at `sc` (both norms for E3)."""
    return {"teachers": plans.teachers(sc), "layer teachers": plans.teachers(sc, "layer"),
            "E1": plans.self_distillation_specs(sc), "E2": plans.ensemble_specs(sc),
            "E3": {n: plans.initialisation_specs(sc, n) for n in ("layer", "batch")}, "E4": plans.cka_specs(sc),
            "E5": plans.temperature_specs(sc), "E6": plans.optimiser_specs(sc), "all": study.all_specs(sc)}


def _seeds(specs) -> set[int]:
    """Every seed in a plan, the teachers' inside students' specs included."""
    out = set()
    for s in plans.flatten(specs):
        out.add(s.seed)
        out.update(t.seed for t in getattr(s, "teachers", ()))
    return out


@pytest.mark.parametrize("name", list(SCALES))
def test_seed_base_0_is_todays_plans_and_run_ids(name):
    from synthetic import run_id

    today = SCALES[name]  # the scale as defined, built without seed_base
    assert today.seed_base == 0 and get_scale(name) == today
    base0 = get_scale(name, seed_base=0)
    assert _plans(base0) == _plans(today)
    key = {"fingerprint": "x", "train_per_class": 1, "test_per_class": 1}
    assert [run_id(s, key) for s in study.all_specs(base0)] == [run_id(s, key) for s in study.all_specs(today)]
    # today's seeds, written out: teachers 0..n-1, trial ids, E3's 10000 * trial + 1000 * lambda
    assert [t.seed for t in plans.teachers(base0)] == list(range(today.n_teachers))
    assert [s.seed for s in plans.self_distillation_specs(base0)] == list(range(today.self_distill_students))
    e3 = plans.initialisation_specs(base0, today.lambda_norms[0])
    assert {lam: [s.seed for s in ss] for lam, ss in e3.items()} == {
        float(lam): [10000 * t + round(1000 * lam) for t in range(today.lambda_seeds if lam < 1 else 1)]
        for lam in today.lambdas}


@pytest.mark.parametrize("name", list(SCALES))
def test_another_seed_base_shares_no_seed(name):
    base0, base1, base2 = (get_scale(name, b) for b in (0, 1, 2))
    assert base1.seed_base == 1 and base1.name == name
    p0, p1, p2 = _plans(base0), _plans(base1), _plans(base2)
    s0, s1, s2 = _seeds(p0), _seeds(p1), _seeds(p2)
    assert not s0 & s1 and not s0 & s2 and not s1 & s2
    assert s1 == {plans.SEED_STRIDE + s for s in s0}
    assert not set(plans.flatten(p0["all"])) & set(plans.flatten(p1["all"]))  # no run shared
    # the same plans otherwise: same shape, settings and sizes, only the seeds moved
    assert len(p1["all"]) == len(p0["all"])
    assert {k: len(v) for k, v in p1["E5"].items()} == {k: len(v) for k, v in p0["E5"].items()}
    assert plans.run_seed(base1, 7) == 100_007 and plans.run_seed(base0, 7) == 7


def test_run_seed_keeps_local_seeds_below_the_stride():
    with pytest.raises(AssertionError, match="local seed"):
        plans.run_seed(get_scale("tiny", 1), plans.SEED_STRIDE)
    assert plans.lambda_seed(1.0, 9) < plans.SEED_STRIDE  # E3's largest local seeds fit


@pytest.mark.parametrize("value", [-1, 1.5, "1", True, None])
def test_bad_seed_base_is_named(value):
    import dataclasses

    message = r"seed_base must be an int >= 0, got "
    with pytest.raises(ValueError, match=message):
        get_scale("tiny", value)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SCALES["tiny"], seed_base=value)
    with pytest.raises(ValueError, match=message):
        ex.open_experiment(Parameters("tiny", seed_base=value))


def test_the_plans_beyond_the_paper_pair_their_judged_settings_with_e1():
    sc = get_scale("reduced")
    e1 = plans.self_distillation_specs(sc)
    by_alpha = plans.alpha_specs(sc)
    assert list(by_alpha) == [0.0, 0.5, 0.9] and by_alpha[0.0] == e1
    assert [s.seed for s in by_alpha[0.9]] == [s.seed for s in e1] and all(s.alpha == 0.9 for s in by_alpha[0.9])
    assert len(by_alpha[0.5]) == sc.grid_seeds() == 1
    deep = plans.capacity_specs(sc)
    assert deep["teacher"][0].depth == 56 and deep["teacher"][0].recipe == sc.teacher
    assert [s.seed for s in deep["students"]] == [s.seed for s in e1]
    assert all(s.teachers == tuple(deep["teacher"]) and s.depth == 20 for s in deep["students"])
    counts = plans.class_count_specs(sc)
    assert list(counts) == [5, 10] and all(len(c["teachers"]) == 2 for c in counts.values())
    assert len(counts[5]["students"]) == len(e1) and len(counts[10]["students"]) == 1
    assert set(plans.flatten([by_alpha, deep])) <= set(study.all_specs(sc))


def test_a_scale_refuses_class_counts_it_cannot_subset_and_alphas_outside_the_unit_interval():
    import dataclasses
    sc = get_scale("reduced")
    with pytest.raises(ValueError, match=r"class_counts must be ints in \[2, 20\)"):
        dataclasses.replace(sc, class_counts=(5, 20))
    with pytest.raises(ValueError, match=r"alphas must lie in \(0, 1\]"):
        dataclasses.replace(sc, alphas=(0.0, 0.5))
