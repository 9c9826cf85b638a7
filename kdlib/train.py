"""The training loop: one run, from its key to its files in the run cache (protocol §3-5).

`train(key, dataset, cache, teacher_runs, options)` trains the teacher or student that `key`
(kdlib.identity.RunKey) names, checkpointing at the end of every epoch: an interrupted run resumes
from its last checkpoint and ends with the same result. Which runs to train, in what order and
under which lock is kdlib.execute's business (`get_run`, `run_all`); what the final evaluation measures
is kdlib.evaluate's; the loss is kdlib.losses.objective.

Where the speed comes from (docs/speed.md has the measured figures):
- the training set lives on the training device as padded uint8 (N, 3, 40, 40) (`TrainSet`); a
  batch is one gather of crop/flip views (data.apply_views): no per-image PIL work, no DataLoader;
- NHWC (channels_last) activations and weights;
- students read their teachers' logits from the exact logit cache when their key says so
  (kdlib.logit_cache) instead of running every teacher on every batch;
- bf16 autocast where the key says so (kdlib.device: "auto" is bf16 where the hardware has it);
- on CUDA: cuDNN autotuning, and nothing inside an epoch waits for the device (losses and counts
  accumulate there; one read per epoch);
- teachers store their train-set logits, so students' final metrics do not run them again;
- torch.compile of the training forward passes, opt-in (TrainOptions.compile).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

import kdlib
from kdlib import data as kdata
from kdlib import evaluate as ev
from kdlib import logit_cache as lcache
from kdlib.cache import Run, RunCache
from kdlib.config import Recipe, Spec, StudentSpec, stable_seed
from kdlib.device import CHANNELS_LAST, autocast, backend_flags
from kdlib.files import CorruptFileError, load_tensors, save_tensors
from kdlib.identity import RunKey
from kdlib.losses import Teacher, objective
from kdlib.models import build_model
from kdlib.progress import Progress


@dataclass(frozen=True)
class TrainOptions:
    """How a run trains, beyond what its key fixes: none of it changes its results' arithmetic."""

    device: torch.device          # where it trains (resolved; kdlib.device.resolve_device)
    progress: bool = True         # show an epoch bar (kdlib.progress)
    compile: bool = False         # torch.compile the training forward passes (a minute or so to compile)


# ---------------------------------------------------------------------------------------------
# Batches

class TrainSet:
    """The training images on the training device, padded once, and their labels (protocol §1).

    memory_format: of the batches' images; channels_last (NHWC) is 1.3-1.5x faster than NCHW on
    2 CPU cores and what tensor cores want (the benchmark's "kdlib NCHW" row measures the other).
    """

    def __init__(self, split: kdata.Split, device: torch.device | str,
                 memory_format: torch.memory_format = CHANNELS_LAST):
        self.device = torch.device(device)
        self.padded = kdata.pad(split.x.to(self.device))  # (N, 3, 40, 40) uint8; a view is a gather from it
        self.labels = split.y.to(self.device)             # (N,) int64
        self.memory_format = memory_format

    def __len__(self) -> int:
        return len(self.labels)

    def epoch(self, seed: int, batch_size: int, steps: int | None = None) -> "Epoch":
        """An epoch's batches: a permutation and a crop/flip view per image, from a generator seeded
        by `seed` (so a resumed epoch replays exactly what an interrupted one would have done).

        steps: default N // batch_size (the last partial batch dropped); fewer, or more (the
        permutation repeats), for benchmarks that time a number of steps.
        """
        if batch_size > len(self):
            raise ValueError(f"batch_size ({batch_size}) is larger than the training set ({len(self)} images)")
        g = torch.Generator(device=self.device).manual_seed(seed)
        perm = torch.randperm(len(self), generator=g, device=self.device)
        views = kdata.random_views(len(self), g, self.device)
        steps = len(self) // batch_size if steps is None else steps
        if steps * batch_size > len(perm):
            perm = perm.repeat(-(-steps * batch_size // len(perm)))
        return Epoch(self, g, perm, views, batch_size, steps)


@dataclass(frozen=True, eq=False)
class Batch:
    x: torch.Tensor      # (B, 3, 32, 32) float in [-1, 1], channels_last: the augmented images
    y: torch.Tensor      # (B,) labels
    idx: torch.Tensor    # (B,) image indices into the training set
    views: torch.Tensor  # (B,) view ids in [0, 162)


@dataclass(frozen=True, eq=False)
class Epoch:
    """One epoch's full batches, in order; the last partial batch is dropped."""

    data: TrainSet
    generator: torch.Generator  # the epoch's generator: MixUp draws from it after the views
    perm: torch.Tensor          # (N,) the order of the images
    views: torch.Tensor         # (N,) the view of each image (indexed by image, not by position)
    batch_size: int
    steps: int                  # batches, each of batch_size images

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        bs, fmt = self.batch_size, self.data.memory_format
        for step in range(self.steps):
            idx = self.perm[step * bs:(step + 1) * bs]
            v = self.views[idx]
            x = kdata.model_input(kdata.apply_views(self.data.padded[idx], v), fmt)
            yield Batch(x, self.data.labels[idx], idx, v)


# ---------------------------------------------------------------------------------------------
# Models and optimisers

def initial_model(spec: Spec, num_classes: int = kdata.NUM_CLASSES) -> nn.Module:
    """The untrained network of a teacher, or a student's random initialisation, with a
    `num_classes`-way head (the data's classes, `Dataset.num_classes`)."""
    return build_model(spec.norm, stable_seed(spec.kind, spec.seed, "init"), num_classes, spec.depth)


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float | None = None) -> torch.optim.Optimizer:
    """The recipe's optimiser over the model's parameters, at `lr` (default the recipe's)."""
    lr = recipe.lr if lr is None else lr
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)


def interpolate_state(teacher: dict, random: dict, lam: float) -> dict:
    """lam * teacher + (1 - lam) * random over every parameter and buffer (protocol §6 E3).

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
def refresh_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recompute BatchNorm running statistics with one train-mode pass over `batches` (model inputs).

    Interpolated weights invalidate the interpolated statistics (E3, and the straight line between two
    networks, kdlib.landscape); momentum=None makes the statistics an exact average over the pass.
    No parameter changes; the model is left in train mode. Moot for LayerNorm.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum


def augmented_batches(data: TrainSet, batch_size: int, seed: int,
                      memory_format: torch.memory_format = torch.contiguous_format) -> Iterator[torch.Tensor]:
    """Every training image once, in one seeded random crop/flip each, as model inputs in batches (the
    last one partial): what E3's BatchNorm refresh reads."""
    epoch = data.epoch(seed, batch_size)
    for i in range(0, len(data), batch_size):
        idx = epoch.perm[i:i + batch_size]
        yield kdata.model_input(kdata.apply_views(data.padded[idx], epoch.views[idx]), memory_format)


def init_student(spec: StudentSpec, teacher_runs: list[Run], data: TrainSet,
                 num_classes: int = kdata.NUM_CLASSES) -> nn.Module:
    """A student's initial network (protocol §6 E3, E4): random, the teacher's own initial weights, or
    interpolated towards the trained teacher (with BatchNorm statistics refreshed)."""
    model = initial_model(spec, num_classes).to(data.device)
    if spec.init == "teacher_init":
        model.load_state_dict(initial_model(spec.teachers[0], num_classes).state_dict())
    elif spec.init == "interpolate":
        trained = teacher_runs[0].state_dict(map_location=data.device)
        model.load_state_dict(interpolate_state(trained, model.state_dict(), spec.lam))
        # the model is still NCHW here (train converts it afterwards): NCHW inputs too
        refresh_batchnorm(model, augmented_batches(data, spec.recipe.batch_size,
                                                   stable_seed("student", spec.seed, "bn-refresh")))
    return model


# ---------------------------------------------------------------------------------------------
# One epoch

def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, spec: Spec, batches: Epoch, *,
                teacher: nn.Module | None = None, cached_teacher: lcache.LogitCache | None = None,
                precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step per batch of `batches` on `objective`; returns (sum of the step losses,
    correct in-loop predictions) as device tensors.

    A student's soft targets come from `cached_teacher` (the teacher's logits read from the logit
    cache, kdlib.logit_cache) when given, else from `teacher` on the fly, on
    exactly the (augmented or mixed) images it sees. Nothing in here waits for the device (no
    .item(), no branching on tensor values), so on CUDA the host queues the whole epoch ahead of the
    GPU.
    """
    if cached_teacher is not None and spec.recipe.mixup:
        raise ValueError("a logit cache cannot serve MixUp batches (mixed images are not cached views)")
    device = batches.data.device
    amp = autocast(device, precision)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for b in batches:
        x, mix = b.x, None
        if spec.recipe.mixup:
            x, pair, lam = kdata.mixup(x, batches.generator, keep_on_device=True)
            mix = (pair, lam)
        with amp:
            logits = model(x)  # (B, C)
            if cached_teacher is not None:
                target = cached_teacher.gather(b.idx, b.views)  # (B, C) teacher log-probabilities on exactly x
            else:
                target = teacher(x) if teacher is not None else None
        loss = objective(spec, logits, b.y, target, mix)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
        correct += (logits.argmax(dim=1) == b.y).sum()
    return loss_sum, correct


# ---------------------------------------------------------------------------------------------
# A whole run

@dataclass
class _Targets:
    """What a student imitates: its (ensemble) teacher, its test logits, and its logit cache if any."""

    teacher: Teacher | None = None
    forward: nn.Module | None = None   # the teacher as training calls it (compiled when asked)
    test: torch.Tensor | None = None   # fp32 test logits
    cache: lcache.LogitCache | None = None
    cache_info: dict | None = None


def _targets(key: RunKey, teacher_runs: list[Run], data: TrainSet, test_x, cache: RunCache,
             options: TrainOptions) -> _Targets:
    if not isinstance(key.spec, StudentSpec):
        return _Targets()
    device = options.device
    teacher = Teacher([r.load_model(device).to(memory_format=CHANNELS_LAST) for r in teacher_runs])
    out = _Targets(teacher=teacher, test=ev.teacher_logits(teacher, teacher_runs, "test", test_x, device))
    if key.cached_logits:
        out.cache, out.cache_info = lcache.load_or_build(
            teacher, [r.weights_sha256 for r in teacher_runs], data.padded, lcache.cache_folder(cache.root),
            key.precision, context=autocast(device, key.precision), progress=options.progress)
    else:
        out.forward = torch.compile(teacher) if options.compile else teacher
    return out


def _checkpoint(key: RunKey, path, device: torch.device) -> dict | None:
    """The run's last checkpoint, if it has one that passes its checksum and is this run's (a damaged
    one, or one whose recorded key is another run's, is dropped with a warning). Resuming on another
    device than the one that wrote it changes the data order from there on (each device type has its
    own generators): allowed, with a warning, and recorded."""
    if not path.exists():
        return None
    try:
        state = load_tensors(path, map_location=device)
    except CorruptFileError as e:
        warnings.warn(f"run {key.id}: ignoring a damaged checkpoint and starting over ({e})")
        return None
    if state.get("key", key.payload()) != key.payload():  # checkpoints before the key was stored: trusted
        warnings.warn(f"run {key.id}: ignoring a checkpoint written for another run and starting over")
        return None
    last = state.get("devices", [{}])[-1]
    if last.get("device") not in (None, device.type) or last.get("torch") not in (None, str(torch.__version__)):
        warnings.warn(f"run {key.id}: resuming on {device.type} (torch {torch.__version__}) at epoch "
                      f"{state['epoch'] + 1} a run trained on {last.get('device')} (torch {last.get('torch')}): the "
                      "data order from here on follows this device's generators; info['devices'] records both")
    return state


@dataclass
class _TrainingState:
    """What a run has done so far, as its checkpoint carries it: the epochs trained, their history,
    the seconds they took, the devices and the epochs it was resumed after."""

    epoch: int
    history: list[dict]
    seconds: float = 0.0
    devices: list[dict] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)

    @classmethod
    def resumed(cls, state: dict) -> "_TrainingState":
        return cls(state["epoch"], state["history"], state["seconds"], state.get("devices", []),
                   [*state.get("resumes", []), state["epoch"]])

    def on(self, device: torch.device) -> None:
        """Record that training goes on on `device` (a new entry when it differs from the last)."""
        here = {"from_epoch": self.epoch + 1, "device": device.type, "torch": str(torch.__version__)}
        same = {k: v for k, v in here.items() if k != "from_epoch"}
        if not self.devices or {k: v for k, v in self.devices[-1].items() if k != "from_epoch"} != same:
            self.devices.append(here)

    def checkpoint(self, key: RunKey, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
        return {"key": key.payload(), "epoch": self.epoch, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "history": self.history, "seconds": self.seconds,
                "devices": self.devices, "resumes": self.resumes}


def train(key: RunKey, dataset: kdata.Dataset, cache: RunCache, teacher_runs: list[Run], options: TrainOptions) -> Run:
    """Train the run `key` names (its teachers' finished runs given), resuming from its checkpoint if
    it has one, and write it to `cache`. The caller holds the run's lock (kdlib.execute)."""
    spec, recipe, device = key.spec, key.spec.recipe, options.device
    with backend_flags(device, key.precision):
        data = TrainSet(dataset.train, device)
        test_x, test_y = dataset.test.x.to(device), dataset.test.y.to(device)
        targets = _targets(key, teacher_runs, data, test_x, cache, options)
        ckpt_path = cache.folder(key.id) / "checkpoint.pt"
        state = _checkpoint(key, ckpt_path, device)
        lr0 = spec.start_lr if isinstance(spec, StudentSpec) else recipe.lr
        if state is None:  # fresh weights: a student's start (protocol §6 E3, E4), or a teacher's
            model = (init_student(spec, teacher_runs, data, dataset.num_classes) if isinstance(spec, StudentSpec)
                     else initial_model(spec, dataset.num_classes).to(device))
        else:  # the checkpoint's weights
            model = initial_model(spec, dataset.num_classes).to(device)
            model.load_state_dict(state["model"])
        model = model.to(memory_format=CHANNELS_LAST)
        opt = make_optimizer(model, recipe, lr0)
        if state is None:
            done = _TrainingState(0, [{"epoch": 0, "lr": lr0, **ev.epoch_metrics(model, test_x, test_y, targets.test, device)}])
        else:
            opt.load_state_dict(state["optimizer"])
            done = _TrainingState.resumed(state)
        done.on(device)
        model_fwd = torch.compile(model) if options.compile else model  # shares the model's parameters

        bar = Progress(recipe.epochs, f"{spec.kind} {key.id[:8]}", unit="epoch", initial=done.epoch,
                       enabled=options.progress)
        for epoch in range(done.epoch, recipe.epochs):
            t0 = time.perf_counter()
            lr = recipe.lr_at(epoch, lr0)
            for group in opt.param_groups:
                group["lr"] = lr
            batches = data.epoch(stable_seed(spec.kind, spec.seed, "epoch", epoch), recipe.batch_size)
            loss_sum, correct = train_epoch(model_fwd, opt, spec, batches, teacher=targets.forward,
                                            cached_teacher=targets.cache, precision=key.precision)
            train_loss = (loss_sum / batches.steps).item()  # the epoch's one wait for the device
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"run {key.id} ({spec.kind}): the training loss became {train_loss} "
                                         f"in epoch {epoch + 1}; lower the lr or check the inputs")
            entry = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                     "train_acc_inloop": correct.item() / (batches.steps * recipe.batch_size)}
            if (epoch + 1) % recipe.eval_every == 0 and epoch + 1 < recipe.epochs:  # the last: below
                entry.update(ev.epoch_metrics(model, test_x, test_y, targets.test, device))
            done.history.append(entry)
            done.epoch, done.seconds = epoch + 1, done.seconds + time.perf_counter() - t0
            save_tensors(ckpt_path, done.checkpoint(key, model, opt))
            bar.update(1, **{k: v for k, v in entry.items() if k in ("train_loss", "test_acc", "test_agreement")})
        bar.close()

        t0 = time.perf_counter()
        metrics, outputs = ev.final_metrics(model, targets.teacher, dataset, device, done.history[-1]["train_loss"],
                                            teacher_test=targets.test, teacher_runs=teacher_runs)
        # the last entry's test metrics are the final ones: the same fp32 quantities of the same weights
        history = [*done.history[:-1], {**done.history[-1], **ev.history_part(metrics)}]
    info = {"train_seconds": round(done.seconds, 2), "eval_seconds": round(time.perf_counter() - t0, 2),
            "device": str(device), "devices": done.devices, "resumed_after_epochs": done.resumes,
            "precision": key.precision, "compile": options.compile,
            "channels_last": True,
            "teacher_logits": None if targets.teacher is None else ("cache" if key.cached_logits else "on the fly"),
            "logit_cache": targets.cache_info, "torch": torch.__version__, "kdlib": kdlib.__version__,
            "train_images": len(data), "test_images": len(test_y), "data": dataset.describe()}
    return cache.write_result(key, model.state_dict(), outputs, history, metrics, info)
