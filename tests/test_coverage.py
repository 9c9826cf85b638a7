"""Coverage of the claims' own estimators, each simulated in its claim's design and through the claim's
own function (protocol §8, §9): an interval that says 95 % covers 95 %, and a claim is called "holds"
at most 2.5 % of the time when the truth sits on its boundary.

B5: the calibration slope. Images carry a true posterior, softmax(u) with u ~ N(0, 2^2) over 20
classes, and their labels are drawn from it; a network sees u through noise of its own and a
temperature t (t < 1: overconfident). The report's design: teachers fixed (one network at m = 1, the
ensemble of three at m = 3), three students per size paired by seed (a seed shifts a student's
temperature at both sizes), 2,000 test images. The truth is the slope of the students' expected
calibration error on the teachers', both computed on 100,000 images.

B4: the rank correlation of agreement and gain over the reduced scale's settings (48 students in 20
settings, built from the plans): each setting draws its own effect, its students share it.

E5: MixUp's fraction of the KL removed minus its fraction of the disagreement removed, seed-paired.

`COVERED` names, for every claim of kdlib.study, the simulations here and in test_stats.py that prove
its parts' designs; a claim without an entry fails the suite.
"""

import math
import os
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kdlib import metrics, plans, study
from kdlib.claims.beyond import Taught, by_setting, calibration_transfer
from kdlib.claims.paper import mixup_relative_gain
from kdlib.claims.rules import FAILS, HOLDS
from kdlib.losses import ensemble_logits
from kdlib.scales import get_scale
from kdlib.stats import Group, estimate, rank_correlation

SIMS = int(os.environ.get("KDLIB_SIMS", 2000)) // 4  # each simulation scores eight networks
CLASSES, SIGNAL, NOISE = 20, 2.0, 0.8
TEACHER_T = 0.6      # each of the three teachers: overconfident; their ensemble much less so
SEED_T = 0.02        # how far a seed moves a student's temperature (at both sizes alike)
N_TEST = 2000


def images(n, g):
    """n images' true posteriors' logits u (n, C) and labels drawn from softmax(u)."""
    u = g.normal(0, SIGNAL, (n, CLASSES))
    p = np.exp(u - u.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return u, (p.cumsum(1) > g.random((n, 1))).argmax(1)


def network(u, t, g):
    return torch.from_numpy((u + NOISE * g.normal(0, 1, u.shape)) / t)


@pytest.fixture(scope="module")
def population():
    """Expected calibration errors on 100,000 images: the teachers' at m = 1 and 3, and a student's as a
    function of its temperature, averaged over the seeds' shift (Gauss-Hermite, 5 nodes)."""
    g = np.random.default_rng(20211206)
    u, y = images(100_000, g)
    labels = torch.from_numpy(y)

    def error(z):
        return metrics.calibration_gap(z, labels).mean().item()

    teachers = [network(u, TEACHER_T, g) for _ in range(3)]
    nodes, weights = np.polynomial.hermite_e.hermegauss(5)
    weights = weights / weights.sum()

    noise = g.normal(0, 1, u.shape)  # one student network's noise: its error a smooth function of t

    def student(t):
        return float(sum(w * error(torch.from_numpy((u + NOISE * noise) / (t + SEED_T * x)))
                         for x, w in zip(nodes, weights)))

    return {"teacher": {1: error(teachers[0]), 3: error(ensemble_logits(torch.stack(teachers)))}, "student": student}


def run(logits, seed):
    return SimpleNamespace(test_logits=lambda z=logits: z, spec=SimpleNamespace(seed=seed))


def simulate(student_t: dict, g):
    """One draw of the report's design: its verdict's part."""
    u, y = images(N_TEST, g)
    pool = [run(network(u, TEACHER_T, g), 100 + k) for k in range(3)]
    shift = g.normal(0, SEED_T, 3)
    by_size = {m: [run(network(u, student_t[m] + shift[s], g), s) for s in range(3)] for m in (1, 3)}
    (part,) = calibration_transfer(by_size, pool, y).parts
    return part


def truth(population, student_t):
    t = population["teacher"]
    return (population["student"](student_t[3]) - population["student"](student_t[1])) / (t[3] - t[1])


@pytest.mark.parametrize("transfer, student_t", [("strong", {1: 0.65, 3: 0.85}), ("weak", {1: 1.0, 3: 1.1}),
                                                 ("about half", {1: 0.8, 3: 1.04})])
def test_coverage_of_b5s_calibration_slope(population, request, transfer, student_t):
    """The slope's interval covers its truth 93-97 % (or conservatively), strong transfer, weak, and
    about half of it with the students well calibrated at m = 3 (where the binned ECE's floor biased
    the old estimate towards "holds")."""
    g = np.random.default_rng([20211206, zlib.crc32(request.node.nodeid.encode())])
    slope = truth(population, student_t)
    hits = sum(simulate(student_t, g).interval.position(slope) == "within" for _ in range(SIMS))
    tolerance = 3 * math.sqrt(0.95 * 0.05 / SIMS)
    assert 0.93 - tolerance <= hits / SIMS <= 0.985, (transfer, slope, hits / SIMS)


def test_b5_rarely_holds_when_half_the_teachers_change_reaches_the_students(population, request):
    """At a true slope of 0.5 or more, "holds" (slope < 0.5) comes out at most 2.5 % of the time (plus
    three simulation standard errors); the slope of the binned ECE, which this replaced, said "holds"
    about 20 % of the time in a simulation of this kind (the review that led to this repair)."""
    g = np.random.default_rng([20211206, zlib.crc32(request.node.nodeid.encode())])
    lo, hi = 0.9, 1.2  # the m = 3 temperature at which the slope is 0.5: bisection on the truth
    for _ in range(20):  # the slope grows with the temperature at m = 3 (the student better calibrated)
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if truth(population, {1: 0.8, 3: mid}) > 0.5 else (mid, hi)
    student_t = {1: 0.8, 3: lo}
    assert truth(population, student_t) == pytest.approx(0.5, abs=0.01)
    verdicts = [simulate(student_t, g).verdict for _ in range(SIMS)]
    held = verdicts.count(HOLDS) / SIMS
    assert held <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / SIMS), held
    assert verdicts.count(FAILS) < SIMS  # the boundary itself is not decided against either, mostly


# ---------------------------------------------------------------------------------------------
# B4: the rank correlation over the report's settings

def reduced_settings() -> list[int]:
    """How many students each setting of the reduced scale holds, as B4 counts them (kdlib.study.students:
    a student in two settings counted in the first): built from the plans, nothing trained."""
    sc = get_scale("reduced")

    def as_runs(plan, classes=None):  # a run's id: its spec and, on fewer classes, their number
        if isinstance(plan, plans.OnClasses):
            return plans.OnClasses(plan.classes, as_runs(plan.plan, plan.classes), np.zeros(1))
        if isinstance(plan, dict):
            return {k: as_runs(v, classes) for k, v in plan.items()}
        if isinstance(plan, (list, tuple)):
            return [as_runs(v, classes) for v in plan]
        return SimpleNamespace(id=repr((plan, classes)), spec=plan)

    runs = study.StudyRuns(np.zeros(1), {c: as_runs(study.BY_ID[c].plan(sc)) for c in study.TRAINING},
                           ensemble_pool=max(sc.ensemble_sizes))
    taught = study.students(runs)
    return [sum(t.setting == s for t in taught) for s in dict.fromkeys(t.setting for t in taught)]


def b4_draw(sizes, rho, within, g):
    """Setting effects on (agreement, gain) bivariate normal with correlation `rho` (sd 1), each student
    its setting's effect plus noise of sd `within`; B4's part from the students."""
    effects = g.multivariate_normal([0, 0], [[1, rho], [rho, 1]], len(sizes))
    taught, agreement, gain = [], [], []
    for k, n in enumerate(sizes):
        for _ in range(n):
            taught.append(Taught(f"setting {k}", None, [], None))
            agreement.append(effects[k, 0] + g.normal(0, within))
            gain.append(effects[k, 1] + g.normal(0, within))
    _, a = by_setting(taught, np.array(agreement))
    _, b = by_setting(taught, np.array(gain))
    return rank_correlation(a, b), rank_correlation(np.array(agreement), np.array(gain))


def test_the_reduced_scale_has_48_students_in_20_settings():
    sizes = reduced_settings()
    assert sum(sizes) == 48 and len(sizes) == 20 and max(sizes) == 3


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_coverage_of_b4_over_the_reports_settings(rho, request):
    """Setting effects dominate (students of a setting within 0.3 of each other, settings 1 apart): the
    interval over the settings' means covers the settings' rank correlation, (6 / pi) asin(rho / 2),
    93-97 %; the interval over students as independent draws (what B4 was) covers far less."""
    g = np.random.default_rng([20211206, zlib.crc32(request.node.nodeid.encode())])
    sizes, truth = reduced_settings(), 6 / math.pi * math.asin(rho / 2)
    sims = SIMS * 4
    draws = [b4_draw(sizes, rho, 0.3, g) for _ in range(sims)]
    settings = sum(s.position(truth) == "within" for s, _ in draws) / sims
    students = sum(t.position(truth) == "within" for _, t in draws) / sims
    tolerance = 3 * math.sqrt(0.95 * 0.05 / sims)
    assert 0.93 - tolerance <= settings <= 0.97 + tolerance, settings
    assert students < 0.93, students


def test_b4_rarely_holds_when_the_settings_correlate_at_half(request):
    """At a true rank correlation of 0.5 over the settings, "holds" (interval below 0.5) comes out at
    most 2.5 % of the time (plus three simulation standard errors)."""
    g = np.random.default_rng([20211206, zlib.crc32(request.node.nodeid.encode())])
    rho = 2 * math.sin(math.pi * 0.5 / 6)  # Pearson's rho whose Spearman correlation is 0.5
    sims = SIMS * 4
    held = sum(b4_draw(reduced_settings(), rho, 0.3, g)[0].position(0.5) == "below" for _ in range(sims)) / sims
    assert held <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / sims), held


# ---------------------------------------------------------------------------------------------
# E5: MixUp's fraction of the KL removed minus its fraction of the disagreement removed

def e5_draw(units, g, n_images=2000):
    """E5's third part in its design: the students at τ = 4 with and without MixUp, paired by seed,
    against a fixed ensemble, on `n_images` test images. Each image has an agreement probability
    around 0.7 (bounded draws, so the expectation is exact) and a KL that falls where agreement rises;
    a seed moves both, in both settings alike. The truth: MixUp removes 30 % of the KL and raises
    agreement from 0.70 to 0.73 (a tenth of the disagreement), so 0.3 - 0.1 = 0.2."""
    b = g.uniform(-0.2, 0.2, n_images)         # the image's part of its agreement probability
    c = -2.5 * b + g.normal(0, 0.3, n_images)  # and of its log KL, related to it
    shared = g.uniform(-0.03, 0.03, units)      # what a seed shares across the two settings
    groups = {}
    for name, lift, kl_scale in (("", 0.0, 1.0), (" mixup", 0.03, 0.7)):
        own = g.uniform(-0.01, 0.01, units)
        p = 0.70 + lift + (shared + own)[:, None] + b[None]
        groups[f"agree{name}"] = Group((g.random((units, n_images)) < p).astype(float), block="seeds")
        log_kl = math.log(0.4 * kl_scale) + c[None] + 5 * (shared + own)[:, None]
        groups[f"kl{name}"] = Group(np.exp(log_kl + g.normal(0, 0.2, (units, n_images)) - 0.02), block="seeds")
    return groups


@pytest.mark.parametrize("units", [3, 5])
def test_coverage_of_e5s_mixup_fractions(units, request):
    """The delta method's interval of E5's ratio of means covers the truth 93-97 % (three simulation
    standard errors either side) at the report's three seeds and at five."""
    g = np.random.default_rng([20211206, zlib.crc32(request.node.nodeid.encode())])
    truth = 0.3 - 0.03 / 0.3
    sims = SIMS * 4
    hits = sum(estimate(e5_draw(units, g), mixup_relative_gain).position(truth) == "within" for _ in range(sims))
    tolerance = 3 * math.sqrt(0.95 * 0.05 / sims)
    assert 0.93 - tolerance <= hits / sims <= 0.97 + tolerance, hits / sims


# ---------------------------------------------------------------------------------------------
# Every claim has its estimators' coverage proved

PAIRED = "test_stats.py::test_coverage_of_a_seed_paired_difference"
FIXED = "test_stats.py::test_coverage_of_students_against_a_fixed_teacher"
UNPAIRED = "test_stats.py::test_unpaired_comparisons_never_cover_less_than_95_percent"
RATIOS_TO_FIXED = "test_stats.py::test_coverage_of_a_seed_paired_difference_of_two_ratios_to_fixed_baselines"
RATIO = "test_stats.py::test_coverage_of_a_ratio"

# claim id -> the tests that simulate the designs of its parts (kdlib.study's claims, both scales); all
# but B4's and B5's are also simulated whole, through kdlib.study.collect (STUDY)
STUDY = "test_study_coverage.py::test_coverage_through_the_studys_path"
COVERED = {
    "e1-accuracy": (STUDY, FIXED, PAIRED),  # one fixed teacher (reduced); each student paired with its own (paper scale)
    "e1-fidelity": (STUDY, RATIOS_TO_FIXED),
    "e0-baselines": (STUDY, PAIRED, FIXED),
    "e2-ensembles": (STUDY, PAIRED, UNPAIRED),  # paired by seed (reduced); each size its own runs (paper scale)
    "e3-transition": (STUDY, "test_stats.py::test_coverage_of_e3s_window_share_with_independent_lambdas", UNPAIRED),
    "e4-cka": (STUDY, "test_stats.py::test_coverage_of_a_seed_paired_difference_of_per_run_values", PAIRED),
    "e5-temperature": (STUDY, PAIRED, "test_coverage.py::test_coverage_of_e5s_mixup_fractions"),
    "e6-optimiser": (STUDY, RATIO),
    "p1-e1-accuracy": (STUDY, PAIRED),
    "p1-e1-fidelity": (STUDY, RATIOS_TO_FIXED),
    "p1-e0-baselines": (STUDY, PAIRED, FIXED),
    "p1-e2-ensembles": (STUDY, UNPAIRED),
    "p1-b6-where-they-disagree": (STUDY, RATIO),
    "b1-hard-labels": (STUDY, PAIRED),
    "b2-capacity-gap": (STUDY, RATIOS_TO_FIXED),
    "b3-classes": (STUDY, "test_stats.py::test_coverage_of_a_difference_between_settings_on_different_test_sets",
                   RATIOS_TO_FIXED),
    "b4-fidelity-generalisation": ("test_coverage.py::test_coverage_of_b4_over_the_reports_settings",
                                   "test_coverage.py::test_b4_rarely_holds_when_the_settings_correlate_at_half"),
    "b5-calibration": ("test_coverage.py::test_coverage_of_b5s_calibration_slope",
                       "test_coverage.py::test_b5_rarely_holds_when_half_the_teachers_change_reaches_the_students"),
    "b6-where-they-disagree": (STUDY, RATIO),
}


def test_every_claim_names_the_coverage_tests_of_its_estimators():
    """A claim added to kdlib.study without a coverage case here fails the suite, and so does a case
    that names a test no longer there."""
    claims = {claim.id for chapter in study.CHAPTERS for claim in chapter.claims}
    assert claims == set(COVERED), (sorted(claims - set(COVERED)), sorted(set(COVERED) - claims))
    here = Path(__file__).parent
    for claim, tests in COVERED.items():
        for test in tests:
            file, name = test.split("::")
            assert f"\ndef {name}(" in (here / file).read_text(), (claim, test)
