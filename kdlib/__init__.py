"""kdlib: an executable replication of "Does Knowledge Distillation Really Work?"
(Stanton et al., NeurIPS 2021) on CIFAR-100 with PreResNet-20.

Modules follow the replication protocol (docs/protocol.md; code cites it as "protocol §n"): `data`
and `sources` (§1), `models` (§2), `losses` (§3), `config` and `scales` (§4, §7), `metrics` (§5),
`claims` and `stats` (§8, §9). The study itself is one table, `study`: every chapter, the runs it
needs (`plans`) and the claims that judge it; `verdicts` prints them (`python -m kdlib.claims`).
One run goes through `execute` (get_run, run_all: the plan and its executors: inline, processes,
Ray), `identity` (its RunKey), `train` (the loop), `evaluate` (its final metrics) and `cache` (its
files), with `device`, `logit_cache`, `files` and `checks` beside them. `parameters` (the report's
parameters, parsed once), `experiments` (analyses and the notebooks' entry point), `tables`,
`plots`, `reference`, `widgets`, `progress`, `notebook` and `report` serve the notebooks and the book.
"""

__version__ = "0.3.0"
