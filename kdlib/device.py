"""Device and precision policy: where a run trains and in what arithmetic (one code path for both).

`resolve_device` turns "auto" into CUDA when present; `resolve_precision` turns "auto" into bf16
autocast where the hardware computes bf16 natively (CUDA; CPUs with AVX512-BF16 or AMX) and fp32
elsewhere. A run's precision is part of its key (kdlib.identity.RunKey); the device is not (it
only reorders fp32 arithmetic), and is recorded in the run's info.
"""

from __future__ import annotations

import contextlib
import functools
import re

import torch


# NHWC activations and weights: 1.3-1.5x faster training steps than NCHW on 2 CPU cores (oneDNN;
# the "kdlib NCHW" rows of benchmarks/bench_train.py, docs/speed.md) and the layout tensor cores
# want on CUDA; the results agree with NCHW up to float rounding.
CHANNELS_LAST = torch.channels_last
PRECISIONS = ("auto", "fp32", "bf16")


def check_device_name(device) -> str:
    """A device name as kdlib's entry points take it ('auto', 'cpu', 'cuda' or 'cuda:N'), checked by
    its spelling alone: the device need not exist here (a Ray cluster's, or the one cached runs were
    trained on)."""
    if not (isinstance(device, str) and (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device))):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA when present, else CPU), or an explicit torch device string."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return resolved


def named_device(device: str) -> torch.device:
    """The torch device a device name denotes, checked by `check_device_name` and not required to
    exist here (where cached runs were trained, say); only "auto" is resolved, for this machine."""
    return resolve_device(device) if device == "auto" else torch.device(check_device_name(device))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX-BF16, read from
    /proc/cpuinfo). Elsewhere oneDNN emulates bf16, slower than fp32, so "auto" keeps fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto', 'fp32' or 'bf16'. 'auto' is bf16 autocast where the hardware runs it natively (CUDA;
    CPUs with AVX512-BF16/AMX, where training steps run ~1.8x faster than fp32 on 2 cores:
    docs/speed.md) and fp32 elsewhere. Either way the run's key records the precision (kdlib.identity.RunKey)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The forward-pass context of a run: bf16 autocast, or a disabled one for fp32 (one code path).

    Under CUDA autocast, convolutions and the linear layer run in bf16; group_norm (the LayerNorm
    model) is on autocast's fp32 list, and BatchNorm keeps fp32 weights, running statistics and
    accumulation while reading and writing bf16. CPU autocast leaves group_norm on bf16 inputs;
    its kernel accumulates the statistics in fp32, so outputs differ from fp32 by bf16 rounding
    (checked: 0.025 at most on unit-scale outputs). Losses are computed in fp32 (kd_loss casts).
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def backend_flags(device: torch.device, precision: str):
    """cuDNN settings for a run, restored afterwards; nothing on CPU.

    Autotuning (cudnn.benchmark): every training batch has the same shape, so the fastest
    convolution algorithms are found once. For precision "fp32", IEEE fp32 convolutions
    instead of PyTorch's default TF32 (10-bit significand), so that "fp32" means fp32 on every
    device, as the run id assumes.
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    conv = getattr(cudnn, "conv", None)
    new_api = conv is not None and hasattr(conv, "fp32_precision")  # torch >= 2.9
    saved = (cudnn.benchmark, conv.fp32_precision if new_api else cudnn.allow_tf32)
    cudnn.benchmark = True
    if precision == "fp32":
        if new_api:
            conv.fp32_precision = "ieee"
        else:
            cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.benchmark = saved[0]
        if new_api:
            conv.fp32_precision = saved[1]
        else:
            cudnn.allow_tf32 = saved[1]
