"""Getting runs: `get_run` for one, `run_all` for an experiment's, from the cache or trained now.

Both go the same way, in one direction:
1. each spec becomes its run's key (kdlib.identity.RunKey.of), once: the device decides "auto"
   precision, the logit-cache mode and the recipe decide the cache;
2. `kdlib.schedule.plan` orders the keys teachers before students, without duplicates, and finds the
   cached runs (a damaged one is moved aside with a warning and counts as missing); `check_plan`
   refuses, before anything trains, a run whose batch does not fit the training set;
3. each missing run is obtained in plan order (`kdlib.schedule.obtain`: under the run's lock, so a run
   that another process or thread is training is waited for, then reused), by kdlib.train.train.
Inline with workers=1, step 3 runs here, one run after another. Inline with more workers, the plan's
missing runs go to that many local worker processes (spawned; each with its share of the CPU's torch
threads), each run as soon as its teachers are finished; with a Ray executor (kdlib.executor) the
same plan goes to Ray workers. Every executor calls the same `obtain` and returns what it finished
and what failed (`kdlib.schedule.Outcome`); `run_all` raises the failures.

Worker processes are spawned, not forked: a script that calls `run_all` with workers > 1 must
guard its top level with `if __name__ == "__main__":` (notebooks and `python -c` need nothing).
Independent CPU runs gain from it: on a 2-core CPU, two runs at once with one torch thread each
trained 1.32x as many runs per hour as one run at a time with two threads.

Failures. `get_run` raises a run's error as it is. `run_all` lets every other run finish (a
student of a failed teacher is not started), then raises one RunsFailedError listing each failed
run's id, spec, error and traceback. Runs that finished are in the cache either way, so calling it
again retrains only what failed.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import pickle
import signal
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from kdlib import data as kdata
from kdlib import train as ktrain
from kdlib.cache import Run, RunCache
from kdlib.checks import check_bool, check_int, check_number
from kdlib.config import Spec, StudentSpec, TeacherSpec
from kdlib.device import named_device, resolve_device
from kdlib.executor import ray_address
from kdlib.identity import RunKey
from kdlib.logit_cache import check_mode
from kdlib.progress import Progress
from kdlib.schedule import (Outcome, RunFailure, check_plan, describe, max_parallel, obtain, plan, startable,
                            teacher_failed)

# "ray" starts a local Ray instance (or joins the one RAY_ADDRESS names, or the one this process
# is already connected to); "ray://<host>:<port>" is a Ray Client address; "ray:<address>" passes
# <address> to ray.init (e.g. "ray:auto" on a node of a running cluster).
EXECUTORS = ("inline", "ray", "ray://<host>:<port>", "ray:<address>")


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
                 "or runs.run_all trains them):"]
        lines += [f"- run {rid} ({describe(spec)})" for rid, spec in missing[:10]]
        if len(missing) > 10:
            lines.append(f"- ... and {len(missing) - 10} more")
        super().__init__("\n".join(lines))


def check_executor(executor) -> str:
    """The executor name, validated; a Ray executor also needs Ray installed."""
    ok = isinstance(executor, str) and (executor in ("inline", "ray") or ray_address(executor) is not None)
    if not ok:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if executor != "inline" and importlib.util.find_spec("ray") is None:
        raise ValueError(f"executor={executor!r} needs Ray, an optional install: "
                         "pip install 'kdlib[ray]' (or use executor='inline')")
    return executor


def check_workers(workers) -> int:
    """The inline executor's worker processes, validated: an int >= 1."""
    return check_int("workers", workers, 1)


def _check_specs(specs) -> list[Spec]:
    specs = list(specs)
    for spec in specs:
        if not isinstance(spec, (TeacherSpec, StudentSpec)):
            raise ValueError(f"specs must be TeacherSpec or StudentSpec objects, got {type(spec).__name__}")
    return specs


# ---------------------------------------------------------------------------------------------
# One run, and many

def get_run(spec: Spec, dataset: kdata.Dataset, cache: RunCache | None = None,
            device: str | torch.device = "auto", progress: bool = True, *,
            precision: str = "auto", logit_cache: str = "auto", compile: bool = False) -> Run:
    """The finished run for `spec` on `dataset`: from the cache, else trained now (its teachers first,
    with the same device, precision and compile). A training error is raised as it is.

    precision: "auto" (bf16 autocast where the hardware has it natively, kdlib.device; fp32
        elsewhere), "fp32" or "bf16". A bf16 run has its own key, so it never stands in for an fp32 one.
    logit_cache: students only: "auto", "shared", "on" or "off" (kdlib.logit_cache.use_logit_cache).
        Cached logits are float16: such a run has its own key too.
    compile: torch.compile the training forward passes (opt-in; compiling takes a minute or so).
    """
    if not isinstance(spec, (TeacherSpec, StudentSpec)):
        raise ValueError(f"spec must be a TeacherSpec or StudentSpec, got {type(spec).__name__}")
    check_bool("compile", compile)
    check_mode(logit_cache)
    options = ktrain.TrainOptions(resolve_device(device), progress, compile)
    cache = cache if cache is not None else RunCache()
    key = RunKey.of(spec, dataset, options.device, precision, logit_cache)
    order, runs = plan([key], cache)
    check_plan(order, runs, dataset)
    for k in order:
        if k not in runs:
            runs[k] = obtain(k, dataset, cache, [runs[t] for t in k.teachers], options)
    return runs[key]


def run_all(specs: Sequence[Spec], dataset: kdata.Dataset, *, executor: str = "inline",
            cache: RunCache | None = None, device: str = "auto", progress: bool = True,
            gpus_per_run: float | None = None, precision: str = "auto", logit_cache: str = "auto",
            workers: int = 1) -> list[Run]:
    """The finished runs for `specs`, in order; cached ones are reused, missing ones trained.

    A student's teachers are trained first when missing, whether or not `specs` lists them.
    executor: "inline" (this process) or a Ray executor (EXECUTORS; kdlib.executor).
    device: "auto", "cpu" or "cuda[:N]"; with Ray it names where the workers train ("auto": the GPU
        share Ray assigns them, if any).
    gpus_per_run: Ray only: the GPU fraction of each task, in [0, 1]; default 0.2 when the Ray
        cluster has GPUs, else 0.
    precision, logit_cache: as for get_run.
    workers: inline only (Ray ignores it): how many runs train at once. 1 (the default) trains one
        run after another in this process with all its threads: on a 2-core CPU two runs of one
        thread each were no faster (0.91x-1.01x, benchmarks/results/workers.json). N > 1 trains up to N runs at
        once in local worker processes of max(1, os.cpu_count() // N) torch threads (a machine with
        many cores); they show a bar of the runs done, not their epochs. Thread counts can change a
        CPU run's last bits, never its id.
    Raises RunsFailedError after all other runs finished if any run failed (module docstring).
    """
    check_executor(executor)
    check_workers(workers)
    specs = _check_specs(specs)
    check_mode(logit_cache)
    if gpus_per_run is not None:  # None: automatic (kdlib.executor)
        check_number("gpus_per_run", gpus_per_run, 0, 1)
    cache = cache if cache is not None else RunCache()
    if executor == "inline":
        options = ktrain.TrainOptions(resolve_device(device), progress)
        backend = None
    else:
        from kdlib.executor import RayBackend  # Ray is an optional install
        backend = RayBackend.connect(executor, device, gpus_per_run)
        options = ktrain.TrainOptions(backend.device, progress)
    keys = [RunKey.of(s, dataset, options.device, precision, logit_cache) for s in specs]
    order, runs = plan(keys, cache)
    check_plan(order, runs, dataset)
    if backend is None:
        n = min(workers, max_parallel(order, runs))
        outcome = (_run_inline(order, runs, dataset, cache, options) if n <= 1
                   else _run_in_processes(order, runs, dataset, cache, options, n))
    else:
        outcome = backend.execute(order, runs, dataset, cache, progress)
    runs = {**runs, **outcome.runs}
    if outcome.failures:
        raise RunsFailedError([outcome.failures[k] for k in order if k in outcome.failures],
                              sum(k in runs for k in order)) from outcome.first_error
    return [runs[k] for k in keys]


def _run_inline(order, cached: Mapping[RunKey, Run], dataset, cache, options) -> Outcome:
    """Obtain every missing run of the plan in order, here."""
    out, done = Outcome(), dict(cached)
    missing = [k for k in order if k not in done]
    with Progress(len(missing), "runs", unit="run", enabled=options.progress and bool(missing)) as bar:
        for key in missing:
            skipped = teacher_failed(key, out.failures)
            if skipped is not None:
                out.failures[key] = skipped
            else:
                try:
                    done[key] = out.runs[key] = obtain(key, dataset, cache, [done[t] for t in key.teachers], options)
                except Exception as e:  # reported with the others; KeyboardInterrupt stops at once
                    out.failed(key, e)
            bar.update()
    return out


# The dataset of this worker process, set once by `_init_worker`.
_WORKER_DATASET: kdata.Dataset | None = None


def _init_worker(dataset: bytes, threads: int) -> None:
    """A worker process's start: its torch threads and the dataset (pickled once per process).
    Ctrl-C is the driver's business: it stops the workers itself (a terminal sends SIGINT to them too)."""
    global _WORKER_DATASET
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _WORKER_DATASET = pickle.loads(dataset)


def _train_in_worker(key: RunKey, root: str, device: str) -> str:
    """A worker process's task: obtain the run `key` in the driver's cache (under its lock, as
    inline); returns its id."""
    cache = RunCache(root)
    options = ktrain.TrainOptions(torch.device(device), progress=False)
    return obtain(key, _WORKER_DATASET, cache, [cache.load(t.id) for t in key.teachers], options).id


def _worker_traceback(error: BaseException) -> str | None:
    """The traceback a worker process sent with `error` (concurrent.futures chains it as the
    exception's __cause__), or None when it came from here (a broken pool, a driver-side check)."""
    remote = getattr(error.__cause__, "tb", None)
    return f"Traceback (in a worker process):\n{remote.strip()}\n" if isinstance(remote, str) else None


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes now: a run mid-epoch resumes from its last checkpoint later."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _run_in_processes(order, cached: Mapping[RunKey, Run], dataset, cache, options, workers: int) -> Outcome:
    """Obtain every missing run of the plan in up to `workers` local processes, each run as soon as
    its teachers have finished. Interrupted, or on any error here, the workers are stopped before it
    is raised."""
    out, done = Outcome(), dict(cached)
    todo = [k for k in order if k not in done]
    if not todo:
        return out
    processes = min(workers, max_parallel(order, done))  # no idle processes: each imports torch
    threads = max(1, (os.cpu_count() or 1) // workers)
    root, device = str(cache.root.resolve()), str(options.device)
    position = {k: i for i, k in enumerate(order)}
    pending: dict[Future, RunKey] = {}
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(pickle.dumps(dataset, protocol=pickle.HIGHEST_PROTOCOL), threads))
    bar = Progress(len(todo), f"runs ({processes} processes)", unit="run", enabled=options.progress)
    finished = False
    try:
        while todo or pending:
            for key in startable(todo, done, out.failures, bar):
                try:
                    pending[pool.submit(_train_in_worker, key, root, device)] = key
                except BrokenProcessPool as e:  # a worker died (killed, out of memory): no more runs start
                    out.failed(key, e)
                    bar.update()
            if not pending:
                break
            finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished_now, key=lambda f: position[pending[f]]):
                key = pending.pop(future)
                try:
                    future.result()
                    run = cache.load(key.id)
                    if run is None:
                        raise RuntimeError(f"run {key.id}: a worker process reported it finished in {cache.root}, "
                                           "where it is missing")
                    done[key] = out.runs[key] = run
                except Exception as e:  # the run raised in its worker, the worker died, or its files are damaged
                    out.failed(key, e, tb=_worker_traceback(e))
                bar.update()
        finished = True
    finally:
        for future in pending:
            future.cancel()
        if not finished:  # interrupted (KeyboardInterrupt) or a driver error: no worker keeps training
            _stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return out


def cached_runs(specs: Sequence[Spec], dataset: kdata.Dataset, *, cache: RunCache | None = None,
                device: str = "auto", precision: str = "auto", logit_cache: str = "auto") -> list[Run]:
    """The finished runs for `specs` from the cache, trained nowhere: the keys are those `run_all`
    with the same arguments gives them (`device` names where they were trained; it need not exist
    here). Raises MissingRunsError listing every run that is not there."""
    cache = cache if cache is not None else RunCache()
    where = named_device(device)
    runs, missing = [], []
    for spec in _check_specs(specs):
        key = RunKey.of(spec, dataset, where, precision, logit_cache)
        run = cache.load(key.id)
        if run is None:
            missing.append((key.id, spec))
        runs.append(run)
    if missing:
        raise MissingRunsError(missing, cache.root)
    return runs
