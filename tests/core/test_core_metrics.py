import math

import pytest
import torch
from torch.testing import assert_close

from prime_trl.core import prm_pairwise_accuracy

NAN = float("nan")


def loop_pairwise_accuracy(process_rewards, scores, mask, G):
    """Slow oracle: weighted share of pairs i < j with different outcomes that the summed reward orders right.

    A tie in the summed reward counts 1/2; a group without such a pair scores 1/2.
    """
    rewards, scores, mask = process_rewards.tolist(), scores.tolist(), mask.tolist()
    summed = [sum(r for r, m in zip(row, m_row) if m) for row, m_row in zip(rewards, mask)]
    valid = [any(m_row) and not math.isnan(s) for m_row, s in zip(mask, scores)]
    groups = []
    for start in range(0, len(scores), G):
        right, total = 0.0, 0.0
        for i in range(start, start + G):
            for j in range(i + 1, start + G):
                if not (valid[i] and valid[j]) or scores[i] == scores[j]:
                    continue
                weight = abs(scores[i] - scores[j])
                if summed[i] == summed[j]:
                    right += 0.5 * weight
                elif (summed[i] > summed[j]) == (scores[i] > scores[j]):
                    right += weight
                total += weight
        groups.append(right / total if total else 0.5)
    return sum(groups) / len(groups)


def test_pairwise_accuracy_hand_computed():
    # group 0 (G = 3): S = (1 + 1, -1, 3) = (2, -1, 3), acc = (1, 0, 0.5)
    #   pair (0, 1): w = 1,   S_0 > S_1 and acc_0 > acc_1 -> right
    #   pair (0, 2): w = 0.5, S_0 < S_2 but acc_0 > acc_2 -> wrong
    #   pair (1, 2): w = 0.5, S_1 < S_2 and acc_1 < acc_2 -> right
    #   accuracy (1 + 0 + 0.5) / (1 + 0.5 + 0.5) = 0.75
    # group 1: all outcomes equal -> 0.5
    # mean over groups: (0.75 + 0.5) / 2 = 0.625
    rewards = torch.tensor([[1.0, 1.0], [-1.0, NAN], [3.0, NAN], [5.0, 0.0], [0.0, 0.0], [-5.0, NAN]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 0], [1, 1], [1, 1], [1, 0]])
    scores = torch.tensor([1.0, 0.0, 0.5, 1.0, 1.0, 1.0])
    assert_close(prm_pairwise_accuracy(rewards, scores, mask, 3), torch.tensor(0.625))


def test_pairwise_accuracy_untrained_prm_is_one_half():
    # r = 0 everywhere (the PRM starts equal to the reference): every pair is a tie -> 1/2,
    # whichever row holds the higher outcome
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert_close(prm_pairwise_accuracy(torch.zeros(4, 3), scores, torch.ones(4, 3), 2), torch.tensor(0.5))


def test_pairwise_accuracy_perfect_and_inverted_prm():
    scores = torch.tensor([1.0, 0.0, 0.25, 0.75])
    rewards = scores.unsqueeze(-1).repeat(1, 2)  # S ordered as the outcomes
    assert_close(prm_pairwise_accuracy(rewards, scores, torch.ones(4, 2), 4), torch.tensor(1.0))
    assert_close(prm_pairwise_accuracy(-rewards, scores, torch.ones(4, 2), 4), torch.tensor(0.0))


def test_pairwise_accuracy_degenerate_inputs_are_one_half():
    # G = 1, an empty mask, and NaN scores all leave no pair to judge
    assert_close(prm_pairwise_accuracy(torch.randn(3, 2), torch.tensor([1.0, 0.0, 1.0]), torch.ones(3, 2), 1),
                 torch.tensor(0.5))
    mask = torch.tensor([[1, 1], [0, 0]])
    assert_close(prm_pairwise_accuracy(torch.randn(2, 2), torch.tensor([1.0, 0.0]), mask, 2), torch.tensor(0.5))
    assert_close(prm_pairwise_accuracy(torch.randn(2, 2), torch.tensor([1.0, NAN]), torch.ones(2, 2), 2),
                 torch.tensor(0.5))
    assert_close(prm_pairwise_accuracy(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, 2), 2), torch.tensor(0.5))


@pytest.mark.parametrize("num_generations", [1, 2, 4])
@pytest.mark.parametrize("empty_rows", [False, True])
def test_pairwise_accuracy_matches_loop(generator, make_mask, with_padding_garbage, num_generations, empty_rows):
    B = 6 * num_generations
    mask = make_mask(B, 5, empty_rows=empty_rows)
    rewards = with_padding_garbage(torch.randn(B, 5, generator=generator), mask)
    scores = torch.randint(0, 5, (B,), generator=generator).float() / 4  # fractional, with repeats
    rewards[0] = rewards[1]  # force one tie
    mask[0] = mask[1]
    expected = loop_pairwise_accuracy(rewards, scores, mask, num_generations)
    assert_close(prm_pairwise_accuracy(rewards, scores, mask, num_generations), torch.tensor(expected))
