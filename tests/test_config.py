import pytest

from kdlib.config import Recipe, StudentSpec, TeacherSpec, spec_from_dict, spec_to_dict, stable_seed
from kdlib.scales import SCALES, get_scale

R = Recipe(epochs=3, batch_size=8, lr=0.1)
T = TeacherSpec(recipe=R, seed=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs must be an int >= 1"),
    (dict(epochs=2.5), "epochs must be an int >= 1"),
    (dict(batch_size=1), "batch_size must be an int >= 2"),
    (dict(lr=0), "lr must be a finite number > 0"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(optimizer="rmsprop"), r"optimizer must be one of \('sgd', 'adam'\)"),
    (dict(weight_decay=-1e-4), "weight_decay must be a finite number >= 0"),
    (dict(eval_every=0), "eval_every must be an int >= 1"),
])
def test_recipe_rejects_bad_values(kwargs, match):
    base = dict(epochs=3, batch_size=8, lr=0.1)
    with pytest.raises(ValueError, match=match):
        Recipe(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    (dict(tau=0), "tau must be a finite number > 0"),
    (dict(tau=-2), "tau must be a finite number > 0"),
    (dict(alpha=1.5), r"alpha must be a number in \[0, 1\]"),
    (dict(init="interpolate", lam=2), r"lam must be a number in \[0, 1\]"),
    (dict(init="interpolate", lam=-0.1), r"lam must be a number in \[0, 1\]"),
    (dict(norm="group"), r"norm must be one of \('batch', 'layer'\)"),
    (dict(init="warm"), r"init must be one of \('random', 'interpolate', 'teacher_init'\)"),
    (dict(init="interpolate", lam=0.5, norm="layer"), "needs norm equal to the teacher's"),
    (dict(lam=0.5), "lam is only used with init='interpolate'"),
    (dict(teachers=()), "teachers must be a non-empty sequence"),
    (dict(teachers=(T, TeacherSpec(recipe=R, seed=1, norm="layer"))), "teachers must share one architecture"),
    (dict(teachers=(T, TeacherSpec(recipe=R, seed=1)), init="teacher_init"), "needs exactly one teacher"),
    (dict(seed=-1), "seed must be an int >= 0"),
])
def test_student_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StudentSpec(**{**dict(recipe=R, teachers=(T,)), **kwargs})


def test_cosine_schedule_and_lr_scaling():
    r = Recipe(epochs=4, batch_size=8, lr=0.05, lr_min=1e-6)
    assert r.lr_at(0) == pytest.approx(0.05)
    assert r.lr_at(2) == pytest.approx((0.05 + 1e-6) / 2)
    assert r.lr_at(4) == pytest.approx(1e-6)
    s = StudentSpec(recipe=r, teachers=[T], init="interpolate", lam=0.75)
    assert s.start_lr == pytest.approx(0.0125)
    assert StudentSpec(recipe=r, teachers=[T], init="interpolate", lam=1.0).start_lr == pytest.approx(1e-6)
    assert StudentSpec(recipe=r, teachers=[T]).start_lr == 0.05


def test_spec_round_trips_through_dict():
    s = StudentSpec(recipe=R, teachers=[T, TeacherSpec(recipe=R, seed=1)], seed=2, tau=2.0)
    assert spec_from_dict(spec_to_dict(s)) == s
    assert spec_from_dict(spec_to_dict(T)) == T


def test_stable_seed_separates_streams():
    assert stable_seed("teacher", 0, "init") != stable_seed("student", 0, "init")
    assert stable_seed("teacher", 0, "init") == stable_seed("teacher", 0, "init")
    assert 0 <= stable_seed("x") < 2**63


def test_scales_are_defined_once_and_validated():
    assert set(SCALES) == {"paper", "reduced", "tiny"}
    paper = get_scale("paper")
    assert (paper.teacher.epochs, paper.teacher.batch_size, paper.teacher.lr) == (200, 256, 0.1)
    assert (paper.student.epochs, paper.student.batch_size, paper.student.lr, paper.student.lr_min) == (300, 128, 0.05, 1e-6)
    assert paper.train_per_class is None and paper.n_teachers == 5
    with pytest.raises(ValueError, match=r"scale must be one of \('paper', 'reduced', 'tiny'\)"):
        get_scale("huge")
