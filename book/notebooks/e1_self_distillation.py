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
# # E1 · Self-distillation
#
# A student with the teacher's own architecture learns from teacher 0's soft labels alone
# (temperature 4, no label term). If distillation transferred what the teacher knows, the student
# would become a copy of it: 100 % agreement, zero KL.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
tau = 4.0            # distillation temperature

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown

from kdlib import experiments as ex
from kdlib.reference import PAPER, STUDY

tau = ex.check_number("tau", tau, 0, float("inf"), low_open=True)
exp = ex.open_experiment(scale, data, device, executor)
teachers = exp.run(ex.teachers(exp.scale))
students = exp.run(ex.self_distillation_specs(exp.scale, tau=tau))

# %% [markdown]
# ## Generalisation and fidelity

# %%
def pct(runs, key):
    return [100 * r.metrics[key] for r in runs]

ours = {"teacher acc (%)": ex.fmt(pct(teachers[:1], "test_acc")),
        "student acc (%)": ex.fmt(pct(students, "test_acc")),
        "agreement (%)": ex.fmt(pct(students, "test_agreement")),
        "KL(t || s)": ex.fmt([r.metrics["test_kl"] for r in students], 1, 3),
        "student NLL": ex.fmt([r.metrics["test_nll"] for r in students], 1, 3),
        "student ECE": ex.fmt([r.metrics["test_ece"] for r in students], 1, 3)}
study, paper = STUDY["e1"], PAPER["e1"]
pd.DataFrame([
    {"": f"ours ({exp.scale.name}, {len(students)} students)", **ours},
    {"": "study (full scale, 3 students)", "teacher acc (%)": study["teacher_test_acc"],
     "student acc (%)": study["student_test_acc"], "agreement (%)": study["test_agreement"], "KL(t || s)": study["test_kl"]},
    {"": "paper (full scale)", "teacher acc (%)": paper["teacher_test_acc"], "student acc (%)": paper["student_test_acc"],
     "agreement (%)": paper["test_agreement"], "KL(t || s)": paper["test_kl"]},
]).set_index("").fillna("")

# %% tags=["hide-input"]
t_acc = 100 * teachers[0].metrics["test_acc"]
s_acc = ex.mean_std(pct(students, "test_acc"))[0]
agree = ex.mean_std(pct(students, "test_agreement"))[0]
Markdown(f"""
The students reach {s_acc:.2f} % test accuracy, {ex.points(s_acc - t_acc)} than their teacher's
{t_acc:.2f} %, and agree with it on {agree:.2f} % of the test images. At full scale the study found
students more accurate than their teacher ({study['student_test_acc']} % vs {study['teacher_test_acc']} %)
that still disagree with it on over a quarter of the test images ({study['test_agreement']} % agreement).
""")

# %% [markdown]
# ## Over training
#
# Test accuracy, agreement with the teacher and predictive KL, per student, at each evaluated epoch.
# The dashed line is the teacher's accuracy.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for r in students:
    for ax, key, scale_ in zip(axes, ("test_acc", "test_agreement", "test_kl"), (100, 100, 1)):
        e, v = ex.history_series(r, key)
        ax.plot(e, [x * scale_ for x in v], marker="o", ms=3, label=f"student seed {r.spec.seed}")
axes[0].axhline(t_acc, ls="--", c="k", lw=1, label="teacher")
for ax, title, unit in zip(axes, ("test accuracy", "agreement with teacher", "KL(teacher || student)"),
                           ("%", "%", "nats")):
    ax.set(title=title, xlabel="epoch", ylabel=unit)
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Where the agreement comes from
#
# Split the test set by whether two independent teachers (0 and 1) already agree ("easy" images),
# and, where they do not, whether the student sided with its teacher.

# %%
split = ex.agreement_split(teachers[0], teachers[1], students[0])
pd.DataFrame([{"ours": v, "study (10,000 images)": s} for v, s in zip(split.values(), study["split"])],
             index=list(split))

# %% tags=["hide-input"]
n = sum(split.values())
Markdown(f"""
Of our {n:,} test images, {split['agreed by independent teachers']:,} are agreed on by two independent
teachers; where they disagree, the student sides with its teacher on
{split['agreed only after distillation']:,} images and not on {split['still disagreeing']:,}.
""")
