"""The study's table (kdlib.study): one row per chapter, everything else derived from it."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdlib import plans, study
from kdlib.config import StudentSpec
from kdlib.scales import get_scale
from kdlib.study import EXPERIMENTS, Chapter, Claim, StudyRuns, check_table

ROOT = Path(__file__).resolve().parents[1]


def test_every_row_has_its_notebook_and_every_notebook_a_row():
    notebooks = {p.stem for p in (ROOT / "book" / "notebooks").glob("*.py")}
    assert set(study.NOTEBOOKS) == notebooks and len(study.NOTEBOOKS) == len(study.CHAPTERS)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    captions = [p["caption"] for p in toc["parts"]]
    assert [c for c in captions if c in study.PARTS] == list(study.PARTS)


def test_the_claims_come_in_the_papers_order_and_each_reads_chapters_with_runs():
    assert [q.id for q in study.claims_of("E1")] == ["e1-accuracy", "e1-fidelity", "e0-baselines"]
    assert [q.id for q in study.claims_of("E0")] == ["e0-baselines"]  # shown there too
    assert study.reads(study.claims_of("E5")) == ["E0", "E5"]
    assert study.reads(study.claims_of("B4")) == list(study.TRAINING)  # every chapter that trains
    assert study.reads(study.claims_of("P1")) == ["P1"]
    with pytest.raises(ValueError, match="name must be one of"):
        study.claims_of("E9")


def test_a_table_that_reads_a_chapter_without_runs_is_refused():
    row = Chapter("E8", "e8_new", "something new", EXPERIMENTS, plans.teachers,
                  claims=(Claim("e8-claim", ("E7",), lambda r: None),))
    with pytest.raises(ValueError, match="claim e8-claim reads chapter 'E7', which has no runs of its own"):
        check_table([*study.CHAPTERS, row])
    twice = dataclasses.replace(row, id="E1", claims=())
    with pytest.raises(ValueError, match="chapter id 'E1' appears twice"):
        check_table([*study.CHAPTERS, twice])
    with pytest.raises(ValueError, match="unknown part 'Appendices'"):
        check_table([*study.CHAPTERS, dataclasses.replace(row, part="Appendices", claims=())])


def test_reading_a_chapter_that_was_not_collected_names_it():
    runs = StudyRuns(np.zeros(3), {"E0": []})
    with pytest.raises(KeyError, match="the runs of chapter 'E1' were not collected"):
        runs["E1"]


@pytest.mark.parametrize("name", ["tiny", "reduced", "paper"])
def test_the_runs_derived_from_the_table_add_up(name):
    sc = get_scale(name)
    everything = study.all_specs(sc)
    assert len(everything) == len(set(everything))
    teachers = [s for s in everything if not isinstance(s, StudentSpec)]
    assert everything[:len(teachers)] == teachers  # teachers first
    rows = study.runs_by_chapter(sc)
    assert [r["chapter"] for r in rows] == list(study.TRAINING)
    fewer = sum(r["of them on fewer classes"] for r in rows)
    assert sum(r["new runs"] for r in rows) == len(everything) + fewer
    assert fewer == len(plans.with_classes(plans.class_count_plan(sc)))


# ---------------------------------------------------------------------------------------------
# An unfinished build: what its cache already decides (the simulated study of test_study_coverage)

def unfinished(monkeypatch, lacking):
    """The reduced scale's simulated study read from a cache that lacks the runs `lacking(spec)` picks:
    `experiments.cached_runs` raises for them as the real one does, listing every missing run."""
    from test_study_coverage import SCALE, SimulatedExperiment, World

    from kdlib import experiments
    from kdlib.execute import MissingRunsError

    world = World(np.random.default_rng(1), "seeds dominate")

    def cached_runs(specs, dataset, **_):
        gone = [(f"{dataset.classes}:{s!r}", s) for s in specs if lacking(s, dataset.classes)]
        if gone:
            raise MissingRunsError(gone, Path("the-cache"))
        return world.cached_runs(specs, dataset)

    monkeypatch.setattr(experiments, "cached_runs", cached_runs)
    monkeypatch.setitem(study.BY_ID, "P1", dataclasses.replace(study.BY_ID["P1"], networks=world.authors))
    return SimulatedExperiment(SCALE, world.dataset(SCALE.num_classes), "cpu", "inline", train=False, world=world)


def e3_and_b3_at_10(spec, classes):
    return getattr(spec, "init", "") == "interpolate" or classes == 10


def test_a_missing_run_is_listed_with_every_other_of_its_plan_on_every_number_of_classes(monkeypatch):
    from kdlib.execute import MissingRunsError

    experiment = unfinished(monkeypatch, lambda spec, classes: classes in (5, 10))
    with pytest.raises(MissingRunsError) as e:
        study.collect(experiment, ["B3"])
    assert len(e.value.missing) == 8  # both parts' teachers and students, not the first part's alone
    assert {rid.split(":")[0] for rid, _ in e.value.missing} == {"5", "10"}


def test_an_unfinished_build_is_judged_on_what_it_has_and_says_what_it_lacks(monkeypatch):
    experiment = unfinished(monkeypatch, e3_and_b3_at_10)
    runs, missing = study.collect_cached(experiment, [*study.TRAINING, "P1"])
    assert missing == {"E3": 13, "B3": 3}  # E3's 13 students (not its teacher); B3's teachers and student at 10 classes
    assert "E3" not in runs and "B3" not in runs and "P1" in runs and "E5" in runs
    ready, waiting = study.judgeable(runs, study.EXPERIMENTS)
    assert [q.id for q in waiting] == ["e3-transition"] and len(ready) == 7
    ready, waiting = study.judgeable(runs, study.BEYOND)
    assert [q.id for q in waiting] == ["b3-classes", "b4-fidelity-generalisation"]  # B4 reads every chapter
    assert all(q.judge(runs).verdict for q in ready)
    with pytest.raises(ValueError, match="part must be one of"):
        study.judgeable(runs, "Appendix")
    with pytest.raises(ValueError, match="train=False"):
        study.collect_cached(dataclasses.replace(experiment, train=True))


def test_the_claims_command_judges_an_unfinished_build_only_when_asked(monkeypatch, tmp_path, capsys):
    import json

    from kdlib import verdicts

    experiment = unfinished(monkeypatch, e3_and_b3_at_10)
    monkeypatch.setattr(verdicts, "open_experiment", lambda params, train: experiment)
    assert verdicts.main(["--scale", "reduced"]) == 1
    assert "13 run(s) are not in the run cache" in capsys.readouterr().err  # E3 is the first chapter lacking runs
    out = tmp_path / "claims.json"
    assert verdicts.main(["--scale", "reduced", "--cached-only", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Not judged, their runs not all cached yet: e3-transition (E3: 13 runs missing); b3-classes (B3: 3 runs " \
           "missing); b4-fidelity-generalisation (E3: 13 runs missing, B3: 3 runs missing)." in printed
    assert "claims hold at the 'reduced' scale" in printed and "of 7 judged (of 8) claims" in printed
    record = json.loads(out.read_text())
    assert record["complete"] is False and len(record["claims"]) == 7 and len(record["paper_scale"]) == 5
    assert [q["id"] for q in record["not_judged"]] == ["e3-transition", "b3-classes", "b4-fidelity-generalisation"]
    assert record["not_judged"][0]["missing_runs"] == {"E3": 13}
    # every part says what would decide it at its declared planning effects, as the appendix does
    e2 = next(v for v in record["claims"] if v["id"] == "e2-ensembles")["parts"][0]
    assert [(plan["decides"], plan["why"]) for plan in e2["to_decide"]][1] == ("does not hold", "no effect at all")
    assert all({"effect", "seeds", "images", "words"} <= set(plan) for plan in e2["to_decide"])
    assert all(plan["seeds"] is not None or plan["images"] is not None or "more than" in plan["words"]
               for plan in e2["to_decide"])
