"""Whole-set predictions and each run's final evaluation (protocol §5), in fp32 and eval mode."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdlib import data as kdata
from kdlib import metrics
from kdlib.losses import Teacher, ensemble_logits

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
        out.append(model(kdata.model_input(xb)).float())
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
        xb = kdata.model_input(x[i:i + batch_size].to(device))
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


# ---------------------------------------------------------------------------------------------
# A run's final evaluation

def teacher_logits(teacher: Teacher, teacher_runs: Sequence, split: str, x: torch.Tensor,
                   device: torch.device, views: torch.Tensor | None = None) -> torch.Tensor:
    """The teacher's fp32 logits on `split` (images x, with `views` for "train_aug"): the ensemble
    of what its member runs stored (`final_metrics`) when every member has them, else computed."""
    stored = [r.stored_logits(split) for r in teacher_runs]
    if stored and all(s is not None and len(s) == len(x) for s in stored):
        return ensemble_logits(torch.stack(stored).to(device))
    return predict(teacher, x, device, views=views)


# A history entry's test metrics: what `epoch_metrics` measures, and what a run's last entry copies
# from its final metrics (the same fp32 quantities of the same weights, measured once).
HISTORY_METRICS = ("test_acc", "test_nll", "test_agreement", "test_kl")


def epoch_metrics(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, teacher_test: torch.Tensor | None,
                  device: torch.device) -> dict:
    """A history entry's test metrics, in fp32 whatever the training precision, as the final metrics
    are: the claims read the history too (how far agreement rose over the last fifth of training),
    and bf16 rounding moved a student's agreement by up to 0.6 points at the reduced scale."""
    logits = predict(model, test_x, device)
    entry = {"test_acc": metrics.accuracy(logits, test_y), "test_nll": metrics.nll(logits, test_y)}
    if teacher_test is not None:
        entry.update(fidelity_metrics(teacher_test, logits, "test"))
    return entry


def history_part(final: dict) -> dict:
    """The final metrics a history entry carries (HISTORY_METRICS), for the run's last entry."""
    return {k: final[k] for k in HISTORY_METRICS if k in final}


def final_metrics(model: nn.Module, teacher: Teacher | None, dataset: kdata.Dataset,
                  device: torch.device, train_loss: float, teacher_test: torch.Tensor | None = None,
                  teacher_runs: Sequence = ()) -> tuple[dict, dict[str, torch.Tensor]]:
    """The run's final evaluation (protocol §5); all models in eval mode.

    Keys: test_/train_ acc, nll, ece (train = the clean training set); train_loss (the last epoch's,
    as given);
    for students also teacher_test_acc/nll/ece, test_agreement/kl, train_agreement/kl (clean
    training set), train_aug_agreement/kl (one fixed random crop+flip per training image, the
    paper's Fig. 5), and with a single teacher `cka`: linear CKA at the three stages on the
    fixed test subset `evaluate.cka_indices`. `teacher_test`: the teacher's test logits when the
    caller has them already (they are not recomputed). Always in fp32, whatever the training precision.

    Returns (metrics, logits by split): "test" for every run; a teacher also returns "train" and
    "train_aug", stored with it so that its students' final metrics read them (`teacher_runs`)
    instead of running every teacher over the training set again; the ensemble of stored member
    logits is the Teacher's own output, ensemble_logits. A student returns its predicted labels
    on those splits instead ("train_pred", "train_aug_pred"; `Run.predictions`).
    """
    train_x, train_y = dataset.train.x, dataset.train.y.to(device)
    test_x, test_y = dataset.test.x, dataset.test.y.to(device)
    views = augmented_views(len(train_x))
    test_logits = predict(model, test_x, device)
    train_logits = predict(model, train_x, device)
    aug_logits = predict(model, train_x, device, views=views)
    out = {**classification_metrics(test_logits, test_y, "test"),
           **classification_metrics(train_logits, train_y, "train"),
           "train_loss": train_loss}
    if teacher is None:
        return out, {"test": test_logits, "train": train_logits, "train_aug": aug_logits}

    def teacher_on(split: str, x: torch.Tensor, views: torch.Tensor | None) -> torch.Tensor:
        return teacher_logits(teacher, teacher_runs, split, x, device, views)

    if teacher_test is None:
        teacher_test = teacher_on("test", test_x, None)
    out.update(classification_metrics(teacher_test, test_y, "teacher_test"))
    out.update(fidelity_metrics(teacher_test, test_logits, "test"))
    out.update(fidelity_metrics(teacher_on("train", train_x, None), train_logits, "train"))
    out.update(fidelity_metrics(teacher_on("train_aug", train_x, views), aug_logits, "train_aug"))
    if len(teacher.members) == 1:
        subset = test_x[cka_indices(len(test_x))]
        out["cka"] = cka_by_stage(teacher.members[0], model, subset, device)
        out["cka_examples"] = len(subset)
    # predicted labels on the training set (not the logits: 40 MB a student at the paper scale)
    return out, {"test": test_logits, "train_pred": train_logits.argmax(1).short(),
                 "train_aug_pred": aug_logits.argmax(1).short()}
