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
# # E6 · Optimiser and training length
#
# If the student fails to match its teacher because optimisation stalls, a different optimiser or
# more epochs might help. Self-distillation from teacher 0 without weight decay (which would pull
# the student away from any particular solution): SGD, SGD trained longer, and Adam. The paper found
# that neither closes the gap, on test images or on the training images the student was fitted to.

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
from kdlib import plots, tables
from kdlib import study
from kdlib.claims import text
from kdlib.parameters import Parameters
from kdlib.reference import PAPER, STUDY

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
teacher = exp.run(plans.teachers(exp.scale)[:1])[0]
runs = exp.run(plans.optimiser_specs(exp.scale))  # setting -> students (seeds); the first is the baseline

# %% [markdown]
# Agreement with the teacher on test images and on augmented training images (both networks in
# eval mode), mean ± std over seeds, beside the study's test agreement for the same three settings at
# full scale. Compare each alternative's row with the baseline in the first.

# %%
study_e6 = dict(zip(runs, (STUDY["e6"]["sgd"], STUDY["e6"]["sgd_long"], STUDY["e6"]["adam"])))

pd.DataFrame([{"setting": k, "students": len(rs), "test agreement (%)": tables.fmt_metric(rs, "test_agreement", 100),
               "train agreement (%)": tables.fmt_metric(rs, "train_aug_agreement", 100), "KL(t || s)": tables.fmt_metric(rs, "test_kl", 1, 3),
               "student acc (%)": tables.fmt_metric(rs, "test_acc", 100), "study: test agreement (%)": study_e6[k]}
              for k, rs in runs.items()]).set_index("setting")

# %% [markdown]
# Agreement and training loss over the epochs (the longer run on its own epoch axis). Look at
# whether agreement is still climbing when each run ends.

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
for c, (k, rs) in zip(("C0", "C1", "C2"), runs.items()):
    for j, r in enumerate(rs):
        plots.agreement_and_loss(a1, a2, r, c, label=k if j == 0 else None)
a1.set(title="test agreement with the teacher", xlabel="epoch", ylabel="%")
a2.set(title="training loss (KD objective)", xlabel="epoch", ylabel="loss")
a1.legend(fontsize=8)
fig.tight_layout()

# %% tags=["hide-input"]
Markdown(f"""
The study reported {STUDY['e6']['sgd']} %, {STUDY['e6']['sgd_long']} % and {STUDY['e6']['adam']} % test agreement
for {STUDY['e6_epochs'][0]} and {STUDY['e6_epochs'][1]} SGD epochs and Adam (lr {STUDY['e6_adam_lr']:g}); the
paper, with the LayerNorm model and {PAPER['e6_epochs'][0]:,} to {PAPER['e6_epochs'][1]:,} epochs, saw agreement
creep up only slowly with training length. Our Adam learning rate is {exp.scale.adam_lr:g}.
""")

# %% [markdown]
# ## Verdict
#
# For each alternative and each set of images, the fraction of the baseline's gap to 100 % that it
# closes, students of one seed compared with each other, against the spread over seeds and the
# sampling of the images; closing the gap would mean closing most of it.

# %% tags=["hide-input"]
Markdown(text.markdown(study.chapter_verdicts(exp, "E6")))
