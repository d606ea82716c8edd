import math

import pytest
import torch
from torch.testing import assert_close

from prime_trl.core import error_localisation, length_correlation


def loop_length_correlation(rewards, lengths):
    """Slow oracle: Pearson's r from its textbook definition, 0 for a constant input."""
    n = len(rewards)
    mx, my = sum(rewards) / n, sum(lengths) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(rewards, lengths))
    vx = sum((x - mx) ** 2 for x in rewards)
    vy = sum((y - my) ** 2 for y in lengths)
    return 0.0 if vx == 0 or vy == 0 else cov / math.sqrt(vx * vy)


def loop_error_localisation(step_rewards, step_mask, first_wrong):
    """Slow oracle: per row, credit 1/#minima if the first wrong step is among the lowest steps."""
    hits, chances = [], []
    for rewards, mask, k in zip(step_rewards.tolist(), step_mask.tolist(), first_wrong.tolist()):
        steps = [r for r, m in zip(rewards, mask) if m]
        if not 0 <= k < len(steps):
            continue
        lowest = min(steps)
        minima = sum(r == lowest for r in steps)
        hits.append((steps[k] == lowest) / minima)
        chances.append(1 / len(steps))
    if not hits:
        return float("nan"), float("nan")
    return sum(hits) / len(hits), sum(chances) / len(chances)


def test_length_correlation_hand_computed():
    # x = (1, 2, 3), y = (2, 4, 6): a perfect line, r = 1; y reversed: r = -1
    assert_close(length_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2, 4, 6])), torch.tensor(1.0))
    assert_close(length_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([6, 4, 2])), torch.tensor(-1.0))
    # x = (0, 1, 0, 1), y = (1, 1, 2, 2): dx = (-.5, .5, -.5, .5), dy = (-.5, -.5, .5, .5), sum dx dy = 0 -> r = 0
    assert_close(length_correlation(torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([1, 1, 2, 2])), torch.tensor(0.0))
    # x = (1, 2, 4), y = (1, 2, 3): dx = (-4/3, -1/3, 5/3), dy = (-1, 0, 1); cov = 3, vx = 42/9, vy = 2
    expected = 3 / math.sqrt(42 / 9 * 2)
    assert_close(length_correlation(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1, 2, 3])), torch.tensor(expected))


def test_length_correlation_degenerate_inputs_are_zero():
    assert length_correlation(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1, 2, 3])).item() == 0.0  # untrained PRM
    assert length_correlation(torch.tensor([1.0, 2.0]), torch.tensor([5, 5])).item() == 0.0
    assert length_correlation(torch.tensor([1.0]), torch.tensor([5])).item() == 0.0


def test_length_correlation_matches_loop(generator):
    rewards = torch.randn(50, generator=generator)
    lengths = torch.randint(1, 40, (50,), generator=generator)
    expected = loop_length_correlation(rewards.tolist(), lengths.tolist())
    assert_close(length_correlation(rewards, lengths), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_error_localisation_hand_computed():
    step_rewards = torch.tensor([
        [0.1, -0.5, 0.2, 0.0],  # lowest is step 1 = first wrong step 1: hit 1; chance 1/3 (3 real steps)
        [0.3, 0.1, -0.2, 9.0],  # lowest real step is 2, first wrong is 0: hit 0 (9.0 is padding); chance 1/3
        [0.0, 0.0, 0.0, 0.0],   # all tied (untrained PRM), first wrong 3: hit 1/4; chance 1/4
        [-1.0, 0.0, 0.0, 0.0],  # correct solution (k = -1): takes no part
    ])  # fmt: skip
    step_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    first_wrong = torch.tensor([1, 0, 3, -1])
    hit, chance = error_localisation(step_rewards, step_mask, first_wrong)
    assert_close(hit, torch.tensor((1 + 0 + 0.25) / 3))
    assert_close(chance, torch.tensor((1 / 3 + 1 / 3 + 1 / 4) / 3))


def test_error_localisation_ignores_out_of_range_and_returns_nan_when_empty():
    step_rewards = torch.tensor([[0.0, -1.0]])
    hit, chance = error_localisation(step_rewards, torch.tensor([[1, 1]]), torch.tensor([2]))  # k beyond K = 2
    assert math.isnan(hit.item()) and math.isnan(chance.item())
    hit, _ = error_localisation(step_rewards, torch.tensor([[1, 1]]), torch.tensor([1]))
    assert hit.item() == 1.0


def test_error_localisation_uniform_rewards_score_chance(generator):
    lengths = torch.randint(1, 6, (40,), generator=generator)
    step_mask = (torch.arange(6) < lengths.unsqueeze(-1)).long()
    first_wrong = (torch.rand(40, generator=generator) * lengths).long()
    hit, chance = error_localisation(torch.zeros(40, 6), step_mask, first_wrong)
    assert_close(hit, chance)


@pytest.mark.parametrize("ties", [False, True])
def test_error_localisation_matches_loop(generator, ties):
    step_rewards = torch.randn(64, 7, generator=generator)
    if ties:  # few distinct values, so minima are often shared
        step_rewards = step_rewards.round()
    lengths = torch.randint(1, 8, (64,), generator=generator)
    step_mask = (torch.arange(7) < lengths.unsqueeze(-1)).long()
    first_wrong = torch.randint(-1, 8, (64,), generator=generator)
    hit, chance = error_localisation(step_rewards, step_mask, first_wrong)
    expected_hit, expected_chance = loop_error_localisation(step_rewards, step_mask, first_wrong)
    assert_close(hit, torch.tensor(expected_hit))
    assert_close(chance, torch.tensor(expected_chance))
