"""The paper scale without a GPU: what the original authors' networks show (protocol §10).

`open_paper_scale(dataset)` evaluates the 18 networks of kdlib.authors on the full CIFAR-100 test set
(cached) and gives a `PaperScale`: the runs by role, ensemble size and trial, each student with its
own teachers. The measures the chapters and `python -m kdlib.authors` report are functions of it:
the teachers' pairs (E0), the students' agreement with their own and unseen teachers (E0, E1, E2),
the test images counted by who agrees (E1, B6), stage-wise CKA (E4's measure), calibration (B5's
question), and the straight line between a student and its teacher beside the line between two
teachers (kdlib.landscape). The claims read it through the study's table (kdlib.study).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kdlib import authors, landscape, metrics
from kdlib import data as kdata
from kdlib.authors import NETWORKS, AuthorsRun, Network
from kdlib.device import resolve_device
from kdlib.evaluate import cka_indices, stage_features
from kdlib.experiments import agreement_partition, pairwise
from kdlib.losses import ensemble_logits
from kdlib.train import TrainSet



@dataclass
class PaperScale:
    """The authors' networks, evaluated on `dataset` (all of CIFAR-100)."""

    runs: dict[Network, AuthorsRun]
    dataset: kdata.Dataset
    device: str = "auto"

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.test.y.numpy()

    def teachers(self, ensemble: int | None = None) -> list[AuthorsRun]:
        """Every teacher (12, independently trained), or those of the runs of one ensemble size."""
        return [self.runs[n] for n in NETWORKS if n.role == "teacher" and ensemble in (None, n.ensemble)]

    def students(self, ensemble: int | None = None) -> list[AuthorsRun]:
        """Every student (6), or those of one ensemble size (m = 1: self-distillation)."""
        return [self.runs[n] for n in NETWORKS if n.role == "student" and ensemble in (None, n.ensemble)]

    def own(self, student: AuthorsRun) -> list[AuthorsRun]:
        """The teachers a student learned from (its run's m teachers)."""
        return [self.runs[t] for t in student.network.teachers]

    def own_teachers(self, ensemble: int) -> list:
        """For each student of size `ensemble`, its own teacher (m = 1) or its ensemble's members."""
        return [self.own(s)[0] if ensemble == 1 else self.own(s) for s in self.students(ensemble)]

    def ensemble_logits(self, student: AuthorsRun) -> torch.Tensor:
        return ensemble_logits(torch.stack([t.test_logits() for t in self.own(student)]))


def open_paper_scale(dataset: kdata.Dataset, device: str = "auto", progress: bool = True) -> PaperScale:
    """The authors' networks evaluated on `dataset`, which must hold all 100 classes (its test set
    whole for numbers comparable with theirs)."""
    return PaperScale(authors.load(dataset, device=device, progress=progress), dataset, device)


# ---------------------------------------------------------------------------------------------
# The networks, against their logs and the published numbers

def network_table(ps: PaperScale) -> list[dict]:
    """One row per network: who it is, our test accuracy, NLL and ECE, and its logged test accuracy."""
    return [{"network": r.network.name, "role": r.network.role, "ensemble": r.network.ensemble,
             "trial": r.network.trial, "member": r.network.member, "sha256": r.network.sha256,
             "test_acc": r.metrics["test_acc"], "logged_test_acc": r.metrics["logged_test_acc"],
             "test_nll": r.metrics["test_nll"], "test_ece": r.metrics["test_ece"],
             **({"teacher_test_acc": r.metrics["teacher_test_acc"],
                 "logged_teacher_test_acc": r.metrics["logged_teacher_test_acc"]} if r.network.role == "student"
                else {})}
            for r in (ps.runs[n] for n in NETWORKS)]


# ---------------------------------------------------------------------------------------------
# Agreement: teacher pairs, students against their own and unseen teachers

def teacher_pairs(ps: PaperScale) -> list[dict]:
    """Test agreement and symmetric KL for each of the 66 pairs of the 12 independent teachers."""
    return pairwise(ps.teachers())


def student_agreement(ps: PaperScale) -> list[dict]:
    """Per student: agreement and KL with its own (ensemble) teacher, and its mean agreement with the
    teachers it never saw (the paper's baseline; all 12 teachers but its own)."""
    rows = []
    for s in ps.students():
        own = ps.ensemble_logits(s)
        unseen = [t for t in ps.teachers() if all(t is not o for o in ps.own(s))]
        rows.append({"student": s.network.name, "ensemble": s.network.ensemble, "trial": s.network.trial,
                     "agreement": metrics.agreement(own, s.test_logits()), "kl": metrics.kl(own, s.test_logits()),
                     "unseen_agreement": float(np.mean([metrics.agreement(t.test_logits(), s.test_logits())
                                                        for t in unseen])),
                     "unseen_teachers": len(unseen)})
    return rows


def partition(ps: PaperScale) -> list[dict]:
    """E1's partition of the test images for each self-distilled student: do its teacher and an
    independent teacher (the other m = 1 run's) agree, and does the student agree with its own?"""
    students, teachers = ps.students(1), ps.teachers(1)
    rows = []
    for s, own in zip(students, ps.own_teachers(1)):
        other = next(t for t in teachers if t is not own)
        cells = agreement_partition(own, other, s)
        rows.append({"student": s.network.name, **{f"{a}, {b}": n for (a, b), n in cells.items()}})
    return rows


# ---------------------------------------------------------------------------------------------
# Representations and calibration

def cka(ps: PaperScale) -> list[dict]:
    """Linear CKA at the three stages on the fixed test subset (kdlib.evaluate.cka_indices): each
    self-distilled student with its own teacher and with the other m = 1 teacher (which it never saw),
    and the pairs of independent teachers among the first four (the m = 1 teachers and trial 0's
    m = 2 teachers). Each network's stage features and Gram matrices are computed once."""
    device = resolve_device(ps.device)
    subset = ps.dataset.test.x[cka_indices(len(ps.dataset.test))]
    grams = {}

    def gram(run: AuthorsRun) -> list[torch.Tensor]:
        if run.network not in grams:
            features = stage_features(authors.model(run.network, device=device), subset, device)
            grams[run.network] = [metrics.centred_gram(f) for f in features]
        return grams[run.network]

    def row(kind, a, b):
        return {"pair": kind, "a": a.network.name, "b": b.network.name,
                "cka": [metrics.cka_of_grams(k, l) for k, l in zip(gram(a), gram(b))]}

    teachers = ps.teachers(1)
    rows = []
    for s, own in zip(ps.students(1), ps.own_teachers(1)):
        other = next(t for t in teachers if t is not own)
        rows += [row("student and its own teacher", s, own), row("student and a teacher it never saw", s, other)]
    pool = [*ps.teachers(1), *[ps.runs[n] for n in NETWORKS if n.role == "teacher" and n.ensemble == 2
                               and n.trial == 0]]
    rows += [row("two independent teachers", a, b) for i, a in enumerate(pool) for b in pool[i + 1:]]
    return rows


def calibration(ps: PaperScale) -> list[dict]:
    """Per student, B5's question: the calibration part of its test NLL (the mean of
    kdlib.metrics.calibration_gap, what B5 measures, in nats) and its (ensemble) teacher's; their
    binned ECE beside (the familiar number, biased where it is small); both accuracies."""
    y = ps.dataset.test.y

    def gap(logits):
        return float(metrics.calibration_gap(logits, y).mean())

    return [{"student": s.network.name, "ensemble": s.network.ensemble,
             "student_gap": gap(s.test_logits()), "teacher_gap": gap(ps.ensemble_logits(s)),
             "student_ece": s.metrics["test_ece"], "teacher_ece": metrics.ece(ps.ensemble_logits(s), y),
             "student_acc": s.metrics["test_acc"], "teacher_acc": s.metrics["teacher_test_acc"]}
            for s in ps.students()]


# ---------------------------------------------------------------------------------------------
# The straight line between them

def lines(ps: PaperScale, points: Sequence[float] = landscape.POINTS, images: int = landscape.IMAGES) -> list[dict]:
    """Test loss and agreement along the straight line from each self-distilled student (t = 0) to its
    teacher (t = 1), and between the two m = 1 teachers, at `points`, with BatchNorm statistics
    re-estimated at every point on `images` training images (each in one seeded crop and flip),
    evaluated on `images` test images (both class-balanced subsets: the whole sets are not needed for
    a curve, and subsets keep the report's cold build within its budget). Cached by the networks'
    sha256, the data and the points."""
    device = resolve_device(ps.device)
    test = landscape.every_kth(len(ps.dataset.test), images)
    train = landscape.every_kth(len(ps.dataset.train), images)
    x, y = ps.dataset.test.x[test], ps.dataset.test.y[test]
    bn_data = TrainSet(kdata.Split(ps.dataset.train.x[train], ps.dataset.train.y[train]), device)
    t0, t1 = ps.teachers(1)
    pairs = [("student to its teacher", s, own) for s, own in zip(ps.students(1), ps.own_teachers(1))]
    pairs.append(("teacher to an independent teacher", t0, t1))
    out = []
    for kind, a, b in pairs:
        key = {"a": a.network.sha256, "b": b.network.sha256, "data": ps.dataset.fingerprint,
               "test": [int(test[0]), int(test[-1]), len(test)], "bn": [int(train[0]), int(train[-1]), len(train)],
               "points": [float(t) for t in points], "bn_views": landscape.BN_SEED}
        curve = landscape.cached_line(key, lambda a=a, b=b: landscape.line(
            authors.model(a.network, device=device), authors.model(b.network, device=device), x, y, bn_data, points,
            device))
        out.append({"line": kind, "a": a.network.name, "b": b.network.name, "curve": curve,
                    "barrier": landscape.barrier(curve)})
    return out
