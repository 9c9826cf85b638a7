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
# so here the teacher is strictly stronger than a single student can easily be.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown

from kdlib import experiments as ex
from kdlib.reference import STUDY

exp = ex.open_experiment(scale, data, device, executor)
students = exp.run(ex.ensemble_specs(exp.scale))

# %%
rows = []
for m, r in zip(exp.scale.ensemble_sizes, students):
    ref = STUDY["e2"].get(m, ("", "", "", ""))
    rows.append({"teachers (m)": m, "ensemble acc (%)": 100 * r.metrics["teacher_test_acc"],
                 "student acc (%)": 100 * r.metrics["test_acc"], "agreement (%)": 100 * r.metrics["test_agreement"],
                 "KL(t || s)": r.metrics["test_kl"], "study: ensemble / student / agreement / KL": " / ".join(map(str, ref))})
table = pd.DataFrame(rows).set_index("teachers (m)")
table.round(3)

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
ms = list(table.index)
a1.plot(ms, table["ensemble acc (%)"], "o-", label="teacher ensemble")
a1.plot(ms, table["student acc (%)"], "s-", label="student")
a1.set(xlabel="ensemble size m", ylabel="test accuracy (%)", xticks=ms, title="accuracy")
a1.legend()
a2.plot(ms, table["agreement (%)"], "o-", c="C2")
a2.set(xlabel="ensemble size m", ylabel="agreement (%)", xticks=ms, title="agreement with the ensemble")
a3 = a2.twinx()
a3.plot(ms, table["KL(t || s)"], "s--", c="C3")
a3.set_ylabel("KL (nats)", color="C3")
fig.tight_layout()

# %% tags=["hide-input"]
first, last = table.iloc[0], table.iloc[-1]
gap = last["student acc (%)"] - last["ensemble acc (%)"]
s1, s5 = STUDY["e2"][1], STUDY["e2"][5]  # (ensemble acc, student acc, agreement, KL), %
rises = last["agreement (%)"] > first["agreement (%)"]
Markdown(f"""
Going from {ms[0]} to {ms[-1]} teachers, the teacher's accuracy moves from {first['ensemble acc (%)']:.2f} %
to {last['ensemble acc (%)']:.2f} %, the student's from {first['student acc (%)']:.2f} % to
{last['student acc (%)']:.2f} %, and agreement from {first['agreement (%)']:.2f} % to
{last['agreement (%)']:.2f} %. The student of the largest ensemble is {ex.points(gap)} than its
teacher in accuracy. In the study, at full scale, the student of five teachers was below its ensemble{' too' if gap < 0 else ''}
({s5[1]:.2f} % vs {s5[0]:.2f} %), and agreement rose with m, from {s1[2]:.2f} % (m = 1) to {s5[2]:.2f} % (m = 5).
{"Ours rises as well." if rises else "Ours does not rise at this scale; the summary chapter (E7) discusses why."}
""")
