"""run_all's inline executor with several local worker processes (workers > 1).

Each test spawns two worker processes (a few seconds: each imports torch) and trains 1-epoch runs on
the tiny synthetic data.
"""

import multiprocessing
import time

import pytest
import torch

from kdlib import execute as kr
from kdlib.execute import local as klocal
from kdlib.execute import planning as kplan
from kdlib.cache import RunCache
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.identity import RunKey
from synthetic import same_run, synthetic_dataset

RECIPE = Recipe(epochs=1, batch_size=20, lr=0.05)
TEACHERS = [TeacherSpec(recipe=RECIPE, seed=s) for s in (0, 1)]
STUDENT = StudentSpec(recipe=RECIPE, teachers=tuple(TEACHERS), seed=0)
BAD_TEACHER = TeacherSpec(recipe=Recipe(epochs=2, batch_size=20, lr=1e30), seed=5)  # the loss becomes NaN
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_dataset(n_train=60, n_test=30)  # 3 steps per epoch


@pytest.fixture
def one_thread():
    """Two workers on this 2-core machine train with one torch thread each; the serial reference
    matches that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_workers_train_the_runs_workers_1_trains(synthetic, tmp_path, one_thread):
    """Two teachers at once, then their student: the same runs, bit for bit, as one after another here.

    Bit-identity holds for the same torch thread count only: on CPU, 2 threads and 1 thread give
    different last bits (same ids), so the serial reference runs with 1 thread, as each worker does
    when 2 share 2 cores (os.cpu_count() // workers)."""
    serial = kr.run_all([*TEACHERS, STUDENT], synthetic, cache=RunCache(tmp_path / "serial"), device="cpu",
                        progress=False, workers=1)
    cache = RunCache(tmp_path / "workers")
    parallel = kr.run_all([*TEACHERS, STUDENT], synthetic, cache=cache, device="cpu", progress=False,
                          workers=2)
    assert [r.id for r in parallel] == [RunKey.of(s, synthetic, CPU).id for s in [*TEACHERS, STUDENT]]
    for a, b in zip(serial, parallel):
        same_run(a, b)
        assert not (cache.folder(b.id) / "checkpoint.pt").exists()  # finished, and loads (verified) again
        assert cache.load(b.id) is not None
    assert multiprocessing.active_children() == []  # the pool is shut down

    # everything is cached now: nothing starts, nothing is rewritten
    stamps = {r.id: (r.path / "result.json").stat().st_mtime_ns for r in parallel}
    again = kr.run_all([*TEACHERS, STUDENT], synthetic, cache=cache, device="cpu", progress=False, workers=2)
    assert {r.id: (r.path / "result.json").stat().st_mtime_ns for r in again} == stamps


def test_a_failing_run_in_a_worker_is_reported_and_the_rest_finish(synthetic, tmp_path):
    cache = RunCache(tmp_path)
    orphan = StudentSpec(recipe=RECIPE, teachers=(BAD_TEACHER,))
    good_student = StudentSpec(recipe=RECIPE, teachers=(TEACHERS[0],), seed=1)
    with pytest.raises(kr.RunsFailedError) as info:
        kr.run_all([BAD_TEACHER, TEACHERS[0], orphan, good_student], synthetic, cache=cache, device="cpu",
                   progress=False, workers=2)
    err = info.value
    bad_id, orphan_id = (RunKey.of(s, synthetic, CPU).id for s in (BAD_TEACHER, orphan))
    assert [f.run_id for f in err.failures] == [bad_id, orphan_id]
    nan = err.failures[0]
    assert nan.error.startswith("FloatingPointError") and f"run {bad_id} (teacher)" in nan.error
    assert nan.traceback.startswith("Traceback (in a worker process):")
    assert "in train\n" in nan.traceback and "_train_in_worker" in nan.traceback  # raised in the worker
    assert "not started" in err.failures[1].error and bad_id in err.failures[1].error
    assert str(err).startswith("2 of 4 runs failed (2 finished and are in the cache)")
    assert isinstance(err.__cause__, FloatingPointError)
    for spec in (TEACHERS[0], good_student):
        assert cache.load(RunKey.of(spec, synthetic, CPU).id) is not None
    assert cache.load(bad_id) is None and cache.load(orphan_id) is None


def test_an_interrupted_driver_stops_its_workers(synthetic, tmp_path, monkeypatch):
    """Ctrl-C while the workers train: no worker process outlives run_all, no lock is left held, and
    the interrupted runs resume from their checkpoints later."""
    cache = RunCache(tmp_path)
    long = [TeacherSpec(recipe=Recipe(epochs=200, batch_size=20, lr=0.05), seed=s) for s in (0, 1)]
    ids = [RunKey.of(s, synthetic, CPU).id for s in long]

    def interrupted(*args, **kwargs):  # once a worker has finished an epoch
        deadline = time.monotonic() + 60
        while not any((cache.folder(i) / "checkpoint.pt").exists() for i in ids):
            assert time.monotonic() < deadline, "no worker finished an epoch in 60 s"
            time.sleep(0.05)
        raise KeyboardInterrupt

    monkeypatch.setattr(klocal, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kr.run_all(long, synthetic, cache=cache, device="cpu", progress=False, workers=2)
    assert multiprocessing.active_children() == []
    checkpoints = {i: (cache.folder(i) / "checkpoint.pt").stat().st_mtime_ns
                   for i in ids if (cache.folder(i) / "checkpoint.pt").exists()}
    assert checkpoints
    time.sleep(0.5)
    assert {i: (cache.folder(i) / "checkpoint.pt").stat().st_mtime_ns for i in checkpoints} == checkpoints
    for rid in ids:
        with cache.lock(rid, blocking=False):
            assert cache.load(rid) is None


@pytest.mark.parametrize("bad", ["x", 0, -1, 1.5, True, None, "2", "auto"])
def test_bad_workers_are_refused(synthetic, tmp_path, bad):
    with pytest.raises(ValueError, match=r"workers must be"):
        kr.run_all(TEACHERS, synthetic, cache=RunCache(tmp_path), device="cpu", progress=False, workers=bad)
    assert not any(tmp_path.iterdir())  # refused before anything was planned or trained


def test_processes_are_no_more_than_runs_that_can_train_at_once(synthetic, tmp_path):
    """The pool starts no idle process: the two teachers can train at once, the student after them."""
    keys = {s: RunKey.of(s, synthetic, CPU, "auto", "auto") for s in [*TEACHERS, STUDENT]}
    order, cached = kplan.plan([keys[STUDENT]], RunCache(tmp_path))
    assert order == [keys[TEACHERS[0]], keys[TEACHERS[1]], keys[STUDENT]] and not cached
    assert kplan.max_parallel(order, {}) == 2
    assert kplan.max_parallel(order, {keys[TEACHERS[0]]: None, keys[TEACHERS[1]]: None}) == 1
    assert kplan.max_parallel(order, dict.fromkeys(order)) == 0


@pytest.mark.slow
def test_bench_workers_smoke(tmp_path):
    """benchmarks/bench_workers.py end to end on synthetic pixels, 1 epoch (two 800-image
    teachers twice, and two worker processes; 30-70 s on 2 cores)."""
    import json

    from benchmarks import bench_workers

    path = tmp_path / "workers.json"
    report = bench_workers.main(["--data", "synthetic", "--epochs", "1", "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    assert report["serial"]["seconds"] > 0 and report["workers"]["seconds"] > 0 and report["throughput_ratio"] > 0
    assert [r["id"] for r in report["serial"]["runs"]] == [r["id"] for r in report["workers"]["runs"]]
    assert report["cpu_count"] and report["torch"] == torch.__version__ and report["kdlib"]
    assert 0 <= report["evaluation"]["share_of_a_reduced_student_run"] < 1
    assert multiprocessing.active_children() == []


def test_bench_workers_rejects_bad_arguments():
    from benchmarks import bench_workers

    with pytest.raises(SystemExit):
        bench_workers.parse_args(["--epochs", "0"])
    assert bench_workers.parse_args([]).epochs == 10
