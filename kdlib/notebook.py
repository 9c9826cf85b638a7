"""Executing one notebook: a jupytext notebook run with papermill on a kernel that is this interpreter.

`execute_notebook(source, output, parameters)` (kdlib.report calls it for each notebook in turn)
1. reads the jupytext text file `source` (the report's <book>/notebooks/<name>.py),
2. executes it with papermill, injecting `parameters` (the report's: scale, data, device, executor and
   seed_base), on a kernel that runs this interpreter (sys.executable: the .venv's Python, whatever
   kernelspecs are installed globally), with the notebook's folder as working directory (as Jupyter would),
3. writes `output` (<book>/executed/<name>.ipynb) with its outputs and widget state (what the static page
   replays), or raises ReportError naming the notebook and the error. In the executed copy the
   `parameters` cell (the defaults) is tagged remove-cell and papermill's `injected-parameters` cell
   (the values used) hide-input, so the book shows the latter folded; every other code cell is folded
   too (hide-input): the book shows outputs, code on demand.
While a notebook runs, the terminal shows the run being trained, its epoch, rate and ETA, and how
many of the notebook's runs are done (kdlib.progress: the kernels report to a file the runner
follows, so the executed notebooks hold no progress bars).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
import papermill
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from kdlib import progress as kprogress

KERNEL = "python3"  # the name notebooks carry; resolved to this interpreter below
# Jupyter Book's tags that already decide how a cell shows; any other code cell gets "hide-input".
FOLDING_TAGS = {"hide-input", "hide-output", "hide-cell", "remove-input", "remove-output", "remove-cell"}


class ReportError(RuntimeError):
    """A notebook or the book build failed; the message says which and why. (Here, not in kdlib.report,
    which raises it too and imports it from here: kdlib.report.ReportError is this class.)"""


# ---------------------------------------------------------------------------------------------
# kernel: "python3" means this interpreter


class _ThisPythonSpecs(KernelSpecManager):
    """Kernelspecs where "python3" is always sys.executable's ipykernel.

    A "python3" kernel.json found on the Jupyter path starts whatever `python` is first on PATH,
    which may not be the interpreter that has kdlib installed (e.g. a .venv not activated).
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == KERNEL:
            # ERROR: the kernel's harmless start-up warnings (plain-TCP transport) stay out of the terminal
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                    "--IPKernelApp.log_level=ERROR"],
                              display_name="Python 3 (ipykernel)", language="python",
                              metadata={"debugger": True})
        return super().get_kernel_spec(kernel_name)


class _ThisPythonKernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, looking kernels up in _ThisPythonSpecs."""

    @default("kernel_spec_manager")
    def _default_kernel_spec_manager(self) -> KernelSpecManager:
        return _ThisPythonSpecs(data_dir=self.data_dir)


# ---------------------------------------------------------------------------------------------
# executing one notebook


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # tracebacks carry ANSI colours


@contextlib.contextmanager
def _progress_channel(path: Path, prefix: str, show: bool):
    """$KDLIB_PROGRESS -> `path` for the kernels started meanwhile (their bars go there, not into the
    notebook), and a Follower that shows it on stdout when `show`."""
    saved = os.environ.get(kprogress.ENV)
    os.environ[kprogress.ENV] = str(path)
    try:
        with (kprogress.Follower(path, prefix, sys.stdout) if show else contextlib.nullcontext()):
            yield
    finally:
        if saved is None:
            os.environ.pop(kprogress.ENV, None)
        else:
            os.environ[kprogress.ENV] = saved
        Path(path).unlink(missing_ok=True)


def execute_notebook(source: Path, output: Path, parameters: dict[str, str | int], progress: bool = True,
                     prefix: str = "") -> float:
    """Execute the jupytext file `source` into the notebook `output`; returns the seconds it took.

    progress: show the kernel's training progress on stdout (kdlib.progress), after `prefix`.
    Raises ReportError naming the notebook, with the error and its traceback's last lines.
    """
    name = source.stem
    nb = jupytext.read(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, \
            _progress_channel(Path(tmp) / "progress.jsonl", prefix or name, progress):
        # papermill reads a path (it records it in the output's metadata)
        converted = Path(tmp) / f"{name}.ipynb"
        nbformat.write(nb, converted)
        try:
            papermill.execute_notebook(
                str(converted), str(output), parameters=parameters, kernel_name=KERNEL,
                language="python", cwd=str(source.parent), progress_bar=False,
                start_timeout=180, kernel_manager_class=_ThisPythonKernelManager)
        except papermill.PapermillExecutionError as e:
            tail = "\n".join(_plain("\n".join(e.traceback)).strip().splitlines()[-8:])
            raise ReportError(f"notebook {name!r} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                              f"{tail}\n(the partly executed notebook is {output})") from e
        except Exception as e:  # a dead kernel, a timeout, a bad notebook file ...
            raise ReportError(f"notebook {name!r} failed: {type(e).__name__}: {e}") from e
    seconds = time.perf_counter() - start
    executed = nbformat.read(output, as_version=4)
    executed.metadata.papermill["input_path"] = source.name  # not the temporary copy's path
    # In the book, the defaults papermill overrode would mislead: drop them, and fold the values the
    # notebook really ran with (papermill's injected cell) behind a "show code" toggle.
    extra = {"parameters": "remove-cell", "injected-parameters": "hide-input"}
    for cell in executed.cells:
        tags = cell.metadata.setdefault("tags", [])
        tags += [extra[t] for t in tags if t in extra and extra[t] not in tags]
        # The book reads like a paper: every code cell is folded (a "show code" toggle), its
        # tables, figures and sliders stay in view.
        if cell.cell_type == "code" and not FOLDING_TAGS & set(tags):
            tags.append("hide-input")
    nbformat.write(executed, output)
    return seconds
