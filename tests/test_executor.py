"""run_all: inline and on a local Ray instance give the same runs; failures are collected.

The Ray tests skip when Ray is not installed, except under KDLIB_REQUIRE_RAY=1 (what `make test`
sets, so CI never skips them silently).
"""

import os
import time

import pytest
import torch

from kdlib.execute import ray_backend as kex
from kdlib import execute as kruns
from kdlib.cache import RunCache
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.identity import RunKey
from synthetic import same_run, synthetic_dataset

T_RECIPE = Recipe(epochs=1, batch_size=20, lr=0.05)
S_RECIPE = Recipe(epochs=1, batch_size=20, lr=0.05)
TEACHER = TeacherSpec(recipe=T_RECIPE, seed=0)
STUDENTS = [StudentSpec(recipe=S_RECIPE, teachers=(TEACHER,), seed=s) for s in (0, 1)]
BAD_TEACHER = TeacherSpec(recipe=Recipe(epochs=2, batch_size=20, lr=1e30), seed=1)  # the loss becomes NaN


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_dataset(n_train=60, n_test=30)  # 3 steps per epoch


@pytest.fixture
def one_thread():
    """Ray tasks get one CPU and so one torch thread; the inline reference matches that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance for this module, shut down afterwards."""
    if os.environ.get("KDLIB_REQUIRE_RAY"):
        import ray
    else:
        ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_cache(tmp_path_factory):
    """One driver cache for the Ray tests: the second reuses the first one's teacher."""
    return RunCache(tmp_path_factory.mktemp("ray-runs"))


def test_check_executor():
    assert kruns.check_executor("inline") == "inline"
    for bad in ("spark", "", "ray:", "ray://", 3, None):
        with pytest.raises(ValueError, match="executor must be one of"):
            kruns.check_executor(bad)


def test_ray_executors_need_ray(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as if Ray were not installed
    for executor in ("ray", "ray://head:10001", "ray:auto"):
        with pytest.raises(ValueError, match=rf"executor='{executor}' needs Ray, an optional install"):
            kruns.check_executor(executor)


class FakeRay:
    def __init__(self, gpus):
        self.gpus = gpus

    def cluster_resources(self):
        return {"CPU": 16.0, **({"GPU": self.gpus} if self.gpus else {})}


def test_gpu_share_per_run():
    assert kex._gpus_per_run(FakeRay(1), None, "auto") == kex.DEFAULT_GPUS_PER_RUN == 0.2
    assert kex._gpus_per_run(FakeRay(0), None, "auto") == 0
    assert kex._gpus_per_run(FakeRay(1), 0.5, "cuda") == 0.5
    assert kex._gpus_per_run(FakeRay(1), None, "cpu") == 0
    with pytest.raises(ValueError, match="the Ray cluster has no GPUs"):
        kex._gpus_per_run(FakeRay(0), 0.5, "auto")
    with pytest.raises(ValueError, match="needs gpus_per_run > 0"):
        kex._gpus_per_run(FakeRay(1), 0, "cuda")


def test_run_key_predicts_the_id_a_gpu_worker_gives(synthetic):
    """A CPU driver names the runs a GPU worker will make: bf16 there by default (precision "auto")."""
    from synthetic import run_id

    key = synthetic.cache_key()
    assert RunKey.of(TEACHER, synthetic, torch.device("cpu"), "auto", "auto").id == run_id(TEACHER, key)
    assert RunKey.of(TEACHER, synthetic, torch.device("cuda"), "auto", "auto").id == run_id(TEACHER, key, {"precision": "bf16"})
    assert RunKey.of(TEACHER, synthetic, torch.device("cuda"), "fp32", "auto").id == run_id(TEACHER, key)


def test_run_all_argument_errors(synthetic, tmp_path):
    with pytest.raises(ValueError, match="specs must be TeacherSpec or StudentSpec"):
        kruns.run_all([{"seed": 0}], synthetic, cache=RunCache(tmp_path))
    with pytest.raises(ValueError, match=r"gpus_per_run must be a number in \[0, 1\]"):
        kruns.run_all([TEACHER], synthetic, cache=RunCache(tmp_path), gpus_per_run=2)


def test_inline_failure_is_reported_and_the_rest_finish(synthetic, tmp_path):
    cache = RunCache(tmp_path)
    good = TeacherSpec(recipe=Recipe(epochs=1, batch_size=20, lr=0.05), seed=2)
    orphan = StudentSpec(recipe=S_RECIPE, teachers=(BAD_TEACHER,))
    with pytest.raises(kruns.RunsFailedError) as info:
        kruns.run_all([BAD_TEACHER, good, orphan], synthetic, cache=cache, device="cpu", progress=False)
    err = info.value
    bad_id = RunKey.of(BAD_TEACHER, synthetic, torch.device("cpu"), "auto", "auto").id
    assert [f.run_id for f in err.failures] == [bad_id, RunKey.of(orphan, synthetic, torch.device("cpu"), "auto", "auto").id]
    nan = err.failures[0]
    assert nan.error.startswith("FloatingPointError") and f"run {bad_id} (teacher)" in nan.error and "epoch 1" in nan.error
    assert "Traceback" in nan.traceback and "in train\n" in nan.traceback  # kdlib.train.train raised it
    assert "not started" in err.failures[1].error and bad_id in err.failures[1].error
    assert str(err).startswith("2 of 3 runs failed (1 finished and are in the cache)")
    assert isinstance(err.__cause__, FloatingPointError)
    assert kruns.run_all([good], synthetic, cache=cache, device="cpu", progress=False)[0].metrics["test_acc"] >= 0


def test_ray_sweep_matches_inline(ray_local, synthetic, ray_cache, tmp_path, one_thread):
    inline = kruns.run_all(STUDENTS, synthetic, cache=RunCache(tmp_path), device="cpu", progress=False)
    on_ray = kruns.run_all(STUDENTS, synthetic, executor="ray", cache=ray_cache, device="cpu", progress=False)
    for a, b in zip(inline, on_ray):
        same_run(a, b)
    teacher_id = RunKey.of(TEACHER, synthetic, torch.device("cpu"), "auto", "auto").id
    same_run(RunCache(tmp_path).load(teacher_id), ray_cache.load(teacher_id))
    assert not (ray_cache.folder(teacher_id) / "checkpoint.pt").exists()

    # everything is cached now: nothing is trained or rewritten
    stamps = {r.id: (r.path / "result.json").stat().st_mtime_ns for r in on_ray}
    again = kruns.run_all(STUDENTS, synthetic, executor="ray", cache=ray_cache, device="cpu", progress=False)
    assert {r.id: (r.path / "result.json").stat().st_mtime_ns for r in again} == stamps


def test_ray_failure_is_reported_with_traceback_and_the_rest_finish(ray_local, synthetic, ray_cache):
    teacher_id = RunKey.of(TEACHER, synthetic, torch.device("cpu"), "auto", "auto").id
    stamp = (ray_cache.folder(teacher_id) / "result.json").stat().st_mtime_ns  # from the test above
    orphan = StudentSpec(recipe=S_RECIPE, teachers=(BAD_TEACHER,))
    fresh = StudentSpec(recipe=S_RECIPE, teachers=(TEACHER,), seed=2)
    with pytest.raises(kruns.RunsFailedError) as info:
        kruns.run_all([BAD_TEACHER, orphan, fresh], synthetic, executor="ray", cache=ray_cache, device="cpu",
                    progress=False)
    failures = info.value.failures
    assert len(failures) == 2
    nan, skipped = failures
    assert nan.spec == BAD_TEACHER and nan.error.startswith("FloatingPointError")
    assert f"run {nan.run_id} (teacher)" in nan.error and "epoch 1" in nan.error
    assert "Traceback" in nan.traceback and "FloatingPointError" in nan.traceback  # the worker's traceback
    assert skipped.spec == orphan and "not started" in skipped.error
    assert str(info.value).startswith("2 of 4 runs failed (2 finished and are in the cache)")
    assert ray_cache.load(nan.run_id) is None
    assert ray_cache.load(RunKey.of(fresh, synthetic, torch.device("cpu"), "auto", "auto").id) is not None
    assert (ray_cache.folder(teacher_id) / "result.json").stat().st_mtime_ns == stamp  # cached: not rerun


def test_cached_runs_finds_what_run_all_trained_and_names_what_is_missing(synthetic, tmp_path):
    from kdlib.execute import MissingRunsError, cached_runs
    cache = RunCache(tmp_path)
    teacher, student = TEACHER, STUDENTS[0]
    with pytest.raises(MissingRunsError, match="2 run\\(s\\) are not in the run cache") as e:
        cached_runs([teacher, student], synthetic, cache=cache, device="cpu")
    assert [spec for _, spec in e.value.missing] == [teacher, student]
    trained = kruns.run_all([student], synthetic, cache=cache, device="cpu", progress=False)
    found = cached_runs([student], synthetic, cache=cache, device="cpu")
    assert [r.id for r in found] == [r.id for r in trained]


def test_cached_runs_of_a_numbered_cuda_device_have_that_device_s_keys(synthetic, tmp_path):
    """cached_runs(device="cuda:1") looks for the runs run_all trained on that GPU ("auto" precision
    is bf16 there), not for CPU ones, even on a machine without CUDA; a misspelt device is refused."""
    from kdlib.execute import MissingRunsError, cached_runs
    with pytest.raises(MissingRunsError) as e:
        cached_runs([TEACHER], synthetic, cache=RunCache(tmp_path), device="cuda:1")
    [(rid, _)] = e.value.missing
    assert rid == RunKey.of(TEACHER, synthetic, torch.device("cuda:1")).id
    assert rid != RunKey.of(TEACHER, synthetic, torch.device("cpu")).id
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        cached_runs([TEACHER], synthetic, cache=RunCache(tmp_path), device="gpu")


def _ray_task_pid(name: str = "ray::kdlib-run") -> int | None:
    """The pid of a Ray worker process executing a task of this name (its process title), if any."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith(name):
                return int(entry)
    return None


@pytest.mark.slow
def test_a_killed_ray_worker_resumes_its_run_from_the_last_checkpoint(ray_local, tmp_path, one_thread):
    """The worker trains in the driver's cache, so its checkpoints survive it: Ray retries the task
    of a worker killed mid-run, and the retry resumes, to the result of an uninterrupted run."""
    import signal
    import threading

    from kdlib.files import load_tensors
    data = synthetic_dataset(n_train=400, n_test=50)  # 20 steps an epoch: slow enough to be caught
    spec = TeacherSpec(recipe=Recipe(epochs=20, batch_size=20, lr=0.05), seed=21)
    reference = kruns.run_all([spec], data, cache=RunCache(tmp_path / "inline"), device="cpu", progress=False)[0]
    cache = RunCache(tmp_path / "ray")
    ckpt = cache.folder(reference.id) / "checkpoint.pt"
    result = {}
    sweep = threading.Thread(target=lambda: result.update(
        run=kruns.run_all([spec], data, executor="ray", cache=cache, device="cpu", progress=False)[0]))
    sweep.start()
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and sweep.is_alive():
        try:
            epoch = load_tensors(ckpt)["epoch"] if ckpt.exists() else 0
        except Exception:  # noqa: BLE001  (being replaced right now)
            epoch = 0
        pid = _ray_task_pid()
        if 3 <= epoch < 15 and pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed = epoch
        time.sleep(0.01)
    sweep.join(timeout=300)
    assert killed is not None, "the worker was never caught mid-run"
    run = result["run"]
    same_run(run, reference)
    assert run.info["resumed_after_epochs"] and run.info["resumed_after_epochs"][0] >= killed


def test_a_run_trained_elsewhere_holds_up_only_its_own_task(ray_local, synthetic, tmp_path, one_thread):
    """The driver takes no locks up front: a run another process is training (its lock held) waits
    in its own task while the sweep's other runs finish."""
    import threading

    cache = RunCache(tmp_path)
    busy, free = TeacherSpec(recipe=T_RECIPE, seed=30), TeacherSpec(recipe=T_RECIPE, seed=31)
    busy_id = RunKey.of(busy, synthetic, torch.device("cpu")).id
    free_id = RunKey.of(free, synthetic, torch.device("cpu")).id
    elsewhere = RunCache(tmp_path)  # another process's hold on the same cache
    result = {}
    with elsewhere.lock(busy_id):
        sweep = threading.Thread(target=lambda: result.update(
            runs=kruns.run_all([busy, free], synthetic, executor="ray", cache=cache, device="cpu", progress=False)))
        sweep.start()
        deadline = time.monotonic() + 120
        while cache.load(free_id) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.load(free_id) is not None and cache.load(busy_id) is None and sweep.is_alive()
    sweep.join(timeout=120)
    assert [r.id for r in result["runs"]] == [busy_id, free_id]
