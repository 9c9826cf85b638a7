"""Claims in words: the sentences, lists and tables the chapters print (kdlib.claims)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdlib import tables
from kdlib.claims.evidence import rise_over_last_fifth
from kdlib.claims.rules import HOLDS, LEVELLED


def capital(sentence: str) -> str:
    """`sentence` with its first letter in upper case (a part's name or a note that starts one)."""
    return sentence[:1].upper() + sentence[1:]


def pct(values) -> str:
    """'m ± s %' over runs: `values` holds one fraction per run, or (runs, images) per-image values."""
    v = np.asarray(values, dtype=float)
    return tables.fmt(v.mean(1) if v.ndim == 2 else v, 100, unit=" %")


def seeds(runs: Sequence) -> str:
    return f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"


def levelling(runs: Sequence, what: str) -> str:
    """A sentence on whether these runs' test agreement had levelled off, computed from their histories."""
    rises = [x for x in (rise_over_last_fifth(r) for r in runs) if x is not None]
    if not rises:
        return ""
    top = max(rises)
    if top < LEVELLED:
        return (f"The {what} had levelled off: agreement rose by at most {top:.1f} points over the last fifth "
                "of training.")
    return (f"The {what} had not all levelled off: agreement still rose by up to {top:.1f} points over the last "
            "fifth of training, so where they end depends on the training length.")


def unresolved(parts) -> str:
    """The parts that did not hold, in words: the quantity, its interval, and what that means."""
    out = []
    for p in parts:
        if p.verdict == HOLDS:
            continue
        finding = f"; {p.finding()}" if p.finding() else ""
        out.append(f"{p.name}: {p.text()}, {p.reason()}{finding} ({p.noise_text})")
    return "; ".join(out) + "." if out else ""


def markdown(verdicts: Sequence) -> str:
    """The verdicts as a Markdown list, for the end of a chapter; a claim that did not hold says why
    under its own label (the why starts with a part's name, in lower case)."""
    return "\n".join(f"- **{v.verdict.capitalize()}.** {v.claim} {v.evidence} *Judged against:* {v.noise}."
                     + (f" *Speaks of* {v.scope}." if v.scope else "") + (f" *Why:* {v.why}" if v.why else "")
                     for v in verdicts)


def summary_table(verdicts: Sequence) -> str:
    """The E7 table as Markdown: each claim, its verdict and the comparisons that decided it."""
    rows = ["| claim | verdict | deciding comparisons: estimate [95 % interval], threshold (boundary ± δ) |",
            "|---|---|---|"]
    for v in verdicts:
        deciding = "; ".join(f"{p.name}: {p.text()}, {'>' if p.claimed == 'above' else '<'} {p.threshold:g}"
                             + (f" (δ = {p.effect.delta:g})" if p.effect.delta else "")
                             + (f"; {p.finding()}" if p.finding() else "") for p in v.parts) or v.evidence
        verdict = f"**{v.verdict}**" if v.verdict == HOLDS else v.verdict
        rows.append(f"| {v.experiment} · {v.title} (`{v.id}`) | {verdict} | {deciding} |")
    return "\n".join(rows)


def side_by_side(verdicts: Sequence, at_paper_scale: Sequence, published) -> str:
    """Markdown: each claim's verdict on this scale's runs beside its verdict on the original authors'
    networks (the paper scale, where they speak to it) and what was published (`published(claim_id)`)."""
    by_id = {v.id: v for v in at_paper_scale}

    def cell(v) -> str:
        if v is None:
            return "not testable with these networks"
        numbers = "; ".join(p.text() for p in v.parts)
        return f"**{v.verdict}**" + (f": {numbers}" if numbers else "")

    rows = ["| claim | our runs, this scale | the authors' networks, paper scale | published |", "|---|---|---|---|"]
    rows += [f"| {v.experiment} · {v.title} | {cell(v)} | {cell(by_id.get(v.id))} | {published(v.id) or 'n/a'} |"
             for v in verdicts]
    return "\n".join(rows)
