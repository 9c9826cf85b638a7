"""Tests for kdlib.data: augmentation against a plain reference, subsets, loading, the real data."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from kdlib import data as kdata
from kdlib import sources as ksources
from kdlib.data import NUM_CLASSES, NUM_VIEWS, PAD, DataSpec

REAL_FINGERPRINT = ksources.EXACT  # CIFAR-100's exact pixels and labels, in the canonical order


# ---------------------------------------------------------------------------------------------
# Augmentation

def reference_views(img: torch.Tensor) -> dict[tuple[int, int, int], torch.Tensor]:
    """All crops/flips of one uint8 (3, 32, 32) image by plain loops: (dy, dx, flip) -> view."""
    padded = F.pad(img, (PAD, PAD, PAD, PAD))  # zero padding, as RandomCrop(padding=4)
    out = {}
    for dy in range(2 * PAD + 1):
        for dx in range(2 * PAD + 1):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            out[(dy, dx, 0)] = crop
            out[(dy, dx, 1)] = torch.flip(crop, dims=[2])
    return out


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_view_ids_are_a_bijection_onto_the_162_views():
    # 3072 distinct nonzero pixel values (int64), so every offset and flip gives a different image;
    # apply_views takes uint8, so it is applied to the two base-256 digits and they are recombined
    img = (torch.randperm(3 * 32 * 32, generator=torch.Generator().manual_seed(0)) + 1)
    img = img.reshape(3, 32, 32)
    ref = reference_views(img)
    views = torch.arange(NUM_VIEWS)
    lo, hi = (img % 256).to(torch.uint8), (img // 256).to(torch.uint8)
    out = [kdata.apply_views(kdata.pad(part[None].expand(NUM_VIEWS, -1, -1, -1)), views).long()
           for part in (lo, hi)]
    got = out[0] + 256 * out[1]  # (162, 3, 32, 32)
    for v in range(NUM_VIEWS):
        key = (v // 18, (v // 2) % 9, v % 2)
        assert torch.equal(got[v], ref[key]), key
    assert len({tuple(g.flatten().tolist()) for g in got}) == NUM_VIEWS


def test_every_augmented_image_is_one_of_its_162_views():
    x = random_images(8)
    refs = [torch.stack(list(reference_views(img).values())) for img in x]  # each (162, 3, 32, 32)
    g = torch.Generator().manual_seed(1)
    padded = kdata.pad(x)
    for _ in range(20):
        out = kdata.apply_views(padded, kdata.random_views(len(x), g))
        assert out.shape == (8, 3, 32, 32) and out.dtype == torch.uint8 and out.is_contiguous()
        for img, ref in zip(out, refs):
            assert (ref == img).flatten(1).all(1).sum() == 1


def test_pad_is_zero():
    x = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    p = kdata.pad(x)
    assert p.shape == (2, 3, 40, 40) and p.dtype == torch.uint8
    assert torch.equal(p, F.pad(x, (PAD,) * 4))
    border = torch.ones(40, 40, dtype=torch.bool)
    border[PAD:-PAD, PAD:-PAD] = False
    assert (p[:, :, border] == 0).all() and (p[:, :, ~border] == 200).all()
    assert kdata.normalize(p)[:, :, border].eq(-1).all()  # padding is black, -1 in unitcube


def test_random_views_cover_offsets_and_flip_half():
    v = kdata.random_views(50_000, torch.Generator().manual_seed(0), "cpu")
    assert v.dtype == torch.int64 and v.min() >= 0 and v.max() < NUM_VIEWS
    assert abs((v % 2).float().mean().item() - 0.5) < 0.01
    offsets = torch.stack([v // 18, (v // 2) % 9], 1)
    assert len({tuple(o) for o in offsets.tolist()}) == 81
    assert torch.bincount(v, minlength=NUM_VIEWS).min() > 200  # uniform: ~309 each
    # reproducible from the seed
    assert torch.equal(v, kdata.random_views(50_000, torch.Generator().manual_seed(0), "cpu"))


def test_bad_augmentation_inputs_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        kdata.pad(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="views"):
        kdata.apply_views(torch.zeros(2, 3, 40, 40, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="uint8"):
        kdata.normalize(torch.zeros(2))


def test_normalize_unitcube():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    out = kdata.normalize(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([-1.0, -0.6, 1.0]))
    assert out[0].item() == -1.0 and out[2].item() == 1.0


def test_mixup_formula_and_reproducible():
    x = torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mixed, perm, lam = kdata.mixup(x, torch.Generator().manual_seed(5))
    assert isinstance(lam, float) and 0.0 <= lam <= 1.0
    assert sorted(perm.tolist()) == list(range(16))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    mixed2, perm2, lam2 = kdata.mixup(x, torch.Generator().manual_seed(5))
    assert lam2 == lam and torch.equal(perm2, perm) and torch.equal(mixed2, mixed)
    lams = [kdata.mixup(x, torch.Generator().manual_seed(s))[2] for s in range(200)]
    assert 0.4 < np.mean(lams) < 0.6 and min(lams) < 0.1 and max(lams) > 0.9  # ~U(0, 1)


# ---------------------------------------------------------------------------------------------
# DataSpec and subsets

@pytest.mark.parametrize("field,value", [("train_per_class", 0), ("test_per_class", -1),
                                         ("train_per_class", 2.5), ("test_per_class", True),
                                         ("subset_seed", -1), ("subset_seed", None)])
def test_dataspec_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        DataSpec(**{field: value})


def labels(per_class: int) -> torch.Tensor:
    return torch.arange(NUM_CLASSES).repeat_interleave(per_class)


def test_subsets_are_balanced_and_deterministic():
    y = labels(10)
    split = kdata.Split(torch.arange(len(y)), y)  # x = original index, to see which were taken
    a = kdata._subset(split, 3, seed=0, field="train_per_class")
    assert len(a) == 300 and torch.equal(torch.bincount(a.y), torch.full((NUM_CLASSES,), 3))
    assert torch.equal(a.x, a.x.sort().values)  # canonical order kept
    assert torch.equal(a.y, y[a.x])
    assert torch.equal(kdata._subset(split, 3, seed=0, field="train_per_class").x, a.x)
    assert not torch.equal(kdata._subset(split, 3, seed=1, field="train_per_class").x, a.x)
    bigger = kdata._subset(split, 5, seed=0, field="train_per_class")
    assert set(a.x.tolist()) < set(bigger.x.tolist())  # nested for a fixed seed
    assert kdata._subset(split, None, seed=0, field="train_per_class") is split
    with pytest.raises(ValueError, match="test_per_class"):
        kdata._subset(split, 11, seed=0, field="test_per_class")


# ---------------------------------------------------------------------------------------------
# Loading from small synthetic class-folder trees and archives

def class_names(n=NUM_CLASSES):
    return [f"class{i:03d}" for i in range(n)]


def jpeg(red: int, green: int, size=(32, 32)) -> bytes:
    """A flat image: red encodes the class, green the file, so both survive JPEG (+-2)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (red, green, 0)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def synthetic_files(n_classes=NUM_CLASSES, n_train=2, n_test=1, top="", bad_size=False):
    """{relative path: bytes}; files named so that creation order != sorted order."""
    files = {}
    for c, name in enumerate(class_names(n_classes)):
        for split, n in (("train", n_train), ("test", n_test)):
            for k in reversed(range(n)):
                size = (31, 32) if bad_size and c == 7 else (32, 32)
                files[f"{top}{split}/{name}/img{k}.jpg"] = jpeg(2 * c, 60 * k + 30, size)
    files[f"{top}README.txt"] = b"not an image"
    return files


def write_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_tar(path, files):
    with tarfile.open(path, "w:gz") as tf:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def check_synthetic(ds, n_train=2, n_test=1):
    assert ds.classes == tuple(class_names())
    for split, n in ((ds.train, n_train), (ds.test, n_test)):
        assert split.x.shape == (NUM_CLASSES * n, 3, 32, 32) and split.x.dtype == torch.uint8
        assert split.x.is_contiguous() and split.y.dtype == torch.int64
        assert torch.equal(split.y, labels(n))  # sorted by class
        red, green = split.x[:, 0].float().mean((1, 2)), split.x[:, 1].float().mean((1, 2))
        assert (red - 2 * split.y).abs().max() <= 2
        k = torch.arange(n).repeat(NUM_CLASSES)  # sorted by file name within a class
        assert (green - (60 * k + 30)).abs().max() <= 2


def test_load_tree_and_archive(tmp_path, home):
    files = synthetic_files()
    tree = kdata.load(DataSpec(source=str(write_tree(tmp_path / "tree", files))))
    check_synthetic(tree)
    top = {"synth/" + k: v for k, v in files.items()}  # one top folder, like cifar100-jpg/
    archive = kdata.load(DataSpec(source=write_tar(tmp_path / "synth.tar.gz", top)))
    check_synthetic(archive)
    assert torch.equal(archive.train.x, tree.train.x)  # same decoded pixels either way
    assert archive.fingerprint == tree.fingerprint and len(archive.fingerprint) == 64  # so the same data id
    assert archive.cache_key() == {"fingerprint": archive.fingerprint, "train_per_class": None,
                                   "test_per_class": None, "subset_seed": 0}
    assert archive.fingerprint[:12] in archive.describe() and "200 train" in archive.describe()

    sub = kdata.load(DataSpec(source=str(tmp_path / "synth.tar.gz"), train_per_class=1,
                              subset_seed=3))
    assert len(sub.train) == 100 and len(sub.test) == 100
    assert torch.equal(sub.train.y, labels(1))
    assert sub.cache_key()["train_per_class"] == 1 and sub.cache_key()["subset_seed"] == 3
    with pytest.raises(ValueError, match="test_per_class"):
        kdata.load(DataSpec(source=str(tmp_path / "synth.tar.gz"), test_per_class=2))


def test_the_first_classes_only(tmp_path, home):
    """num_classes=K keeps labels 0..K-1 (the first K names), so networks get a K-way head; with a
    subset it is the all-class subset restricted to those classes (same seed, same images)."""
    source = str(write_tar(tmp_path / "synth.tar.gz", synthetic_files(n_train=3)))
    five = kdata.load(DataSpec(source=source, num_classes=5))
    assert five.num_classes == 5 and five.classes == tuple(class_names()[:5])
    assert torch.equal(five.train.y, torch.arange(5).repeat_interleave(3))
    assert five.cache_key()["num_classes"] == 5 and "num_classes" not in kdata.load(DataSpec(source=source)).cache_key()
    assert "the first 5 classes (class000 to class004)" in five.describe()
    everything = kdata.load(DataSpec(source=source, train_per_class=2, subset_seed=1))
    sub = kdata.load(DataSpec(source=source, train_per_class=2, subset_seed=1, num_classes=5))
    assert torch.equal(sub.train.x, everything.train.x[everything.train.y < 5])


@pytest.mark.parametrize("value", [1, 101, 2.5, True])
def test_dataspec_rejects_bad_num_classes(value):
    with pytest.raises(ValueError, match="num_classes"):
        DataSpec(num_classes=value)


def test_second_load_reads_the_cache(tmp_path, home, monkeypatch):
    files = synthetic_files()
    sources = [str(write_tree(tmp_path / "tree", files)),
               str(write_tar(tmp_path / "a.tar.gz", files))]
    first = [kdata.load(DataSpec(source=s)) for s in sources]
    assert len(list((home / "data").rglob("arrays-v2.npz"))) == 2  # one decoded cache per source
    assert not list(home.rglob("*.tmp"))  # no stray half-written files

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")
    monkeypatch.setattr(ksources, "_decode", no_decoding)
    monkeypatch.setattr(ksources, "_read_archive", no_decoding)
    for s, ds in zip(sources, first):
        again = kdata.load(DataSpec(source=s))
        assert again.fingerprint == ds.fingerprint and again.classes == ds.classes
        assert torch.equal(again.train.x, ds.train.x) and torch.equal(again.test.y, ds.test.y)


def test_fingerprint_follows_content(tmp_path, home):
    files = synthetic_files()
    tree = write_tree(tmp_path / "tree", files)
    before = kdata.load(DataSpec(source=str(tree)))
    (tree / "train/class005/img0.jpg").write_bytes(jpeg(200, 200))
    after = kdata.load(DataSpec(source=str(tree)))
    assert after.fingerprint != before.fingerprint
    assert not torch.equal(after.train.x, before.train.x)  # not served from the old cache

    a = kdata.load(DataSpec(source=write_tar(tmp_path / "a.tar.gz", files)))
    files["test/class000/img0.jpg"] = jpeg(0, 200)
    b = kdata.load(DataSpec(source=write_tar(tmp_path / "b.tar.gz", files)))
    assert a.fingerprint != b.fingerprint


def test_malformed_sources(tmp_path, home):
    missing = str(tmp_path / "nowhere.tar.gz")
    with pytest.raises(FileNotFoundError, match="source.*torchvision"):
        kdata.load(DataSpec(source=missing))
    few = write_tree(tmp_path / "few", synthetic_files(n_classes=99))
    with pytest.raises(ValueError, match="99 train.*class-folder tree"):
        kdata.load(DataSpec(source=str(few)))
    wrong_size = write_tar(tmp_path / "size.tar.gz", synthetic_files(bad_size=True))
    with pytest.raises(ValueError, match="31x32"):
        kdata.load(DataSpec(source=str(wrong_size)))
    not_tar = tmp_path / "junk.tar.gz"
    not_tar.write_bytes(b"junk")
    with pytest.raises(ValueError, match="tar"):
        kdata.load(DataSpec(source=str(not_tar)))
    stray = write_tree(tmp_path / "stray", {"img.jpg": jpeg(0, 0)})
    with pytest.raises(ValueError, match="train/<class>"):
        kdata.load(DataSpec(source=str(stray)))


def eps_bytes() -> bytes:
    """A minimal Encapsulated PostScript file: what a `.jpg` may hold to reach Ghostscript through PIL."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nnewpath 0 0 moveto 32 32 lineto stroke\n"
            b"showpage\n%%EOF\n")


def test_images_are_decoded_as_jpeg_or_png_only(tmp_path, home):
    """PIL picks its decoder by content: a `.jpg` holding EPS data would reach Ghostscript where it is
    installed. kdlib opens images with the JPEG and PNG decoders only, and names the file."""
    files = synthetic_files()
    files["train/class003/img1.jpg"] = eps_bytes()
    with pytest.raises(ValueError, match=r"train/class003/img1.jpg is not a JPEG or PNG image"):
        kdata.load(DataSpec(source=write_tar(tmp_path / "eps.tar.gz", files)))
    png = synthetic_files()
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (6, 90, 0)).save(buf, format="PNG")
    png["train/class003/img1.jpg"] = buf.getvalue()  # a PNG under a .jpg name is a fine image
    assert len(kdata.load(DataSpec(source=write_tar(tmp_path / "png.tar.gz", png))).train) == 200


def test_sources_are_bounded_and_the_file_is_named(tmp_path, home, monkeypatch):
    files = synthetic_files()
    files["train/class001/huge.jpg"] = b"\0" * (ksources.MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match=r"train/class001/huge.jpg holds 1,048,577 bytes"):
        kdata.load(DataSpec(source=write_tar(tmp_path / "huge.tar.gz", files)))
    with pytest.raises(ValueError, match=r"train/class001/huge.jpg holds"):
        kdata.load(DataSpec(source=str(write_tree(tmp_path / "huge", files))))
    monkeypatch.setattr(ksources, "MAX_FILES", 50)
    with pytest.raises(ValueError, match="more than 50 files"):
        kdata.load(DataSpec(source=write_tar(tmp_path / "many.tar.gz", synthetic_files())))
    monkeypatch.setattr(ksources, "MAX_FILES", 10**6)
    monkeypatch.setattr(ksources, "MAX_TOTAL_BYTES", 10_000)
    with pytest.raises(ValueError, match="more than 10,000 bytes in all"):
        kdata.load(DataSpec(source=write_tar(tmp_path / "big.tar.gz", synthetic_files())))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_a_damaged_decoded_cache_is_rebuilt_and_named(tmp_path, home, damage):
    """The decoded arrays are a cache: a damaged file (BadZipFile, a CRC error...) is named in a
    warning, decoded again from the source and rewritten, not a failure of every later load."""
    source = write_tar(tmp_path / "synth.tar.gz", synthetic_files())
    first = kdata.load(DataSpec(source=str(source)))
    (cached,) = (home / "data").rglob("arrays-*.npz")
    raw = bytearray(cached.read_bytes())
    if damage == "truncate":
        cached.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "garbage":
        cached.write_bytes(b"not an npz at all")
    else:
        raw[len(raw) // 3] ^= 0xFF  # inside the pixels: the member's CRC fails
        cached.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=rf"decoded-data cache {cached} is damaged"):
        again = kdata.load(DataSpec(source=str(source)))
    assert torch.equal(again.train.x, first.train.x) and torch.equal(again.test.y, first.test.y)
    third = kdata.load(DataSpec(source=str(source)))  # rewritten: no warning now
    assert torch.equal(third.train.x, first.train.x)


def test_torchvision_download_failure_is_explained(home, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match="KDLIB_DATA"):
        kdata.load(DataSpec())


def official_format(folder, per_class=(3, 2), seed=0):
    """A small archive in the official python format (train, test, meta: pickled dicts, written at
    protocol 2 as the originals), its images shuffled out of the canonical order. Returns, per split,
    the images (N, 3, 32, 32), labels and file names in the canonical order, for comparison."""
    folder.mkdir(parents=True)
    g = np.random.default_rng(seed)
    canonical = {}
    for split, n in zip(("train", "test"), per_class):
        y = np.repeat(np.arange(NUM_CLASSES), n)
        names = [f"{ksources.CLASSES[c]}_s_{g.integers(10**6):06d}.png" for c in y]
        x = g.integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8)
        order = sorted(range(len(y)), key=lambda i: (y[i], names[i]))
        canonical[split] = (x[order], y[order], [names[i] for i in order])
        shuffled = g.permutation(len(y))
        record = {"filenames": [names[i] for i in shuffled], "batch_label": f"{split} batch",
                  "fine_labels": y[shuffled].tolist(), "coarse_labels": [0] * len(y),
                  "data": x[shuffled].reshape(len(y), -1)}
        (folder / split).write_bytes(pickle.dumps(record, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": list(ksources.CLASSES),
                                                "coarse_label_names": ["x"] * 20}, protocol=2))
    return canonical


def lossless_archive(path, canonical, shuffle_seed=None):
    """The same images as a lossless archive (.npz, NHWC), optionally out of order."""
    arrays = {}
    for split, (x, y, names) in canonical.items():
        order = np.arange(len(y)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(y))
        arrays.update({f"{split}_x": x[order].transpose(0, 2, 3, 1), f"{split}_y": y[order].astype(np.uint8),
                       f"{split}_names": np.array(names)[order]})
    np.savez_compressed(path, **arrays)
    return str(path)


def test_every_source_gives_the_canonical_order_and_one_data_id(home, monkeypatch):
    """torchvision's download (the official pickles, in their own order) and the lossless archive hold
    the same images: both load in the canonical (label, file name) order, with one fingerprint, so a
    subset holds the same images and the runs the same ids whichever source a build used."""
    import torchvision

    canonical = official_format(home / "torchvision" / "cifar-100-python")
    monkeypatch.setattr(torchvision.datasets.utils, "check_integrity", lambda path, md5=None: True)
    official = kdata.load(DataSpec())
    for split in ("train", "test"):
        x, y, _ = canonical[split]
        assert torch.equal(getattr(official, split).x, torch.from_numpy(x))
        assert torch.equal(getattr(official, split).y, torch.from_numpy(y).long())
    assert official.classes == ksources.CLASSES
    npz = kdata.load(DataSpec(source=lossless_archive(home / "cifar.npz", canonical, shuffle_seed=1)))
    assert npz.fingerprint == official.fingerprint and torch.equal(npz.train.x, official.train.x)
    a = kdata.load(DataSpec(train_per_class=2, test_per_class=1, subset_seed=4))
    b = kdata.load(DataSpec(source=str(home / "cifar.npz"), train_per_class=2, test_per_class=1, subset_seed=4))
    assert a.cache_key() == b.cache_key() and torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


def test_the_official_pickles_are_read_without_running_their_code(home, monkeypatch):
    """A pickle that names anything but numpy's array reconstruction is refused, naming the global."""
    import torchvision

    folder = home / "torchvision" / "cifar-100-python"
    official_format(folder, per_class=(1, 1))

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned > " + str(home / "pwned"),))
    (folder / "test").write_bytes(pickle.dumps({"data": Evil(), "fine_labels": [], "filenames": []}, protocol=2))
    monkeypatch.setattr(torchvision.datasets.utils, "check_integrity", lambda path, md5=None: True)
    with pytest.raises(pickle.UnpicklingError, match=r"asks for posix.system, which is not allowed"):
        kdata.load(DataSpec())
    assert not (home / "pwned").exists()


def test_a_lossless_archive_is_checked(tmp_path, home):
    canonical = official_format(tmp_path / "official", per_class=(1, 1))
    good = lossless_archive(tmp_path / "good.npz", canonical)
    assert len(kdata.load(DataSpec(source=good)).train) == NUM_CLASSES
    arrays = dict(np.load(good))
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in arrays.items() if k != "test_names"})
    with pytest.raises(ValueError, match=r"lacks \['test_names'\]"):
        kdata.load(DataSpec(source=str(tmp_path / "missing.npz")))
    np.savez(tmp_path / "objects.npz", **{**arrays, "train_names": np.array([object()] * NUM_CLASSES)})
    with pytest.raises(ValueError, match="not a readable lossless CIFAR-100 archive"):  # allow_pickle=False
        kdata.load(DataSpec(source=str(tmp_path / "objects.npz")))
    np.savez(tmp_path / "float.npz", **{**arrays, "train_x": arrays["train_x"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"train_x is float32"):
        kdata.load(DataSpec(source=str(tmp_path / "float.npz")))
    np.savez(tmp_path / "labels.npz", **{**arrays, "test_y": arrays["test_y"] + 100})
    with pytest.raises(ValueError, match=r"test_y must hold label ids in 0..99"):
        kdata.load(DataSpec(source=str(tmp_path / "labels.npz")))


# ---------------------------------------------------------------------------------------------
# The real offline CIFAR-100 copy (skipped when absent)

def test_real_cifar100(cifar_real, cifar_real_source):
    """The lossless copy: CIFAR-100's exact pixels (shared/data/README.md's checks)."""
    ds = cifar_real
    assert ds.fingerprint == REAL_FINGERPRINT and "its exact pixels" in ds.describe()
    assert len(ds.train) == 50_000 and len(ds.test) == 10_000
    assert ds.train.x.shape == (50_000, 3, 32, 32) and ds.train.x.dtype == torch.uint8
    assert len(ds.classes) == 100 and ds.classes[0] == "apple" and ds.classes[99] == "worm"
    assert ds.classes[1] == "aquarium_fish"
    assert torch.equal(torch.bincount(ds.train.y), torch.full((100,), 500))
    assert torch.equal(torch.bincount(ds.test.y), torch.full((100,), 100))
    assert torch.equal(ds.train.y, labels(500))  # sorted by class
    for split, expected in ((ds.train, [0.5071, 0.4865, 0.4409]), (ds.test, [0.5088, 0.4874, 0.4419])):
        means = split.x.float().mean((0, 2, 3)) / 255  # shared/data/README.md: the canonical values
        torch.testing.assert_close(means, torch.tensor(expected), atol=1e-4, rtol=0)

    sub = kdata.load(DataSpec(source=cifar_real_source, train_per_class=10, test_per_class=5))
    assert len(sub.train) == 1000 and len(sub.test) == 500 and sub.fingerprint == REAL_FINGERPRINT
    assert torch.equal(torch.bincount(sub.train.y), torch.full((100,), 10))


# ---------------------------------------------------------------------------------------------
# The default source: one rule for the notebooks, kdlib-report, `make report` and kdlib.claims

@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project layout: tmp/repo is the cwd, tmp/shared/data/cifar100-lossless.npz a small fake file."""
    monkeypatch.delenv("KDLIB_DATA", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    return tmp_path


def test_default_source_is_the_offline_copy_beside_the_repository(project):
    assert kdata.default_source() == "torchvision"  # no offline copy yet
    copy = project / "shared" / "data" / "cifar100-lossless.npz"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"not really an archive")
    # relative, as given: no machine paths in messages or records
    assert kdata.default_source() == kdata.OFFLINE_COPY == "../shared/data/cifar100-lossless.npz"


def test_kdlib_data_wins_over_the_offline_copy(project, monkeypatch):
    copy = project / "shared" / "data" / "cifar100-lossless.npz"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"fake")
    monkeypatch.setenv("KDLIB_DATA", "/somewhere/cifar")
    assert kdata.default_source() == "/somewhere/cifar"
    monkeypatch.setenv("KDLIB_DATA", "torchvision")
    assert kdata.default_source() == "torchvision"
    monkeypatch.setenv("KDLIB_DATA", "")  # set but empty: as if unset
    assert kdata.default_source() == kdata.OFFLINE_COPY


def test_default_source_without_either_is_torchvision(project):
    (project / "shared" / "data").mkdir(parents=True)  # the folder, but no archive in it
    assert kdata.default_source() == "torchvision"


def test_open_experiment_finds_the_offline_copy(project):
    """data="" in a notebook means default_source(): the offline copy, named relative."""
    from kdlib import experiments as ex
    from kdlib.parameters import Parameters

    copy = project / "shared" / "data" / "cifar100-lossless.npz"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"not an archive")
    with pytest.raises(Exception, match="cifar100-lossless.npz") as info:
        ex.open_experiment(Parameters("tiny", "", "cpu"))
    assert not isinstance(info.value, FileNotFoundError)  # it was found, and read
