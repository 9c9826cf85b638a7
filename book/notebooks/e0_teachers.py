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
# # E0 · Teachers and baselines
#
# Every later experiment distils from this pool of independently trained teachers. Before asking
# how faithfully a student imitates its teacher, we need two yardsticks: how much two teachers
# trained from different seeds already agree, and how much a student agrees with a teacher it was
# *not* distilled from.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"

# %%
import pandas as pd
from IPython.display import Markdown

from kdlib import experiments as ex
from kdlib.reference import STUDY

exp = ex.open_experiment(scale, data, device, executor)
teachers = exp.run(ex.teachers(exp.scale))

# %% [markdown]
# ## The teachers

# %%
rows = [{"teacher": f"seed {r.spec.seed}", "test acc (%)": 100 * r.metrics["test_acc"],
         "train acc (%)": 100 * r.metrics["train_acc"], "test NLL": r.metrics["test_nll"],
         "test ECE": r.metrics["test_ece"]} for r in teachers]
table = pd.DataFrame(rows).set_index("teacher")
summary = {c: ex.fmt(list(table[c])) for c in table.columns}
table = pd.concat([table.round(3).astype(str), pd.DataFrame([summary], index=["mean ± std"])])
table

# %% tags=["hide-input"]
acc = [r.metrics["test_acc"] for r in teachers]
nll = [r.metrics["test_nll"] for r in teachers]
Markdown(f"""
Our {len(teachers)} teachers reach {ex.fmt(acc, 100)} % test accuracy and a test NLL of
{ex.fmt(nll, 1, 3)} nats. At full scale the study reports {STUDY['e0']['teacher_test_acc']} % test
({STUDY['e0']['teacher_train_acc']} % train) over 5 teachers and Stanton et al. 70.52 ± 0.41 % over 10.
NLL here is the mean of $-\\log p(y^*|x)$ over the test set; the study's "NLL 20.15" came from an
indexing bug in the original logging code and is not comparable.
""")

# %% [markdown]
# ## Baseline (a): independent teachers agree with each other
#
# Agreement and symmetric KL, $\frac12(\mathrm{KL}(p_i\|p_j) + \mathrm{KL}(p_j\|p_i))$, for every
# pair of teachers. This is the study's baseline.

# %%
pairs = pd.DataFrame(ex.pairwise(teachers)).set_index("pair")
pairs["agreement"] *= 100
pairs.rename(columns={"agreement": "agreement (%)", "symmetric_kl": "symmetric KL"}).round(3)

# %% tags=["hide-input"]
Markdown(f"""
Two independently trained teachers agree on {ex.fmt(list(pairs['agreement']))} % of the test
images (symmetric KL {ex.fmt(list(pairs['symmetric_kl']), 1, 3)}), against
{STUDY['e0']['pair_agreement']} % (symmetric KL {STUDY['e0']['pair_symmetric_kl']}) in the study at full scale.
""")

# %% [markdown]
# ## Baseline (b): a student against teachers it did not learn from
#
# The paper's own baseline: the student distilled from teacher 0 (E1, seed 0), compared with
# teachers 1, 2, ... The study presented baseline (a) as if it were this one; they answer
# different questions, so we report both under their own names.

# %%
student = exp.run(ex.self_distillation_specs(exp.scale)[:1])[0]
cross = pd.DataFrame(ex.cross_agreement(student, teachers[1:])).set_index("teacher")
cross["agreement"] *= 100
own = 100 * student.metrics["test_agreement"]
cross.rename(columns={"agreement": "agreement (%)", "kl": "KL(teacher || student)"}).round(3)

# %% tags=["hide-input"]
lift_other = own - cross["agreement"].mean()
lift_pairs = own - pairs["agreement"].mean()
Markdown(f"""
The student agrees {own:.2f} % with its own teacher and {ex.fmt(list(cross['agreement']))} % with
the teachers it never saw: {ex.points(lift_other)} than with the others, and {ex.points(lift_pairs)}
than two independent teachers agree with each other.
""")
