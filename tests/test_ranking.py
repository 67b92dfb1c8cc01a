"""Rank correlations and the binomial standard error against hand-computed values (ties included)."""
import math

import numpy as np
import pytest

from patsearch.ranking import (
    average_ranks,
    binomial_se,
    bootstrap_interval,
    describe_interval,
    kendall_tau,
    pooled_std,
    spearman,
)


@pytest.mark.parametrize("use_scipy", [False, True])  # without scipy installed both run the numpy fallback
def test_kendall_tau_hand_computed(use_scipy):
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40], use_scipy=use_scipy) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1], use_scipy=use_scipy) == pytest.approx(-1.0)
    # 3 pairs: (1,2) and (1,3) concordant, (2,3) discordant -> (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2], use_scipy=use_scipy) == pytest.approx(1 / 3)
    # tau-b with a tie in the first list: 5 concordant pairs, the tied pair counts in neither numerator nor nx;
    # nx = 5 untied pairs, ny = 6 -> 5 / sqrt(30)
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 4], use_scipy=use_scipy) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3], use_scipy=use_scipy))
    assert math.isnan(kendall_tau([1], [2], use_scipy=use_scipy))


@pytest.mark.parametrize("use_scipy", [False, True])
def test_spearman_hand_computed(use_scipy):
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16], use_scipy=use_scipy) == pytest.approx(1.0)  # monotone, not linear
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (-1, 1, 0, 0) -> 1 - 12/60
    assert spearman([0.31, 0.39, 0.50, 0.22], [0.6, 0.5, 0.7, 0.4], use_scipy=use_scipy) == pytest.approx(0.8)
    # ties: average ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4) -> 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4], use_scipy=use_scipy) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(spearman([2, 2, 2], [1, 2, 3], use_scipy=use_scipy))


def test_fallbacks_match_on_random_data_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 30), rng.integers(0, 5, 30)  # many ties
    ra, rb = average_ranks(a), average_ranks(b)
    rho = np.corrcoef(ra, rb)[0, 1]
    assert spearman(a, b, use_scipy=False) == pytest.approx(rho)
    assert kendall_tau(a, b, use_scipy=False) == pytest.approx(kendall_tau(a, b))


def test_average_ranks_and_bad_input():
    assert list(average_ranks([10, 30, 20, 20])) == [1.0, 4.0, 2.5, 2.5]
    with pytest.raises(ValueError, match="equal length"):
        kendall_tau([1, 2], [1, 2, 3])


def test_binomial_standard_error():
    assert binomial_se(0.5, 400) == pytest.approx(0.025)  # 2.5 points on 400 images
    assert binomial_se(0.9, 10000) == pytest.approx(0.003)
    assert binomial_se(0.0, 50) == 0.0
    with pytest.raises(ValueError, match="at least one image"):
        binomial_se(0.5, 0)


def test_pooled_std_weights_groups_by_degrees_of_freedom():
    # sums of squares 8 (dof 2) and 2 (dof 1), a single value adds nothing: sqrt(10 / 3)
    assert pooled_std([[1.0, 3.0, 5.0], [4.0, 6.0], [9.0]]) == pytest.approx(math.sqrt(10 / 3))
    # equal group sizes: the square root of the mean of the sample variances
    assert pooled_std([[1.0, 2.0], [3.0, 6.0]]) == pytest.approx(math.sqrt((0.5 + 4.5) / 2))
    assert pooled_std([[1.0], [2.0]]) is None and pooled_std([]) is None


def test_scipy_is_used_when_installed(monkeypatch):
    """The dispatch to scipy.stats (installed on the GPU machine, not here), with a stand-in module."""
    import sys
    import types

    stats = types.SimpleNamespace(kendalltau=lambda x, y: types.SimpleNamespace(statistic=0.25),
                                  spearmanr=lambda x, y: types.SimpleNamespace(statistic=0.75))
    monkeypatch.setitem(sys.modules, "scipy", types.SimpleNamespace(stats=stats))
    monkeypatch.setitem(sys.modules, "scipy.stats", stats)
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 0.25 and spearman([1, 2, 3], [1, 2, 3]) == 0.75
    assert kendall_tau([1, 2, 3], [1, 2, 3], use_scipy=False) == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_statistic_and_narrows_with_more_items():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=200)
    noisy = truth + rng.normal(scale=1.0, size=200)
    small = bootstrap_interval(truth[:20], noisy[:20])
    large = bootstrap_interval(truth, noisy)
    for (lo, hi), n in ((small, 20), (large, 200)):
        assert lo < kendall_tau(truth[:n], noisy[:n]) < hi
    assert large[1] - large[0] < 0.6 * (small[1] - small[0])  # about 1/sqrt(10) as wide
    assert bootstrap_interval(truth[:20], noisy[:20]) == small  # seeded: the same interval each time
    assert bootstrap_interval(truth[:20], truth[:20]) == (1.0, 1.0)
    assert bootstrap_interval([1, 2], [2, 1]) is None
    with pytest.raises(ValueError, match="0 < level < 1"):
        bootstrap_interval(truth, noisy, level=95)


def test_describe_interval_states_a_pair_and_nothing_else():
    assert describe_interval((0.341, 0.779)) == " (95% interval 0.34 to 0.78)"
    assert describe_interval([0.1, 0.7], level=90) == " (90% interval 0.10 to 0.70)"
    assert describe_interval(None) == describe_interval([0.5]) == describe_interval("0.1-0.7") == ""


@pytest.mark.parametrize("a, b", [
    ([0, 2, 2, 2, 2, 2, 2], [0.42, 2.43, 3.44, 0.84, 3.07, 2.24, 1.38]),  # tau 0.53, percentile interval 0.55-0.89
    ([0.1, 0.2, 0.3], [0.5, 0.6, 0.6]),
])
def test_a_few_tied_items_still_give_an_interval_that_holds_the_estimate(a, b):
    # With ties the percentile interval of so few items can lie wholly above tau; it is widened to include it.
    tau = kendall_tau(a, b, use_scipy=False)
    lo, hi = bootstrap_interval(a, b)
    assert lo <= tau <= hi and hi - lo < 2
