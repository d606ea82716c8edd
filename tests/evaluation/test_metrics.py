"""pass@k, majority vote, per-source aggregation and best-of-N selection, on hand-computed cases and oracles."""

import itertools
import math

import pytest

from prime_trl.evaluation import (
    aggregate_metrics,
    aggregate_steps,
    answer_key,
    best_of_n_index,
    default_ks,
    format_table,
    majority_correct,
    majority_index,
    pass_at_k,
    rerank_problem_metrics,
)


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 0.4),  # c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 0, 2, 0.0),  # nothing correct
        (4, 4, 3, 1.0),  # everything correct
        (5, 3, 3, 1.0),  # only 2 wrong: every 3-subset holds a correct one
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k_hand_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def _pass_at_k_enumerated(n, c, k):
    """Fraction of k-subsets of n samples (the first c correct) that contain a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration_over_subsets():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_enumerated(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not
    value = pass_at_k(1000, 1, 500)
    assert value == pytest.approx(0.5) and math.isfinite(value)


@pytest.mark.parametrize("n, c, k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(4) == [1, 2, 4]
    assert default_ks(6) == [1, 2, 4, 6]


def test_majority_vote_ties_and_missing_answers():
    assert majority_index(["3", "4", "4", "3"]) == 0  # tie: the answer seen first
    assert majority_index([None, "5", None, "6", "6"]) == 3  # None casts no vote
    assert majority_index([None, None]) is None
    assert majority_correct(["3", "4", "4"], [1.0, 0.0, 0.0]) == 0.0
    assert majority_correct(["3", "4", "3"], [1.0, 0.0, 1.0]) == 1.0
    assert majority_correct([None, None], [0.0, 0.0]) == 0.0


def test_answer_key_uses_the_verifier_extraction_and_normalises():
    assert answer_key("so \\boxed{\\dfrac{1}{2}}") == answer_key("The answer is $\\frac{1}{2}$")
    assert answer_key("[OUTPUT]\n\nThe answer is \\boxed{7}.") == "7"
    assert answer_key("no answer here") is None
    assert answer_key("```python\nprint(1)\n```", "code") == "print(1)"


def test_aggregate_metrics_per_source_by_hand():
    # problem a1: 1 of 4 correct, majority answer "2" is wrong; a2: 3 of 4, majority "5" right; b1: 0 of 4
    scores = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    keys = [["1", "2", "2", "3"], ["5", "5", "6", "5"], [None, "9", None, None]]
    table = aggregate_metrics(scores, keys, ["a", "a", "b"])
    assert list(table) == ["a", "b", "all"]
    # a: pass@1 = (1/4 + 3/4)/2 = 0.5; pass@2 = (1 - C(3,2)/C(4,2) + 1 - 0)/2 = (0.5 + 1)/2; maj@4 = (0 + 1)/2
    assert table["a"] == pytest.approx({"num_problems": 2, "pass@1": 0.5, "mean_score": 0.5, "pass@2": 0.75,
                                        "pass@4": 1.0, "maj@4": 0.5})
    assert table["b"]["pass@4"] == 0.0 and table["b"]["num_problems"] == 1
    assert table["all"]["pass@1"] == pytest.approx(4 / 12)
    assert table["all"]["pass@2"] == pytest.approx(1.5 / 3)
    text = format_table(table)
    assert "pass@2" in text and "maj@4" in text and text.splitlines()[-1].startswith("all")


def test_partial_code_credit_counts_in_mean_score_only():
    table = aggregate_metrics([[0.5], [1.0]], [[None], [None]], ["apps", "apps"])
    assert table["all"]["pass@1"] == 0.5 and table["all"]["mean_score"] == 0.75
    assert "maj@1" not in table["all"]  # it would repeat pass@1


def test_step_aggregations_and_best_of_n_pick_the_highest_score():
    # candidate 0: sum 0.5, min -0.5, last 1.0; 1: sum 0.6, min 0.1, last 0.1; 2: sum 0.3, min 0.3, last 0.3
    steps = [[-0.5, 1.0], [0.5, 0.1], [0.3]]
    picks = {a: best_of_n_index([aggregate_steps(r, a) for r in steps]) for a in ("sum", "min", "last")}
    assert picks == {"sum": 1, "min": 2, "last": 0}
    assert best_of_n_index([0.2, 0.7, 0.7]) == 1  # first on ties
    assert aggregate_steps([], "sum") == float("-inf")
    with pytest.raises(ValueError):
        aggregate_steps([1.0], "mean")


def test_rerank_problem_metrics_by_hand():
    steps = [[-0.5, 1.0], [0.5, 0.1], [0.3]]
    scores = [0.0, 1.0, 0.0]  # only candidate 1 (sum's pick) is right
    keys = ["4", "5", "4"]  # majority votes for the wrong "4"
    out = rerank_problem_metrics(scores, keys, steps)
    assert out == pytest.approx({"best_of_n[sum]": 1.0, "best_of_n[min]": 0.0, "best_of_n[last]": 0.0,
                                 "majority_vote": 0.0, "random": 1 / 3, "oracle": 1.0})
