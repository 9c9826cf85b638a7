"""The claims as code: from runs to a verdict, its evidence and its noise (protocol §8, §9).

Pure verdict code: nothing here trains, collects or prints. The study's table (kdlib.study) says
which runs each claim reads and judges it; `python -m kdlib.claims` prints the verdicts.

- `kdlib.claims.rules`: parts, boundaries, margins and the family rule (holds / does not hold /
  inconclusive);
- `kdlib.claims.evidence`: what a claim reads from runs, as groups for the noise model (kdlib.stats),
  and whether runs are in the paper's regime;
- `kdlib.claims.verdict`: the `Verdict`, and the helpers every claim uses (`part`, `why_not`);
- `kdlib.claims.paper`: the eight claims, one function each;
- `kdlib.claims.beyond`: the questions the study left open (B1-B6, protocol §9), judged the same way;
- `kdlib.claims.power`: the seeds that would decide a part;
- `kdlib.claims.text` and `kdlib.claims.figure`: their sentences, tables and E7's picture.
"""

from kdlib.claims.rules import FAILS, HOLDS, INCONCLUSIVE, VERDICTS, Part
from kdlib.claims.verdict import Verdict

__all__ = ["FAILS", "HOLDS", "INCONCLUSIVE", "Part", "VERDICTS", "Verdict"]
