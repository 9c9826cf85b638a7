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
# # P1 · The authors' own networks
#
# Every other chapter measures networks this report trained, on a fraction of CIFAR-100 that a laptop
# can afford. This one measures networks trained at the paper's scale, by the paper's authors. Their
# code repository held, for a few days in December 2020, twelve PreResNet-20 teachers and six
# distilled students trained on all 50,000 CIFAR-100 training images, with their logs and the
# configuration of each run; a later commit deleted them. kdlib reads them from that commit, checks
# every file against its checksum, loads the weights without running any code from the files, and
# evaluates each network on the test set (protocol §10). Nothing is trained here: evaluating them
# costs a few CPU minutes.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
seed_base = 0

# %%
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from kdlib import authors, paper_scale, study, tables, widgets
from kdlib import experiments as ex
from kdlib.claims import text
from kdlib.parameters import Parameters
from kdlib.reference import PAPER, PAPER_CITE, STUDY

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
ps = study.collect(exp, ["P1"])["P1"]  # the 18 networks, evaluated on the whole test set (cached)
table = pd.DataFrame(paper_scale.network_table(ps))

# %% [markdown]
# ## What these networks are
#
# Each run's configuration, as the authors' training code saved it beside the weights: one row per
# run (m teachers and one student of them, two trials per m).

# %% tags=["hide-input"]
recipes = pd.DataFrame([{"run": f"m = {n.ensemble}, trial {n.trial}", **authors.recipe(n)}
                        for n in authors.NETWORKS if n.role == "student"]).drop(columns=["trial"])
recipes.set_index("run").T  # one column per run

# %% tags=["hide-input"]
r = authors.recipe(authors.NETWORKS[0])
Markdown(f"""
The data is {ps.dataset.describe()}. Every teacher was trained on labels alone for {r['epochs']} epochs with
{r['optimizer']} (learning rate {r['lr']:g}, momentum {r['momentum']:g}{', Nesterov' if r['nesterov'] else ''}, weight
decay {r['weight_decay']:g}), a {r['schedule']} schedule and batches of {r['batch_size']}, with random crops and flips
(`{r['augmentation']}`) and pixels mapped to [-1, 1]: the paper's teacher recipe (protocol §4){'' if r['nesterov'] else
', except that the momentum is plain rather than Nesterov'}.
Each student was trained the same way on the same data, but its loss was `{r['loss']}`, a symmetrised
KL divergence between its predictive distribution and its teachers' ensemble at temperature 1, with no
label term. The paper's final student recipe differs: the distillation loss at temperature 4, for 300
epochs, with learning rate 0.05 and batches of 128 (protocol §4).

So these networks can show, at full scale, what does not hinge on the student's loss: how far apart
independently trained networks end up, how close a distilled student comes to its teacher compared with
that, whether more teachers bring it closer, where in the network the two differ and whether a barrier
separates them. They cannot show how the temperature, MixUp, the optimiser or the training length
change the student (E5, E6), or the λ sweep (E3): for those the reduced scale is the evidence.
""")

# %% [markdown]
# ## Accuracy, beside their own logs and the published numbers
#
# Test accuracy, NLL and ECE of each network on CIFAR-100's test images as kdlib computes them,
# beside the final test accuracy its log recorded in 2020. The two columns are the same quantity on the
# same images, measured five years apart with different code.

# %% tags=["hide-input"]
display(Markdown(f"On {len(ps.dataset.test):,} test images"
                 + ("." if len(ps.dataset.test) == 10_000 else ", not all 10,000 (a smaller scale): accuracies need not "
                    "equal the logged ones, which were measured on all of them.")))
shown = table[["network", "test_acc", "logged_test_acc", "test_nll", "test_ece"]].copy()
for c in ("test_acc", "logged_test_acc"):
    shown[c] = (100 * shown[c]).round(2)
shown.rename(columns={"test_acc": "test acc (%)", "logged_test_acc": "logged (%)", "test_nll": "NLL",
                      "test_ece": "ECE"}).set_index("network").round(3)

# %% tags=["hide-input"]
same = int((np.abs(table["test_acc"] - table["logged_test_acc"]) < 1e-4).sum())
teachers = table[table.role == "teacher"]
students1 = table[(table.role == "student") & (table.ensemble == 1)]
def mean_of(published: str) -> float:
    return float(published.split("±")[0])


teacher1 = teachers[teachers.ensemble == 1]
better = all(students1.test_acc.values > teacher1.test_acc.values)  # trial by trial: each student against its own
nearer = ("the study's" if abs(100 * teachers.test_acc.mean() - mean_of(STUDY['e0']['teacher_test_acc']))
          < abs(100 * teachers.test_acc.mean() - mean_of(PAPER['e0']['teacher_test_acc'])) else "the paper's")
Markdown(f"""
**{same} of the {len(table)} networks score exactly their logged test accuracy** (to the 0.01 point the
logs give). {"The same weights, the same images, other code: kdlib's PreResNet-20 is the authors' network, and these "
"pixels are CIFAR-100's." if same == len(table) else "These are not all the test images the logs were measured on: "
"only the full test set can reproduce them." if len(ps.dataset.test) < 10_000 else "The others differ: this data "
"is not the data they were evaluated on."}

The {len(teachers)} teachers reach {tables.fmt(list(teachers.test_acc), 100)} % test accuracy. {PAPER_CITE} report
{PAPER['e0']['teacher_test_acc']} % over {PAPER['e0']['teachers']} teachers; the study we replicate measured
{STUDY['e0']['teacher_test_acc']} % and put the gap down to the PyTorch version it ran. These logs speak to that,
within limits: the authors' own teachers, trained by their own code in December 2020, years before the study's
PyTorch existed, sit nearer {nearer} level. {"So a newer PyTorch is not needed to explain a teacher near the study's accuracy. " if nearer == "the study's" else ""}The logs do
not say what produced the published figure: a later version of the code or recipe, or other runs, are all
consistent with them.

The self-distilled students (m = 1) reach {tables.fmt(list(students1.test_acc), 100)} %, their teachers
{tables.fmt(list(teacher1.test_acc), 100)} %: {'each student is more accurate than its own teacher, as' if better else
'not every student is more accurate than its own teacher, unlike'} in the paper ({PAPER['e1']['student_test_acc']} % against
{PAPER['e1']['teacher_test_acc']} %, read off its figure) and the study ({STUDY['e1']['student_test_acc']} % against
{STUDY['e1']['teacher_test_acc']} %). Their NLL is {tables.fmt(list(students1.test_nll), 1, 3)} against
{tables.fmt(list(teacher1.test_nll), 1, 3)}, their ECE {tables.fmt(list(students1.test_ece), 1, 3)} against
{tables.fmt(list(teacher1.test_ece), 1, 3)}.
""")

# %% [markdown]
# ## E0 at the paper scale: how far apart independent teachers are
#
# The 12 teachers were trained independently (each run its own seed), so the 66 pairs among them measure
# how much two networks trained the same way agree: the study's baseline.

# %% tags=["hide-input"]
pairs = pd.DataFrame(paper_scale.teacher_pairs(ps))
gap = 100 * pairs.agreement.mean() - mean_of(STUDY['e0']['pair_agreement'])
Markdown(f"""
The {len(pairs)} pairs agree on {tables.fmt(list(pairs.agreement), 100)} % of the test images (symmetric KL
{tables.fmt(list(pairs.symmetric_kl), 1, 3)}), from {100 * pairs.agreement.min():.2f} to
{100 * pairs.agreement.max():.2f} %. The study's ten pairs of its own teachers, trained with other code on
other hardware, agree on {STUDY['e0']['pair_agreement']} % (symmetric KL {STUDY['e0']['pair_symmetric_kl']}): the
authors' pairs agree {abs(gap):.2f} points {'more' if gap > 0 else 'less'} than the study's.
""")

# %% [markdown]
# ## E1 and E2: the students against their own teachers and the ones they never saw
#
# Each student against the teacher it learned from (for m = 2 and 3, the ensemble's averaged
# prediction), and against the teachers it never saw: the other runs' teachers, the paper's baseline.

# %% tags=["hide-input"]
agree = pd.DataFrame(paper_scale.student_agreement(ps))
shown = agree.assign(**{"agreement (%)": 100 * agree.agreement, "with unseen teachers (%)": 100 * agree.unseen_agreement})
shown[["student", "ensemble", "agreement (%)", "kl", "with unseen teachers (%)", "unseen_teachers"]].rename(
    columns={"ensemble": "m", "kl": "KL(teacher || student)", "unseen_teachers": "unseen teachers"}
).set_index("student").round(3)

# %% tags=["hide-input"]
by_m = {m: agree[agree.ensemble == m] for m in (1, 2, 3)}
kept = (1 - by_m[1].agreement.mean()) / (1 - pairs.agreement.mean())
Markdown(f"""
A self-distilled student agrees with its teacher on {tables.fmt(list(by_m[1].agreement), 100)} % of the test
images, two independent teachers on {100 * pairs.agreement.mean():.2f} %, and the student with teachers it
never saw on {tables.fmt(list(by_m[1].unseen_agreement), 100)} %. It keeps {kept:.2f} of the disagreement
independent training leaves. With more teachers the student agrees {tables.fmt(list(by_m[2].agreement), 100)} %
with its ensemble at m = 2 and {tables.fmt(list(by_m[3].agreement), 100)} % at m = 3. The study's students,
trained with the paper's final recipe, agree {STUDY['e1']['test_agreement']} % with one teacher and
{STUDY['e2'][3][2]} % with three (one student each); the paper's {PAPER['e1']['test_agreement']} % with one (read
off its figure). The verdicts at the end of this chapter say which of these differences the noise decides.
""")

# %% [markdown]
# ## The test images by who agrees, and what they look like
#
# E1's partition of the test images for each self-distilled student: do its teacher and an
# independent teacher (the other m = 1 run's) agree on an image, and does the student agree with its
# own teacher? Every image is in one cell.

# %% tags=["hide-input"]
pd.DataFrame(paper_scale.partition(ps)).set_index("student")

# %% tags=["hide-input"]
student, own = ps.students(1)[0], ps.own_teachers(1)[0]
other = next(t for t in ps.teachers(1) if t is not own)
probs = {name: torch.softmax(run.test_logits().float(), 1) for name, run in
         (("its teacher", own), ("student", student), ("another teacher", other))}
t, s, o = (p.argmax(1) for p in (probs["its teacher"], probs["student"], probs["another teacher"]))
groups = ex.disagreement_groups(t, o, s)
Markdown(f"""
B6's three groups for the student of trial 0: {'; '.join(f'{name}: {int(mask.sum()):,} images' for name, (mask, _) in
groups.items())}. The study split its test set with arithmetic on rates as
{' / '.join(f'{n:,}' for n in STUDY['e1']['decomposition'])}, which are not groups of images; these are. Below,
the images this student answers differently from its teacher although the two teachers agree, the teacher's
most confident first: three networks' top classes under each, the true class in green.
""")

# %% tags=["hide-input"]
mask = groups["agreed by independent teachers"][0]
idx = torch.nonzero(mask).flatten()
idx = idx[torch.argsort(probs["its teacher"].max(1).values[idx], descending=True)][:12].tolist()
widgets.image_gallery(ps.dataset.test.x, ps.dataset.test.y, probs, ps.dataset.classes, idx, 4)

# %% [markdown]
# ## Where in the network: stage-wise CKA
#
# Linear CKA between two networks' features at the end of each of the three stages, on the same fixed
# test images as E4 (protocol §5): a student with its own teacher, a student with a teacher it
# never saw, and pairs of independent teachers.

# %% tags=["hide-input"]
cka = pd.DataFrame(paper_scale.cka(ps))
stages = pd.DataFrame(cka.cka.tolist(), columns=["stage 1", "stage 2", "stage 3"])
summary = pd.concat([cka[["pair"]], stages], axis=1).groupby("pair", sort=False).agg(["mean", "count"])
summary = summary.xs("mean", axis=1, level=1).round(3).assign(pairs=summary[("stage 1", "count")])
summary

# %% tags=["hide-input"]
mean = summary[["stage 1", "stage 2", "stage 3"]]
own3, unseen3, pair3 = (mean.loc[k, "stage 3"] for k in ("student and its own teacher",
                                                          "student and a teacher it never saw", "two independent teachers"))
early = mean[["stage 1", "stage 2"]]
Markdown(f"""
At the last stage a student's representation has CKA {own3:.3f} with its own teacher's, {unseen3:.3f} with a
teacher it never saw, and two independent teachers {pair3:.3f} with each other: the student is
{'closer to its own teacher than to an unseen one' if own3 > unseen3 else 'no closer to its own teacher than to an unseen one'}
(two students, so a description, not a verdict). At the first two stages every pair lies between
{early.values.min():.3f} and {early.values.max():.3f}: the early features of any two of these networks are much
alike, so what a student keeps of its teacher in particular shows at the last stage if anywhere. The paper's E4 values, for its students (random start,
LayerNorm, the final recipe), are {', '.join(f'{c:.3f}' for c in PAPER['e4']['random']['cka'])}.
""")

# %% [markdown]
# ## Calibration
#
# Each student beside its teacher (for m = 2 and 3, the ensemble), B5's question at the paper scale:
# how much of the test NLL is miscalibration, i.e. what rescaling the logits by one temperature would
# remove (B5's measure, in nats), with the binned ECE beside it.

# %% tags=["hide-input"]
cal = pd.DataFrame(paper_scale.calibration(ps))
cal.rename(columns={"ensemble": "m", "student_gap": "student calibration (nats)",
                    "teacher_gap": "teacher calibration (nats)", "student_ece": "student ECE",
                    "teacher_ece": "teacher ECE", "student_acc": "student acc",
                    "teacher_acc": "teacher acc"}).set_index("student").round(3)

# %% tags=["hide-input"]
by_m = {m: cal[cal.ensemble == m] for m in (1, 2, 3)}
passed_on = ((by_m[3].student_gap.mean() - by_m[1].student_gap.mean())
             / (by_m[3].teacher_gap.mean() - by_m[1].teacher_gap.mean()))
Markdown(f"""
Temperature scaling would remove {tables.fmt(list(by_m[1].teacher_gap), 1, 3)} nats of a single teacher's test NLL
and {tables.fmt(list(by_m[3].teacher_gap), 1, 3)} of an ensemble of three's; of its students' it would remove
{tables.fmt(list(by_m[1].student_gap), 1, 3)} at m = 1 and {tables.fmt(list(by_m[3].student_gap), 1, 3)} at m = 3.
Of the teacher's change from one network to three, {passed_on:.2f} reaches the students on average. This is
shown, not judged: B5's rule compares one teacher per ensemble size, and each size here has two different
ensembles (docs/protocol.md §10).
""")

# %% [markdown]
# ## Verdicts at the paper scale
#
# The paper's claims these networks can speak to, judged by the same code, rules and noise model as the
# reduced scale (protocol §8, §10). Two students per setting: the seed part of every interval has one
# degree of freedom (t = 12.7), so only large, consistent effects are decided. Each student is judged
# against its own teacher; the teachers' pairs are fixed (their images are the noise).

# %% tags=["hide-input"]
Markdown(text.markdown(study.chapter_verdicts(exp, "P1")))
