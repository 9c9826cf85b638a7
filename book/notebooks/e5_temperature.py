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
# Students of the largest teacher ensemble, distilled at several temperatures $\tau$ and once at
# $\tau = 4$ with MixUp (the teacher labels each mixed image itself). A higher temperature flattens
# the teacher's distribution and exposes more of its "dark knowledge" about the wrong classes;
# MixUp shows the student inputs off the training images, where teacher and student otherwise never
# have to match.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
tau = 4.0            # where the slider starts (the nearest temperature of the grid)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

from kdlib import experiments as ex
from kdlib.reference import STUDY
from kdlib.widgets import figure_slider

tau = ex.check_number("tau", tau, 0, float("inf"), low_open=True)
exp = ex.open_experiment(scale, data, device, executor)
specs = ex.temperature_specs(exp.scale)
runs = exp.run(specs)
pool = exp.run(list(next(iter(specs.values())).teachers))

# %%
rows = []
for name, r in runs.items():
    key = (r.spec.tau, r.spec.recipe.mixup)
    ref = STUDY["e5"].get(key)
    rows.append({"setting": name, "student acc (%)": 100 * r.metrics["test_acc"],
                 "agreement (%)": 100 * r.metrics["test_agreement"], "KL(t || s)": r.metrics["test_kl"],
                 "study: acc / agreement / KL": " / ".join(map(str, ref)) if ref else ""})
table = pd.DataFrame(rows).set_index("setting")
table.round(3)

# %% tags=["hide-input"]
Markdown(f"""
The teacher is an ensemble of {len(pool)} networks with {100 * next(iter(runs.values())).metrics['teacher_test_acc']:.2f} %
test accuracy. The study (5 teachers, full scale) found agreement rising from 75.60 % at tau = 1 to
80.51 % at tau = 4, and MixUp lowering the KL (0.465 to 0.421) without raising agreement.
""")

# %% [markdown]
# ## What the student is asked to match
#
# Move the slider to soften the ensemble's predictions on three test images: the bars are the ten
# largest probabilities of $\mathrm{softmax}(z_t/\tau)$, the true class in orange, on one probability
# axis for all temperatures (up to the largest bar at the lowest). The title gives the results of the
# student distilled at that temperature.

# %%
teacher_logits = ex.ensemble_test_logits(pool)
n = len(exp.dataset.test)
picks = [0, n // 3, (2 * n) // 3]
classes = exp.dataset.classes
taus = [float(t) for t in exp.scale.taus]
# one probability axis for every temperature (so views compare), up to the largest bar any shows
top_p = max(float(torch.softmax(teacher_logits[i] / min(taus), dim=-1).max()) for i in picks)

def view(t):
    r = runs[f"tau={t:g}"].metrics
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.4), gridspec_kw={"height_ratios": [1, 1.4]})
    for k, i in enumerate(picks):
        img = exp.dataset.test.x[i].permute(1, 2, 0).numpy()
        y = int(exp.dataset.test.y[i])
        axes[0, k].imshow(img)
        axes[0, k].set_title(f"true: {classes[y]}", fontsize=9)
        axes[0, k].axis("off")
        p = torch.softmax(teacher_logits[i] / t, dim=-1)
        top = torch.topk(p, 10)
        colors = ["C1" if int(c) == y else "C0" for c in top.indices]
        ax = axes[1, k]
        ax.bar(range(10), top.values.numpy(), color=colors)
        ax.set_xticks(range(10), [classes[int(c)] for c in top.indices], rotation=70, fontsize=7)
        ax.set(ylim=(0, min(1.0, 1.1 * top_p)), ylabel="probability" if k == 0 else None)
    fig.suptitle(f"tau = {t:g}: student acc {100 * r['test_acc']:.2f} %, agreement {100 * r['test_agreement']:.2f} %, "
                 f"KL {r['test_kl']:.3f}", fontsize=11)
    fig.tight_layout()
    return fig

start = min(taus, key=lambda v: abs(v - tau))
slider = figure_slider(taus, [view(t) for t in taus], description="tau", readout=[f"{t:g}" for t in taus],
                       initial=taus.index(start), css_class="kdlib-tau-slider")
display(slider)

# %% tags=["hide-input"]
best = table["agreement (%)"].idxmax()
Markdown(f"""
Among our settings the highest agreement, {table.loc[best, 'agreement (%)']:.2f} %, comes from **{best}**;
the lowest KL, {table['KL(t || s)'].min():.3f}, from **{table['KL(t || s)'].idxmin()}**. No setting brings
the student close to a copy of its teacher.
""")
