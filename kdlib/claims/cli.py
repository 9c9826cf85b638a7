"""`python -m kdlib.claims` / `kdlib-claims`: the verdicts on the runs cached for a scale (nothing trains)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    from kdlib.parameters import Parameters
    from kdlib.scales import SCALES

    p = argparse.ArgumentParser(prog="python -m kdlib.claims",
                                description="The verdicts of the paper's claims on the runs cached for a scale "
                                            "(nothing is trained).")
    p.add_argument("--scale", default=Parameters.scale, choices=tuple(SCALES), help="the scale the runs were made at")
    p.add_argument("--data", default=Parameters.data, help="CIFAR-100 source the runs used (default: kdlib.data.default_source(), "
                                              "as `make report` finds it)")
    p.add_argument("--device", default=Parameters.device, help="the device the runs were trained on (auto, cpu, cuda, cuda:N): "
                                                    "it decides 'auto' precision, part of their ids")
    p.add_argument("--seed-base", type=int, default=Parameters.seed_base, help="the draw of seeds the runs used (default 0)")
    p.add_argument("--json", type=Path, help="also write the verdicts here as JSON")
    return p


def show(verdicts) -> None:
    """Each verdict, its parts and why, as the command prints them."""
    for v in verdicts:
        print(f"[{v.verdict}] {v.experiment}: {v.claim}" + (f" (speaks of {v.scope})" if v.scope else ""))
        for p in v.parts:
            print(f"    {p.verdict:>13}: {p.name}: {p.text()}; boundary {p.boundary:g}, claimed {p.claimed}; "
                  f"{p.noise_text}")
        if v.why:
            print(f"    why: {v.why}")


def main(argv: Sequence[str] | None = None) -> int:
    from kdlib import claims
    from kdlib import experiments as ex
    from kdlib.runs import MissingRunsError

    args = parser().parse_args(argv)
    try:
        exp = ex.open_experiment(args.scale, args.data, args.device, seed_base=args.seed_base, train=False)
        runs = claims.collect(exp)
        verdicts, questions = claims.evaluate(runs), claims.questions(runs)
    except (ValueError, FileNotFoundError) as e:
        parser().error(str(e))
    except MissingRunsError as e:
        print(f"kdlib.claims: {e}", file=sys.stderr)
        return 1
    show(verdicts)
    print("\nBeyond the paper (protocol §9: questions the study left open; our verdicts, not the paper's):")
    show(questions)
    held = [sum(v.verdict == claims.HOLDS for v in vs) for vs in (verdicts, questions)]
    print(f"\n{held[0]} of {len(verdicts)} claims hold at the {args.scale!r} scale; beyond the paper, "
          f"{held[1]} of {len(questions)}.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"scale": args.scale, "seed_base": args.seed_base, "data": exp.dataset.describe(),
                  "claims": [v.to_json() for v in verdicts], "beyond": [v.to_json() for v in questions]}
        args.json.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return 0
