"""The speed benchmarks and the GPU check run with minimal budgets and write what they promise.

Smoke tests, not timed tests: the figures they produce here mean nothing (tiny batches, synthetic
pixels, a shared CPU). docs/speed.md has the measured ones.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_train

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
    r = paper["results"]
    assert {"teacher", "student, 1 on the fly", "student, 5 on the fly", "student, cache",
            "student, cache, layer norm"} == r["epochs"].keys()
    assert r["checks"] == {"skipped": "needs CUDA"} and r["get_run"]["metrics_finite"]
    assert r["concurrent"]["processes"] == 2 and len(r["concurrent"]["images_per_s_each"]) == 2
    x = paper["extrapolation"]
    assert x["paper_scale"]["sequential_hours"] > 0 and set(x["one_300_epoch_distillation"]) == {"1 teacher", "5 teachers"}
    summary = (out / "summary.md").read_text()
    assert "Naive pipeline vs kdlib" in summary and "Extrapolated" in summary and "synthetic" in summary
