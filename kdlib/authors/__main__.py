"""`python -m kdlib.authors`: the original authors' 18 networks evaluated, the paper-scale measures and verdicts.

    python -m kdlib.authors [--data SRC] [--device auto] [--json PATH]

Evaluates every network on the full CIFAR-100 test set of the data source (cached after the first
time), checks each against its logged test accuracy, and prints the measures of protocol §10 and the
verdicts on the paper's claims these networks can speak to. --json also writes them: `networks` (a
list, each with `test_acc` and `logged_test_acc`), `teacher_pairs`, `students`, `partition`, `cka`,
`calibration`, `lines` and `verdicts`. The exit status is 1 when a network's accuracy differs from its
log by more than 0.01 points (the data is then not CIFAR-100's exact pixels).
"""

import argparse
import json
import sys

from kdlib import data as kdata
from kdlib import paper_scale, study
from kdlib.parameters import Parameters
from kdlib.verdicts import show

TOLERANCE = 1e-4  # 0.01 points: the logs give accuracies to two decimals of a percent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kdlib.authors",
                                description="The original authors' networks (gnosis at commit da81dad), evaluated "
                                            "on CIFAR-100: the paper scale without a GPU.")
    Parameters.add_arguments(p, ("data", "device"))
    p.add_argument("--json", help="also write everything here as JSON")
    args = p.parse_args(argv)
    params = Parameters.from_arguments(args)
    dataset = kdata.load(kdata.DataSpec(source=params.source))
    ps = paper_scale.open_paper_scale(dataset, params.device)
    networks = paper_scale.network_table(ps)
    print(f"The authors' networks on {dataset.describe()}:")
    for n in networks:
        print(f"  {n['network']:<28} test accuracy {100 * n['test_acc']:6.2f} %, logged {100 * n['logged_test_acc']:6.2f} %"
              f"  (NLL {n['test_nll']:.3f}, ECE {n['test_ece']:.3f})")
    off = [n["network"] for n in networks if abs(n["test_acc"] - n["logged_test_acc"]) > TOLERANCE]
    measures = {"teacher_pairs": paper_scale.teacher_pairs(ps), "students": paper_scale.student_agreement(ps),
                "partition": paper_scale.partition(ps), "cka": paper_scale.cka(ps),
                "calibration": paper_scale.calibration(ps), "lines": paper_scale.lines(ps)}
    pairs = [x["agreement"] for x in measures["teacher_pairs"]]
    print(f"\n{len(pairs)} pairs of independent teachers agree on {100 * min(pairs):.2f} to {100 * max(pairs):.2f} % "
          "of the test images.")
    for s in measures["students"]:
        print(f"  {s['student']:<28} agrees {100 * s['agreement']:.2f} % with its teacher(s), "
              f"{100 * s['unseen_agreement']:.2f} % with the {s['unseen_teachers']} it never saw")
    for line in measures["lines"]:
        print(f"  line, {line['line']} ({line['a']} -> {line['b']}): barrier {line['barrier']:.3f} nats")
    runs = study.StudyRuns(dataset.test.y.numpy(), {"P1": ps})
    verdicts = study.paper_scale_claims(runs)
    print("\nThe paper's claims on the authors' networks (the paper scale; 2 students per setting):")
    show(verdicts)
    if args.json:
        record = {"data": dataset.describe(), "networks": networks, **measures,
                  "verdicts": [v.to_json() for v in verdicts]}
        with open(args.json, "w") as f:
            f.write(json.dumps(record, indent=1, allow_nan=False) + "\n")
    if off:
        print(f"\nkdlib.authors: {', '.join(off)} differ(s) from the logged test accuracy by more than 0.01 points",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
