"""Training teachers and distilling students, with the run cache in front (SPEC §3-5).

`get_run(spec, dataset)` is the one entry point: it returns the cached run for that spec and
data, or trains it (first training any teachers it needs). Training checkpoints every epoch;
an interrupted run resumes from its last checkpoint and ends with the same result.
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from torch import nn
import torch.nn.functional as F
from tqdm import tqdm

import kdlib
from kdlib import data as kdata
from kdlib import evaluate as ev
from kdlib.cache import CorruptFileError, Run, RunCache, load_tensors, run_id, save_tensors
from kdlib.config import Recipe, Spec, StudentSpec, TeacherSpec, stable_seed
from kdlib.losses import Teacher, kd_loss
from kdlib.models import build_model


# NHWC activations and weights: ~1.35x faster convolutions on CPU (oneDNN) and the layout
# tensor cores want on CUDA; the results agree with NCHW up to float rounding.
CHANNELS_LAST = torch.channels_last


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


def initial_model(spec: Spec) -> nn.Module:
    """The untrained network of a teacher, or a student's random initialisation."""
    return build_model(spec.norm, stable_seed(spec.kind, spec.seed, "init"))


def get_run(spec: Spec, dataset: kdata.Dataset, cache: RunCache | None = None,
            device: str | torch.device = "auto", progress: bool = True) -> Run:
    """The finished run for `spec` on `dataset`: from the cache, else trained now.

    A student's teachers are fetched (or trained) first. A file lock per run makes a second
    process asking for the same run wait for the first and then reuse its result.
    """
    if not isinstance(spec, (TeacherSpec, StudentSpec)):
        raise ValueError(f"spec must be a TeacherSpec or StudentSpec, got {type(spec).__name__}")
    cache = cache if cache is not None else RunCache()
    rid = run_id(spec, dataset.cache_key())
    run = cache.load(rid)
    if run is not None:
        return run
    teacher_runs = [get_run(t, dataset, cache, device, progress) for t in getattr(spec, "teachers", ())]
    with cache.lock(rid):
        run = cache.load(rid)  # finished by another process while we waited
        if run is not None:
            return run
        return _train(spec, rid, dataset, cache, resolve_device(device), progress, teacher_runs)


# ---------------------------------------------------------------------------------------------
# Student initialisation (SPEC §6 E3, E4)

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
                 device: torch.device) -> nn.Module:
    model = initial_model(spec).to(device)
    if spec.init == "teacher_init":
        # E4: the teacher's own initial (untrained) weights, rebuilt from its seed.
        model.load_state_dict(initial_model(spec.teachers[0]).state_dict())
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
    """Cross-entropy for teachers; the KD objective for students (SPEC §3).

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


def _evaluate_epoch(model, test_x, test_y, teacher_test, device) -> dict:
    logits = ev.predict(model, test_x, device)
    entry = {"test_acc": kdlib.metrics.accuracy(logits, test_y), "test_nll": kdlib.metrics.nll(logits, test_y)}
    if teacher_test is not None:
        entry.update(ev.fidelity_metrics(teacher_test, logits, "test"))
    return entry


def _train(spec: Spec, rid: str, dataset: kdata.Dataset, cache: RunCache, device: torch.device,
           progress: bool, teacher_runs: list[Run]) -> Run:
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

    teacher = None
    teacher_test = None
    if is_student:
        teacher = Teacher([r.load_model(device).to(memory_format=CHANNELS_LAST) for r in teacher_runs])
        teacher_test = ev.predict(teacher, test_x, device)

    state = None
    if ckpt_path.exists():
        try:
            state = load_tensors(ckpt_path, map_location=device)
        except CorruptFileError as e:
            warnings.warn(f"run {rid}: ignoring a damaged checkpoint and starting over ({e})")
    lr0 = spec.start_lr if is_student else recipe.lr
    if state is None:
        model = init_student(spec, teacher_runs, padded, device) if is_student else initial_model(spec).to(device)
        model = model.to(memory_format=CHANNELS_LAST)
        opt = make_optimizer(model, recipe, lr0)
        start, history, seconds = 0, [], 0.0
        history.append({"epoch": 0, "lr": lr0, **_evaluate_epoch(model, test_x, test_y, teacher_test, device)})
    else:
        model = initial_model(spec).to(device, memory_format=CHANNELS_LAST)
        model.load_state_dict(state["model"])
        opt = make_optimizer(model, recipe, lr0)
        opt.load_state_dict(state["optimizer"])
        start, history, seconds = state["epoch"], state["history"], state["seconds"]

    bar = tqdm(range(start, recipe.epochs), initial=start, total=recipe.epochs, disable=not progress,
               desc=f"{spec.kind} {rid[:8]}", unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        t0 = time.perf_counter()
        lr = recipe.lr_at(epoch, lr0)
        for group in opt.param_groups:
            group["lr"] = lr
        # Everything random in an epoch comes from a generator seeded by (run, epoch), so a
        # resumed epoch replays exactly what the interrupted one would have done.
        g = torch.Generator(device=device).manual_seed(stable_seed(spec.kind, spec.seed, "epoch", epoch))
        perm = torch.randperm(n, generator=g, device=device)
        views = kdata.random_views(n, g, device)
        model.train()
        # Accumulated on the device: no host synchronisation inside the epoch.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for step in range(steps):
            idx = perm[step * bs:(step + 1) * bs]
            x = kdata.normalize(kdata.apply_views(padded[idx], views[idx]))  # (B, 3, 32, 32)
            x = x.contiguous(memory_format=torch.channels_last)
            y = train_y[idx]
            mix = None
            if recipe.mixup:
                x, pair, lam = kdata.mixup(x, g)
                mix = (pair, lam)
            logits = model(x)
            loss = _loss(spec, logits, y, teacher(x) if teacher is not None else None, mix)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            correct += (logits.argmax(dim=1) == y).sum()
        train_loss = (loss_sum / steps).item()
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"run {rid} ({spec.kind}): the training loss became {train_loss} "
                                     f"in epoch {epoch + 1}; lower the lr or check the inputs")
        entry = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                 "train_acc_inloop": correct.item() / (steps * bs)}
        if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
            entry.update(_evaluate_epoch(model, test_x, test_y, teacher_test, device))
        history.append(entry)
        seconds += time.perf_counter() - t0
        save_tensors(ckpt_path, {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "history": history, "seconds": seconds})
        bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k in ("train_loss", "test_acc", "test_agreement")})
    bar.close()

    t0 = time.perf_counter()
    metrics, test_logits = final_metrics(model, teacher, dataset, device, history)
    info = {"train_seconds": round(seconds, 2), "eval_seconds": round(time.perf_counter() - t0, 2),
            "device": str(device), "torch": torch.__version__, "kdlib": kdlib.__version__,
            "train_images": n, "test_images": len(test_y), "data": dataset.describe()}
    return cache.write_result(rid, spec, dataset.cache_key(), model.state_dict(), test_logits,
                              history, metrics, info)


def final_metrics(model: nn.Module, teacher: Teacher | None, dataset: kdata.Dataset,
                  device: torch.device, history: list[dict]) -> tuple[dict, torch.Tensor]:
    """The run's final evaluation (SPEC §5); all models in eval mode.

    Keys: test_/train_ acc, nll, ece (train = the clean training set); train_loss (last epoch);
    for students also teacher_test_acc/nll/ece, test_agreement/kl, train_agreement/kl (clean
    training set), train_aug_agreement/kl (one fixed random crop+flip per training image, the
    paper's Fig. 5), and with a single teacher `cka`: linear CKA at the three stages on the
    fixed test subset `evaluate.cka_indices`.
    """
    train_x, train_y = dataset.train.x, dataset.train.y.to(device)
    test_x, test_y = dataset.test.x, dataset.test.y.to(device)
    test_logits = ev.predict(model, test_x, device)
    train_logits = ev.predict(model, train_x, device)
    out = {**ev.classification_metrics(test_logits, test_y, "test"),
           **ev.classification_metrics(train_logits, train_y, "train"),
           "train_loss": history[-1]["train_loss"]}
    if teacher is not None:
        teacher_test = ev.predict(teacher, test_x, device)
        views = ev.augmented_views(len(train_x))
        out.update(ev.classification_metrics(teacher_test, test_y, "teacher_test"))
        out.update(ev.fidelity_metrics(teacher_test, test_logits, "test"))
        out.update(ev.fidelity_metrics(ev.predict(teacher, train_x, device), train_logits, "train"))
        out.update(ev.fidelity_metrics(ev.predict(teacher, train_x, device, views=views),
                                       ev.predict(model, train_x, device, views=views), "train_aug"))
        if len(teacher.members) == 1:
            subset = test_x[ev.cka_indices(len(test_x))]
            out["cka"] = ev.cka_by_stage(teacher.members[0], model, subset, device)
            out["cka_examples"] = len(subset)
    return out, test_logits
