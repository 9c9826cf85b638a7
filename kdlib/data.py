"""CIFAR-100 as uint8 tensors, class-balanced subsets and batched augmentation (protocol §1).

Every source gives the same `Dataset`, the images in the same canonical order (kdlib.sources):
- "torchvision": the official CIFAR-100 archive, downloaded (the users' default);
- the lossless archive (.npz, shared/data/README.md): CIFAR-100's exact pixels, for machines that
  cannot download;
- a copy in class folders, as a directory tree or a .tar.gz:
  ``[top/]train/<fine_label>/<file>.jpg`` and ``[top/]test/<fine_label>/<file>.jpg``.
Reading a source (its formats, bounds, canonical order and fingerprint) is kdlib.sources.

Augmentation works on whole batches of uint8 tensors on any device: every training view is one of
the 9 x 9 crop offsets x 2 flips of the zero-padded image, so a view is an integer in [0, 162).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdlib import sources
from kdlib.checks import check_int
from kdlib.device import CHANNELS_LAST
from kdlib.sources import ALLOWED_SOURCES, NUM_CLASSES, SIZE

PAD = 4  # zero padding on each side before the random 32x32 crop (protocol §1)
NUM_OFFSETS = 2 * PAD + 1  # 9 crop positions per axis
NUM_VIEWS = NUM_OFFSETS * NUM_OFFSETS * 2  # 162 = 9 x 9 offsets x 2 flips (protocol §1)

# The project's offline copy of CIFAR-100 (its exact pixels), relative to the repository root: the
# repository's parent folder holds shared/ (shared/data/README.md).
OFFLINE_COPY = "../shared/data/cifar100-lossless.npz"


def default_source() -> str:
    """The data source used when none is named (notebooks, kdlib-report, `make report`,
    `python -m kdlib.claims`, the benchmarks, the real-data tests): the one rule.

    $KDLIB_DATA if set (non-empty), else the offline copy OFFLINE_COPY if that file exists relative
    to the current directory (run from the repository root), else "torchvision" (the download).
    The path comes back as given, relative, so messages and records stay machine-independent.
    """
    env = os.environ.get("KDLIB_DATA")
    if env:
        return env
    if Path(OFFLINE_COPY).is_file():
        return OFFLINE_COPY
    return "torchvision"


@dataclass(frozen=True)
class DataSpec:
    """Which images a run uses. The loaded `Dataset.cache_key()`, not this object, identifies them."""

    # "torchvision" (downloads into kdlib_home()/"torchvision"), or a path to the lossless archive
    # (.npz), a class-folder tree or a .tar.gz of one (shared/data/README.md); a relative path is
    # taken from the cwd.
    source: str = "torchvision"
    # images per class kept from the training set (class-balanced); None = all (500 for CIFAR-100)
    train_per_class: int | None = None
    # images per class kept from the test set; None = all (100 for CIFAR-100)
    test_per_class: int | None = None
    # seeds which images a subset takes; irrelevant when both counts are None
    subset_seed: int = 0
    # keep only the first this many classes (fine labels 0..K-1, alphabetical); None = all 100.
    # Labels keep their ids, so the networks get a K-way head (Dataset.num_classes).
    num_classes: int | None = None

    def __post_init__(self):
        if isinstance(self.source, os.PathLike):
            object.__setattr__(self, "source", os.fspath(self.source))
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"DataSpec.source must be {ALLOWED_SOURCES}, got {self.source!r}")
        check_int("DataSpec.train_per_class", self.train_per_class, 1, allow_none=True)
        check_int("DataSpec.test_per_class", self.test_per_class, 1, allow_none=True)
        check_int("DataSpec.subset_seed", self.subset_seed, 0)
        check_int("DataSpec.num_classes", self.num_classes, 2, NUM_CLASSES, allow_none=True)


@dataclass(frozen=True, eq=False)
class Split:
    x: torch.Tensor  # uint8 (N, 3, 32, 32), CPU, contiguous; raw pixels, see normalize()
    y: torch.Tensor  # int64 (N,), fine label ids in [0, 100)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class Dataset:
    train: Split
    test: Split
    classes: tuple[str, ...]  # the fine label names kept; label i is classes[i] (alphabetical)
    fingerprint: str  # sha256 hex of the data's pixels, labels and classes (kdlib.sources.fingerprint)
    spec: DataSpec

    @property
    def num_classes(self) -> int:
        """Classes the networks distinguish: the size of their output layer."""
        return len(self.classes)

    def cache_key(self) -> dict:
        """What identifies the data of a run: its fingerprint (the same for every source of the same
        pixels) and the subset."""
        key = {"fingerprint": self.fingerprint, "train_per_class": self.spec.train_per_class,
               "test_per_class": self.spec.test_per_class, "subset_seed": self.spec.subset_seed}
        if self.spec.num_classes is not None:
            key["num_classes"] = self.spec.num_classes
        return key

    def describe(self) -> str:
        """One line for reports: where the images came from and how many were used."""
        def count(split: Split, per_class: int | None) -> str:
            return f"{len(split):,}" + (f" ({per_class}/class)" if per_class else "")
        subset = ""
        if self.spec.train_per_class or self.spec.test_per_class:
            subset = f", class-balanced subsets, seed {self.spec.subset_seed}"
        classes = "" if self.spec.num_classes is None else \
            f", the first {self.num_classes} classes ({self.classes[0]} to {self.classes[-1]})"
        source = self.spec.source if self.spec.source == "torchvision" else Path(self.spec.source).name
        exact = "its exact pixels" if self.fingerprint == sources.EXACT else "not its exact pixels"
        return (f"CIFAR-100 from {source} ({exact}, fingerprint {self.fingerprint[:12]}): "
                f"{count(self.train, self.spec.train_per_class)} train / "
                f"{count(self.test, self.spec.test_per_class)} test images{classes}{subset}")


# ----------------------------------------------------------------------------------------------
# Loading

def load(spec: DataSpec) -> Dataset:
    """Load the images `spec` names, each split in the canonical order (by label, then file name),
    with the data's fingerprint (kdlib.sources.read)."""
    arrays, classes, fingerprint = sources.read(spec.source)
    train_x, train_y, test_x, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    k = spec.num_classes or len(classes)
    train = _subset(_first_classes(Split(train_x, train_y.long()), k), spec.train_per_class,
                    spec.subset_seed, "train_per_class", k)
    test = _subset(_first_classes(Split(test_x, test_y.long()), k), spec.test_per_class,
                   spec.subset_seed, "test_per_class", k)
    return Dataset(train=train, test=test, classes=tuple(classes[:k]), fingerprint=fingerprint,
                   spec=spec)


def _first_classes(split: Split, k: int) -> Split:
    """The images of labels 0..k-1 (all of them when k is every class), in their order."""
    if int(split.y.max()) < k:
        return split
    keep = split.y < k
    return Split(split.x[keep].contiguous(), split.y[keep].contiguous())


def _subset(split: Split, per_class: int | None, seed: int, field: str,
            num_classes: int = NUM_CLASSES) -> Split:
    """Class-balanced subset: per class, the first `per_class` of a seeded permutation.

    One generator, seeded once, serves the classes in label order, so the result depends only on
    (labels, per_class, seed); for a fixed seed a smaller subset is contained in a larger one.
    The kept indices are sorted, so the subset stays in canonical (class, file name) order.
    """
    if per_class is None:
        return split
    g = torch.Generator().manual_seed(seed)
    y = split.y.numpy()  # Split tensors are CPU; numpy's stable argsort is fast and simple
    by_class = torch.from_numpy(np.argsort(y, kind="stable")).split(  # class 0's indices, ...
        np.bincount(y, minlength=num_classes).tolist())
    keep = []
    for c, idx in enumerate(by_class):
        if per_class > len(idx):
            raise ValueError(f"DataSpec.{field}={per_class} but class {c} has only {len(idx)} "
                             f"images; allowed: 1..{len(idx)} or None (all)")
        keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    keep = torch.cat(keep).sort().values
    return Split(split.x[keep].contiguous(), split.y[keep].contiguous())


# ----------------------------------------------------------------------------------------------
# Augmentation (protocol §1): batched tensor ops on the tensors' own device, no PIL per image.
# Generators: a torch.Generator must live on the device it draws for (torch requires it);
# None uses torch's global generator for that device.

def pad(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) -> (N, 3, 40, 40), zero-padded by PAD on each side.

    Zero pixels (-1 after normalize), as torchvision's RandomCrop(32, padding=4) on PIL images.
    Pad the training set once; each epoch then only gathers views.
    """
    _check_images(x, SIZE, "x")
    out = x.new_zeros(x.shape[0], 3, SIZE + 2 * PAD, SIZE + 2 * PAD)
    out[:, :, PAD:PAD + SIZE, PAD:PAD + SIZE] = x
    return out


def random_views(n: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """int64 (n,) uniform in [0, NUM_VIEWS): an independent crop offset and flip per sample."""
    return torch.randint(0, NUM_VIEWS, (n,), generator=generator, device=device)


def apply_views(padded: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, 40, 40), int64 (B,) -> uint8 (B, 3, 32, 32): view v of each padded image.

    v encodes dy = v // 18, dx = (v // 2) % 9, flip = v % 2: the crop padded[:, :, dy:dy+32,
    dx:dx+32], mirrored left-right if flip. One torch.gather over the flattened 40x40 planes,
    no loop over the batch. Views outside [0, NUM_VIEWS) are not checked (that would sync a
    GPU); they fail as out-of-range indices.
    """
    _check_images(padded, SIZE + 2 * PAD, "padded")
    if views.shape != (padded.shape[0],) or views.dtype != torch.int64:
        raise ValueError(f"views must be int64 of shape ({padded.shape[0]},), "
                         f"got {views.dtype} {tuple(views.shape)}")
    views = views.to(padded.device)
    dy, dx, flip = views // (2 * NUM_OFFSETS), (views // 2) % NUM_OFFSETS, (views % 2).bool()
    ar = torch.arange(SIZE, device=padded.device)
    rows = dy[:, None] + ar  # (B, 32)
    cols = dx[:, None] + torch.where(flip[:, None], SIZE - 1 - ar, ar)  # (B, 32), reversed if flip
    side = SIZE + 2 * PAD
    flat = (rows[:, :, None] * side + cols[:, None, :]).view(-1, 1, SIZE * SIZE)  # (B, 1, 1024)
    out = padded.flatten(2).gather(2, flat.expand(-1, 3, -1))  # (B, 3, 1024)
    return out.view(-1, 3, SIZE, SIZE)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1]: x / 255 * 2 - 1 ("unitcube", protocol §1)."""
    if x.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 pixels, got {x.dtype}")
    return x.float() / 255 * 2 - 1


def model_input(x: torch.Tensor, memory_format: torch.memory_format = CHANNELS_LAST) -> torch.Tensor:
    """uint8 images (B, 3, 32, 32) -> what the network reads: `normalize`d float32 in
    `memory_format`, by default the NHWC layout the models run in (kdlib.device.CHANNELS_LAST).
    Training, evaluation and the logit cache all feed models through this one function."""
    return normalize(x).contiguous(memory_format=memory_format)


def mixup(x: torch.Tensor, generator: torch.Generator | None = None, *, keep_on_device: bool = False
          ) -> tuple[torch.Tensor, torch.Tensor, float | torch.Tensor]:
    """MixUp with alpha = 1 (protocol §3): one lam ~ Beta(1, 1) = U(0, 1) per batch, partner = x[perm].

    Returns (lam * x + (1 - lam) * x[perm], perm int64 (B,), lam). Draws lam, then perm, from
    `generator`, so a seeded generator reproduces both. lam is a Python float, which makes a GPU
    wait once per call; with keep_on_device=True it stays a 0-dim float32 tensor on x's device
    (what a training loop wants: no host synchronisation). Both give bit-identical mixes.
    """
    if not x.is_floating_point():
        raise ValueError(f"mixup expects a float batch (normalize() first), got {x.dtype}")
    lam = torch.rand((), generator=generator, device=x.device)
    if not keep_on_device:
        lam = lam.item()
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
    return lam * x + (1 - lam) * x[perm], perm, lam


def _check_images(x: torch.Tensor, size: int, name: str) -> None:
    if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != (3, size, size):
        raise ValueError(f"{name} must be uint8 of shape (N, 3, {size}, {size}), "
                         f"got {x.dtype} {tuple(x.shape)}")
