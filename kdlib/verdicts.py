"""`python -m kdlib.claims` / `kdlib-claims`: the study's verdicts on the runs cached for a scale.

    python -m kdlib.claims --scale reduced [--data SRC] [--device auto] [--seed-base N] [--json PATH]
                           [--cached-only]

The paper's claims at the scale's runs, the same claims on the original authors' networks (the paper
scale, protocol §10, marked as such), and the questions beyond the paper. Nothing trains: every run
the claims read (kdlib.study) must be in the run cache (`make report` puts them there); a missing one
is listed and the exit status is 1. With --cached-only (a build still running, or interrupted), the
claims whose runs are all cached are judged and the others listed with the runs their chapters lack.
The authors' networks are evaluated if their evaluation is not cached yet. Bad arguments exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from kdlib import study
from kdlib.claims import HOLDS, power
from kdlib.execute import MissingRunsError
from kdlib.experiments import open_experiment
from kdlib.parameters import Parameters

# how the verdicts on the original authors' networks are marked in the JSON record
PAPER_SCALE = "paper: the original authors' networks (full CIFAR-100, 2 students per setting)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kdlib.claims",
                                description="The verdicts of the paper's claims (and of the questions beyond it) on "
                                            "the runs cached for a scale (nothing is trained).")
    Parameters.add_arguments(p, ("scale", "data", "device", "seed_base"))
    p.add_argument("--json", type=Path, help="also write the verdicts here as JSON")
    p.add_argument("--cached-only", action="store_true",
                   help="judge only the claims whose runs are all in the cache (a build still running or "
                        "interrupted) and list the others with the runs they lack, instead of failing")
    return p


def show(verdicts) -> None:
    """Each verdict, its parts and why, as the command prints them."""
    for v in verdicts:
        print(f"[{v.verdict}] {v.experiment}: {v.claim}" + (f" (speaks of {v.scope})" if v.scope else ""))
        for p in v.parts:
            delta = f", δ {p.effect.delta:g} (threshold {p.threshold:g})" if p.effect.delta else ""
            finding = f"; {p.finding()}" if p.finding() else ""
            print(f"    {p.verdict:>13}: {p.name}: {p.text()}; boundary {p.boundary:g}{delta}, claimed {p.claimed}; "
                  f"{p.noise_text}{finding}")
        if v.why:
            print(f"    why: {v.why}")


def record_of(verdict) -> dict:
    """A verdict as JSON, each part with what would decide it at its declared planning effects
    (`to_decide`: kdlib.claims.power.plans_json), as the appendix's table gives it."""
    out = verdict.to_json()
    for part, record in zip(verdict.parts, out["parts"]):
        record["to_decide"] = power.plans_json(part)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    params = Parameters.from_arguments(args)
    chapters = [*study.TRAINING, "P1"]
    try:
        exp = open_experiment(params, train=False)
        runs, missing = study.collect_cached(exp, chapters) if args.cached_only else (study.collect(exp, chapters), {})
        parts = {part: study.judgeable(runs, part) for part in (study.EXPERIMENTS, study.PAPER_SCALE, study.BEYOND)}
        verdicts, at_paper_scale, questions = ([q.judge(runs) for q in ready] for ready, _ in parts.values())
    except (ValueError, FileNotFoundError) as e:
        parser().error(str(e))
    except MissingRunsError as e:
        print(f"kdlib.claims: {e}", file=sys.stderr)
        return 1
    not_judged = [{"id": q.id, "missing_runs": {c: missing[c] for c in study.reads([q]) if c in missing}}
                  for _, waiting in parts.values() for q in waiting]
    show(verdicts)
    print("\nAt the paper scale, on the original authors' networks (protocol §10; 2 students per setting):")
    show(at_paper_scale)
    print("\nBeyond the paper (protocol §9: questions the study left open; our verdicts, not the paper's):")
    show(questions)
    if not_judged:
        print("\nNot judged, their runs not all cached yet: " + "; ".join(
            f"{q['id']} ({', '.join(f'{c}: {n} runs missing' for c, n in q['missing_runs'].items())})"
            for q in not_judged) + ".")
    held = [sum(v.verdict == HOLDS for v in vs) for vs in (verdicts, questions)]
    of = [f"{len(vs)}" + (f" judged (of {len(vs) + len(parts[p][1])})" if parts[p][1] else "")
          for vs, p in ((verdicts, study.EXPERIMENTS), (questions, study.BEYOND))]
    print(f"\n{held[0]} of {of[0]} claims hold at the {params.scale!r} scale; beyond the paper, {held[1]} of {of[1]}.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"scale": params.scale, "seed_base": params.seed_base, "data": exp.dataset.describe(),
                  "complete": not not_judged,
                  "claims": [record_of(v) for v in verdicts],
                  "paper_scale": [{**record_of(v), "scale": PAPER_SCALE} for v in at_paper_scale],
                  "beyond": [record_of(v) for v in questions], "not_judged": not_judged}
        args.json.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
