import math

import torch
from torch.testing import assert_close

from prime_trl.core import implicit_process_rewards, normalize_process_rewards, sequence_implicit_rewards

NAN = float("nan")


def loop_normalize(rewards, mask, eps=1e-6):
    """Slow oracle: scale by the largest |suffix sum| over all rows and positions."""
    rows = [[r if m else 0.0 for r, m in zip(rr, mm)] for rr, mm in zip(rewards.tolist(), mask.tolist())]
    largest = 0.0
    for row in rows:
        for t in range(len(row)):
            largest = max(largest, abs(sum(row[t:])))
    return torch.tensor([[r / (largest + eps) for r in row] for row in rows])


def test_implicit_process_rewards_hand_computed():
    prm = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, NAN, NAN]])
    ref = torch.tensor([[-2.0, -1.0, -0.5], [-1.0, -float("inf"), NAN]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # beta = 0.5: row 0: 0.5 * (1, -1, 0); row 1: 0.5 * (-2), padding 0 despite NaN / inf log-probs
    expected = torch.tensor([[0.5, -0.5, 0.0], [-1.0, 0.0, 0.0]])
    assert_close(implicit_process_rewards(prm, ref, mask, beta=0.5), expected)


def test_sequence_implicit_rewards_hand_computed():
    prm = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, NAN, NAN], [NAN, NAN, NAN]])
    ref = torch.tensor([[-2.0, -1.0, -1.5], [-1.0, NAN, NAN], [NAN, NAN, NAN]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    # beta = 0.1: row 0: 0.1 * (1 - 1 + 1) = 0.1; row 1: 0.1 * (-2) = -0.2; empty row: 0
    assert_close(sequence_implicit_rewards(prm, ref, mask, beta=0.1), torch.tensor([0.1, -0.2, 0.0]))


def test_sequence_reward_is_sum_of_token_rewards(generator, make_mask, with_padding_garbage):
    mask = make_mask(6, 5, empty_rows=True)
    prm = with_padding_garbage(torch.randn(6, 5, generator=generator), mask)
    ref = with_padding_garbage(torch.randn(6, 5, generator=generator), mask)
    tokens = implicit_process_rewards(prm, ref, mask, beta=0.05)
    assert_close(sequence_implicit_rewards(prm, ref, mask, beta=0.05), tokens.sum(-1))


def test_implicit_rewards_gradient_ignores_padding():
    prm = torch.tensor([[-1.0, -float("inf")]], requires_grad=True)
    ref = torch.tensor([[-2.0, -float("inf")]])
    mask = torch.tensor([[1, 0]])
    sequence_implicit_rewards(prm, ref, mask, beta=0.5).sum().backward()
    # d/d prm_t of beta * sum_t (prm_t - ref_t) mask_t = beta on valid tokens, 0 on padding
    assert_close(prm.grad, torch.tensor([[0.5, 0.0]]))


def test_normalize_process_rewards_hand_computed():
    rewards = torch.tensor([[1.0, -3.0, 1.0], [2.0, 0.0, NAN]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # suffix sums: row 0: (1-3+1, -3+1, 1) = (-1, -2, 1); row 1: (2, 0); max |.| = 2
    expected = torch.tensor([[0.5, -1.5, 0.5], [1.0, 0.0, 0.0]]) * (2 / (2 + 1e-6))
    assert_close(normalize_process_rewards(rewards, mask), expected)


def test_normalize_process_rewards_matches_loop(generator, make_mask, with_padding_garbage):
    mask = make_mask(8, 7, empty_rows=True)
    rewards = with_padding_garbage(torch.randn(8, 7, generator=generator), mask)
    assert_close(normalize_process_rewards(rewards, mask), loop_normalize(rewards, mask))
    # the largest |suffix sum| becomes 1 (up to eps)
    normalized = normalize_process_rewards(rewards, mask)
    assert math.isclose(normalized.flip(-1).cumsum(-1).abs().max().item(), 1.0, rel_tol=1e-5)


def test_normalize_process_rewards_all_padding_is_zero():
    rewards = torch.full((2, 3), NAN)
    assert_close(normalize_process_rewards(rewards, torch.zeros(2, 3)), torch.zeros(2, 3))
    assert normalize_process_rewards(torch.zeros(0, 3), torch.zeros(0, 3)).shape == (0, 3)
