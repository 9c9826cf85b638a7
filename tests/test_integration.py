"""A tiny teacher and a distilled student on real CIFAR-100 (skipped without the archive)."""

import pytest

from kdlib import data as kdata
from kdlib.cache import RunCache
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.execute import get_run

pytestmark = pytest.mark.slow


def test_teacher_and_student_learn_above_chance(cifar_real_source, tmp_path):
    dataset = kdata.load(kdata.DataSpec(source=cifar_real_source, train_per_class=20, test_per_class=10))
    assert (len(dataset.train), len(dataset.test)) == (2000, 1000)
    cache = RunCache(tmp_path)
    teacher = TeacherSpec(recipe=Recipe(epochs=8, batch_size=64, lr=0.1, eval_every=8), seed=0)
    t = get_run(teacher, dataset, cache, device="cpu", progress=False)
    s = get_run(StudentSpec(recipe=Recipe(epochs=8, batch_size=64, lr=0.1, eval_every=8), teachers=(teacher,)),
                dataset, cache, device="cpu", progress=False)
    chance = 1 / 100
    assert t.metrics["test_acc"] > 5 * chance  # 8.2% when written
    assert s.metrics["test_acc"] > 4 * chance  # 6.1%
    # distillation made the student imitate its teacher: agreement 0.46, from ~0.01 at init
    assert s.metrics["test_agreement"] > 0.3
    assert s.metrics["test_agreement"] > 3 * s.history[0]["test_agreement"]
    assert s.metrics["test_kl"] < t.metrics["test_nll"]
