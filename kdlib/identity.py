"""What a run is: its key, built once from a spec, the data and the numerics; its hash is the run's id.

A run's results depend on its spec (kdlib.config), the images it trains and is evaluated on
(`Dataset.cache_key()`), and two numerical choices that change its arithmetic: bf16 autocast
instead of fp32, and a student's teacher logits read from the float16 logit cache instead of
computed on the fly. `RunKey` holds exactly these; `RunKey.of` resolves "auto" choices once (the
device decides "auto" precision; the logit-cache mode and the recipe decide the cache), and from
then on the key travels as it is: to the planner, the training loop, the run cache and Ray
workers, which never derive it again. What only reorders fp32 arithmetic (device, kernel choice,
channels_last, torch.compile) is not part of the key; a run records it in its info.

The id is the sha256 of the key's canonical JSON payload (sorted keys, no spaces); the spec's
numbers are floats (kdlib.config), so equal specs give one id. CODE_VERSION is part of it: bump it
when kdlib starts computing a run differently, so old results are not reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from kdlib import logit_cache as lcache
from kdlib.config import Spec, StudentSpec, spec_from_dict, spec_to_dict
from kdlib.device import resolve_precision

# 3: one RunKey for every run (canonical numbers; the logit cache keyed by teacher weights)
CODE_VERSION = 3
PRECISIONS = ("fp32", "bf16")  # resolved precisions a key may hold


def canonical(obj) -> bytes:
    """The JSON bytes that are hashed: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class RunKey:
    """A run's identity: what was trained, on what, in which numerics."""

    spec: Spec                   # the teacher or student
    data: tuple                  # the dataset's cache_key() as sorted (name, value) pairs (hashable)
    precision: str = "fp32"      # "fp32" or "bf16" (resolved: never "auto")
    cached_logits: bool = False  # a student's teacher logits come from the float16 logit cache

    def __post_init__(self):
        if isinstance(self.data, dict):
            object.__setattr__(self, "data", tuple(sorted(self.data.items())))
        if self.precision not in PRECISIONS:
            raise ValueError(f"RunKey.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.cached_logits and not isinstance(self.spec, StudentSpec):
            raise ValueError("only a student's teacher logits can come from the logit cache")

    @classmethod
    def of(cls, spec: Spec, dataset, device: torch.device, precision: str = "auto",
           logit_cache: str = "auto") -> "RunKey":
        """The key of `spec` trained on `device` (which need not exist here) with these choices."""
        cached = isinstance(spec, StudentSpec) and lcache.use_logit_cache(logit_cache, spec.recipe.epochs,
                                                                         spec.recipe.mixup)
        return cls(spec, dataset.cache_key(), resolve_precision(precision, device), cached)

    @classmethod
    def from_record(cls, spec: dict, data: dict, variant: dict | None) -> "RunKey":
        """The key a stored run describes (result.json's spec, data and variant)."""
        variant = variant or {}
        return cls(spec_from_dict(spec), data, variant.get("precision", "fp32"), "teacher_logits" in variant)

    @property
    def data_key(self) -> dict:
        return dict(self.data)

    @property
    def variant(self) -> dict:
        """The non-default numerics, as stored beside the run ({} for fp32 with teachers on the fly)."""
        variant = {}
        if self.precision != "fp32":
            variant["precision"] = self.precision
        if self.cached_logits:
            variant["teacher_logits"] = f"cache-{str(lcache.STORAGE_DTYPE).removeprefix('torch.')}"
        return variant

    def payload(self) -> dict:
        """Everything hashed into the id (and stored as the run's spec.json)."""
        payload = {"code_version": CODE_VERSION, "data": self.data_key, "spec": spec_to_dict(self.spec)}
        if self.variant:
            payload["variant"] = self.variant
        return payload

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical(self.payload())).hexdigest()[:16]

    @property
    def teachers(self) -> tuple["RunKey", ...]:
        """The keys of a student's teachers: the same data and precision (teachers use no logit cache)."""
        return tuple(RunKey(t, self.data, self.precision) for t in getattr(self.spec, "teachers", ()))

    @property
    def kind(self) -> str:
        return self.spec.kind
