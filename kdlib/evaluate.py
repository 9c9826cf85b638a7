"""Whole-set predictions and the metrics recorded for each run (protocol §5)."""

from __future__ import annotations

import torch
from torch import nn

from kdlib import data as kdata
from kdlib import metrics

# Images per forward pass in evaluation. On CPU small batches are fastest (activations stay in
# cache: 900 img/s at 128-200 vs 400 at 1000, one thread); the GPU wants large ones. Outputs do
# not depend on it (every layer is per-example in eval mode; checked bit-identical on CPU).
EVAL_BATCH = {"cuda": 2500, "cpu": 200}
# CKA uses a fixed, class-balanced subset of the test set: every k-th image of the canonical
# (class-sorted) order, at most this many images (1,000 = 10 per class on the full test set).
CKA_EXAMPLES = 1000
# Seed of the one fixed set of random crops/flips used for train agreement on augmented data.
AUGMENTED_EVAL_SEED = 1234


def eval_batch(device: torch.device) -> int:
    return EVAL_BATCH.get(torch.device(device).type, EVAL_BATCH["cpu"])


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, views: torch.Tensor | None = None,
            batch_size: int | None = None) -> torch.Tensor:
    """Logits (N, C) float32 for uint8 images x (N, 3, 32, 32), model in eval mode.

    With `views` (N,) the images are first augmented by those crop/flip views (protocol §1).
    The caller's train/eval mode is restored afterwards. batch_size: default `eval_batch(device)`.
    """
    batch_size = batch_size or eval_batch(device)
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        if views is not None:
            xb = kdata.apply_views(kdata.pad(xb), views[i:i + batch_size].to(device))
        out.append(model(kdata.normalize(xb).contiguous(memory_format=torch.channels_last)).float())
    model.train(was_training)
    return torch.cat(out)


def cka_indices(n_test: int) -> torch.Tensor:
    step = max(1, n_test // CKA_EXAMPLES)
    return torch.arange(0, n_test, step)[:CKA_EXAMPLES]


@torch.no_grad()
def stage_features(model: nn.Module, x: torch.Tensor, device: torch.device,
                   batch_size: int = 250) -> list[torch.Tensor]:
    """The three stage outputs for uint8 images x, flattened per example: [(N, d1), (N, d2), (N, d3)].

    Flattened in (C, H, W) order whatever the memory format (channels_last runs faster on CPU).
    """
    model.eval()
    chunks = [[], [], []]
    for i in range(0, len(x), batch_size):
        xb = kdata.normalize(x[i:i + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        for c, f in zip(chunks, model.stage_features(xb)):
            c.append(f.flatten(1).float().cpu())
    return [torch.cat(c) for c in chunks]


def cka_by_stage(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, device: torch.device) -> list[float]:
    """Linear CKA between two models' stage features on images x (protocol §5)."""
    fa, fb = stage_features(model_a, x, device), stage_features(model_b, x, device)
    return [metrics.linear_cka(a, b) for a, b in zip(fa, fb)]


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str) -> dict:
    return {f"{prefix}_acc": metrics.accuracy(logits, labels),
            f"{prefix}_nll": metrics.nll(logits, labels),
            f"{prefix}_ece": metrics.ece(logits, labels)}


def fidelity_metrics(teacher_logits: torch.Tensor, student_logits: torch.Tensor, prefix: str) -> dict:
    return {f"{prefix}_agreement": metrics.agreement(teacher_logits, student_logits),
            f"{prefix}_kl": metrics.kl(teacher_logits, student_logits)}


def augmented_views(n: int) -> torch.Tensor:
    """One fixed random view per training image, the same for every run."""
    g = torch.Generator().manual_seed(AUGMENTED_EVAL_SEED)
    return kdata.random_views(n, g, torch.device("cpu"))
