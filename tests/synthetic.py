"""A tiny learnable dataset for training tests, importable from tests and from their subprocesses.

10 classes, each a noisy colour (the `synthetic` fixture of test_train.py uses it too).
"""

import torch

from kdlib import data as kdata


def run_id(spec, data_key: dict, variant: dict | None = None) -> str:
    """The id of `spec` on the data `data_key` with the numerics `variant` (as RunKey.variant writes
    it): the tests' way to name a run from an explicit data key, without a dataset or a device."""
    from kdlib.config import spec_to_dict
    from kdlib.identity import RunKey

    return RunKey.from_record(spec_to_dict(spec), data_key, variant).id


def synthetic_dataset(n_train: int = 100, n_test: int = 50) -> kdata.Dataset:
    g = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.arange(n) % 10
        base = (y[:, None, None, None].float() * 25).expand(n, 3, 32, 32)
        x = (base + torch.randint(0, 40, (n, 3, 32, 32), generator=g)).clamp(0, 255).to(torch.uint8)
        return kdata.Split(x, y)
    return kdata.Dataset(train=split(n_train), test=split(n_test), classes=tuple(f"c{i}" for i in range(100)),
                         fingerprint="synthetic-test-data", spec=kdata.DataSpec(source="synthetic"))


def same_state(a: dict, b: dict) -> None:
    """Bitwise-equal state dicts."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def same_run(a, b) -> None:
    """Two kdlib Runs with identical results: id, history, metrics, weights and test logits."""
    assert a.id == b.id
    assert a.history == b.history
    assert a.metrics == b.metrics
    same_state(a.state_dict(), b.state_dict())
    torch.testing.assert_close(a.test_logits(), b.test_logits(), rtol=0, atol=0)
