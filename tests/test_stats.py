"""The bootstrap behind every claim: its intervals match textbook standard errors, pairing works,
seeds are resampled with the small-sample correction, and a verdict is reproducible."""

import numpy as np
import pytest

from kdlib.stats import Group, Interval, bootstrap, describe_noise


def bernoulli(p: float, n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_image_bootstrap_matches_the_binomial_standard_error():
    x = bernoulli(0.7, 4000)
    interval = bootstrap({"a": Group(x[None, :])}, lambda m: m["a"])
    p = x.mean()
    assert interval.estimate == pytest.approx(p)
    assert interval.se == pytest.approx(np.sqrt(p * (1 - p) / len(x)), rel=0.1)
    assert interval.low < p < interval.high
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * interval.se, rel=0.1)


def test_paired_images_cancel_what_two_runs_share():
    """Two runs that differ on 20 of 4,000 images: the paired difference is far surer than either."""
    a = bernoulli(0.6, 4000)
    b = a.copy()
    b[:20] = 1 - b[:20]
    diff = bootstrap({"a": Group(a[None]), "b": Group(b[None])}, lambda m: m["b"] - m["a"])
    single = bootstrap({"a": Group(a[None])}, lambda m: m["a"])
    assert diff.estimate == pytest.approx((b - a).mean())
    assert diff.se < single.se / 4


def test_seed_resampling_has_the_standard_error_of_a_mean():
    """Per-run values (no images): the resampled mean's spread is s / sqrt(n), for n = 2 too (a plain
    bootstrap would give sqrt((n - 1) / n) of it)."""
    for values in ([0.80, 0.90], [0.70, 0.75, 0.90, 0.72, 0.81]):
        v = np.array(values)
        interval = bootstrap({"runs": Group(v)}, lambda m: m["runs"], replicates=20000)
        assert interval.estimate == pytest.approx(v.mean())
        assert interval.se == pytest.approx(v.std(ddof=1) / np.sqrt(len(v)), rel=0.05)


def test_a_fixed_group_and_a_single_run_are_not_resampled():
    v = np.array([0.5, 0.9])
    fixed = bootstrap({"runs": Group(v, fixed=True)}, lambda m: m["runs"])
    assert fixed.se == pytest.approx(0, abs=1e-12) and fixed.low == pytest.approx(fixed.high) == pytest.approx(0.7)
    one = bootstrap({"run": Group(np.array([0.4]))}, lambda m: m["run"])
    assert one.se == pytest.approx(0, abs=1e-12) and one.low == pytest.approx(one.high) == pytest.approx(0.4)


def test_groups_of_one_setting_draw_the_same_seeds():
    """The agreement and the KL of one set of students: in every replicate both come from the same
    seeds, so a statistic of the two sees consistent pairs (here their difference never moves)."""
    seeds = np.array([0.2, 0.6, 0.9])
    linked = bootstrap({"x": Group(seeds, setting="s"), "y": Group(seeds + 1, setting="s")},
                       lambda m: m["y"] - m["x"])
    assert linked.se == pytest.approx(0, abs=1e-12)
    unlinked = bootstrap({"x": Group(seeds), "y": Group(seeds + 1)}, lambda m: m["y"] - m["x"])
    assert unlinked.se > 0.1
    with pytest.raises(ValueError, match="same runs"):
        bootstrap({"x": Group(seeds, setting="s"), "y": Group(seeds[:2], setting="s")}, lambda m: m["x"])


def test_verdicts_are_reproducible_and_seeded():
    x = bernoulli(0.5, 500)[None]
    a = bootstrap({"a": Group(x)}, lambda m: m["a"])
    assert a == bootstrap({"a": Group(x)}, lambda m: m["a"])
    assert a != bootstrap({"a": Group(x)}, lambda m: m["a"], seed=1)


def test_position_and_scaling():
    i = Interval(estimate=2.0, low=1.0, high=3.0, se=0.5)
    assert (i.position(0), i.position(2), i.position(4)) == ("above", "within", "below")
    assert i.scaled(-100) == Interval(-200.0, -300.0, -100.0, 50.0)
    assert i.text() == "2.00 [1.00, 3.00]"


def test_a_ratio_with_a_vanishing_denominator_is_not_judged():
    x = np.zeros((1, 100))
    interval = bootstrap({"a": Group(x)}, lambda m: m["a"] / m["a"])
    assert interval.position(0.5) == "within" and np.isinf(interval.se)


@pytest.mark.parametrize("values", [np.zeros((0, 3)), np.zeros((2, 0)), np.zeros((2, 2, 2))])
def test_bad_groups_are_rejected(values):
    with pytest.raises(ValueError, match="values must be"):
        Group(values)


def test_groups_must_cover_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        bootstrap({"a": Group(np.ones((1, 5))), "b": Group(np.ones((1, 6)))}, lambda m: m["a"])


def test_noise_is_described():
    text = describe_noise({"s": Group(np.ones((3, 10))), "t": Group(np.ones((1, 10)), fixed=True)})
    assert "10 images" in text and "s: 3" in text and "95 %" in text
    assert "no seeds" in describe_noise({"t": Group(np.ones((1, 10)))})
