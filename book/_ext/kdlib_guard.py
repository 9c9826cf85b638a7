"""Sphinx extension: never publish a notebook whose execution failed.

`kdlib-report` executes the notebooks into executed/ and stops at the first failure, leaving the
partly executed notebook there to inspect. Whoever builds the book afterwards (`kdlib-report
--build-only`, `make book`, a plain `jupyter-book build book/`) would publish its traceback as a
chapter; this extension fails the build instead, naming the notebooks (kdlib.report.failed_notebooks).
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError


def _refuse_failed(app: Sphinx) -> None:
    from kdlib.report import failed_notebooks

    failed = failed_notebooks(Path(app.srcdir) / "executed")
    if failed:
        raise ExtensionError(f"the executed notebook(s) {', '.join(failed)} failed when they were executed; "
                             f"run them again (kdlib-report --only {' '.join(failed)}) before building the book")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _refuse_failed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
