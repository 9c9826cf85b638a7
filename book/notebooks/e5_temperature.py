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
# # E5 · Temperature and MixUp
#
# Students of the largest teacher ensemble, distilled at several temperatures $\tau$ and at
# $\tau = 4$ with MixUp (the teacher labels each mixed image itself). A higher temperature flattens
# the teacher's distribution and exposes more of its "dark knowledge" about the wrong classes;
# MixUp shows the student inputs off the training images, where teacher and student otherwise never
# have to match. The paper found that both help fidelity a little and close little of the gap.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
seed_base = 0
tau = 4.0            # where the slider starts (the nearest temperature shown)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

from kdlib import experiments as ex
from kdlib import plans
from kdlib import study
from kdlib import tables
from kdlib.checks import check_number
from kdlib.claims import text
from kdlib.parameters import Parameters
from kdlib.reference import STUDY
from kdlib.widgets import figure_slider

tau = check_number("tau", tau, 0, float("inf"), low_open=True)
exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
specs = plans.temperature_specs(exp.scale)
runs = exp.run(specs)  # setting -> students (seeds)
pool = exp.run(list(specs[plans.MIXUP][0].teachers))

# %% [markdown]
# Per setting, the students' accuracy, agreement with the ensemble and KL (mean ± std over seeds),
# beside the study's single student per setting at full scale. Look down the agreement column as the
# temperature rises, and at the MixUp row's KL.

# %%
rows = []
for name, rs in runs.items():
    ref = STUDY["e5"].get((rs[0].spec.tau, rs[0].spec.recipe.mixup))
    rows.append({"setting": name, "students": len(rs), "student acc (%)": tables.fmt_metric(rs, "test_acc", 100),
                 "agreement (%)": tables.fmt_metric(rs, "test_agreement", 100), "KL(t || s)": tables.fmt_metric(rs, "test_kl", 1, 3),
                 "study: acc / agreement / KL": "{:.2f} / {:.2f} / {:.3f}".format(*ref) if ref else ""})
pd.DataFrame(rows).set_index("setting")

# %% tags=["hide-input"]
study_e5 = STUDY["e5"]
Markdown(f"""
The teacher is an ensemble of {len(pool)} networks with {100 * runs[plans.MIXUP][0].metrics['teacher_test_acc']:.2f} %
test accuracy. The study (5 teachers, full scale) found agreement rising from {study_e5[(1.0, False)][1]:.2f} % at
τ = 1 to {study_e5[(4.0, False)][1]:.2f} % at τ = 4, and MixUp lowering the KL ({study_e5[(4.0, False)][2]:.3f} to
{study_e5[(4.0, True)][2]:.3f}) while leaving agreement where it was ({study_e5[(4.0, True)][1]:.2f} %).
""")

# %% [markdown]
# ## What the student is asked to match
#
# Move the slider to soften the ensemble's predictions on three test images: the bars are the ten
# largest probabilities of $\mathrm{softmax}(z_t/\tau)$, the true class in orange, on one probability
# axis for all temperatures (up to the largest bar at the lowest). The title gives the results of the
# students distilled at that temperature, where this scale trained any.

# %%
teacher_logits = ex.ensemble_test_logits(pool)
n = len(exp.dataset.test)
picks = [0, n // 3, (2 * n) // 3]
classes = exp.dataset.classes
trained = {rs[0].spec.tau: rs for name, rs in runs.items() if name != plans.MIXUP}
taus = sorted(set(trained) | {1.0, 2.0, 4.0, 8.0})
top_p = max(float(torch.softmax(teacher_logits[i] / min(taus), dim=-1).max()) for i in picks)

def view(t):
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.4), gridspec_kw={"height_ratios": [1, 1.4]})
    for k, i in enumerate(picks):
        img = exp.dataset.test.x[i].permute(1, 2, 0).numpy()
        y = int(exp.dataset.test.y[i])
        axes[0, k].imshow(img)
        axes[0, k].set_title(f"true: {classes[y]}", fontsize=9)
        axes[0, k].axis("off")
        p = torch.softmax(teacher_logits[i] / t, dim=-1)
        top = torch.topk(p, min(10, len(p)))
        colors = ["C1" if int(c) == y else "C0" for c in top.indices]
        ax = axes[1, k]
        ax.bar(range(len(top.values)), top.values.numpy(), color=colors)
        ax.set_xticks(range(len(top.values)), [classes[int(c)] for c in top.indices], rotation=70, fontsize=7)
        ax.set(ylim=(0, min(1.0, 1.1 * top_p)), ylabel="probability" if k == 0 else None)
    if t in trained:
        rs = trained[t]
        title = (f"tau = {t:g}: students' acc {tables.fmt_metric(rs, 'test_acc', 100)} %, agreement {tables.fmt_metric(rs, 'test_agreement', 100)} %, "
                 f"KL {tables.fmt_metric(rs, 'test_kl', 1, 3)}")
    else:
        title = f"tau = {t:g}: no student was distilled at this temperature at the '{exp.scale.name}' scale"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig

start = min(taus, key=lambda v: abs(v - tau))
slider = figure_slider(taus, [view(t) for t in taus], description="tau", readout=[f"{t:g}" for t in taus],
                       initial=taus.index(start), css_class="kdlib-tau-slider")
display(slider)

# %% [markdown]
# ## Verdict
#
# Three parts: agreement at τ = 4 against the lowest temperature; whether MixUp lowers the KL; and
# whether it removes a larger fraction of the KL than of the disagreement. Students of one seed are
# compared with each other (the same initial weights and data order), against the spread over seeds
# and the sampling of the test images.

# %% tags=["hide-input"]
Markdown(text.markdown(study.chapter_verdicts(exp, "E5")))
