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
# the student away from any particular solution): SGD, SGD trained longer, and Adam.

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
runs = exp.run(ex.optimiser_specs(exp.scale))

# %%
study = dict(zip(runs, (STUDY["e6"]["sgd"], STUDY["e6"]["sgd_long"], STUDY["e6"]["adam"])))
table = pd.DataFrame([{"setting": k, "agreement (%)": 100 * r.metrics["test_agreement"],
                       "KL(t || s)": r.metrics["test_kl"], "student acc (%)": 100 * r.metrics["test_acc"],
                       "final train loss": r.metrics["train_loss"], "study: agreement (%)": study[k]}
                      for k, r in runs.items()]).set_index("setting")
table.round(3)

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
for k, r in runs.items():
    e, v = ex.history_series(r, "test_agreement")
    a1.plot(e, [100 * x for x in v], "o-", ms=3, label=k)
    e, v = ex.history_series(r, "train_loss")
    a2.plot(e, v, "-", label=k)
a1.set(title="agreement with the teacher", xlabel="epoch", ylabel="%")
a2.set(title="training loss (KD objective)", xlabel="epoch", ylabel="loss")
a1.legend(fontsize=8)
fig.tight_layout()

# %% tags=["hide-input"]
vals = table["agreement (%)"]
Markdown(f"""
Agreement ends at {', '.join(f'{v:.2f} % ({k})' for k, v in vals.items())}: a spread of
{vals.max() - vals.min():.2f} points. The study reported 70.88 %, 71.41 % and 70.61 % (300 and 600 SGD
epochs, Adam with lr 5e-3), and the paper, with the LayerNorm model and 1k to 5k epochs, saw agreement
creep up only slowly with training length. The Adam learning rate here is {exp.scale.adam_lr:g}.
""")
