"""Training, distillation, initialisation and the cache, on small synthetic data."""

import pytest
import torch
from torch import nn

from kdlib import data as kdata
from kdlib.cache import RunCache, run_id
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.train import get_run, init_student, initial_model, interpolate_state, refresh_batchnorm, resolve_device

R = Recipe(epochs=3, batch_size=20, lr=0.05, eval_every=2)


@pytest.fixture(scope="module")
def synthetic():
    g = torch.Generator().manual_seed(0)
    # 10 classes, each a noisy colour: learnable in a few steps
    def split(n):
        y = torch.arange(n) % 10
        base = (y[:, None, None, None].float() * 25).expand(n, 3, 32, 32)
        x = (base + torch.randint(0, 40, (n, 3, 32, 32), generator=g)).clamp(0, 255).to(torch.uint8)
        return kdata.Split(x, y)
    return kdata.Dataset(train=split(100), test=split(50), classes=tuple(f"c{i}" for i in range(100)),
                         fingerprint="synthetic-test-data", spec=kdata.DataSpec(source="synthetic"))


def _same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_teacher_run_is_cached_and_reused(synthetic, tmp_path, monkeypatch):
    cache = RunCache(tmp_path)
    spec = TeacherSpec(recipe=R, seed=0)
    run = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert run.id == run_id(spec, synthetic.cache_key())
    assert [h["epoch"] for h in run.history] == [0, 1, 2, 3]
    assert "test_acc" in run.history[2] and "test_acc" not in run.history[1]  # eval_every=2, and the last
    assert {"test_acc", "test_nll", "test_ece", "train_acc", "train_loss"} <= run.metrics.keys()
    assert not (run.path / "checkpoint.pt").exists()
    assert (run.path / "spec.json").exists() and (run.path / "model.pt").exists()
    assert run.test_logits().shape == (50, 100)

    def boom(*a, **k):
        raise AssertionError("a cached run must not train again")
    monkeypatch.setattr("kdlib.train._train", boom)
    again = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert again.metrics == run.metrics
    _same_state(again.state_dict(), run.state_dict())


def test_student_trains_missing_teachers_and_records_fidelity(synthetic, tmp_path):
    cache = RunCache(tmp_path)
    teachers = (TeacherSpec(recipe=R, seed=0), TeacherSpec(recipe=R, seed=1))
    student = get_run(StudentSpec(recipe=R, teachers=teachers, seed=0), synthetic, cache,
                      device="cpu", progress=False)
    for t in teachers:
        assert cache.load(run_id(t, synthetic.cache_key())) is not None
    m = student.metrics
    for key in ("test_agreement", "test_kl", "train_agreement", "train_aug_agreement", "train_aug_kl",
                "teacher_test_acc", "teacher_test_nll"):
        assert key in m
    assert 0 <= m["test_agreement"] <= 1 and m["test_kl"] >= 0
    assert "cka" not in m  # CKA only against a single teacher
    single = get_run(StudentSpec(recipe=R, teachers=teachers[:1]), synthetic, cache, device="cpu", progress=False)
    assert len(single.metrics["cka"]) == 3 and single.metrics["cka_examples"] == 50


def test_student_random_init_differs_from_teacher_init():
    t = TeacherSpec(recipe=R, seed=0)
    s = StudentSpec(recipe=R, teachers=(t,), seed=0)
    assert not torch.equal(initial_model(t).stem.weight, initial_model(s).stem.weight)


def test_interpolate_state_endpoints_and_buffers():
    a, b = initial_model(TeacherSpec(recipe=R, seed=0)), initial_model(TeacherSpec(recipe=R, seed=1))
    sa, sb = a.state_dict(), b.state_dict()
    sa["final_norm.num_batches_tracked"] = torch.tensor(10)
    _same_state(interpolate_state(sa, sb, 1.0), sa)
    _same_state(interpolate_state(sa, sb, 0.0), sb)
    mid = interpolate_state(sa, sb, 0.25)
    torch.testing.assert_close(mid["stem.weight"], 0.25 * sa["stem.weight"] + 0.75 * sb["stem.weight"])
    torch.testing.assert_close(mid["final_norm.running_var"], 0.25 * sa["final_norm.running_var"] + 0.75 * sb["final_norm.running_var"])
    assert mid["final_norm.num_batches_tracked"].item() == 2  # round(2.5) to even


def test_refresh_batchnorm_sets_exact_statistics_and_keeps_weights():
    model = initial_model(TeacherSpec(recipe=R, seed=0))
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    refresh_batchnorm(model, kdata.pad(x), batch_size=40, seed=0)
    for k, v in model.named_parameters():
        torch.testing.assert_close(v, weights[k])
    # one batch holding everything: the stem's output statistics are exactly the first norm's
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(40, generator=g)
    views = kdata.random_views(40, g, torch.device("cpu"))
    with torch.no_grad():
        h = model.stem(kdata.normalize(kdata.apply_views(kdata.pad(x)[perm], views[perm])))
    norm = model.stages[0][0].norm1
    torch.testing.assert_close(norm.running_mean, h.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.running_var, h.var((0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.1  # restored


def test_interpolated_student_at_lambda_one_starts_as_teacher(synthetic, tmp_path):
    cache = RunCache(tmp_path)
    r = Recipe(epochs=1, batch_size=20, lr=0.05)
    # LayerNorm: no statistics to refresh, so the student starts exactly at the teacher
    t_ln = TeacherSpec(recipe=r, seed=0, norm="layer")
    run = get_run(StudentSpec(recipe=r, teachers=(t_ln,), norm="layer", init="interpolate", lam=1.0),
                  synthetic, cache, device="cpu", progress=False)
    assert run.history[0]["test_agreement"] == 1.0 and run.history[0]["test_kl"] < 1e-9
    assert run.history[0]["lr"] == pytest.approx(1e-6)  # max(lr * (1 - 1), floor)
    # BatchNorm: the teacher's weights, with freshly refreshed statistics
    t_bn = TeacherSpec(recipe=r, seed=0)
    teacher = get_run(t_bn, synthetic, cache, device="cpu", progress=False)
    student_model = init_student(
        StudentSpec(recipe=r, teachers=(t_bn,), init="interpolate", lam=1.0), [teacher],
        kdata.pad(synthetic.train.x), torch.device("cpu"))
    params = dict(student_model.named_parameters())
    for k, v in teacher.load_model().named_parameters():
        torch.testing.assert_close(params[k], v, rtol=0, atol=0)
    teacher_init = get_run(StudentSpec(recipe=r, teachers=(t_bn,), init="teacher_init"), synthetic, cache,
                           device="cpu", progress=False)
    assert teacher_init.history[0]["lr"] == r.lr  # no lr scaling for E4
    untrained = initial_model(t_bn).state_dict()
    assert not torch.equal(teacher_init.state_dict()["stem.weight"], untrained["stem.weight"])  # it trained


def test_interrupted_run_resumes_to_identical_result(synthetic, tmp_path, monkeypatch):
    spec = TeacherSpec(recipe=Recipe(epochs=3, batch_size=20, lr=0.05), seed=3)
    reference = get_run(spec, synthetic, RunCache(tmp_path / "a"), device="cpu", progress=False)

    cache = RunCache(tmp_path / "b")
    real_step = torch.optim.SGD.step
    calls = {"n": 0}

    def interrupting_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # epoch 2 of 3 (5 steps per epoch), mid-epoch
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", interrupting_step)
    with pytest.raises(KeyboardInterrupt):
        get_run(spec, synthetic, cache, device="cpu", progress=False)
    monkeypatch.setattr(torch.optim.SGD, "step", real_step)
    folder = cache.folder(reference.id)
    assert (folder / "checkpoint.pt").exists() and cache.load(reference.id) is None

    resumed = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert resumed.metrics == reference.metrics
    assert [{k: v for k, v in h.items()} for h in resumed.history] == reference.history
    _same_state(resumed.state_dict(), reference.state_dict())


def test_damaged_checkpoint_is_discarded_with_a_warning(synthetic, tmp_path):
    spec = TeacherSpec(recipe=Recipe(epochs=1, batch_size=20, lr=0.05), seed=4)
    cache = RunCache(tmp_path)
    folder = cache.folder(run_id(spec, synthetic.cache_key()))
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"0" * 64 + b"\nnot a checkpoint")
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        run = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert run.history[-1]["epoch"] == 1


def test_nan_loss_stops_with_run_and_epoch(synthetic, tmp_path):
    spec = TeacherSpec(recipe=Recipe(epochs=2, batch_size=20, lr=1e30), seed=0)
    with pytest.raises(FloatingPointError, match=r"run [0-9a-f]{16} \(teacher\).*epoch 1"):
        get_run(spec, synthetic, RunCache(tmp_path), device="cpu", progress=False)


def test_adam_mixup_and_layernorm_paths_run(synthetic, tmp_path):
    cache = RunCache(tmp_path)
    r = Recipe(epochs=1, batch_size=20, lr=1e-3, optimizer="adam", weight_decay=0.0, mixup=True)
    t = TeacherSpec(recipe=r, seed=0, norm="layer")
    run = get_run(StudentSpec(recipe=r, teachers=(t,), norm="layer", alpha=0.5), synthetic, cache,
                  device="cpu", progress=False)
    assert run.spec.recipe.mixup and run.history[-1]["train_loss"] > 0


def test_device_and_spec_errors(synthetic, tmp_path):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="spec must be a TeacherSpec or StudentSpec"):
        get_run({"seed": 0}, synthetic, RunCache(tmp_path))
    big = TeacherSpec(recipe=Recipe(epochs=1, batch_size=500, lr=0.1))
    with pytest.raises(ValueError, match="batch_size"):
        get_run(big, synthetic, RunCache(tmp_path), device="cpu", progress=False)
