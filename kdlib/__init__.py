"""kdlib: an executable replication of "Does Knowledge Distillation Really Work?"
(Stanton et al., NeurIPS 2021) on CIFAR-100 with PreResNet-20.

Modules follow the replication protocol: `data` (§1), `models` (§2), `losses` (§3), `config` and
`scales` (§4, §7), `metrics` (§5); `train`, `evaluate`, `logit_cache`, `cache` and `executor` run
and keep runs; `experiments`, `reference`, `widgets` and `report` serve the notebooks and the book.
"""

__version__ = "0.1.0"

from kdlib import metrics  # noqa: E402,F401  (used by train)
