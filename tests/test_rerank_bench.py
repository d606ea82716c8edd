"""bench/rerank.py's length-bias check on hand-made candidates."""

import pytest

from bench_scripts import load_bench

bench = load_bench("rerank")


def test_length_bias_by_hand():
    """Problem 0: candidates with steps (-1, -1, -1) wrong, (-1, 0) right, (-2,) wrong.
    sum: (-3, -1, -2) -> picks 1 (right, 2 steps); mean: (-1, -0.5, -2) -> 1; min: (-1, -1, -2) -> 0 (tie, first).
    Problem 1: (0.5, 0.5) right, (2,) wrong. sum: (1, 2) -> 1 (wrong, 1 step); mean: (0.5, 2) -> 1; min -> 1.
    """
    records = [
        {"scores": [0.0, 1.0, 0.0], "step_rewards": [[-1.0, -1.0, -1.0], [-1.0, 0.0], [-2.0]]},
        {"scores": [1.0, 0.0], "step_rewards": [[0.5, 0.5], [2.0]]},
    ]
    bias = bench.length_bias(records)
    assert bias["mean_steps_all_candidates"] == pytest.approx((3 + 2 + 1 + 2 + 1) / 5)
    assert bias["best_of_n[sum]"]["per_problem_correct"] == [1.0, 0.0]
    assert bias["best_of_n[mean]"]["per_problem_correct"] == [1.0, 0.0]
    assert bias["best_of_n[min]"]["per_problem_correct"] == [0.0, 0.0]
    assert bias["best_of_n[sum]"]["mean_steps_picked"] == pytest.approx((2 + 1) / 2)
    assert bias["best_of_n[min]"]["mean_steps_picked"] == pytest.approx((3 + 1) / 2)
    # sum scores (-3, -1, -2, 1, 2) against steps (3, 2, 1, 2, 1): Pearson r by hand
    x, y = [-3, -1, -2, 1, 2], [3, 2, 1, 2, 1]
    mx, my = sum(x) / 5, sum(y) / 5
    r = sum((a - mx) * (b - my) for a, b in zip(x, y)) / (
        sum((a - mx) ** 2 for a in x) ** 0.5 * sum((b - my) ** 2 for b in y) ** 0.5
    )
    assert bias["corr(score[sum], steps)"] == pytest.approx(r)
