"""Runs trained one after another against runs trained at once in local worker processes.

    python -m benchmarks.bench_workers [--data PATH] [--epochs 10] [--json benchmarks/results/workers.json]

Two teachers of the reduced scale (kdlib.scales "reduced": its data and teacher recipe, with
--epochs epochs; seeds 0 and 1), each time in a fresh temporary run cache, by `kdlib.execute.run_all`:
- "serial": workers=1, one run after another in this process, with all of the workers' threads
  (2 x max(1, cpu_count // 2): 2 torch threads on a 2-core CPU);
- "workers": workers=2, both at once in two spawned processes of max(1, cpu_count // 2) torch
  threads each (1 on a 2-core CPU).
Both are timed in the same process, one after the other, end to end as `run_all` is called: the
workers' time includes spawning them (each imports torch and receives the data). Reported: seconds
for each and the throughput ratio serial / workers (> 1: the workers train more runs per hour).
The two give the same run ids; their last bits can differ (the thread counts differ). A third arm
trains the first teacher again with its history measured after every epoch, for the cost of one
history evaluation and its share of a reduced student run ("evaluation").

--data synthetic trains on random pixels of the same size (100 classes, train and test one split):
a smoke test, not a figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import torch

from benchmarks.common import default_data, describe_data, load_data, machine, measure_and_publish, stamp
from kdlib import data as kdata
from kdlib import scales
from kdlib.cache import RunCache
from kdlib.config import TeacherSpec
from kdlib.execute import run_all

SEEDS = (0, 1)


def dataset(source: str, scale: scales.Scale) -> kdata.Dataset:
    """The scale's data; synthetic: as many random images over all 100 classes (at least one each)."""
    per_class = max(1, scale.train_per_class * scale.num_classes // kdata.NUM_CLASSES)
    return load_data(scale.data_spec(source), synthetic_images=per_class * kdata.NUM_CLASSES)


def specs(scale: scales.Scale, epochs: int) -> list[TeacherSpec]:
    recipe = dataclasses.replace(scale.teacher, epochs=epochs, eval_every=min(scale.teacher.eval_every, epochs))
    return [TeacherSpec(recipe=recipe, seed=s) for s in SEEDS]


def timed(teachers, data, workers: int) -> tuple[float, list]:
    with tempfile.TemporaryDirectory(prefix="kdlib-bench-workers-") as root:
        t0 = time.perf_counter()
        runs = run_all(teachers, data, cache=RunCache(root), device="cpu", progress=True, workers=workers)
        seconds = time.perf_counter() - t0
        return seconds, [{"id": r.id, "test_acc": r.metrics["test_acc"], "train_seconds": r.info["train_seconds"],
                          "precision": r.info["precision"]} for r in runs]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="CIFAR-100 source (default: $KDLIB_DATA, else "
                   "../shared/data/cifar100-lossless.npz beside the repository, else synthetic pixels)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of each teacher (default 10)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def run(args) -> dict:
    scale = scales.get_scale("reduced")
    source = args.data or default_data()
    data = dataset(source, scale)
    teachers = specs(scale, args.epochs)
    cpus = os.cpu_count() or 1
    worker_threads = max(1, cpus // 2)  # what run_all gives each of 2 workers
    serial_threads = 2 * worker_threads
    threads_before = torch.get_num_threads()
    torch.set_num_threads(serial_threads)
    try:
        serial, serial_runs = timed(teachers, data, workers=1)
    finally:
        torch.set_num_threads(threads_before)
    print(f"serial: {serial:.1f} s", file=sys.stderr)
    parallel, parallel_runs = timed(teachers, data, workers=2)
    print(f"workers: {parallel:.1f} s", file=sys.stderr)
    if [r["id"] for r in serial_runs] != [r["id"] for r in parallel_runs]:
        raise RuntimeError("the serial and the workers' runs have different ids")
    evaluation = evaluation_cost(scale, data, teachers[0], serial_runs[0], serial_threads)
    return {
        "benchmark": "benchmarks/bench_workers.py", "format": 1,
        "command": "python -m benchmarks.bench_workers " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **stamp(),  # "kdlib", "git_commit" (publish stamps them again, the same)
        "torch": torch.__version__, "cpu_count": cpus, "machine": machine(torch.device("cpu")),
        "data": describe_data(data),
        "settings": {"scale": scale.name, "epochs": args.epochs, "seeds": list(SEEDS),
                     "batch_size": teachers[0].recipe.batch_size, "device": "cpu"},
        "serial": {"workers": 1, "torch_threads": serial_threads, "seconds": round(serial, 2), "runs": serial_runs},
        "workers": {"workers": 2, "torch_threads_each": worker_threads, "seconds": round(parallel, 2),
                    "runs": parallel_runs},
        "throughput_ratio": round(serial / parallel, 3),  # runs per hour, workers over serial
        "evaluation": evaluation,
    }


def evaluation_cost(scale: scales.Scale, data: kdata.Dataset, teacher: TeacherSpec, measured: dict,
                    threads: int) -> dict:
    """The cost of the per-epoch history evaluation: the serial arm's first teacher again, with its
    history measured after every epoch (eval_every=1) instead of only at the start; the extra
    training seconds over the extra evaluations give the seconds of one, and with the reduced
    student recipe's count of them, the share of a student run they take."""
    epochs = teacher.recipe.epochs
    every = dataclasses.replace(teacher, recipe=dataclasses.replace(teacher.recipe, eval_every=1))
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _, (run,) = timed([every], data, workers=1)
    finally:
        torch.set_num_threads(threads_before)
    extra = epochs - 1 - sum(1 for e in range(1, epochs) if e % teacher.recipe.eval_every == 0)
    per_eval = max(0.0, run["train_seconds"] - measured["train_seconds"]) / max(extra, 1)
    per_epoch = measured["train_seconds"] / epochs
    student = scale.student
    evals = 1 + sum(1 for e in range(1, student.epochs) if e % student.eval_every == 0)  # epoch 0 and every k-th
    return {"seconds_per_history_evaluation": round(per_eval, 3), "seconds_per_epoch": round(per_epoch, 3),
            "reduced_student_evaluations": evals,
            "share_of_a_reduced_student_run": round(evals * per_eval / (student.epochs * per_epoch + evals * per_eval), 4)}


def table(report: dict) -> str:
    s, w = report["serial"], report["workers"]
    return "\n".join([
        f"2 reduced-scale teachers, {report['settings']['epochs']} epochs each; {report['data']}",
        f"serial  (workers=1, {s['torch_threads']} torch threads): {s['seconds']:8.1f} s",
        f"workers (workers=2, {w['torch_threads_each']} torch thread(s) each): {w['seconds']:8.1f} s",
        f"throughput ratio (serial / workers): {report['throughput_ratio']:.2f}x",
        f"history evaluation: {report['evaluation']['seconds_per_history_evaluation']:.2f} s each, "
        f"{100 * report['evaluation']['share_of_a_reduced_student_run']:.1f} % of a reduced student run "
        f"({report['evaluation']['reduced_student_evaluations']} of them)",
        f"torch {report['torch']}, {report['cpu_count']} CPUs, kdlib {report['kdlib']}, commit {report['git_commit']}",
    ])


def main(argv=None) -> dict:
    return measure_and_publish(parse_args, run, table, argv)


if __name__ == "__main__":
    main()
