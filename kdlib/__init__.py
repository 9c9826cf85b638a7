"""kdlib: an executable replication of "Does Knowledge Distillation Really Work?"
(Stanton et al., NeurIPS 2021) on CIFAR-100 with PreResNet-20.

Modules follow the replication protocol (docs/protocol.md; code cites it as "protocol §n"): `data`
(§1), `models` (§2), `losses` (§3), `config` and `scales` (§4, §7), `metrics` (§5), `claims` and
`stats` (§8). One run goes through `runs` (get_run, run_all: the plan), `identity` (its RunKey),
`train` (the loop), `evaluate` (its final metrics) and `cache` (its files), with `device`,
`logit_cache`, `files`, `checks` and, for Ray, `executor` beside them. `plans` names the runs each
experiment trains; `experiments` (analyses and the notebooks' entry point), `tables` (mean ± std),
`plots`, `reference`, `widgets`, `progress`, `parameters` and `report` serve the notebooks and the book.
"""

__version__ = "0.2.0"
