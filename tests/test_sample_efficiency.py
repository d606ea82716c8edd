"""The sample-efficiency benchmark's arithmetic: interpolated samples-to-target and seed means."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("sample_efficiency", os.path.join(ROOT, "bench", "sample_efficiency.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

CURVE = [{"samples": 0, "accuracy": 0.5}, {"samples": 100, "accuracy": 0.6}, {"samples": 200, "accuracy": 0.8}]


def test_samples_to_reach_interpolates_between_checks():
    assert bench.samples_to_reach(CURVE, 0.5) == 0.0
    assert bench.samples_to_reach(CURVE, 0.55) == pytest.approx(50.0)  # halfway from 0.5 to 0.6
    assert bench.samples_to_reach(CURVE, 0.7) == pytest.approx(150.0)  # halfway from 0.6 to 0.8
    assert bench.samples_to_reach(CURVE, 0.9) is None


def test_mean_curve_averages_pointwise():
    other = [{"samples": 0, "accuracy": 0.3}, {"samples": 100, "accuracy": 0.4}, {"samples": 200, "accuracy": 0.6}]
    assert [round(p["accuracy"], 6) for p in bench.mean_curve([CURVE, other])] == [0.4, 0.5, 0.7]
