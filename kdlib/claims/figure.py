"""The verdicts at a glance: every part's estimate and 95 % interval against its boundary (E7)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt

from kdlib.claims.rules import ABOVE, FAILS, HOLDS

COLOURS = {HOLDS: "#1b7837", FAILS: "#b2182b", "inconclusive": "#878787"}


def verdict_figure(verdicts: Sequence):
    """A matplotlib figure with one row per part of every claim: the estimate (dot), its 95 %
    interval (bar; an arrow where it has no bound), the boundary (dashed), the threshold the smallest
    effect that matters puts beyond it (dotted, where delta > 0) and the claimed side of it (shaded),
    coloured by the part's verdict; each row on its own scale (the parts have different units).
    Returns the figure."""
    rows = [(v, p) for v in verdicts for p in v.parts]
    if not rows:
        fig = plt.figure(figsize=(9, 0.8))
        fig.text(0.5, 0.5, "no claim has a part these runs could estimate", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 0.62 * len(rows) + 0.6), squeeze=False)
    for ax, (v, p) in zip(axes[:, 0], rows):
        low, high = p.interval.bounds()
        finite = [x for x in (low, high, p.interval.estimate, p.boundary, p.threshold) if math.isfinite(x)]
        span = (max(finite) - min(finite)) or 1.0
        left, right = min(finite) - 0.15 * span, max(finite) + 0.15 * span
        colour = COLOURS[p.verdict]
        ax.axvspan(p.threshold, right, color=colour if p.claimed == ABOVE else "none", alpha=0.06)
        ax.axvspan(left, p.threshold, color=colour if p.claimed != ABOVE else "none", alpha=0.06)
        ax.axvline(p.boundary, color="black", ls="--", lw=0.8)
        if p.effect.delta:  # the smallest effect that matters: what the interval is held against
            ax.axvline(p.threshold, color="black", ls=":", lw=1.2)
        ax.plot([max(low, left), min(high, right)], [0, 0], color=colour, lw=3, solid_capstyle="butt")
        for bound, edge, marker in ((low, left, "<"), (high, right, ">")):
            if not math.isfinite(bound):
                ax.plot([edge], [0], marker=marker, color=colour, ms=8)
        ax.plot([p.interval.estimate], [0], "o", color="white", mec=colour, mew=2, ms=7)
        ax.set_xlim(left, right)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7, pad=1)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        unit = f" ({p.unit})" if p.unit else ""
        delta = f", δ = {p.effect.delta:g}" if p.effect.delta else ""
        ax.set_title(f"{v.experiment} · {p.name}{unit}{delta} — {p.verdict}", fontsize=8, loc="left", pad=2,
                     color=colour)
    fig.tight_layout(h_pad=0.4)
    return fig
