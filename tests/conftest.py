"""Shared fixtures. Tests never write to the real ~/.cache/kdlib: KDLIB_HOME points at a session
temporary folder (a test may override it with monkeypatch.setenv for an empty one)."""

import os
from pathlib import Path

import pytest
import torch

from kdlib import data as kdata


@pytest.fixture(scope="session", autouse=True)
def _session_kdlib_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDLIB_HOME", str(tmp_path_factory.mktemp("kdlib_home")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _auto_precision_is_fp32_on_cpu():
    """precision="auto" is bf16 on CPUs with native bf16 (kdlib.device.cpu_has_native_bf16): tests
    in this process (and the worker scripts of test_robustness) see an fp32 CPU whatever this
    machine has, so run ids and numbers do not depend on it. Session-wide, so module fixtures see
    it too and a test's own monkeypatch.undo() leaves it in place."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("kdlib.device.cpu_has_native_bf16", lambda: False)
        yield


@pytest.fixture
def interrupted_at_step(monkeypatch):
    """interrupted_at_step(n, action): calls `action` with the n-th optimiser step (1-based) raising
    KeyboardInterrupt, as a Ctrl-C mid-training does, and checks that it was interrupted; the real
    step is back afterwards."""
    def interrupt(n: int, action) -> None:
        real_step, calls = torch.optim.SGD.step, {"n": 0}

        def step(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real_step(self, *args, **kwargs)

        monkeypatch.setattr(torch.optim.SGD, "step", step)
        try:
            with pytest.raises(KeyboardInterrupt):
                action()
        finally:
            monkeypatch.setattr(torch.optim.SGD, "step", real_step)
    return interrupt


@pytest.fixture(scope="session")
def cifar_real_source() -> str:
    """Path of the offline CIFAR-100 copy, its exact pixels ($KDLIB_TEST_DATA, else kdlib.data.OFFLINE_COPY, the
    offline copy of kdlib.data.default_source(), taken from the repository root whatever the cwd);
    skips if absent. $KDLIB_DATA is not read: the tests never depend on the user's data setting."""
    default = (Path(__file__).resolve().parents[1] / kdata.OFFLINE_COPY).resolve()
    path = Path(os.environ.get("KDLIB_TEST_DATA") or default)
    if not path.exists():
        pytest.skip(f"real CIFAR-100 archive not found at {path}")
    return str(path)


@pytest.fixture(scope="session")
def cifar_real(cifar_real_source) -> kdata.Dataset:
    """The full real CIFAR-100 (50k/10k), decoded once per session into the session KDLIB_HOME.

    Later `kdata.load(DataSpec(cifar_real_source, ...))` calls in the session reuse the cache.
    """
    return kdata.load(kdata.DataSpec(source=cifar_real_source))
