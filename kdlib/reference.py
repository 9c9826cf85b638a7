"""Published numbers our results are compared with (SPEC §6).

`PAPER`: Stanton et al., "Does Knowledge Distillation Really Work?" (NeurIPS 2021), as read
from its text and figures (values marked "~" in the paper are approximate).
`STUDY`: the replication study in shared/seed (Alakbarli, Nuriyev, Petko, Zdrale, 2026;
BatchNorm PreResNet-20, PyTorch 2.10, RTX 4060 Ti).
Accuracies and agreements are percentages, KL in nats. None = not reported.
"""

from __future__ import annotations

PAPER_CITE = "Stanton et al. (2021)"
STUDY_CITE = "the replication study (Alakbarli et al., 2026)"

PAPER = {
    "e0": {"teacher_test_acc": "70.52 ± 0.41 (10 teachers)"},
    "e1": {"teacher_test_acc": "~70.5", "student_test_acc": "~71", "test_agreement": "~72", "test_kl": "~0.7"},
    "e2": {},
    "e3_train_agreement": {0.0: 78.96, 0.25: 80.4, 0.375: 97.55, 0.5: 99.65, 1.0: 100.0},  # LayerNorm, 3 trials
    "e4": {"random": {"test_agreement": 77.17, "test_kl": 0.836, "cka": (0.939, 0.925, 0.885)},
           "teacher_init": {"test_agreement": 77.10, "test_kl": 0.838, "cka": (0.951, 0.937, 0.890)}},
}

STUDY = {
    "e0": {"teacher_test_acc": "65.05 ± 0.27", "teacher_train_acc": "93.74 ± 0.28",
           "pair_agreement": "63.19 ± 0.33", "pair_symmetric_kl": "1.672 ± 0.019"},
    "e1": {"teacher_test_acc": "65.22", "student_test_acc": "68.62 ± 0.17", "test_agreement": "71.36 ± 0.27",
           "test_kl": "0.854 ± 0.005", "split": (6319, 817, 2864)},
    # m -> (teacher acc, student acc, agreement, KL)
    "e2": {1: (65.22, 68.62, 71.36, 0.854), 3: (71.56, 69.88, 78.23, 0.574), 5: (73.20, 69.79, 79.86, 0.468)},
    "e3_test_agreement": {0.0: 72.14, 0.25: 72.65, 0.375: 96.51, 0.5: 96.92, 1.0: 98.02},  # BatchNorm
    # the study's CKA used the original code's RBF-per-batch CKA: not comparable (SPEC §5)
    "e4": {"random": {"test_agreement": 72.32, "test_kl": 0.781, "cka": (0.871, 0.915, 0.985)},
           "teacher_init": {"test_agreement": 72.92, "test_kl": 0.746, "cka": (0.935, 0.932, 0.985)}},
    # (tau, mixup) -> (student acc, agreement, KL)
    "e5": {(1.0, False): (69.02, 75.60, 0.568), (4.0, False): (69.84, 80.51, 0.465), (4.0, True): (68.76, 80.36, 0.421)},
    # setting -> test agreement
    "e6": {"sgd": 70.88, "sgd_long": 71.41, "adam": 70.61},
}
