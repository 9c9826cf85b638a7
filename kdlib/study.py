"""The study as one table: every chapter of the report, the runs it needs and the claims that judge it.

`CHAPTERS` has a row per chapter, in the report's order: its id ("E1", "B4"), notebook, title and part
of the book; the plan that lists its runs at a scale (kdlib.plans), if it trains any; the claims it
prints (`Claim`: an id, the chapters whose runs it reads, and the function of kdlib.claims that
judges them); and, for a chapter that trains students, how to list them with what they learned from
(B4 reads every student of the report). Everything else is derived from the table:

- `NOTEBOOKS` (the order kdlib.report executes them) and the book's table of contents (`toc_parts`,
  checked against `_toc.yml` by the tests);
- `all_specs(scale)`: every run the report trains on the scale's own classes, and `runs_by_chapter`
  (the setup chapter's list of runs);
- `collect(experiment, chapters)`: the runs of those chapters, each in its plan's shape (`StudyRuns`);
  `collect_cached` and `judgeable`: what an unfinished build's cache already decides;
- `paper_claims`, `paper_scale_claims`, `questions` and `chapter_verdicts`: the verdicts of the
  paper's claims on our runs and on the original authors' networks (the paper scale), of the
  questions beyond it, and of one chapter;
- `students(runs)`: every student with its setting, teachers and labels.

Adding an experiment is one row here plus its own plan (kdlib.plans), claim (kdlib.claims) and
notebook (book/notebooks); docs/extending.md walks through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kdlib import data as kdata
from kdlib import plans
from kdlib.claims import beyond, paper
from kdlib.claims.beyond import ClassRuns, Taught
from kdlib.claims.verdict import Verdict
from kdlib.config import StudentSpec
from kdlib.execute import MissingRunsError
from kdlib.paper_scale import PaperScale, open_paper_scale
from kdlib.scales import Scale
from kdlib.tables import NORM_NAMES

# The parts of the book, in order.
INTRODUCTION = "Introduction"
EXPERIMENTS = "Experiments"
PAPER_SCALE = "Paper scale: the authors' networks"
BEYOND = "Beyond the paper"
DISCUSSION = "Discussion"
PARTS = (INTRODUCTION, EXPERIMENTS, PAPER_SCALE, BEYOND, DISCUSSION)

EVERY_CHAPTER = "every chapter"  # what a claim reads when it reads the runs of every chapter that trains


@dataclass
class StudyRuns:
    """The runs of some chapters, each chapter's in the shape of its plan, and the test labels of the
    experiment's own classes. Reading a chapter that was not collected raises a KeyError naming it."""

    labels: np.ndarray                          # (N,) test labels
    by_chapter: dict[str, object] = field(default_factory=dict)  # chapter id -> its runs
    ensemble_pool: int = 0  # E5's students learn from the first this many teachers of E0 (0: all)

    def __getitem__(self, chapter: str):
        if chapter not in self.by_chapter:
            raise KeyError(f"the runs of chapter {chapter!r} were not collected (collected: "
                           f"{sorted(self.by_chapter)}); a claim must name every chapter it reads")
        return self.by_chapter[chapter]

    def __contains__(self, chapter: str) -> bool:
        return chapter in self.by_chapter

    def pool(self) -> list:
        """The teachers E5's ensemble students learn from: the first `ensemble_pool` of E0's."""
        teachers = self["E0"]
        return teachers[:self.ensemble_pool or len(teachers)]


@dataclass(frozen=True)
class Claim:
    """A claim of the paper, or a question beyond it: what judges it and which runs it reads."""

    id: str                                  # stable identifier, e.g. "e1-accuracy"
    reads: tuple[str, ...] | str             # the chapters whose runs it reads, or EVERY_CHAPTER
    judge: Callable[[StudyRuns], Verdict]    # those runs -> its verdict (a function of kdlib.claims)
    also_in: tuple[str, ...] = ()            # chapters besides its own that print it


# A setting's students, with the teachers they learned from and the labels of their test images.
Setting = tuple[str, Sequence, Sequence, np.ndarray]


@dataclass(frozen=True)
class Chapter:
    """A row of the study: one chapter of the report."""

    id: str                                              # "E1", "B4", "setup"
    notebook: str                                        # book/notebooks/<notebook>.py
    title: str                                           # the chapter's subject, in a few words
    part: str                                            # the part of the book it belongs to (PARTS)
    plan: Callable[[Scale], object] | None = None        # the runs it trains (kdlib.plans), None: none
    claims: tuple[Claim, ...] = ()                       # the claims it prints (its own, in order)
    # networks it reads that no plan trains, from an experiment (the authors' own: kdlib.paper_scale)
    networks: Callable[[object], object] | None = None
    students: Callable[[StudyRuns], list[Setting]] | None = None  # its students by setting (B4)


# ---------------------------------------------------------------------------------------------
# How each claim reads its chapters' runs

def _e3_transition(r: StudyRuns) -> Verdict:
    return paper.sharp_transition({NORM_NAMES[n]: (p["teacher"], p["students"]) for n, p in r["E3"].items()})


def _temperatures(r: StudyRuns) -> tuple[dict[float, list], list]:
    """E5's students by temperature, and the MixUp ones."""
    by_setting = dict(r["E5"])
    mixup = by_setting.pop(plans.MIXUP, [])
    return {runs[0].spec.tau: runs for runs in by_setting.values() if runs}, mixup


def _e5_temperature(r: StudyRuns) -> Verdict:
    temperatures, mixup = _temperatures(r)
    high = 4.0 if 4.0 in temperatures else max(temperatures)
    return paper.temperature_and_mixup(temperatures[min(temperatures)], temperatures[high], mixup, r.pool())


def _e6_optimiser(r: StudyRuns) -> Verdict:
    (_, base), *alternatives = r["E6"].items()  # the first setting is the baseline
    return paper.optimiser_and_length(base, dict(alternatives), r["E0"][0])


def _b2_capacity(r: StudyRuns) -> Verdict:
    deep = r["B2"]
    return beyond.capacity_gap(deep["teacher"][0], deep["students"], r["E0"][0], r["E1"], r["E0"])


def class_runs(r: StudyRuns) -> dict[int, ClassRuns]:
    """B3's runs by class count, the scale's own count (E0's teachers, E1's students) included."""
    own = int(r.labels.max()) + 1  # the first k classes: the largest label + 1
    fewer = {k: ClassRuns(c.plan["teachers"], c.plan["students"], c.labels) for k, c in r["B3"].items()}
    return {**fewer, own: ClassRuns(r["E0"], r["E1"], r.labels)}


def _b4_fidelity(r: StudyRuns) -> Verdict:
    return beyond.fidelity_and_generalisation(students(r))


def _authors_networks(experiment) -> PaperScale:
    """The authors' networks on all of CIFAR-100 from the experiment's source (their test set whole,
    but at the tiny scale, `Scale.authors_test_per_class`), evaluated on the experiment's device (any
    device here when it only reads cached runs)."""
    full = kdata.load(kdata.DataSpec(source=experiment.dataset.spec.source,
                                     test_per_class=experiment.scale.authors_test_per_class))
    return open_paper_scale(full, experiment.device if experiment.train else "auto")


def _paper_e2(r: StudyRuns) -> Verdict:
    ps = r["P1"]
    sizes = (1, 2, 3)
    return paper.ensemble_size({m: ps.students(m) for m in sizes}, ps.teachers(),
                               own={m: [ps.own(s) for s in ps.students(m)] for m in sizes})


# ---------------------------------------------------------------------------------------------
# The table

CHAPTERS: tuple[Chapter, ...] = (
    Chapter("setup", "setup", "Setup", INTRODUCTION),
    Chapter("E0", "e0_teachers", "Teachers and baselines", EXPERIMENTS, plans.teachers),
    Chapter("E1", "e1_self_distillation", "Self-distillation", EXPERIMENTS, plans.self_distillation_specs,
            claims=(
                Claim("e1-accuracy", ("E0", "E1"), lambda r: paper.student_accuracy(r["E0"][0], r["E1"], r.labels)),
                Claim("e1-fidelity", ("E0", "E1"), lambda r: paper.far_from_faithful(r["E0"][0], r["E1"], r["E0"])),
                Claim("e0-baselines", ("E0", "E1"), lambda r: paper.beyond_independent(r["E0"], r["E1"]),
                      also_in=("E0",))),
            students=lambda r: [("E1", r["E1"], r["E0"][:1], r.labels)]),
    Chapter("E2", "e2_ensembles", "Ensemble distillation", EXPERIMENTS, plans.ensemble_specs,
            claims=(Claim("e2-ensembles", ("E0", "E2"), lambda r: paper.ensemble_size(r["E2"], r["E0"])),),
            students=lambda r: [(f"E2 m = {m}", s, r["E0"][:m], r.labels) for m, s in r["E2"].items()]),
    Chapter("E3", "e3_initialisation", "Initialisation near the teacher", EXPERIMENTS, plans.initialisation_plan,
            claims=(Claim("e3-transition", ("E3",), _e3_transition),),
            students=lambda r: [(f"E3 {NORM_NAMES.get(n, n)} λ = {lam:g}", s, [p["teacher"]], r.labels)
                                for n, p in r["E3"].items() for lam, s in p["students"].items()]),
    Chapter("E4", "e4_cka", "Representations (CKA)", EXPERIMENTS, plans.cka_specs,
            claims=(Claim("e4-cka", ("E0", "E4"), lambda r: paper.cka_not_agreement(
                r["E0"][0], r["E4"]["random"], r["E4"]["teacher_init"])),),
            students=lambda r: [(f"E4 {start.replace('_', ' ')}", s, r["E0"][:1], r.labels)
                                for start, s in r["E4"].items()]),
    Chapter("E5", "e5_temperature", "Temperature and MixUp", EXPERIMENTS, plans.temperature_specs,
            claims=(Claim("e5-temperature", ("E0", "E5"), _e5_temperature),),
            students=lambda r: [(f"E5 {name.replace('tau=', 'τ = ')}", s, r.pool(), r.labels)
                                for name, s in r["E5"].items()]),
    Chapter("E6", "e6_optimiser", "Optimiser and training length", EXPERIMENTS, plans.optimiser_specs,
            claims=(Claim("e6-optimiser", ("E0", "E6"), _e6_optimiser),),
            students=lambda r: [(f"E6 {name}", s, r["E0"][:1], r.labels) for name, s in r["E6"].items()]),
    Chapter("P1", "p1_authors_networks", "The authors' own networks", PAPER_SCALE, networks=_authors_networks,
            claims=(
                Claim("p1-e1-accuracy", ("P1",), lambda r: paper.student_accuracy(
                    r["P1"].own_teachers(1), r["P1"].students(1), r["P1"].labels)),
                Claim("p1-e1-fidelity", ("P1",), lambda r: paper.far_from_faithful(
                    r["P1"].own_teachers(1), r["P1"].students(1), r["P1"].teachers())),
                Claim("p1-e0-baselines", ("P1",), lambda r: paper.beyond_independent(
                    r["P1"].teachers(), r["P1"].students(1), own=r["P1"].own_teachers(1))),
                Claim("p1-e2-ensembles", ("P1",), _paper_e2),
                Claim("p1-b6-where-they-disagree", ("P1",), lambda r: beyond.where_they_disagree(
                    r["P1"].own_teachers(1), r["P1"].students(1), r["P1"].teachers())))),
    Chapter("P2", "p2_landscape", "The loss landscape between student and teacher", PAPER_SCALE),
    Chapter("B1", "b1_hard_labels", "Hard labels", BEYOND, plans.alpha_specs,
            claims=(Claim("b1-hard-labels", ("E0", "B1"), lambda r: beyond.hard_labels(r["B1"], r["E0"][0])),),
            students=lambda r: [(f"B1 α = {a:g}", s, r["E0"][:1], r.labels) for a, s in r["B1"].items()]),
    Chapter("B2", "b2_capacity", "A capacity gap", BEYOND, plans.capacity_specs,
            claims=(Claim("b2-capacity-gap", ("E0", "E1", "B2"), _b2_capacity),),
            students=lambda r: [("B2 PreResNet-56 teacher", r["B2"]["students"], r["B2"]["teacher"], r.labels)]
            if r["B2"] else []),
    Chapter("B3", "b3_classes", "The number of classes", BEYOND, plans.class_count_plan,
            claims=(Claim("b3-classes", ("E0", "E1", "B3"),
                          lambda r: beyond.richer_soft_labels(class_runs(r))),),
            students=lambda r: [(f"B3 {k} classes", c.plan["students"], c.plan["teachers"][:1], c.labels)
                                for k, c in r["B3"].items()]),
    Chapter("B4", "b4_fidelity_generalisation", "Fidelity and generalisation", BEYOND,
            claims=(Claim("b4-fidelity-generalisation", EVERY_CHAPTER, _b4_fidelity),)),
    Chapter("B5", "b5_calibration", "Calibration", BEYOND,
            claims=(Claim("b5-calibration", ("E0", "E2"),
                          lambda r: beyond.calibration_transfer(r["E2"], r["E0"], r.labels)),)),
    Chapter("B6", "b6_disagreements", "Where student and teacher disagree", BEYOND,
            claims=(Claim("b6-where-they-disagree", ("E0", "E1"),
                          lambda r: beyond.where_they_disagree(r["E0"][0], r["E1"], r["E0"])),)),
    Chapter("E7", "e7_summary", "Summary", DISCUSSION),
    Chapter("appendix", "appendix", "Reproducing this report", DISCUSSION),
)

BY_ID = {c.id: c for c in CHAPTERS}
NOTEBOOKS = tuple(c.notebook for c in CHAPTERS)  # the order kdlib.report executes them in
TRAINING = tuple(c.id for c in CHAPTERS if c.plan is not None)  # the chapters that have runs of their own
READABLE = tuple(c.id for c in CHAPTERS if c.plan is not None or c.networks is not None)  # what a claim can read


def check_table(chapters: Sequence[Chapter]) -> None:
    """A study table's consistency: unique chapter and claim ids, known parts, and claims that read
    only chapters with runs and are shown only in chapters that exist. Raises a ValueError naming
    every problem; the table below is checked on import."""
    by_id = {c.id: c for c in chapters}
    ids = [c.id for c in chapters]
    claims = [q for c in chapters for q in c.claims]
    problems = [f"chapter id {i!r} appears twice" for i in set(ids) if ids.count(i) > 1]
    problems += [f"claim id {q.id!r} appears twice" for q in claims if [x.id for x in claims].count(q.id) > 1]
    problems += [f"chapter {c.id} is in an unknown part {c.part!r}" for c in chapters if c.part not in PARTS]
    problems += [f"claim {q.id} reads chapter {x!r}, which has no runs of its own" for q in claims
                 if q.reads != EVERY_CHAPTER for x in q.reads
                 if x not in by_id or (by_id[x].plan is None and by_id[x].networks is None)]
    problems += [f"claim {q.id} is shown in {x!r}, which is no chapter" for q in claims for x in q.also_in
                 if x not in by_id]
    if problems:
        raise ValueError("the study's table: " + "; ".join(sorted(set(problems))))


check_table(CHAPTERS)


# ---------------------------------------------------------------------------------------------
# What is derived from the table

def toc_parts() -> list[tuple[str, list[str]]]:
    """The book's parts with their chapters' notebooks, in order (the chapters of `_toc.yml`)."""
    return [(p, [c.notebook for c in CHAPTERS if c.part == p]) for p in PARTS]


def all_specs(scale: Scale) -> list:
    """Every run the report trains at `scale` on the scale's own classes, teachers first, without
    duplicates (B3's runs on fewer classes are in its plan, `plans.OnClasses`)."""
    specs = [s for c in CHAPTERS if c.plan is not None for s in plans.flatten(c.plan(scale), own_classes_only=True)]
    unique = list(dict.fromkeys(specs))
    return [s for s in unique if not isinstance(s, StudentSpec)] + [s for s in unique if isinstance(s, StudentSpec)]


def runs_by_chapter(scale: Scale) -> list[dict]:
    """For each chapter that trains, in order: its id and title, how many teachers and students its
    plan at `scale` holds, how many of them no earlier chapter has, and of those how many run on
    fewer classes than the scale's own (B3)."""
    seen, rows = set(), []
    for c in CHAPTERS:
        if c.plan is None:
            continue
        runs = list(dict.fromkeys(plans.with_classes(c.plan(scale))))
        new = [r for r in runs if r not in seen]
        seen.update(runs)
        rows.append({"chapter": c.id, "title": c.title,
                     "teachers": sum(not isinstance(s, StudentSpec) for _, s in runs),
                     "students": sum(isinstance(s, StudentSpec) for _, s in runs),
                     "new runs": len(new), "of them on fewer classes": sum(k is not None for k, _ in new)})
    return rows


def claims_of(name: str) -> list[Claim]:
    """The claims chapter `name` ("E1") prints: its own, then those of other chapters shown in it, in
    the table's order. An unknown id raises a ValueError listing the known ones."""
    if name not in BY_ID:
        raise ValueError(f"name must be one of {sorted(BY_ID)}, got {name!r}")
    return [q for c in CHAPTERS for q in c.claims if c.id == name or name in q.also_in]


def reads(claims: Sequence[Claim]) -> list[str]:
    """The chapters whose runs `claims` read, in the table's order."""
    wanted = set()
    for q in claims:
        wanted |= set(TRAINING) if q.reads == EVERY_CHAPTER else set(q.reads)
    return [c for c in READABLE if c in wanted]


def collect(experiment, chapters: Sequence[str] | None = None) -> StudyRuns:
    """The runs of `chapters` (default: every chapter that trains) for a kdlib.experiments.Experiment:
    a plan's in its shape, trained if the experiment trains, else read from the cache; the authors'
    networks (P1) evaluated (cached)."""
    chapters = list(TRAINING) if chapters is None else list(chapters)
    unknown = [c for c in chapters if c not in READABLE]
    if unknown:
        raise ValueError(f"chapters must be among {list(READABLE)} (the chapters with runs), got {unknown}")
    sc = experiment.scale

    def runs_of(chapter: Chapter):
        return experiment.run(chapter.plan(sc)) if chapter.plan is not None else chapter.networks(experiment)

    return _study_runs(experiment, {c: runs_of(BY_ID[c]) for c in chapters})


def _study_runs(experiment, by_chapter: dict) -> StudyRuns:
    return StudyRuns(labels=experiment.dataset.test.y.numpy(), by_chapter=by_chapter,
                     ensemble_pool=max(experiment.scale.ensemble_sizes))


def collect_cached(experiment, chapters: Sequence[str] | None = None) -> tuple[StudyRuns, dict[str, int]]:
    """What an unfinished build can already be judged on: the runs of those of `chapters` (default:
    every chapter that trains) whose runs the cache holds whole, for an experiment that does not train,
    and for each other chapter how many of its runs are missing (`judgeable` then says which claims
    those runs decide)."""
    if experiment.train:
        raise ValueError("collect_cached reads the run cache only: open the experiment with train=False")
    found, missing = {}, {}
    for c in (list(TRAINING) if chapters is None else list(chapters)):
        try:
            found[c] = collect(experiment, [c])[c]
        except MissingRunsError as e:
            missing[c] = len(e.missing)
    return _study_runs(experiment, found), missing


def judgeable(runs: StudyRuns, part: str) -> tuple[list[Claim], list[Claim]]:
    """The claims of one part of the book (PARTS) whose chapters' runs `runs` holds, and those it does
    not, each in the table's order."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {list(PARTS)}, got {part!r}")
    claims = [q for c in CHAPTERS if c.part == part for q in c.claims]
    ready = [q for q in claims if all(c in runs for c in reads([q]))]
    return ready, [q for q in claims if q not in ready]


def _judged(part: str, runs: StudyRuns, chapter: str | None) -> list[Verdict]:
    rows = [c for c in CHAPTERS if c.part == part]
    return [q.judge(runs) for c in rows for q in c.claims if chapter is None or q in claims_of(chapter)]


def paper_claims(runs: StudyRuns, chapter: str | None = None) -> list[Verdict]:
    """The paper's claims judged on `runs`, in the paper's order: all eight, or those chapter
    `chapter` prints ("E1")."""
    return _judged(EXPERIMENTS, runs, chapter)


def paper_scale_claims(runs: StudyRuns, chapter: str | None = None) -> list[Verdict]:
    """The paper's claims judged on the original authors' networks (the paper scale, protocol §10),
    those these networks can speak to: `runs` must hold P1's."""
    return _judged(PAPER_SCALE, runs, chapter)


def questions(runs: StudyRuns, chapter: str | None = None) -> list[Verdict]:
    """The questions beyond the paper (protocol §9) judged on `runs`: all, or one chapter's ("B5")."""
    return _judged(BEYOND, runs, chapter)


def chapter_verdicts(experiment, name: str) -> list[Verdict]:
    """The verdicts chapter `name` ("E5") ends with, from the runs of the chapters its claims read
    only (nothing else is run)."""
    shown = claims_of(name)
    runs = collect(experiment, reads(shown))
    return [q.judge(runs) for q in shown]


def students(runs: StudyRuns) -> list[Taught]:
    """Every student of the chapters in `runs`, once, in the table's order, with its setting, the
    teacher runs it learned from (an ensemble's members) and the test labels of its data. A run in
    two settings (E1's students are E2's at m = 1) is listed under the first."""
    seen, out = set(), []
    for c in CHAPTERS:
        if c.students is None or c.id not in runs:
            continue
        for setting, runs_of_setting, teachers, labels in c.students(runs):
            for s in runs_of_setting:
                key = getattr(s, "id", None) or id(s)
                if key not in seen and teachers:
                    seen.add(key)
                    out.append(Taught(setting, s, list(teachers), labels))
    return out
