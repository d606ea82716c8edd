import math

import pytest
import torch

from prime_trl.core import accuracy_filter

NAN = float("nan")


def loop_accuracy_filter(scores, G, low, high):
    """Slow oracle: a prompt is kept iff all its G rows are scored and their mean lies in [low, high]."""
    keep = []
    values = scores.tolist()
    for start in range(0, len(values), G):
        group = values[start : start + G]
        keep.append(not any(math.isnan(s) for s in group) and low <= sum(group) / len(group) <= high)
    return keep


def test_accuracy_filter_hand_computed_binary():
    scores = torch.tensor([1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0], dtype=torch.float)
    # G = 4 means: 0.25 keep, 1.0 drop, 0.0 drop, 0.75 keep, 0.5 keep
    assert accuracy_filter(scores, 4).tolist() == [True, False, False, True, True]


def test_accuracy_filter_bounds_are_inclusive():
    # G = 5 means 1/5 = 0.2 and 4/5 = 0.8 sit exactly on the bounds and are kept; 0/5 and 5/5 are not
    scores = torch.tensor([1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=torch.float)
    assert accuracy_filter(scores, 5).tolist() == [True, True, False, False]
    # fractional code scores: means 0.7/3 = 0.2333 keep, 0.15 drop, 0.85 drop; custom bounds 0.1-0.9 keep all three
    code = torch.tensor([0.7, 0.0, 0.0, 0.1, 0.2, 0.15, 0.9, 0.8, 0.85])
    assert accuracy_filter(code, 3).tolist() == [True, False, False]
    assert accuracy_filter(code, 3, low=0.1, high=0.9).tolist() == [True, True, True]


def test_accuracy_filter_drops_a_group_with_an_unscorable_row():
    scores = torch.tensor([1, NAN, 0, 0, 1, 0, 1, 0, NAN, NAN, NAN, NAN])
    # one NaN row -> drop (its scored rows' mean 1/3 would pass); (1 + 0 + 1 + 0)/4 = 0.5 keep; all NaN -> drop
    assert accuracy_filter(scores, 4).tolist() == [False, True, False]


def test_accuracy_filter_group_of_one():
    # G = 1 with binary outcomes never lands in [0.2, 0.8]; a fractional 0.5 does
    assert accuracy_filter(torch.tensor([0.0, 1.0, 0.5]), 1).tolist() == [False, False, True]


@pytest.mark.parametrize("num_generations", [1, 2, 4])
def test_accuracy_filter_matches_loop(generator, num_generations):
    scores = torch.randint(0, 3, (8 * num_generations,), generator=generator).float() / 2  # 0, 0.5, 1
    scores[torch.rand(scores.shape, generator=generator) < 0.2] = NAN
    expected = loop_accuracy_filter(scores, num_generations, 0.2, 0.8)
    assert accuracy_filter(scores, num_generations).tolist() == expected
