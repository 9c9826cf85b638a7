"""Figures the chapters share: a run's metric over the epochs of its training (E1, E3, E6)."""

from __future__ import annotations

import math


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
