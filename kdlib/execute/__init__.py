"""Getting runs: `get_run` for one, `run_all` for an experiment's, from the cache or trained now.

Both go the same way, in one direction:
1. each spec becomes its run's key (kdlib.identity.RunKey.of), once: the executor's device decides
   "auto" precision, the logit-cache mode and the recipe decide the cache;
2. `kdlib.execute.planning.plan` orders the keys teachers before students, without duplicates, and finds
   the cached runs (a damaged one is moved aside with a warning and counts as missing); `check_plan`
   refuses, before anything trains, a run whose batch does not fit the training set;
3. an executor (`kdlib.execute.planning.Executor`) obtains each missing run in plan order (`obtain`: under
   the run's lock, so a run that another process or thread is training is waited for, then reused),
   by kdlib.train.train, and returns what it finished and what failed (`Outcome`).
The executors: `Inline` (one run after another, here) and `Processes` (workers > 1: up to that many
local processes) in kdlib.execute.local; `RayBackend` (kdlib.execute.ray_backend) on a Ray instance or
cluster. `run_all` picks one by name (`executor`, `workers`) and raises the failures.

Failures. `get_run` raises a run's error as it is. `run_all` lets every other run finish (a
student of a failed teacher is not started), then raises one RunsFailedError listing each failed
run's id, spec, error and traceback. Runs that finished are in the cache either way, so calling it
again retrains only what failed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from kdlib import data as kdata
from kdlib import train as ktrain
from kdlib.cache import Run, RunCache
from kdlib.checks import check_bool, check_int, check_number
from kdlib.config import Spec, StudentSpec, TeacherSpec
from kdlib.device import named_device, resolve_device
from kdlib.execute.local import Inline, Processes
from kdlib.execute.planning import Executor, RunFailure, check_plan, obtain, plan, spec_summary
from kdlib.execute.ray_backend import RayBackend, ray_address
from kdlib.identity import RunKey
from kdlib.logit_cache import check_mode

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
            lines.append(f"- run {f.run_id} ({spec_summary(f.spec)}): {f.error}")
            if f.traceback:
                lines.append("  " + f.traceback.rstrip().replace("\n", "\n  "))
        super().__init__("\n".join(lines))


class MissingRunsError(LookupError):
    """`cached_runs` found some runs missing from the cache; `missing` lists (run id, spec)."""

    def __init__(self, missing: list[tuple[str, Spec]], root: Path):
        self.missing, self.root = missing, root
        lines = [f"{len(missing)} run(s) are not in the run cache {root} (nothing was trained; `make report` "
                 "or runs.run_all trains them):"]
        lines += [f"- run {rid} ({spec_summary(spec)})" for rid, spec in missing[:10]]
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
    executor: "inline" (this process) or a Ray executor (EXECUTORS; kdlib.execute.ray_backend).
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
    specs = _check_specs(specs)
    check_mode(logit_cache)
    chosen = executor_for(executor, device=device, progress=progress, workers=workers, gpus_per_run=gpus_per_run)
    cache = cache if cache is not None else RunCache()
    keys = [RunKey.of(s, dataset, chosen.device, precision, logit_cache) for s in specs]
    order, runs = plan(keys, cache)
    check_plan(order, runs, dataset)
    outcome = chosen.execute(order, runs, dataset, cache)
    runs = {**runs, **outcome.runs}
    if outcome.failures:
        raise RunsFailedError([outcome.failures[k] for k in order if k in outcome.failures],
                              sum(k in runs for k in order)) from outcome.first_error
    return [runs[k] for k in keys]


def executor_for(executor: str = "inline", *, device: str = "auto", progress: bool = True, workers: int = 1,
                 gpus_per_run: float | None = None) -> Executor:
    """The executor `executor` names (EXECUTORS), checked: `Inline` or `Processes` (workers > 1) on
    `device`, or a connected `RayBackend` whose workers train on `device`."""
    check_executor(executor)
    check_workers(workers)
    if gpus_per_run is not None:  # None: automatic (kdlib.execute.ray_backend)
        check_number("gpus_per_run", gpus_per_run, 0, 1)
    if executor != "inline":
        return RayBackend.connect(executor, device, gpus_per_run, progress)  # imports Ray, an optional install
    options = ktrain.TrainOptions(resolve_device(device), progress)
    return Inline(options) if workers == 1 else Processes(options, workers)


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
