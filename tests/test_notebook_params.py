"""The notebooks' parameters: every notebook declares the same common ones, and bad values,
injected by papermill, fail at once with an error naming the parameter.

Each bad-value case executes a real notebook of book/notebooks/ (converted with jupytext) on a
kernel that runs this interpreter. Validation comes before any data loading or training, so a case
takes only the kernel's start-up and imports. tests/test_experiments.py checks the same validation
(and the executor and device parameters) directly, in milliseconds.
"""

import ast
import json
import sys
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "book" / "notebooks"
# what kdlib-report injects into every notebook (kdlib.report.Parameters), with the defaults each
# notebook's `parameters` cell must declare, in this order, and pass to open_experiment as Parameters
COMMON = {"scale": "reduced", "data": "", "device": "auto", "executor": "inline", "seed_base": 0}

CASES = [
    # notebook, parameters, exception name, what the message must say
    ("e3_initialisation", {"lam": 2}, "ValueError", r"lam must be a number in [0, 1], got 2"),
    ("e1_self_distillation", {"tau": 0}, "ValueError", r"tau must be a number in (0, inf], got 0"),
    ("e5_temperature", {"tau": "x"}, "ValueError", r"tau must be a number in (0, inf], got 'x'"),
    ("setup", {"scale": "huge"}, "ValueError", r"scale must be one of ('paper', 'reduced', 'tiny'), got 'huge'"),
    ("e0_teachers", {"scale": 3}, "ValueError", r"scale must be a string, got int 3"),
    ("setup", {"data": "/nonexistent/path"}, "FileNotFoundError", r"data='/nonexistent/path' does not exist"),
    ("e2_ensembles", {"seed_base": -1}, "ValueError", r"seed_base must be an int >= 0, got -1"),
]


def _parameters_cell(name: str) -> ast.Module:
    cells = [c for c in jupytext.read(NOTEBOOKS / f"{name}.py").cells
             if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: one cell tagged parameters"
    return ast.parse(cells[0].source)


@pytest.mark.parametrize("name", sorted(p.stem for p in NOTEBOOKS.glob("*.py")))
def test_every_notebook_declares_and_passes_the_same_parameters(name):
    """Each notebook's parameters cell starts with COMMON (the runner's Parameters, same defaults),
    and the notebook passes them, in order, to open_experiment as Parameters."""
    from dataclasses import fields

    from kdlib.report import NOTEBOOKS as RUNNER_NOTEBOOKS, Parameters

    assert name in RUNNER_NOTEBOOKS
    assert {f.name: f.default for f in fields(Parameters)} == COMMON
    declared = {a.targets[0].id: ast.literal_eval(a.value) for a in _parameters_cell(name).body
                if isinstance(a, ast.Assign)}
    assert list(declared)[:len(COMMON)] == list(COMMON) and {k: declared[k] for k in COMMON} == COMMON
    calls = [n for n in ast.walk(ast.parse((NOTEBOOKS / f"{name}.py").read_text()))
             if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "open_experiment"]
    assert len(calls) == 1 and len(calls[0].args) == 1 and calls[0].args[0].func.id == "Parameters"
    assert [a.id for a in calls[0].args[0].args] == list(COMMON)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A "python3" kernelspec that runs this interpreter, first on a private JUPYTER_PATH.

    The kernelspec a venv ships says `python`, which is whatever comes first on PATH.
    """
    path = tmp_path_factory.mktemp("jupyter")
    spec = path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (kdlib tests)", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(path))
        yield "python3"


@pytest.mark.slow  # ~10 s a case on 2 busy cores: a kernel start and the notebook's imports
@pytest.mark.parametrize("name, params, ename, message", CASES,
                         ids=[f"{c[0]}-{next(iter(c[1]))}={next(iter(c[1].values()))!r}" for c in CASES])
def test_bad_parameter_fails_naming_it(kernel, tmp_path, monkeypatch, name, params, ename, message):
    monkeypatch.setenv("KDLIB_HOME", str(tmp_path / "home"))  # nothing may be downloaded or trained
    monkeypatch.delenv("KDLIB_DATA", raising=False)
    source = tmp_path / f"{name}.ipynb"
    nbformat.write(jupytext.read(NOTEBOOKS / f"{name}.py"), source)
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), parameters=params,
                                   kernel_name=kernel, cwd=str(tmp_path), progress_bar=False,
                                   start_timeout=120)
    assert info.value.ename == ename
    assert message in info.value.evalue
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.pt"))


def test_missing_kdlib_data_is_named(monkeypatch):
    """data="" reads $KDLIB_DATA: a missing path there names the variable, not `data`."""
    from kdlib.parameters import Parameters

    monkeypatch.setenv("KDLIB_DATA", "/nonexistent/cifar")
    with pytest.raises(FileNotFoundError, match=r"\$KDLIB_DATA='/nonexistent/cifar' does not exist"):
        Parameters("tiny", "")
