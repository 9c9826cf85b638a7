"""The docs' tables of measured figures, generated from the benchmark records in benchmarks/results/.

    python -m benchmarks.tables [--write] [DOC ...]      # default DOC: docs/speed.md

A Markdown file marks each generated table with the record it comes from:

    <!-- table: benchmarks/results/cpu-2core-2threads-run2.json -->
    | task | naive img/s | ... |
    <!-- /table -->

A marker whose path holds a `*` names every record it matches (sorted), and generates a table with
one row per record (`across_records_table`), so a doc states how the figures vary from run to run
without typing them. Without --write the command prints each table and exits 1 if a file's differs
from what its records generate (tests/test_benchmarks.py checks docs/speed.md the same way); --write rewrites the marked
regions in place. Paths in markers are relative to the repository root.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from benchmarks.common import REPO, splice

START = "<!-- table: "
END = "<!-- /table -->"
MARKER = re.compile(r"^<!-- table: (\S+) -->$", re.M)
SPEED_DOC = REPO / "docs" / "speed.md"

# bench_train's kdlib paths shown in the speed table, besides the variants a record asked for
# (--variants) other than "nchw", whose rows the table across records carries
SPEED_PATHS = ("kdlib", "kdlib on the fly", "kdlib logit cache")
VARIANT_NAMES = {"bf16": "bf16 autocast", "compile": "torch.compile"}  # bench_train's --variants in a table


def _task_label(task: str, path: str) -> str:
    base, _, variant = path.rpartition(" ")
    if variant not in VARIANT_NAMES:
        base, variant = path, ""
    suffix = f", {VARIANT_NAMES[variant]}" if variant else ""
    if task == "teacher":
        return "teacher training" + suffix
    m = int(task.removeprefix("distill-"))
    how = {"kdlib on the fly": f"teacher{'s' if m > 1 else ''} on the fly", "kdlib logit cache": "logit cache"}
    return f"{m}-teacher distillation, {how.get(base, base.removeprefix('kdlib '))}{suffix}"


def _shown(path: str, variants) -> bool:
    base, _, variant = path.rpartition(" ")
    return path in SPEED_PATHS or (variant in variants and variant in VARIANT_NAMES and base in SPEED_PATHS)


def speed_table(record: dict) -> str:
    """docs/speed.md's "Measured" table from a benchmarks.bench_train record: per task and kdlib path
    (and the bf16 or torch.compile variant of it, where the record asked for one), the naive and kdlib
    images/s (medians over rounds), the median per-round ratio, and the speed target where there is
    one (its ratio in bold)."""
    naive = {r["task"]: r for r in record["results"] if r["path"] == "naive"}
    targets = {(t["task"], t["path"]): t for t in record["targets"]}
    variants = record["settings"].get("variants") or ()
    lines = ["| task | naive img/s | kdlib img/s | kdlib / naive | target |", "|---|---|---|---|---|"]
    for r in record["results"]:
        if not _shown(r["path"], variants):
            continue
        ratio = f"{r['ratio_vs_naive']:.2f}x"
        target = targets.get((r["task"], r["path"]))
        if target:
            ratio = f"**{ratio}**"
        goal = f">= {target['target']:g}x: {'met' if target['met'] else 'NOT met'}" if target else ""
        cells = [_task_label(r["task"], r["path"]), f"{naive[r['task']]['images_per_s']:,.0f}",
                 f"{r['images_per_s']:,.0f}", ratio, goal]
        lines.append("|" + "|".join(f" {c} " if c else " " for c in cells) + "|")
    return "\n".join(lines)


def across_records_table(records: dict[str, dict]) -> str:
    """One row per bench_train record (name -> record): the torch threads, the kdlib / naive ratios
    of the speed table's two targets and of kdlib's data path without channels_last ("kdlib NCHW"),
    each with the range of its single rounds; the logit cache's build rate; 5-teacher distillation
    with the cache's build charged to 300-epoch students (1 and 5 students sharing a cache); and
    the peak memory over every configuration."""
    lines = ["| record | threads | teacher, kdlib NCHW | teacher | 5-teacher, logit cache | cache build "
             "(forwards/s) | 5-teacher, cache build charged (1 / 5 students) | peak memory |",
             "|---|---|---|---|---|---|---|---|"]
    for name, record in records.items():
        by = {(r["task"], r["path"]): r for r in record["results"]}

        def ratio(task, path):
            r = by[(task, path)]
            return (f"{r['ratio_vs_naive']:.2f}x ({min(r['ratio_samples']):.2f}-"
                    f"{max(r['ratio_samples']):.2f})")

        cache = record["logit_cache"]
        amortised = cache["amortised"]
        memory = [r["peak_memory_mb"] for r in record["results"]]
        cells = [name, str(record["machine"]["torch_threads"]), ratio("teacher", "kdlib NCHW"),
                 ratio("teacher", "kdlib"), ratio("distill-5", "kdlib logit cache"),
                 f"{cache['build']['member_forwards_per_s']:,.0f}",
                 f"{amortised['distill-5, 1 student']['ratio_vs_naive']:.2f}x / "
                 f"{amortised['distill-5, 5 students']['ratio_vs_naive']:.2f}x",
                 f"{min(memory) / 1000:.1f}-{max(memory) / 1000:.1f} GB"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


RENDERERS = {"benchmarks/bench_train.py": speed_table}  # a record's "benchmark" -> its table
ACROSS = {"benchmarks/bench_train.py": across_records_table}  # the same, one row per record


def render(record_path: str) -> str:
    """The table for the record at record_path (relative to the repository root), or, for a path
    with a `*`, the table across every record it matches (one benchmark's records)."""
    if "*" not in record_path:
        record = json.loads((REPO / record_path).read_text())
        return RENDERERS[record["benchmark"]](record)
    paths = sorted(REPO.glob(record_path))
    if not paths:
        raise FileNotFoundError(f"no benchmark record matches {record_path!r}")
    records = {path.name: json.loads(path.read_text()) for path in paths}
    kinds = {r["benchmark"] for r in records.values()}
    if len(kinds) != 1:
        raise ValueError(f"{record_path!r} matches records of several benchmarks ({', '.join(sorted(kinds))}); "
                         "a table across records needs one")
    return ACROSS[kinds.pop()](records)


def regenerate(text: str) -> str:
    """The Markdown text with every marked table generated afresh from its record."""
    for record_path in MARKER.findall(text):
        text = splice(text, f"{START}{record_path} -->", END, render(record_path))
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__.splitlines()[0])
    p.add_argument("docs", nargs="*", type=Path, default=[SPEED_DOC], help="Markdown files (default docs/speed.md)")
    p.add_argument("--write", action="store_true", help="rewrite the marked tables in place")
    args = p.parse_args(argv)
    stale = []
    for doc in args.docs:
        text = doc.read_text()
        fresh = regenerate(text)
        for record_path in MARKER.findall(text):
            print(f"{doc}: {record_path}\n{render(record_path)}\n")
        if fresh != text:
            if args.write:
                doc.write_text(fresh)
                print(f"{doc}: rewritten", file=sys.stderr)
            else:
                stale.append(str(doc))
    if stale:
        print(f"stale tables in {', '.join(stale)}: run python -m benchmarks.tables --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
