"""Training throughput: the original code's naive pipeline against kdlib's, side by side.

    python -m benchmarks.bench_train [--device auto] [--data PATH] [--json PATH] [--rounds 3] ...

Three tasks at the paper's batch sizes (protocol §4: 256 for teachers, 128 for students), on the same
PreResNet-20 in fp32:
- teacher training (cross-entropy), 1-teacher distillation and 5-teacher distillation (tau 4);
- "naive": what the original gnosis code did. A torchvision CIFAR-style dataset of PIL images with
  RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor and Normalize(0.5, 0.5) through a
  torch DataLoader (num_workers=0: the original config sets none, so DataLoader's default),
  NCHW tensors, every teacher run on every batch, and the loop's per-step host reads (loss,
  correct and agreement counts via .item());
- "kdlib": `kdlib.train.train_epoch`, the loop `get_run` trains with: the padded uint8 training
  set on the device, crop/flip views by one gather, channels_last, teachers on the fly or the
  logit cache, no host reads inside the loop. "kdlib NCHW" is the same without channels_last.

Method (noisy shared machines): every configuration runs blocks of --steps timed steps after
--warmup untimed ones (oneDNN/cuDNN set-up, torch.compile, DataLoader start stay outside the timed
region). The blocks of all configurations are interleaved, A B C ... A B C ..., for --rounds rounds
in one process, so a change in machine load hits all of them alike. Reported: the median images/s
over rounds, and for each kdlib row the median of its per-round ratios to the naive row of the same
task. Peak memory per configuration: CUDA max_memory_allocated; on CPU the process's peak resident
set size sampled during the configuration's blocks (it includes the data and the interpreter).

The logit-cache rows gather from a cache of the right shape and dtype whose contents are random:
a gather costs the same whatever it reads. Building a cache is timed separately, by a real build on
--cache-images images at the end of every round (in the precision get_run would use: fp32 on CPU,
bf16 on CUDA), and the amortised figures charge its cost to 300-epoch students: one student alone,
or five sharing the stored cache (E2's m = 5 and E5's temperatures share one ensemble).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import (default_data, describe_data, machine, measure_and_publish, random_logit_cache,
                               synchronize, teacher_members, time_cache_build)
from benchmarks.common import load_data as load_dataset
from kdlib import data as kdata
from kdlib import logit_cache as lcache
from kdlib import scales
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.losses import Teacher, ensemble_logits, kd_loss
from kdlib.models import build_model
from kdlib.device import CHANNELS_LAST, autocast, backend_flags, resolve_device
from kdlib.train import TrainSet, make_optimizer, train_epoch

PAPER = scales.get_scale("paper")
TAU = 4.0
STUDENT_EPOCHS = PAPER.student.epochs  # 300: what the amortised cache figures assume
TARGETS = {  # the speed targets, on a 2-core CPU in fp32: (task, kdlib path) -> minimum ratio over naive
    ("teacher", "kdlib"): 1.3,
    ("distill-5", "kdlib logit cache"): 3.0,
}


# ---------------------------------------------------------------------------------------------
# The naive pipeline (the original code's)

class PILCifar(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR100's __getitem__ on in-memory arrays: HWC uint8 -> PIL -> transform."""

    def __init__(self, images: np.ndarray, targets: list[int], transform):
        self.data, self.targets, self.transform = images, targets, transform  # (N, 32, 32, 3) uint8

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def naive_loader(split: kdata.Split, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    from torchvision import transforms as T
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])  # x / 255 * 2 - 1
    images = np.ascontiguousarray(split.x.permute(0, 2, 3, 1).numpy())
    dataset = PILCifar(images, split.y.tolist(), transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=workers)


@dataclass
class NaiveRun:
    """The original loop: a batch from the DataLoader, every teacher, one student step, host reads."""

    loader: torch.utils.data.DataLoader
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    members: list  # teacher models (NCHW, eval mode); empty for teacher training
    device: torch.device
    batches: object = None

    def next_batch(self):
        try:
            return next(self.batches)
        except (StopIteration, TypeError):  # exhausted, or not started: a new epoch
            self.batches = iter(self.loader)
            return next(self.batches)

    def run(self, steps: int) -> None:
        self.model.train()
        train_loss = correct = agree = 0.0
        for _ in range(steps):
            x, y = self.next_batch()
            x, y = x.to(self.device), y.to(self.device)
            logits = self.model(x)
            if self.members:
                with torch.no_grad():
                    target = ensemble_logits(torch.stack([m(x) for m in self.members]))
                loss = kd_loss(logits, target, None, tau=TAU)
            else:
                loss = F.cross_entropy(logits, y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            train_loss += loss.item()  # the original's per-step host reads
            correct += (logits.argmax(-1) == y).sum().item()
            if self.members:
                agree += (logits.argmax(-1) == target.argmax(-1)).sum().item()
        if self.loader.num_workers:
            # Shut the workers down: prefetching during the other configurations' blocks would
            # steal their CPU. The next block starts new ones during its warm-up steps.
            self.batches = None


@dataclass
class KdlibRun:
    """kdlib's loop: train_epoch on the device-resident padded training set (kdlib.train.TrainSet)."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    spec: object
    data: TrainSet
    teacher: torch.nn.Module | None
    store: lcache.LogitCache | None
    precision: str
    seed: int = 0

    def run(self, steps: int) -> None:
        self.seed += 1  # a fresh permutation per block; a block longer than an epoch repeats it
        loss_sum, _ = train_epoch(self.model, self.opt, self.spec,
                                  self.data.epoch(self.seed, self.spec.recipe.batch_size, steps),
                                  teacher=self.teacher, cached_teacher=self.store, precision=self.precision)
        loss_sum.item()  # the end-of-epoch read: waits for the device


# ---------------------------------------------------------------------------------------------
# Measuring

class PeakMemory:
    """Peak memory of a block: CUDA max_memory_allocated, or the sampled peak RSS of this process."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):  # not Linux: the process's lifetime peak
            scale = 1 if sys.platform == "darwin" else 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())


@dataclass
class Config:
    task: str  # "teacher", "distill-1", "distill-5"
    path: str  # "naive", "kdlib", ...
    batch_size: int
    make: object  # () -> NaiveRun | KdlibRun
    runner: object = None
    samples: list = field(default_factory=list)  # images/s per round
    peak: int = 0

    def block(self, steps: int, warmup: int, device: torch.device) -> None:
        if self.runner is None:
            self.runner = self.make()
        with PeakMemory(device) as mem:
            if warmup:
                self.runner.run(warmup)
            synchronize(device)
            t0 = time.perf_counter()
            self.runner.run(steps)
            synchronize(device)
            seconds = time.perf_counter() - t0
        self.samples.append(steps * self.batch_size / seconds)
        self.peak = max(self.peak, mem.peak)


def make_configs(dataset: kdata.Dataset, device: torch.device, args) -> list[Config]:
    train = dataset.train
    data = {fmt: TrainSet(train, device, fmt) for fmt in (CHANNELS_LAST, torch.contiguous_format)}
    n_members = max(args.members)
    # Teachers: untrained networks cost the same as trained ones.
    naive_members = teacher_members(n_members, device, memory_format=None)
    cl_members = teacher_members(n_members, device)
    stores = {}

    def random_store(m):  # gathers cost the same whatever they read (module docstring)
        if m not in stores:
            stores[m] = random_logit_cache(len(train), device, seed=m)
        return stores[m]

    def naive(task, bs, m):
        def make():
            model = build_model("batch", 0).to(device)
            return NaiveRun(naive_loader(train, bs, args.naive_workers), model,
                            make_optimizer(model, Recipe(epochs=1, batch_size=bs, lr=0.05)), naive_members[:m], device)
        return Config(task, "naive", bs, make)

    def kdlib_path(task, bs, m, path, *, cache=False, precision="fp32", nchw=False, compile=False):
        fmt = torch.contiguous_format if nchw else CHANNELS_LAST
        def make():
            recipe = Recipe(epochs=1, batch_size=bs, lr=0.05)
            t_spec = TeacherSpec(recipe=recipe)
            spec = t_spec if m == 0 else StudentSpec(recipe=recipe, teachers=(t_spec,) * m, tau=TAU)
            model = build_model("batch", 0).to(device, memory_format=fmt)
            teacher = None
            if m and not cache:
                teacher = Teacher(naive_members[:m] if nchw else cl_members[:m])
                teacher = torch.compile(teacher) if compile else teacher
            opt = make_optimizer(model, recipe)
            model = torch.compile(model) if compile else model
            return KdlibRun(model, opt, spec, data[fmt], teacher, random_store(m) if cache else None, precision)
        return Config(task, path, bs, make)

    bt, bs = args.batch_teacher, args.batch_student
    variants = set(args.variants)
    configs = [naive("teacher", bt, 0), kdlib_path("teacher", bt, 0, "kdlib")]
    if "nchw" in variants:
        configs.append(kdlib_path("teacher", bt, 0, "kdlib NCHW", nchw=True))
    if "bf16" in variants:
        configs.append(kdlib_path("teacher", bt, 0, "kdlib bf16", precision="bf16"))
    if "compile" in variants:
        configs.append(kdlib_path("teacher", bt, 0, "kdlib compile", compile=True))
    for m in args.members:
        task = f"distill-{m}"
        configs += [naive(task, bs, m), kdlib_path(task, bs, m, "kdlib on the fly"),
                    kdlib_path(task, bs, m, "kdlib logit cache", cache=True)]
        if "bf16" in variants:
            configs.append(kdlib_path(task, bs, m, "kdlib logit cache bf16", cache=True, precision="bf16"))
        if "compile" in variants:
            configs.append(kdlib_path(task, bs, m, "kdlib logit cache compile", cache=True, compile=True))
    return configs


@dataclass
class CacheBuild:
    """Timed real cache builds for `members` teachers on the first n_images images, one per round."""

    dataset: kdata.Dataset
    device: torch.device
    n_images: int
    members: int
    precision: str
    samples: list = field(default_factory=list)  # teacher forwards/s per round
    _state: tuple | None = None

    def block(self) -> None:
        if self._state is None:
            padded = kdata.pad(self.dataset.train.x[:self.n_images].to(self.device))
            teacher = Teacher(teacher_members(self.members, self.device))
            lcache.build(teacher, padded[:1], context=autocast(self.device, self.precision))  # warm-up
            self._state = padded, teacher
        padded, teacher = self._state
        self.samples.append(time_cache_build(teacher, padded, self.members, self.device, self.precision)[1])

    def report(self) -> dict:
        return {"images": self.n_images, "members": self.members, "precision": self.precision,
                "member_forwards_per_s": round(statistics.median(self.samples), 1),
                "samples_member_forwards_per_s": [round(x, 1) for x in self.samples]}


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# The command

def load_data(source: str, images: int) -> kdata.Dataset:
    """`images` class-balanced training images (rounded down to whole classes, at least one per
    class) and one test image per class; synthetic: that many random ones."""
    per_class = max(1, images // kdata.NUM_CLASSES)
    return load_dataset(kdata.DataSpec(source=source, train_per_class=per_class, test_per_class=1),
                        synthetic_images=per_class * kdata.NUM_CLASSES)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--data", default=None, help="CIFAR-100 source (default: kdlib.data.default_source(), "
                   "$KDLIB_DATA, else ../shared/data/cifar100-lossless.npz if it exists, else synthetic pixels)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--images", type=int, default=2560, help="training images (class-balanced)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is over them)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before each timed block")
    p.add_argument("--members", type=int, nargs="+", default=[1, 5], help="teacher ensemble sizes")
    p.add_argument("--batch-teacher", type=int, default=PAPER.teacher.batch_size)
    p.add_argument("--batch-student", type=int, default=PAPER.student.batch_size)
    p.add_argument("--naive-workers", type=int, default=0,
                   help="DataLoader workers of the naive path (default 0, as the original code)")
    p.add_argument("--variants", nargs="*", default=None, choices=["nchw", "bf16", "compile"],
                   help="extra kdlib rows (default: nchw on CPU, nchw and bf16 on CUDA)")
    p.add_argument("--cache-images", type=int, default=4, help="images for each timed cache build")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    args = p.parse_args(argv)
    for name in ("images", "rounds", "steps", "batch_teacher", "batch_student", "cache_images"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.naive_workers < 0 or min(args.members) < 1:
        p.error("--warmup and --naive-workers must be >= 0, --members >= 1")
    return args


def run(args) -> dict:
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.variants is None:
        args.variants = ["nchw", "bf16"] if device.type == "cuda" else ["nchw"]
    source = args.data or default_data()
    dataset = load_data(source, args.images)
    if len(dataset.train) < max(args.batch_teacher, args.batch_student):
        raise SystemExit(f"--images {args.images} gives {len(dataset.train)} training images, fewer than "
                         f"a batch ({max(args.batch_teacher, args.batch_student)})")
    torch.manual_seed(0)
    baseline_rss = PeakMemory.rss()
    configs = make_configs(dataset, device, args)
    builder = CacheBuild(dataset, device, min(args.cache_images, len(dataset.train)), max(args.members),
                         "bf16" if device.type == "cuda" else "fp32")  # as get_run would build it
    with backend_flags(device, "fp32"):  # IEEE fp32 convolutions on CUDA for every fp32 row
        for r in range(args.rounds):
            for c in configs:
                # The first block of each configuration also pays one-off set-up: more warm-up.
                c.block(args.steps, args.warmup + (2 if r == 0 else 0), device)
            builder.block()
            print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)
    build = builder.report()

    naive = {c.task: c for c in configs if c.path == "naive"}
    results = []
    for c in configs:
        ref = naive[c.task]
        results.append({
            "task": c.task, "path": c.path, "batch_size": c.batch_size,
            "images_per_s": round(statistics.median(c.samples), 1),
            "samples_images_per_s": [round(s, 1) for s in c.samples],
            "ratio_vs_naive": round(median_ratio(c.samples, ref.samples), 3),
            "ratio_samples": [round(x / y, 3) for x, y in zip(c.samples, ref.samples)],
            "peak_memory_mb": round(c.peak / 2**20, 1),
        })

    # The cache's cost, charged to 300-epoch students: seconds per training image.
    amortised = {}
    for m in args.members:
        row = {r["path"]: r for r in results if r["task"] == f"distill-{m}"}
        per_image_build = kdata.NUM_VIEWS * m / build["member_forwards_per_s"]  # seconds, m members
        for students in (1, 5):
            per_image = STUDENT_EPOCHS / row["kdlib logit cache"]["images_per_s"] + per_image_build / students
            rate = STUDENT_EPOCHS / per_image
            amortised[f"distill-{m}, {students} student{'s' if students > 1 else ''}"] = {
                "images_per_s": round(rate, 1),
                "ratio_vs_naive": round(rate / row["naive"]["images_per_s"], 3)}

    targets = []
    for (task, path), minimum in TARGETS.items():
        row = next((r for r in results if r["task"] == task and r["path"] == path), None)
        if row is not None:
            targets.append({"task": task, "path": path, "target": minimum, "measured": row["ratio_vs_naive"],
                            "met": row["ratio_vs_naive"] >= minimum})
    return {
        "benchmark": "benchmarks/bench_train.py", "format": 1,
        "command": "python -m benchmarks.bench_train " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(device),
        "settings": {k: v for k, v in vars(args).items() if k != "json"} | {"precision": "fp32", "tau": TAU},
        "data": describe_data(dataset),
        "memory": ("CUDA max_memory_allocated" if device.type == "cuda" else
                   f"peak RSS of the process (CPU; {baseline_rss / 2**20:.0f} MB before the first configuration)"),
        "results": results,
        "logit_cache": {"build": build, "bytes_per_image": lcache.cache_bytes(1),
                        "paper_bytes": lcache.cache_bytes(50_000),
                        "paper_build_seconds": {m: round(50_000 * kdata.NUM_VIEWS * m / build["member_forwards_per_s"], 1)
                                                for m in args.members},
                        "amortised_over_epochs": STUDENT_EPOCHS, "amortised": amortised},
        "targets": targets,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def table(report: dict) -> str:
    lines = [f"{'task':<10} {'path':<28} {'img/s':>8} {'round range':>17} {'x naive':>8} {'peak MB':>8}"]
    for r in report["results"]:
        lo, hi = min(r["samples_images_per_s"]), max(r["samples_images_per_s"])
        ratio = "" if r["path"] == "naive" else f"{r['ratio_vs_naive']:.2f}x"
        lines.append(f"{r['task']:<10} {r['path']:<28} {r['images_per_s']:>8.1f} {f'{lo:.0f}-{hi:.0f}':>17} "
                     f"{ratio:>8} {r['peak_memory_mb']:>8.0f}")
    lc = report["logit_cache"]
    b = lc["build"]
    lines.append("")
    lines.append(f"logit cache build: {b['member_forwards_per_s']:.0f} teacher forwards/s ({b['members']} members, "
                 f"{b['images']} images x 162 views, {b['precision']}); 50,000 images: "
                 f"{lc['paper_bytes'] / 1e9:.2f} GB, " + ", ".join(
                     f"{s / 60:.1f} min for {m} member{'s' if int(m) > 1 else ''}"
                     for m, s in lc["paper_build_seconds"].items()))
    for name, a in lc["amortised"].items():
        lines.append(f"  amortised over {lc['amortised_over_epochs']} epochs ({name}): "
                     f"{a['images_per_s']:.1f} img/s, {a['ratio_vs_naive']:.2f}x naive")
    for t in report["targets"]:
        lines.append(f"target {t['task']} {t['path']}: >= {t['target']}x, measured {t['measured']:.2f}x: "
                     f"{'met' if t['met'] else 'NOT met'}")
    m = report["machine"]
    lines.append(f"{m['device']}, {m['cpu']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, "
                 f"torch {m['torch']}; {report['data']}; memory: {report['memory']}; {report['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> dict:
    return measure_and_publish(parse_args, run, table, argv)


if __name__ == "__main__":
    main()
