"""The parameters every chapter of the report runs with, defined once.

Each notebook's papermill `parameters` cell declares these names with these defaults as literals
(papermill needs a literal cell; tests/test_notebook_params.py checks they agree); `kdlib-report`
injects them, `kdlib.experiments.open_experiment` validates them and `python -m kdlib.claims` takes
the same ones from its command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Parameters:
    """What the runner injects into every notebook's `parameters` cell."""

    scale: str = "reduced"    # a name in kdlib.scales.SCALES
    data: str = ""            # a CIFAR-100 source; "" = kdlib.data.default_source()
    device: str = "auto"      # "auto", "cpu", "cuda" or "cuda:N" (kdlib.device.check_device_name)
    executor: str = "inline"  # how runs are trained (kdlib.executor)
    seed_base: int = 0        # the draw of seeds (kdlib.scales.Scale.seed_base; 0: the usual seeds)

    def resolved(self) -> dict[str, str | int]:
        """The values as notebooks receive them: the data source explicit and, for a local copy,
        absolute (the kernel runs in the notebooks folder, not where the command was typed)."""
        from kdlib import data as kdata

        source = self.data or kdata.default_source()
        if source != "torchvision":
            source = str(Path(source).expanduser().resolve())
        return {**dataclasses.asdict(self), "data": source}
