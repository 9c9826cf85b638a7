"""Which runs to train, in what order, and obtaining one: what every executor shares.

`plan` orders the keys teachers before students, without duplicates, and finds the cached runs (a
damaged one is moved aside with a warning and counts as missing); `check_plan` refuses, before
anything trains, a run whose batch does not fit the training set; `obtain` returns a finished run,
training it under the run's lock if it is missing. An `Executor` (kdlib.execute.local: inline, or
local worker processes; kdlib.execute.ray_backend: Ray) takes the plan's order and the runs already
finished, starts a run once its teachers have finished (`startable`), and returns an `Outcome`: the
runs it finished, the ones that failed, and the first error.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from kdlib import data as kdata
from kdlib import train as ktrain
from kdlib.cache import CorruptRunError, Run, RunCache
from kdlib.config import Spec, TeacherSpec
from kdlib.identity import RunKey


@dataclass(frozen=True)
class RunFailure:
    run_id: str
    spec: Spec
    error: str      # "ExceptionType: message", or why the run was not started
    traceback: str  # the failing run's traceback, as raised where it ran; "" if it never started


def spec_summary(spec: Spec) -> str:
    """A short, readable summary of a spec for messages."""
    r = spec.recipe
    recipe = f"{r.epochs} epochs, {r.optimizer} lr {r.lr:g}" + (", MixUp" if r.mixup else "")
    if isinstance(spec, TeacherSpec):
        return f"teacher seed {spec.seed}, {spec.norm}norm, {recipe}"
    init = "" if spec.init == "random" else f", init {spec.init}" + (
        f" lam {spec.lam:g}" if spec.init == "interpolate" else "")
    teachers = ",".join(str(t.seed) for t in spec.teachers)
    return f"student seed {spec.seed} of teacher(s) {teachers}, tau {spec.tau:g}{init}, {spec.norm}norm, {recipe}"


@dataclass
class Outcome:
    """What an executor returns: the runs it finished, the runs that failed (or were not started,
    their teacher having failed), and the first error raised here."""

    runs: dict[RunKey, Run] = field(default_factory=dict)
    failures: dict[RunKey, RunFailure] = field(default_factory=dict)
    first_error: BaseException | None = None

    def failed(self, key: RunKey, error: BaseException, tb: str | None = None) -> None:
        self.failures[key] = failure(key, error, tb)
        self.first_error = self.first_error or error


class Executor(Protocol):
    """How the missing runs of a plan are trained: inline, in local worker processes or on Ray.

    `device` is where its runs train, which decides their "auto" precision and so their keys
    (kdlib.identity.RunKey.of); `execute` obtains every missing run of `order` (teachers first;
    `cached` holds the finished ones), each once its teachers have finished, and returns what it
    finished and what failed without raising for a run's failure."""

    device: torch.device

    def execute(self, order: Sequence[RunKey], cached: dict[RunKey, Run], dataset: kdata.Dataset,
                cache: RunCache) -> "Outcome":
        ...


def plan(keys: Sequence[RunKey], cache: RunCache) -> tuple[list[RunKey], dict[RunKey, Run]]:
    """Every run needed for `keys`, teachers before their students, without duplicates; and the
    cached ones. A missing student needs its teachers, a cached one does not. A damaged run is moved
    aside (a warning) and counts as missing."""
    order, cached = {}, {}

    def visit(key: RunKey):
        if key in order:
            return
        run = _load_or_set_aside(cache, key.id)
        if run is None:
            for teacher in key.teachers:
                visit(teacher)
        else:
            cached[key] = run
        order[key] = None

    for key in keys:
        visit(key)
    return list(order), cached


def check_plan(order: Sequence[RunKey], cached: dict[RunKey, Run], dataset: kdata.Dataset) -> None:
    """Refuse, before anything trains, a run that cannot train on `dataset`: one whose batch is larger
    than the training set (a full batch every step is how an epoch is defined)."""
    n = len(dataset.train)
    bad = [k for k in order if k not in cached and k.spec.recipe.batch_size > n]
    if bad:
        raise ValueError(f"batch_size must be at most the training set's {n} images; "
                         + "; ".join(f"run {k.id} ({spec_summary(k.spec)}) has batch_size {k.spec.recipe.batch_size}"
                                     for k in bad))


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


def obtain(key: RunKey, dataset: kdata.Dataset, cache: RunCache, teacher_runs: list[Run],
           options: ktrain.TrainOptions) -> Run:
    """The finished run `key`: from `cache`, else trained now under the run's lock (a second process
    or thread asking for it waits, then reuses the result)."""
    run = cache.load(key.id)
    if run is not None:
        return run
    with cache.lock(key.id):
        run = cache.load(key.id)  # finished by another process while we waited
        if run is not None:
            return run
        return ktrain.train(key, dataset, cache, teacher_runs, options)


def failure(key: RunKey, error: BaseException, tb: str | None = None) -> RunFailure:
    if tb is None:
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return RunFailure(key.id, key.spec, f"{type(error).__name__}: {error}", tb)


def startable(todo: list[RunKey], runs: dict, failures: dict, bar) -> list[RunKey]:
    """Take out of `todo` (plan order, teachers first) the runs that can start now, all of whose
    teachers are finished; a run one of whose teachers failed is taken out too, recorded in
    `failures` as not started, and counted on `bar`. Used by every parallel executor."""
    out = []
    for key in list(todo):
        skipped = teacher_failed(key, failures)
        if skipped is not None:
            failures[key] = skipped
            todo.remove(key)
            bar.update()
        elif all(t in runs for t in key.teachers):
            todo.remove(key)
            out.append(key)
    return out


def teacher_failed(key: RunKey, failures: dict[RunKey, RunFailure]) -> RunFailure | None:
    """Why `key` cannot start: a failure if one of its teachers failed, else None."""
    failed = [t.id for t in key.teachers if t in failures]
    if not failed:
        return None
    return RunFailure(key.id, key.spec, f"not started: its teacher run(s) {', '.join(failed)} failed", "")


def max_parallel(order: Sequence[RunKey], runs: dict[RunKey, Run]) -> int:
    """How many of the plan's missing runs can train at once: the most on one level, where a run's
    level is one more than the highest of its missing teachers' (0 when none is missing)."""
    level: dict[RunKey, int] = {}
    for key in order:  # teachers first
        if key not in runs:
            level[key] = 1 + max((level[t] for t in key.teachers if t in level), default=-1)
    return max(Counter(level.values()).values(), default=0)
