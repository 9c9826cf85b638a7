# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Appendix · Reproducing this report
#
# The environment this page was built in, the commands that rebuild it, and the compute each
# experiment took. Times are the training and evaluation seconds recorded in each run's cache entry,
# so cached runs report the time they took when they were first trained.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
seed_base = 0

# %%
import platform
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Markdown

import kdlib
from kdlib import experiments as ex
from kdlib import plans, report, study
from kdlib.cache import runs_home
from kdlib.claims import power
from kdlib.device import resolve_device
from kdlib.parameters import Parameters
from kdlib.scales import SEED_STRIDE, probe_table

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
sc = exp.scale

# %% tags=["hide-input"]
Markdown(f"""
| setting | value |
|---|---|
| kdlib | {kdlib.__version__} |
| Python | {platform.python_version()} |
| PyTorch | {torch.__version__} |
| device | {resolve_device(device)} ({torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or 'CPU'}) |
| CPU threads | {torch.get_num_threads()} |
| scale | {sc.name}: {sc.description} |
| data | {exp.dataset.describe()} |
| seed_base | {sc.seed_base} (run seeds {SEED_STRIDE:,} × {sc.seed_base} + the local seed{': the usual ones' if sc.seed_base == 0 else ''}) |
| run cache | `$KDLIB_RUNS`, here {'set' if 'KDLIB_RUNS' in __import__('os').environ else 'the default ' + str(runs_home()).replace(str(__import__('pathlib').Path.home()), '~')} |
""")

# %% [markdown]
# ## Commands
#
# From a fresh clone, `make report` sets up a virtual environment and builds this report at the
# reduced scale (its time is in the tables below); `make report SCALE=paper` runs the full protocol
# (a GPU job), and `make report DATA=path/to/cifar100` names the copy of CIFAR-100 to use (by default
# `kdlib.data.default_source()`: `$KDLIB_DATA`, else the offline copy
# `../shared/data/cifar100-lossless.npz` if there is one, else torchvision's download).
# `make report SEED_BASE=1` repeats every experiment on another draw of seeds, disjoint from the
# usual one. With kdlib installed elsewhere, `kdlib-report --out DIR` takes the same options.
# `python -m kdlib.claims --scale reduced` prints the summary chapter's verdicts from the run cache,
# and `make test` runs the test suite. Runs are cached, so a second build only re-renders.

# %% [markdown]
# ## Compute
#
# The runs each experiment (and each question beyond the paper that trains) uses, how many it
# trained that no earlier one had, and their training and evaluation time as recorded in the run
# cache. B4-B6 train nothing.

# %%
seen, rows = set(), []
for chapter in study.CHAPTERS:  # every chapter that trains, in the report's order
    if chapter.plan is None:
        continue
    runs = plans.flatten(exp.run(chapter.plan(sc)))
    new = list({r.id: r for r in runs if r.id not in seen}.values())
    seen.update(r.id for r in runs)
    rows.append({"experiment": f"{chapter.id} {chapter.title}", "runs used": len({r.id for r in runs}),
                 "new runs": len(new), "train (min)": sum(r.info["train_seconds"] for r in new) / 60,
                 "eval (min)": sum(r.info["eval_seconds"] for r in new) / 60})
cost = pd.DataFrame(rows).set_index("experiment")
cost.loc["total"] = cost.sum()
cost.round(2)

# %% tags=["hide-input"]
all_runs = exp.run(study.all_specs(sc))
Markdown(f"""
A run used by several experiments is counted where it first appears. In all, the report at this scale
rests on {len(seen)} runs and {cost.loc['total', 'train (min)'] + cost.loc['total', 'eval (min)']:.1f} minutes of
training and evaluation on {', '.join(sorted({r.info['device'] for r in all_runs}))}, training in
{' and '.join(sorted({r.info['precision'] for r in all_runs}))} (`precision="auto"`: bf16 autocast where the
hardware computes bf16 natively, fp32 elsewhere; final metrics are always computed in fp32).
""")

# %% [markdown]
# ## Time per notebook
#
# Wall-clock seconds of each notebook in the latest `make report` (`python -m kdlib.report` records
# them in `book/executed/timings.json`), including the training of the runs it was the first to need;
# with every run cached a notebook only reads and draws. This page's own time is recorded after it ran.

# %%
timings = report.read_timings(Path("..") / "executed" / report.TIMINGS)
times = pd.DataFrame([{"notebook": n, "seconds": timings[n]["seconds"], "scale": timings[n]["scale"]}
                      for n in report.NOTEBOOKS if n in timings]).set_index("notebook") if timings else pd.DataFrame()
if not times.empty:
    times.loc["total"] = [times["seconds"].sum(), ""]
times

# %% [markdown]
# ## The runs that would decide each claim
#
# For every part of every claim: its estimate and interval, the seeds per setting these runs have, its
# smallest effect that matters (δ), and how many seeds would decide it with 80 % probability if the
# truth were an effect declared in advance: the one the paper or the study published, and, where δ > 0,
# no effect at all (`kdlib.claims.power.plans`, from the seed and image variance parts these runs
# measured: the images' part stays, the seeds' part shrinks as one over the seeds). Where no number of
# seeds would, the images' part is what bounds it, and the table says how many test images would.
# The questions beyond the paper follow the paper's claims; B4 counts settings, not seeds.

# %% tags=["hide-input"]
every = study.collect(exp)
Markdown(power.power_table([*study.paper_claims(every), *study.questions(every)]))

# %% [markdown]
# ## How this scale was chosen
#
# Candidate CPU scales measured before choosing this one (`python -m benchmarks.probe_scales`, on
# this project's 2-core machine, bf16): each trained two teachers and one student of teacher 0 with
# the candidate's data and recipe. The paper's regime needs teachers that fit their clean training
# set (90 % or more) and students whose agreement has levelled off (a rise of less than a point over
# the last fifth of training); the budget, the whole report in well under an hour on two cores.

# %%
probes = Path("..") / ".." / "docs" / "scale-probes.json"
Markdown(probe_table(probes) if probes.exists() else f"(no probe table at {probes})")
