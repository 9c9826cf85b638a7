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
# # B5 · Does calibration transfer?
#
# A network is calibrated when its confidence matches its accuracy: of the images it gives 70 %
# to, it gets 70 % right. The study we replicate ends on the worry that "calibration properties do
# not transfer well through distillation", from the students' high KL and ECE, but never measured a
# transfer. Here we do: when a teacher is better calibrated, is its student too? Ensembles give us
# teachers of different calibration with everything else fixed (E2's students share a recipe and,
# seed by seed, their initial weights and data order), so we ask how much of a change in the
# teacher's calibration error reaches its students. Two measures of it appear below: the familiar
# expected calibration error (ECE, protocol §5), and the one the verdict uses, the part of the test
# NLL that temperature scaling would remove (the verdict's section says why).
#
# This chapter trains nothing: its verdict reads the teachers of E0 and the students of E2 (whose m = 1
# students are E1's), its last figure the runs of every chapter.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
seed_base = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown

from kdlib import experiments as ex
from kdlib import metrics, plots, study, tables
from kdlib.claims import beyond, text
from kdlib.claims.evidence import teacher_logits
from kdlib.parameters import Parameters

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
runs = study.collect(exp)  # E2's runs for the verdict, every chapter's for the last figure
labels = torch.as_tensor(runs.labels)
sizes = sorted(runs["E2"])

# %% [markdown]
# ## Calibration by ensemble size
#
# The teacher of the students at m is the average prediction of the first m teachers; each row
# gives its calibration error (the part of its test NLL that temperature scaling removes, in nats:
# what the verdict's slope is computed from) and its test ECE, the same for its students (mean ±
# std over seeds), and both accuracies.

# %% tags=["hide-input"]
rows = []
for m in sizes:
    t = teacher_logits(runs["E0"][:m])
    students = runs["E2"][m]
    rows.append({"ensemble size m": m, "teacher's calibration error": metrics.calibration_gap(t, labels).mean().item(),
                 "students' calibration error": tables.fmt(list(beyond.calibration_gaps(students, runs.labels).mean(1)),
                                                           digits=3),
                 "teacher ECE": metrics.ece(t, labels),
                 "students' ECE": tables.fmt(list(beyond.ece_per_run(students, runs.labels)), digits=3),
                 "teacher accuracy (%)": 100 * metrics.accuracy(t, labels),
                 "students' accuracy (%)": tables.fmt_metric(students, "test_acc", 100), "students": len(students)})
pd.DataFrame(rows).set_index("ensemble size m").round(3)

# %% [markdown]
# ## Reliability diagrams
#
# Accuracy against confidence in ten equal-width bins; a calibrated network lies on the diagonal,
# an overconfident one below it. Each marker's size is its bin's share of the test images. Left:
# teacher 0 and its student of seed 0; right: the largest ensemble and its student of seed 0.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4), squeeze=False)
for ax, m in zip(axes[0], sizes):
    student = runs["E2"][m][0]
    name = "teacher 0" if m == 1 else f"ensemble of {m}"
    plots.reliability_diagram(ax, teacher_logits(runs["E0"][:m]), runs.labels, name, "tab:blue")
    plots.reliability_diagram(ax, student.test_logits(), runs.labels, f"its student (seed {student.spec.seed})",
                              "tab:orange")
    ax.set_title(f"m = {m}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()

# %% [markdown]
# ## Every student against its teacher
#
# The same question asked of every student the report trains (E1-E6, B1-B3), each against the teacher it
# learned from. This view mixes recipes, temperatures and initialisations, so it is shown, not
# judged: the verdict below rests on E2's comparison, where only the teacher changes.

# %% tags=["hide-input"]
pairs = study.students(runs)
fig, ax = plt.subplots(figsize=(6, 4.2))
experiments = sorted({p.setting.split()[0] for p in pairs})
colours = dict(zip(experiments, plt.get_cmap("tab10").colors))
for e in experiments:
    pts = [(metrics.ece(teacher_logits(p.teachers), torch.as_tensor(p.labels)),
            metrics.ece(p.run.test_logits(), torch.as_tensor(p.labels))) for p in pairs if p.setting.split()[0] == e]
    ax.scatter(*zip(*pts), s=26, color=colours[e], label=e, alpha=0.85)
lim = ax.get_xlim()[0], max(ax.get_xlim()[1], ax.get_ylim()[1])
ax.plot(lim, lim, ":", c="0.6", lw=1)
ax.set(xlabel="teacher's test ECE", ylabel="student's test ECE")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Verdict
#
# Declared before these numbers were computed (protocol §9): the slope of the students' calibration
# error on their teachers' across ensemble sizes must lie below 0.5 (less than half of the teacher's
# change reaches the student) for the claim to hold, and above it for the claim to fail. The
# calibration error here is not the ECE of the tables above but the calibration part of the test NLL,
# what temperature scaling would remove: the binned ECE of a few thousand images has a floor that
# compresses a well-calibrated student's change and biased the slope towards "holds". The seeds are
# paired across sizes; the teachers are fixed, and the test images are noise for both.

# %% tags=["hide-input"]
Markdown(text.markdown(study.chapter_verdicts(exp, "B5")))
