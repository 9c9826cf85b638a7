"""The whole report at the `tiny` scale: every notebook executed by the runner, then the book built."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from tiny_book import tiny_book as build_tiny_book

from kdlib import data as kdata
from kdlib import report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory, cifar_real_source):
    return build_tiny_book(tmp_path_factory, cifar_real_source)


def test_every_notebook_ran_to_the_end_with_outputs(tiny_book):
    for name in report.NOTEBOOKS:
        nb = nbformat.read(tiny_book.book / "executed" / f"{name}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, name
        assert all(c.execution_count is not None for c in code), f"{name}: a cell did not run"
        assert any(c.outputs for c in code), f"{name}: no outputs"
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
        injected = [c for c in code if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and 'scale = "tiny"' in injected[0].source, name
    timings = json.loads((tiny_book.book / "executed" / report.TIMINGS).read_text())
    assert set(timings) == set(report.NOTEBOOKS)


@pytest.mark.parametrize("name", ["e3_initialisation", "e5_temperature", "b1_hard_labels", "b6_disagreements",
                                  "p1_authors_networks"])
def test_slider_pages_keep_their_widget_state(tiny_book, name):
    nb = nbformat.read(tiny_book.book / "executed" / f"{name}.ipynb", as_version=4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]  # the saved widget models
    models = [m["model_name"] for m in state.values()]
    assert "SelectionSliderModel" in models and "StackModel" in models and "LinkModel" in models
    assert models.count("ImageModel") >= 2


def test_book_has_every_page(tiny_book):
    html = tiny_book.index.parent
    pages = ["index.html", "background.html"] + [f"executed/{n}.html" for n in report.NOTEBOOKS]
    pages += [f"docs/{doc.stem}.html" for doc in (Path(__file__).parents[1] / "docs").glob("*.md")]  # the "Using kdlib" part
    for page in pages:
        assert (html / page).stat().st_size > 0, page
    # widget pages carry their state and the (local, when installed) loader
    e3 = (html / "executed" / "e3_initialisation.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in e3
    if tiny_book.local_assets:
        assert "_static/vendor/html-manager/embed-amd.js" in e3
        assert "cdn.jsdelivr.net" not in e3


def test_generated_markdown_tables_render(tiny_book):
    """Markdown a notebook generates is parsed as MyST (_config.yml nb_render_markdown_format): its
    tables become tables, not paragraphs of pipes (myst-nb's CommonMark default has no tables)."""
    appendix = (tiny_book.index.parent / "executed" / "appendix.html").read_text()
    assert "<td><p>CPU threads</p></td>" in appendix
    unparsed = re.compile(r"<p>\|[^<\n]*\|\n\|(\u2014|---)\|")  # "| a | b |" then "|---|" as text
    for page in sorted(tiny_book.index.parent.rglob("*.html")):
        assert not unparsed.search(page.read_text()), f"{page.name}: a Markdown table rendered as text"


def test_claims_command_reproduces_the_summary_from_the_cache(tiny_book, cifar_real_source, tmp_path):
    """`python -m kdlib.claims` gives, from the run cache alone, the verdicts the E7 chapter printed.
    Run as the README types it, from the repository root with no --data: it finds the data the way
    `make report` does (kdlib.data.default_source), so it finds the book's runs."""
    out = tmp_path / "claims.json"
    env = {k: v for k, v in os.environ.items() if k != "KDLIB_DATA"}
    env["KDLIB_RUNS"] = str(tiny_book.book.parent / "runs")
    root = Path(__file__).resolve().parents[1]
    if not (root / kdata.OFFLINE_COPY).exists():
        pytest.skip("the offline copy is not beside this checkout: the typed command would use torchvision")
    proc = subprocess.run([sys.executable, "-m", "kdlib.claims", "--scale", "tiny", "--json", str(out)], env=env,
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    record = json.loads(text)
    assert record["scale"] == "tiny" and len(record["claims"]) == 8
    for part in (p for c in record["claims"] for p in c["parts"]):
        assert {"estimate", "interval", "boundary", "claimed_side", "verdict", "rule", "noise"} <= set(part)
    nb = nbformat.read(tiny_book.book / "executed" / "e7_summary.ipynb", as_version=4)
    printed = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    for claim in record["claims"]:
        assert claim["verdict"] in ("holds", "does not hold", "inconclusive")
        row = re.search(rf"\(`{re.escape(claim['id'])}`\) \| \**([a-z ]+?)\** \|", printed)
        assert row and row.group(1) == claim["verdict"], claim["id"]
        assert f"[{claim['verdict']}]" in proc.stdout
    # the same claims on the original authors' networks, marked as the paper scale, as E7 printed them
    assert [v["id"] for v in record["paper_scale"]] == ["e1-accuracy", "e1-fidelity", "e0-baselines", "e2-ensembles",
                                                        "b6-where-they-disagree"]
    assert all(v["scale"].startswith("paper: the original authors' networks") for v in record["paper_scale"])
    assert "At the paper scale, on the original authors' networks" in proc.stdout
    for v in record["paper_scale"]:
        assert f"**{v['verdict']}**" in printed
    assert [q["experiment"] for q in record["beyond"]] == ["B1", "B2", "B3", "B4", "B5", "B6"]
    for question in record["beyond"]:  # the questions beyond the paper, as E7 printed them
        row = re.search(rf"\(`{re.escape(question['id'])}`\) \| \**([a-z ]+?)\** \|", printed)
        assert row and row.group(1) == question["verdict"], question["id"]

    empty = subprocess.run([sys.executable, "-m", "kdlib.claims", "--scale", "tiny", "--data", cifar_real_source],
                           env={**env, "KDLIB_RUNS": str(tmp_path / "none")}, capture_output=True, text=True, timeout=600)
    assert empty.returncode == 1 and "not in the run cache" in empty.stderr  # nothing is trained


def test_the_paper_scale_chapters_read_the_authors_networks(tiny_book):
    """P1 evaluates the 18 networks (a smoke test's few test images at the tiny scale) and prints their
    verdicts; P2 draws the lines between student and teacher at both scales."""
    def markdown(name):
        nb = nbformat.read(tiny_book.book / "executed" / f"{name}.ipynb", as_version=4)
        return "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs)
    p1 = markdown("p1_authors_networks")
    assert "of the 18 networks score exactly their logged test accuracy" in p1
    assert "Students are far from faithful" in p1 and "each against its own teacher" in p1
    p2 = markdown("p2_landscape")
    assert "Along the straight line from a self-distilled student to its own teacher" in p2
    assert re.search(r"test images per point: [^.]*λ = \d", p2) and "not a verdict" in p2, p2
