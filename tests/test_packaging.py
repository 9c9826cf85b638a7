"""kdlib as a package: one version, its metadata, and a wheel that carries the report's sources."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kdlib
from kdlib import report

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_string():
    cff = (ROOT / "CITATION.cff").read_text()
    assert f"\nversion: {kdlib.__version__}\n" in cff
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = { attr = "kdlib.__version__" }' in pyproject
    assert "version =" not in pyproject.split("[project]")[1].split("[")[0].replace("dynamic", "")


def test_the_installed_package_finds_its_report_sources():
    """kdlib.book is a namespace package of data folders; importlib, not its repr, gives the folder
    (the editable install maps it to the checkout's book/, a wheel to site-packages/kdlib/book/)."""
    assert report.installed_book() == report.BOOK.resolve() == (ROOT / "book").resolve()
    assert (report.installed_book() / "notebooks" / "e7_summary.py").is_file()


def test_the_lock_pins_what_the_ranges_allow():
    """constraints.txt pins exact versions (==) of at least every declared dependency."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    for name in ("torch", "torchvision", "numpy", "tqdm", "papermill", "jupytext", "ipywidgets", "jupyter-book",
                 "matplotlib", "pandas", "pytest", "ray"):
        assert name in pins, name
    assert pins["ipywidgets"].startswith("8.1.")  # what the vendored html-manager's controls 5.0.x read


@pytest.mark.slow
def test_the_wheel_carries_the_report_sources_and_entry_points(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(ROOT)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("kdlib-*.whl")
    assert wheel.name.startswith(f"kdlib-{kdlib.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    book = [n for n in names if n.startswith("kdlib/book/")]
    for package in ("kdlib/execute/__init__.py", "kdlib/execute/ray_backend.py", "kdlib/authors/__init__.py",
                    "kdlib/authors/__main__.py", "kdlib/claims/power.py", "kdlib/study.py", "kdlib/verdicts.py"):
        assert package in names, package
    for notebook in report.NOTEBOOKS:
        assert f"kdlib/book/notebooks/{notebook}.py" in names
    for needed in ("_config.yml", "_toc.yml", "index.md", "background.md", "references.bib", "_ext/kdlib_assets.py",
                   "_ext/kdlib_guard.py", "_static/favicon.svg", "vendor-src/install_assets.py", "docs/protocol.md",
                   "docs/running.md"):
        assert f"kdlib/book/{needed}" in names, needed
    assert not any("/executed/" in n or "/_build/" in n or "/vendor/" in n for n in book)  # no outputs, no bundles
    for module in (ROOT / "kdlib").rglob("*.py"):  # every module of the package ships (subpackages too)
        rel = module.relative_to(ROOT).as_posix()
        assert rel.startswith("kdlib/book/") or rel in names, rel
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Provides-Extra: report" in metadata and "Provides-Extra: ray" in metadata
    assert "papermill" in metadata and "License-Expression: MIT" in metadata
    assert "Requires-Dist: scipy" in metadata  # kdlib.stats needs it without the report extra
    entry_points = zipfile.ZipFile(wheel).read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "kdlib-report = kdlib.report:main" in entry_points and "kdlib-claims = kdlib.verdicts:main" in entry_points


def test_every_protocol_reference_points_at_a_section_and_no_code_cites_an_issue():
    """Code and tests cite "protocol §n": docs/protocol.md, in the repository, has every such section."""
    import re
    sections = set(re.findall(r"^## §(\d+) ", (ROOT / "docs" / "protocol.md").read_text(), re.M))
    assert sections == {str(n) for n in range(1, 11)}
    cited, issues = set(), []
    for folder in ("kdlib", "tests", "benchmarks", "scripts", "book/notebooks", "book/_ext"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".sh") or path.name == "test_packaging.py":
                continue
            text = path.read_text()
            cited |= set(re.findall(r"protocol §(\d+)", text, re.I))
            assert "SPEC §" not in text, path
            issues += [f"{path.name}: {m}" for m in re.findall(r"\bissue \d+", text)]
    assert cited and cited <= sections, cited - sections
    assert not issues, issues
