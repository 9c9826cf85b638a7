"""The report runner: execute every notebook with papermill, then build the book.

    kdlib-report [--scale reduced] [--data SRC] [--device auto] [--executor inline] [--seed-base 0]
                 [--out DIR] [--only NAME ...] [--no-build | --build-only] [--no-progress]
    (python -m kdlib.report takes the same options; `make report` calls it.)

The report's sources (book/: pages, configuration, notebooks) ship with kdlib as `kdlib.book`.
`--out DIR` builds the report in DIR (its sources are copied there first); in a checkout the default
is the checkout's own book/. For each name in NOTEBOOKS (dependency order) the runner executes the
jupytext file <book>/notebooks/<name>.py into <book>/executed/<name>.ipynb, with the parameters scale,
data, device, executor and seed_base, and stops at the first failure, naming the notebook and the
error. kdlib.notebook executes one notebook: papermill on a kernel that is this interpreter, the
parameters injected, code cells folded in the executed copy, training progress in the terminal.
Then it runs `jupyter-book build -W --keep-going <book>`: the build never executes anything, and
any Sphinx warning fails it (the book's own pages build warning-free; a missing executed
notebook, a broken reference or the CDN fallback of book/_ext/kdlib_assets.py all fail loudly).
A notebook whose execution failed is never published: the build refuses it (`failed_notebooks`),
whoever starts the build. Training runs are cached by kdlib (KDLIB_HOME / KDLIB_RUNS), so a rerun
only re-renders. Exit status: 0 on success, 1 when a notebook or the build failed, 2 on bad
arguments (checked before any kernel starts).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import nbformat

from kdlib import authors, scales
from kdlib.files import write_json
from kdlib.notebook import ReportError, execute_notebook
from kdlib.parameters import Parameters
from kdlib.study import NOTEBOOKS

# Every notebook, in execution order (the study's table): later notebooks reuse earlier ones' cached runs.


def installed_book() -> Path:
    """Where the installed package keeps the report's sources (kdlib.book, a namespace package of data
    folders: importlib's finder knows its folder, for a wheel and an editable install alike)."""
    spec = importlib.util.find_spec("kdlib.book")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("kdlib's report sources (kdlib.book) are not installed; reinstall kdlib")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def source_book() -> Path:
    """The report's sources: the checkout's book/ (beside kdlib/), or those installed with kdlib."""
    beside = Path(__file__).resolve().parents[1] / "book"
    return beside if (beside / "notebooks").is_dir() else installed_book()


BOOK = source_book()
IN_CHECKOUT = BOOK == Path(__file__).resolve().parents[1] / "book"
# what a copy of the book's sources leaves out: outputs of earlier builds and the npm install
COPY_IGNORE = shutil.ignore_patterns("_build", "executed", "node_modules", "__pycache__", ".ipynb_checkpoints")
TIMINGS = "timings.json"  # in executed/: seconds per notebook of the latest run, for the appendix


# ---------------------------------------------------------------------------------------------
# building the book


def jupyter_book_command() -> list[str]:
    """`jupyter-book` of this interpreter's environment (the one next to sys.executable)."""
    beside = Path(sys.executable).parent / "jupyter-book"
    return [str(beside)] if beside.exists() else [sys.executable, "-c",
                                                   "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


def failed_notebooks(executed: Path) -> list[str]:
    """The executed notebooks in `executed` that must not be published: papermill marked their
    execution as failed, or a cell holds an error output (a partly executed notebook)."""
    failed = []
    for path in sorted(Path(executed).glob("*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # unreadable: certainly not publishable  # noqa: BLE001
            failed.append(path.stem)
            continue
        errors = any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        if nb.metadata.get("papermill", {}).get("exception") or errors:
            failed.append(path.stem)
    return failed


def assets_installed(book: Path) -> bool:
    """Whether the book has its local JavaScript (`make assets`: book/_static/vendor/)."""
    static = Path(book) / "_static"
    return all((static / p).is_file() for p in ("vendor/mathjax/tex-chtml.js", "vendor/requirejs/require.js",
                                                "vendor/html-manager/embed-amd.js"))


def build_book(book: Path = BOOK, strict: bool | None = None) -> Path:
    """`jupyter-book build <book>` (with -W --keep-going when strict); returns the built index.html.

    strict=None: strict when the local JavaScript is installed (without it the pages fall back to
    CDNs with a Sphinx warning, which a strict build would turn into a failure; said on stdout).
    Refuses, naming them, executed notebooks whose execution failed (`failed_notebooks`).
    """
    book = Path(book)
    missing = [n for n in NOTEBOOKS if not (book / "executed" / f"{n}.ipynb").exists()]
    if missing:
        raise ReportError(f"cannot build the book: executed/ lacks {', '.join(missing)}; run "
                          "`kdlib-report` without --only first")
    failed = failed_notebooks(book / "executed")
    if failed:
        raise ReportError(f"cannot build the book: the notebook(s) {', '.join(failed)} in {book / 'executed'} "
                          "failed when they were executed; run them again (kdlib-report --only "
                          f"{' '.join(failed)}) before building")
    if strict is None:
        strict = assets_installed(book)
        if not strict:
            print(f"note: {book / '_static' / 'vendor'} is missing (make assets, or python "
                  f"{book / 'vendor-src' / 'install_assets.py'} with npm): the pages will load MathJax and the "
                  "widget JavaScript from CDNs, and the build is not strict", flush=True)
    cmd = [*jupyter_book_command(), "build", *(["-W", "--keep-going"] if strict else []), str(book)]
    print("$ jupyter-book build " + " ".join(cmd[cmd.index("build") + 1:]), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise ReportError("the book build failed (see the Sphinx warnings above)")
    index = book / "_build" / "html" / "index.html"
    if not index.exists():
        raise ReportError(f"the book build finished but {index} is missing")
    return index


def prepare_book(out: Path, source: Path = BOOK) -> Path:
    """The folder to build the report in: `source` itself, or `out` with the report's sources copied
    into it (pages, configuration, notebooks, the local JavaScript if `source` has it; earlier
    executed notebooks and builds in `out` are kept, so `--only` works across calls)."""
    out = Path(out).expanduser().resolve()
    if out == Path(source).resolve():
        return out
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} exists and is not a folder")
    shutil.copytree(source, out, symlinks=False, ignore=COPY_IGNORE, dirs_exist_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# the whole report


def read_timings(path: Path) -> dict:
    """The per-notebook timings of the latest run ({name: {"seconds", "scale"}}); {} when there are
    none, and {} with a warning when the file is damaged (it is rewritten by the next run)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        timings = json.loads(path.read_text())
        if not isinstance(timings, dict) or not all(
                isinstance(t, dict) and isinstance(t.get("seconds"), (int, float)) and "scale" in t
                for t in timings.values()):
            raise ValueError("not a mapping of notebook -> {seconds, scale}")
    except (ValueError, UnicodeDecodeError) as e:
        warnings.warn(f"ignoring the damaged timings file {path} ({e})")
        return {}
    return timings


@contextlib.contextmanager
def _authors_files_for_kernels():
    """$KDLIB_GNOSIS set, for the notebooks' kernels, to where this process finds the original authors'
    files (kdlib.authors.root: a relative offline copy is found from here, the repository root, and the
    kernels run in the notebooks folder), absolute; restored afterwards."""
    saved = os.environ.get("KDLIB_GNOSIS")
    os.environ["KDLIB_GNOSIS"] = str(authors.root().expanduser().resolve())
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("KDLIB_GNOSIS", None)
        else:
            os.environ["KDLIB_GNOSIS"] = saved


def run_report(params: Parameters | None = None, only: Sequence[str] | None = None, build: bool = True,
               book: Path = BOOK, notebooks: Path | None = None, strict: bool | None = None,
               progress: bool = True) -> Path | None:
    """Execute the notebooks (all, or `only` those, in NOTEBOOKS order) and build the book.

    book:      the folder the report is built in (its sources there: `prepare_book`); executed
               notebooks go to book/executed/.
    notebooks: where <name>.py live (default book/notebooks).
    strict:    as for build_book.
    progress:  show training progress on stdout while a notebook runs.
    Returns the built index.html (None with build=False). Raises ReportError on a failure.
    """
    params = Parameters() if params is None else params
    if not isinstance(params, Parameters):  # checked when built: a bad value failed there, before any kernel
        raise ValueError(f"params must be a kdlib.parameters.Parameters, got {type(params).__name__}")
    names = list(NOTEBOOKS) if not only else [n for n in NOTEBOOKS if n in set(only)]
    unknown = sorted(set(only or ()) - set(NOTEBOOKS))
    if unknown:
        raise ValueError(f"only: unknown notebook(s) {unknown}; allowed: {', '.join(NOTEBOOKS)}")
    book = Path(book)
    notebooks = Path(notebooks) if notebooks is not None else book / "notebooks"
    absent = [n for n in names if not (notebooks / f"{n}.py").exists()]
    if absent:
        raise ReportError(f"missing notebook source(s) in {notebooks}: {', '.join(f'{n}.py' for n in absent)}")
    values = params.resolved()
    print("parameters: " + ", ".join(f"{k}={v!r}" for k, v in values.items()), flush=True)

    executed = book / "executed"
    timings_file = executed / TIMINGS
    timings = read_timings(timings_file)
    total = time.perf_counter()
    for i, name in enumerate(names, 1):
        step = f"[{i}/{len(names)}] {name}"
        print(f"{step} ...", flush=True)
        with _authors_files_for_kernels():
            seconds = execute_notebook(notebooks / f"{name}.py", executed / f"{name}.ipynb", values, progress, step)
        print(f"{step} done in {seconds:.1f} s", flush=True)
        timings[name] = {"seconds": round(seconds, 1), "scale": params.scale, "seed_base": params.seed_base}
        write_json(timings_file, timings)  # atomically: a reader never sees half a file
    print(f"executed {len(names)} notebook(s) in {time.perf_counter() - total:.1f} s", flush=True)
    if not build:
        return None
    mixed = {n: t["scale"] for n, t in timings.items() if t["scale"] != params.scale}
    if mixed:
        print(f"note: the book mixes scales; these notebooks were last executed at another scale: {mixed}",
              flush=True)
    draws = {n: t.get("seed_base", 0) for n, t in timings.items() if t.get("seed_base", 0) != params.seed_base}
    if draws:
        print(f"note: the book mixes draws of seeds; these notebooks were last executed at another seed_base: "
              f"{draws}", flush=True)
    start = time.perf_counter()
    index = build_book(book, strict=strict)
    print(f"book built in {time.perf_counter() - start:.1f} s", flush=True)
    return index


# ---------------------------------------------------------------------------------------------
# the command line: every option checked by the parser, before any kernel starts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kdlib-report", description="Execute the report's notebooks and build it as a Jupyter Book.",
        epilog=f"scales: {', '.join(f'{n} ({s.description})' for n, s in scales.SCALES.items())}. "
               "devices: auto (CUDA when present), cpu, cuda, cuda:N. executors: inline (this process), ray "
               "(a local Ray instance), ray://HOST:PORT or ray:ADDRESS (a Ray cluster).")
    Parameters.add_arguments(p)
    p.add_argument("--out", type=Path, default=BOOK if IN_CHECKOUT else None,
                   help="the folder to build the report in; its sources are copied there first (default: the "
                        "checkout's book/; required when kdlib is installed outside a checkout)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=NOTEBOOKS,
                   help=f"execute only these notebooks (in dependency order); from: {', '.join(NOTEBOOKS)}")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--no-build", action="store_true", help="execute the notebooks, do not build the book")
    what.add_argument("--build-only", action="store_true",
                      help="build the book from the notebooks executed earlier (executes nothing)")
    p.add_argument("--notebooks", type=Path, default=None, help="where the <name>.py notebooks are "
                                                                "(default: OUT/notebooks)")
    p.add_argument("--no-progress", action="store_true", help="do not show training progress")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.out is None:
        p.error("--out is required when kdlib is installed outside a checkout (the folder to build the report in)")
    if args.notebooks is not None and not args.notebooks.is_dir():
        p.error(f"--notebooks {str(args.notebooks)!r} is not a folder")
    params = Parameters.from_arguments(args)
    try:
        book = prepare_book(args.out)
        if args.build_only:
            index = build_book(book)
        else:
            index = run_report(params, only=args.only, build=not args.no_build, book=book,
                               notebooks=args.notebooks, progress=not args.no_progress)
    except ReportError as e:
        print(f"\nkdlib-report: FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    if index is not None:
        print(f"\nThe report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
