"""The estimator benchmark's statistics: mean and Student-t 95% confidence half-width over seeds."""

import importlib.util
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_estimators", os.path.join(ROOT, "bench", "estimators.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_mean_ci95_hand_computed():
    # (1, 2, 3): mean 2, sample std 1, t_{0.975, 2} = 4.303 -> half-width 4.303 / sqrt(3) = 2.4843
    mean, half = bench.mean_ci95([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and half == pytest.approx(2.4843, abs=1e-4)
    assert bench.mean_ci95([0.5, 0.5])[1] == 0.0
    assert math.isnan(bench.mean_ci95([0.4])[1])


def test_the_benchmark_covers_every_estimator():
    from prime_trl.estimators import ADVANTAGE_ESTIMATORS

    assert set(bench.ESTIMATORS) <= set(ADVANTAGE_ESTIMATORS)
