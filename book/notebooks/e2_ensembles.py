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
# # E2 · Ensemble distillation
#
# One student learns from the averaged prediction of the first $m$ teachers,
# $z_t = \log \frac1m \sum_i \mathrm{softmax}(z_i)$. An ensemble is more accurate than any member,
# so here the teacher is stronger than a single network of the student's size. The paper found that
# students of larger ensembles agree more with their teacher, while still falling short of it.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
seed_base = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown

from kdlib import experiments as ex
from kdlib import plans
from kdlib import study
from kdlib import tables
from kdlib.claims import text
from kdlib.parameters import Parameters
from kdlib.reference import STUDY

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
teachers = exp.run(plans.teachers(exp.scale))
students = exp.run(plans.ensemble_specs(exp.scale))  # m -> students (seeds)

# %% [markdown]
# Per ensemble size, the ensemble's test accuracy and its students' accuracy, agreement with the
# ensemble and KL (mean ± std over seeds), beside the study's single students at full scale
# (ensemble / student / agreement / KL).

# %%
rows = []
for m, runs in students.items():
    ref = STUDY["e2"].get(m)
    rows.append({"teachers (m)": m, "students": len(runs), "ensemble acc (%)": tables.fmt_metric(runs[:1], "teacher_test_acc", 100),
                 "student acc (%)": tables.fmt_metric(runs, "test_acc", 100), "agreement (%)": tables.fmt_metric(runs, "test_agreement", 100),
                 "KL(t || s)": tables.fmt_metric(runs, "test_kl", 1, 3),
                 "study": "{:.2f} / {:.2f} / {:.2f} / {:.3f}".format(*ref) if ref else ""})
pd.DataFrame(rows).set_index("teachers (m)")

# %% [markdown]
# The same numbers as curves: look at whether the student's accuracy follows the ensemble's up,
# and whether agreement rises while the KL falls.

# %%
ms = list(students)
mean = {k: [tables.mean_metric(students[m], k) for m in ms]
        for k in ("teacher_test_acc", "test_acc", "test_agreement", "test_kl")}
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
a1.plot(ms, [100 * v for v in mean["teacher_test_acc"]], "o-", label="teacher ensemble")
a1.plot(ms, [100 * v for v in mean["test_acc"]], "s-", label="student")
a1.set(xlabel="ensemble size m", ylabel="test accuracy (%)", xticks=ms, title="accuracy")
a1.legend()
a2.plot(ms, [100 * v for v in mean["test_agreement"]], "o-", c="C2")
a2.set(xlabel="ensemble size m", ylabel="agreement (%)", xticks=ms, title="agreement with the ensemble")
a3 = a2.twinx()
a3.plot(ms, mean["test_kl"], "s--", c="C3")
a3.set_ylabel("KL (nats)", color="C3")
fig.tight_layout()

# %% tags=["hide-input"]
s1, s5 = STUDY["e2"][1], STUDY["e2"][5]  # (ensemble acc, student acc, agreement, KL), %
gap = 100 * (mean["test_acc"][-1] - mean["teacher_test_acc"][-1])
Markdown(f"""
From {ms[0]} to {ms[-1]} teachers the teacher's accuracy moves from {100 * mean['teacher_test_acc'][0]:.2f} % to
{100 * mean['teacher_test_acc'][-1]:.2f} %, the students' from {100 * mean['test_acc'][0]:.2f} % to
{100 * mean['test_acc'][-1]:.2f} %, and their agreement from {100 * mean['test_agreement'][0]:.2f} % to
{100 * mean['test_agreement'][-1]:.2f} %. The students of the largest ensemble are {tables.points(gap)} than
their teacher in accuracy. In the study at full scale the student of five teachers stayed below its
ensemble ({s5[1]:.2f} % vs {s5[0]:.2f} %) while agreement rose with m, from {s1[2]:.2f} % (m = 1) to
{s5[2]:.2f} % (m = 5).
""")

# %% [markdown]
# ## Verdict

# %% tags=["hide-input"]
Markdown(text.markdown(study.chapter_verdicts(exp, "E2")))
