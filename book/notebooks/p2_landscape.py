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
# # P2 · Between student and teacher: the loss landscape
#
# The paper's explanation of a student's infidelity is optimisation: the student does not find the
# teacher's solution, though it would fit its data. If a student and its teacher sat in one basin of
# the loss, the straight line between their weights would stay low; if they sit in different basins,
# the loss rises between them: a barrier. This chapter walks that line, from a student (t = 0) to its
# teacher (t = 1), at the paper's scale with the authors' own networks and, at the reduced scale, for
# E3's students started at every λ between a random network and the teacher (protocol §10).

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

from kdlib import paper_scale, plans, study, tables
from kdlib import experiments as ex
from kdlib.parameters import Parameters

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
ps = study.collect(exp, ["P1"])["P1"]
points, images = exp.scale.landscape()
paper_lines = paper_scale.lines(ps, points, images)
reduced_lines = ex.initialisation_lines(exp)

# %% [markdown]
# ## At the paper scale
#
# Each point is the network (1 - t) · student + t · teacher, every weight and buffer, with its
# BatchNorm statistics re-estimated on training images (a fixed crop and flip each), since statistics
# interpolated with the weights do not describe the interpolated network. Beside the two self-distilled
# students' lines, the line between the two independent teachers of the m = 1 runs.

# %% tags=["hide-input"]
fig, (ax_loss, ax_agree) = plt.subplots(1, 2, figsize=(10, 3.8))
for line, colour in zip(paper_lines, ("tab:blue", "tab:cyan", "tab:red")):
    t = [p["t"] for p in line["curve"]]
    label = f"{line['line']} ({line['a'].split(',')[1].strip()})"
    ax_loss.plot(t, [p["loss"] for p in line["curve"]], "o-", c=colour, ms=4, label=label)
    ax_agree.plot(t, [100 * p["agreement_b"] for p in line["curve"]], "o-", c=colour, ms=4, label=label)
ax_loss.set(xlabel="t (0: the first network, 1: the second)", ylabel="test loss (nats)")
ax_agree.set(xlabel="t", ylabel="agreement with the network at t = 1 (%)")
ax_loss.legend(fontsize=7)
fig.tight_layout()

# %% tags=["hide-input"]
rows = pd.DataFrame([{"line": l["line"], "from": l["a"], "to": l["b"], "loss at the ends": (
    f"{l['curve'][0]['loss']:.2f}, {l['curve'][-1]['loss']:.2f}"), "highest loss": max(p["loss"] for p in l["curve"]),
    "barrier (nats)": l["barrier"]} for l in paper_lines]).set_index("line").round(3)
rows

# %% tags=["hide-input"]
own = [l["barrier"] for l in paper_lines if l["line"].startswith("student")]
independent = [l["barrier"] for l in paper_lines if l["line"].startswith("teacher")]
mid = {l["line"]: min(l["curve"], key=lambda p: abs(p["t"] - 0.5)) for l in paper_lines}
Markdown(f"""
Along the straight line from a self-distilled student to its own teacher the test loss rises by
{tables.fmt(own, 1, 2)} nats above the straight line between their losses; between two independently
trained teachers by {independent[0]:.2f}. Halfway, the network of a student and its teacher is right on
{100 * mid['student to its teacher']['accuracy']:.1f} % of the test images (chance: 1 %). The student and
its teacher are separated by barriers of {', '.join(f'{b:.2f}' for b in own)} nats, against {independent[0]:.2f} between
two networks that never met. These are two students and one pair of teachers: the lines are described, not judged.
""" if own and independent else "The paper-scale lines need the authors' networks.")

# %% [markdown]
# ## At the reduced scale: E3's students, by how near the teacher they started
#
# E3 started students at λ · teacher + (1 - λ) · random weights (the LayerNorm model at this scale,
# protocol §6). The same line, from each λ's first student to the teacher, on a class-balanced subset of
# the test images (the table below says how many).
# The question: are the students that stayed with their teacher (high train agreement, E3) the ones
# with no barrier between them?

# %% tags=["hide-input"]
runs = exp.run(plans.initialisation_plan(exp.scale))
agreement = {(n, lam): ss[0].metrics["train_aug_agreement"] for n, part in runs.items()
             for lam, ss in part["students"].items()}
fig, ax = plt.subplots(figsize=(6.5, 3.8))
cmap = plt.get_cmap("viridis")
lams = sorted({l["lambda"] for l in reduced_lines})
norms = list(dict.fromkeys(l["norm"] for l in reduced_lines))  # one line style per model, one colour per λ
for l in reduced_lines:
    colour = cmap(lams.index(l["lambda"]) / max(1, len(lams) - 1))
    model = f"{tables.NORM_NAMES[l['norm']]}, " if len(norms) > 1 else ""
    style = "o" + ("-", "--", ":")[norms.index(l["norm"]) % 3]
    ax.plot([p["t"] for p in l["curve"]], [p["loss"] for p in l["curve"]], style, ms=3, c=colour,
            label=f"{model}λ = {l['lambda']:g}")
ax.set(xlabel="t (0: the student, 1: its teacher)", ylabel="test loss (nats)")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()

# %% tags=["hide-input"]
table = pd.DataFrame([{"model": tables.NORM_NAMES[l["norm"]], "λ": l["lambda"], "student seed": l["seed"],
                       "train agreement (%)": 100 * agreement[(l["norm"], l["lambda"])],
                       "barrier (nats)": l["barrier"]} for l in reduced_lines])
table.set_index(["model", "λ"]).round(3)

# %% tags=["hide-input"]
said = [f"{m} λ = {x:g}: barrier {b:.3f} nats, train agreement {a:.2f} %" if table["model"].nunique() > 1 else
        f"λ = {x:g}: barrier {b:.3f} nats, train agreement {a:.2f} %"
        for m, x, b, a in zip(table["model"], table["λ"], table["barrier (nats)"], table["train agreement (%)"])]
Markdown(f"""
On {images:,} test images per point: {'; '.join(x for x in said if x)}. One student per λ and one teacher: a picture
of this scale's runs, not a verdict.
""")
