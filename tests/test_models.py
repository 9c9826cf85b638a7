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


def preresnet_parameters(n: int, classes: int = 100) -> int:
    """PreResNet-(6n + 2)'s parameters counted by hand: stem, three stages of n blocks (two 3x3
    convs and two affine norms each, a 1x1 projection where the width changes), final norm, linear."""
    total, c_in = 3 * 16 * 9, 16
    for width in (16, 32, 64):
        for j in range(n):
            c = c_in if j == 0 else width
            total += c * width * 9 + width * width * 9 + 2 * c + 2 * width + (c * width if c != width else 0)
        c_in = width
    return total + 2 * 64 + 64 * classes + classes


def test_preresnet56_has_nine_blocks_per_stage_and_the_parameters_counted_by_hand():
    from kdlib.models import preresnet
    assert preresnet_parameters(3) == 278_132  # the formula, checked on PreResNet-20
    deep = preresnet(depth=56)
    assert sum(p.numel() for p in deep.parameters()) == preresnet_parameters(9)
    assert sum(isinstance(m, nn.Conv2d) for m in deep.modules()) == 1 + 2 * 27 + 2  # + the two projections
    assert deep(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match=r"depth must be one of \(20, 56\)"):
        preresnet(depth=32)
    a, b = build_model("batch", 3, depth=56), build_model("batch", 3, depth=56)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
