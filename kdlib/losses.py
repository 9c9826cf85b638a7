"""The training objective (labels for teachers, distillation for students) and ensemble teachers (protocol §3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from kdlib.checks import check_tau, check_unit_interval
from kdlib.models import architecture


def label_loss(logits: torch.Tensor, labels: torch.Tensor, mix: tuple | None = None) -> torch.Tensor:
    """Cross-entropy with the labels, in fp32; under MixUp (`mix` = (partner index, weight lam)) the
    mixed image's loss is lam * CE(label) + (1 - lam) * CE(partner's label) (protocol §3)."""
    logits = logits.float()
    if mix is None:
        return F.cross_entropy(logits, labels)
    pair, lam = mix
    return lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[pair])


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
            tau: float = 4.0, alpha: float = 0.0, mix: tuple | None = None) -> torch.Tensor:
    """Hinton et al.'s objective (protocol §3, the study's Eq. 1-2):

        alpha * CE(z_s, y) + (1 - alpha) * tau^2 * mean_b( -sum_j softmax(z_t/tau)_j log_softmax(z_s/tau)_j )

    The tau^2 factor keeps the soft term's gradient magnitude independent of tau. The soft
    term is the cross-entropy, so its gradient equals that of KL(p_t || p_s); teacher logits
    are treated as constants (under MixUp they are the teacher's prediction on the mixed image, and
    the label term follows `label_loss`). `labels` may be None when alpha == 0.
    """
    tau = check_tau(tau)
    alpha = check_unit_interval("alpha", alpha)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits and teacher_logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    teacher_probs = F.softmax(teacher_logits.detach().float() / tau, dim=-1)
    student_logp = F.log_softmax(student_logits.float() / tau, dim=-1)
    soft = -(teacher_probs * student_logp).sum(dim=-1).mean() * tau**2
    if alpha == 0.0:
        return soft
    if labels is None:
        raise ValueError("labels are required when alpha > 0")
    return alpha * label_loss(student_logits, labels, mix) + (1 - alpha) * soft


def objective(spec, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None,
              mix: tuple | None = None) -> torch.Tensor:
    """The loss a run trains on (protocol §3): the labels' cross-entropy for a teacher; for a student
    (spec.kind "student"), `kd_loss` with its temperature and alpha, against `teacher_logits` on exactly
    the images it sees. The one function training calls."""
    if spec.kind == "teacher":
        return label_loss(logits, labels, mix)
    if teacher_logits is None:
        raise ValueError("a student's objective needs the teacher's logits on the same images")
    return kd_loss(logits, teacher_logits, labels, tau=spec.tau, alpha=spec.alpha, mix=mix)


def ensemble_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits of the averaged predictive distribution, log(mean_i softmax(z_i)) (protocol §3).

    logits: (members, batch, classes) -> (batch, classes). Computed as
    logsumexp_i log_softmax(z_i) - log m, which never exponentiates large logits.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (members, batch, classes), got {tuple(logits.shape)}")
    m = logits.shape[0]
    return torch.logsumexp(F.log_softmax(logits.float(), dim=-1), dim=0) - torch.log(
        torch.tensor(float(m), device=logits.device))


class Teacher(nn.Module):
    """A frozen teacher: one model or an ensemble, always in eval mode.

    Eval mode is part of the construction, not a side effect: `train()` cannot switch it
    back (the original code relied on the caller to call `.eval()`), its parameters need no
    gradient, and `forward` runs under `no_grad`. Returns ensemble logits (B, C):
    log(mean_i softmax(z_i)), the member's log-softmax when there is one member.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("members must hold at least one teacher model")
        first = architecture(members[0])
        for i, m in enumerate(members[1:], start=1):
            if architecture(m) != first:
                raise ValueError(f"members must share one architecture; member {i} differs from member 0 "
                                 f"(norm {getattr(m, 'norm', '?')!r} vs {getattr(members[0], 'norm', '?')!r})")
        self.members = nn.ModuleList(members)
        for p in self.members.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)

    @torch.no_grad()
    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])  # (members, B, C)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ensemble_logits(self.member_logits(x))  # log-probabilities, also for one member
