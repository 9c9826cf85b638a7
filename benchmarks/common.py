"""What the benchmarks share, in one place: their data, teachers, random logit caches, cache-build
timing, the machine they ran on, and how a result is published (stamped with kdlib's version and
commit, written atomically).

bench_train, bench_workers, bench_paper and probe_scales import from here and from kdlib; none
imports from another benchmark.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import kdlib
from kdlib import data as kdata
from kdlib import logit_cache as lcache
from kdlib.device import CHANNELS_LAST, autocast
from kdlib.files import atomic_write_bytes
from kdlib.models import build_model

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = "synthetic"  # --data synthetic: random pixels of the right size (the same cost per image)


# ---------------------------------------------------------------------------------------------
# Data

def default_data() -> str:
    """kdlib.data.default_source(), the one rule ($KDLIB_DATA, else the offline copy
    ../shared/data/cifar100-lossless.npz from the repository root, where `python -m benchmarks...` runs),
    with synthetic pixels in place of its fallback, torchvision's download. The path stays relative:
    no machine paths in reports."""
    source = kdata.default_source()
    return SYNTHETIC if source == "torchvision" and not os.environ.get("KDLIB_DATA") else source


def synthetic_dataset(n: int, test_images: int | None = None) -> kdata.Dataset:
    """n random uint8 images (seed 0) with labels 0, 1, ..., 99, 0, ...; the test split is the first
    `test_images` of them, or the training split itself when None."""
    g = torch.Generator().manual_seed(0)
    split = kdata.Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.arange(n) % kdata.NUM_CLASSES)
    test = split if test_images is None else kdata.Split(split.x[:test_images], split.y[:test_images])
    return kdata.Dataset(train=split, test=test, classes=tuple(map(str, range(kdata.NUM_CLASSES))),
                         fingerprint=SYNTHETIC, spec=kdata.DataSpec(source=SYNTHETIC))


def load_data(spec: kdata.DataSpec, *, synthetic_images: int, synthetic_test_images: int | None = None
              ) -> kdata.Dataset:
    """kdlib.data.load(spec); for spec.source "synthetic", synthetic_dataset(synthetic_images,
    synthetic_test_images) instead."""
    if spec.source == SYNTHETIC:
        return synthetic_dataset(synthetic_images, synthetic_test_images)
    return kdata.load(spec)


def describe_data(dataset: kdata.Dataset) -> str:
    """A record's "data" field: Dataset.describe(), or the synthetic pixels' count."""
    if dataset.spec.source == SYNTHETIC:
        return f"synthetic pixels, {len(dataset.train):,} images"
    return dataset.describe()


# ---------------------------------------------------------------------------------------------
# Teachers and logit caches

def teacher_members(n: int, device: torch.device, norm: str = "batch",
                    memory_format: torch.memory_format | None = CHANNELS_LAST) -> list:
    """n untrained teacher networks (seeds 100, 101, ...) in eval mode, channels_last unless
    memory_format says otherwise (None: as built, NCHW): they cost what trained ones do."""
    def place(model):
        return model.to(device) if memory_format is None else model.to(device, memory_format=memory_format)
    return [place(build_model(norm, 100 + i)).eval() for i in range(n)]


def random_logit_cache(n_images: int, device: torch.device, seed: int = 0, chunk: int | None = None
                       ) -> lcache.LogitCache:
    """A logit cache of the right shape and dtype holding random log-probabilities: a gather costs
    the same whatever it reads. chunk: draw that many images at a time (no float32 temporary of the
    whole cache, 3 GB for 50,000 images); None: all at once."""
    g = torch.Generator(device=device).manual_seed(seed)
    shape = (kdata.NUM_VIEWS, kdata.NUM_CLASSES)
    if chunk is None:
        z = torch.randn(n_images, *shape, generator=g, device=device)
        return lcache.LogitCache(F.log_softmax(z, dim=-1).to(lcache.STORAGE_DTYPE))
    logits = torch.empty(n_images, *shape, dtype=lcache.STORAGE_DTYPE, device=device)
    for i in range(0, n_images, chunk):
        z = torch.randn(min(chunk, n_images - i), *shape, generator=g, device=device)
        logits[i:i + chunk] = F.log_softmax(z, dim=-1).to(lcache.STORAGE_DTYPE)
    return lcache.LogitCache(logits)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cache_build(teacher, padded: torch.Tensor, members: int, device: torch.device,
                     precision: str) -> tuple[float, float]:
    """One real logit-cache build (kdlib.logit_cache.build) of the padded images, in `precision`,
    as get_run builds it: (seconds, teacher-member forwards per second). Warm-up is the caller's."""
    synchronize(device)
    t0 = time.perf_counter()
    lcache.build(teacher, padded, context=autocast(device, precision))
    synchronize(device)
    seconds = time.perf_counter() - t0
    return seconds, len(padded) * kdata.NUM_VIEWS * members / seconds


# ---------------------------------------------------------------------------------------------
# Records

def machine(device: torch.device) -> dict:
    """Where a benchmark ran: device, CPU model, cores, torch threads, torch, Python, platform, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"device": str(device), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def kdlib_version() -> str | None:
    version = getattr(kdlib, "__version__", None)
    if version:
        return version
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
        return dist_version("kdlib")
    except (ImportError, PackageNotFoundError):
        return None


def git_commit() -> str | None:
    """The checkout's commit (git rev-parse HEAD), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip() if out.returncode == 0 else ""
    return commit or None


def stamp() -> dict:
    """The provenance every published record carries: {"kdlib": version, "git_commit": commit}."""
    return {"kdlib": kdlib_version(), "git_commit": git_commit()}


def publish(record: dict, path=None) -> dict:
    """Stamp the record (in place) with kdlib's version and commit and, when a path is given, write
    it there as JSON, atomically (kdlib.files.atomic_write_bytes; keys in the record's order).
    Every benchmark's result goes through here."""
    record.update(stamp())
    if path:
        atomic_write_bytes(Path(path), (json.dumps(record, indent=1, default=str) + "\n").encode())
    return record


def measure_and_publish(parse_args, run, table, argv=None) -> dict:
    """A benchmark's command line: parse the arguments (their `json` the record's path), measure,
    print the table, publish the record."""
    args = parse_args(argv)
    report = run(args)
    print(table(report))
    return publish(report, args.json)


def splice(text: str, start: str, end: str, body: str) -> str:
    """Replace what lies between the line holding `start` and the line starting with `end` by body
    (a generated table in a Markdown file; both marker lines stay)."""
    i = text.index(start)
    j = text.index(end, i)
    return text[:text.index("\n", i) + 1] + body.rstrip("\n") + "\n" + text[j:]
