"""Where CIFAR-100's pixels come from, and reading a source safely (protocol §1).

`read(source)` gives the same arrays for both sources kdlib.data.DataSpec allows:
- "torchvision": the official CIFAR-100 pickles, downloaded by torchvision into
  ``kdlib_home()/"torchvision"``;
- a local copy in class folders, as a directory tree or a .tar.gz (shared/data/README.md).
A local copy is decoded once (PIL, JPEG and PNG decoders only; its size bounded) and its arrays are
cached under ``kdlib_home()/"data"/<sha256 of the source>/``; later loads only hash the source and
read the arrays. A damaged cache is named in a warning, decoded again and rewritten.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torchvision
from PIL import Image, UnidentifiedImageError

from kdlib.files import atomic_write_bytes, kdlib_home
from kdlib.progress import Progress

NUM_CLASSES = 100
SIZE = 32  # CIFAR image side

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CACHE_FILE = "arrays-v1.npz"  # bump the version if decoding ever changes
_LAYOUT = ("a class-folder tree: <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg, "
           f"{NUM_CLASSES} class folders in each, {SIZE}x{SIZE} RGB images, optionally under one "
           "top folder (e.g. cifar100-jpg/)")
ALLOWED_SOURCES = '"torchvision", a class-folder tree, or a .tar.gz of one'


def missing(name: str, source: str, also: str = "") -> FileNotFoundError:
    """The one error for a source that does not exist, naming the parameter `name` it came from and
    what may be given instead (`also`: another allowed value, e.g. the empty default)."""
    return FileNotFoundError(f"{name}={source!r} does not exist; allowed: {also + ', ' if also else ''}"
                             f"{ALLOWED_SOURCES} ({_LAYOUT})")


def read(source: str):
    """([train_x, train_y, test_x, test_y], classes, fingerprint) of a DataSpec.source.

    Arrays are numpy: x uint8 (N, 3, 32, 32), y int64 (N,); a local copy's are sorted by
    (class, file name). fingerprint = sha256 of the archive bytes (.tar.gz), of the sorted relative
    paths and bytes of every file (folder tree), or of the decoded arrays and labels (torchvision).
    """
    if source == "torchvision":
        return _load_torchvision()
    return _load_local(source)


def _load_torchvision():
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
        raise missing("DataSpec.source", source)

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
