"""Figures the chapters share: a run's metric over the epochs of its training (E1, E3, E6), a
reliability diagram (B5) and a page of test images with two networks' top classes (B6)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from kdlib import metrics


def history_series(run, key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of `key` in a run's history, skipping epochs where it was not measured."""
    pts = [(h["epoch"], h[key]) for h in run.history if key in h and not (isinstance(h[key], float) and math.isnan(h[key]))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_history(ax, run, key: str, scale: float = 1.0, *fmt: str, **style):
    """Plot `key` x scale (100: a fraction as %) of `run` over the epochs it was measured at, on the
    matplotlib axes `ax`; `fmt` and `style` go to `ax.plot` as they are."""
    epochs, values = history_series(run, key)
    return ax.plot(epochs, [scale * v for v in values], *fmt, **style)


def agreement_and_loss(agreement_ax, loss_ax, run, color: str, label: str | None = None) -> None:
    """A student's test agreement with its teacher (%, dots) and its training loss (the KD objective,
    line) over the epochs, in one colour (E3's and E6's curves)."""
    plot_history(agreement_ax, run, "test_agreement", 100, "o-", ms=3, c=color, label=label)
    plot_history(loss_ax, run, "train_loss", 1.0, "-", c=color, label=label)


def reliability_diagram(ax, logits, labels, label: str, color: str, n_bins: int = 10) -> None:
    """Accuracy against confidence per bin of `kdlib.metrics.reliability` (markers sized by the
    bin's share of the images), with the diagonal of perfect calibration, on the axes `ax`."""
    bins = metrics.reliability(logits, torch.as_tensor(labels), n_bins)
    full = bins["count"] > 0
    count = bins["count"][full]
    conf, acc = (bins["confidence"][full] / count).numpy(), (bins["correct"][full] / count).numpy()
    ece = metrics.ece_of(bins)
    ax.plot([0, 1], [0, 1], ":", c="0.6", lw=1)
    ax.plot(conf, acc, "-", c=color, lw=1)
    ax.scatter(conf, acc, s=600 * (count / count.sum()).numpy() + 8, c=color, alpha=0.7,
               label=f"{label} (ECE {ece:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy")


def image_page(images, rows: list[dict], classes, title: str = ""):
    """A figure of test images, one column each, with two networks' top-3 classes and probabilities
    under each image (B6's gallery).

    images: uint8 (k, 3, H, W); rows: per image {"label": int, "nets": [(name, probs (C,)), ...]}
    (two nets: the teacher and the student); classes: the label names."""
    k = len(rows)
    nets = len(rows[0]["nets"]) if rows else 0
    fig, axes = plt.subplots(1 + nets, max(k, 1), figsize=(2.6 * max(k, 1), 1.9 + 1.25 * nets), squeeze=False,
                             gridspec_kw={"height_ratios": [1.6] + [1] * nets})
    colours = ("tab:blue", "tab:orange", "tab:purple")  # green marks the true class
    for j in range(axes.shape[1]):
        for ax in axes[:, j]:
            ax.set_axis_off()
    for j, (image, row) in enumerate(zip(images, rows)):
        ax = axes[0, j]
        ax.imshow(np.asarray(image).transpose(1, 2, 0), interpolation="nearest")
        ax.set_title(f"true: {classes[row['label']]}", fontsize=9)
        for i, (name, probs) in enumerate(row["nets"]):
            ax = axes[1 + i, j]
            ax.set_axis_on()
            top = np.argsort(-np.asarray(probs))[:3]
            shown = [classes[c] for c in top]
            bars = ax.barh(range(3), [probs[c] for c in top], color=[colours[i] if c != row["label"] else "tab:green"
                                                                     for c in top])
            ax.set_yticks(range(3), shown, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(name, fontsize=8, loc="left")
            for bar, c in zip(bars, top):
                ax.text(min(bar.get_width() + 0.02, 0.75), bar.get_y() + bar.get_height() / 2, f"{probs[c]:.2f}",
                        va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
