"""kdlib.report, the runner, on small throwaway notebooks (the real ones: test_book.py)."""

import importlib.util
import json
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import yaml

from kdlib import report, study

PARAMETERS = '''
# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
seed_base = 0
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
print(scale, data, device, executor, seed_base)
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
    params = report.Parameters(scale="tiny", data="cifar", device="cpu", seed_base=3)
    assert report.run_report(params, only=["e5_temperature"], build=False, book=book,
                             notebooks=notebooks, progress=False) is None
    executed = book / "executed" / "e5_temperature.ipynb"
    nb = nbformat.read(executed, as_version=4)
    # the relative data path reaches the kernel (which runs in the notebooks folder) as absolute
    assert nb.cells[-1].outputs[0]["text"].split() == ["tiny", str(tmp_path / "cifar"), "cpu", "inline", "3"]
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert ["parameters", "remove-cell"] in tags and ["injected-parameters", "hide-input"] in tags
    # every other code cell is folded in the book; Markdown cells are untouched
    assert all("hide-input" in c.metadata.tags for c in nb.cells if c.cell_type == "code"
               and "parameters" not in c.metadata.tags)
    assert all("hide-input" not in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "markdown")
    assert nb.metadata.papermill.input_path == "e5_temperature.py"
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]  # the saved widget models
    models = {m["model_name"] for m in state.values()}
    assert {"SelectionSliderModel", "StackModel", "ImageModel", "LinkModel"} <= models
    timings = json.loads((book / "executed" / report.TIMINGS).read_text())
    assert timings["e5_temperature"]["scale"] == "tiny" and timings["e5_temperature"]["seed_base"] == 3


def test_a_failing_notebook_is_named_with_its_error(tmp_path, capsys):
    notebooks = _notebooks(tmp_path, setup=FAILING, e0_teachers=WIDGET)
    book = tmp_path / "book"
    code = report.main(["--scale", "tiny", "--data", "torchvision", "--out", str(book), "--notebooks",
                        str(notebooks), "--only", "setup", "e0_teachers", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "notebook 'setup' failed" in err and "ValueError" in err and "scale must be one of" in err
    assert not (book / "executed" / "e0_teachers.ipynb").exists()  # stopped at the first failure
    assert (book / "executed" / "setup.ipynb").exists()  # the partly executed notebook, to inspect
    # ... which no build publishes: the runner refuses it, naming it, and so does the book's own
    # Sphinx extension, whoever starts the build (make book, jupyter-book build)
    assert report.failed_notebooks(book / "executed") == ["setup"]
    for name in report.NOTEBOOKS[1:]:
        nbformat.write(nbformat.v4.new_notebook(), book / "executed" / f"{name}.ipynb")
    with pytest.raises(report.ReportError, match=r"the notebook\(s\) setup .* failed when they were executed"):
        report.build_book(book)
    assert report.main(["--out", str(book), "--build-only"]) == 1
    assert "setup" in capsys.readouterr().err
    guard = _load_extension("kdlib_guard")
    with pytest.raises(Exception, match="setup failed when they were executed"):
        guard._refuse_failed(SimpleNamespace(srcdir=str(book)))
    (book / "executed" / "setup.ipynb").unlink()
    nbformat.write(nbformat.v4.new_notebook(), book / "executed" / "setup.ipynb")
    guard._refuse_failed(SimpleNamespace(srcdir=str(book)))  # nothing failed: the build may go on


def _load_extension(name: str):
    spec = importlib.util.spec_from_file_location(name, report.BOOK / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("option, value, message", [
    ("--device", "gpu", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ("--executor", "bogus", "executor must be one of"),
    ("--data", "/nope/cifar.tar.gz", "data='/nope/cifar.tar.gz' does not exist; allowed: '' ("),
    ("--scale", "huge", "scale must be one of ('paper', 'reduced', 'tiny'), got 'huge'"),
    ("--seed-base", "-1", "seed_base must be an int >= 0, got -1"),
    ("--seed-base", "1.5", "seed_base must be an int >= 0, got '1.5'"),
    ("--only", "e9_nothing", "invalid choice: 'e9_nothing'"),
])
def test_bad_options_exit_2_before_any_kernel(option, value, message, tmp_path, capsys):
    start = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        report.main(["--out", str(tmp_path / "book"), option, value])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert time.perf_counter() - start < 30 and not (tmp_path / "book").exists()  # nothing copied or run


def test_seed_base_option_reaches_the_parameters(monkeypatch, tmp_path):
    """--seed-base N (default 0) becomes Parameters.seed_base, which every notebook receives; a bad
    value given to run_report directly fails before any kernel, naming seed_base."""
    seen = {}
    monkeypatch.setattr(report, "run_report", lambda params, **kw: seen.setdefault("params", params))
    book = tmp_path / "book"
    assert report.main(["--out", str(book), "--data", "torchvision", "--seed-base", "2", "--no-build"]) == 0
    assert seen["params"].seed_base == 2 and seen["params"].resolved()["seed_base"] == 2
    seen.clear()
    assert report.main(["--out", str(book), "--data", "torchvision", "--no-build"]) == 0
    assert seen["params"].seed_base == 0
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"seed_base must be an int >= 0, got -1"):
        report.run_report(report.Parameters(seed_base=-1), build=False, book=tmp_path, notebooks=tmp_path)


def test_data_empty_means_default_source(monkeypatch, tmp_path):
    """--data "" (what `make report` passes by default) is kdlib.data.default_source(), made absolute."""
    monkeypatch.delenv("KDLIB_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "cifar100-lossless.npz").write_bytes(b"fake")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert report.parser().parse_args(["--data", ""]).data == ""
    assert report.Parameters().resolved()["data"] == str(tmp_path / "shared" / "data" / "cifar100-lossless.npz")


def test_help_names_scales_devices_and_executors(capsys):
    with pytest.raises(SystemExit) as e:
        report.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0
    assert all(name in out for name in ("reduced", "paper", "tiny", "cuda:N", "ray://HOST:PORT", "--out"))


def test_bad_arguments_and_missing_inputs(tmp_path):
    with pytest.raises(report.ReportError, match="missing notebook source"):
        report.run_report(only=["e4_cka"], build=False, book=tmp_path, notebooks=tmp_path)
    with pytest.raises(report.ReportError, match="executed/ lacks setup"):
        report.build_book(tmp_path)


def test_out_gets_a_copy_of_the_sources_and_keeps_what_was_executed(tmp_path):
    out = report.prepare_book(tmp_path / "elsewhere")
    assert (out / "notebooks" / "e7_summary.py").read_text() == (report.BOOK / "notebooks" / "e7_summary.py").read_text()
    assert (out / "_toc.yml").is_file() and not (out / "_toc.yml").is_symlink() and (out / "_ext" / "kdlib_guard.py").exists()
    assert not (out / "executed").exists() and not (out / "_build").exists()
    (out / "executed").mkdir()
    (out / "executed" / "setup.ipynb").write_text("{}")
    report.prepare_book(out)  # again: the sources refreshed, the executed notebook kept
    assert (out / "executed" / "setup.ipynb").read_text() == "{}"
    assert report.prepare_book(report.BOOK) == report.BOOK.resolve()  # the checkout's book is used in place


TRAINING = PARAMETERS + '''
# %%
import sys
sys.path.insert(0, {tests!r})
from synthetic import synthetic_dataset
from kdlib.cache import RunCache
from kdlib.config import Recipe, TeacherSpec
from kdlib.execute import run_all
run = run_all([TeacherSpec(recipe=Recipe(epochs=2, batch_size=20, lr=0.05))], synthetic_dataset(),
              cache=RunCache({runs!r}), device="cpu")[0]
print("trained", run.id)
'''


def test_training_progress_reaches_the_runner_and_not_the_notebook(tmp_path, capsys):
    """The runner shows the run, its epoch and the notebook's runs done; the notebook keeps no bar."""
    source = TRAINING.format(tests=str(Path(__file__).parent), runs=str(tmp_path / "runs"))
    notebooks = _notebooks(tmp_path, e0_teachers=source)
    book = tmp_path / "book"
    report.run_report(report.Parameters(scale="tiny", data="torchvision", device="cpu"), only=["e0_teachers"],
                      build=False, book=book, notebooks=notebooks)
    out = capsys.readouterr().out
    assert "[1/1] e0_teachers" in out and "epoch 2/2" in out and "teacher " in out
    assert "runs 1/1 done" in out
    nb = nbformat.read(book / "executed" / "e0_teachers.ipynb", as_version=4)
    streams = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]
    assert any("trained" in o.text for o in streams)
    assert not any("epoch" in o.text or "it/s" in o.text for o in streams)  # no progress bar kept


def test_notebook_order_matches_the_table_of_contents():
    """_toc.yml lists the study's chapters (kdlib.study.CHAPTERS) in order, each in its part."""
    toc = yaml.safe_load((report.BOOK / "_toc.yml").read_text())
    listed = [line.split("executed/")[1].strip() for line in (report.BOOK / "_toc.yml").read_text().splitlines()
              if "file: executed/" in line]
    assert listed == list(report.NOTEBOOKS) == list(study.NOTEBOOKS)
    parts = [(p["caption"], [c["file"].removeprefix("executed/") for c in p["chapters"]
                             if c["file"].startswith("executed/")]) for p in toc["parts"]]
    assert [(caption, names) for caption, names in parts if names] == \
        [(caption, names) for caption, names in study.toc_parts() if names]


def test_timings_are_read_back_and_a_damaged_file_is_ignored(tmp_path):
    path = tmp_path / report.TIMINGS
    assert report.read_timings(path) == {}
    path.write_text('{"setup": {"seconds": 1.5, "scale": "tiny"}}')
    assert report.read_timings(path) == {"setup": {"seconds": 1.5, "scale": "tiny"}}
    for damaged in ('{"setup": {"seconds": 1.5, "sca', '{"setup": 3}', "[1, 2]"):
        path.write_text(damaged)
        with pytest.warns(UserWarning, match="damaged timings file"):
            assert report.read_timings(path) == {}
