"""The exact teacher-logit cache: equal to the teachers on the fly up to float16, and what that costs the loss."""

import pytest
import torch
import torch.nn.functional as F

from kdlib import data as kdata
from kdlib import logit_cache as lcache
from kdlib.cache import RunCache
from kdlib.losses import Teacher, kd_loss
from kdlib.models import build_model


def _confident_member(seed: int):
    """A random PreResNet-20 with logits spread like a trained teacher's (log-probs down to ~-40)."""
    model = build_model("batch", seed).eval()
    with torch.no_grad():
        model.fc.weight.mul_(40.0)
    return model.to(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def teacher():
    return Teacher([_confident_member(1), _confident_member(2)])


@pytest.fixture(scope="module")
def padded():
    g = torch.Generator().manual_seed(0)
    return kdata.pad(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g))


@pytest.fixture(scope="module")
def built(teacher, padded):
    return lcache.build(teacher, padded, batch_size=400)  # 2 images (324 views) per forward pass


def _on_the_fly(teacher, padded, idx, views):
    """What the training loop computes: the teacher on exactly the student's view."""
    x = kdata.model_input(kdata.apply_views(padded[idx], views))
    return teacher(x)


def _assert_within_float16(cached, exact):
    # float16 rounding (<= 2^-11 relative), plus float32 noise from a different batch composition
    err = (cached - exact).abs()
    allowed = lcache.FLOAT16_EPS * exact.abs() + 1e-4
    assert (err <= allowed).all(), f"max excess {(err - allowed).max().item():.3g}"


def test_build_shape_dtype_and_range(built, padded):
    assert built.logits.shape == (len(padded), kdata.NUM_VIEWS, 100)
    assert built.logits.dtype == torch.float16 and built.nbytes == lcache.cache_bytes(len(padded))
    logp = built.logits.float()
    assert logp.max() <= 0 and logp.min() < -10  # log-probabilities of a confident teacher
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(len(padded), kdata.NUM_VIEWS), atol=2e-3, rtol=0)


def test_build_shows_its_progress(teacher, padded, built, tmp_path, monkeypatch):
    """A build reports images done, as training reports epochs (under the runner: events to a file)."""
    import json
    events = tmp_path / "progress.jsonl"
    monkeypatch.setenv("KDLIB_PROGRESS", str(events))
    cache = lcache.build(teacher, padded, batch_size=400, progress=True, desc="logit cache test")
    last = json.loads(events.read_text().splitlines()[-1])
    assert (last["bar"], last["unit"], last["n"], last["total"]) == ("logit cache test", "image", 6, 6)
    assert torch.equal(cache.logits, built.logits)


def test_every_view_of_an_image_matches_the_teacher(built, teacher, padded):
    views = torch.arange(kdata.NUM_VIEWS)
    for i in (0, 5):
        idx = torch.full((kdata.NUM_VIEWS,), i)
        _assert_within_float16(built.gather(idx, views), _on_the_fly(teacher, padded, idx, views))


def test_gathered_logits_equal_on_the_fly_on_random_batches(built, teacher, padded):
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        idx = torch.randint(0, len(padded), (16,), generator=g)
        views = kdata.random_views(16, g)
        cached = built.gather(idx, views)
        assert cached.dtype == torch.float32 and cached.shape == (16, 100)
        _assert_within_float16(cached, _on_the_fly(teacher, padded, idx, views))


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0, 8.0])
def test_kd_loss_from_cached_logits_is_within_the_stated_bound(tau):
    """float16 storage moves the KD loss by at most `kd_loss_error_bound` (first order), and that
    bound is ~1e-4 of the loss for teacher-like logits: the cache does not change what is optimised."""
    g = torch.Generator().manual_seed(2)
    for spread in (1.0, 5.0, 15.0, 30.0):  # from diffuse to very confident teachers
        teacher_logp = F.log_softmax(torch.randn(256, 100, generator=g) * spread, dim=-1)
        student = torch.randn(256, 100, generator=g) * 3
        cached = teacher_logp.to(torch.float16).float()
        exact_loss = kd_loss(student, teacher_logp, None, tau=tau)
        cached_loss = kd_loss(student, cached, None, tau=tau)
        bound = lcache.kd_loss_error_bound(teacher_logp, student, tau)
        err = (cached_loss - exact_loss).abs().item()
        assert err <= 1.25 * bound + 1e-6 * exact_loss.item(), (spread, err, bound)
        assert bound <= 1e-3 * exact_loss.item(), (spread, bound, exact_loss.item())
        # measured: float32 noise (< 1e-6 relative); the bound is a worst case over rounding signs


def test_use_logit_cache_rule():
    assert lcache.BREAK_EVEN_EPOCHS == kdata.NUM_VIEWS == 162
    assert not lcache.use_logit_cache("auto", 20, mixup=False)  # reduced scale: on the fly
    assert not lcache.use_logit_cache("auto", 161, mixup=False)
    assert lcache.use_logit_cache("auto", 162, mixup=False)
    assert lcache.use_logit_cache("auto", 300, mixup=False)  # the paper's students
    assert not lcache.use_logit_cache("auto", 300, mixup=True)  # not exact under MixUp
    assert lcache.use_logit_cache("on", 2, mixup=False)
    # "shared": whenever exact, for sweeps whose students share one stored cache (kdlib.scales)
    assert lcache.use_logit_cache("shared", 2, mixup=False)
    assert not lcache.use_logit_cache("shared", 300, mixup=True)  # no error: MixUp students run teachers
    assert not lcache.use_logit_cache("off", 300, mixup=False)
    with pytest.raises(ValueError, match="MixUp"):
        lcache.use_logit_cache("on", 300, mixup=True)
    with pytest.raises(ValueError, match="logit_cache must be one of"):
        lcache.use_logit_cache("yes", 300, mixup=False)


def test_stated_memory():
    assert lcache.cache_bytes(50_000) == 1_620_000_000  # the full CIFAR-100 training set
    assert lcache.cache_bytes(5_000) == 162_000_000  # 5,000 images of 100 classes
    assert lcache.cache_bytes(800, 20) == 5_184_000  # the reduced scale: 800 images of 20 classes


def test_load_or_build_stores_reuses_and_repairs(teacher, padded, built, tmp_path):
    folder = lcache.cache_folder(RunCache(tmp_path).root)
    ids = ["aaaa", "bbbb"]  # the teachers' weight checksums
    two = padded[:2]  # one forward pass, the same batch as the fixture's first: identical numbers
    expected = built.logits[:2]
    first, info = lcache.load_or_build(teacher, ids, two, folder, "fp32")
    assert info["source"] == "built" and info["bytes"] == lcache.cache_bytes(2)
    torch.testing.assert_close(first.logits, expected, rtol=0, atol=0)
    again, info = lcache.load_or_build(teacher, ids, two, folder, "fp32")
    assert info["source"] == "loaded"
    torch.testing.assert_close(again.logits, expected, rtol=0, atol=0)

    keys = {lcache.cache_key(ids, "fp32"), lcache.cache_key(ids, "bf16"), lcache.cache_key(ids[::-1], "fp32")}
    assert len(keys) == 3  # precision and the ensemble are part of the key
    path = folder / f"{lcache.cache_key(ids, 'fp32')}.pt"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.warns(UserWarning, match="rebuilding"):
        repaired, info = lcache.load_or_build(teacher, ids, two, folder, "fp32")
    assert info["source"] == "built"
    torch.testing.assert_close(repaired.logits, expected, rtol=0, atol=0)
    with pytest.warns(UserWarning, match="expected"):  # a cache of other images is not used
        _, info = lcache.load_or_build(teacher, ids, padded[:1], folder, "fp32")
    assert info["source"] == "built"


def test_a_cache_that_cannot_be_stored_still_serves_the_student(teacher, padded, built, tmp_path, monkeypatch):
    """A full disk while saving: the cache is exact in memory, so training goes on, with a warning."""
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(lcache, "save_tensors", full_disk)
    with pytest.warns(UserWarning, match="could not store it.*No space left.*training goes on"):
        cache, info = lcache.load_or_build(teacher, ["aaaa"], padded[:2], tmp_path / "caches", "fp32")
    assert info["source"] == "built"
    torch.testing.assert_close(cache.logits, built.logits[:2], rtol=0, atol=0)
    assert not list((tmp_path / "caches").glob("*.pt"))


def test_the_key_follows_the_teachers_weights(tmp_path):
    """A teacher retrained to other weights under the same run id must not bring back old targets:
    the key is made of the weights' checksums, not of run ids."""
    assert lcache.cache_key(["a" * 64], "fp32") != lcache.cache_key(["b" * 64], "fp32")
    assert lcache.cache_key(["a" * 64], "fp32") == lcache.cache_key(["a" * 64], "fp32")


def test_build_rejects_values_beyond_float16(padded):
    class Huge(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 100), -1e6)
    with pytest.raises(ValueError, match="float16"):
        lcache.build(Huge(), padded[:1])


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    runs = RunCache(tmp_path / "runs")
    monkeypatch.delenv("KDLIB_LOGIT_CACHE", raising=False)
    assert lcache.cache_folder(runs.root) == tmp_path / "runs" / "logit-cache"
    monkeypatch.setenv("KDLIB_LOGIT_CACHE", str(tmp_path / "shared"))
    assert lcache.cache_folder(runs.root) == tmp_path / "shared"
