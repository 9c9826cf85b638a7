"""Probe candidate CPU scales: is a scale in the paper's regime, and what does it cost?

    python -m benchmarks.probe_scales --data ../shared/data/cifar100-lossless.npz [--only NAME ...]
                                      [--json docs/scale-probes.json]

For each candidate (the number of classes and images per class, epochs, batch size, normalisation)
it trains, with kdlib as the report does (`get_run`, precision "auto"), two teachers (seeds 0 and 1)
and one student of teacher 0, and records what decides whether the paper's claims can be tested
there: the teachers' accuracy on their clean training set (the paper's regime: >= 90 %) and test
set, the student's accuracy and agreement with its teacher (test, and augmented train), its
agreement with the teacher it never saw, teacher-teacher agreement, how much the student's test
agreement still rose over the last fifth of training (levelled off: < 1 point), and the seconds
each run took (train + final evaluation). Runs are cached under $KDLIB_HOME/probes/, so a rerun
only re-reads them; time the candidates one at a time on a quiet machine.

The table it prints (and --json writes) is the evidence behind the `reduced` scale's choice
(docs/scale-probes.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import publish, splice
from kdlib import data as kdata
from kdlib import metrics
from kdlib.cache import RunCache
from kdlib.claims import rise_over_last_fifth
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.files import kdlib_home
from kdlib.scales import probe_rows_markdown
from kdlib.execute import get_run


@dataclass(frozen=True)
class Candidate:
    name: str
    classes: int            # the first this many CIFAR-100 classes
    train_per_class: int
    test_per_class: int | None
    epochs: int             # teachers and students alike
    batch: int
    norm: str = "batch"
    teacher_lr: float = 0.1
    student_lr: float = 0.05
    student_epochs: int | None = None  # default: epochs

    def recipes(self) -> tuple[Recipe, Recipe]:
        every = max(1, self.epochs // 10)
        s_epochs = self.student_epochs or self.epochs
        teacher = Recipe(epochs=self.epochs, batch_size=self.batch, lr=self.teacher_lr, eval_every=every)
        student = Recipe(epochs=s_epochs, batch_size=self.batch, lr=self.student_lr, lr_min=1e-6,
                         eval_every=max(1, s_epochs // 10))
        return teacher, student


CANDIDATES = [  # in the order they were measured; the reduced scale is c20-n50-e60-b64-s90 (+ the LayerNorm e90)
    Candidate("c20-n50-e40-b32", 20, 50, None, 40, 32),
    Candidate("c20-n100-e40-b64", 20, 100, None, 40, 64),
    Candidate("c20-n50-e40-b32-lr.05", 20, 50, None, 40, 32, teacher_lr=0.05, student_lr=0.025),
    Candidate("c20-n50-e60-b64", 20, 50, None, 60, 64),
    Candidate("c20-n50-e80-b32", 20, 50, None, 80, 32),
    Candidate("c20-n50-e60-b64-s90", 20, 50, None, 60, 64, student_epochs=90),
    Candidate("c20-n50-e60-b64-s120", 20, 50, None, 60, 64, student_epochs=120),
    Candidate("c20-n50-e60-b64-layer", 20, 50, None, 60, 64, norm="layer"),
    Candidate("c20-n50-e50-b64", 20, 50, None, 50, 64),
    Candidate("c20-n50-e90-b64-layer", 20, 50, None, 90, 64, norm="layer"),
    Candidate("c20-n40-e60-b64-s90", 20, 40, None, 60, 64, student_epochs=90),
    Candidate("c20-n40-e90-b64-layer", 20, 40, None, 90, 64, norm="layer"),
]


DOC_START, DOC_END = "<!-- probes:", "<!-- /probes -->"  # the table's place in --doc


def seconds(run) -> float:
    return run.info["train_seconds"] + run.info["eval_seconds"]


def probe(c: Candidate, source: str, cache: RunCache) -> dict:
    ds = kdata.load(kdata.DataSpec(source=source, num_classes=c.classes, train_per_class=c.train_per_class,
                                   test_per_class=c.test_per_class))
    t_recipe, s_recipe = c.recipes()
    teachers = [get_run(TeacherSpec(recipe=t_recipe, seed=i, norm=c.norm), ds, cache) for i in (0, 1)]
    student = get_run(StudentSpec(recipe=s_recipe, teachers=(teachers[0].spec,), norm=c.norm), ds, cache)
    m = student.metrics
    return {
        "name": c.name, "classes": c.classes, "train_images": len(ds.train), "test_images": len(ds.test),
        "epochs": c.epochs, "student_epochs": s_recipe.epochs, "batch": c.batch, "norm": c.norm,
        "teacher_lr": c.teacher_lr, "student_lr": c.student_lr,
        "steps": t_recipe.epochs * (len(ds.train) // c.batch),
        "teacher_train_acc": [100 * t.metrics["train_acc"] for t in teachers],
        "teacher_test_acc": [100 * t.metrics["test_acc"] for t in teachers],
        "student_test_acc": 100 * m["test_acc"], "agreement": 100 * m["test_agreement"],
        "train_aug_agreement": 100 * m["train_aug_agreement"],
        "agreement_other_teacher": 100 * metrics.agreement(teachers[1].test_logits(), student.test_logits()),
        "teacher_teacher": 100 * metrics.agreement(teachers[0].test_logits(), teachers[1].test_logits()),
        "rise_last_fifth": rise_over_last_fifth(student),
        "teacher_seconds": [round(seconds(t), 1) for t in teachers], "student_seconds": round(seconds(student), 1),
        "precision": student.info["precision"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_scales", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=kdata.default_source(),
                        help="CIFAR-100 source (default: kdlib.data.default_source(): $KDLIB_DATA, else "
                             "../shared/data/cifar100-lossless.npz if it exists, else torchvision)")
    parser.add_argument("--only", nargs="+", choices=[c.name for c in CANDIDATES], help="probe only these")
    parser.add_argument("--json", type=Path, help="write the rows (and the machine) here")
    parser.add_argument("--doc", type=Path, help="rewrite the table between the probes markers of this Markdown file")
    args = parser.parse_args(argv)
    cache = RunCache(kdlib_home() / "probes")
    rows = []
    for c in CANDIDATES:
        if args.only and c.name not in args.only:
            continue
        t0 = time.perf_counter()
        rows.append(probe(c, args.data, cache))
        print(f"{c.name}: {time.perf_counter() - t0:.0f} s wall\n{json.dumps(rows[-1])}", flush=True)
    print(probe_rows_markdown(rows))
    record = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__}, "rows": rows}
    publish(record, args.json)  # stamped with kdlib's version and commit
    if args.doc:
        args.doc.write_text(splice(args.doc.read_text(), DOC_START, DOC_END, probe_rows_markdown(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
