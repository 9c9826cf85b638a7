"""Crashes, damaged files and concurrent requests never give a wrong or half-written run.

Some tests run get_run in subprocesses (tests/synthetic.py data, one torch thread each, so that
results match bitwise across processes): SIGKILL mid-epoch, and two processes racing for a run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdlib import execute as kruns
from kdlib.cache import RUN_FILES, CorruptRunError, RunCache
from kdlib.files import CorruptFileError, load_tensors, save_tensors
from synthetic import run_id
from kdlib.config import Recipe, StudentSpec, TeacherSpec, spec_to_dict
from kdlib.execute import get_run
from synthetic import same_run, synthetic_dataset

TESTS = Path(__file__).resolve().parent
R3 = Recipe(epochs=3, batch_size=20, lr=0.05)  # 100 synthetic images: 5 steps per epoch

# get_run in a fresh process: argv = spec JSON, then one or more cache roots (trained in order).
# KDLIB_PAUSE_AT_STEP=n: at optimizer step n, touch $KDLIB_PAUSED and sleep (to be killed there).
# KDLIB_TRAIN_MARKER=path: append a line there whenever training (kdlib.train.train) starts.
# KDLIB_BARRIER=dir:n: wait until n processes reached this point before asking for the run.
# Prints one JSON line per cache: the run id and the number of optimizer steps taken.
WORKER = r"""
import json, os, sys, time
import torch
import kdlib.device
import kdlib.execute
import kdlib.train
from kdlib.cache import RunCache
from kdlib.config import spec_from_dict
from synthetic import synthetic_dataset

kdlib.device.cpu_has_native_bf16 = lambda: False  # fp32 for "auto", as in the test process (conftest)
steps = {"n": 0}
real_step = torch.optim.SGD.step
def step(self, *args, **kwargs):
    steps["n"] += 1
    if steps["n"] == int(os.environ.get("KDLIB_PAUSE_AT_STEP", 0)):
        open(os.environ["KDLIB_PAUSED"], "w").close()
        time.sleep(600)
    return real_step(self, *args, **kwargs)
torch.optim.SGD.step = step

if os.environ.get("KDLIB_TRAIN_MARKER"):
    real_train = kdlib.train.train
    def counting_train(*args, **kwargs):
        with open(os.environ["KDLIB_TRAIN_MARKER"], "a") as f:
            f.write(f"{os.getpid()}\n")
        return real_train(*args, **kwargs)
    kdlib.train.train = counting_train

spec, dataset = spec_from_dict(json.loads(sys.argv[1])), synthetic_dataset()
if os.environ.get("KDLIB_BARRIER"):
    folder, n = os.environ["KDLIB_BARRIER"].rsplit(":", 1)
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < int(n):
        if time.monotonic() > deadline:
            sys.exit("the other process never reached the barrier")
        time.sleep(0.01)
for root in sys.argv[2:]:
    steps["n"] = 0
    run = kdlib.execute.get_run(spec, dataset, RunCache(root), device="cpu", progress=False)
    print(json.dumps({"id": run.id, "steps": steps["n"]}), flush=True)
"""


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_dataset()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    path = tmp_path_factory.mktemp("worker") / "worker.py"
    path.write_text(WORKER)
    return path


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def _start(worker: Path, spec, roots, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(worker), json.dumps(spec_to_dict(spec)), *map(str, roots)],
                            env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 180) -> list[dict]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# (a) SIGKILL mid-epoch, then resume

@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(worker, tmp_path):
    spec = TeacherSpec(recipe=R3, seed=5)
    killed, reference = RunCache(tmp_path / "killed"), RunCache(tmp_path / "reference")
    paused = tmp_path / "paused"
    proc = _start(worker, spec, [killed.root], KDLIB_PAUSE_AT_STEP=8, KDLIB_PAUSED=paused)  # epoch 2, step 3
    try:
        ckpt = killed.root / run_id(spec, synthetic_dataset().cache_key()) / "checkpoint.pt"
        _wait_for(lambda: ckpt.exists() and paused.exists() or proc.poll() is not None, 180, "epoch 2")
        assert proc.poll() is None, proc.stderr.read()
        assert load_tensors(ckpt)["epoch"] == 1  # inside epoch 2, after epoch 1's checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert killed.load(ckpt.parent.name) is None  # not finished, and not mistaken for finished

    # the next request resumes (2 epochs left: 10 steps); the reference trains all 15
    (resumed, fresh) = _finish(_start(worker, spec, [killed.root, reference.root]))
    assert (resumed["steps"], fresh["steps"]) == (10, 15)
    same_run(killed.load(resumed["id"]), reference.load(fresh["id"]))
    assert sorted(p.name for p in ckpt.parent.iterdir()) == sorted(RUN_FILES)  # no checkpoint or temp file left


# ---------------------------------------------------------------------------------------------
# (b) damaged cache entries are detected, never used

@pytest.fixture(scope="module")
def finished(synthetic, tmp_path_factory):
    """A finished teacher run, to copy and damage."""
    spec = TeacherSpec(recipe=Recipe(epochs=1, batch_size=20, lr=0.05), seed=6)
    cache = RunCache(tmp_path_factory.mktemp("pristine"))
    return spec, get_run(spec, synthetic, cache, device="cpu", progress=False)


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path):
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x01
    path.write_bytes(bytes(raw))


def _edit_json(path: Path, edit):
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


DAMAGE = {
    "model.pt truncated": ("model.pt", _truncate),
    "model.pt one byte flipped": ("model.pt", _flip_last_byte),
    "model.pt missing": ("model.pt", Path.unlink),
    "logits.pt truncated": ("logits.pt", _truncate),
    "logits.pt swapped for another checked file": (
        "logits.pt", lambda p: save_tensors(p, {"test": torch.zeros(50, 100)})),
    "result.json truncated": ("result.json", _truncate),
    "result.json metric edited": (
        "result.json", lambda p: _edit_json(p, lambda r: r["metrics"].update(test_acc=0.99))),
    "result.json spec edited": (
        "result.json", lambda p: _edit_json(p, lambda r: (r["spec"].update(seed=7), r.pop("checksum")))),
    "spec.json edited": ("spec.json", lambda p: _edit_json(p, lambda s: s["spec"].update(seed=7))),
    "spec.json truncated": ("spec.json", _truncate),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_run_is_detected_naming_run_and_file(finished, tmp_path, case):
    _, run = finished
    cache = RunCache(tmp_path)
    shutil.copytree(run.path, cache.folder(run.id))
    name, damage = DAMAGE[case]
    damage(cache.folder(run.id) / name)
    with pytest.raises(CorruptRunError, match=f"run {run.id}: {name} ") as info:
        cache.load(run.id)
    assert info.value.file == name
    with pytest.raises(CorruptRunError):
        cache.export_run(run.id)
    with pytest.raises(CorruptRunError):  # nor can damaged files be imported elsewhere
        RunCache(tmp_path / "elsewhere").import_run(run.id, cache._read_files(run.id))


def test_damaged_weights_of_a_loaded_run_fail_loudly(finished, tmp_path):
    _, run = finished
    cache = RunCache(tmp_path)
    shutil.copytree(run.path, cache.folder(run.id))
    loaded = cache.load(run.id)
    _flip_last_byte(loaded.path / "model.pt")
    _truncate(loaded.path / "logits.pt")
    with pytest.raises(CorruptFileError, match=f"{run.id}/model.pt failed its checksum"):
        loaded.state_dict()
    with pytest.raises(CorruptFileError, match=f"{run.id}/logits.pt failed its checksum"):
        loaded.test_logits()


def test_run_all_moves_a_damaged_run_aside_and_retrains_it(finished, synthetic, tmp_path):
    spec, run = finished
    cache = RunCache(tmp_path)
    shutil.copytree(run.path, cache.folder(run.id))
    _flip_last_byte(cache.folder(run.id) / "model.pt")
    with pytest.warns(UserWarning, match=f"run {run.id}: model.pt failed its checksum.*moved to .*training it again"):
        (again,) = kruns.run_all([spec], synthetic, cache=cache, device="cpu", progress=False)
    same_run(again, run)  # retrained to the same result
    (aside,) = (tmp_path / "damaged").iterdir()
    assert aside.name.startswith(run.id) and (aside / "model.pt").exists()  # kept for inspection


# ---------------------------------------------------------------------------------------------
# (c) two processes, one run

@pytest.mark.slow
def test_two_processes_asking_for_one_run_train_it_once(worker, tmp_path):
    spec = TeacherSpec(recipe=R3, seed=8)
    cache, marker, barrier = RunCache(tmp_path / "runs"), tmp_path / "trained", tmp_path / "barrier"
    barrier.mkdir()
    env = dict(KDLIB_TRAIN_MARKER=marker, KDLIB_BARRIER=f"{barrier}:2")
    procs = [_start(worker, spec, [cache.root], **env) for _ in range(2)]
    outs = [_finish(p) for p in procs]
    assert len(marker.read_text().splitlines()) == 1  # exactly one process trained
    assert sorted(o[0]["steps"] for o in outs) == [0, 15]  # the other waited, then reused its result
    rid = outs[0][0]["id"]
    assert outs[1][0]["id"] == rid and cache.load(rid) is not None
    assert sorted(p.name for p in cache.folder(rid).iterdir()) == sorted(RUN_FILES)
    assert sorted(p.name for p in cache.root.iterdir()) == sorted([rid, f".{rid}.lock"])


def test_lock_is_exclusive_across_caches_and_reentrant_within_one(tmp_path):
    a, b = RunCache(tmp_path), RunCache(tmp_path)
    with a.lock("r1"):
        with a.lock("r1"):  # the same object: re-entrant
            with pytest.raises(BlockingIOError):
                with b.lock("r1", blocking=False):
                    pass
        with pytest.raises(BlockingIOError):
            with b.lock("r1", blocking=False):
                pass
        with b.lock("r2", blocking=False):  # another run: free
            pass
    with b.lock("r1", blocking=False):  # released
        pass


# ---------------------------------------------------------------------------------------------
# (d) NaN loss: named run and epoch, through get_run and the executor

def test_nan_loss_names_run_and_epoch_through_the_executor(synthetic, tmp_path):
    spec = TeacherSpec(recipe=Recipe(epochs=2, batch_size=20, lr=1e30), seed=0)
    rid = run_id(spec, synthetic.cache_key())
    with pytest.raises(kruns.RunsFailedError, match=rf"run {rid} \(teacher\): the training loss became nan in epoch 1"):
        kruns.run_all([spec], synthetic, cache=RunCache(tmp_path), device="cpu", progress=False)
    assert RunCache(tmp_path).load(rid) is None


# ---------------------------------------------------------------------------------------------
# (e) a failed write keeps the previous checkpoint

def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_tensors(path, {"epoch": 1, "w": torch.arange(3.0)})

    def full_disk(fd):
        raise OSError("No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_tensors(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert load_tensors(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_failed_write_during_training_keeps_epoch_checkpoint_and_resumes(synthetic, tmp_path, monkeypatch):
    spec = TeacherSpec(recipe=R3, seed=9)
    reference = get_run(spec, synthetic, RunCache(tmp_path / "reference"), device="cpu", progress=False)
    cache = RunCache(tmp_path / "runs")
    real_replace, writes = os.replace, []

    def failing_replace(src, dst):
        if Path(dst).name == "checkpoint.pt":
            writes.append(dst)
            if len(writes) == 2:  # epoch 2's checkpoint: the disk is full
                raise OSError("No space left on device")
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        get_run(spec, synthetic, cache, device="cpu", progress=False)
    monkeypatch.undo()
    folder = cache.folder(reference.id)
    assert load_tensors(folder / "checkpoint.pt")["epoch"] == 1
    assert [p.name for p in folder.iterdir()] == ["checkpoint.pt"]

    resumed = get_run(spec, synthetic, cache, device="cpu", progress=False)
    same_run(resumed, reference)


def test_checkpoint_cut_anywhere_is_detected(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_tensors(path, {"epoch": 1, "model": {"w": torch.randn(64, 64)}, "history": [{"epoch": 1}]})
    raw = path.read_bytes()
    for cut in (0, 10, 64, 65, 66, len(raw) // 2, len(raw) - 1):  # a crash can stop a write anywhere
        path.write_bytes(raw[:cut])
        with pytest.raises(CorruptFileError, match="failed its checksum"):
            load_tensors(path)


# ---------------------------------------------------------------------------------------------
# (f) threads, re-reads and resumes elsewhere

def test_threads_sharing_one_cache_exclude_each_other(tmp_path):
    """Two threads of one RunCache take a run's lock in turn (the lock was re-entrant per object,
    so both entered, and the second exit raised KeyError)."""
    import threading

    cache, inside, events = RunCache(tmp_path), [], []

    def hold(name):
        with cache.lock("r1"):
            inside.append(name)
            events.append(len(inside))  # how many threads are inside at once
            time.sleep(0.2)
            inside.remove(name)

    threads = [threading.Thread(target=hold, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events == [1, 1]
    with cache.lock("r1"), cache.lock("r1"):  # still re-entrant within a thread
        pass


def test_two_threads_asking_for_one_run_train_it_once(synthetic, tmp_path, monkeypatch):
    import threading

    import kdlib.train
    spec, cache, trained = TeacherSpec(recipe=R3, seed=10), RunCache(tmp_path), []
    real_train = kdlib.train.train

    def counting_train(*args, **kwargs):
        trained.append(threading.get_ident())
        return real_train(*args, **kwargs)
    monkeypatch.setattr(kdlib.train, "train", counting_train)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_run(spec, synthetic, cache, device="cpu",
                                                                      progress=False))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trained) == 1 and len(results) == 2 and results[0].id == results[1].id


def test_result_json_without_its_checksum_is_damaged(finished, tmp_path):
    _, run = finished
    cache = RunCache(tmp_path)
    shutil.copytree(run.path, cache.folder(run.id))
    _edit_json(cache.folder(run.id) / "result.json", lambda r: (r["metrics"].update(test_acc=0.99), r.pop("checksum")))
    with pytest.raises(CorruptRunError, match=r"result.json lacks the field\(s\) \['checksum'\]"):
        cache.load(run.id)


def test_a_loaded_run_rechecks_its_files_against_result_json(finished, synthetic, tmp_path):
    """A file swapped later for another well-formed, checksummed file is not the one the run
    recorded: re-reading it fails (the header alone would have passed)."""
    _, run = finished
    cache = RunCache(tmp_path)
    shutil.copytree(run.path, cache.folder(run.id))
    loaded = cache.load(run.id)
    other = {k: v + 1 if v.is_floating_point() else v for k, v in loaded.state_dict().items()}
    save_tensors(loaded.path / "model.pt", other)
    save_tensors(loaded.path / "logits.pt", {"test": torch.zeros(50, 100)})
    with pytest.raises(CorruptFileError, match=f"run {run.id}: .*model.pt is not the file that was recorded"):
        loaded.state_dict()
    with pytest.raises(CorruptFileError, match="logits.pt is not the file that was recorded"):
        loaded.test_logits()


def test_resuming_on_another_device_is_recorded(synthetic, tmp_path, interrupted_at_step):
    """A checkpoint written on another device (here: said to be CUDA) resumes with a warning, and
    the run's info records both devices and the epoch it changed at."""
    spec = TeacherSpec(recipe=R3, seed=11)
    cache = RunCache(tmp_path)
    interrupted_at_step(8, lambda: get_run(spec, synthetic, cache, device="cpu", progress=False))
    ckpt = cache.folder(run_id(spec, synthetic.cache_key())) / "checkpoint.pt"
    state = load_tensors(ckpt)
    assert state["devices"] == [{"from_epoch": 1, "device": "cpu", "torch": str(torch.__version__)}]
    state["devices"] = [{"from_epoch": 1, "device": "cuda", "torch": "2.13.0"}]
    save_tensors(ckpt, state)
    with pytest.warns(UserWarning, match=r"resuming on cpu .* at epoch 2 a run trained on cuda \(torch 2.13.0\)"):
        run = get_run(spec, synthetic, cache, device="cpu", progress=False)
    assert run.info["devices"] == [{"from_epoch": 1, "device": "cuda", "torch": "2.13.0"},
                                   {"from_epoch": 2, "device": "cpu", "torch": str(torch.__version__)}]


def test_a_batch_larger_than_the_training_set_fails_before_any_training(synthetic, tmp_path):
    teacher = TeacherSpec(recipe=R3, seed=12)
    student = StudentSpec(recipe=Recipe(epochs=1, batch_size=500, lr=0.05), teachers=(teacher,))
    cache = RunCache(tmp_path)
    with pytest.raises(ValueError, match=r"batch_size must be at most the training set's 100 images.*batch_size 500"):
        kruns.run_all([student], synthetic, cache=cache, device="cpu", progress=False)
    with pytest.raises(ValueError, match="batch_size must be at most"):
        get_run(student, synthetic, cache, device="cpu", progress=False)
    assert not any(cache.root.glob("*/result.json")) and not any(cache.root.glob("*/checkpoint.pt"))  # nothing trained
