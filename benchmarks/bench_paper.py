"""Paper-scale timing on one device: how long a 300-epoch distillation and the whole `paper` scale take.

    python -m benchmarks.bench_paper --device cuda --out DIR [--data PATH] [--concurrent 4] [--compile]
    python -m benchmarks.bench_paper --device cpu --dry --out DIR     # every stage, tiny, on CPU

Run by scripts/gpu_check.sh on a CUDA machine. It times the pieces of paper-scale runs on the full
50,000-image training set, a few epochs each, and extrapolates (formulas in the written summary):
- `epochs`: full-data epochs of `kdlib.train.train_epoch`, the loop get_run trains with, at the
  run precision (bf16 on CUDA): a teacher (batch 256), students (batch 128) of 1 and 5 teachers on
  the fly, of a logit cache (BatchNorm and LayerNorm models); the first epoch is warm-up;
- `cache_build`: a real logit-cache build for 5 teachers on --build-images images;
- `evaluation`: one test-set evaluation and one student's final metrics (5 teachers, fp32);
- `checks` (CUDA): no host synchronisation inside an epoch (torch.cuda.set_sync_debug_mode
  "error"), and norm layers' dtypes under bf16 autocast;
- `get_run`: one short teacher and student through get_run end to end (1 epoch each);
- `concurrent`: --concurrent processes training cached students at once: the aggregate speed-up
  one GPU gives to independent runs (the whole paper scale is many small runs);
- `compile` (--compile): a cached student epoch with torch.compile, after its compile warm-up.
Teachers are untrained networks: they cost the same as trained ones. Logit caches in the epoch
timings hold random values of the right shape (a gather costs the same whatever it reads).
Results go to DIR/paper.json after every stage (a failed stage is recorded and the others still
run; the exit status is 1 if any failed) and DIR/paper.md at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from benchmarks.common import (REPO, default_data, describe_data, load_data, machine, publish, random_logit_cache,
                               stamp, synchronize, teacher_members, time_cache_build)
from kdlib import data as kdata
from kdlib import evaluate as ev
from kdlib import logit_cache as lcache
from kdlib import study
from kdlib import scales
from kdlib.cache import RunCache
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from kdlib.losses import Teacher
from kdlib.models import build_model
from kdlib.device import CHANNELS_LAST, autocast, backend_flags, resolve_device, resolve_precision
from kdlib.evaluate import final_metrics
from kdlib.execute import get_run
from kdlib.train import TrainSet, make_optimizer, train_epoch

PAPER = scales.get_scale("paper")
MAX_MEMBERS = 5
DRY_BATCH = 16  # --dry: batches small enough for its 64-100 training images


# ---------------------------------------------------------------------------------------------
# Pieces

def paper_data(source: str, dry: bool) -> kdata.Dataset:
    """The full CIFAR-100 (dry: 1 train and 1 test image per class), or synthetic pixels (dry: 64;
    the test set their first fifth)."""
    spec = kdata.DataSpec(source=source, train_per_class=1, test_per_class=1) if dry else PAPER.data_spec(source)
    n = 64 if dry else 50_000
    return load_data(spec, synthetic_images=n, synthetic_test_images=n // 5)


def members(n: int, device: torch.device, norm: str = "batch") -> list:
    return teacher_members(n, device, norm)


def random_cache(n_images: int, device: torch.device) -> lcache.LogitCache:
    return random_logit_cache(n_images, device, chunk=1000)  # in chunks: no 3 GB float32 temporary


def time_epochs(spec, dataset, device, precision, epochs, *, teacher=None, store=None, compile=False,
                warmup=1) -> dict:
    """Seconds per full-data epoch of train_epoch (median over `epochs` after `warmup`)."""
    data = TrainSet(dataset.train, device)
    model = build_model(spec.norm, 0).to(device, memory_format=CHANNELS_LAST)
    opt = make_optimizer(model, spec.recipe, lr=0.05)
    forward = torch.compile(model) if compile else model
    times = []
    for e in range(warmup + epochs):
        batches = data.epoch(e, spec.recipe.batch_size)
        synchronize(device)
        t0 = time.perf_counter()
        loss_sum, _ = train_epoch(forward, opt, spec, batches, teacher=teacher, cached_teacher=store,
                                  precision=precision)
        loss_sum.item()
        synchronize(device)
        if e >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    epoch_s = times[len(times) // 2]
    steps, bs = batches.steps, batches.batch_size
    return {"epoch_seconds": round(epoch_s, 3), "all_seconds": [round(t, 3) for t in times],
            "images_per_s": round(steps * bs / epoch_s, 1), "steps": steps}


def teacher_spec(dry: bool = False) -> TeacherSpec:
    return TeacherSpec(recipe=PAPER.teacher if not dry else Recipe(epochs=1, batch_size=DRY_BATCH, lr=0.1))


def student_spec(m: int, norm: str = "batch", mixup: bool = False, dry: bool = False) -> StudentSpec:
    """A paper-scale student of m teachers (300 epochs, batch 128; dry: batch 32)."""
    recipe = Recipe(epochs=PAPER.student.epochs, batch_size=DRY_BATCH if dry else PAPER.student.batch_size,
                    lr=PAPER.student.lr, eval_every=PAPER.student.eval_every, mixup=mixup)
    return StudentSpec(recipe=recipe, teachers=(TeacherSpec(recipe=recipe, norm=norm),) * m, norm=norm)


def stage_epochs(ctx) -> dict:
    device, precision, ds, n_ep = ctx["device"], ctx["precision"], ctx["dataset"], ctx["epochs"]
    dry = ctx["dry"]
    out = {"teacher": time_epochs(teacher_spec(dry), ds, device, precision, n_ep)}
    for m in (1, MAX_MEMBERS):
        out[f"student, {m} on the fly"] = time_epochs(student_spec(m, dry=dry), ds, device, precision, n_ep,
                                                      teacher=Teacher(members(m, device)))
    store = random_cache(len(ds.train), device)
    out["student, cache"] = time_epochs(student_spec(MAX_MEMBERS, dry=dry), ds, device, precision, n_ep,
                                        store=store)
    out["student, cache, layer norm"] = time_epochs(student_spec(MAX_MEMBERS, "layer", dry=dry), ds, device,
                                                    precision, n_ep, store=store)
    del store
    return out


def stage_cache_build(ctx) -> dict:
    device, precision, ds = ctx["device"], ctx["precision"], ctx["dataset"]
    n = min(ctx["build_images"], len(ds.train))
    padded = kdata.pad(ds.train.x[:n].to(device))
    teacher = Teacher(members(MAX_MEMBERS, device))
    lcache.build(teacher, padded[:64], context=autocast(device, precision))  # warm-up
    seconds, rate = time_cache_build(teacher, padded, MAX_MEMBERS, device, precision)
    return {"images": n, "members": MAX_MEMBERS, "seconds": round(seconds, 2),
            "member_forwards_per_s": round(rate, 1),
            "full_build_seconds_per_member": round(len(ds.train) * kdata.NUM_VIEWS / rate, 1)}


def stage_evaluation(ctx) -> dict:
    device, ds = ctx["device"], ctx["dataset"]
    model = build_model("batch", 0).to(device, memory_format=CHANNELS_LAST)
    teacher = Teacher(members(MAX_MEMBERS, device))
    test_x = ds.test.x.to(device)
    ev.predict(model, test_x[:1000], device)  # warm-up
    synchronize(device)
    t0 = time.perf_counter()
    ev.predict(model, test_x, device)
    synchronize(device)
    test_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    final_metrics(model, teacher, ds, device, 0.0)
    synchronize(device)
    return {"test_eval_seconds": round(test_eval, 3),
            "final_metrics_seconds_5_teachers": round(time.perf_counter() - t0, 2)}


def stage_checks(ctx) -> dict:
    device, ds = ctx["device"], ctx["dataset"]
    if device.type != "cuda":
        return {"skipped": "needs CUDA"}
    spec = student_spec(MAX_MEMBERS, mixup=True, dry=ctx["dry"])  # MixUp, teachers on the fly: most moving parts
    teacher = Teacher(members(MAX_MEMBERS, device))
    data = TrainSet(kdata.Split(ds.train.x[:1024], ds.train.y[:1024]), device)
    model = build_model("batch", 0).to(device, memory_format=CHANNELS_LAST)
    opt = make_optimizer(model, spec.recipe, lr=0.05)
    bs = spec.recipe.batch_size
    train_epoch(model, opt, spec, data.epoch(0, bs, 2), teacher=teacher, precision="bf16")  # warm-up: cuDNN set-up
    synchronize(device)
    out = {}
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_epoch(model, opt, spec, data.epoch(1, bs, 4), teacher=teacher, precision="bf16")
        out["no_host_sync_in_epoch"] = True
    except RuntimeError as e:
        out["no_host_sync_in_epoch"] = False
        out["sync_error"] = str(e)[:500]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for norm in ("batch", "layer"):
        m = build_model(norm, 0).to(device, memory_format=CHANNELS_LAST)
        seen = set()
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                mod.register_forward_hook(lambda mod, i, o: seen.add(
                    (str(i[0].dtype), str(o.dtype), str(mod.weight.dtype))))
        with autocast(device, "bf16"):
            m(torch.randn(8, 3, 32, 32, device=device).contiguous(memory_format=CHANNELS_LAST))
        out[f"{norm} norm (input, output, weight) dtypes under bf16 autocast"] = sorted(seen)
    return out


def stage_get_run(ctx) -> dict:
    device, ds = ctx["device"], ctx["dataset"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = RunCache(tmp)
        bt, bs = (DRY_BATCH, DRY_BATCH) if ctx["dry"] else (PAPER.teacher.batch_size, PAPER.student.batch_size)
        t = TeacherSpec(recipe=Recipe(epochs=1, batch_size=bt, lr=0.1))
        s = StudentSpec(recipe=Recipe(epochs=1, batch_size=bs, lr=0.05), teachers=(t,))
        t0 = time.perf_counter()
        run = get_run(s, ds, cache, device=device, progress=False)
        seconds = time.perf_counter() - t0
        ok = all(math.isfinite(v) for v in run.metrics.values() if isinstance(v, float))
        return {"seconds_teacher_and_student": round(seconds, 1), "precision": run.info["precision"],
                "variant": run.variant, "metrics_finite": ok, "test_agreement": run.metrics["test_agreement"]}


def stage_concurrent(ctx) -> dict:
    k = ctx["concurrent"]
    if k < 2:
        return {"skipped": "--concurrent < 2"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "benchmarks.bench_paper", "--worker", "--device", str(ctx["device"]),
               "--data", ctx["source"], "--epochs", str(ctx["epochs"]), "--threads", str(torch.get_num_threads()),
               "--precision", ctx["precision"]] + (["--dry"] if ctx["dry"] else [])
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd + ["--out", f"{tmp}/{i}"], cwd=REPO) for i in range(k)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        if any(codes):
            raise RuntimeError(f"concurrent workers exited with {codes}")
        rates = [json.loads(Path(f"{tmp}/{i}/worker.json").read_text())["images_per_s"] for i in range(k)]
    single = ctx["results"].get("epochs", {}).get("student, cache", {}).get("images_per_s")
    out = {"processes": k, "images_per_s_each": rates, "images_per_s_total": round(sum(rates), 1),
           "wall_seconds": round(wall, 1)}
    if single:
        out["speedup_vs_one_process"] = round(sum(rates) / single, 2)
    return out


def stage_compile(ctx) -> dict:
    if not ctx["compile"]:
        return {"skipped": "pass --compile"}
    device, precision, ds = ctx["device"], ctx["precision"], ctx["dataset"]
    store = random_cache(len(ds.train), device)
    t0 = time.perf_counter()
    out = time_epochs(student_spec(MAX_MEMBERS, dry=ctx["dry"]), ds, device, precision, ctx["epochs"],
                      store=store, compile=True)
    out["including_compile_seconds"] = round(time.perf_counter() - t0, 1)
    return out


STAGES = {"epochs": stage_epochs, "cache_build": stage_cache_build, "evaluation": stage_evaluation,
          "checks": stage_checks, "get_run": stage_get_run, "concurrent": stage_concurrent,
          "compile": stage_compile}


# ---------------------------------------------------------------------------------------------
# Extrapolation

def paper_plan() -> tuple[list, str]:
    """The runs of the `paper` scale (kdlib.study.all_specs) and where they come from."""
    return list(study.all_specs(PAPER)), "kdlib.study.all_specs(paper)"


def depth_factor(spec) -> float:
    """A PreResNet-(6n + 2)'s cost relative to PreResNet-20's, by its blocks: n / 3."""
    return (spec.depth - 2) / 18


def final_forwards(n_train: int, n_test: int, members: int, stored_teachers: bool = True) -> int:
    """Forward passes of a run's final metrics (kdlib.evaluate.final_metrics; members = 0: a teacher run).

    The model on test, train and augmented train. A student's teachers add nothing when their runs
    stored those logits (`stored_teachers`, what get_run does), else each member runs on the same
    three. CKA's 1,000 images are left out.
    """
    if members == 0 or stored_teachers:
        return n_test + 2 * n_train
    return (1 + members) * (n_test + 2 * n_train)


def extrapolate(results: dict, n_train: int, n_test: int) -> dict:
    """Minutes for one 300-epoch distillation and hours for the whole paper scale, from the stages.

    run = epochs x epoch time + (epochs / eval_every) test evaluations + final metrics; students
    whose teachers' logit cache is not stored yet also pay its build (once per set of teachers).
    """
    ep, build, evals = results["epochs"], results["cache_build"], results["evaluation"]
    per_eval = evals["test_eval_seconds"]
    per_forward = evals["final_metrics_seconds_5_teachers"] / final_forwards(n_train, n_test, MAX_MEMBERS,
                                                                              stored_teachers=False)
    build_member = build["full_build_seconds_per_member"]

    def student_epoch(m, cached, norm):
        if cached:
            key = "student, cache, layer norm" if norm == "layer" else "student, cache"
            return ep[key]["epoch_seconds"]
        t1, t5 = ep["student, 1 on the fly"]["epoch_seconds"], ep["student, 5 on the fly"]["epoch_seconds"]
        return t1 + (t5 - t1) * (m - 1) / (MAX_MEMBERS - 1)  # linear in the members run per step

    def run_seconds(spec, cached: bool | None = None) -> tuple[float, bool]:
        """Seconds for the run; students use the logit cache as get_run's "auto" would, unless told."""
        r = spec.recipe
        common = r.epochs // r.eval_every * per_eval
        if isinstance(spec, TeacherSpec):
            # a deeper teacher (B2's PreResNet-56) is scaled by its blocks, 9 per stage against 3: an
            # estimate (the convolutions dominate), not a measurement
            return (depth_factor(spec) * r.epochs * ep["teacher"]["epoch_seconds"] + common
                    + per_forward * final_forwards(n_train, n_test, 0)), False
        m = len(spec.teachers)
        if cached is None:
            cached = lcache.use_logit_cache("auto", r.epochs, r.mixup)
        return (r.epochs * student_epoch(m, cached, spec.norm) + common
                + per_forward * final_forwards(n_train, n_test, m)), cached

    one = {}
    for m in (1, MAX_MEMBERS):
        spec = student_spec(m)
        fly, cached = run_seconds(spec, cached=False)[0], run_seconds(spec, cached=True)[0]
        one[f"{m} teacher{'s' if m > 1 else ''}"] = {
            "on_the_fly_minutes": round(fly / 60, 1),
            "cache_minutes_incl_build": round((cached + m * build_member) / 60, 1),
            "cache_minutes_cache_stored": round(cached / 60, 1)}

    plan, plan_source = paper_plan()
    total, caches = 0.0, set()
    for spec in plan:
        seconds, cached = run_seconds(spec)
        total += seconds
        if cached:
            caches.add(tuple(spec.teachers))
    total += sum(sum(depth_factor(m) for m in t) * build_member for t in caches)
    conc = results.get("concurrent", {})
    speedup = conc.get("speedup_vs_one_process")
    return {"one_300_epoch_distillation": one, "paper_scale": {
        "plan": plan_source, "runs": len(plan), "logit_caches": len(caches),
        "sequential_hours": round(total / 3600, 2),
        "concurrent_hours": round(total / 3600 / speedup, 2) if speedup else None,
        "concurrent_processes": conc.get("processes")}}


def markdown(report: dict) -> str:
    m, r = report["machine"], report["results"]
    lines = [f"# GPU check: {m.get('gpu', m['device'])}", "",
             f"{report['when']}; torch {m['torch']}; precision {report['precision']}; {report['data']}", "",
             "| stage | figure |", "|---|---|"]
    for name, ep in r.get("epochs", {}).items():
        lines.append(f"| epoch: {name} | {ep['epoch_seconds']:.2f} s, {ep['images_per_s']:,.0f} img/s |")
    if "cache_build" in r:
        b = r["cache_build"]
        lines.append(f"| logit cache build | {b['member_forwards_per_s']:,.0f} teacher forwards/s; "
                     f"{b['full_build_seconds_per_member']:.0f} s per member for the full training set |")
    for name, value in r.get("evaluation", {}).items():
        lines.append(f"| evaluation: {name} | {value} |")
    for stage in ("checks", "get_run", "concurrent", "compile"):
        if stage in r:
            lines.append(f"| {stage} | {json.dumps(r[stage])} |")
    if "extrapolation" in report:
        x = report["extrapolation"]
        lines += ["", "## Extrapolated", "",
                  "300 epochs x epoch time + 30 test evaluations + final metrics (+ building the logit cache "
                  "for the first student of a set of teachers):", ""]
        for name, v in x["one_300_epoch_distillation"].items():
            lines.append(f"- 300-epoch distillation from {name}: on the fly {v['on_the_fly_minutes']} min; "
                         f"logit cache {v['cache_minutes_incl_build']} min with its build, "
                         f"{v['cache_minutes_cache_stored']} min once stored (target <= 10 min)")
        p = x["paper_scale"]
        lines.append(f"- the whole `paper` scale ({p['runs']} runs from {p['plan']}, {p['logit_caches']} logit "
                     f"caches): {p['sequential_hours']} h one run at a time"
                     + (f", {p['concurrent_hours']} h with {p['concurrent_processes']} runs at once"
                        if p["concurrent_hours"] else "") + " (target <= 1 h)")
    if report["errors"]:
        lines += ["", "## Failed stages", ""] + [f"- {k}: {v.splitlines()[-1]}" for k, v in report["errors"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The command

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=None, help="CIFAR-100 source (default as benchmarks.bench_train)")
    p.add_argument("--out", required=True, help="folder for paper.json and paper.md")
    p.add_argument("--precision", default="auto", help="auto (bf16 on CUDA), fp32 or bf16")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per configuration (after 1 warm-up)")
    p.add_argument("--build-images", type=int, default=1000, help="images for the timed cache build")
    p.add_argument("--concurrent", type=int, default=4, help="processes in the concurrency stage (< 2: skip)")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd student epoch")
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--dry", action="store_true", help="tiny data and budgets: checks the code paths (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dry:
        args.epochs, args.build_images = 1, min(args.build_images, 2)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    source = args.data or default_data()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = paper_data(source, args.dry)
    ctx = {"device": device, "precision": precision, "dataset": dataset, "epochs": args.epochs, "dry": args.dry,
           "build_images": args.build_images, "concurrent": args.concurrent, "compile": args.compile,
           "source": source, "results": {}}
    if args.worker:  # one of the concurrent processes: a cached student's epochs
        with backend_flags(device, precision):
            r = time_epochs(student_spec(MAX_MEMBERS, dry=args.dry), dataset, device, precision, args.epochs,
                            store=random_cache(len(dataset.train), device))
        (out / "worker.json").write_text(json.dumps(r))
        return 0
    report = {"benchmark": "benchmarks/bench_paper.py", "format": 1,
              "command": "python -m benchmarks.bench_paper " + " ".join(sys.argv[1:]),
              "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **stamp(), "machine": machine(device),
              "precision": precision, "data": describe_data(dataset),
              "dry": args.dry, "results": ctx["results"], "errors": {}, "stage_seconds": {}}
    for name in args.stages:
        t0 = time.perf_counter()
        print(f"[bench_paper] {name} ...", file=sys.stderr, flush=True)
        try:
            with backend_flags(device, precision):
                ctx["results"][name] = STAGES[name](ctx)
        except Exception:  # recorded, reported, and the exit status says so; the other stages still run
            report["errors"][name] = traceback.format_exc()
            print(report["errors"][name], file=sys.stderr)
        report["stage_seconds"][name] = round(time.perf_counter() - t0, 1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        publish(report, out / "paper.json")
    if {"epochs", "cache_build", "evaluation"} <= ctx["results"].keys():
        report["extrapolation"] = extrapolate(ctx["results"], len(dataset.train), len(dataset.test))
    publish(report, out / "paper.json")
    (out / "paper.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
