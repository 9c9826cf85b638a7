import math

import pytest
import torch
import torch.nn.functional as F

from kdlib.losses import Teacher, ensemble_logits, kd_loss
from kdlib.models import preresnet20


def _logits(seed, shape=(8, 10), scale=3.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def test_gradient_equals_kl_gradient_at_tau1_alpha0():
    zs = _logits(0).requires_grad_(True)
    zt = _logits(1)
    kd_loss(zs, zt, None, tau=1.0, alpha=0.0).backward()
    zs2 = zs.detach().clone().requires_grad_(True)
    # KL(p_t || p_s), batch mean, written independently
    p_t = F.softmax(zt, -1)
    kl = (p_t * (torch.log(p_t) - F.log_softmax(zs2, -1))).sum(-1).mean()
    kl.backward()
    torch.testing.assert_close(zs.grad.double(), zs2.grad)


def test_soft_term_matches_formula_and_tau_squared_scaling():
    zs, zt = _logits(2), _logits(3)
    for tau in (1.0, 2.0, 4.0, 8.0):
        p = torch.softmax(zt / tau, -1)
        ref = -(p * torch.log_softmax(zs / tau, -1)).sum(-1).mean() * tau**2
        torch.testing.assert_close(kd_loss(zs, zt, None, tau=tau).double(), ref.float().double(), rtol=1e-5, atol=1e-5)
    # the tau^2 factor keeps gradients of comparable size across temperatures (Hinton et al.):
    # for large tau the gradient tends to (z_s - z_t) / (C * B) after mean-centring the logits
    zs0 = zs - zs.mean(-1, keepdim=True)
    zt0 = zt - zt.mean(-1, keepdim=True)
    g = zs0.clone().requires_grad_(True)
    kd_loss(g, zt0, None, tau=1000.0).backward()
    torch.testing.assert_close(g.grad.double(), ((zs0 - zt0) / (zs.shape[1] * zs.shape[0])), rtol=1e-2, atol=1e-4)


def test_alpha_mixes_cross_entropy():
    zs, zt = _logits(4), _logits(5)
    y = torch.arange(8) % 10
    soft = kd_loss(zs, zt, None, tau=4.0)
    full = kd_loss(zs, zt, y, tau=4.0, alpha=0.3)
    torch.testing.assert_close(full, 0.3 * F.cross_entropy(zs.float(), y) + 0.7 * soft)
    torch.testing.assert_close(kd_loss(zs, zt, y, alpha=1.0), F.cross_entropy(zs.float(), y))


@pytest.mark.parametrize("tau", [0, -1.0, float("nan"), float("inf"), "4"])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match="tau must be"):
        kd_loss(_logits(0), _logits(1), None, tau=tau)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]"):
        kd_loss(_logits(0), _logits(1), None, alpha=alpha)


def test_labels_required_when_alpha_positive():
    with pytest.raises(ValueError, match="labels"):
        kd_loss(_logits(0), _logits(1), None, alpha=0.5)


def test_one_member_ensemble_is_log_softmax():
    z = _logits(6)
    torch.testing.assert_close(ensemble_logits(z[None]), F.log_softmax(z.float(), -1))


def test_ensemble_is_log_of_mean_probability_and_stable():
    z = _logits(7, shape=(5, 8, 10))
    ref = torch.log(torch.softmax(z, -1).mean(0))
    torch.testing.assert_close(ensemble_logits(z).double(), ref, rtol=1e-5, atol=1e-5)
    huge = z * 1e4  # naive exp would overflow
    assert torch.isfinite(ensemble_logits(huge)).all()
    with pytest.raises(ValueError, match="members, batch, classes"):
        ensemble_logits(z[0])


def test_teacher_is_frozen_eval_by_construction():
    members = [preresnet20(num_classes=10) for _ in range(2)]
    for m in members:
        m.train()
    teacher = Teacher(members)
    assert not teacher.training and not any(m.training for m in teacher.members)
    teacher.train()  # cannot be switched back to training mode
    assert not teacher.training and not any(m.training for m in teacher.members)
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(4, 3, 32, 32)
    out = teacher(x)
    assert not out.requires_grad
    ref = ensemble_logits(torch.stack([m.eval()(x) for m in members]))
    torch.testing.assert_close(out, ref)
    # BatchNorm running statistics are untouched by teacher forwards (eval mode)
    before = members[0].final_norm.running_mean.clone()
    teacher(x * 5 + 3)
    torch.testing.assert_close(members[0].final_norm.running_mean, before)


def test_teacher_members_must_share_architecture():
    with pytest.raises(ValueError, match="members must share one architecture"):
        Teacher([preresnet20(norm="batch"), preresnet20(norm="layer")])
    with pytest.raises(ValueError, match="members must hold at least one"):
        Teacher([])
