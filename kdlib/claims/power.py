"""How many seeds would decide a part of a claim: its power at declared planning effects (protocol §8).

`power(part, effect)` counts the seeds per setting that would decide a part with 80 % probability if
its quantity's true value were `effect`, from the variance parts the runs measured: the seed part
shrinks as one over the seeds, the images' part stays. `plans(part)` asks it at the effects declared
before the runs were read, never at the noisy estimate: the effect the paper or the study published
(would the claim be decided "holds", or "does not hold", if that were the truth?), and, for a part
with a smallest effect that matters, no effect at all (would "does not hold" be decided?). Where the
images' part alone, the fixed teachers' and the test set's, leaves the part undecided whatever the
seeds, more seeds cannot help: `plans` then says how many test images would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from kdlib.claims.rules import ABOVE, INCONCLUSIVE, Part
from kdlib.claims.verdict import Verdict
from kdlib.stats import CONFIDENCE, t_quantile

TARGET = 0.8  # the power a count of seeds is asked for
MOST = 64     # the most seeds per setting a count goes up to


def counts_seeds(part: Part) -> bool:
    """Whether the part's noise is seeds and images, which more of either shrinks; not B4's, whose
    interval is a model over settings (a Fisher z): no seed count applies to it."""
    return "model" not in part.noise


def _setup(part: Part, effect: float):
    """(distance to the threshold, the confidence that decides on that side), or None when the part's
    noise is not a seed model or was not measured."""
    iv = part.interval
    units = max(part.noise["units"].values(), default=0)
    distance = abs(effect - part.threshold)
    if not counts_seeds(part) or not math.isfinite(iv.seeds) or units < 2 or not math.isfinite(distance):
        return None
    claimed_side = (effect > part.threshold) == (part.claimed == ABOVE)
    return distance, (CONFIDENCE if claimed_side else part.against_confidence)


def power(part: Part, effect: float | None = None, target: float = TARGET, most: int = MOST) -> int | None:
    """Units (seeds) per block that would decide `part` with probability `target` if the quantity's
    true value were `effect` (default: the estimate measured), from the part's measured variance
    parts. As the interval does, each part keeps its own t quantile (the seeds' U - 1 degrees of
    freedom: the fewest any block would have): decided when |effect - threshold| exceeds the half-width of the
    interval that decides (95 % on the claimed side; on the other side the family's Bonferroni
    interval, as the rule needs to say "does not hold") plus the `target` quantile's. None when no
    count up to `most` would, no variance was measured, or the part's noise is not a seed model (B4)."""
    iv = part.interval
    setup = _setup(part, iv.estimate if effect is None else effect)
    if setup is None:
        return None
    distance, confidence = setup
    units = max(part.noise["units"].values(), default=0)
    per_unit = iv.seeds * units  # the seed part of one unit per block
    for n in range(2, most + 1):
        pieces = [(per_unit / n, n - 1), (iv.images, math.inf)]

        def half(q):
            return math.sqrt(sum(v * t_quantile(q, d) ** 2 for v, d in pieces if v > 0))

        if half(0.5 + confidence / 2) + half(target) < distance:
            return n
    return None


def images_needed(part: Part, effect: float, target: float = TARGET) -> int | None:
    """When the images' part alone leaves `part` undecided at `effect` whatever the seeds: about how
    many test images (its image part shrinking as one over them, the seeds' part gone) would decide
    it with probability `target`. None when the seeds can (or nothing was measured)."""
    setup = _setup(part, effect)
    n_images = part.noise.get("images", 0)
    if setup is None or not n_images or part.interval.images <= 0:
        return None
    distance, confidence = setup
    z = t_quantile(0.5 + confidence / 2, math.inf) + t_quantile(target, math.inf)
    if z * math.sqrt(part.interval.images) < distance:
        return None  # enough images already: seeds decide it
    if distance <= 0:
        return None
    return math.ceil(n_images * part.interval.images * z * z / (distance * distance))


@dataclass(frozen=True)
class Plan:
    """What it would take to decide a part if its true value were `effect`."""

    effect: float      # the true value assumed, in the part's unit
    decides: str       # the verdict that would then be reached: "holds" or "does not hold"
    why: str           # where the effect comes from
    seeds: int | None  # seeds per setting for 80 % power (None: more than MOST, or not a seed model)
    images: int | None  # when no number of seeds can: about how many test images would

    def words(self, part: Part) -> str:
        d = part.digits
        if self.seeds is not None:
            count = f"{self.seeds} seeds per setting"
        elif self.images is not None:
            count = f"more test images, not more seeds: about {self.images:,}"
        elif not counts_seeds(part):
            count = "not a seed count"
        else:
            count = f"more than {MOST} seeds per setting"
        return f"{count} to decide \"{self.decides}\" if the truth were {self.effect:.{d}f} ({self.why})"


def plans(part: Part) -> list[Plan]:
    """The seeds (or images) that would decide `part` at its declared planning effects: the published
    effect, when there is one, and no effect at all, for a part with a smallest effect that matters."""
    out = []
    wanted = []
    if part.effect.planning is not None:
        wanted.append((part.effect.planning, part.effect.source))
    if part.effect.delta > 0:
        wanted.append((part.boundary, "no effect at all"))
    for effect, why in wanted:
        on_claimed = (effect > part.threshold) == (part.claimed == ABOVE) and effect != part.threshold
        seeds = power(part, effect)
        out.append(Plan(effect, "holds" if on_claimed else "does not hold", why, seeds,
                        images_needed(part, effect) if seeds is None else None))
    return out


def plans_json(part: Part) -> list[dict]:
    """`plans(part)` as JSON (kdlib-claims --json): each with its effect, the verdict it would decide,
    where the effect comes from, the seeds per setting (or test images) and the sentence the report
    prints; empty where the noise is not seeds and images (B4's interval over settings)."""
    if not counts_seeds(part):
        return []
    return [{"effect": plan.effect, "decides": plan.decides, "why": plan.why, "seeds": plan.seeds,
             "images": plan.images, "words": plan.words(part)} for plan in plans(part)]


def deciding_runs(verdict: Verdict) -> str:
    """A sentence on what would decide an undecided claim: for each undecided part, the seeds (or the
    test images) at its declared planning effects (`plans`)."""
    undecided = [p for p in verdict.parts if p.verdict == INCONCLUSIVE]
    said = [f"{p.name}: " + "; ".join(plan.words(p) for plan in plans(p)) for p in undecided if plans(p)]
    if not said:
        return ""
    return "From the variance these runs measured, with 80 % power: " + "; ".join(said) + "."


def power_table(verdicts: Sequence[Verdict]) -> str:
    """Markdown: for every part, its seeds now, its verdict, its smallest effect that matters, and what
    would decide it at its declared planning effects (`plans`)."""
    rows = ["| claim | part | seeds per setting now | verdict | δ | what would decide it (80 % power) |",
            "|---|---|---|---|---|---|"]
    for v in verdicts:
        for p in v.parts:
            units = max(p.noise["units"].values(), default=0)
            said = ("not a seed count" if not counts_seeds(p) else
                    "; ".join(plan.words(p) for plan in plans(p)) or "no planning effect declared")
            rows.append(f"| {v.experiment} · {v.title} | {p.name}: {p.text()} | {units} | {p.verdict} | "
                        f"{p.effect.delta:g} | {said} |")
    return "\n".join(rows)
