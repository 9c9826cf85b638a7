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
