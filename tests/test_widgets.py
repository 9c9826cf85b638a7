"""kdlib.widgets.figure_slider: the structure the static page relies on (no kernel, no browser)."""

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from ipywidgets.widgets.widget import _instances  # noqa: E402
from ipywidgets.widgets.widget_link import Link  # noqa: E402

from kdlib.widgets import CSS_CLASS, figure_png, figure_slider  # noqa: E402


def _figures(n):
    figs = []
    for i in range(n):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1], [0, i])
        figs.append(fig)
    return figs


def _links_from(slider):
    return [w for w in _instances.values()
            if isinstance(w, Link) and w.source[0] is slider]


def test_one_png_image_per_value_and_links_to_the_stacks():
    values = [0.0, 0.25, 0.5]
    box = figure_slider(values, _figures(3), "λ", html=["<b>a</b>", "<b>b</b>", "<b>c</b>"],
                        css_class="kdlib-lambda-slider")
    slider, images, tables = box.children
    assert isinstance(slider, widgets.SelectionSlider)
    assert [label for label, _ in slider.options] == ["0", "0.25", "0.5"]
    assert isinstance(images, widgets.Stack) and isinstance(tables, widgets.Stack)
    assert len(images.children) == len(tables.children) == len(values)
    for image in images.children:
        assert isinstance(image, widgets.Image) and image.format == "png"
        assert bytes(image.value).startswith(b"\x89PNG")
    assert [t.value for t in tables.children] == ["<b>a</b>", "<b>b</b>", "<b>c</b>"]
    # slider.index drives each stack's selected_index, in the browser (jslink, not a Python observer)
    links = _links_from(slider)
    assert {(link.source[1], link.target[1]) for link in links} == {("index", "selected_index")}
    assert {id(link.target[0]) for link in links} == {id(images), id(tables)}
    assert images.selected_index == tables.selected_index == 0
    assert CSS_CLASS in box._dom_classes and "kdlib-lambda-slider" in box._dom_classes


def test_figures_are_closed_and_png_bytes_pass_through():
    fig, other = _figures(2)
    png = figure_png(other)
    box = figure_slider(["a", "b"], [fig, png], "x", readout=["first", "second"], initial=1)
    assert not plt.fignum_exists(fig.number) and not plt.fignum_exists(other.number)
    slider, images = box.children
    assert bytes(images.children[1].value) == png
    assert slider.index == 1 and images.selected_index == 1
    assert [label for label, _ in slider.options] == ["first", "second"]


@pytest.mark.parametrize("kwargs, parameter", [
    (dict(values=[], figures=[]), "values"),
    (dict(values=[1, 2], figures=["fig"]), "figures"),
    (dict(values=[1], figures=["not a figure"]), "figures"),
    (dict(values=[1], figures=[b"GIF89a"]), "figures"),
    (dict(values=[1, 2], figures=[b"\x89PNG", b"\x89PNG"], readout=["a"]), "readout"),
    (dict(values=[1, 2], figures=[b"\x89PNG", b"\x89PNG"], readout=["a", "a"]), "readout"),
    (dict(values=[1, 2], figures=[b"\x89PNG", b"\x89PNG"], html=["x"]), "html"),
    (dict(values=[1], figures=[b"\x89PNG"], initial=1), "initial"),
])
def test_bad_input_names_the_parameter(kwargs, parameter):
    with pytest.raises(ValueError, match=rf"^{parameter}"):
        figure_slider(description="x", **kwargs)
