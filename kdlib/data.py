"""CIFAR-100 as uint8 tensors, class-balanced subsets and batched augmentation (protocol §1).

Two sources give the same `Dataset`:
- "torchvision": the official CIFAR-100 pickles, downloaded by torchvision (the users' default);
- a local copy in class folders, as a directory tree or a .tar.gz (shared/data/README.md):
  ``[top/]train/<fine_label>/<file>.jpg`` and ``[top/]test/<fine_label>/<file>.jpg``.
A local copy is decoded once (PIL, JPEG and PNG decoders only; its size bounded) and its arrays are
cached under ``kdlib_home()/"data"/<sha256 of the source>/``; later loads only hash the source and
read the arrays. A damaged cache is named in a warning, decoded again and rewritten.

Augmentation works on whole batches of uint8 tensors on any device: every training view is one of
the 9 x 9 crop offsets x 2 flips of the zero-padded image, so a view is an integer in [0, 162).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from kdlib.checks import check_int
from kdlib.device import CHANNELS_LAST
from kdlib.files import atomic_write_bytes
from kdlib.progress import Progress

NUM_CLASSES = 100
PAD = 4  # zero padding on each side before the random 32x32 crop (protocol §1)
SIZE = 32  # CIFAR image side
NUM_OFFSETS = 2 * PAD + 1  # 9 crop positions per axis
NUM_VIEWS = NUM_OFFSETS * NUM_OFFSETS * 2  # 162 = 9 x 9 offsets x 2 flips (protocol §1)

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CACHE_FILE = "arrays-v1.npz"  # bump the version if decoding ever changes
_LAYOUT = ("a class-folder tree: <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg, "
           f"{NUM_CLASSES} class folders in each, {SIZE}x{SIZE} RGB images, optionally under one "
           "top folder (e.g. cifar100-jpg/)")
_ALLOWED_SOURCES = '"torchvision", a class-folder tree, or a .tar.gz of one'


def kdlib_home() -> Path:
    """Root of kdlib's on-disk caches: $KDLIB_HOME, default ~/.cache/kdlib."""
    return Path(os.environ.get("KDLIB_HOME") or "~/.cache/kdlib").expanduser()


# The project's offline copy of CIFAR-100, relative to the repository root: the repository's parent
# folder holds shared/ (shared/data/README.md).
OFFLINE_COPY = "../shared/data/cifar100-jpg.tar.gz"


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

    # "torchvision" (downloads into kdlib_home()/"torchvision"), or a path to a class-folder tree
    # or a .tar.gz of one (layout in shared/data/README.md); a relative path is taken from the cwd.
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
            raise ValueError(f"DataSpec.source must be {_ALLOWED_SOURCES}, got {self.source!r}")
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
    fingerprint: str  # sha256 hex of the source content (see load())
    spec: DataSpec

    @property
    def num_classes(self) -> int:
        """Classes the networks distinguish: the size of their output layer."""
        return len(self.classes)

    def cache_key(self) -> dict:
        """What identifies the data of a run: the source's content hash and the subset."""
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
        return (f"CIFAR-100 from {source} (sha256 {self.fingerprint[:12]}): "
                f"{count(self.train, self.spec.train_per_class)} train / "
                f"{count(self.test, self.spec.test_per_class)} test images{classes}{subset}")


# ----------------------------------------------------------------------------------------------
# Loading

def load(spec: DataSpec) -> Dataset:
    """Load the images `spec` names; train/test sorted by (class, file name) for a local copy.

    fingerprint = sha256 of the archive bytes (.tar.gz), of the sorted relative paths and bytes of
    every file (folder tree), or of the decoded arrays and labels (torchvision).
    """
    if spec.source == "torchvision":
        arrays, classes, fingerprint = _load_torchvision()
    else:
        arrays, classes, fingerprint = _load_local(spec.source)
    train_x, train_y, test_x, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    k = spec.num_classes or len(classes)
    train = _subset(_first_classes(Split(train_x, train_y.long()), k), spec.train_per_class,
                    spec.subset_seed, "train_per_class", k)
    test = _subset(_first_classes(Split(test_x, test_y.long()), k), spec.test_per_class,
                   spec.subset_seed, "test_per_class", k)
    return Dataset(train=train, test=test, classes=tuple(classes[:k]), fingerprint=fingerprint,
                   spec=spec)


def _load_torchvision():
    import torchvision  # imported here: a local copy needs no torchvision

    root = kdlib_home() / "torchvision"
    try:
        parts = [torchvision.datasets.CIFAR100(str(root), train=t, download=True)
                 for t in (True, False)]
    except Exception as e:  # URLError, HTTPError, OSError, a checksum RuntimeError, ...
        raise RuntimeError(
            f"DataSpec(source='torchvision'): downloading CIFAR-100 into {root} failed ({e}). "
            "Pass a local copy as `source` (a class-folder tree or .tar.gz, e.g. "
            "../shared/data/cifar100-jpg.tar.gz) or set KDLIB_DATA to one.") from e
    arrays = []
    for ds in parts:  # ds.data: uint8 (N, 32, 32, 3) -> (N, 3, 32, 32)
        arrays += [ds.data.transpose(0, 3, 1, 2), np.asarray(ds.targets, dtype=np.int64)]
    classes = list(parts[0].classes)
    _check_classes(classes, classes, "torchvision")
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("\n".join(classes).encode())
    return arrays, classes, h.hexdigest()


def _load_local(source: str):
    path = Path(source).expanduser()
    if path.is_dir():
        files = _read_tree(path)  # every load reads the tree: its content is the fingerprint
        h = hashlib.sha256()
        for rel, data in files:
            h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        fingerprint, archive_bytes = h.hexdigest(), None
    elif path.is_file():
        archive_bytes = path.read_bytes()  # 19.5 MB for CIFAR-100; hashing takes ~0.05 s
        fingerprint, files = hashlib.sha256(archive_bytes).hexdigest(), None
    else:
        raise FileNotFoundError(f"DataSpec.source {source!r} does not exist; allowed: "
                                f"{_ALLOWED_SOURCES} ({_LAYOUT})")

    cache = kdlib_home() / "data" / fingerprint / _CACHE_FILE
    if cache.exists():
        cached = _read_decoded(cache)
        if cached is not None:
            return (*cached, fingerprint)

    if files is None:
        files = _read_archive(archive_bytes, source)
    arrays, classes = _decode(files, source)
    buffer = io.BytesIO()
    np.savez(buffer, train_x=arrays[0], train_y=arrays[1], test_x=arrays[2], test_y=arrays[3],
             classes=np.array(classes))
    # atomic: a reader sees either no cache file or a complete one, even if we are killed mid-write
    atomic_write_bytes(cache, buffer.getvalue())
    return arrays, classes, fingerprint


def _read_decoded(path: Path):
    """([train_x, train_y, test_x, test_y], classes) from a decoded-data cache, or None (with a warning
    naming the file) when it is damaged: the caller decodes the source again and rewrites it."""
    try:
        with np.load(path, allow_pickle=False) as z:  # reading each member checks its zip CRC
            arrays = [z["train_x"], z["train_y"], z["test_x"], z["test_y"]]
            classes = [str(c) for c in z["classes"]]
        ok = (arrays[0].dtype == np.uint8 and arrays[0].ndim == 4 and len(arrays[0]) == len(arrays[1])
              and arrays[2].dtype == np.uint8 and len(arrays[2]) == len(arrays[3]) and classes)
        if not ok:
            raise ValueError("its arrays do not have the shapes and types decoding writes")
        return arrays, classes
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError) as e:
        warnings.warn(f"the decoded-data cache {path} is damaged ({type(e).__name__}: {e}); decoding the source "
                      "again and rewriting it")
        return None


# Bounds on what a local copy may hold, so a damaged or hostile archive fails with a clear error
# instead of filling memory: a CIFAR image file is ~1-3 KB (32 x 32 pixels), the real archive holds
# 60,000 of them in 19.5 MB (`MAX_FILE_BYTES` leaves room for READMEs and uncompressed PNGs).
MAX_FILE_BYTES = 1 << 20     # one file (archive member or tree file)
MAX_TOTAL_BYTES = 1 << 30    # all files together, decompressed
MAX_FILES = 200_000          # files in the source
IMAGE_FORMATS = ("JPEG", "PNG")  # decoders PIL may use: never chosen by content (no EPS, no Ghostscript)


class _Budget:
    """Counts what a source holds and stops at the bounds above, naming the file that crossed one."""

    def __init__(self, source: str):
        self.source, self.files, self.bytes = source, 0, 0

    def take(self, name: str, size: int) -> None:
        self.files += 1
        self.bytes += size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"DataSpec.source {self.source!r}: {name} holds {size:,} bytes, more than the "
                             f"{MAX_FILE_BYTES:,} a file of a CIFAR-100 copy may hold")
        if self.files > MAX_FILES:
            raise ValueError(f"DataSpec.source {self.source!r}: more than {MAX_FILES:,} files (at {name})")
        if self.bytes > MAX_TOTAL_BYTES:
            raise ValueError(f"DataSpec.source {self.source!r}: more than {MAX_TOTAL_BYTES:,} bytes in all "
                             f"(at {name})")


def _read_tree(root: Path) -> list[tuple[str, bytes]]:
    """(relative posix path, bytes) of every non-hidden file under root, sorted by path."""
    out, budget = [], _Budget(str(root))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                p = Path(dirpath) / name
                rel = p.relative_to(root).as_posix()
                budget.take(rel, p.stat().st_size)
                out.append((rel, p.read_bytes()))
    return sorted(out)


def _read_archive(data: bytes, source: str) -> list[tuple[str, bytes]]:
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as e:
        raise ValueError(f"DataSpec.source {source!r} is a file but not a readable tar archive "
                         f"({e}); expected {_LAYOUT}, as a .tar.gz") from e
    out, budget = [], _Budget(source)
    with tf:
        for m in tf:  # members are read one by one, each checked before its bytes are
            if not m.isfile() or PurePosixPath(m.name).name.startswith("."):
                continue
            budget.take(m.name, m.size)
            out.append((m.name.removeprefix("./"), tf.extractfile(m).read()))
    return out


def _decode(files: list[tuple[str, bytes]], source: str):
    """Image files in the layout -> ([train_x, train_y, test_x, test_y], classes)."""
    from PIL import Image, UnidentifiedImageError  # only needed on the first load of a local copy

    items = {"train": [], "test": []}  # (class, file name, bytes)
    prefixes = set()
    for rel, data in files:
        parts = PurePosixPath(rel).parts
        if not rel.lower().endswith(_IMAGE_SUFFIXES):
            continue  # READMEs, licences: part of the fingerprint, not of the data
        if len(parts) < 3 or parts[-3] not in items:
            raise ValueError(f"DataSpec.source {source!r}: image {rel!r} is not in a "
                             f"train/<class>/ or test/<class>/ folder; expected {_LAYOUT}")
        prefixes.add(parts[:-3])
        items[parts[-3]].append((parts[-2], parts[-1], data))
    if not prefixes:
        raise ValueError(f"DataSpec.source {source!r} holds no images; expected {_LAYOUT}")
    if len(prefixes) != 1 or len(next(iter(prefixes))) > 1:
        raise ValueError(f"DataSpec.source {source!r}: found train/ and test/ folders under "
                         f"{sorted('/'.join(p) or '.' for p in prefixes)}; expected {_LAYOUT}")
    train_classes = sorted({c for c, _, _ in items["train"]})
    _check_classes(train_classes, sorted({c for c, _, _ in items["test"]}), source)

    label = {c: i for i, c in enumerate(train_classes)}
    arrays = []
    for split in ("train", "test"):
        entries = sorted(items[split], key=lambda e: e[:2])  # by (class, file name)
        x = np.empty((len(entries), SIZE, SIZE, 3), dtype=np.uint8)
        bar = Progress(len(entries), f"decoding {split}", unit="img")
        for i, (cls, name, data) in enumerate(entries):
            bar.update()
            try:
                img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"DataSpec.source {source!r}: {split}/{cls}/{name} is not a JPEG or PNG image "
                                 f"({e}); expected {_LAYOUT}") from e
            if img.size != (SIZE, SIZE):  # before any pixel is decoded
                raise ValueError(f"DataSpec.source {source!r}: {split}/{cls}/{name} is "
                                 f"{img.size[0]}x{img.size[1]}; expected {_LAYOUT}")
            x[i] = np.asarray(img.convert("RGB"))
        bar.close()
        y = np.array([label[cls] for cls, _, _ in entries], dtype=np.int64)
        arrays += [np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y]  # (N, 32, 32, 3) -> NCHW
    return arrays, train_classes


def _check_classes(train_classes: list[str], test_classes: list[str], source: str) -> None:
    if len(train_classes) != NUM_CLASSES or train_classes != test_classes:
        raise ValueError(
            f"DataSpec.source {source!r}: found {len(train_classes)} train and "
            f"{len(test_classes)} test classes (the same names expected in both); "
            f"expected {_LAYOUT}")
    if train_classes != sorted(train_classes):
        raise ValueError(f"DataSpec.source {source!r}: class names are not in alphabetical order")


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
