"""The local executors: `Inline` (one run after another, here) and `Processes` (up to N runs at once
in spawned worker processes). Both take the plan of kdlib.execute.planning and return its `Outcome`.

Worker processes are spawned, not forked: a script that calls `run_all` with workers > 1 must
guard its top level with `if __name__ == "__main__":` (notebooks and `python -c` need nothing).
Independent CPU runs can gain from it on a machine with many cores; on a 2-core CPU two runs of one
thread each were no faster (benchmarks/results/workers*.json).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import torch

from kdlib import data as kdata
from kdlib.cache import Run, RunCache
from kdlib.execute.planning import Outcome, max_parallel, obtain, startable, teacher_failed
from kdlib.identity import RunKey
from kdlib.progress import Progress
from kdlib.train import TrainOptions


@dataclass(frozen=True)
class _Local:
    """An executor on this machine: its runs train with `options` on its device."""

    options: TrainOptions

    @property
    def device(self) -> torch.device:
        return self.options.device


@dataclass(frozen=True)
class Inline(_Local):
    """Every missing run of the plan, in order, in this process with all its threads."""

    def execute(self, order: Sequence[RunKey], cached: Mapping[RunKey, Run], dataset: kdata.Dataset,
                cache: RunCache) -> Outcome:
        out, done = Outcome(), dict(cached)
        missing = [k for k in order if k not in done]
        with Progress(len(missing), "runs", unit="run", enabled=self.options.progress and bool(missing)) as bar:
            for key in missing:
                skipped = teacher_failed(key, out.failures)
                if skipped is not None:
                    out.failures[key] = skipped
                else:
                    try:
                        done[key] = out.runs[key] = obtain(key, dataset, cache, [done[t] for t in key.teachers],
                                                           self.options)
                    except Exception as e:  # reported with the others; KeyboardInterrupt stops at once
                        out.failed(key, e)
                bar.update()
        return out


@dataclass(frozen=True)
class Processes(_Local):
    """The plan's missing runs in up to `workers` local processes of max(1, cpus // workers) torch
    threads each, every run as soon as its teachers have finished (inline when the plan has no two
    runs that could train at once). Interrupted, or on any error here, the workers are stopped
    before it is raised: a run mid-epoch resumes from its last checkpoint later."""

    workers: int = 2

    def execute(self, order: Sequence[RunKey], cached: Mapping[RunKey, Run], dataset: kdata.Dataset,
                cache: RunCache) -> Outcome:
        processes = min(self.workers, max_parallel(order, cached))  # no idle processes: each imports torch
        if processes <= 1:
            return Inline(self.options).execute(order, cached, dataset, cache)
        return self._in_processes(order, cached, dataset, cache, processes)

    def _in_processes(self, order, cached, dataset, cache, processes: int) -> Outcome:
        out, done = Outcome(), dict(cached)
        todo = [k for k in order if k not in done]
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        root, device = str(cache.root.resolve()), str(self.options.device)
        position = {k: i for i, k in enumerate(order)}
        pending: dict[Future, RunKey] = {}
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(pickle.dumps(dataset, protocol=pickle.HIGHEST_PROTOCOL), threads))
        bar = Progress(len(todo), f"runs ({processes} processes)", unit="run", enabled=self.options.progress)
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
                            raise RuntimeError(f"run {key.id}: a worker process reported it finished in "
                                               f"{cache.root}, where it is missing")
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


# The dataset of this worker process, set once by `_init_worker`.
_WORKER_DATASET: kdata.Dataset | None = None


def _init_worker(dataset: bytes, threads: int) -> None:
    """A worker process's start: its torch threads and the dataset (pickled once per process, by the
    driver: a worker unpickles only what its own driver sent). Ctrl-C is the driver's business: it
    stops the workers itself (a terminal sends SIGINT to them too)."""
    global _WORKER_DATASET
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _WORKER_DATASET = pickle.loads(dataset)


def _train_in_worker(key: RunKey, root: str, device: str) -> str:
    """A worker process's task: obtain the run `key` in the driver's cache (under its lock, as
    inline); returns its id."""
    cache = RunCache(root)
    options = TrainOptions(torch.device(device), progress=False)
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
