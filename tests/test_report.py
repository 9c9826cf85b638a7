"""kdlib.report, the runner, on small throwaway notebooks (the real ones: test_book.py)."""

import json
from pathlib import Path

import nbformat
import pytest

from kdlib import report

PARAMETERS = '''
# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
'''

WIDGET = '''# %% [markdown]
# # A slider
''' + PARAMETERS + '''
# %%
import matplotlib.pyplot as plt
from kdlib.widgets import figure_slider

figures = []
for k in range(3):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, k])
    figures.append(fig)
figure_slider([1, 2, 4], figures, "tau", css_class="kdlib-tau-slider")

# %%
print(scale, data, device, executor)
'''

FAILING = PARAMETERS + '''
# %%
from kdlib import scales
scales.get_scale("huge")
'''


def _notebooks(tmp_path: Path, **sources: str) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, text in sources.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def test_runner_injects_parameters_and_keeps_widget_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar").mkdir()
    notebooks = _notebooks(tmp_path, e5_temperature=WIDGET)
    book = tmp_path / "book"
    params = report.Parameters(scale="tiny", data="cifar", device="cpu")
    assert report.run_report(params, only=["e5_temperature"], build=False, book=book,
                             notebooks=notebooks, progress=False) is None
    executed = book / "executed" / "e5_temperature.ipynb"
    nb = nbformat.read(executed, as_version=4)
    # the relative data path reaches the kernel (which runs in the notebooks folder) as absolute
    assert nb.cells[-1].outputs[0]["text"].split() == ["tiny", str(tmp_path / "cifar"), "cpu", "inline"]
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert ["parameters", "remove-cell"] in tags and ["injected-parameters", "hide-input"] in tags
    # every other code cell is folded in the book; Markdown cells are untouched
    assert all("hide-input" in c.metadata.tags for c in nb.cells if c.cell_type == "code"
               and "parameters" not in c.metadata.tags)
    assert all("hide-input" not in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "markdown")
    assert nb.metadata.papermill.input_path == "e5_temperature.py"
    models = {m["model_name"] for m in report.widget_state(executed).values()}
    assert {"SelectionSliderModel", "StackModel", "ImageModel", "LinkModel"} <= models
    timings = json.loads((book / "executed" / report.TIMINGS).read_text())
    assert timings["e5_temperature"]["scale"] == "tiny"


def test_a_failing_notebook_is_named_with_its_error(tmp_path, capsys):
    notebooks = _notebooks(tmp_path, setup=FAILING, e0_teachers=WIDGET)
    book = tmp_path / "book"
    code = report.main(["--scale", "tiny", "--data", "torchvision", "--book", str(book), "--notebooks",
                        str(notebooks), "--only", "setup", "e0_teachers", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "notebook 'setup' failed" in err and "ValueError" in err and "scale must be one of" in err
    assert not (book / "executed" / "e0_teachers.ipynb").exists()  # stopped at the first failure
    assert (book / "executed" / "setup.ipynb").exists()  # the partly executed notebook, to inspect


def test_bad_arguments_and_missing_inputs(tmp_path):
    with pytest.raises(SystemExit) as e:
        report.main(["--scale", "huge"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        report.main(["--only", "e9_nothing"])
    with pytest.raises(report.ReportError, match="missing notebook source"):
        report.run_report(only=["e4_cka"], build=False, book=tmp_path, notebooks=tmp_path)
    with pytest.raises(report.ReportError, match="executed/ lacks setup"):
        report.build_book(tmp_path)


def test_notebook_order_matches_the_table_of_contents():
    toc = (report.BOOK / "_toc.yml").read_text()
    listed = [line.split("executed/")[1].strip() for line in toc.splitlines() if "file: executed/" in line]
    assert listed == list(report.NOTEBOOKS)


def test_timings_are_read_back_and_a_damaged_file_is_ignored(tmp_path):
    path = tmp_path / report.TIMINGS
    assert report.read_timings(path) == {}
    path.write_text('{"setup": {"seconds": 1.5, "scale": "tiny"}}')
    assert report.read_timings(path) == {"setup": {"seconds": 1.5, "scale": "tiny"}}
    for damaged in ('{"setup": {"seconds": 1.5, "sca', '{"setup": 3}', "[1, 2]"):
        path.write_text(damaged)
        with pytest.warns(UserWarning, match="damaged timings file"):
            assert report.read_timings(path) == {}
