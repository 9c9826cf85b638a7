"""Tests for kdlib.metrics (protocol §5): each metric against an independent numpy/scipy reference,
plus the properties and the bug fixes the protocol names (docs/protocol.md §5)."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.testing import assert_close

from kdlib import metrics
from kdlib.metrics import accuracy, agreement, ece, kl, linear_cka, nll, reliability, symmetric_kl

SHAPES = [(1, 2), (7, 3), (64, 10), (257, 100)]  # (N, C), incl. sizes not divisible by a batch
SEEDS = [0, 1, 2]


def _logits(n, c, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, generator=g, dtype=torch.float64)


def _one_hot(labels, c):
    return torch.nn.functional.one_hot(labels, c).double()


def _labels(n, c, seed):
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randint(0, c, (n,), generator=g)


# --------------------------------------------------------------------------- numpy references

def ref_accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def ref_nll(logits, labels):
    log_p = scipy.special.log_softmax(logits, axis=1)
    return float(-np.mean([log_p[i, labels[i]] for i in range(len(labels))]))


def ref_ece(logits, labels, n_bins=10):
    p = scipy.special.softmax(logits, axis=1)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            gap = abs(np.mean(pred[in_bin] == labels[in_bin]) - np.mean(conf[in_bin]))
            total += in_bin.sum() / len(conf) * gap
    return total


def ref_kl(t_logits, s_logits):
    p_t = scipy.special.softmax(t_logits, axis=1)
    p_s = scipy.special.softmax(s_logits, axis=1)
    return float(np.mean(scipy.stats.entropy(p_t, p_s, axis=1)))


def ref_cka(x, y):
    # Kornblith et al. (2019): HSIC(K, L) = tr(K H L H) / (n-1)^2 with H = I - 11^T/n; the
    # (n-1)^2 cancels in the ratio.
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return float(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)))


def _orthogonal(d, seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # (d, d), Haar-distributed


# --------------------------------------------------------------------------- against references

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_label_metrics_match_reference(shape, seed):
    n, c = shape
    logits, labels = _logits(n, c, seed), _labels(n, c, seed)
    ln, yn = logits.numpy(), labels.numpy()
    assert_close(accuracy(logits, labels), ref_accuracy(ln, yn))
    assert_close(nll(logits, labels), ref_nll(ln, yn))
    assert_close(ece(logits, labels), ref_ece(ln, yn))
    assert_close(ece(logits, labels, n_bins=15), ref_ece(ln, yn, n_bins=15))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_pair_metrics_match_reference(shape, seed):
    n, c = shape
    t, s = _logits(n, c, seed), _logits(n, c, seed + 50, scale=2.0)
    tn, sn = t.numpy(), s.numpy()
    assert_close(agreement(t, s), float(np.mean(tn.argmax(1) == sn.argmax(1))))
    assert_close(kl(t, s), ref_kl(tn, sn))
    assert_close(symmetric_kl(t, s), 0.5 * (ref_kl(tn, sn) + ref_kl(sn, tn)))


def test_returns_python_floats_and_accepts_low_precision():
    logits, labels = _logits(33, 5, 0).float(), _labels(33, 5, 0)
    for value in (accuracy(logits, labels), nll(logits, labels), ece(logits, labels),
                  agreement(logits, logits), kl(logits, logits), linear_cka(logits, logits)):
        assert type(value) is float
    # bf16 inputs are upcast, not computed in bf16: same as the reference on the rounded values.
    lb = logits.bfloat16()
    ref = lb.double().numpy()
    assert_close(nll(lb, labels), ref_nll(ref, labels.numpy()))
    assert_close(kl(lb, logits.bfloat16().flip(0)), ref_kl(ref, ref[::-1]))


# --------------------------------------------------------------------------- NLL bug (protocol §5 fix)

def test_nll_catches_the_bxb_indexing_bug():
    # Confident, correct predictions: the true NLL is ~0, while the original code's
    # `-log_softmax(logits)[:, labels].mean()` averages an N x N matrix whose off-diagonal
    # entries are the wrong classes (~20 nats each), which is where "NLL 20.15" came from.
    n = 16
    labels = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    logits = 20.0 * _one_hot(labels, n)
    log_p = torch.log_softmax(logits.double(), dim=1)
    buggy = -log_p[:, labels].mean().item()
    true = -log_p[torch.arange(n), labels].mean().item()
    assert true < 1e-6 and buggy > 15.0
    assert_close(nll(logits, labels), true)
    assert abs(nll(logits, labels) - buggy) > 15.0


def test_nll_is_over_the_whole_set_not_a_mean_of_batch_means():
    n, c, batch = 1037, 10, 128  # the last batch has 13 examples
    logits, labels = _logits(n, c, 3), _labels(n, c, 3)
    per_example = -scipy.special.log_softmax(logits.numpy(), axis=1)[np.arange(n), labels.numpy()]
    assert_close(nll(logits, labels), float(per_example.mean()))
    # Batches combine by example count, not equally.
    parts = [(nll(logits[i:i + batch], labels[i:i + batch]), len(labels[i:i + batch]))
             for i in range(0, n, batch)]
    assert_close(nll(logits, labels), sum(v * m for v, m in parts) / n)
    assert abs(nll(logits, labels) - np.mean([v for v, _ in parts])) > 1e-6


# --------------------------------------------------------------------------- ECE by hand

def test_ece_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    # A: logits [0, 0] give confidence exactly 0.5 and (first-index argmax) a correct prediction.
    # B: confidence 0.55, wrong. With (lo, hi] bins A sits alone in (0.4, 0.5]:
    #   ECE = 1/2 |1 - 0.5| + 1/2 |0 - p_B| = 0.25 + p_B / 2 = 0.525.
    # Had A gone into (0.5, 0.6] with B: ECE = |1/2 - (0.5 + p_B) / 2| = 0.025.
    logits = torch.tensor([[0.0, 0.0], [0.0, np.log(0.55 / 0.45)]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    probs = torch.softmax(logits, dim=1)
    assert probs[0].max().item() == 0.5 and probs[0].argmax().item() == 0  # preconditions
    p_b = probs[1].max().item()
    assert_close(ece(logits, labels), 0.25 + p_b / 2)
    assert_close(ece(logits, labels), 0.525)


def test_ece_is_zero_when_perfectly_calibrated():
    # Ten examples at confidence 0.7, seven right: acc_b == conf_b.
    logits = torch.tensor([[np.log(0.7), np.log(0.3)]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 7 + [1] * 3)
    assert_close(ece(logits, labels), 0.0, atol=1e-12, rtol=0)
    # Certain and always right.
    assert_close(ece(100.0 * _one_hot(labels, 2), labels), 0.0, atol=1e-12, rtol=0)


def test_ece_of_overconfident_wrong_predictions_equals_confidence():
    logits = 100.0 * _one_hot(torch.tensor([1, 1, 1]), 3)
    assert_close(ece(logits, torch.tensor([0, 2, 0])), 1.0)


def test_reliability_bins_count_every_example_once_and_give_the_ece():
    # Ten at confidence 0.7 (seven right) and the two of the bin-edge test: bins (0.4, 0.5], (0.5, 0.6], (0.6, 0.7].
    logits = torch.cat([torch.tensor([[np.log(0.7), np.log(0.3)]] * 10, dtype=torch.float64),
                        torch.tensor([[0.0, 0.0], [0.0, np.log(0.55 / 0.45)]], dtype=torch.float64)])
    labels = torch.tensor([0] * 7 + [1] * 3 + [0, 0])
    bins = reliability(logits, labels)
    assert bins["count"].tolist() == [0, 0, 0, 0, 1, 1, 10, 0, 0, 0]
    assert_close(bins["correct"][6].item(), 7.0)
    assert_close(bins["confidence"][6].item(), 7.0)
    assert bins["correct"][4].item() == 1.0 and bins["correct"][5].item() == 0.0
    gaps = (bins["correct"] - bins["confidence"]).abs().sum().item() / 12
    assert_close(ece(logits, labels), gaps)
    with pytest.raises(ValueError, match="n_bins"):
        reliability(logits, labels, 0)


# --------------------------------------------------------------------------- KL properties

def test_kl_properties():
    a, b = _logits(50, 10, 0), _logits(50, 10, 1)
    assert kl(a, a) == pytest.approx(0.0, abs=1e-12)
    assert symmetric_kl(a, a) == pytest.approx(0.0, abs=1e-12)
    assert kl(a, b) > 0 and kl(b, a) > 0
    assert abs(kl(a, b) - kl(b, a)) > 1e-3  # asymmetric in general
    assert symmetric_kl(a, b) == symmetric_kl(b, a)
    # Shifting logits by a per-example constant leaves the probabilities unchanged.
    assert_close(kl(a + 5.0, b - 3.0 * torch.arange(50.0)[:, None]), kl(a, b))


def test_kl_treats_zero_probability_classes_as_zero_terms():
    t = torch.tensor([[0.0, 1.0, -float("inf")]], dtype=torch.float64)
    s = torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64)
    p = scipy.special.softmax([0.0, 1.0]), scipy.special.softmax([1.0, 0.0, 2.0])[:2]
    expected = float(np.sum(p[0] * np.log(p[0] / p[1])))
    assert_close(kl(t, s), expected)
    assert np.isinf(kl(s, t))  # the reverse direction really is infinite


# --------------------------------------------------------------------------- CKA

@pytest.mark.parametrize("n,d1,d2", [(30, 5, 8), (40, 40, 3), (10, 40, 25), (12, 6, 50)])
@pytest.mark.parametrize("seed", [0, 1])
def test_cka_matches_hsic_reference(n, d1, d2, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d1, generator=g, dtype=torch.float64)
    y = x[:, :1] * torch.randn(1, d2, generator=g, dtype=torch.float64) \
        + torch.randn(n, d2, generator=g, dtype=torch.float64)  # related, not identical
    assert_close(linear_cka(x, y), ref_cka(x.numpy(), y.numpy()))
    assert_close(linear_cka(y, x), linear_cka(x, y))


def test_cka_flattens_extra_dimensions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 2, 3, 3, generator=g)  # (n, C, H, W) like a stage's feature map
    y = torch.randn(9, 4, 2, 2, generator=g)
    assert_close(linear_cka(x, y), ref_cka(x.double().numpy(), y.double().numpy()))


def test_cka_gram_path_equals_feature_path():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    y = x @ torch.randn(6, 4, generator=g, dtype=torch.float64) \
        + torch.randn(20, 4, generator=g, dtype=torch.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    assert_close(metrics._cka_gram(xc, yc), metrics._cka_features(xc, yc))
    # Through the public function: zero columns change no inner product, but push d past n, so
    # the padded call takes the Gram branch and the plain one the feature branch.
    pad = torch.zeros(20, 25, dtype=torch.float64)
    assert_close(linear_cka(torch.cat([x, pad], 1), y), linear_cka(x, y))
    assert_close(linear_cka(x, y), ref_cka(x.numpy(), y.numpy()))


def test_cka_invariances():
    g = torch.Generator().manual_seed(2)
    n, d = 50, 10
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(d, 8, generator=g, dtype=torch.float64))
    base = linear_cka(x, y)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x.float(), x.float()) == pytest.approx(1.0, abs=1e-6)
    assert_close(linear_cka(x @ _orthogonal(d, 0), y), base)
    assert_close(linear_cka(x, y @ _orthogonal(8, 1)), base)
    assert_close(linear_cka(37.0 * x, 0.01 * y), base)
    assert_close(linear_cka(x + 4.0, y - 2.0), base)  # centring removes offsets
    assert linear_cka(x @ _orthogonal(d, 3), x) == pytest.approx(1.0, abs=1e-12)
    # A badly conditioned invertible map is not an orthogonal transform: CKA notices.
    spread = torch.diag(torch.logspace(-2, 2, d, dtype=torch.float64))
    a = spread @ torch.randn(d, d, generator=g, dtype=torch.float64)
    assert torch.linalg.matrix_rank(a) == d
    assert linear_cka(x @ a, x) < 0.9
    assert abs(linear_cka(x @ a, y) - base) > 0.05


def test_cka_of_independent_features_is_small():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 8, generator=g, dtype=torch.float64)
    y = torch.randn(500, 8, generator=g, dtype=torch.float64)
    assert linear_cka(x, y) < 0.1


# --------------------------------------------------------------------------- input validation

@pytest.mark.parametrize("call,match", [
    (lambda: accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long)),
     r"logits must have shape \(N, C\), got \(3,\)"),
    (lambda: nll(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long)), r"labels must have shape \(3,\)"),
    (lambda: nll(torch.zeros(3, 4), torch.zeros(3, 1, dtype=torch.long)), "labels must have shape"),
    (lambda: nll(torch.zeros(3, 4), torch.zeros(3)), "labels must be an integer"),
    (lambda: nll(torch.zeros(3, 4), torch.tensor([0, 1, 4])), r"labels must lie in \[0, 3\]"),
    (lambda: ece(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), n_bins=0), "n_bins"),
    (lambda: ece(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), n_bins=2.5), "n_bins"),
    (lambda: ece(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), "logits must hold at least"),
    (lambda: agreement(torch.zeros(3, 4), torch.zeros(3, 5)), "teacher_logits and student_logits"),
    (lambda: kl(torch.zeros(3, 4, 1), torch.zeros(3, 4)), "teacher_logits must have shape"),
    (lambda: kl(torch.zeros(3, 4), torch.zeros(4)), "student_logits must have shape"),
    (lambda: symmetric_kl(torch.zeros(3, 4), torch.zeros(2, 4)), "a_logits and b_logits"),
    (lambda: linear_cka(torch.zeros(5, 2), torch.zeros(4, 2)), "same number of examples"),
    (lambda: linear_cka(torch.zeros(5), torch.zeros(5, 2)), "x must have shape"),
    (lambda: linear_cka(torch.randn(1, 3), torch.randn(1, 3)), "at least 2 examples"),
    (lambda: linear_cka(torch.randn(4, 3), torch.ones(4, 3)), "y is constant"),
])
def test_bad_input_raises_value_error_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
