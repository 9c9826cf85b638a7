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
# # E7 · Summary: what replicated
#
# Our numbers beside the paper's and the study's (the study's Table 8), then each of the paper's
# claims checked against our runs at this scale.

# %% tags=["parameters"]
scale = "reduced"
data = ""
device = "auto"
executor = "inline"

# %%
import pandas as pd
from IPython.display import Markdown, display

from kdlib import experiments as ex

exp = ex.open_experiment(scale, data, device, executor)
sc = exp.scale
teachers = exp.run(ex.teachers(sc))
e1 = exp.run(ex.self_distillation_specs(sc))
e2 = exp.run(ex.ensemble_specs(sc))
e3 = {n: exp.run(ex.initialisation_specs(sc, n)) for n in sc.lambda_norms}
e4 = exp.run(ex.cka_specs(sc))
e5 = exp.run(ex.temperature_specs(sc))
e6 = exp.run(ex.optimiser_specs(sc))
pairs = ex.pairwise(teachers)

# %%
def pct(runs, key):
    return [100 * r.metrics[key] for r in runs]

pd.DataFrame([
    {"metric": "teacher test acc (%)", "paper": "~70.5", "study": "65.22", "ours": ex.fmt(pct(teachers, "test_acc"))},
    {"metric": "student test acc (%)", "paper": "~71", "study": "68.62", "ours": ex.fmt(pct(e1, "test_acc"))},
    {"metric": "agreement (%)", "paper": "~72", "study": "71.36", "ours": ex.fmt(pct(e1, "test_agreement"))},
    {"metric": "KL(teacher || student)", "paper": "~0.7", "study": "0.854", "ours": ex.fmt([r.metrics["test_kl"] for r in e1], 1, 3)},
    {"metric": "teacher-teacher agreement (%)", "paper": "n/a", "study": "63.19", "ours": ex.fmt([100 * p["agreement"] for p in pairs])},
    {"metric": "teacher-teacher symmetric KL", "paper": "n/a", "study": "1.672", "ours": ex.fmt([p["symmetric_kl"] for p in pairs], 1, 3)},
]).set_index("metric")

# %%
t_acc = e1[0].metrics["teacher_test_acc"]
s_acc = ex.mean_std([r.metrics["test_acc"] for r in e1])[0]
agree = ex.mean_std([r.metrics["test_agreement"] for r in e1])[0]
tt = ex.mean_std([p["agreement"] for p in pairs])[0]
ens_agree = [r.metrics["test_agreement"] for r in e2]
lam_end = {n: (runs[0].metrics["train_aug_agreement"], runs[-1].metrics["train_aug_agreement"]) for n, runs in e3.items()}
cka_gap = ex.cka_gap(e4["random"], e4["teacher_init"])
tau_agree = {k: r.metrics["test_agreement"] for k, r in e5.items()}
e6_spread = max(r.metrics["test_agreement"] for r in e6.values()) - min(r.metrics["test_agreement"] for r in e6.values())

def yes(cond):
    return "yes" if cond else "no"

claims = [
    ("Self-distilled students are at least as accurate as their teacher (E1)", yes(s_acc >= t_acc),
     f"student {100 * s_acc:.2f} % vs teacher {100 * t_acc:.2f} %"),
    ("Students are far from faithful: agreement well below 100 % (E1)", yes(agree < 0.9), f"agreement {100 * agree:.2f} %"),
    ("Distillation adds fidelity beyond what independent teachers share (E0, E1)", yes(agree > tt),
     f"{100 * agree:.2f} % vs {100 * tt:.2f} % teacher-teacher"),
    ("Ensemble students agree more as the ensemble grows (E2)", yes(ens_agree[-1] > ens_agree[0]),
     " → ".join(f"{100 * a:.2f} %" for a in ens_agree)),
    ("Starting near the teacher gives high fidelity; far from it, low (E3)",
     yes(all(hi - lo > 0.2 for lo, hi in lam_end.values())),
     "; ".join(f"{n}: {100 * lo:.1f} % → {100 * hi:.1f} %" for n, (lo, hi) in lam_end.items())),
    ("Teacher-init and random-init students have similar CKA (E4)", yes(cka_gap < ex.SIMILAR_CKA_GAP), f"largest stage gap {cka_gap:.3f}"),
    ("A higher temperature raises agreement (E5)",
     yes(tau_agree.get("tau=4", 0) > tau_agree.get("tau=1", 1)),
     ", ".join(f"{k}: {100 * v:.2f} %" for k, v in tau_agree.items())),
    ("Neither longer training nor Adam closes the gap (E6)", yes(e6_spread < 0.05 and max(r.metrics['test_agreement'] for r in e6.values()) < 0.9),
     f"spread {100 * e6_spread:.2f} points"),
]
with pd.option_context("display.max_colwidth", None):
    display(pd.DataFrame(claims, columns=["claim", f"holds at '{sc.name}'", "evidence"]).set_index("claim"))

# %% tags=["hide-input"]
held = [c[0] for c in claims if c[1] == "yes"]
missed = [c[0] for c in claims if c[1] != "yes"]
central = "" if not (claims[1][1] == claims[2][1] == "yes") else """The central finding shows already at
this scale: a distilled student agrees with its teacher on far from all test images, yet on more of them
than two independently trained teachers agree on."""
last = {k: ex.history_series(r, "test_agreement") for k, r in e6.items()}
rise = {k: (e[-2], e[-1], v[-1] - v[-2]) for k, (e, v) in last.items() if len(v) > 1}
still_rising = bool(rise) and all(d > 0 for _, _, d in rise.values())
why = "" if not missed else f"""
Not at this scale: {"; ".join(missed)}. These claims compare where training ends up. """ + (f"""Our students
are still improving when training stops: between the last two evaluations, agreement with the teacher
rose by {", ".join(f"{100 * d:.1f} points (epochs {a}-{b})" for a, b, d in rise.values())} in the three E6
runs. A setting that learns faster (a smoother target, Adam, more epochs) then looks more faithful, and
a student has had no time to overtake its teacher. """ if still_rising else "") + """The `paper` scale, with
teachers and students trained to convergence, is the test of these claims."""
Markdown(f"""
At the **{sc.name}** scale ({sc.description}), {len(held)} of the {len(claims)} claims hold in our runs.

Held: {"; ".join(held) if held else "none"}. {central}
{why}
## Corrections to earlier work, and their effect

- **NLL.** The original code's logged test NLL indexed a batch-by-batch matrix and reads about 20; the
  study reported that value. Our NLL is the true mean negative log-likelihood (our teachers:
  {ex.fmt([r.metrics['test_nll'] for r in teachers], 1, 3)} nats at this scale).
- **CKA.** The original code's CKA compared spatial positions within batches with an RBF kernel; ours is
  linear CKA across examples on a fixed test subset. The study's CKA table inherits the error.
- **Baselines.** The study's teacher-versus-teacher agreement is not the paper's baseline (a student
  against other teachers); E0 reports both.
- **Normalisation.** The paper's optimisation experiments used LayerNorm, the released code only
  BatchNorm; the `paper` scale runs E3 with both, this scale with {' and '.join({'layer': 'LayerNorm', 'batch': 'BatchNorm'}[n] for n in sc.lambda_norms)}.
  E6 uses the {' and '.join(sorted({ {'layer': 'LayerNorm', 'batch': 'BatchNorm'}[r.spec.norm] for r in e6.values()}))} model.
""")
