"""Evaluation metrics (protocol §5).

Every function takes tensors for the *whole* evaluation set and returns a Python float, so a
reported number is never a mean of per-batch means. Probabilities are at temperature 1. All
arithmetic is done in float64 on the inputs' device: the inputs may be float32 or bf16, and
KL / CKA on a 10k-example test set lose digits in float32.
"""

import math

import torch
import torch.nn.functional as F
from scipy import optimize

__all__ = ["accuracy", "nll", "ece", "ece_of", "reliability", "agreement", "kl", "kl_per_example", "symmetric_kl", "linear_cka"]


# --------------------------------------------------------------------------- input checks

def _check_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"{name} must have shape (N, C), got {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example, got shape {tuple(logits.shape)}")


def _check_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    _check_logits("logits", logits)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    n, c = logits.shape
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match logits {tuple(logits.shape)}, "
                         f"got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of class indices, got {labels.dtype}")
    labels = labels.to(device=logits.device, dtype=torch.long)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= c:
        raise ValueError(f"labels must lie in [0, {c - 1}] for {c} classes, got range [{lo}, {hi}]")
    return labels


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    _check_logits(name_a, a)
    _check_logits(name_b, b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape (N, C), "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")


# --------------------------------------------------------------------------- against labels

def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction in [0, 1] (protocol §5). logits (N, C), labels (N,)."""
    labels = _check_labels(logits, labels)
    return (logits.argmax(dim=1) == labels).double().mean().item()


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood, mean_i -log p(y_i | x_i), in nats (protocol §5).

    Protocol §5 fix: the original code took `log_probs[:, labels]`, an (N, N) matrix whose mean is
    dominated by the wrong classes (it read ~20); gather picks one entry per example.
    """
    labels = _check_labels(logits, labels)
    log_probs = F.log_softmax(logits.double(), dim=1)  # (N, C)
    return -log_probs.gather(1, labels[:, None]).mean().item()


def reliability(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 10) -> dict[str, torch.Tensor]:
    """Per confidence bin: how many examples, the sum of their max probabilities and of their
    correctness, float64 (n_bins,) each (a reliability diagram plots sums / count; protocol §5).

    Equal-width bins over the max probability, each bin (lo, hi]: a confidence exactly 0.1 lands
    in the first bin, as in Guo et al. (2017).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    labels = _check_labels(logits, labels)
    conf, pred = F.softmax(logits.double(), dim=1).max(dim=1)  # (N,), (N,)
    correct = (pred == labels).double()
    # Inner edges i/n_bins, each the correctly rounded float; bucketize with right=False returns
    # i such that edge[i-1] < conf <= edge[i], which is the (lo, hi] convention.
    edges = torch.arange(1, n_bins, dtype=torch.float64, device=conf.device) / n_bins
    bins = torch.bucketize(conf, edges, right=False)  # (N,) in [0, n_bins - 1]
    return {"count": torch.bincount(bins, minlength=n_bins).double(),
            "confidence": torch.bincount(bins, weights=conf, minlength=n_bins),
            "correct": torch.bincount(bins, weights=correct, minlength=n_bins)}


def ece(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 10) -> float:
    """Expected calibration error, sum_b n_b/N |acc_b - conf_b| over `reliability`'s bins (protocol §5)."""
    return ece_of(reliability(logits, labels, n_bins))


def ece_of(bins: dict[str, torch.Tensor]) -> float:
    """The ECE of `reliability`'s bins."""
    # n_b/N * |acc_b - conf_b| = |sum_acc_b - sum_conf_b| / N; empty bins contribute 0.
    return ((bins["correct"] - bins["confidence"]).abs().sum() / bins["count"].sum()).item()


# --------------------------------------------------------------------------- teacher vs student

def best_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T that minimises the mean NLL of softmax(logits / T) on these images (a bounded
    one-dimensional search over log T in [log 0.05, log 20]): post-hoc temperature scaling."""
    z, y = logits.double(), _check_labels(logits, labels)

    def mean_nll(log_t: float) -> float:
        return F.cross_entropy(z / math.exp(log_t), y).item()

    found = optimize.minimize_scalar(mean_nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                                     options={"xatol": 1e-6})
    return float(math.exp(found.x))


def calibration_gap(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) float64: per image, its NLL at temperature 1 minus its NLL at the best temperature for
    these images (`best_temperature`). Their mean is the calibration part of the NLL, a proper scoring
    rule's: what temperature scaling would remove (0 for a network calibrated up to a temperature).
    Unlike the binned ECE it is a mean of per-image values, so its noise over images is counted like
    any other's, and its bias is O(1/N) (one fitted number), not ECE's O(sqrt(bins / N)) floor."""
    y = _check_labels(logits, labels)
    t = best_temperature(logits, y)
    z = logits.double()
    return F.cross_entropy(z, y, reduction="none") - F.cross_entropy(z / t, y, reduction="none")


def agreement(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """Top-1 agreement, mean_i [argmax p_t == argmax p_s], a fraction in [0, 1] (protocol §5)."""
    _check_pair("teacher_logits", teacher_logits, "student_logits", student_logits)
    student_logits = student_logits.to(teacher_logits.device)
    return (teacher_logits.argmax(dim=1) == student_logits.argmax(dim=1)).double().mean().item()


def _kl_per_example(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits_p.double(), dim=1)  # (N, C)
    log_q = F.log_softmax(logits_q.to(logits_p.device).double(), dim=1)
    p = log_p.exp()
    # 0 * log 0 = 0: classes with p = 0 (a -inf logit) would otherwise give 0 * (-inf) = nan.
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=1)  # (N,)


def kl_per_example(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_t || p_s) of each example in nats, float64 (N,): what `kl` averages (the claims read it image
    by image, kdlib.stats)."""
    _check_pair("teacher_logits", teacher_logits, "student_logits", student_logits)
    return _kl_per_example(teacher_logits, student_logits)


def kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """Predictive KL, mean_i KL(p_t || p_s) in nats, teacher first (protocol §5)."""
    return kl_per_example(teacher_logits, student_logits).mean().item()


def symmetric_kl(a_logits: torch.Tensor, b_logits: torch.Tensor) -> float:
    """Symmetric KL, 0.5 * (KL(a||b) + KL(b||a)), for pairs without a teacher (protocol §5)."""
    _check_pair("a_logits", a_logits, "b_logits", b_logits)
    both = _kl_per_example(a_logits, b_logits) + _kl_per_example(b_logits, a_logits)
    return 0.5 * both.mean().item()


# --------------------------------------------------------------------------- representations

def _cka_features(xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
    # Kornblith et al. (2019) eq. 5 on centred features: O(n d^2), cheap when d <= n.
    num = (yc.T @ xc).square().sum()
    return num / (torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc))


def _cka_gram(xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
    # Same quantity through n x n Gram matrices, O(n^2 d), cheap when d > n. Xc Xc^T already
    # equals H K H because the columns are centred, so no centring matrix is needed.
    k, l = xc @ xc.T, yc @ yc.T  # (n, n)
    return (k * l).sum() / (torch.linalg.norm(k) * torch.linalg.norm(l))


def centred_gram(x: torch.Tensor) -> torch.Tensor:
    """(n, n) float64: the Gram matrix of n examples (x (n, ...) flattened per example) with every
    feature centred, H K H of Kornblith et al. (2019). `cka_of_grams` of two of them is `linear_cka`:
    one Gram per network serves every pair it is part of."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a tensor of shape (n, ...) with n >= 2, got {getattr(x, 'shape', x)}")
    xc = x.reshape(x.shape[0], -1).double()
    xc = xc - xc.mean(dim=0)
    if not bool(xc.abs().max() > 0):
        raise ValueError("x is constant across examples; CKA is undefined")
    return xc @ xc.T


def cka_of_grams(k: torch.Tensor, l: torch.Tensor) -> float:
    """Linear CKA from two centred Gram matrices of the same examples (`centred_gram`)."""
    if k.shape != l.shape or k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k and l must be Gram matrices of the same n examples, got {tuple(k.shape)} and "
                         f"{tuple(l.shape)}")
    return ((k * l).sum() / (torch.linalg.norm(k) * torch.linalg.norm(l))).item()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between two representations of the same n examples (protocol §5).

    x (n, ...) and y (n, ...) are flattened per example to (n, d1), (n, d2). Result in [0, 1];
    invariant to orthogonal maps and isotropic scaling of either side, not to general linear maps.
    Protocol §5 fix: the original code used an RBF kernel per batch of 128 and compared spatial columns,
    not examples.
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (n, d) or (n, ...), got {tuple(t.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of examples, "
                         f"got {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x and y need at least 2 examples for CKA, got {n}")
    x = x.reshape(n, -1).double()  # (n, d1)
    y = y.reshape(n, -1).to(x.device).double()  # (n, d2)
    xc, yc = x - x.mean(dim=0), y - y.mean(dim=0)
    for name, t in (("x", xc), ("y", yc)):
        if not bool(t.abs().max() > 0):
            raise ValueError(f"{name} is constant across examples; CKA is undefined")
    path = _cka_gram if max(xc.shape[1], yc.shape[1]) > n else _cka_features
    return path(xc, yc).item()
