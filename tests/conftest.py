"""Shared fixtures. Tests never write to the real ~/.cache/kdlib: KDLIB_HOME points at a session
temporary folder (a test may override it with monkeypatch.setenv for an empty one)."""

import os
from pathlib import Path

import pytest

from kdlib import data as kdata


@pytest.fixture(scope="session", autouse=True)
def _session_kdlib_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDLIB_HOME", str(tmp_path_factory.mktemp("kdlib_home")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _auto_precision_is_fp32_on_cpu():
    """precision="auto" is bf16 on CPUs with native bf16 (kdlib.train.cpu_has_native_bf16): tests
    in this process (and the worker scripts of test_robustness) see an fp32 CPU whatever this
    machine has, so run ids and numbers do not depend on it. Session-wide, so module fixtures see
    it too and a test's own monkeypatch.undo() leaves it in place."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("kdlib.train.cpu_has_native_bf16", lambda: False)
        yield


@pytest.fixture(scope="session")
def cifar_real_source() -> str:
    """Path of the offline CIFAR-100 JPEG archive ($KDLIB_TEST_DATA, else ../shared/data/); skips if absent."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar100-jpg.tar.gz"
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
