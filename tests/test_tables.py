"""kdlib.tables: mean ± std over runs as the book prints it; kdlib.plots: a run's history curve."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

from kdlib import plots, tables
from kdlib.claims import text

matplotlib.use("Agg")


def _runs(*values, key="test_acc"):
    return [SimpleNamespace(metrics={key: v}) for v in values]


def test_mean_std_fmt_and_points():
    assert tables.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert tables.mean_std([5.0]) == (5.0, 0.0)
    assert tables.fmt([0.5, 0.7], 100) == "60.00 ± 14.14"
    assert tables.fmt([0.5], 100) == "50.00"
    assert tables.fmt(0.5, 100, unit=" %") == "50.00 %"
    assert tables.points(3.104) == "3.10 points higher"
    assert tables.points(-1) == "1.00 points lower"
    assert tables.points(0.001) == "no different"


def test_metric_helpers_are_fmt_and_mean_std_of_the_runs_metric():
    runs = _runs(0.5, 0.7, 0.65)
    assert tables.metric(runs, "test_acc", 100) == [50.0, 70.0, 65.0]
    assert tables.fmt_metric(runs, "test_acc", 100) == tables.fmt([0.5, 0.7, 0.65], 100) == "61.67 ± 10.41"
    assert tables.fmt_metric(runs, "test_acc", 1, 3) == "0.617 ± 0.104"
    assert tables.mean_metric(runs, "test_acc", 100) == tables.mean_std([50.0, 70.0, 65.0])[0]
    assert tables.mean_metric(runs[:1], "test_acc") == 0.5


def test_claims_pct_is_the_table_format_in_percent():
    """Per run, or per run and image (averaged over images first), as kdlib.claims prints it."""
    assert text.pct([0.5, 0.7]) == "60.00 ± 14.14 %"
    assert text.pct([0.5]) == "50.00 %"
    assert text.pct(np.array([[0.0, 1.0], [1.0, 1.0]])) == tables.fmt([0.5, 1.0], 100, unit=" %") == "75.00 ± 35.36 %"


def test_plot_history_skips_unmeasured_epochs_and_scales():
    import matplotlib.pyplot as plt

    run = SimpleNamespace(history=[{"epoch": 1, "test_agreement": 0.5, "train_loss": 2.0},
                                   {"epoch": 2, "train_loss": 1.5},
                                   {"epoch": 3, "test_agreement": float("nan"), "train_loss": 1.0},
                                   {"epoch": 4, "test_agreement": 0.75, "train_loss": 0.5}])
    assert plots.history_series(run, "test_agreement") == ([1, 4], [0.5, 0.75])
    fig, (a1, a2) = plt.subplots(1, 2)
    (line,) = plots.plot_history(a1, run, "test_agreement", 100, "o-", label="x")
    assert list(line.get_xdata()) == [1, 4] and list(line.get_ydata()) == [50.0, 75.0] and line.get_label() == "x"
    fig2, (b1, b2) = plt.subplots(1, 2)
    plots.agreement_and_loss(b1, b2, run, "C1", label="seed 0")
    assert list(b1.lines[0].get_ydata()) == [50.0, 75.0] and list(b2.lines[0].get_ydata()) == [2.0, 1.5, 1.0, 0.5]
    assert b1.lines[0].get_label() == b2.lines[0].get_label() == "seed 0"
    plt.close(fig)
    plt.close(fig2)
