"""What identifies a run: training recipes and teacher/student specifications (protocol §3-4).

Specs are frozen dataclasses that validate themselves on construction, so a bad parameter
fails at the boundary with a message naming it, and hold their numbers as floats, so equal specs
are equal values. A spec, the data it runs on and its numerics make the run's key
(`kdlib.identity.RunKey`); the device is not part of it.

A field added to a spec after run ids were first pinned is declared with `added(default)`: at its
default it stays out of the spec's dict (`spec_to_dict`), so every run cached before it existed keeps
its id; tests/test_identity.py pins today's ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Union

from kdlib.checks import check_bool, check_choice, check_int, check_number, check_tau, check_unit_interval
from kdlib.models import DEPTHS, NORMS

OPTIMIZERS = ("sgd", "adam")
INITS = ("random", "interpolate", "teacher_init")


def stable_seed(*parts) -> int:
    """A 63-bit seed derived from `parts`, e.g. ("student", 0, "init").

    Teachers and students draw from separate streams, so student 0 never starts from
    teacher 0's initial weights by accident, and init and data order are independent.
    """
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def added(default):
    """A spec field added after run ids were first pinned: at `default` it is left out of the spec's
    dict, so adding it re-keys no cached run (kdlib.identity)."""
    return field(default=default, metadata={"omit_at_default": True})


def _set(obj, **values) -> None:
    """Set fields of a frozen dataclass during its own __post_init__ (canonical values)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Recipe:
    """How a network is optimised (protocol §4)."""

    epochs: int              # passes over the training set
    batch_size: int          # examples per SGD step; the last partial batch of an epoch is dropped
    lr: float                # initial learning rate
    lr_min: float = 0.0      # cosine schedule's final learning rate, stepped once per epoch
    optimizer: str = "sgd"   # "sgd" (momentum, Nesterov) or "adam"
    momentum: float = 0.9    # SGD momentum (unused by Adam)
    nesterov: bool = True    # Nesterov momentum for SGD
    weight_decay: float = 1e-4  # L2 penalty through the optimizer; 0 turns it off (E6)
    mixup: bool = False      # MixUp with Beta(1, 1), one weight per batch (protocol §3)
    eval_every: int = 1      # history entry every this many epochs (and always at the last)

    def __post_init__(self):
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 2)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_int("eval_every", self.eval_every, 1)
        check_bool("mixup", self.mixup)
        check_bool("nesterov", self.nesterov)
        # numbers as floats, so that Recipe(lr=1) and Recipe(lr=1.0) are one recipe and one run id
        _set(self, lr=check_number("lr", self.lr, 0.0, low_open=True),
             lr_min=check_number("lr_min", self.lr_min, 0.0),
             momentum=check_number("momentum", self.momentum, 0.0),
             weight_decay=check_number("weight_decay", self.weight_decay, 0.0))
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0 (torch's SGD refuses it); got momentum=0: "
                             "set nesterov=False or a momentum")

    def lr_at(self, epoch: int, lr: float | None = None) -> float:
        """Cosine annealing from `lr` (default self.lr) to lr_min, one step per epoch."""
        lr0 = self.lr if lr is None else lr
        lr_min = min(self.lr_min, lr0)
        return lr_min + (lr0 - lr_min) * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))


@dataclass(frozen=True)
class TeacherSpec:
    """A network trained on labels with cross-entropy."""

    recipe: Recipe     # how it is trained
    seed: int = 0      # initial weights and data order
    norm: str = "batch"  # "batch" (BatchNorm) or "layer" (GroupNorm(1, C)), protocol §2
    depth: int = added(20)  # PreResNet-20, or the deeper PreResNet-56 (B2's capacity gap, protocol §9)

    def __post_init__(self):
        check_int("seed", self.seed, 0)
        check_choice("norm", self.norm, NORMS)
        if isinstance(self.depth, bool) or self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, got {self.depth!r}")
        if not isinstance(self.recipe, Recipe):
            raise ValueError(f"recipe must be a Recipe, got {type(self.recipe).__name__}")

    @property
    def kind(self) -> str:
        return "teacher"


@dataclass(frozen=True)
class StudentSpec:
    """A network distilled from one teacher or an ensemble (protocol §3, §6)."""

    recipe: Recipe                       # how it is trained
    teachers: tuple[TeacherSpec, ...]    # the ensemble it imitates (one member for self-distillation)
    seed: int = 0                        # random initial weights and data order (trial id)
    norm: str = "batch"                  # must equal the teachers' for "interpolate" and "teacher_init"
    tau: float = 4.0                     # distillation temperature, > 0
    alpha: float = 0.0                   # weight of the label cross-entropy, in [0, 1]
    init: str = "random"                 # "random", "interpolate" (E3) or "teacher_init" (E4)
    lam: float = 0.0                     # E3: theta = lam * teacher + (1 - lam) * random, in [0, 1]
    lr_floor: float = 1e-6               # E3: lr = max(lr * (1 - lam), lr_floor)

    def __post_init__(self):
        teachers = tuple(self.teachers) if isinstance(self.teachers, (list, tuple)) else self.teachers
        object.__setattr__(self, "teachers", teachers)
        if not isinstance(teachers, tuple) or not teachers or not all(isinstance(t, TeacherSpec) for t in teachers):
            raise ValueError("teachers must be a non-empty sequence of TeacherSpec")
        kinds = {(t.norm, t.depth) for t in teachers}
        if len(kinds) > 1:
            raise ValueError(f"teachers must share one architecture; got (norm, depth) {sorted(kinds)}")
        if not isinstance(self.recipe, Recipe):
            raise ValueError(f"recipe must be a Recipe, got {type(self.recipe).__name__}")
        check_int("seed", self.seed, 0)
        check_choice("norm", self.norm, NORMS)
        check_choice("init", self.init, INITS)
        # numbers as floats: StudentSpec(tau=4) and StudentSpec(tau=4.0) are one spec and one run id
        _set(self, tau=check_tau(self.tau), alpha=check_unit_interval("alpha", self.alpha),
             lam=check_unit_interval("lam", self.lam),
             lr_floor=check_number("lr_floor", self.lr_floor, 0.0, low_open=True))
        if self.init != "random":
            if len(teachers) != 1:
                raise ValueError(f"init={self.init!r} needs exactly one teacher, got {len(teachers)}")
            if teachers[0].norm != self.norm:
                raise ValueError(f"init={self.init!r} needs norm equal to the teacher's "
                                 f"({teachers[0].norm!r}), got {self.norm!r}")
            if teachers[0].depth != self.depth:
                raise ValueError(f"init={self.init!r} needs a teacher of the student's depth ({self.depth}), got "
                                 f"depth {teachers[0].depth}")
        if self.init != "interpolate" and self.lam != 0.0:
            raise ValueError(f"lam is only used with init='interpolate'; got lam={self.lam} with init={self.init!r}")

    @property
    def kind(self) -> str:
        return "student"

    @property
    def depth(self) -> int:
        """Students are PreResNet-20 (protocol §2), whatever their teachers' depth."""
        return 20

    @property
    def start_lr(self) -> float:
        """The initial lr, scaled down near the teacher for E3 (protocol §6 E3)."""
        if self.init == "interpolate":
            return max(self.recipe.lr * (1 - self.lam), self.lr_floor)
        return self.recipe.lr


Spec = Union[TeacherSpec, StudentSpec]


def spec_to_dict(spec: Spec) -> dict:
    """A JSON-ready description of the spec, with its kind and its teachers nested in full; a field
    declared with `added` is left out at its default (so its addition re-keyed no run)."""
    d = _fields(spec)
    d["kind"] = spec.kind
    if isinstance(spec, StudentSpec):
        d["teachers"] = [spec_to_dict(t) for t in spec.teachers]
    return d


def _fields(obj) -> dict:
    """A dataclass's fields by name, nested dataclasses as dicts, `added` fields at their default left out."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("omit_at_default") and value == f.default:
            continue
        out[f.name] = _fields(value) if dataclasses.is_dataclass(value) else value
    return out


def spec_from_dict(d: dict) -> Spec:
    """Inverse of `spec_to_dict`."""
    d = dict(d)
    kind = d.pop("kind")
    d["recipe"] = Recipe(**d["recipe"])
    if kind == "teacher":
        return TeacherSpec(**d)
    d["teachers"] = tuple(spec_from_dict(t) for t in d["teachers"])
    return StudentSpec(**d)
