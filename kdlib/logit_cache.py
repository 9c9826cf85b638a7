"""The exact teacher-logit cache: a teacher's logits for every augmented view, computed once.

A student step needs its teachers' prediction on exactly the view it trains on (protocol §3). With the
protocol §1 augmentation there are only 162 views of each image (9 x 9 crop offsets x 2 flips, view ids
as in `data.apply_views`), so the teachers' logits for all views of all training images can be
computed once and gathered by (image index, view id) in each step, instead of running every
teacher on every batch.

Exactness. The cache holds what `losses.Teacher.forward` returns for each view, the ensemble's
log-probabilities log(mean_i softmax(z_i)), computed in the run's precision and stored in float16.
Gathered logits equal the on-the-fly ones up to that rounding: relative error <= 2^-11 per entry
(`kd_loss_error_bound` turns it into a bound on the loss; tests/test_logit_cache.py checks both).
It is not exact under MixUp (a mixed image is not one of the 162 views), so MixUp students run
their teachers on the fly.

Why float16, not bfloat16. The entries are log-probabilities: <= 0, near 0 for the likely classes
and down to about -60 for the unlikely ones of a confident teacher. float16 covers +-65504 with 11
significant bits, bfloat16 has 8: for the same 2 bytes float16 is 8x more precise, and its range
is ample (`build` fails loudly if an entry would overflow). Storing log-probabilities rather than
raw logits also puts the finest resolution where the probability mass is, and changes nothing
else: softmax(log_softmax(z) / tau) = softmax(z / tau).

Cost. Building takes 162 teacher forward passes per training image and member; on the fly, a
student pays one per image and member per epoch. So a single student recovers the cost after 162
epochs (`BREAK_EVEN_EPOCHS`), and `use_logit_cache("auto", ...)` uses the cache for the paper's
300-epoch students and not for short runs; "shared" uses it whenever it is exact, for sweeps whose
students of the same teachers together train that long (the reduced scale's). The cache is stored, checksummed, under
`<runs>/logit-cache/<key>.pt` ($KDLIB_LOGIT_CACHE overrides the folder, e.g. one that workers
training in private run caches share), keyed by the sha256 of the teachers' weights, so every
later student of the same teachers gets it for the price of a load (E1, E3, E4 and E6 all distil teacher 0; E2's
m = 5 and E5 share the five-teacher ensemble).

Memory. N x 162 x C x 2 bytes on the training device (`cache_bytes`): 1.62 GB for the 50,000
CIFAR-100 training images, 5.2 MB for the reduced scale's 800 (20 classes), 16 MB for the tiny
scale's 500.
Writing it to disk briefly needs about three more copies in host memory (kdlib.files.save_tensors).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import filelock
import torch
from torch import nn
import torch.nn.functional as F

from kdlib import data as kdata
from kdlib.files import CorruptFileError, load_tensors, save_tensors
from kdlib.progress import Progress

MODES = ("auto", "shared", "on", "off")
STORAGE_DTYPE = torch.float16
# float16 unit roundoff: round-to-nearest moves a normal number t by at most 2^-11 |t|.
FLOAT16_EPS = 2.0 ** -11
# Building costs NUM_VIEWS forward passes per image and member, a student epoch on the fly one:
# the cache pays for itself from this many student epochs on (one student, nothing shared).
BREAK_EVEN_EPOCHS = kdata.NUM_VIEWS
# Bump when what the cache holds changes, so stored caches are rebuilt.
FORMAT_VERSION = 2  # 2: keyed by the teachers' weights
# Views per teacher forward while building. On CPU small batches are fastest (they stay in cache:
# 944 img/s at 162 vs 402 at 1024, one thread); the GPU wants large ones.
BUILD_BATCH = {"cuda": 8192, "cpu": kdata.NUM_VIEWS}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"logit_cache must be one of {MODES}, got {mode!r}")
    return mode


def use_logit_cache(mode: str, epochs: int, mixup: bool) -> bool:
    """Whether a student gathers its teacher logits from the cache (True) or runs them on the fly.

    "off": never. "on": always; an error with MixUp, where a cache cannot be exact.
    "auto": when it is exact (no MixUp) and it pays for one student on its own:
    epochs >= BREAK_EVEN_EPOCHS (162). Paper students (300 epochs) use it.
    "shared": whenever it is exact (no MixUp): for a sweep in which the students of each teacher
    set train, together, for at least BREAK_EVEN_EPOCHS epochs, so that one stored cache pays
    across them (a scale says so: kdlib.scales.Scale.logit_cache).
    The rule depends only on the run's configuration and the mode, never on whether a cache happens
    to be stored already, so it decides a run's key deterministically (kdlib.identity.RunKey).
    """
    check_mode(mode)
    if mode == "off":
        return False
    if mixup:
        if mode == "on":
            raise ValueError("logit_cache='on' cannot be used with MixUp: a mixed image is not one of "
                             "the 162 cached views; use 'auto' or 'off' (teachers then run on the fly)")
        return False
    return mode in ("on", "shared") or epochs >= BREAK_EVEN_EPOCHS


def cache_bytes(n_images: int, num_classes: int = kdata.NUM_CLASSES) -> int:
    """Size of the cache in bytes: N x 162 x C x 2 (1.62 GB for 50,000 CIFAR-100 images)."""
    return n_images * kdata.NUM_VIEWS * num_classes * torch.finfo(STORAGE_DTYPE).bits // 8


@dataclass(frozen=True, eq=False)
class LogitCache:
    """Teacher log-probabilities for every (training image, view)."""

    logits: torch.Tensor  # float16 (N, NUM_VIEWS, C), on the training device

    def gather(self, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """float32 (B, C): the teachers' log-probabilities on view views[b] of image idx[b].

        One advanced-indexing gather on the device: no host synchronisation.
        """
        return self.logits[idx, views].float()

    @property
    def nbytes(self) -> int:
        return self.logits.numel() * self.logits.element_size()


@torch.no_grad()
def build(teacher: nn.Module, padded: torch.Tensor, batch_size: int | None = None,
          context=None, progress: bool = False, desc: str = "logit cache") -> LogitCache:
    """Run `teacher` on all 162 views of every padded training image (N, 3, 40, 40) uint8.

    `teacher` returns (B, C) log-probabilities (a `losses.Teacher`); `context` is the forward-pass
    context of the run (its autocast; default none), so the cache holds what the training loop
    would have computed. Views go through the same gather, normalisation and memory format as
    in training. Raises if an entry does not fit float16.
    progress: show a bar over the images (kdlib.progress, as training's epoch bars): a build takes
    minutes, during which no run's epoch moves.
    """
    device = padded.device
    batch_size = batch_size or BUILD_BATCH.get(device.type, BUILD_BATCH["cpu"])
    per_chunk = max(1, batch_size // kdata.NUM_VIEWS)  # images per forward pass
    all_views = torch.arange(kdata.NUM_VIEWS, device=device)
    out = None
    with Progress(len(padded), desc, unit="image", enabled=progress) as bar:  # closed on an error too
        for i in range(0, len(padded), per_chunk):
            chunk = padded[i:i + per_chunk]  # (b, 3, 40, 40)
            b = len(chunk)
            x = kdata.apply_views(chunk.repeat_interleave(kdata.NUM_VIEWS, dim=0), all_views.repeat(b))
            x = kdata.model_input(x)  # (b * 162, 3, 32, 32)
            with context if context is not None else nullcontext():
                z = teacher(x).float()  # (b * 162, C)
            if out is None:
                out = torch.empty(len(padded), kdata.NUM_VIEWS, z.shape[1], dtype=STORAGE_DTYPE, device=device)
            out[i:i + b] = z.view(b, kdata.NUM_VIEWS, -1).to(STORAGE_DTYPE)
            bar.update(b)
    if out is None:
        raise ValueError("padded holds no images")
    if not torch.isfinite(out).all():  # one host synchronisation, once per cache
        raise ValueError("the teachers' log-probabilities do not fit float16 (|value| > 65504 or not "
                         "finite); train with logit_cache='off'")
    return LogitCache(out)


def cache_key(teacher_weights: Sequence[str], precision: str) -> str:
    """Identifies a stored cache: the sha256 of each teacher's weights (what its logits are a function
    of: a teacher retrained to other weights under the same run id gets a new cache) and the precision."""
    payload = {"format": FORMAT_VERSION, "teacher_weights": list(teacher_weights), "precision": precision,
               "views": f"pad{kdata.PAD}-crop{kdata.SIZE}-flip", "dtype": str(STORAGE_DTYPE)}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def cache_folder(runs_root: Path) -> Path:
    """Where stored caches live: $KDLIB_LOGIT_CACHE, else <runs root>/logit-cache."""
    return Path(os.environ["KDLIB_LOGIT_CACHE"]).expanduser() if os.environ.get("KDLIB_LOGIT_CACHE") \
        else Path(runs_root) / "logit-cache"


def load_or_build(teacher: nn.Module, teacher_weights: Sequence[str], padded: torch.Tensor, folder: Path,
                  precision: str, context=None, progress: bool = False) -> tuple[LogitCache, dict]:
    """The stored cache for these teachers' weights and precision in `folder`, else built now and stored.

    Returns (cache, info) with info = {"key", "source": "loaded" | "built", "seconds", "bytes"}.
    A file lock per key makes a second process (or thread) wait for the first one's cache. A damaged
    or mismatched file is rebuilt with a warning; when the built cache cannot be stored (a full disk,
    say) training goes on with it in memory, with a warning. progress: a bar while it is built.
    """
    key = cache_key(teacher_weights, precision)
    path = Path(folder) / f"{key}.pt"
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(path.parent / f".{key}.lock"):
        if path.exists():
            try:
                logits = load_tensors(path, map_location=padded.device)["logits"]
                if logits.dtype != STORAGE_DTYPE or tuple(logits.shape[:2]) != (len(padded), kdata.NUM_VIEWS):
                    raise CorruptFileError(f"{path} holds {logits.dtype} {tuple(logits.shape)}, expected "
                                           f"{STORAGE_DTYPE} ({len(padded)}, {kdata.NUM_VIEWS}, C)")
                cache = LogitCache(logits)
                return cache, {"key": key, "source": "loaded", "seconds": round(time.perf_counter() - t0, 2),
                               "bytes": cache.nbytes}
            except (CorruptFileError, KeyError) as e:
                warnings.warn(f"logit cache {key}: rebuilding a damaged stored cache ({e})")
        cache = build(teacher, padded, context=context, progress=progress, desc=f"logit cache {key[:8]}")
        try:
            save_tensors(path, {"logits": cache.logits.cpu(), "teacher_weights": list(teacher_weights),
                                "precision": precision, "format": FORMAT_VERSION})
        except OSError as e:  # the cache is exact in memory: a failed save only costs a later rebuild
            warnings.warn(f"logit cache {key}: could not store it in {path.parent} ({e}); training goes on "
                          "with the cache in memory, and a later student rebuilds it")
    return cache, {"key": key, "source": "built", "seconds": round(time.perf_counter() - t0, 2),
                   "bytes": cache.nbytes}


def kd_loss_error_bound(teacher_logp: torch.Tensor, student_logits: torch.Tensor, tau: float) -> float:
    """First-order bound on |kd_loss(fp16(t)) - kd_loss(t)| for teacher log-probabilities t (B, C).

    With u = t / tau, p = softmax(u) and s = log_softmax(z_s / tau), the soft term is
    L = -tau^2 mean_b sum_j p_j s_j and dL/du_j = -tau^2 p_j (s_j - sum_k p_k s_k) per example.
    float16 moves u_j by at most FLOAT16_EPS |t_j| / tau, so to first order
        |dL| <= tau * FLOAT16_EPS * mean_b sum_j p_j |t_j| |s_j - s_bar|.
    Unlikely classes, whose |t_j| and rounding are largest, carry tiny p_j: the bound stays small
    (~1e-4 relative for trained-teacher-like logits at tau = 4).
    """
    t = teacher_logp.float()
    p = F.softmax(t / tau, dim=-1)
    s = F.log_softmax(student_logits.float() / tau, dim=-1)
    s_bar = (p * s).sum(dim=-1, keepdim=True)
    return float(tau * FLOAT16_EPS * (p * t.abs() * (s - s_bar).abs()).sum(dim=-1).mean())
