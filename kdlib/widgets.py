"""Sliders over precomputed figures that work in a static web page, with no kernel (protocol §6 E3, E5).

A live `interact` re-draws the figure in Python, which a static page cannot do. Here every view is
rendered up front: one PNG per slider value in a `Stack` (ipywidgets 8) that shows one child at a
time, and the slider's `index` is `jslink`ed to the stack's `selected_index`. The link runs in the
browser, so the widget works both live in Jupyter and in the built book, where the notebook's saved
widget state (nbclient stores it) is replayed by @jupyter-widgets/html-manager.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from kdlib import plots

CSS_CLASS = "kdlib-figure-slider"  # on every widget figure_slider returns (the browser test finds it)


def figure_png(figure: Figure | bytes, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure (which is closed afterwards), or the bytes as given."""
    if isinstance(figure, bytes):
        if not figure.startswith(b"\x89PNG"):
            raise ValueError("figures: bytes must be a PNG image")
        return figure
    if not isinstance(figure, Figure):
        raise ValueError(f"figures: each must be a matplotlib Figure or PNG bytes, got {type(figure).__name__}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)  # a notebook would otherwise also display it, and keep it in memory
    return buffer.getvalue()


def figure_slider(values: Sequence, figures: Sequence[Figure | bytes], description: str,
                  readout: Sequence[str] | None = None, html: Sequence[str] | None = None,
                  css_class: str | None = None, initial: int = 0) -> widgets.VBox:
    """A slider over `values` that shows `figures[i]` (and `html[i]`, if given) at value i.

    values:      the slider's positions, in order (e.g. the lambda grid); at least one.
    figures:     one matplotlib Figure (closed after rendering) or PNG bytes per value.
    description: the slider's label, e.g. "λ" or "τ".
    readout:     the text shown for each value; default `f"{value:g}"` for numbers, else str(value).
    html:        optional HTML per value (e.g. a small results table via DataFrame.to_html()),
                 shown under the figure in a second stack linked to the same slider.
    css_class:   an extra CSS class for the returned box (every box also has CSS_CLASS).
    initial:     the index shown first.

    Returns a VBox(slider, figure stack[, html stack]); `.children[0]` is the slider.
    """
    values = list(values)
    figures = list(figures)
    if not values:
        raise ValueError("values must hold at least one slider position, got none")
    if len(figures) != len(values):
        raise ValueError(f"figures must hold one figure per value: {len(values)} values, {len(figures)} figures")
    if readout is None:
        readout = [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in values]
    readout = [str(r) for r in readout]
    if len(readout) != len(values):
        raise ValueError(f"readout must hold one label per value: {len(values)} values, {len(readout)} labels")
    if len(set(readout)) != len(readout):
        raise ValueError(f"readout labels must be distinct, got {readout}")
    if html is not None and len(html) != len(values):
        raise ValueError(f"html must hold one entry per value: {len(values)} values, {len(html)} entries")
    if not (isinstance(initial, int) and 0 <= initial < len(values)):
        raise ValueError(f"initial must be an index in [0, {len(values)}), got {initial!r}")

    # SelectionSlider shows the readout label of the current value; options are (label, value)
    # pairs and `index` is the position, which is what the stacks follow.
    slider = widgets.SelectionSlider(
        options=list(zip(readout, range(len(values)))), index=initial, description=description,
        continuous_update=True, layout=widgets.Layout(width="min(100%, 32em)"),
        style={"description_width": "initial"})
    images = [widgets.Image(value=figure_png(f), format="png", layout=widgets.Layout(max_width="100%"))
              for f in figures]
    stacks = [widgets.Stack(images, selected_index=initial)]
    if html is not None:
        stacks.append(widgets.Stack([widgets.HTML(str(h)) for h in html], selected_index=initial))
    for stack in stacks:
        # runs in the browser: keeps working in a static page with no kernel behind it
        widgets.jslink((slider, "index"), (stack, "selected_index"))
    box = widgets.VBox([slider, *stacks])
    box.add_class(CSS_CLASS)
    if css_class:
        box.add_class(css_class)
    return box


def image_gallery(images, labels, probabilities: dict, classes: Sequence[str], indices: Sequence[int],
                  per_page: int = 4) -> widgets.VBox:
    """A slider over pages of test images (`indices` into `images`, `per_page` a page), each image with
    the top classes of every network of `probabilities` ({name: (N, C) probabilities}) under it and its
    true class (kdlib.plots.image_page), readable in the static page (B6, P1)."""
    pages = [list(indices[i:i + per_page]) for i in range(0, len(indices), per_page)]
    if not pages:
        raise ValueError("indices must name at least one image")
    figures = [plots.image_page(images[page], [{"label": int(labels[i]),
                                                "nets": [(name, p[i].numpy()) for name, p in probabilities.items()]}
                                               for i in page], classes) for page in pages]
    return figure_slider(list(range(len(pages))), figures, "page",
                         readout=[f"{k + 1} of {len(pages)}" for k in range(len(pages))], css_class="kdlib-gallery")
