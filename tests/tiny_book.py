"""One `tiny`-scale build of the whole report per test session, shared by test_book and test_browser.

The book's sources are copied into a temporary folder as `kdlib-report --out DIR` does
(`report.prepare_book`: symlinks resolved, without _build/, executed/ and node_modules/), so the tests
never touch the working tree's book; runs go to a temporary KDLIB_RUNS. `tiny_book(...)` memoises
the build: the modules that use it each declare a session fixture calling it, and whichever runs
first pays for the build.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from kdlib import report

@dataclass(frozen=True)
class TinyBook:
    book: Path              # the copied book source folder
    index: Path             # its built _build/html/index.html
    local_assets: bool      # whether _static/vendor/ (make assets) was there, so the build was strict
    execute_seconds: float  # wall time of executing all notebooks
    build_seconds: float    # wall time of `jupyter-book build`


_BUILT: dict[str, TinyBook] = {}


def tiny_book(tmp_path_factory, data_source: str) -> TinyBook:
    """Execute every notebook at scale "tiny" on `data_source` and build the book, once per session."""
    if "book" in _BUILT:
        return _BUILT["book"]
    root = tmp_path_factory.mktemp("tiny_book")
    book = report.prepare_book(root / "book")  # what `kdlib-report --out DIR` builds in
    local = report.assets_installed(book)
    saved = os.environ.get("KDLIB_RUNS")
    os.environ["KDLIB_RUNS"] = str(root / "runs")  # the notebooks' kernels inherit it
    try:
        params = report.Parameters(scale="tiny", data=data_source, device="cpu")
        start = time.perf_counter()
        report.run_report(params, build=False, book=book, progress=False)
        executed = time.perf_counter() - start
        start = time.perf_counter()
        # without the local JavaScript the CDN fallback's warning would fail a strict (-W) build;
        # test_browser skips in that case
        index = report.build_book(book, strict=local)
        built = time.perf_counter() - start
    finally:
        if saved is None:
            os.environ.pop("KDLIB_RUNS", None)
        else:
            os.environ["KDLIB_RUNS"] = saved
    print(f"\ntiny book: notebooks executed in {executed:.0f} s, built in {built:.0f} s ({index})")
    _BUILT["book"] = TinyBook(book, index, local, executed, built)
    return _BUILT["book"]
