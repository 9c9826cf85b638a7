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
# # B6 · Where do student and teacher disagree?
#
# E1 counted the test images by two questions: do two independently trained teachers agree on an
# image, and does the distilled student agree with its own teacher? Counts hide what the images
# are. This chapter shows them: for a student of teacher 0 (seed 0), the images it answers
# differently from its teacher, and those where distillation made it agree with its teacher though
# another teacher trained the same way answers otherwise. Under each image are the top three classes
# and probabilities of teacher 0, of the student and of teacher 1, the true class in green. Then a
# verdict: are a student's departures mostly on images whose answer independent training does not
# settle either?
#
# This chapter trains nothing: it reads the runs of E0 and E1. The pages below are pictures made
# when the report was built, so the sliders work in the static page without a kernel.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"
seed_base = 0

# %%
import pandas as pd
import torch
from IPython.display import Markdown, display

from kdlib import experiments as ex
from kdlib import plots, widgets
from kdlib import study
from kdlib.claims import text
from kdlib.parameters import Parameters

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
runs = study.collect(exp, ["E0", "E1"])
teacher, other, student = runs["E0"][0], runs["E0"][1], runs["E1"][0]
probs = {name: torch.softmax(run.test_logits().float(), 1) for name, run in
         (("teacher 0", teacher), (f"student (seed {student.spec.seed})", student), ("teacher 1", other))}
top1 = {name: p.argmax(1) for name, p in probs.items()}
t, s, o = top1.values()

# %% [markdown]
# ## The three groups

# %% tags=["hide-input"]
GROUPS = ex.disagreement_groups(t, o, s)  # name -> (which images, what it means)
n = len(t)
with pd.option_context("display.max_colwidth", None):
    display(pd.DataFrame([{"group": g, "what it means": words, "images": int(mask.sum()),
                          "share of the test set (%)": round(100 * mask.float().mean().item(), 2)}
                         for g, (mask, words) in GROUPS.items()]).set_index("group"))

# %% [markdown]
# ## The gallery
#
# One slider per group, four images a page, the teacher's most confident images first: those are
# the disagreements that cannot be put down to a teacher that was unsure.

# %% tags=["hide-input"]
PER_PAGE, PAGES = 4, 3
confidence = probs["teacher 0"].max(1).values
for group, (mask, words) in GROUPS.items():
    idx = torch.nonzero(mask).flatten()
    idx = idx[torch.argsort(confidence[idx], descending=True)][:PER_PAGE * PAGES].tolist()
    display(Markdown(f"### {group[:1].upper() + group[1:]}\n\n{words[:1].upper() + words[1:]}: "
                     f"{int(mask.sum()):,} of {n:,} test images."))
    if not idx:
        display(Markdown("No test image falls in this group."))
        continue
    display(widgets.image_gallery(exp.dataset.test.x, exp.dataset.test.y, probs, exp.dataset.classes, idx, PER_PAGE))

# %% [markdown]
# ## Verdict
#
# Declared before these numbers were computed (protocol §9): of the test images on which E1's
# students disagree with teacher 0, the share where teacher 0 and another teacher of the pool also
# disagree (averaged over the other teachers) must exceed 0.5 for the claim to hold; it fails if it
# lies below. If a student's departures fell anywhere, the share would be the fraction of images
# the teachers disagree on.

# %% tags=["hide-input"]
Markdown(text.markdown(study.chapter_verdicts(exp, "B6")))
