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
# # Setup
#
# Which data, model and recipes every experiment in this report uses, and where our protocol
# departs from the paper's and from the replication study's. The values below are read from the
# objects the experiments run with, so the page cannot drift from the code.

# %% tags=["parameters"]
scale = "reduced"   # "paper", "reduced" or "tiny" (kdlib.scales)
data = ""           # a CIFAR-100 source; empty: kdlib.data.default_source()
device = "auto"     # "auto", "cpu", "cuda"
executor = "inline"
seed_base = 0       # the draw of seeds (kdlib.scales.Scale.seed_base); 0: the usual seeds

# %%
import pandas as pd
from IPython.display import Markdown

from kdlib import experiments as ex
from kdlib import plans
from kdlib import study
from kdlib import tables
from kdlib.models import preresnet20
from kdlib.parameters import Parameters
from kdlib.reference import PAPER, STUDY
from kdlib.scales import SEED_STRIDE
from kdlib.sources import EXACT

exp = ex.open_experiment(Parameters(scale, data, device, executor, seed_base))
sc, ds = exp.scale, exp.dataset

# %% [markdown]
# ## Data

# %% tags=["hide-input"]
Markdown(f"""
All runs at the **{sc.name}** scale ({sc.description}) use {ds.describe()}.
The data's fingerprint, a sha256 of its pixels, labels and class names in the canonical order (by class,
then file name), is `{ds.fingerprint}`; {"it is CIFAR-100's own: the official download and the lossless "
"archive give the same fingerprint, the same images in every subset and so the same runs"
if ds.fingerprint == EXACT else "it is not CIFAR-100's exact pixels (a lossy copy, such as JPEG): absolute "
"numbers on it are not comparable with published ones"}. Training images are augmented with a random 32x32
crop of the zero-padded (4 px) image and a horizontal flip with probability 0.5; pixels are mapped to
[-1, 1]. Evaluation uses the {len(ds.test):,} test images without augmentation.
""")

# %% [markdown]
# ## Model

# %% tags=["hide-input"]
counts = {norm: sum(p.numel() for p in preresnet20(num_classes=ds.num_classes, norm=norm).parameters())
          for norm in ("batch", "layer")}
sizes = (f"The BatchNorm model and the LayerNorm variant (GroupNorm with one group in place of every BatchNorm, "
         f"with the same learned scale and shift per channel) both have {counts['batch']:,} parameters."
         if counts["batch"] == counts["layer"] else
         f"With BatchNorm it has {counts['batch']:,} parameters; the LayerNorm variant (GroupNorm with one group "
         f"in place of every BatchNorm) has {counts['layer']:,}.")
Markdown(f"""
PreResNet-20: a 3x3 stem convolution, three stages of three pre-activation basic blocks
(16, 32 and 64 channels), then norm, ReLU, global average pooling and a linear layer to one output
per class: {ds.num_classes} here{'' if ds.num_classes == 100 else ' (100 in the paper)'}. {sizes}
""")

# %% [markdown]
# ## Recipes at this scale

# %%
def recipe_row(who, r):
    return {"": who, "epochs": r.epochs, "batch": r.batch_size, "optimiser": r.optimizer.upper()
            + (" (Nesterov)" if r.optimizer == "sgd" and r.nesterov else ""),
            "lr": f"{r.lr:g}", "final lr": f"{r.lr_min:g}", "weight decay": f"{r.weight_decay:g}"}

rows = [recipe_row("teachers", sc.teacher), recipe_row("students", sc.student)]
if sc.layer_teacher is not None or sc.layer_student is not None:
    rows += [recipe_row("LayerNorm teacher (E3)", sc.teacher_recipe("layer")),
             recipe_row("LayerNorm students (E3)", sc.student_recipe("layer"))]
pd.DataFrame(rows).set_index("")

# %% tags=["hide-input"]
def seed_list(specs):
    """The seeds of `specs` in words: "seeds 0 to 2", "seeds 100000 and 100001", "seed 7"."""
    seeds = sorted({s.seed for s in specs})
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]} to {seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds[:-1])) + f" and {seeds[-1]}"


e3_norm = sc.lambda_norms[0]
e3_specs = plans.initialisation_specs(sc, e3_norm)
e3_lam = next(lam for lam in sc.lambdas if lam < 1)
draw = ("the report's usual draw of seeds" if sc.seed_base == 0 else
        f"draw {sc.seed_base} of seeds (seed_base = {sc.seed_base}: every seed is "
        f"{sc.seed_base} × {SEED_STRIDE:,} plus the usual one, so no run is shared with another draw)")
Markdown(f"""
The cosine schedule steps once per epoch; the last partial batch of each epoch is dropped.
The runs use {draw}.
The teacher pool has {sc.n_teachers} members ({seed_list(plans.teachers(sc))}); students use
temperature 4 and no label term (alpha = 0) unless an experiment varies them. Every setting that a
claim compares has {sc.seeds} students ({seed_list(next(iter(plans.optimiser_specs(sc).values())))}), so that
differences can be judged against the spread over seeds; E1 has {sc.self_distill_students}
({seed_list(plans.self_distillation_specs(sc))}), and E3 {sc.lambda_seeds} per λ below 1, each λ with seeds of
its own ({seed_list(e3_specs[e3_lam])} at λ = {e3_lam:g}).
The part "Beyond the paper" adds runs of its own: B1 self-distils teacher 0 with the label loss
weighted α = {', '.join(f'{a:g}' for a in sc.alphas)} ({sc.self_distill_students} students at α =
{max(sc.alphas):g}, paired seed by seed with E1's, and {sc.grid_seeds()} at each other α); B2 trains a
PreResNet-56 teacher with the teachers' recipe and {sc.self_distill_students} PreResNet-20 students of it, with
E1's seeds; B3 repeats E0 and E1
on the first {', '.join(map(str, sc.class_counts))} classes (two teachers each, and {sc.self_distill_students}
students of the first at {min(sc.class_counts)} classes, {sc.grid_seeds()} at the others). B4-B6 train nothing,
and neither does the part "Paper scale": it evaluates the original authors' own 18 networks, trained on all of
CIFAR-100 in 2020, on {'the whole test set' if sc.authors_test_per_class is None else
f'{sc.authors_test_per_class} test images per class (a smoke test)'} (protocol §10).
The appendix lists the candidate scales that were measured before this one was chosen.
""")

# %% [markdown]
# The runs each chapter's plan holds at this scale, from the study's table (`kdlib.study`): a run
# that two chapters share is trained once, where it first appears, so the last columns add up to
# every run the report trains.

# %% tags=["hide-input"]
pd.DataFrame(study.runs_by_chapter(sc)).set_index("chapter")

# %% [markdown]
# ## Deviations: paper, study and this report
#
# The paper's column summarises Stanton et al. (2021); the study's, the replication by
# Alakbarli et al. (2026). Entries marked *fix* correct an error in earlier code.

# %%
pd.DataFrame([
    {"aspect": "normalisation in E3", "paper": "LayerNorm", "study": "BatchNorm",
     "this report": " and ".join(tables.NORM_NAMES[n] for n in sc.lambda_norms)
                    + ("" if len(sc.lambda_norms) > 1 else " (both at the paper scale)")},
    {"aspect": "normalisation in E6", "paper": "LayerNorm", "study": "BatchNorm",
     "this report": tables.NORM_NAMES[next(iter(plans.optimiser_specs(sc).values()))[0].norm]},
    {"aspect": "lambda grid (E3)", "paper": "dense", "study": "0, .25, .375, .5, 1",
     "this report": ", ".join(f"{v:.3g}" for v in sc.lambdas)},
    {"aspect": "NLL", "paper": "true NLL", "study": "~20 (indexing bug)", "this report": "true NLL (fix)"},
    {"aspect": "CKA", "paper": "linear CKA over examples", "study": "RBF kernel per batch over spatial columns",
     "this report": "linear CKA over examples (fix)"},
    {"aspect": "fidelity baseline", "paper": "student of teacher j vs teacher i",
     "study": "teacher vs teacher, presented as the paper's", "this report": "both, named (fix)"},
    {"aspect": "E6 schedule", "paper": f"{PAPER['e6_epochs'][0]:,} and {PAPER['e6_epochs'][1]:,} epochs",
     "study": f"{STUDY['e6_epochs'][0]} / {STUDY['e6_epochs'][1]} epochs", "this report": f"{sc.student.epochs} / {sc.student.epochs * sc.long_factor} epochs"},
    {"aspect": "classes", "paper": "100", "study": "100", "this report": f"{ds.num_classes}"},
    {"aspect": "training data", "paper": "50,000 images", "study": "50,000 images",
     "this report": f"{len(ds.train):,} images"},
    {"aspect": "test data", "paper": "10,000 images", "study": "10,000 images",
     "this report": f"{len(ds.test):,} images"},
    {"aspect": "epochs (teachers / students)", "paper": "200 / 300", "study": "200 / 300",
     "this report": f"{sc.teacher.epochs} / {sc.student.epochs}"},
    {"aspect": "runs per compared setting", "paper": f"{PAPER['e3_trials']} in E3", "study": "3 in E1, 1 elsewhere",
     "this report": f"{sc.seeds} or more ({sc.lambda_seeds} per λ in E3)"},
]).set_index("aspect")
