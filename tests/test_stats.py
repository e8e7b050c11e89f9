"""advrl.stats: the few-run estimators of Agarwal et al. (2021) on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from advrl import stats


def test_iqm_drops_the_outer_quarters():
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert stats.iqm([1.0, 2.0, 3.0]) == pytest.approx(2.0)  # under four runs nothing is cut: the mean
    assert stats.iqm([0.0, 50.0, 51.0, 1000.0]) == pytest.approx(50.5)  # an outlier on each side is ignored
    np.testing.assert_allclose(stats.iqm(np.array([np.arange(1, 9), np.arange(2, 10)])), [4.5, 5.5])  # per row


def test_bootstrap_interval_holds_the_estimate_is_reproducible_and_shrinks_with_more_runs():
    rng = np.random.default_rng(1)
    few, many = rng.normal(50, 20, size=5), rng.normal(50, 20, size=80)
    point, low, high = stats.interval_estimate([few], stats.iqm, reps=500, seed=3)
    assert point == pytest.approx(stats.iqm(few)) and low <= point <= high
    assert stats.interval_estimate([few], stats.iqm, reps=500, seed=3) == (point, low, high)  # seeded
    assert stats.interval_estimate([few], stats.iqm, reps=500, seed=4) != (point, low, high)
    _, low_many, high_many = stats.interval_estimate([many], stats.iqm, reps=500, seed=3)
    assert high_many - low_many < (high - low) / 2
    assert stats.interval_estimate([[7.0, 7.0]], stats.mean, reps=50) == (7.0, 7.0, 7.0)


def test_stratified_resamples_keep_each_datasets_number_of_runs():
    zeros, ones = np.zeros(2), np.ones(6)
    resampled = stats.resample([zeros, ones], 200, np.random.default_rng(0))
    assert resampled.shape == (200, 8)
    assert (resampled[:, :2] == 0).all() and (resampled[:, 2:] == 1).all()
    # every stratified resample has 6 of 8 ones, so the mean cannot move; pooled, it can
    assert stats.interval_estimate([zeros, ones], stats.mean, reps=200) == (0.75, 0.75, 0.75)
    _, low, high = stats.interval_estimate([np.concatenate([zeros, ones])], stats.mean, reps=200)
    assert low < 0.75 < high


def test_probability_of_improvement_on_known_orderings():
    better, worse = [5.0, 6.0, 7.0], [1.0, 2.0, 3.0]
    assert stats.probability_of_improvement([better], [worse], reps=200) == (1.0, 1.0, 1.0)
    assert stats.probability_of_improvement([worse], [better], reps=200) == (0.0, 0.0, 0.0)
    p, low, high = stats.probability_of_improvement([better], [better], reps=200)
    assert p == 0.5 and low < 0.5 < high  # a group against itself: ties count one half
    assert stats.probability_of_improvement([[4.0, 4.0]], [[4.0]], reps=20)[0] == 0.5
    # two datasets: X wins every pair on the first and half of them on the second
    assert stats.probability_of_improvement([better, [1.0, 3.0]], [worse, [2.0]], reps=200)[0] == pytest.approx(0.75)
    with pytest.raises(stats.StatsError, match="no dataset has runs of both"):
        stats.probability_of_improvement([[]], [[1.0]])


def test_performance_profile_counts_runs_above_each_threshold():
    taus = np.array([0.0, 15.0, 25.0, 35.0])
    fraction, low, high = stats.performance_profile([[10.0, 20.0, 30.0, 40.0]], taus, reps=300)
    np.testing.assert_allclose(fraction, [1.0, 0.75, 0.5, 0.25])
    assert (low <= fraction).all() and (fraction <= high).all() and (low < high)[1:].all()


@pytest.mark.parametrize("reps", [0, -5, 2.5, True])
def test_non_positive_resamples_are_refused(reps):
    with pytest.raises(stats.StatsError, match="positive integer"):
        stats.interval_estimate([[1.0, 2.0]], stats.mean, reps=reps)


def test_curve_band_resamples_whole_seeds():
    # two seeds: a resample holds seed 0 twice, seed 1 twice, or one of each: means 0, 1 or 2 (x2 at the 2nd point)
    mean, low, high = stats.curve_band(np.array([[0.0, 0.0], [2.0, 4.0]]), stats.mean, reps=2000, seed=0)
    assert mean.tolist() == [1.0, 2.0] and low.tolist() == [0.0, 0.0] and high.tolist() == [2.0, 4.0]
    with pytest.raises(stats.StatsError):
        stats.curve_band(np.zeros((0, 3)))
