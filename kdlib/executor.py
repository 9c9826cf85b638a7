"""Running a set of runs: every experiment asks for its runs through `run_all`.

Two executors, one result: the finished runs in the driver's cache.
- "inline" trains in this process, one run after another (the default; needs nothing more).
- "ray" trains each missing run as a Ray task (an optional install: requirements-ray.txt) with
  one CPU and a fraction of a GPU, so that several small runs share a GPU as the original authors
  did (five per GPU). The driver skips cached runs, schedules a student as soon as its teachers
  are in the cache, and alone writes the cache: workers may not share its filesystem, so a worker
  trains in a temporary cache of its own and sends the finished run's files back, which the
  driver checks (kdlib.cache.verify_run) before adding them under the run's lock.

Failures. A run that raises does not stop the others: every other run finishes (a student of a
failed teacher is not started), then `run_all` raises one RunsFailedError listing each failed
run's id, spec, error and traceback. Runs that finished are in the cache either way, so calling
`run_all` again retrains only what failed. A cached run that fails its checks (damaged files,
kdlib.cache.CorruptRunError) is moved aside with a warning and trained again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kdlib import data as kdata
from kdlib.cache import CorruptRunError, Run, RunCache
from kdlib.config import Spec, StudentSpec, TeacherSpec
from kdlib.progress import Progress
from kdlib.train import get_run, resolve_device, resolve_precision, run_key

# "ray" starts a local Ray instance (or joins the one RAY_ADDRESS names, or the one this process
# is already connected to); "ray://<host>:<port>" is a Ray Client address; "ray:<address>" passes
# <address> to ray.init (e.g. "ray:auto" on a node of a running cluster).
EXECUTORS = ("inline", "ray", "ray://<host>:<port>", "ray:<address>")
# The Ray GPU share of one run when the cluster has GPUs: five runs per GPU, as the original
# authors ran them. PreResNet-20 at batch 128-256 uses a fraction of a modern GPU.
DEFAULT_GPUS_PER_RUN = 0.2


class RunsFailedError(RuntimeError):
    """Some runs of a `run_all` call failed; the others finished and are in the cache.

    failures: one RunFailure per failed run, in plan order (teachers before their students).
    """

    def __init__(self, failures: list[RunFailure], finished: int):
        self.failures = failures
        lines = [f"{len(failures)} of {len(failures) + finished} runs failed "
                 f"({finished} finished and are in the cache):"]
        for f in failures:
            lines.append(f"- run {f.run_id} ({describe(f.spec)}): {f.error}")
            if f.traceback:
                lines.append("  " + f.traceback.rstrip().replace("\n", "\n  "))
        super().__init__("\n".join(lines))


class MissingRunsError(LookupError):
    """`cached_runs` found some runs missing from the cache; `missing` lists (run id, spec)."""

    def __init__(self, missing: list[tuple[str, Spec]], root: Path):
        self.missing = missing
        lines = [f"{len(missing)} run(s) are not in the run cache {root} (nothing was trained; `make report` "
                 "or executor.run_all trains them):"]
        lines += [f"- run {rid} ({describe(spec)})" for rid, spec in missing[:10]]
        if len(missing) > 10:
            lines.append(f"- ... and {len(missing) - 10} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class RunFailure:
    run_id: str
    spec: Spec
    error: str      # "ExceptionType: message", or why the run was not started
    traceback: str  # the failing run's traceback, as raised where it ran; "" if it never started


def check_executor(executor) -> str:
    """The executor name, validated; a Ray executor also needs Ray installed."""
    ok = isinstance(executor, str) and (executor in ("inline", "ray") or _ray_address(executor) is not None)
    if not ok:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if executor != "inline" and importlib.util.find_spec("ray") is None:
        raise ValueError(f"executor={executor!r} needs Ray, an optional install: "
                         "pip install -r requirements-ray.txt (or use executor='inline')")
    return executor


def _ray_address(executor: str) -> str | None:
    """The address in "ray://host:port" (itself) or "ray:<address>" (<address>); None otherwise."""
    if executor.startswith("ray://"):
        return executor if len(executor) > len("ray://") else None
    if executor.startswith("ray:"):
        return executor[len("ray:"):] or None
    return None


def describe(spec: Spec) -> str:
    """A short, readable summary of a spec for messages."""
    r = spec.recipe
    recipe = f"{r.epochs} epochs, {r.optimizer} lr {r.lr:g}" + (", MixUp" if r.mixup else "")
    if isinstance(spec, TeacherSpec):
        return f"teacher seed {spec.seed}, {spec.norm}norm, {recipe}"
    init = "" if spec.init == "random" else f", init {spec.init}" + (
        f" lam {spec.lam:g}" if spec.init == "interpolate" else "")
    teachers = ",".join(str(t.seed) for t in spec.teachers)
    return f"student seed {spec.seed} of teacher(s) {teachers}, tau {spec.tau:g}{init}, {spec.norm}norm, {recipe}"


def run_all(specs: Sequence[Spec], dataset: kdata.Dataset, *, executor: str = "inline",
            cache: RunCache | None = None, device: str = "auto", progress: bool = True,
            gpus_per_run: float | None = None, precision: str = "auto", logit_cache: str = "auto") -> list[Run]:
    """The finished runs for `specs`, in order; cached ones are reused, missing ones trained.

    A student's teachers are trained first when missing, whether or not `specs` lists them.
    executor: "inline" (this process) or a Ray executor (see EXECUTORS and the module docstring).
    device: "auto", "cpu" or "cuda[:N]"; with Ray it is resolved on each worker ("auto": the GPU
        share Ray assigns it, if any).
    gpus_per_run: Ray only: the GPU fraction of each task, in [0, 1]; default DEFAULT_GPUS_PER_RUN
        when the Ray cluster has GPUs, else 0.
    precision, logit_cache: as for kdlib.train.get_run.
    Raises RunsFailedError after all other runs finished if any run failed (module docstring).
    """
    check_executor(executor)
    specs = list(specs)
    for spec in specs:
        if not isinstance(spec, (TeacherSpec, StudentSpec)):
            raise ValueError(f"specs must be TeacherSpec or StudentSpec objects, got {type(spec).__name__}")
    if gpus_per_run is not None and (isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, (int, float))
                                     or not 0 <= gpus_per_run <= 1):
        raise ValueError(f"gpus_per_run must be a number in [0, 1] or None (automatic), got {gpus_per_run!r}")
    cache = cache if cache is not None else RunCache()
    if executor == "inline":
        return _run_inline(specs, dataset, cache, resolve_device(device), progress, precision, logit_cache)
    return _run_on_ray(specs, dataset, cache, executor, device, progress, gpus_per_run, precision, logit_cache)


def cached_runs(specs: Sequence[Spec], dataset: kdata.Dataset, *, cache: RunCache | None = None,
                device: str = "auto", precision: str = "auto", logit_cache: str = "auto") -> list[Run]:
    """The finished runs for `specs` from the cache, trained nowhere: the ids are those `run_all`
    with the same arguments gives them (device names where they were trained; it need not exist
    here). Raises MissingRunsError listing every run that is not there."""
    cache = cache if cache is not None else RunCache()
    where = torch.device("cuda" if device == "cuda" else ("cpu" if device == "cpu" else
                                                          ("cuda" if torch.cuda.is_available() else "cpu")))
    runs, missing = [], []
    for spec in specs:
        rid = run_key(spec, dataset, where, precision, logit_cache)
        run = cache.load(rid)
        if run is None:
            missing.append((rid, spec))
        runs.append(run)
    if missing:
        raise MissingRunsError(missing, cache.root)
    return runs


# ---------------------------------------------------------------------------------------------
# Planning, shared by both executors

def _plan(specs: list[Spec], key, cache: RunCache) -> tuple[list[Spec], dict[Spec, Run]]:
    """Every run needed, teachers before their students, without duplicates; and the cached ones.

    key(spec) is the run's id. A missing student needs its teachers, a cached one does not. A
    damaged run is moved aside (a warning) and counts as missing.
    """
    order, cached = {}, {}

    def visit(spec):
        if spec in order:
            return
        run = _load_or_set_aside(cache, key(spec))
        if run is None:
            for teacher in getattr(spec, "teachers", ()):
                visit(teacher)
        else:
            cached[spec] = run
        order[spec] = None

    for spec in specs:
        visit(spec)
    return list(order), cached


def _load_or_set_aside(cache: RunCache, rid: str) -> Run | None:
    """The finished run `rid`, or None; a damaged one is moved aside (warning) and counts as missing."""
    try:
        return cache.load(rid)
    except CorruptRunError as first:
        with cache.lock(rid):
            try:
                return cache.load(rid)  # another process may have replaced it meanwhile
            except CorruptRunError:
                aside = cache.move_aside(rid)
        warnings.warn(f"{first} -- moved to {aside}; training it again", stacklevel=4)
        return None


def _failure(rid: str, spec: Spec, error: BaseException, tb: str | None = None) -> RunFailure:
    if tb is None:
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return RunFailure(rid, spec, f"{type(error).__name__}: {error}", tb)


def _teacher_failed(rid: str, spec: Spec, failed: list[str]) -> RunFailure:
    return RunFailure(rid, spec, f"not started: its teacher run(s) {', '.join(failed)} failed", "")


def _finish(specs: list[Spec], order: list[Spec], runs: dict[Spec, Run], failures: dict[Spec, RunFailure],
            cause: BaseException | None = None) -> list[Run]:
    if failures:
        finished = sum(1 for s in order if s in runs)
        raise RunsFailedError([failures[s] for s in order if s in failures], finished) from cause
    return [runs[s] for s in specs]


# ---------------------------------------------------------------------------------------------
# Inline

def _run_inline(specs, dataset, cache, device, progress, precision, logit_cache) -> list[Run]:
    def key(spec):
        return run_key(spec, dataset, device, precision, logit_cache)

    order, runs = _plan(specs, key, cache)
    failures, first_error = {}, None
    missing = [s for s in order if s not in runs]
    with Progress(len(missing), "runs", unit="run", enabled=progress and bool(missing)) as bar:
        for spec in missing:
            failed = [failures[t].run_id for t in getattr(spec, "teachers", ()) if t in failures]
            if failed:
                failures[spec] = _teacher_failed(key(spec), spec, failed)
                bar.update()
                continue
            try:
                run = get_run(spec, dataset, cache, device, progress, precision=precision, logit_cache=logit_cache)
            except Exception as e:  # reported with the others below; KeyboardInterrupt stops at once
                failures[spec] = _failure(key(spec), spec, e)
                first_error = first_error or e
                bar.update()
                continue
            if run.id != key(spec):
                raise RuntimeError(f"get_run gave run {run.id} where run_key expected {key(spec)}: "
                                   "kdlib.train.run_key no longer matches the id get_run computes")
            runs[spec] = run
            bar.update()
    return _finish(specs, order, runs, failures, first_error)


# ---------------------------------------------------------------------------------------------
# Ray

def _connect(executor: str):
    """The `ray` module, connected: to the instance this process already uses, else as asked."""
    import ray

    if ray.is_initialized():
        return ray
    quiet = dict(logging_level="WARNING", log_to_driver=True)
    if executor == "ray" and not os.environ.get("RAY_ADDRESS"):
        ray.init(include_dashboard=False, **quiet)  # a local instance, until this process exits
    else:
        address = None if executor == "ray" else _ray_address(executor)  # None: RAY_ADDRESS
        # A cluster runs this very kdlib (the run ids depend on its code): ship the package along.
        ray.init(address=address, runtime_env={"py_modules": [str(Path(__file__).parent)]}, **quiet)
    return ray


def _train_remotely(spec: Spec, dataset: kdata.Dataset, device: str, precision: str, logit_cache: str,
                    expected: str, *teachers: tuple[str, dict[str, bytes]]) -> dict[str, bytes]:
    """A Ray task: train `spec` in a temporary cache seeded with its teachers' runs; return its files."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kdlib-run-") as tmp:
        cache = RunCache(tmp)
        for rid, files in teachers:
            cache.import_run(rid, files)
        here = run_key(spec, dataset, resolve_device(device), precision, logit_cache)
        if here != expected:
            raise RuntimeError(f"this worker would train run {here}, the driver expects {expected}: its "
                               "device, precision or kdlib/torch version differs from what the driver assumed")
        run = get_run(spec, dataset, cache, device, progress=False, precision=precision, logit_cache=logit_cache)
        return cache.export_run(run.id)


def _gpus_per_run(ray, gpus_per_run: float | None, device: str) -> float:
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if device == "cpu":
        return 0.0
    if gpus_per_run is None:
        gpus_per_run = DEFAULT_GPUS_PER_RUN if cluster_gpus > 0 else 0.0
    if gpus_per_run > 0 and cluster_gpus == 0:  # the tasks would wait forever
        raise ValueError(f"gpus_per_run={gpus_per_run} but the Ray cluster has no GPUs; use 0 or None")
    if device.startswith("cuda") and gpus_per_run == 0:
        raise ValueError(f"device={device!r} on Ray needs gpus_per_run > 0 (the Ray cluster has no GPUs, "
                         "or gpus_per_run=0 was asked for)")
    return float(gpus_per_run)


def _run_on_ray(specs, dataset, cache, executor, device, progress, gpus_per_run, precision, logit_cache):
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    ray = _connect(executor)
    gpus = _gpus_per_run(ray, gpus_per_run, device)
    # The device the workers train on ("auto" resolves there to the GPU share Ray assigns), for
    # the run ids they will produce.
    target = torch.device("cuda" if gpus > 0 else "cpu")
    # "auto" precision is decided here, once for the sweep, and workers get the decision: a CPU
    # worker on other hardware (without native bf16, say) must not pick other numerics and ids.
    precision = resolve_precision(precision, target)
    rids = {}

    def key(spec):
        if spec not in rids:
            rids[spec] = run_key(spec, dataset, target, precision, logit_cache)
        return rids[spec]

    order, runs = _plan(specs, key, cache)
    failures = {}
    with contextlib.ExitStack() as held:
        locks = {}  # spec -> ExitStack holding its run's lock, from now until it is in the cache
        for spec in sorted((s for s in order if s not in runs), key=key):  # one order: no deadlocks
            locks[spec] = held.enter_context(contextlib.ExitStack())
            locks[spec].enter_context(_lock_or_wait(cache, key(spec), progress))
            run = cache.load(key(spec))  # finished by another process while we waited?
            if run is not None:
                runs[spec] = run
                locks.pop(spec).close()
        _execute_on_ray(ray, order, rids, runs, failures, locks, dataset, cache, device, gpus, precision,
                        logit_cache, progress)
    return _finish(specs, order, runs, failures)


@contextlib.contextmanager
def _lock_or_wait(cache: RunCache, rid: str, progress: bool):
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(cache.lock(rid, blocking=False))
        except BlockingIOError:
            if progress:
                print(f"run {rid} is being trained by another process; waiting for it", flush=True)
            stack.enter_context(cache.lock(rid))
        yield


def _execute_on_ray(ray, order, rids, runs, failures, locks, dataset, cache, device, gpus, precision,
                    logit_cache, progress):
    """Submit each missing run once its teachers are in the cache; collect results as they come."""
    task = ray.remote(_train_remotely).options(num_cpus=1, num_gpus=gpus, name="kdlib-run")
    device = "cpu" if gpus == 0 else device  # a CPU task must not find a GPU of its node
    data_ref = ray.put(dataset)  # one copy in the object store, shared by every task
    shipped = {}  # teacher spec -> ObjectRef of (run id, files), put once
    todo = [s for s in order if s not in runs]
    pending = {}  # ObjectRef -> spec
    bar = Progress(len(todo), f"runs on Ray ({gpus:g} GPU each)", unit="run", enabled=progress)
    try:
        while todo or pending:
            for spec in list(todo):
                teachers = getattr(spec, "teachers", ())
                failed = [rids[t] for t in teachers if t in failures]
                if failed:
                    failures[spec] = _teacher_failed(rids[spec], spec, failed)
                elif all(t in runs for t in teachers):
                    for t in teachers:
                        if t not in shipped:
                            shipped[t] = ray.put((rids[t], cache.export_run(rids[t])))
                    ref = task.remote(spec, data_ref, device, precision, logit_cache, rids[spec],
                                      *[shipped[t] for t in teachers])
                    pending[ref] = spec
                else:
                    continue  # a teacher is still training
                todo.remove(spec)
                if spec in failures:
                    locks.pop(spec).close()
                    bar.update()
            if not pending:
                break
            (done,), _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done)
            try:
                runs[spec] = cache.import_run(rids[spec], ray.get(done))
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(e.cause, BaseException) else e
                tb = "Traceback (on the Ray worker):\n" + re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # no colours
                failures[spec] = _failure(rids[spec], spec, cause, tb=tb)
            except Exception as e:  # a worker crashed, or its files failed the driver's checks
                failures[spec] = _failure(rids[spec], spec, e)
            locks.pop(spec).close()
            bar.update()
    finally:
        for ref in pending:  # interrupted: stop what is still running
            ray.cancel(ref, force=True)
        bar.close()
