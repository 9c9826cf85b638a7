"""The speed benchmarks and the GPU check run with minimal budgets and write what they promise.

Smoke tests, not timed tests: the figures they produce here mean nothing (tiny batches, synthetic
pixels, a shared CPU). docs/speed.md has the measured ones.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kdlib
from benchmarks import bench_train, common, tables

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "synthetic", "--images", "100", "--rounds", "2", "--steps", "1", "--warmup", "0",
        "--members", "1", "2", "--batch-teacher", "16", "--batch-student", "16", "--cache-images", "1",
        "--threads", "1"]


def _check_bench_report(report: dict, members=(1, 2)):
    assert {"machine", "settings", "data", "results", "logit_cache", "targets", "command"} <= report.keys()
    rows = {(r["task"], r["path"]): r for r in report["results"]}
    expected = {("teacher", "naive"), ("teacher", "kdlib"), ("teacher", "kdlib NCHW")}
    for m in members:
        expected |= {(f"distill-{m}", p) for p in ("naive", "kdlib on the fly", "kdlib logit cache")}
    assert expected <= rows.keys()
    for r in report["results"]:
        assert r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["ratio_vs_naive"] > 0
        assert len(r["samples_images_per_s"]) == len(r["ratio_samples"]) == report["settings"]["rounds"]
    assert all(rows[(t, "naive")]["ratio_vs_naive"] == 1.0 for t, _ in expected)
    lc = report["logit_cache"]
    assert lc["paper_bytes"] == 1_620_000_000 and lc["build"]["member_forwards_per_s"] > 0
    assert len(lc["amortised"]) == 2 * len(members)
    assert [t["path"] for t in report["targets"]] == ["kdlib"]  # no 5-teacher row in this run
    assert report["machine"]["torch_threads"] == 1
    _check_stamp(report)


def _check_stamp(record: dict):
    assert record["kdlib"] == kdlib.__version__
    commit = record["git_commit"]
    assert commit is None or (len(commit) == 40 and int(commit, 16) >= 0)


def test_bench_train_smoke(tmp_path):
    path = tmp_path / "bench.json"
    report = bench_train.main(TINY + ["--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    _check_bench_report(report)


def test_bench_train_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--rounds", "0"])
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--variants", "fp16"])


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """scripts/gpu_check.sh end to end with --device cpu --dry: every step and file (~50 s)."""
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", "--dry",
                           "--data", "synthetic", "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("env.txt", "bench.json", "bench.txt", "paper.json", "paper.md", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    _check_bench_report(json.loads((out / "bench.json").read_text()))
    paper = json.loads((out / "paper.json").read_text())
    assert paper["errors"] == {} and paper["dry"] is True
    _check_stamp(paper)
    r = paper["results"]
    assert {"teacher", "student, 1 on the fly", "student, 5 on the fly", "student, cache",
            "student, cache, layer norm"} == r["epochs"].keys()
    assert r["checks"] == {"skipped": "needs CUDA"} and r["get_run"]["metrics_finite"]
    assert r["concurrent"]["processes"] == 2 and len(r["concurrent"]["images_per_s_each"]) == 2
    x = paper["extrapolation"]
    assert x["paper_scale"]["sequential_hours"] > 0 and set(x["one_300_epoch_distillation"]) == {"1 teacher", "5 teachers"}
    summary = (out / "summary.md").read_text()
    assert "Naive pipeline vs kdlib" in summary and "Extrapolated" in summary and "synthetic" in summary


def test_publish_stamps_the_record_and_writes_it_atomically(tmp_path):
    path = tmp_path / "results" / "r.json"
    record = common.publish({"benchmark": "x", "when": "now"}, path)
    _check_stamp(record)
    assert json.loads(path.read_text()) == record and list(record)[:2] == ["benchmark", "when"]  # order kept
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind
    assert common.publish({"a": 1})["kdlib"] == kdlib.__version__  # no path: stamped, nothing written


def test_benchmarks_import_helpers_from_common_not_from_each_other():
    """One place per idea: every benchmark takes shared helpers from benchmarks.common (or kdlib)."""
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmarks."):
                assert node.module == "benchmarks.common", f"{path.name} imports {node.module}"
            if isinstance(node, ast.FunctionDef) and path.name != "common.py":
                assert node.name not in {"machine", "git_commit", "default_data", "synchronize", "publish",
                                         "synthetic_dataset", "random_logit_cache"}, f"{path.name}: {node.name}"


def test_synthetic_data_and_random_logit_caches():
    ds = common.load_data(kdlib.data.DataSpec(source="synthetic"), synthetic_images=250,
                          synthetic_test_images=50)
    assert len(ds.train) == 250 and len(ds.test) == 50 and ds.train.y[:3].tolist() == [0, 1, 2]
    assert common.describe_data(ds) == "synthetic pixels, 250 images"
    same = common.synthetic_dataset(10)
    assert same.test is same.train  # bench_train's and bench_workers' synthetic test set: the training set
    assert bench_train.load_data("synthetic", 250).train.x.shape == (200, 3, 32, 32)  # whole classes
    whole = common.random_logit_cache(5, torch.device("cpu"), seed=3)
    chunked = common.random_logit_cache(5, torch.device("cpu"), seed=3, chunk=2)
    assert whole.logits.shape == chunked.logits.shape == (5, 162, 100)
    assert whole.logits.dtype == chunked.logits.dtype == torch.float16


def test_speed_doc_table_is_generated_from_its_results_json():
    """docs/speed.md's "Measured" tables are what benchmarks/results/ generates: if this fails, the doc
    or a record changed; run `python -m benchmarks.tables --write` (and reread the prose around it)."""
    text = tables.SPEED_DOC.read_text()
    assert tables.MARKER.findall(text) == ["benchmarks/results/cpu-2core-2threads-run2.json",
                                           "benchmarks/results/cpu-2core-*.json",
                                           "benchmarks/results/compile-cpu-2core-batch64.json",
                                           "benchmarks/results/bf16-cpu-2core-amx-batch64.json"]
    assert tables.regenerate(text) == text, "docs/speed.md's table is stale: python -m benchmarks.tables --write"
    assert tables.main([str(tables.SPEED_DOC)]) == 0


def test_the_speed_table_shows_the_variants_a_record_asked_for_except_nchw():
    """A record's --variants rows (bf16, torch.compile) appear beside the plain ones, named; the NCHW
    rows do not (the table across records carries them)."""
    record = json.loads((common.REPO / "benchmarks/results/cpu-2core-2threads-run2.json").read_text())
    plain = tables.speed_table(record)
    assert "NCHW" not in plain and "compile" not in plain and len(plain.splitlines()) == 2 + 5
    variant = {**record, "settings": {**record["settings"], "variants": ["nchw", "compile"]},
               "results": record["results"] + [
                   {**r, "path": f"{r['path']} compile", "images_per_s": 999.0} for r in record["results"]
                   if r["path"] in ("kdlib", "kdlib logit cache")]}
    rows = tables.speed_table(variant).splitlines()
    assert "| teacher training, torch.compile | 331 | 999 |" in "\n".join(rows)
    assert "| 5-teacher distillation, logit cache, torch.compile | 129 | 999 |" in "\n".join(rows)
    assert len(rows) == 2 + 5 + 3 and not any("NCHW" in row for row in rows)  # 1 teacher + 2 cached students
    unasked = {**variant, "settings": record["settings"]}  # rows present, not asked for: not shown
    assert tables.speed_table(unasked) == plain


def test_tables_write_rewrites_a_stale_table(tmp_path):
    doc = tmp_path / "speed.md"
    fresh = tables.SPEED_DOC.read_text()
    doc.write_text(fresh.replace("| 331 | 461 |", "| 300 | 400 |"))
    assert tables.main([str(doc)]) == 1 and doc.read_text() != fresh
    assert tables.main([str(doc), "--write"]) == 0 and doc.read_text() == fresh


def test_a_table_across_records_has_a_row_per_record_and_refuses_what_it_cannot_join(tmp_path, monkeypatch):
    """A marker with a `*` joins every record it matches, one row each (sorted by name); no match, or
    records of two benchmarks, is an error naming the pattern."""
    across = tables.render("benchmarks/results/cpu-2core-*.json").splitlines()
    names = sorted(p.name for p in (common.REPO / "benchmarks" / "results").glob("cpu-2core-*.json"))
    assert [row.split(" | ")[0].removeprefix("| ") for row in across[2:]] == names
    one = json.loads((common.REPO / "benchmarks/results/cpu-2core-1thread.json").read_text())
    assert across[2].split(" | ")[3].startswith(f"{one['results'][1]['ratio_vs_naive']:.2f}x")  # teacher, kdlib
    monkeypatch.setattr(tables, "REPO", tmp_path)
    with pytest.raises(FileNotFoundError, match="no benchmark record matches 'none-\\*.json'"):
        tables.render("none-*.json")
    (tmp_path / "a.json").write_text(json.dumps(one))
    (tmp_path / "b.json").write_text(json.dumps({"benchmark": "benchmarks/bench_workers.py"}))
    with pytest.raises(ValueError, match="several benchmarks"):
        tables.render("*.json")
