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
seed_base = 0

# %%
import pandas as pd
from IPython.display import Markdown

from kdlib import experiments as ex
from kdlib import plans
from kdlib import study
from kdlib import tables
from kdlib.claims import text
from kdlib.parameters import Parameters
from kdlib.reference import PAPER, PAPER_CITE, STUDY

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
teachers = exp.run(plans.teachers(exp.scale))

# %% [markdown]
# ## The teachers
#
# Accuracy on the test set and on the clean (unaugmented) training set, the true negative
# log-likelihood and the calibration error of each teacher. The training accuracy says whether the
# teachers are in the regime the paper studies, networks that fit their training data.

# %%
rows = [{"teacher": f"seed {r.spec.seed}", "test acc (%)": 100 * r.metrics["test_acc"],
         "train acc (%)": 100 * r.metrics["train_acc"], "test NLL": r.metrics["test_nll"],
         "test ECE": r.metrics["test_ece"]} for r in teachers]
table = pd.DataFrame(rows).set_index("teacher")
summary = {c: tables.fmt(list(table[c])) for c in table.columns}
table = pd.concat([table.round(3).astype(str), pd.DataFrame([summary], index=["mean ± std"])])
table

# %% tags=["hide-input"]
acc = [r.metrics["test_acc"] for r in teachers]
train = [r.metrics["train_acc"] for r in teachers]
nll = [r.metrics["test_nll"] for r in teachers]
Markdown(f"""
Our {len(teachers)} teachers reach {tables.fmt(acc, 100)} % test accuracy and fit {tables.fmt(train, 100)} % of
their training images, with a test NLL of {tables.fmt(nll, 1, 3)} nats. At full scale the study's five
teachers reach {STUDY['e0']['teacher_test_acc']} % test and {STUDY['e0']['teacher_train_acc']} % train
accuracy, and {PAPER_CITE} report {PAPER['e0']['teacher_test_acc']} % test accuracy over
{PAPER['e0']['teachers']} teachers. Our test accuracy is lower because each teacher learns from far
fewer images (the setup chapter gives the numbers); what matters for the experiments is that the
teachers fit what they were trained on. NLL here is the mean of $-\\log p(y^*|x)$ over the test set;
the study's "NLL 20.15" came from an indexing bug in the original logging code and is not comparable.
""")

# %% [markdown]
# ## Baseline (a): independent teachers agree with each other
#
# Agreement and symmetric KL, $\frac12(\mathrm{KL}(p_i\|p_j) + \mathrm{KL}(p_j\|p_i))$, for every
# pair of teachers, beside the study's Table 4 for the same pair of seeds. This is the study's
# baseline: how much any two networks trained the same way agree on their own.

# %%
pairs = pd.DataFrame(ex.pairwise(teachers)).set_index("pair")
pairs["agreement"] *= 100
study_pairs = STUDY["e0_pairs"]
pairs["study: agreement (%)"] = [study_pairs.get(tuple(map(int, p.split("-"))), ("", ""))[0] for p in pairs.index]
pairs["study: symmetric KL"] = [study_pairs.get(tuple(map(int, p.split("-"))), ("", ""))[1] for p in pairs.index]
pairs.rename(columns={"agreement": "agreement (%)", "symmetric_kl": "symmetric KL"}).round(3)

# %% tags=["hide-input"]
Markdown(f"""
Two independently trained teachers agree on {tables.fmt(list(pairs['agreement']))} % of our test
images (symmetric KL {tables.fmt(list(pairs['symmetric_kl']), 1, 3)}); the study's ten pairs agree on
{STUDY['e0']['pair_agreement']} % (symmetric KL {STUDY['e0']['pair_symmetric_kl']}) of the full test set.
{f"Our networks tell {exp.dataset.num_classes} classes apart rather than 100 and are less accurate, so the two levels are not expected to match: each is the baseline for the students of its own scale." if exp.dataset.num_classes != 100 else "Each level is the baseline for the students of its own scale."}
""")

# %% [markdown]
# ## Baseline (b): students against teachers they did not learn from
#
# The paper's own baseline: the students distilled from teacher 0 (E1), compared with teachers 1,
# 2, ... The study presented baseline (a) as if it were this one; they answer different questions,
# so we report both under their own names. Compare each row with the students' agreement with
# their own teacher, in the text below.

# %%
students = exp.run(plans.self_distillation_specs(exp.scale))
cross = pd.DataFrame([{"student": f"seed {s.spec.seed}", **c} for s in students
                      for c in ex.cross_agreement(s, teachers[1:])]).set_index(["student", "teacher"])
cross["agreement"] *= 100
cross.rename(columns={"agreement": "agreement (%)", "kl": "KL(teacher || student)"}).round(3)

# %% tags=["hide-input"]
own = [100 * s.metrics["test_agreement"] for s in students]
Markdown(f"""
The students agree {tables.fmt(own)} % with their own teacher and {tables.fmt(list(cross['agreement']))} % with
the teachers they never saw, against {tables.fmt(list(pairs['agreement']))} % between two independent teachers.
""")

# %% [markdown]
# ## Verdict
#
# The central finding's first half: does distillation add fidelity beyond what independent training
# gives? Judged against each baseline separately, against the spread over the students' seeds and the
# sampling of the test images (protocol §8); the teachers are the ones this report trained.

# %% tags=["hide-input"]
verdicts = study.chapter_verdicts(exp, "E0")
Markdown(text.markdown(verdicts) + "\n\n" + "\n".join(
    f"- {p.name}: {p.text()} ({p.verdict})" for v in verdicts for p in v.parts))
