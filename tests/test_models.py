import pytest
import torch
from torch import nn

from kdlib.models import build_model, preresnet20


def test_parameter_count_matches_spec():
    assert sum(p.numel() for p in preresnet20().parameters()) == 278_132


def test_layer_norm_variant_has_no_batchnorm():
    model = preresnet20(norm="layer")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # every norm (2 per block x 9 blocks + the final one) is a one-group GroupNorm
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 19 and all(m.num_groups == 1 for m in norms)


def test_batch_norm_variant_norm_count_and_no_conv_bias():
    model = preresnet20(norm="batch")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 19
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_stage_feature_shapes_and_logits(norm):
    model = preresnet20(norm=norm).eval()
    x = torch.randn(3, 3, 32, 32)
    feats = model.stage_features(x)
    assert [tuple(f.shape) for f in feats] == [(3, 16, 32, 32), (3, 32, 16, 16), (3, 64, 8, 8)]
    torch.testing.assert_close(model(x), model.head(feats[-1]))
    assert model(x).shape == (3, 100)


def test_conv_init_scale():
    # N(0, sqrt(2 / (k*k*out))) for the 3x3 64-channel convs: std ~ sqrt(2/576)
    model = preresnet20()
    w = model.stages[2][1].conv1.weight
    assert abs(w.std().item() - (2 / (9 * 64)) ** 0.5) < 0.005


def test_build_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("batch", seed=7)
    after = torch.rand(1)
    b = build_model("batch", seed=7)
    c = build_model("batch", seed=8)
    assert torch.equal(before, after)
    for k in a.state_dict():
        torch.testing.assert_close(a.state_dict()[k], b.state_dict()[k])
    assert not torch.equal(a.stem.weight, c.stem.weight)


def test_unknown_norm_names_parameter():
    with pytest.raises(ValueError, match=r"norm must be one of \('batch', 'layer'\)"):
        preresnet20(norm="instance")
