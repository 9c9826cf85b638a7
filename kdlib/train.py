"""Training teachers and distilling students, with the run cache in front (protocol §3-5).

`get_run(spec, dataset)` is the one entry point: it returns the cached run for that spec and
data, or trains it (first training any teachers it needs). Training checkpoints every epoch;
an interrupted run resumes from its last checkpoint and ends with the same result.

Where the speed comes from (README "Speed" has the measured figures):
- the training set lives on the training device as padded uint8 (N, 3, 40, 40); a batch is one
  gather of crop/flip views (data.apply_views): no per-image PIL work, no DataLoader;
- NHWC (channels_last) activations and weights;
- students read their teachers' logits from the exact logit cache when it pays (kdlib.logit_cache)
  instead of running every teacher on every batch;
- bf16 autocast where the hardware has it natively (precision="auto": CUDA, and CPUs with
  AVX512-BF16/AMX);
- on CUDA: cuDNN autotuning, and nothing inside an epoch waits for the device (losses and counts
  accumulate there; one read per epoch);
- teachers store their train-set logits, so students' final metrics do not run them again;
- torch.compile of the training forward passes, opt-in (compile=True).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

import kdlib
from kdlib import data as kdata
from kdlib import evaluate as ev
from kdlib import logit_cache as lcache
from kdlib.cache import CorruptFileError, Run, RunCache, load_tensors, run_id, save_tensors
from kdlib.config import Recipe, Spec, StudentSpec, TeacherSpec, stable_seed
from kdlib.losses import Teacher, ensemble_logits, kd_loss
from kdlib.models import build_model
from kdlib.progress import Progress


# NHWC activations and weights: 1.3-1.5x faster training steps than NCHW on 2 CPU cores (oneDNN;
# the "kdlib NCHW" rows of benchmarks/bench_train.py, README "Speed") and the layout tensor cores
# want on CUDA; the results agree with NCHW up to float rounding.
CHANNELS_LAST = torch.channels_last
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA when present, else CPU), or an explicit torch device string."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return resolved


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX-BF16, read from
    /proc/cpuinfo). Elsewhere oneDNN emulates bf16, slower than fp32, so "auto" keeps fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto', 'fp32' or 'bf16'. 'auto' is bf16 autocast where the hardware runs it natively (CUDA;
    CPUs with AVX512-BF16/AMX, where training steps run ~1.9x faster than fp32 on 2 cores) and
    fp32 elsewhere. Either way the run's id records the precision (`run_variant`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The forward-pass context of a run: bf16 autocast, or a disabled one for fp32 (one code path).

    Under CUDA autocast, convolutions and the linear layer run in bf16; group_norm (the LayerNorm
    model) is on autocast's fp32 list, and BatchNorm keeps fp32 weights, running statistics and
    accumulation while reading and writing bf16. CPU autocast leaves group_norm on bf16 inputs;
    its kernel accumulates the statistics in fp32, so outputs differ from fp32 by bf16 rounding
    (checked: 0.025 at most on unit-scale outputs). Losses are computed in fp32 (kd_loss casts).
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def backend_flags(device: torch.device, precision: str):
    """cuDNN settings for a run, restored afterwards; nothing on CPU.

    Autotuning (cudnn.benchmark): every training batch has the same shape, so the fastest
    convolution algorithms are found once. For precision "fp32", IEEE fp32 convolutions
    instead of PyTorch's default TF32 (10-bit significand), so that "fp32" means fp32 on every
    device, as the run id assumes.
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    conv = getattr(cudnn, "conv", None)
    new_api = conv is not None and hasattr(conv, "fp32_precision")  # torch >= 2.9
    saved = (cudnn.benchmark, conv.fp32_precision if new_api else cudnn.allow_tf32)
    cudnn.benchmark = True
    if precision == "fp32":
        if new_api:
            conv.fp32_precision = "ieee"
        else:
            cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.benchmark = saved[0]
        if new_api:
            conv.fp32_precision = saved[1]
        else:
            cudnn.allow_tf32 = saved[1]


def run_variant(precision: str, cached_logits: bool) -> dict:
    """The numerics of a run that change its arithmetic, beyond spec and data: part of its id.

    bf16 autocast (8-bit significands in every forward pass) and teacher logits rounded to float16
    by the logit cache give results that are statistically equivalent to, but not the same numbers
    as, an fp32 run on the fly: they get their own ids, so a cached result never silently changes
    precision. What only reorders fp32 arithmetic (device, kernel choice, channels_last,
    torch.compile) stays out of the id, as the device always has; it is recorded in the run's info.
    Empty for the default fp32 run, whose id is unchanged.
    """
    variant = {}
    if precision != "fp32":
        variant["precision"] = precision
    if cached_logits:
        variant["teacher_logits"] = f"cache-{str(lcache.STORAGE_DTYPE).removeprefix('torch.')}"
    return variant


def _uses_logit_cache(spec: Spec, logit_cache: str) -> bool:
    return isinstance(spec, StudentSpec) and lcache.use_logit_cache(logit_cache, spec.recipe.epochs,
                                                                    spec.recipe.mixup)


def _identity(spec: Spec, dataset: kdata.Dataset, device: torch.device, precision: str,
              logit_cache: str) -> tuple[str, str, bool, dict]:
    """(run id, resolved precision, whether the logit cache is used, variant) of `spec` on `device`."""
    precision = resolve_precision(precision, device)
    cached_logits = _uses_logit_cache(spec, logit_cache)
    variant = run_variant(precision, cached_logits)
    return run_id(spec, dataset.cache_key(), variant), precision, cached_logits, variant


def run_key(spec: Spec, dataset: kdata.Dataset, device: torch.device, precision: str = "auto",
            logit_cache: str = "auto") -> str:
    """The id `get_run` gives `spec` when it trains on `device` (which need not exist here).

    get_run computes its ids with the same function; the Ray executor uses this to predict the id
    a remote worker will produce.
    """
    return _identity(spec, dataset, device, precision, logit_cache)[0]


def initial_model(spec: Spec, num_classes: int = kdata.NUM_CLASSES) -> nn.Module:
    """The untrained network of a teacher, or a student's random initialisation, with a
    `num_classes`-way head (the data's classes, `Dataset.num_classes`)."""
    return build_model(spec.norm, stable_seed(spec.kind, spec.seed, "init"), num_classes)


def get_run(spec: Spec, dataset: kdata.Dataset, cache: RunCache | None = None,
            device: str | torch.device = "auto", progress: bool = True, *,
            precision: str = "auto", logit_cache: str = "auto", compile: bool = False) -> Run:
    """The finished run for `spec` on `dataset`: from the cache, else trained now.

    A student's teachers are fetched (or trained, with the same device, precision and compile)
    first. A file lock per run makes a second process asking for the same run wait for the first
    and then reuse its result.

    precision: "auto" (bf16 autocast where the hardware has it natively, `resolve_precision`; fp32
        elsewhere), "fp32" or "bf16". A bf16 run has its own id (`run_variant`), so it never stands
        in for an fp32 one.
    logit_cache: students only: "auto" (the exact teacher-logit cache when it is exact and pays,
        `logit_cache.use_logit_cache`), "on" or "off". Cached logits are float16: such a run has its
        own id too.
    compile: torch.compile the training forward passes (opt-in; compiling takes a minute or so).
    """
    if not isinstance(spec, (TeacherSpec, StudentSpec)):
        raise ValueError(f"spec must be a TeacherSpec or StudentSpec, got {type(spec).__name__}")
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be True or False, got {compile!r}")
    device = resolve_device(device)
    lcache.check_mode(logit_cache)
    rid, precision, cached_logits, variant = _identity(spec, dataset, device, precision, logit_cache)
    cache = cache if cache is not None else RunCache()
    run = cache.load(rid)
    if run is not None:
        return run
    teacher_runs = [get_run(t, dataset, cache, device, progress, precision=precision, compile=compile)
                    for t in getattr(spec, "teachers", ())]
    with cache.lock(rid):
        run = cache.load(rid)  # finished by another process while we waited
        if run is not None:
            return run
        with backend_flags(device, precision):
            return _train(spec, rid, variant, dataset, cache, device, progress, teacher_runs,
                          precision=precision, cached_logits=cached_logits, compile=compile)


# ---------------------------------------------------------------------------------------------
# Student initialisation (protocol §6 E3, E4)

def interpolate_state(teacher: dict, random: dict, lam: float) -> dict:
    """lam * teacher + (1 - lam) * random over every parameter and buffer.

    Integer buffers (BatchNorm's num_batches_tracked) are interpolated and rounded.
    """
    out = {}
    for k, t in teacher.items():
        r = random[k].to(t.device)
        if t.is_floating_point():
            out[k] = lam * t + (1 - lam) * r
        else:
            out[k] = torch.round(lam * t.double() + (1 - lam) * r.double()).to(t.dtype)
    return out


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, padded: torch.Tensor, batch_size: int, seed: int) -> None:
    """Recompute BatchNorm running statistics with one train-mode pass over augmented data.

    Interpolated weights invalidate the interpolated statistics; momentum=None makes the
    statistics an exact average over the pass. No parameter changes. Moot for LayerNorm.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    device = padded.device
    g = torch.Generator(device=device).manual_seed(seed)
    n = len(padded)
    perm = torch.randperm(n, generator=g, device=device)
    views = kdata.random_views(n, g, device)
    model.train()
    for i in range(0, n, batch_size):
        idx = perm[i:i + batch_size]
        model(kdata.normalize(kdata.apply_views(padded[idx], views[idx])))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum


def init_student(spec: StudentSpec, teacher_runs: list[Run], padded: torch.Tensor,
                 device: torch.device, num_classes: int = kdata.NUM_CLASSES) -> nn.Module:
    model = initial_model(spec, num_classes).to(device)
    if spec.init == "teacher_init":
        # E4: the teacher's own initial (untrained) weights, rebuilt from its seed.
        model.load_state_dict(initial_model(spec.teachers[0], num_classes).state_dict())
    elif spec.init == "interpolate":
        trained = teacher_runs[0].state_dict(map_location=device)
        model.load_state_dict(interpolate_state(trained, model.state_dict(), spec.lam))
        refresh_batchnorm(model, padded, spec.recipe.batch_size, stable_seed("student", spec.seed, "bn-refresh"))
    return model


# ---------------------------------------------------------------------------------------------
# The training loop

def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)


def _loss(spec: Spec, logits, y, teacher_logits, mix: tuple | None) -> torch.Tensor:
    """Cross-entropy for teachers; the KD objective for students (protocol §3).

    With MixUp, label terms use both labels weighted by the mixing weight; the soft target is
    the teacher's prediction on the mixed image itself.
    """
    def ce(z):
        if mix is None:
            return F.cross_entropy(z, y)
        pair, lam = mix
        return lam * F.cross_entropy(z, y) + (1 - lam) * F.cross_entropy(z, y[pair])

    if isinstance(spec, TeacherSpec):
        return ce(logits.float())
    soft = kd_loss(logits, teacher_logits, None, tau=spec.tau, alpha=0.0)
    if spec.alpha == 0.0:
        return soft
    return spec.alpha * ce(logits.float()) + (1 - spec.alpha) * soft


def _evaluate_epoch(model, test_x, test_y, teacher_test, device, precision: str) -> dict:
    """A history entry's test metrics, in the run's precision: the history follows training in the
    arithmetic it trains in (bf16: 0.4 s instead of 1.1 s for 2,000 images on 2 CPU cores); the final
    metrics, which every table and claim reads, are fp32 (`final_metrics`)."""
    with autocast(device, precision):
        logits = ev.predict(model, test_x, device)
    entry = {"test_acc": kdlib.metrics.accuracy(logits, test_y), "test_nll": kdlib.metrics.nll(logits, test_y)}
    if teacher_test is not None:
        entry.update(ev.fidelity_metrics(teacher_test, logits, "test"))
    return entry


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, spec: Spec, padded: torch.Tensor,
                labels: torch.Tensor, perm: torch.Tensor, views: torch.Tensor, steps: int,
                generator: torch.Generator, *, teacher: nn.Module | None = None,
                logit_cache: lcache.LogitCache | None = None, precision: str = "fp32",
                memory_format: torch.memory_format = CHANNELS_LAST) -> tuple[torch.Tensor, torch.Tensor]:
    """`steps` optimiser steps on the batches perm[0:B], perm[B:2B], ... (B = spec.recipe.batch_size).

    padded: uint8 (N, 3, 40, 40) training images on the device; labels: int64 (N,); views: int64
    (N,), the epoch's view of each image; generator: the epoch's generator (MixUp draws from it).
    A student's soft targets come from `logit_cache` when given, else from `teacher` on the fly.
    Returns (sum of the step losses, correct in-loop predictions) as device tensors. Nothing in here
    waits for the device (no .item(), no branching on tensor values), so on CUDA the host queues
    the whole epoch ahead of the GPU.
    """
    if logit_cache is not None and spec.recipe.mixup:
        raise ValueError("a logit cache cannot serve MixUp batches (mixed images are not cached views)")
    bs, device = spec.recipe.batch_size, padded.device
    amp = autocast(device, precision)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for step in range(steps):
        idx = perm[step * bs:(step + 1) * bs]  # (B,) image indices
        v = views[idx]  # (B,) view ids in [0, 162)
        x = kdata.normalize(kdata.apply_views(padded[idx], v)).contiguous(memory_format=memory_format)
        y = labels[idx]
        mix = None
        if spec.recipe.mixup:
            x, pair, lam = kdata.mixup(x, generator, keep_on_device=True)
            mix = (pair, lam)
        with amp:
            logits = model(x)  # (B, C)
            target = None  # (B, C) teacher log-probabilities on exactly x
            if logit_cache is not None:
                target = logit_cache.gather(idx, v)
            elif teacher is not None:
                target = teacher(x)
        loss = _loss(spec, logits, y, target, mix)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
        correct += (logits.argmax(dim=1) == y).sum()
    return loss_sum, correct


def _train(spec: Spec, rid: str, variant: dict, dataset: kdata.Dataset, cache: RunCache,
           device: torch.device, progress: bool, teacher_runs: list[Run], *, precision: str,
           cached_logits: bool, compile: bool) -> Run:
    recipe = spec.recipe
    folder = cache.folder(rid)
    ckpt_path = folder / "checkpoint.pt"
    is_student = isinstance(spec, StudentSpec)

    train_x, train_y = dataset.train.x.to(device), dataset.train.y.to(device)
    test_x, test_y = dataset.test.x.to(device), dataset.test.y.to(device)
    padded = kdata.pad(train_x)  # (N, 3, 40, 40) uint8, padded once; crops are gathers from it
    n, bs = len(train_y), recipe.batch_size
    if n < bs:
        raise ValueError(f"batch_size ({bs}) is larger than the training set ({n} images)")
    steps = n // bs  # the last partial batch is dropped: every step sees a full batch

    teacher = teacher_fwd = teacher_test = store = None
    cache_info = None
    if is_student:
        teacher = Teacher([r.load_model(device).to(memory_format=CHANNELS_LAST) for r in teacher_runs])
        teacher_test = teacher_logits(teacher, teacher_runs, "test", test_x, device)
        if cached_logits:
            store, cache_info = lcache.load_or_build(teacher, [r.id for r in teacher_runs], padded, cache,
                                                     precision, context=autocast(device, precision))
        else:
            teacher_fwd = torch.compile(teacher) if compile else teacher

    state = None
    if ckpt_path.exists():
        try:
            state = load_tensors(ckpt_path, map_location=device)
        except CorruptFileError as e:
            warnings.warn(f"run {rid}: ignoring a damaged checkpoint and starting over ({e})")
    lr0 = spec.start_lr if is_student else recipe.lr
    if state is None:
        model = (init_student(spec, teacher_runs, padded, device, dataset.num_classes) if is_student
                 else initial_model(spec, dataset.num_classes).to(device))
        model = model.to(memory_format=CHANNELS_LAST)
        opt = make_optimizer(model, recipe, lr0)
        start, history, seconds = 0, [], 0.0
        history.append({"epoch": 0, "lr": lr0, **_evaluate_epoch(model, test_x, test_y, teacher_test, device,
                                                                   precision)})
    else:
        model = initial_model(spec, dataset.num_classes).to(device, memory_format=CHANNELS_LAST)
        model.load_state_dict(state["model"])
        opt = make_optimizer(model, recipe, lr0)
        opt.load_state_dict(state["optimizer"])
        start, history, seconds = state["epoch"], state["history"], state["seconds"]
    # The compiled module shares the model's parameters; weights are saved from `model`.
    model_fwd = torch.compile(model) if compile else model

    bar = Progress(recipe.epochs, f"{spec.kind} {rid[:8]}", unit="epoch", initial=start, enabled=progress)
    for epoch in range(start, recipe.epochs):
        t0 = time.perf_counter()
        lr = recipe.lr_at(epoch, lr0)
        for group in opt.param_groups:
            group["lr"] = lr
        # Everything random in an epoch comes from a generator seeded by (run, epoch), so a
        # resumed epoch replays exactly what the interrupted one would have done.
        g = torch.Generator(device=device).manual_seed(stable_seed(spec.kind, spec.seed, "epoch", epoch))
        perm = torch.randperm(n, generator=g, device=device)
        views = kdata.random_views(n, g, device)
        loss_sum, correct = train_epoch(model_fwd, opt, spec, padded, train_y, perm, views, steps, g,
                                        teacher=teacher_fwd, logit_cache=store, precision=precision)
        train_loss = (loss_sum / steps).item()  # the epoch's one wait for the device
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"run {rid} ({spec.kind}): the training loss became {train_loss} "
                                     f"in epoch {epoch + 1}; lower the lr or check the inputs")
        entry = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                 "train_acc_inloop": correct.item() / (steps * bs)}
        if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
            entry.update(_evaluate_epoch(model, test_x, test_y, teacher_test, device, precision))
        history.append(entry)
        seconds += time.perf_counter() - t0
        save_tensors(ckpt_path, {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "history": history, "seconds": seconds})
        bar.update(1, **{k: v for k, v in entry.items() if k in ("train_loss", "test_acc", "test_agreement")})
    bar.close()

    t0 = time.perf_counter()
    metrics, logits = final_metrics(model, teacher, dataset, device, history, teacher_test=teacher_test,
                                    teacher_runs=teacher_runs)
    info = {"train_seconds": round(seconds, 2), "eval_seconds": round(time.perf_counter() - t0, 2),
            "device": str(device), "precision": precision, "compile": compile, "channels_last": True,
            "teacher_logits": None if not is_student else ("cache" if cached_logits else "on the fly"),
            "logit_cache": cache_info, "torch": torch.__version__, "kdlib": kdlib.__version__,
            "train_images": n, "test_images": len(test_y), "data": dataset.describe()}
    test_logits = logits.pop("test")
    return cache.write_result(rid, spec, dataset.cache_key(), model.state_dict(), test_logits,
                              history, metrics, info, variant, extra_logits=logits)


def teacher_logits(teacher: Teacher, teacher_runs: Sequence[Run], split: str, x: torch.Tensor,
                   device: torch.device, views: torch.Tensor | None = None) -> torch.Tensor:
    """The teacher's fp32 logits on `split` (images x, with `views` for "train_aug"): the ensemble
    of what its member runs stored (`final_metrics`) when every member has them, else computed."""
    stored = [r.stored_logits(split) for r in teacher_runs]
    if stored and all(s is not None and len(s) == len(x) for s in stored):
        return ensemble_logits(torch.stack(stored).to(device))
    return ev.predict(teacher, x, device, views=views)


def final_metrics(model: nn.Module, teacher: Teacher | None, dataset: kdata.Dataset,
                  device: torch.device, history: list[dict], teacher_test: torch.Tensor | None = None,
                  teacher_runs: Sequence[Run] = ()) -> tuple[dict, dict[str, torch.Tensor]]:
    """The run's final evaluation (protocol §5); all models in eval mode.

    Keys: test_/train_ acc, nll, ece (train = the clean training set); train_loss (last epoch);
    for students also teacher_test_acc/nll/ece, test_agreement/kl, train_agreement/kl (clean
    training set), train_aug_agreement/kl (one fixed random crop+flip per training image, the
    paper's Fig. 5), and with a single teacher `cka`: linear CKA at the three stages on the
    fixed test subset `evaluate.cka_indices`. `teacher_test`: the teacher's test logits when the
    caller has them already (they are not recomputed). Always in fp32, whatever the training precision.

    Returns (metrics, logits by split): "test" for every run; a teacher also returns "train" and
    "train_aug", stored with it so that its students' final metrics read them (`teacher_runs`)
    instead of running every teacher over the training set again; the ensemble of stored member
    logits is the Teacher's own output, ensemble_logits. A student returns its predicted labels
    on those splits instead ("train_pred", "train_aug_pred"; `Run.predictions`).
    """
    train_x, train_y = dataset.train.x, dataset.train.y.to(device)
    test_x, test_y = dataset.test.x, dataset.test.y.to(device)
    views = ev.augmented_views(len(train_x))
    test_logits = ev.predict(model, test_x, device)
    train_logits = ev.predict(model, train_x, device)
    aug_logits = ev.predict(model, train_x, device, views=views)
    out = {**ev.classification_metrics(test_logits, test_y, "test"),
           **ev.classification_metrics(train_logits, train_y, "train"),
           "train_loss": history[-1]["train_loss"]}
    if teacher is None:
        return out, {"test": test_logits, "train": train_logits, "train_aug": aug_logits}

    def teacher_on(split: str, x: torch.Tensor, views: torch.Tensor | None) -> torch.Tensor:
        return teacher_logits(teacher, teacher_runs, split, x, device, views)

    if teacher_test is None:
        teacher_test = teacher_on("test", test_x, None)
    out.update(ev.classification_metrics(teacher_test, test_y, "teacher_test"))
    out.update(ev.fidelity_metrics(teacher_test, test_logits, "test"))
    out.update(ev.fidelity_metrics(teacher_on("train", train_x, None), train_logits, "train"))
    out.update(ev.fidelity_metrics(teacher_on("train_aug", train_x, views), aug_logits, "train_aug"))
    if len(teacher.members) == 1:
        subset = test_x[ev.cka_indices(len(test_x))]
        out["cka"] = ev.cka_by_stage(teacher.members[0], model, subset, device)
        out["cka_examples"] = len(subset)
    # predicted labels on the training set (not the logits: 40 MB a student at the paper scale)
    return out, {"test": test_logits, "train_pred": train_logits.argmax(1).short(),
                 "train_aug_pred": aug_logits.argmax(1).short()}
