"""Running a set of runs: every experiment asks for its runs through `run_all`."""

from __future__ import annotations

from collections.abc import Sequence

from kdlib import data as kdata
from kdlib.cache import Run, RunCache
from kdlib.config import Spec
from kdlib.train import get_run

EXECUTORS = ("inline",)


def check_executor(executor: str) -> str:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    return executor


def run_all(specs: Sequence[Spec], dataset: kdata.Dataset, *, executor: str = "inline",
            cache: RunCache | None = None, device: str = "auto", progress: bool = True) -> list[Run]:
    """The finished runs for `specs`, in order; cached ones are reused, missing ones trained.

    executor: "inline" trains in this process, one run after another.
    """
    check_executor(executor)
    cache = cache if cache is not None else RunCache()
    return [get_run(spec, dataset, cache, device=device, progress=progress) for spec in specs]
