"""The estimator benchmark's statistics: mean and Student-t 95% confidence half-width over seeds."""

import math

import pytest

from bench_scripts import load_bench

bench = load_bench("estimators")


def test_intervals_hand_computed():
    # (1, 2, 3): mean 2, sample std 1, t_{0.975, 2} = 4.303 -> half-width 4.303 / sqrt(3) = 2.4843
    mean, half = bench.mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and half == pytest.approx(2.4843, abs=1e-4)
    assert bench.mean_ci([0.5, 0.5])[1] == 0.0
    assert math.isnan(bench.mean_ci([0.4])[1])
    # paired gains (0.5-0.4, 0.7-0.5, 0.6-0.6) = (0.1, 0.2, 0.0): mean 0.1, sd 0.1 -> half-width 4.303 * 0.1 / sqrt(3)
    gain, gain_half = bench.paired_difference_ci([0.5, 0.7, 0.6], [0.4, 0.5, 0.6])
    assert gain == pytest.approx(0.1) and gain_half == pytest.approx(0.24843, abs=1e-4)


def test_the_benchmark_covers_every_estimator():
    from prime_trl.estimators import ADVANTAGE_ESTIMATORS

    assert set(bench.ESTIMATORS) <= set(ADVANTAGE_ESTIMATORS)
