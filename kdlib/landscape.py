"""The loss landscape between two networks: test loss and agreement along the straight line (protocol §10).

The paper explains a student's infidelity by optimisation: the student settles in another basin than
its teacher's. The straight line between the two shows it directly: the network
`(1 - t) * a + t * b` (every parameter and buffer, kdlib.train.interpolate_state) for t from 0 (a) to
1 (b), each point's BatchNorm statistics re-estimated on training images (kdlib.train.refresh_batchnorm;
interpolated statistics do not describe interpolated weights), its test loss, accuracy and its
agreement with both ends. A barrier, loss above the straight line between the ends' losses, means
the two sit in different basins; none, that the student found its teacher's.

Lines are cached (JSON under ``kdlib_home()/"landscape"``), keyed by the two networks' weights, the
images and the points, so a warm build reads them in milliseconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdlib.evaluate import eval_batch, predict
from kdlib.files import CorruptFileError, kdlib_home, read_json, write_json
from kdlib.identity import canonical
from kdlib.train import TrainSet, augmented_batches, interpolate_state, refresh_batchnorm

POINTS = tuple(float(t) for t in np.linspace(0.0, 1.0, 7))  # t = 0, 1/6, ..., 1 (kdlib.scales: landscape_points)
IMAGES = 1000  # test images a point is evaluated on, and training images for its BatchNorm statistics
BN_SEED = 0  # the crops and flips of the training images each point's BatchNorm statistics are re-estimated on


def every_kth(n: int, count: int) -> torch.Tensor:
    """`count` indices spread over range(n): every k-th of a class-sorted set, so a class-balanced
    subset of it (the first of each run of k)."""
    step = max(1, n // count)
    return torch.arange(0, n, step)[:count]


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def line(a: nn.Module, b: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, bn_data: TrainSet | None = None,
         points: Sequence[float] = POINTS, device="cpu") -> list[dict]:
    """Per point t of `points`: the network (1 - t) a + t b, its BatchNorm statistics re-estimated on
    `bn_data` (training images, each in one seeded random crop and flip, as the networks saw them in
    training: statistics of clean images would shift every point, the ends included; required when the
    networks have BatchNorm), evaluated on (test_x, test_y): {"t", "loss" (mean NLL, nats),
    "accuracy", "agreement_a", "agreement_b"} (fractions), the agreements with the ends' own
    predictions as given. Both networks must be one architecture."""
    if a.state_dict().keys() != b.state_dict().keys():
        raise ValueError("a and b must be one architecture (the same parameter names)")
    if has_batchnorm(a) and bn_data is None:
        raise ValueError("bn_data (training images) is needed to re-estimate the BatchNorm statistics along the line")
    a_state = {k: v.detach().clone() for k, v in a.state_dict().items()}
    b_state = {k: v.detach().clone() for k, v in b.state_dict().items()}
    y = test_y.to(device)
    ends = [predict(net.to(device).eval(), test_x, device).argmax(1) for net in (a, b)]
    probe = a  # a's module, loaded with each point's weights in turn (a is restored at the end)
    out = []
    for t in points:
        probe.load_state_dict(interpolate_state(b_state, a_state, float(t)))
        if bn_data is not None and has_batchnorm(probe):
            refresh_batchnorm(probe, augmented_batches(bn_data, eval_batch(torch.device(device)), BN_SEED))
        logits = predict(probe.eval(), test_x, device)
        pred = logits.argmax(1)
        out.append({"t": float(t), "loss": float(F.cross_entropy(logits.float(), y)),
                    "accuracy": float((pred == y).float().mean()),
                    "agreement_a": float((pred == ends[0]).float().mean()),
                    "agreement_b": float((pred == ends[1]).float().mean())})
    a.load_state_dict(a_state)
    return out


def barrier(curve: Sequence[dict]) -> float:
    """How far the loss along the line rises above the straight line between its ends' losses (nats;
    0 when it never does): max over t of loss(t) - ((1 - t) loss(0) + t loss(1))."""
    first, last = curve[0]["loss"], curve[-1]["loss"]
    return max(0.0, max(p["loss"] - ((1 - p["t"]) * first + p["t"] * last) for p in curve))


def cached_line(key: dict, compute) -> list[dict]:
    """The line `key` identifies (the two networks' weights, the images, the points) from the cache,
    else `compute()`, cached. A damaged entry is computed again."""
    digest = hashlib.sha256(canonical(key)).hexdigest()[:24]
    path = kdlib_home() / "landscape" / f"{digest}.json"
    if path.exists():
        try:
            stored = read_json(path)
            if stored.get("key") == key:
                return stored["curve"]
        except (CorruptFileError, AttributeError):
            pass
    curve = compute()
    write_json(path, {"key": key, "curve": curve})
    return curve
