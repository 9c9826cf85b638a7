"""Where CIFAR-100's pixels come from, and reading a source safely (protocol §1).

`read(source)` gives the same arrays, in the same canonical order, for every source DataSpec allows:
- "torchvision": the official CIFAR-100 python archive, downloaded into ``kdlib_home()/"torchvision"``
  with torchvision's checksum checks and read with a restricted unpickler (kdlib.unpickle);
- the lossless archive (`.npz`, shared/data/README.md): CIFAR-100's exact 8-bit pixels with labels
  and file names, read with `allow_pickle=False`;
- a copy in class folders, as a directory tree or a .tar.gz (the older JPEG copy is one; JPEG is not
  CIFAR-100's pixels), decoded once (PIL, JPEG and PNG decoders only; its size bounded) and cached
  under ``kdlib_home()/"data"/<sha256 of the source>/``; a damaged cache is named in a warning,
  decoded again and rewritten.
Every source is put in the canonical order, by (label, file name without its extension) within each
split, and its data is identified by a fingerprint of its pixels, labels and class names
(`fingerprint`), not of its file: a build from torchvision's download and one from the lossless
archive use the same images for every subset and get the same run ids. `EXACT` is the fingerprint of
CIFAR-100 itself; data that differs (the JPEG copy) loads with a warning that says so.
"""

from __future__ import annotations

import hashlib
import importlib
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
from kdlib.unpickle import restricted_load

NUM_CLASSES = 100
SIZE = 32  # CIFAR image side

# CIFAR-100's fine labels, by id: alphabetical (the official meta file's fine_label_names).
CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")

# `fingerprint` of CIFAR-100 itself (its exact pixels and labels in the canonical order): what the
# lossless archive and torchvision's download both give.
EXACT = "e4700ccfb9a27f3f9925f15923d1c52e45125926c532a4ef23202edfcd683a53"

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CACHE_FILE = "arrays-v2.npz"  # decoded arrays of a class-folder copy; bump the version if decoding changes
_LAYOUT = ("a class-folder tree: <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg, "
           f"{NUM_CLASSES} class folders in each, {SIZE}x{SIZE} RGB images, optionally under one "
           "top folder (e.g. cifar100-jpg/)")
ALLOWED_SOURCES = ('"torchvision", the lossless archive (a .npz with train_x, train_y, train_names, test_x, '
                   'test_y, test_names), a class-folder tree, or a .tar.gz of one')
_NPZ_KEYS = ("train_x", "train_y", "train_names", "test_x", "test_y", "test_names")


def missing(name: str, source: str, also: str = "") -> FileNotFoundError:
    """The one error for a source that does not exist, naming the parameter `name` it came from and
    what may be given instead (`also`: another allowed value, e.g. the empty default)."""
    return FileNotFoundError(f"{name}={source!r} does not exist; allowed: {also + ', ' if also else ''}"
                             f"{ALLOWED_SOURCES} ({_LAYOUT})")


def read(source: str):
    """([train_x, train_y, test_x, test_y], classes, fingerprint) of a DataSpec.source.

    Arrays are numpy: x uint8 (N, 3, 32, 32), y int64 (N,), each split in the canonical order (by
    label, then file name). fingerprint: `fingerprint` of the arrays and classes (the data's
    identity, whichever source gave it); data other than CIFAR-100's exact pixels warns.
    """
    if source == "torchvision":
        arrays, classes = _load_torchvision()
    elif str(source).lower().endswith(".npz"):
        arrays, classes = _load_npz(source)
    else:
        arrays, classes = _load_local(source)
    fp = fingerprint(arrays, classes)
    if fp != EXACT and classes == list(CLASSES) and [len(a) for a in arrays] == [50_000, 50_000, 10_000, 10_000]:
        warnings.warn(f"DataSpec.source {source!r} holds all of CIFAR-100 but not its exact pixels (fingerprint "
                      f"{fp[:12]}, not {EXACT[:12]}): a lossy copy, such as JPEG, on which networks trained on the "
                      "real pixels lose accuracy; its numbers are not comparable with published ones",
                      stacklevel=3)
    return arrays, classes, fp


def fingerprint(arrays, classes) -> str:
    """sha256 of the data itself: each array's dtype, shape and bytes (train_x, train_y, test_x,
    test_y, in the canonical order) and the class names. The same for every source of the same data."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    h.update("\n".join(classes).encode())
    return h.hexdigest()


def canonical(x: np.ndarray, y: np.ndarray, names) -> tuple[np.ndarray, np.ndarray]:
    """x, y in the canonical order: by label, then by file name without its extension (a JPEG copy's
    "apple_s_000022.jpg" sorts where the original "apple_s_000022.png" does)."""
    stems = [os.path.splitext(str(n))[0] for n in names]
    order = sorted(range(len(y)), key=lambda i: (int(y[i]), stems[i]))
    return x[order], y[order]


# ---------------------------------------------------------------------------------------------
# torchvision's download: the official python archive

def _load_torchvision():
    """CIFAR-100 from the official python archive: downloaded and checked against its md5 sums by
    torchvision's helpers (the same URL and sums as torchvision.datasets.CIFAR100), then read with
    `read_cifar100_python`, never with plain pickle."""
    cifar = torchvision.datasets.CIFAR100
    root = kdlib_home() / "torchvision"
    folder = root / cifar.base_folder
    sums = {name: md5 for name, md5 in (*cifar.train_list, *cifar.test_list, (cifar.meta["filename"], cifar.meta["md5"]))}
    try:
        if not all(torchvision.datasets.utils.check_integrity(str(folder / n), md5) for n, md5 in sums.items()):
            torchvision.datasets.utils.download_and_extract_archive(cifar.url, str(root), filename=cifar.filename,
                                                                    md5=cifar.tgz_md5)
        bad = [n for n, md5 in sums.items() if not torchvision.datasets.utils.check_integrity(str(folder / n), md5)]
        if bad:
            raise RuntimeError(f"{', '.join(bad)} in {folder} failed their md5 check")
    except Exception as e:  # URLError, HTTPError, OSError, a checksum RuntimeError, ...
        raise RuntimeError(
            f"DataSpec(source='torchvision'): downloading CIFAR-100 into {root} failed ({e}). "
            "Pass a local copy as `source` (the lossless archive, e.g. ../shared/data/cifar100-lossless.npz, "
            "or a class-folder tree or .tar.gz) or set KDLIB_DATA to one.") from e
    return read_cifar100_python(folder)


def _numpy_reconstruct():
    """numpy's ndarray reconstructor, under whichever module name this numpy has."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except ImportError:
            continue
    raise ImportError("numpy has no multiarray._reconstruct")


def _cifar_globals() -> dict:
    """What the official CIFAR-100 pickles may name: numpy arrays (the pixels) and, in pickles written
    by Python 3 at protocol 2, codecs.encode for bytes. Nothing else."""
    reconstruct = _numpy_reconstruct()
    return {("numpy.core.multiarray", "_reconstruct"): reconstruct, ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): lambda text, encoding="latin1": text.encode(encoding)}


def _read_pickle(path: Path) -> dict:
    obj = restricted_load(path.read_bytes(), _cifar_globals(), f"the CIFAR-100 file {path}", encoding="latin1")
    if not isinstance(obj, dict):
        raise ValueError(f"the CIFAR-100 file {path} holds a {type(obj).__name__}, not a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar100_python(folder) -> tuple[list[np.ndarray], list[str]]:
    """([train_x, train_y, test_x, test_y], classes) from a folder in the official python format
    (`train`, `test`, `meta`: pickled dicts with 'data' (N, 3072) uint8, 'fine_labels' and 'filenames';
    'fine_label_names'), each split in the canonical order. Read with a restricted unpickler."""
    folder = Path(folder)
    meta = _read_pickle(folder / "meta")
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in meta["fine_label_names"]]
    _check_classes(classes, classes, str(folder))
    arrays = []
    for split in ("train", "test"):
        d = _read_pickle(folder / split)
        x = np.asarray(d["data"], dtype=np.uint8)
        y = np.asarray(d["fine_labels"], dtype=np.int64)
        names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in d["filenames"]]
        if x.ndim != 2 or x.shape[1] != 3 * SIZE * SIZE or not len(x) == len(y) == len(names):
            raise ValueError(f"the CIFAR-100 file {folder / split}: data {x.shape}, {len(y)} labels and "
                             f"{len(names)} file names do not describe one set of {SIZE}x{SIZE} RGB images")
        x, y = canonical(x.reshape(-1, 3, SIZE, SIZE), y, names)
        arrays += [np.ascontiguousarray(x), y]
    return arrays, classes


# ---------------------------------------------------------------------------------------------
# The lossless archive

def _load_npz(source: str):
    """The lossless archive: every array read with allow_pickle=False and checked, put in the
    canonical order (it is stored in it). Its labels are CIFAR-100's fine label ids (`CLASSES`)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise missing("DataSpec.source", source)
    try:
        with np.load(path, allow_pickle=False) as z:
            absent = [k for k in _NPZ_KEYS if k not in z.files]
            if absent:
                raise ValueError(f"lacks {absent}")
            got = {k: z[k] for k in _NPZ_KEYS}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"DataSpec.source {source!r} is not a readable lossless CIFAR-100 archive ({e}); expected "
                         f"a .npz with {', '.join(_NPZ_KEYS)} (shared/data/README.md)") from e
    arrays = []
    for split in ("train", "test"):
        x, y, names = got[f"{split}_x"], got[f"{split}_y"], got[f"{split}_names"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (SIZE, SIZE, 3) or not len(x) == len(y) == len(names):
            raise ValueError(f"DataSpec.source {source!r}: {split}_x is {x.dtype} {x.shape} with {len(y)} labels "
                             f"and {len(names)} names; expected uint8 (N, {SIZE}, {SIZE}, 3) with N of each")
        if not (np.issubdtype(y.dtype, np.integer) and len(y) and 0 <= y.min() and y.max() < NUM_CLASSES):
            raise ValueError(f"DataSpec.source {source!r}: {split}_y must hold label ids in 0..{NUM_CLASSES - 1}")
        x, y = canonical(x.transpose(0, 3, 1, 2), y.astype(np.int64), names)  # (N, 32, 32, 3) -> NCHW
        arrays += [np.ascontiguousarray(x), y]
    return arrays, list(CLASSES)


# ---------------------------------------------------------------------------------------------
# A copy in class folders (a tree, or a .tar.gz of one)

def _load_local(source: str):
    path = Path(source).expanduser()
    if path.is_dir():
        files = _read_tree(path)  # every load reads the tree: its content is the cache's key
        h = hashlib.sha256()
        for rel, data in files:
            h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        key, archive_bytes = h.hexdigest(), None
    elif path.is_file():
        archive_bytes = path.read_bytes()  # 19.5 MB for CIFAR-100; hashing takes ~0.05 s
        key, files = hashlib.sha256(archive_bytes).hexdigest(), None
    else:
        raise missing("DataSpec.source", source)

    cache = decoded_cache(key)
    if cache.exists():
        cached = _read_decoded(cache)
        if cached is not None:
            return cached

    if files is None:
        files = _read_archive(archive_bytes, source)
    arrays, classes = _decode(files, source)
    buffer = io.BytesIO()
    np.savez(buffer, train_x=arrays[0], train_y=arrays[1], test_x=arrays[2], test_y=arrays[3],
             classes=np.array(classes))
    # atomic: a reader sees either no cache file or a complete one, even if we are killed mid-write
    atomic_write_bytes(cache, buffer.getvalue())
    return arrays, classes


def decoded_cache(key: str) -> Path:
    """Where the decoded arrays of a class-folder copy whose bytes hash to `key` are kept."""
    return kdlib_home() / "data" / key / _CACHE_FILE


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
        entries = sorted(items[split], key=lambda e: (e[0], os.path.splitext(e[1])[0]))  # canonical order
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
