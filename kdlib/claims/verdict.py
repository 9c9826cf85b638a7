"""What every claim is built from: its `Verdict`, and the two helpers every claim function uses.

`part(...)` estimates one part of a claim from groups of runs (kdlib.stats) and gives the tuple that
`kdlib.claims.rules.family` turns into the claim's parts; `why_not(...)` says why a claim did not hold.
The paper's claims (kdlib.claims.paper) and the questions beyond it (kdlib.claims.beyond) use both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kdlib.claims import text
from kdlib.claims.rules import FAILS, HOLDS, MARGIN, Effect, Part, combine
from kdlib.stats import estimate, noise_model


@dataclass(frozen=True)
class Verdict:
    """A claim of the paper, judged on our runs."""

    id: str             # stable identifier, e.g. "e1-accuracy"
    experiment: str     # "E1"
    title: str          # a few words, e.g. "student at least as accurate"
    claim: str          # the claim as tested, in one sentence
    evidence: str       # the numbers, in a sentence or two
    parts: tuple[Part, ...] = ()
    why: str = ""       # when the claim does not hold or is inconclusive: what its runs show
    scope: str = ""     # what the verdict speaks of, when narrower than the paper's claim

    @property
    def verdict(self) -> str:
        return combine(self.parts)

    @property
    def noise(self) -> str:
        return "; ".join(dict.fromkeys(p.noise_text for p in self.parts)) or "not estimated"

    def to_json(self) -> dict:
        return {"id": self.id, "experiment": self.experiment, "title": self.title, "claim": self.claim,
                "verdict": self.verdict, "scope": self.scope, "evidence": self.evidence, "noise": self.noise,
                "why": self.why, "parts": [p.to_json() for p in self.parts]}


def part(name, groups, statistic, boundary, claimed, unit, effect: Effect = MARGIN) -> tuple:
    """(name, interval, boundary, claimed side, unit, noise model, effect) of one part: `statistic` of
    the groups' means (kdlib.stats.estimate) against `boundary` moved by the effect's delta, claimed to
    lie on side `claimed` (kdlib.claims.rules.Part)."""
    return (name, estimate(groups, statistic), boundary, claimed, unit, noise_model(groups), effect)


def why_not(parts: Sequence[Part], *more: str, if_fails: str = "") -> str:
    """Why a claim did not hold: the parts that did not, then `more` (what the runs show either way)
    and `if_fails` only when it does not hold (an undecided claim asserts nothing either way)."""
    verdict = combine(parts)
    if verdict == HOLDS:
        return ""
    return " ".join(s for s in (text.unresolved(parts), *more, if_fails if verdict == FAILS else "") if s)
