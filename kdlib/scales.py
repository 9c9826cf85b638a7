"""Named scales: how much data and how many epochs each experiment uses (SPEC §4, §7).

Defined here once; notebooks, tests and benchmarks pick one by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdlib.config import Recipe
from kdlib.data import DataSpec


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
    # Experiment grids (SPEC §6); smaller scales run fewer, cheaper points.
    self_distill_students: int = 3             # E1: students of teacher 0 (seeds 0..k-1)
    ensemble_sizes: tuple[int, ...] = (1, 3, 5)  # E2: ensembles of the first m teachers
    lambdas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.375, 0.4, 0.5, 0.75, 1.0)  # E3
    lambda_norms: tuple[str, ...] = ("layer", "batch")  # E3: the paper's model and the study's
    taus: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # E5 temperatures (plus tau 4 with MixUp)
    long_factor: int = 2                        # E6: the long SGD run trains this many times longer
    adam_lr: float = 5e-3                       # E6: Adam's learning rate (the study's choice)

    def data_spec(self, source: str = "torchvision") -> DataSpec:
        return DataSpec(source=source, train_per_class=self.train_per_class, test_per_class=self.test_per_class)


SCALES = {
    "paper": Scale(
        name="paper",
        description="the full protocol: 50,000 training images, 200 teacher / 300 student epochs",
        train_per_class=None, test_per_class=None,
        teacher=Recipe(epochs=200, batch_size=256, lr=0.1, lr_min=0.0, eval_every=10),
        student=Recipe(epochs=300, batch_size=128, lr=0.05, lr_min=1e-6, eval_every=10),
        n_teachers=5,
    ),
    "reduced": Scale(
        name="reduced",
        description="a CPU-sized reduction: 50 training and 20 test images per class, 8 epochs at batch 64",
        train_per_class=50, test_per_class=20,
        teacher=Recipe(epochs=8, batch_size=64, lr=0.1, lr_min=0.0, eval_every=2),
        student=Recipe(epochs=8, batch_size=64, lr=0.05, lr_min=1e-6, eval_every=2),
        n_teachers=3, self_distill_students=2, ensemble_sizes=(1, 3),
        lambdas=(0.0, 0.25, 0.5, 1.0), lambda_norms=("layer",), taus=(1.0, 4.0, 8.0),
    ),
    "tiny": Scale(
        name="tiny",
        description="a smoke test: 5 training and 2 test images per class, 2 epochs",
        train_per_class=5, test_per_class=2,
        teacher=Recipe(epochs=2, batch_size=50, lr=0.1, lr_min=0.0, eval_every=1),
        student=Recipe(epochs=2, batch_size=50, lr=0.05, lr_min=1e-6, eval_every=1),
        n_teachers=2, self_distill_students=2, ensemble_sizes=(1, 2),
        lambdas=(0.0, 1.0), taus=(1.0, 4.0),
    ),
}


def get_scale(name: str) -> Scale:
    """The named scale; an unknown name raises a ValueError listing the known ones."""
    if name not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {name!r}")
    return SCALES[name]
