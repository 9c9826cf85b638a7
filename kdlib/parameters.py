"""The report's parameters, defined, checked and parsed once: scale, data, device, executor, seed base.

Every entry point goes through `Parameters`: each notebook's papermill `parameters` cell declares
these names with these defaults as literals (papermill needs a literal cell;
tests/test_notebook_params.py checks they agree) and builds `Parameters(...)` from them for
`kdlib.experiments.open_experiment`; `kdlib-report` and `python -m kdlib.claims` add them to their
command lines with `Parameters.add_arguments` and build them with `Parameters.from_arguments`. A bad
value fails when the object is built, with one message per parameter naming it and what it may be.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from kdlib import data as kdata
from kdlib import scales, sources
from kdlib.checks import check_seed_base, check_str
from kdlib.device import check_device_name
from kdlib.execute import check_executor

FIELDS = ("scale", "data", "device", "executor", "seed_base")

HELP = {
    "scale": "how much data and how many epochs (kdlib.scales): " + ", ".join(scales.SCALES),
    "data": ('CIFAR-100 source: "torchvision", the lossless archive (.npz), a class-folder tree or a .tar.gz of '
             'one; "" (the default): kdlib.data.default_source(), i.e. $KDLIB_DATA, else '
             f'{kdata.OFFLINE_COPY} if it exists, else "torchvision"'),
    "device": "auto (CUDA when present), cpu, cuda or cuda:N",
    "executor": "how runs are trained: inline (this process), ray (a local Ray instance), ray://HOST:PORT or "
                "ray:ADDRESS (a Ray cluster)",
    "seed_base": f"the draw of seeds: every run's seed is {scales.SEED_STRIDE} * N + its local seed (0, the "
                 "default: the usual seeds; another N gives runs no other draw shares)",
}


@dataclasses.dataclass(frozen=True)
class Parameters:
    """What the runner injects into every notebook's `parameters` cell, checked when built."""

    scale: str = "reduced"    # a name in kdlib.scales.SCALES
    data: str = ""            # a CIFAR-100 source; "" = kdlib.data.default_source()
    device: str = "auto"      # "auto", "cpu", "cuda" or "cuda:N" (kdlib.device.check_device_name)
    executor: str = "inline"  # how runs are trained (kdlib.execute.EXECUTORS)
    seed_base: int = 0        # the draw of seeds (kdlib.scales.Scale.seed_base; 0: the usual seeds)

    def __post_init__(self):
        for name in FIELDS:
            check_parameter(name, getattr(self, name))

    @property
    def source(self) -> str:
        """The CIFAR-100 source these parameters name: `data`, or kdlib.data.default_source() when it
        is empty (checked when the object was built)."""
        return data_source(self.data)

    def get_scale(self) -> scales.Scale:
        """The named scale with this draw of seeds."""
        return scales.get_scale(self.scale, self.seed_base)

    def resolved(self) -> dict[str, str | int]:
        """The values as notebooks receive them: the data source explicit and, for a local copy,
        absolute (the kernel runs in the notebooks folder, not where the command was typed)."""
        source = self.source
        if source != "torchvision":
            source = str(Path(source).expanduser().resolve())
        return {**dataclasses.asdict(self), "data": source}

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, names: Sequence[str] = FIELDS) -> None:
        """--scale, --data, --device, --executor and --seed-base (or those of `names`), each checked
        by the parser with the message the object gives."""
        defaults = {f.name: f.default for f in dataclasses.fields(Parameters)}
        for name in names:
            extra = {"choices": tuple(scales.SCALES)} if name == "scale" else {}
            parser.add_argument(f"--{name.replace('_', '-')}", default=defaults[name], type=_checker(name),
                                help=f"{HELP[name]} (default: {defaults[name]!r})", **extra)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "Parameters":
        """The parameters an `add_arguments` parser read (the others at their defaults)."""
        return cls(**{name: getattr(args, name) for name in FIELDS if hasattr(args, name)})


def check_parameter(name: str, value):
    """`value` if it is a valid value of parameter `name` (one of FIELDS), else a ValueError (or, for a
    data source that does not exist, FileNotFoundError) naming the parameter and what it may be."""
    if name == "seed_base":
        return check_seed_base(value)
    check_str(name, value)
    if name == "scale":
        scales.get_scale(value)  # names the known scales
    elif name == "data":
        data_source(value)
    elif name == "device":
        check_device_name(value)
    elif name == "executor":
        check_executor(value)
    else:
        raise ValueError(f"name must be one of {FIELDS}, got {name!r}")
    return value


def data_source(data: str) -> str:
    """The source parameter `data` names: itself, or kdlib.data.default_source() when it is empty. A
    local copy that does not exist raises FileNotFoundError naming `data`, or $KDLIB_DATA where the
    path came from there: the one message for a missing source."""
    source = data or kdata.default_source()
    if source != "torchvision" and not Path(source).expanduser().exists():
        where = "data" if data or not os.environ.get("KDLIB_DATA") else "$KDLIB_DATA"
        raise sources.missing(where, source, also=f"'' (kdlib.data.default_source(): $KDLIB_DATA, else "
                                                  f"{kdata.OFFLINE_COPY} if it exists, else torchvision's download)")
    return source


def _checker(name: str):
    """An argparse type for parameter `name`: the value as the object takes it, or the object's own
    message as the parser's error."""
    def check(text: str):
        value = text
        if name == "seed_base":
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"seed_base must be an int >= 0, got {text!r}") from None
        try:
            check_parameter(name, value)
        except (ValueError, FileNotFoundError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value
    check.__name__ = name  # argparse names the type in its message
    return check
