"""How many seeds would decide a part of a claim: its power from the variance parts it measured (protocol §8)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats as _sp

from kdlib.claims.rules import ABOVE, INCONCLUSIVE, Part
from kdlib.claims.verdict import Verdict
from kdlib.stats import CONFIDENCE


def power(part: Part, effect: float | None = None, target: float = 0.8, most: int = 64) -> int | None:
    """Units (seeds) per block that would decide `part` with probability `target` if the quantity's
    true value were `effect` (default: the estimate measured), from the part's measured variance
    parts: the seed part scales as 1 / units, the images' part stays. As the interval does, each
    part keeps its own t quantile (its degrees of freedom: U - 1 per block, summed over pooled
    blocks): decided when |effect - boundary| exceeds the half-width of the interval that decides
    (95 % on the claimed side; on the other side the family's Bonferroni interval, as the rule
    needs to say "does not hold") plus the `target` quantile's. None when no count up to `most`
    would, no variance was measured, or the part's noise is not a seed model (B4's students as
    draws)."""
    if "model" in part.noise:
        return None
    iv = part.interval
    effect = iv.estimate if effect is None else effect
    units = max(part.noise["units"].values(), default=0)
    blocks = len(part.noise["units"]) if part.noise.get("pooled_seeds") else 1
    distance = abs(effect - part.boundary)
    claimed_side = (effect > part.boundary) == (part.claimed == ABOVE)
    confidence = CONFIDENCE if claimed_side else part.against_confidence
    if not math.isfinite(iv.seeds) or units < 2 or not math.isfinite(distance):
        return None
    per_unit = iv.seeds * units  # the seed part of one unit per block
    for n in range(2, most + 1):
        seeds = per_unit / n
        pieces = [(seeds, (n - 1) * blocks), (iv.images, math.inf)]

        def half(q):
            return math.sqrt(sum(v * (_sp.t.ppf(q, d) if math.isfinite(d) else _sp.norm.ppf(q)) ** 2
                                 for v, d in pieces if v > 0))

        if half(0.5 + confidence / 2) + half(target) < distance:
            return n
    return None


def deciding_runs(verdict: Verdict) -> str:
    """A sentence on how many seeds per setting would decide an undecided claim, from its parts'
    measured variance (`power`, at the effect measured)."""
    undecided = [(p, power(p)) for p in verdict.parts if p.verdict == INCONCLUSIVE]
    if not undecided:
        return ""
    said = [f"{p.name}: {n} seeds per setting" if n else f"{p.name}: more than 64 seeds per setting (the effect "
            "measured is too close to the boundary)" for p, n in undecided]
    return ("From the variance these runs measured, deciding it at the effect measured would take (80 % power) "
            + "; ".join(said) + ".")


def power_table(verdicts: Sequence[Verdict]) -> str:
    """Markdown: for every part, its seeds now, its verdict, and the seeds per setting that would
    decide it with 80 % probability at the effect measured (`power`)."""
    rows = ["| claim | part | seeds per setting now | verdict | seeds to decide it (80 % power, effect as measured) |",
            "|---|---|---|---|---|"]
    for v in verdicts:
        for p in v.parts:
            units = max(p.noise["units"].values(), default=0)
            needed = power(p)
            said = ("not a seed count" if "model" in p.noise else needed if needed is not None else "> 64")
            rows.append(f"| {v.experiment} · {v.title} | {p.name}: {p.text()} | {units} | {p.verdict} | {said} |")
    return "\n".join(rows)
