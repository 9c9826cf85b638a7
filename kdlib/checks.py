"""Checks of parameters at the boundary: each names the parameter and what it may be.

One set for the whole package (specs, losses, data, notebooks' parameters, the executor), so that
every bad value fails the same way: a ValueError that says `<name> must be ..., got <value>`.
Numbers come back canonical (a float where a float is meant), so `tau=4` and `tau=4.0` are one value
for the run ids built from them.
"""

from __future__ import annotations

import math


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    """An int (not a bool) in [minimum, maximum]; None too when allow_none."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum) \
        and (maximum is None or value <= maximum)
    if not ok:
        bounds = (f" >= {minimum}" if maximum is None else f" in {minimum}..{maximum}") if minimum is not None else ""
        raise ValueError(f"{name} must be an int{bounds}{' or None' if allow_none else ''}, got {value!r}")
    return value


def check_number(name: str, value, low: float = -math.inf, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False) -> float:
    """A finite number (not a bool) >= low (> low when low_open), and <= high when given; as a float.

    The message states the bound ("lr must be a finite number > 0") or, with `high`, the interval
    ("lam must be a number in [0, 1]", "tau must be a number in (0, inf]").
    """
    top = math.inf if high is None else high
    ok = _is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low) \
        and (value < top if high_open else value <= top)
    if not ok:
        if high is None:
            raise ValueError(f"{name} must be a finite number {'>' if low_open else '>='} {low:g}, got {value!r}")
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def check_unit_interval(name: str, value) -> float:
    """A number in [0, 1], as a float."""
    return check_number(name, value, 0.0, 1.0)


def check_tau(tau) -> float:
    """A distillation temperature: a finite number > 0, as a float."""
    return check_number("tau", tau, 0.0, low_open=True)


def check_seed_base(value) -> int:
    """A draw of seeds (kdlib.scales.Scale.seed_base): an int >= 0."""
    return check_int("seed_base", value, 0)


def check_choice(name: str, value, allowed: tuple):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_str(name: str, value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    return value
