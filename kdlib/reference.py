"""Published numbers our results are compared with (protocol §6).

`PAPER`: Stanton et al., "Does Knowledge Distillation Really Work?" (NeurIPS 2021), as read from
its text and figures (values marked "~" are read off a figure and approximate).
`STUDY`: the replication study in shared/seed (Alakbarli, Nuriyev, Petko, Zdrale, 2026; BatchNorm
PreResNet-20, PyTorch 2.10, RTX 4060 Ti), by its table numbers.
`ORIGINAL_CODE`: what the original code base (samuelstanton/gnosis) computes where it errs.
Accuracies and agreements are percentages, KL in nats; "m ± s" strings are mean ± std as
published. The book quotes these and nothing typed into its prose.
"""

from __future__ import annotations

PAPER_CITE = "Stanton et al. (2021)"

PAPER = {
    "e0": {"teacher_test_acc": "70.52 ± 0.41", "teachers": 10},
    "e1": {"teacher_test_acc": "~70.5", "student_test_acc": "~71", "test_agreement": "~72", "test_kl": "~0.7"},
    "e2": {},
    # LayerNorm model, train agreement (augmented training set), mean of 3 trials
    "e3_train_agreement": {0.0: 78.96, 0.25: 80.4, 0.375: 97.55, 0.5: 99.65, 1.0: 100.0},
    "e3_trials": 3,
    "e4": {"random": {"test_agreement": 77.17, "test_kl": 0.836, "cka": (0.939, 0.925, 0.885)},
           "teacher_init": {"test_agreement": 77.10, "test_kl": 0.838, "cka": (0.951, 0.937, 0.890)}},
    "e6_epochs": (1000, 5000),  # the optimiser figure's training lengths (LayerNorm model)
}

STUDY = {
    # Table 1: five teachers, 200 epochs
    "e0": {"teacher_test_acc": "65.05 ± 0.27", "teacher_train_acc": "93.74 ± 0.28",
           "teacher_test_accs": (65.22, 65.34, 64.83, 64.63, 65.21),
           "teacher_train_accs": (94.18, 93.86, 93.56, 93.36, 93.76),
           "pair_agreement": "63.19 ± 0.33", "pair_symmetric_kl": "1.672 ± 0.019"},
    # Table 4: agreement (%) and symmetric KL of each pair of independent teachers
    "e0_pairs": {(0, 1): (63.21, 1.643), (0, 2): (63.44, 1.688), (0, 3): (63.28, 1.676), (0, 4): (63.85, 1.649),
                 (1, 2): (63.21, 1.673), (1, 3): (63.09, 1.678), (1, 4): (63.02, 1.657), (2, 3): (62.44, 1.709),
                 (2, 4): (63.20, 1.684), (3, 4): (63.18, 1.667)},
    # Table 3 (3 students of teacher 0), and section 5.2's decomposition of the 10,000 test images
    "e1": {"teacher_test_acc": "65.22", "student_test_acc": "68.62 ± 0.17", "test_agreement": "71.36 ± 0.27",
           "test_kl": "0.854 ± 0.005", "student_nll": "20.15", "student_ece": "0.14",
           # differences of rates x 10,000: pair agreement 63.19 %, 71.36 - 63.19 %, 100 - 71.36 %
           "decomposition": (6319, 817, 2864)},
    # Table 5: m -> (teacher acc, student acc, agreement, KL), one student each
    "e2": {1: (65.22, 68.62, 71.36, 0.854), 3: (71.56, 69.88, 78.23, 0.574), 5: (73.20, 69.79, 79.86, 0.468)},
    # Figure 2 / section 4.3: BatchNorm model, test agreement
    "e3_test_agreement": {0.0: 72.14, 0.25: 72.65, 0.375: 96.51, 0.5: 96.92, 1.0: 98.02},
    "e3_acc_above_transition": "~65.5",
    # Table 6: the study's CKA used the original code's RBF-per-batch CKA: not comparable (protocol §5)
    "e4": {"random": {"test_agreement": 72.32, "test_kl": 0.781, "cka": (0.871, 0.915, 0.985)},
           "teacher_init": {"test_agreement": 72.92, "test_kl": 0.746, "cka": (0.935, 0.932, 0.985)}},
    # Table 7: (tau, mixup) -> (student acc, agreement, KL), 5-teacher ensemble, one student each
    "e5": {(1.0, False): (69.02, 75.60, 0.568), (4.0, False): (69.84, 80.51, 0.465), (4.0, True): (68.76, 80.36, 0.421)},
    # section 4.5: setting -> test agreement (SGD 300 and 600 epochs, Adam lr 5e-3 300 epochs)
    "e6": {"sgd": 70.88, "sgd_long": 71.41, "adam": 70.61},
    "e6_epochs": (300, 600), "e6_adam_lr": 5e-3,
}

ORIGINAL_CODE = {
    # The original CKA (an RBF kernel per batch of 128, averaged over the wrong axes, so it compared
    # spatial columns rather than examples) gives a student *at initialisation*, before any
    # training, these scores at stages 1 / 2 / 3 (protocol §5).
    "cka_untrained_student": (0.86, 0.76, 0.62),
    # The logged test NLL indexed a B x B matrix; a true NLL of a trained teacher is ~1.3-1.8.
    "logged_nll": "~20",
}


def number(published_value) -> float:
    """The number in a published value: 70.52 for "70.52 ± 0.41", 71 for "~71", 65.22 for "65.22"."""
    return float(str(published_value).lstrip("~").split("±")[0])


def _planning() -> dict[str, tuple[float, str]]:
    """The effect the paper or the study published for each part a plan is made for (protocol §8):
    part key -> (the effect in the part's unit, where it comes from)."""
    e1, pairs, e2, e5, e6 = STUDY["e1"], number(STUDY["e0"]["pair_agreement"]), STUDY["e2"], STUDY["e5"], STUDY["e6"]
    paper_e3, paper_e4 = PAPER["e3_train_agreement"], PAPER["e4"]
    own = number(e1["test_agreement"])
    kl, kl_mix = e5[(4.0, False)][2], e5[(4.0, True)][2]
    agree, agree_mix = e5[(4.0, False)][1], e5[(4.0, True)][1]
    return {
        "e1-accuracy": (number(e1["student_test_acc"]) - number(e1["teacher_test_acc"]),
                        "the study: students 68.62 %, their teacher 65.22 %"),
        "e1-fidelity": ((100 - own) / (100 - pairs), "the study: agreement 71.36 % with the teacher, 63.19 % between "
                                                     "teachers"),
        "e0-study-baseline": (own - pairs, "the study: 71.36 % with the own teacher, 63.19 % between teachers"),
        "e2-ensembles": (e2[3][2] - e2[1][2], "the study: agreement 71.36 % at m = 1, 78.23 % at m = 3"),
        "e3-rise": (paper_e3[0.5] - paper_e3[0.0], "the paper: train agreement 78.96 % at λ = 0, 99.65 % at 0.5"),
        "e3-share": ((paper_e3[0.375] - paper_e3[0.25]) / (paper_e3[0.5] - paper_e3[0.0]),
                     "the paper's curve: (97.55 - 80.4) / (99.65 - 78.96)"),
        "e4-cka": (paper_e4["teacher_init"]["cka"][0] - paper_e4["random"]["cka"][0],
                   "the paper: stage-1 CKA 0.951 from the teacher's initial weights, 0.939 from random ones"),
        "e4-agreement": (paper_e4["teacher_init"]["test_agreement"] - paper_e4["random"]["test_agreement"],
                         "the paper: agreement 77.10 % and 77.17 %"),
        "e5-temperature": (e5[(4.0, False)][1] - e5[(1.0, False)][1], "the study: agreement 75.60 % at τ = 1, 80.51 % "
                                                                       "at τ = 4"),
        "e5-kl": (kl_mix - kl, "the study: KL 0.465 without MixUp, 0.421 with it"),
        "e5-fractions": ((kl - kl_mix) / kl - (agree_mix - agree) / (100 - agree),
                         "the study: MixUp removes 0.095 of the KL and -0.008 of the disagreement"),
        "e6-long": ((e6["sgd_long"] - e6["sgd"]) / (100 - e6["sgd"]), "the study's test agreement: 70.88 % (SGD), "
                                                                     "71.41 % (twice as long)"),
        "e6-adam": ((e6["adam"] - e6["sgd"]) / (100 - e6["sgd"]), "the study's test agreement: 70.88 % (SGD), 70.61 % "
                                                                 "(Adam)"),
    }


PLANNING = _planning()


def published(claim_id: str) -> str:
    """What the paper and the study published on the quantity a claim (kdlib.claims, by its id) is
    about, in words, from PAPER and STUDY ("" when neither reported it)."""
    e1, e2, e5, e6 = STUDY["e1"], STUDY["e2"], STUDY["e5"], STUDY["e6"]
    said = {
        "e1-accuracy": f"paper: student {PAPER['e1']['student_test_acc']} % vs teacher {PAPER['e1']['teacher_test_acc']} %; "
                       f"study: {e1['student_test_acc']} % vs {e1['teacher_test_acc']} %",
        "e1-fidelity": f"study: agreement {e1['test_agreement']} % with the teacher, {STUDY['e0']['pair_agreement']} % "
                       "between teachers",
        "e0-baselines": f"study: {e1['test_agreement']} % with the own teacher vs {STUDY['e0']['pair_agreement']} % "
                        "between teachers (the paper's baseline not reported)",
        "e2-ensembles": f"study: agreement {e2[1][2]} % at m = 1, {e2[3][2]} % at m = 3, {e2[5][2]} % at m = 5",
        "e3-transition": "paper (LayerNorm, train agreement): " + ", ".join(
            f"{v} % at λ = {k:g}" for k, v in PAPER["e3_train_agreement"].items()),
        "e4-cka": f"paper: stage-1 CKA {PAPER['e4']['teacher_init']['cka'][0]} (teacher init) vs "
                  f"{PAPER['e4']['random']['cka'][0]} (random); agreement {PAPER['e4']['teacher_init']['test_agreement']} "
                  f"vs {PAPER['e4']['random']['test_agreement']} %",
        "e5-temperature": f"study: agreement {e5[(1.0, False)][1]} % at τ = 1, {e5[(4.0, False)][1]} % at τ = 4; KL "
                          f"{e5[(4.0, False)][2]} without MixUp, {e5[(4.0, True)][2]} with it",
        "e6-optimiser": f"study: agreement {e6['sgd']} % (SGD), {e6['sgd_long']} % (twice as long), {e6['adam']} % (Adam)",
        "b6-where-they-disagree": f"study: {STUDY['e1']['decomposition'][2]:,} of 10,000 test images still disagreeing "
                                  "(a difference of rates, not a group of images)",
    }
    return said.get(claim_id, "")
