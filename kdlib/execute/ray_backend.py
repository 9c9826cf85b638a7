"""The Ray executor of `run_all`: the plan's missing runs as Ray tasks (kdlib.execute does the rest).

`kdlib.execute.run_all(..., executor="ray" | "ray://host:port" | "ray:<address>")` builds the plan
(keys, teachers first) and hands it here. Each missing run becomes a task with one CPU and a
fraction of a GPU (five runs per GPU when the cluster has GPUs, as the original authors ran them),
submitted as soon as its teachers are in the cache; a task receives the run's key, never re-derives
it, and calls the same `kdlib.execute.planning.obtain` as an inline run, so it takes the run's lock itself:
a run that another process is training holds up only its own task.

Where a worker trains. When the driver's run cache is on storage the worker reaches (the same
machine, or a shared filesystem: the cache's token file proves it is the same storage, under the
driver's path or the worker's $KDLIB_RUNS), the worker trains in it directly: every epoch's
checkpoint is there, so a task whose worker dies is retried by Ray (`max_retries`) and the retry
resumes from the last checkpoint instead of starting over. Otherwise the worker trains in a
temporary cache seeded with its teachers' files and sends the finished run's files back, which the
driver checks (kdlib.cache.verify_run) and imports; a worker that dies there loses its run.

Ray is optional (`pip install "kdlib[ray]"`); this module imports it only when a sweep uses it.
A run that raises does not stop the others (kdlib.execute: RunsFailedError).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kdlib import data as kdata
from kdlib.cache import Run, RunCache
from kdlib.device import check_device_name, resolve_device
from kdlib.identity import RunKey
from kdlib.progress import Progress
from kdlib.execute.planning import Outcome, failure, obtain, startable
from kdlib.train import TrainOptions

# The Ray GPU share of one run when the cluster has GPUs: five runs per GPU, as the original
# authors ran them. PreResNet-20 at batch 128-256 uses a fraction of a modern GPU.
DEFAULT_GPUS_PER_RUN = 0.2
# A task whose worker process dies (killed, out of memory) is run again this many times; with a
# shared run cache the retry resumes from the run's last checkpoint.
MAX_RETRIES = 2
TOKEN = ".kdlib-cache-token"  # in a run cache's root: tells a worker it sees the driver's cache


def cache_token(root: Path) -> str:
    """The random token that names this run cache's storage (written once, atomically)."""
    path = Path(root) / TOKEN
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process wrote it first
            with open(path, "x") as f:
                f.write(uuid.uuid4().hex)
    return path.read_text().strip()


def _shared_root(candidates: list[str | None], token: str) -> Path | None:
    """The first candidate folder holding the driver's cache (its token), as this worker sees it."""
    for root in candidates:
        if root and (Path(root) / TOKEN).is_file() and (Path(root) / TOKEN).read_text().strip() == token:
            return Path(root)
    return None


@dataclass(frozen=True)
class _Where:
    """Where the driver keeps its runs, for a worker to find them."""

    root: str
    token: str


def _train_remotely(key: RunKey, dataset: kdata.Dataset, where: _Where, device: str,
                    *teachers: tuple[str, dict[str, bytes]]) -> tuple[str, dict[str, bytes] | None]:
    """A Ray task: obtain the run `key` names. Returns ("shared", None) when it trained in the
    driver's cache, else ("files", the finished run's files) from a temporary cache."""
    # The task holds one CPU: one torch thread, whatever OMP_NUM_THREADS the worker inherited (Ray sets
    # it to 1 only when the user has not set it), so a run trains as it would inline on one thread.
    torch.set_num_threads(1)
    options = TrainOptions(resolve_device(device), progress=False)  # "auto": this worker's GPU, if any
    shared = _shared_root([where.root, os.environ.get("KDLIB_RUNS")], where.token)
    if shared is not None:
        cache = RunCache(shared)
        obtain(key, dataset, cache, [cache.load(t.id) for t in key.teachers], options)
        return "shared", None
    with tempfile.TemporaryDirectory(prefix="kdlib-run-") as tmp:
        cache = RunCache(tmp)
        teacher_runs = [cache.import_run(rid, files) for rid, files in teachers]
        run = obtain(key, dataset, cache, teacher_runs, options)
        return "files", cache.export_run(run.id)


def ray_address(executor: str) -> str | None:
    """The address in "ray://host:port" (itself) or "ray:<address>" (<address>); None otherwise."""
    if executor.startswith("ray://"):
        return executor if len(executor) > len("ray://") else None
    if executor.startswith("ray:"):
        return executor[len("ray:"):] or None
    return None


class RayBackend:
    """A connected Ray instance or cluster, and the device its tasks train on."""

    def __init__(self, ray, gpus: float, device: str, progress: bool = True):
        self.ray, self.gpus, self.requested, self.progress = ray, gpus, device, progress
        # the device the workers train on: what "auto" precision is decided for, once, here (a CPU
        # worker on other hardware must not pick other numerics, and so other run ids)
        self.device = torch.device("cuda" if gpus > 0 else "cpu")

    @classmethod
    def connect(cls, executor: str, device: str, gpus_per_run: float | None, progress: bool = True) -> "RayBackend":
        check_device_name(device)  # the workers' device: it need not exist on the driver
        ray = _connect(executor)
        return cls(ray, _gpus_per_run(ray, gpus_per_run, device), device, progress)

    def execute(self, order: Sequence[RunKey], cached: Mapping[RunKey, Run], dataset: kdata.Dataset,
                cache: RunCache) -> Outcome:
        """Train the plan's missing runs on Ray, each as soon as its teachers have finished; returns
        what finished and what failed."""
        ray = self.ray
        task = ray.remote(_train_remotely).options(num_cpus=1, num_gpus=self.gpus, name="kdlib-run",
                                                   max_retries=MAX_RETRIES)
        device = "cpu" if self.gpus == 0 else self.requested  # a CPU task must not find a GPU of its node
        where = _Where(str(cache.root.resolve()), cache_token(cache.root))
        data_ref = ray.put(dataset)  # one copy in the object store, shared by every task
        shipped = {}  # teacher key -> ObjectRef of (run id, files), for workers without the driver's cache
        out, done = Outcome(), dict(cached)
        todo = [k for k in order if k not in done]
        pending = {}  # ObjectRef -> key
        bar = Progress(len(todo), f"runs on Ray ({self.gpus:g} GPU each)", unit="run", enabled=self.progress)
        try:
            while todo or pending:
                for key in startable(todo, done, out.failures, bar):
                    for t in key.teachers:
                        if t not in shipped:
                            shipped[t] = ray.put((t.id, cache.export_run(t.id)))
                    pending[task.remote(key, data_ref, where, device, *[shipped[t] for t in key.teachers])] = key
                if not pending:
                    break
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                key = pending.pop(ready)
                try:
                    how, files = ray.get(ready)
                    run = cache.load(key.id) if how == "shared" else cache.import_run(key.id, files)
                    if run is None:
                        raise RuntimeError(f"run {key.id}: the worker reported it finished in the shared cache "
                                           f"{cache.root}, where it is missing")
                    done[key] = out.runs[key] = run
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if isinstance(e.cause, BaseException) else e
                    tb = "Traceback (on the Ray worker):\n" + re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # no colours
                    out.failures[key] = failure(key, cause, tb=tb)
                except Exception as e:  # a worker crashed for good, or its files failed the driver's checks
                    out.failures[key] = failure(key, e)
                bar.update()
        finally:
            for ref in pending:  # interrupted: stop what is still running
                ray.cancel(ref, force=True)
            bar.close()
        return out


def _connect(executor: str):
    """The `ray` module, connected: to the instance this process already uses, else as asked."""
    import ray

    if ray.is_initialized():
        return ray
    quiet = dict(logging_level="WARNING", log_to_driver=True)
    if executor == "ray" and not os.environ.get("RAY_ADDRESS"):
        ray.init(include_dashboard=False, **quiet)  # a local instance, until this process exits
    else:
        address = None if executor == "ray" else ray_address(executor)  # None: RAY_ADDRESS
        # A cluster runs this very kdlib (the run ids depend on its code): ship the package along.
        ray.init(address=address, runtime_env={"py_modules": [str(Path(__file__).parents[1])]}, **quiet)
    return ray


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
