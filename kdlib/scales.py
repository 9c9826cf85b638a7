"""Named scales: how much data and how many epochs each experiment uses (protocol §4, §7).

Defined here once; notebooks, tests and benchmarks pick one by name. `get_scale(name, seed_base)`
also picks the draw of seeds: every run's seed is `SEED_STRIDE * seed_base + local seed`
(kdlib.plans.run_seed), so base 0 is the report's usual runs and each other base a fresh,
disjoint set of them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdlib.checks import check_int, check_seed_base
from kdlib.config import Recipe
from kdlib.data import DataSpec

# run seeds are SEED_STRIDE * seed_base + local seed, every local seed below SEED_STRIDE: two draws
# (seed bases) never share a seed
SEED_STRIDE = 100_000


@dataclass(frozen=True)
class Scale:
    """A consistent reduction of the protocol."""

    name: str
    description: str            # one line for the report
    train_per_class: int | None  # training images per class (None = all 500)
    test_per_class: int | None   # test images per class (None = all 100)
    teacher: Recipe              # teachers' recipe
    student: Recipe              # students' recipe
    n_teachers: int              # size of the teacher pool (ensembles use the first m)
    num_classes: int | None = None  # the first this many CIFAR-100 classes (None = all 100)
    # Experiment grids (protocol §6); smaller scales run fewer, cheaper points.
    self_distill_students: int = 3             # E1: students of teacher 0 (seeds 0..k-1)
    seeds: int = 2                              # students per setting a claim compares (E2, E4-E6)
    ensemble_sizes: tuple[int, ...] = (1, 3, 5)  # E2: ensembles of the first m teachers
    lambdas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.375, 0.4, 0.5, 0.75, 1.0)  # E3
    lambda_norms: tuple[str, ...] = ("layer", "batch")  # E3: the paper's model and the study's
    lambda_seeds: int = 2                       # E3: students per lambda below 1 (one at lambda = 1)
    # E3's LayerNorm model fits more slowly than the BatchNorm one: its own recipes, if any
    layer_teacher: Recipe | None = None
    layer_student: Recipe | None = None
    taus: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # E5 temperatures (plus tau 4 with MixUp)
    long_factor: int = 2                        # E6: the long SGD run trains this many times longer
    # Beyond the paper (protocol §9): B1's label weights besides 0 and B3's class counts besides the
    # scale's own; the largest alpha and the fewest classes are judged (E1's seeds), the other grid
    # points shown with `shown_seeds` students each (None: `seeds`)
    alphas: tuple[float, ...] = (0.1, 0.5, 0.9)
    class_counts: tuple[int, ...] = (5, 10, 20, 50)
    shown_seeds: int | None = None
    adam_lr: float = 5e-3                       # E6: Adam's learning rate (the study's choice)
    # students' teacher logits (kdlib.logit_cache.use_logit_cache): "shared" where the students of
    # each teacher set together train long enough for one stored cache to pay
    logit_cache: str = "auto"
    # The paper scale's chapters (protocol §10): the authors' networks are evaluated on this many test
    # images per class (None: all 100, the set their logs were measured on); the straight lines between
    # networks have `landscape_points` points, each evaluated on `landscape_images` test images (and
    # its BatchNorm statistics re-estimated on as many training images). Smaller at the tiny scale only.
    authors_test_per_class: int | None = None
    landscape_points: int = 7
    landscape_images: int = 1000
    # which draw of seeds the plans use: run seeds are SEED_STRIDE * seed_base + local seed
    # (kdlib.plans.run_seed); 0 = the report's usual seeds
    seed_base: int = 0

    def __post_init__(self):
        check_seed_base(self.seed_base)
        own = self.num_classes or 100
        if any(not (isinstance(k, int) and 2 <= k < own) for k in self.class_counts):
            raise ValueError(f"class_counts must be ints in [2, {own}) (fewer than the scale's own {own} classes), "
                             f"got {self.class_counts}")
        check_int("authors_test_per_class", self.authors_test_per_class, 1, 100, allow_none=True)
        check_int("landscape_points", self.landscape_points, 2)
        check_int("landscape_images", self.landscape_images, 2)
        if any(not 0 < a <= 1 for a in self.alphas):
            raise ValueError(f"alphas must lie in (0, 1] (alpha 0 is E1's students), got {self.alphas}")

    def data_spec(self, source: str = "torchvision") -> DataSpec:
        return DataSpec(source=source, train_per_class=self.train_per_class, test_per_class=self.test_per_class,
                        num_classes=self.num_classes)

    def landscape(self) -> tuple[tuple[float, ...], int]:
        """The points t of a straight line between two networks, and its images (kdlib.landscape)."""
        return tuple(float(t) for t in np.linspace(0.0, 1.0, self.landscape_points)), self.landscape_images

    def grid_seeds(self) -> int:
        """Students at a grid point that is shown but not judged (B1, B3)."""
        return self.seeds if self.shown_seeds is None else self.shown_seeds

    def teacher_recipe(self, norm: str = "batch") -> Recipe:
        return self.layer_teacher if norm == "layer" and self.layer_teacher is not None else self.teacher

    def student_recipe(self, norm: str = "batch") -> Recipe:
        return self.layer_student if norm == "layer" and self.layer_student is not None else self.student


SCALES = {
    "paper": Scale(
        name="paper",
        description="the full protocol: 50,000 training images, 200 teacher / 300 student epochs",
        train_per_class=None, test_per_class=None,
        teacher=Recipe(epochs=200, batch_size=256, lr=0.1, lr_min=0.0, eval_every=10),
        student=Recipe(epochs=300, batch_size=128, lr=0.05, lr_min=1e-6, eval_every=10),
        n_teachers=5, seeds=3,
    ),
    # Chosen by measurement (docs/scale-probes.md, the appendix's probe table): the paper's regime
    # (teachers fit their training set, students' agreement levels off) at a CPU cost.
    "reduced": Scale(
        name="reduced",
        description=("a CPU-sized reduction: the first 20 classes, 40 training and all 100 test images each; "
                     "teachers 60 epochs (LayerNorm 90), students 90, at batch 64"),
        num_classes=20, train_per_class=40, test_per_class=None,
        teacher=Recipe(epochs=60, batch_size=64, lr=0.1, lr_min=0.0, eval_every=12),
        student=Recipe(epochs=90, batch_size=64, lr=0.05, lr_min=1e-6, eval_every=18),
        # the LayerNorm model fits its training set only with more epochs (70 % at 60, 91-95 % at 90)
        layer_teacher=Recipe(epochs=90, batch_size=64, lr=0.1, lr_min=0.0, eval_every=18),
        n_teachers=3, self_distill_students=3, seeds=3, ensemble_sizes=(1, 3),
        lambdas=(0.0, 0.2, 0.25, 0.3, 0.375, 0.5, 1.0), lambda_norms=("layer",),
        taus=(1.0, 4.0), logit_cache="shared", alphas=(0.5, 0.9), class_counts=(5, 10), shown_seeds=1,
    ),
    "tiny": Scale(
        name="tiny",
        description="a smoke test: 5 training and 2 test images per class, 2 epochs",
        train_per_class=5, test_per_class=2,
        teacher=Recipe(epochs=2, batch_size=50, lr=0.1, lr_min=0.0, eval_every=1),
        student=Recipe(epochs=2, batch_size=50, lr=0.05, lr_min=1e-6, eval_every=1),
        n_teachers=2, self_distill_students=2, seeds=1, lambda_seeds=1, ensemble_sizes=(1, 2),
        lambdas=(0.0, 1.0), taus=(1.0, 4.0), alphas=(0.5,), class_counts=(10,), shown_seeds=1,
        authors_test_per_class=5, landscape_points=3, landscape_images=200,
    ),
}


def get_scale(name: str, seed_base: int = 0) -> Scale:
    """The named scale, with its plans' seeds drawn from `seed_base` (0: the usual seeds); an unknown
    name raises a ValueError listing the known ones, a bad seed_base one saying what it may be."""
    if name not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {name!r}")
    return dataclasses.replace(SCALES[name], seed_base=check_seed_base(seed_base))


def probe_table(path) -> str:
    """The candidate scales measured by `python -m benchmarks.probe_scales --json PATH`, as a
    Markdown table (the evidence behind the reduced scale; docs/scale-probes.json)."""
    record = json.loads(Path(path).read_text())
    return probe_rows_markdown(record["rows"]) + (
        f"\n\nMeasured on {record['machine']['cpu']} with {record['machine']['threads']} torch threads, "
        f"torch {record['machine']['torch']}." if "machine" in record else "")


def probe_rows_markdown(rows: list[dict]) -> str:
    head = ("| candidate | classes, train / test images | epochs x batch (steps) | teachers: train / test acc (%) | "
            "student test acc (%) | agreement (%): test / train-aug / other teacher | teacher-teacher (%) | "
            "rise over the last fifth (points) | seconds per teacher, student |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        epochs = f"{r['epochs']}" + (f" (students {r['student_epochs']})" if r["student_epochs"] != r["epochs"] else "")
        out.append(
            f"| {r['name']} ({r['norm']}norm) | {r['classes']}, {r['train_images']:,} / {r['test_images']:,} "
            f"| {epochs} x {r['batch']} ({r['steps']:,}) "
            f"| {' / '.join(f'{a:.1f}' for a in r['teacher_train_acc'])} / "
            f"{' / '.join(f'{a:.1f}' for a in r['teacher_test_acc'])} | {r['student_test_acc']:.1f} "
            f"| {r['agreement']:.1f} / {r['train_aug_agreement']:.1f} / {r['agreement_other_teacher']:.1f} "
            f"| {r['teacher_teacher']:.1f} | {r['rise_last_fifth']:+.1f} "
            f"| {sum(r['teacher_seconds']) / len(r['teacher_seconds']):.0f}, {r['student_seconds']:.0f} |")
    return "\n".join(out)
