"""Training, distillation and initialisation (kdlib.train), through get_run, on small synthetic data."""

import pytest
import torch
from torch import nn

from kdlib import data as kdata
from kdlib.cache import RunCache
from synthetic import run_id
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.device import resolve_device
from kdlib.execute import get_run
from kdlib.train import (TrainSet, augmented_batches, init_student, initial_model, interpolate_state, make_optimizer,
                         refresh_batchnorm)

from synthetic import same_state, synthetic_dataset

R = Recipe(epochs=3, batch_size=20, lr=0.05, eval_every=2)


@pytest.fixture(scope="module")
def synthetic():
    # 10 classes, each a noisy colour: learnable in a few steps
    return synthetic_dataset()


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
    monkeypatch.setattr("kdlib.train.train", boom)
    again = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert again.metrics == run.metrics
    same_state(again.state_dict(), run.state_dict())


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
    same_state(interpolate_state(sa, sb, 1.0), sa)
    same_state(interpolate_state(sa, sb, 0.0), sb)
    mid = interpolate_state(sa, sb, 0.25)
    torch.testing.assert_close(mid["stem.weight"], 0.25 * sa["stem.weight"] + 0.75 * sb["stem.weight"])
    torch.testing.assert_close(mid["final_norm.running_var"], 0.25 * sa["final_norm.running_var"] + 0.75 * sb["final_norm.running_var"])
    assert mid["final_norm.num_batches_tracked"].item() == 2  # round(2.5) to even


def test_refresh_batchnorm_sets_exact_statistics_and_keeps_weights():
    model = initial_model(TeacherSpec(recipe=R, seed=0))
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    refresh_batchnorm(model, augmented_batches(TrainSet(kdata.Split(x, torch.zeros(40, dtype=torch.long)), "cpu"),
                                               batch_size=40, seed=0))
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
        TrainSet(synthetic.train, "cpu"))
    params = dict(student_model.named_parameters())
    for k, v in teacher.load_model().named_parameters():
        torch.testing.assert_close(params[k], v, rtol=0, atol=0)
    teacher_init = get_run(StudentSpec(recipe=r, teachers=(t_bn,), init="teacher_init"), synthetic, cache,
                           device="cpu", progress=False)
    assert teacher_init.history[0]["lr"] == r.lr  # no lr scaling for E4
    untrained = initial_model(t_bn).state_dict()
    assert not torch.equal(teacher_init.state_dict()["stem.weight"], untrained["stem.weight"])  # it trained


def test_interrupted_run_resumes_to_identical_result(synthetic, tmp_path, interrupted_at_step):
    spec = TeacherSpec(recipe=Recipe(epochs=3, batch_size=20, lr=0.05), seed=3)
    reference = get_run(spec, synthetic, RunCache(tmp_path / "a"), device="cpu", progress=False)

    cache = RunCache(tmp_path / "b")
    # step 8: epoch 2 of 3 (5 steps per epoch), mid-epoch
    interrupted_at_step(8, lambda: get_run(spec, synthetic, cache, device="cpu", progress=False))
    folder = cache.folder(reference.id)
    assert (folder / "checkpoint.pt").exists() and cache.load(reference.id) is None

    resumed = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert resumed.metrics == reference.metrics
    assert [{k: v for k, v in h.items()} for h in resumed.history] == reference.history
    same_state(resumed.state_dict(), reference.state_dict())


def test_damaged_checkpoint_is_discarded_with_a_warning(synthetic, tmp_path):
    spec = TeacherSpec(recipe=Recipe(epochs=1, batch_size=20, lr=0.05), seed=4)
    cache = RunCache(tmp_path)
    folder = cache.folder(run_id(spec, synthetic.cache_key()))
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"0" * 64 + b"\nnot a checkpoint")
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        run = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert run.history[-1]["epoch"] == 1


def test_a_checkpoint_of_another_run_is_discarded_with_a_warning(synthetic, tmp_path, interrupted_at_step):
    """The checkpoint carries its run's key: one found in another run's folder is not resumed from."""
    first = TeacherSpec(recipe=Recipe(epochs=3, batch_size=20, lr=0.05), seed=5)
    other = TeacherSpec(recipe=Recipe(epochs=3, batch_size=20, lr=0.05), seed=6)
    cache = RunCache(tmp_path)
    interrupted_at_step(8, lambda: get_run(first, synthetic, cache, device="cpu", progress=False))
    source = cache.folder(run_id(first, synthetic.cache_key())) / "checkpoint.pt"
    from kdlib.files import load_tensors
    assert load_tensors(source)["key"]["spec"]["seed"] == 5
    target = cache.folder(run_id(other, synthetic.cache_key()))
    target.mkdir(parents=True)
    (target / "checkpoint.pt").write_bytes(source.read_bytes())
    with pytest.warns(UserWarning, match="checkpoint written for another run"):
        run = get_run(other, synthetic, cache, device="cpu", progress=False)
    assert run.info["resumed_after_epochs"] == [] and run.spec.seed == 6


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


# ---------------------------------------------------------------------------------------------
# Speed paths: numerics in the run id, the logit cache, no host synchronisation

from kdlib import logit_cache as lcache  # noqa: E402
from kdlib.losses import Teacher  # noqa: E402
from kdlib.device import autocast, resolve_precision  # noqa: E402
from kdlib.identity import RunKey  # noqa: E402
from kdlib.train import train_epoch  # noqa: E402

R_SMALL = Recipe(epochs=3, batch_size=4, lr=0.05)  # 3 steps on 12 images: a cache of 12 x 162 views


@pytest.fixture(scope="module")
def small(synthetic):
    """The first 12 training images: small enough to cache all 162 views in a second or two."""
    return kdata.Dataset(train=kdata.Split(synthetic.train.x[:12], synthetic.train.y[:12]), test=synthetic.test,
                         classes=synthetic.classes, fingerprint="synthetic-small", spec=synthetic.spec)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_precision_is_resolved_per_device_and_checked(monkeypatch):
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"  # conftest: a CPU without bf16
    monkeypatch.setattr("kdlib.device.cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", torch.device("cpu"))
    teacher = TeacherSpec(recipe=R)
    assert RunKey(teacher, {"fingerprint": "x"}, "fp32").variant == {}  # the default run: no variant
    assert RunKey(StudentSpec(recipe=R, teachers=(teacher,)), {"fingerprint": "x"}, "bf16", True).variant == \
        {"precision": "bf16", "teacher_logits": "cache-float16"}


def test_bf16_run_has_its_own_id_and_records_precision(synthetic, tmp_path):
    cache = RunCache(tmp_path)
    spec = TeacherSpec(recipe=Recipe(epochs=1, batch_size=50, lr=0.05), seed=0)
    fp32 = get_run(spec, synthetic, cache, device="cpu", progress=False)
    bf16 = get_run(spec, synthetic, cache, device="cpu", progress=False, precision="bf16")
    assert fp32.id == run_id(spec, synthetic.cache_key()) and fp32.variant == {}
    assert bf16.id == run_id(spec, synthetic.cache_key(), {"precision": "bf16"}) != fp32.id
    assert (fp32.info["precision"], bf16.info["precision"]) == ("fp32", "bf16")
    assert bf16.variant == {"precision": "bf16"}
    assert 0.0 <= bf16.metrics["test_acc"] <= 1.0 and bf16.history[-1]["train_loss"] > 0


def test_history_is_measured_in_fp32_whatever_the_training_precision(synthetic, tmp_path, interrupted_at_step):
    """The claims read the history (agreement's rise over the last fifth of training), so a bf16 run's
    history entries are the same fp32 measurements as its final metrics: an entry mid-training equals
    an fp32 evaluation of that epoch's checkpoint, and the last entry is the final metrics'."""
    from kdlib import evaluate as ev
    from kdlib import metrics as km
    from kdlib.files import load_tensors
    from kdlib.train import initial_model

    cache = RunCache(tmp_path)
    spec = TeacherSpec(recipe=Recipe(epochs=3, batch_size=20, lr=0.05, eval_every=1), seed=5)
    # step 8: in epoch 2 (5 steps an epoch), so the checkpoint holds epoch 1's weights and history
    interrupted_at_step(8, lambda: get_run(spec, synthetic, cache, device="cpu", progress=False, precision="bf16"))
    rid = run_id(spec, synthetic.cache_key(), {"precision": "bf16"})
    state = load_tensors(cache.folder(rid) / "checkpoint.pt")
    model = initial_model(spec, synthetic.num_classes).to(memory_format=torch.channels_last)
    model.load_state_dict(state["model"])
    logits = ev.predict(model, synthetic.test.x, torch.device("cpu"))  # fp32
    entry = state["history"][1]
    assert entry["epoch"] == 1
    assert entry["test_acc"] == km.accuracy(logits, synthetic.test.y)
    assert entry["test_nll"] == pytest.approx(km.nll(logits, synthetic.test.y), rel=1e-6)

    run = get_run(spec, synthetic, cache, device="cpu", progress=False, precision="bf16")
    last = run.history[-1]
    assert last["epoch"] == 3
    assert (last["test_acc"], last["test_nll"]) == (run.metrics["test_acc"], run.metrics["test_nll"])


def test_student_on_cached_logits_matches_on_the_fly_and_reuses_the_cache(small, tmp_path):
    cache = RunCache(tmp_path)
    t = TeacherSpec(recipe=R_SMALL, seed=0)
    spec = StudentSpec(recipe=R_SMALL, teachers=(t,), seed=0)
    fly = get_run(spec, small, cache, device="cpu", progress=False, logit_cache="off")
    cached = get_run(spec, small, cache, device="cpu", progress=False, logit_cache="on")
    assert fly.info["teacher_logits"] == "on the fly" and fly.variant == {}
    assert cached.info["teacher_logits"] == "cache" and cached.variant == {"teacher_logits": "cache-float16"}
    assert cached.id != fly.id and cached.info["logit_cache"]["source"] == "built"
    assert cached.info["logit_cache"]["bytes"] == lcache.cache_bytes(len(small.train))
    # same data order and start; targets differ only by float16 rounding
    assert cached.history[0] == fly.history[0]
    assert cached.history[1]["train_loss"] == pytest.approx(fly.history[1]["train_loss"], rel=1e-3)
    # "auto" at 3 epochs runs on the fly: that is the run above, from the cache
    assert get_run(spec, small, cache, device="cpu", progress=False).id == fly.id
    second = get_run(StudentSpec(recipe=R_SMALL, teachers=(t,), seed=1), small, cache, device="cpu",
                     progress=False, logit_cache="on")
    assert second.info["logit_cache"]["source"] == "loaded"  # same teacher: stored cache reused
    # the teacher damaged and retrained to other weights under the same run id (a GPU retrain is not
    # bitwise deterministic): its students must not get targets from the old weights
    old = cache.load(run_id(t, small.cache_key()))
    other = old.state_dict()
    other["fc.bias"] = other["fc.bias"] + torch.linspace(-1, 1, len(other["fc.bias"]))  # other weights
    outputs = {s: old.stored_logits(s) for s in ("test", "train", "train_aug")}
    cache.move_aside(old.id)
    retrained = cache.write_result(old.key, other, outputs, old.history, old.metrics, old.info)
    assert retrained.id == old.id and retrained.weights_sha256 != old.weights_sha256
    third = get_run(StudentSpec(recipe=R_SMALL, teachers=(t,), seed=2), small, cache, device="cpu",
                    progress=False, logit_cache="on")
    assert third.info["logit_cache"]["source"] == "built"
    assert third.info["logit_cache"]["key"] != second.info["logit_cache"]["key"]
    with pytest.raises(ValueError, match="MixUp"):
        mix = StudentSpec(recipe=Recipe(epochs=1, batch_size=4, lr=0.05, mixup=True), teachers=(t,))
        get_run(mix, small, cache, device="cpu", progress=False, logit_cache="on")


def test_mixup_lam_on_device_is_bit_identical():
    x = torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    a, pa, la = kdata.mixup(x, torch.Generator().manual_seed(5))
    b, pb, lb = kdata.mixup(x, torch.Generator().manual_seed(5), keep_on_device=True)
    assert isinstance(lb, torch.Tensor) and lb.dim() == 0 and lb.item() == la
    assert torch.equal(pa, pb) and torch.equal(a, b)


def _epoch_inputs(split, spec, seed=0):
    """A fresh model, its optimiser and one epoch of `split`'s batches (the training loop's own)."""
    model = initial_model(spec).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, Recipe(epochs=1, batch_size=4, lr=0.01))
    return model, opt, TrainSet(split, "cpu").epoch(seed, spec.recipe.batch_size)


def test_train_epoch_never_waits_for_the_device(small, monkeypatch):
    """On CPU, the host-synchronising tensor reads are made to fail inside the epoch: the loop must
    not use them (on CUDA each would stall the queue; the CUDA test below checks the real thing)."""
    r_mix = Recipe(epochs=1, batch_size=4, lr=0.05, mixup=True)
    teacher_spec = TeacherSpec(recipe=R_SMALL)
    member = initial_model(teacher_spec).eval().to(memory_format=torch.channels_last)
    teacher = Teacher([member])
    padded = kdata.pad(small.train.x)
    store = lcache.build(teacher, padded)
    cases = [(teacher_spec, {}), (StudentSpec(recipe=R_SMALL, teachers=(teacher_spec,)), {"teacher": teacher}),
             (StudentSpec(recipe=R_SMALL, teachers=(teacher_spec,)), {"cached_teacher": store}),
             (StudentSpec(recipe=r_mix, teachers=(teacher_spec,), alpha=0.5), {"teacher": teacher})]
    def no_sync(*args, **kwargs):
        raise AssertionError("host synchronisation inside the training loop")
    for spec, targets in cases:
        model, opt, batches = _epoch_inputs(small.train, spec)
        assert batches.steps == 3
        with monkeypatch.context() as m:
            for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"):
                m.setattr(torch.Tensor, name, no_sync)
            loss_sum, correct = train_epoch(model, opt, spec, batches, **targets)
        assert loss_sum.item() > 0 and 0 <= correct.item() <= 12


def test_cached_student_steps_equal_on_the_fly_ones_up_to_float16(small):
    """One step with cached targets vs teachers on the fly: the same batch, nearly the same update."""
    t_spec = TeacherSpec(recipe=R_SMALL)
    teacher = Teacher([initial_model(t_spec).eval().to(memory_format=torch.channels_last)])
    spec = StudentSpec(recipe=R_SMALL, teachers=(t_spec,), tau=2.0)
    store = lcache.build(teacher, kdata.pad(small.train.x))
    results = []
    first_batch = kdata.Split(small.train.x[:4], small.train.y[:4])  # images 0-3 of the cache: one step
    for targets in ({"teacher": teacher}, {"cached_teacher": store}):
        model, opt, batches = _epoch_inputs(first_batch, spec)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        loss, _ = train_epoch(model, opt, spec, batches, **targets)
        results.append((loss, torch.cat([p.detach().flatten() for p in model.parameters()]) - before))
    (loss_fly, step_fly), (loss_cached, step_cached) = results
    torch.testing.assert_close(loss_cached, loss_fly, rtol=1e-4, atol=0)
    assert (step_cached - step_fly).norm() <= 1e-3 * step_fly.norm()  # the same update, up to rounding


def test_compile_option_trains_and_saves_plain_weights(small, tmp_path, monkeypatch):
    # The plumbing only: the eager backend skips code generation, which takes minutes on 2 cores.
    real_compile = torch.compile
    compiled = []
    def eager_compile(module, **kwargs):
        compiled.append(type(module).__name__)
        return real_compile(module, backend="eager")
    monkeypatch.setattr(torch, "compile", eager_compile)
    r = Recipe(epochs=1, batch_size=4, lr=0.05)
    t = TeacherSpec(recipe=r, seed=0)
    run = get_run(StudentSpec(recipe=r, teachers=(t,)), small, RunCache(tmp_path), device="cpu",
                  progress=False, compile=True)
    assert compiled == ["PreResNet", "Teacher", "PreResNet"]  # teacher run; student's teacher, student
    assert run.info["compile"] is True
    assert all(not k.startswith("_orig_mod") for k in run.state_dict())
    with pytest.raises(ValueError, match="compile must be True or False"):
        get_run(t, small, RunCache(tmp_path), device="cpu", compile="yes")


@needs_cuda
def test_cuda_epoch_has_no_host_synchronisation(synthetic):
    device = torch.device("cuda")
    spec = StudentSpec(recipe=Recipe(epochs=1, batch_size=20, lr=0.05, mixup=True), teachers=(TeacherSpec(recipe=R),))
    teacher = Teacher([initial_model(spec.teachers[0]).to(device, memory_format=torch.channels_last)])
    model = initial_model(spec).to(device, memory_format=torch.channels_last)
    opt = make_optimizer(model, spec.recipe)
    data = TrainSet(synthetic.train, device)
    train_epoch(model, opt, spec, data.epoch(0, 20), teacher=teacher, precision="bf16")  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_epoch(model, opt, spec, data.epoch(1, 20), teacher=teacher, precision="bf16")
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_cuda_bf16_autocast_keeps_norm_layers_in_fp32(norm):
    device = torch.device("cuda")
    model = initial_model(TeacherSpec(recipe=R, norm=norm)).to(device, memory_format=torch.channels_last)
    seen = []
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            m.register_forward_hook(lambda mod, i, o: seen.append((mod.weight.dtype, o.dtype)))
    with autocast(device, "bf16"):
        out = model(torch.randn(8, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.bfloat16
    assert all(w == torch.float32 for w, _ in seen)  # parameters and statistics stay fp32
    if norm == "layer":
        assert all(o == torch.float32 for _, o in seen)  # group_norm is on autocast's fp32 list


def test_teachers_store_train_logits_and_students_reuse_them(synthetic, tmp_path, monkeypatch):
    """A student's final train/augmented-train fidelity reads its teachers' stored logits and gives
    the same numbers as running the teachers again."""
    from kdlib import evaluate as ev
    from kdlib.evaluate import final_metrics
    from kdlib.losses import Teacher
    cache = RunCache(tmp_path)
    teachers = (TeacherSpec(recipe=R, seed=0), TeacherSpec(recipe=R, seed=1))
    student = get_run(StudentSpec(recipe=R, teachers=teachers), synthetic, cache, device="cpu", progress=False)
    runs = [get_run(t, synthetic, cache, device="cpu", progress=False) for t in teachers]
    views = ev.augmented_views(len(synthetic.train))
    for r in runs:
        model = r.load_model()
        torch.testing.assert_close(r.stored_logits("train"), ev.predict(model, synthetic.train.x, "cpu"))
        torch.testing.assert_close(r.stored_logits("train_aug"), ev.predict(model, synthetic.train.x, "cpu", views=views))
    assert student.stored_logits("train") is None  # students store test logits, and labels on train
    for split, x, v in (("train", synthetic.train.x, None), ("train_aug", synthetic.train.x, views)):
        assert torch.equal(student.predictions(split), ev.predict(student.load_model(), x, "cpu", views=v).argmax(1))
        assert torch.equal(runs[0].predictions(split), runs[0].stored_logits(split).argmax(1))
    assert torch.equal(student.predictions("test"), student.test_logits().argmax(1))

    teacher = Teacher([r.load_model() for r in runs])
    model = initial_model(student.spec)
    model.load_state_dict(student.state_dict())
    computed, _ = final_metrics(model, teacher, synthetic, torch.device("cpu"), student.history[-1]["train_loss"])
    real_predict = ev.predict

    def predict(net, *a, **k):
        assert net is not teacher, "the teacher ran again although its runs stored its logits"
        return real_predict(net, *a, **k)
    monkeypatch.setattr(ev, "predict", predict)
    reused, _ = final_metrics(model, teacher, synthetic, torch.device("cpu"), student.history[-1]["train_loss"],
                              teacher_runs=runs)
    assert reused.keys() == computed.keys()
    for key in computed:
        assert reused[key] == pytest.approx(computed[key], rel=1e-5, abs=1e-6), key
    assert reused == pytest.approx(student.metrics, rel=1e-5, abs=1e-6)


def test_the_head_has_one_output_per_class_of_the_data(tmp_path):
    """A dataset of the first K classes trains K-way networks, which load back and distil."""
    full = synthetic_dataset()
    five = kdata.Dataset(train=full.train, test=full.test, classes=full.classes[:10], fingerprint="ten",
                         spec=kdata.DataSpec(source="synthetic", num_classes=10))
    cache = RunCache(tmp_path)
    teacher = TeacherSpec(recipe=R, seed=0)
    student = get_run(StudentSpec(recipe=R, teachers=(teacher,)), five, cache, device="cpu", progress=False)
    t = cache.load(run_id(teacher, five.cache_key()))
    assert t.test_logits().shape == (50, 10) and student.test_logits().shape == (50, 10)
    assert t.load_model().fc.out_features == 10 and student.state_dict()["fc.weight"].shape == (10, 64)
