import math

import pytest
import torch
from torch.testing import assert_close

from prime_trl.core import discounted_returns, min_form_rewards

NAN = float("nan")


def loop_min_form_returns(rewards, mask):
    """Exact min-form value (PURE §3), the oracle of the softmin:
    G_t = min of the valid rewards at s >= t; 0 on padding."""
    out = []
    for row, m_row in zip(rewards.tolist(), mask.tolist()):
        out.append([min(r for r, m in zip(row[t:], m_row[t:]) if m) if m_row[t] else 0.0 for t in range(len(row))])
    return torch.tensor(out)


def loop_min_form_rewards(rewards, mask, tau):
    """Slow oracle: r*_t = exp(-r_t / tau) / sum_s exp(-r_s / tau) * r_t over valid positions."""
    out = []
    for row, m_row in zip(rewards.tolist(), mask.tolist()):
        valid = [r for r, m in zip(row, m_row) if m]
        norm = sum(math.exp(-r / tau) for r in valid)
        out.append([math.exp(-r / tau) / norm * r if m else 0.0 for r, m in zip(row, m_row)])
    return torch.tensor(out)


def test_min_form_oracle_hand_computed():
    rewards = torch.tensor([[0.5, -1.0, 2.0, 0.1], [3.0, 1.0, NAN, NAN]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    # row 0: min over suffixes: (min(0.5, -1, 2, 0.1), min(-1, 2, 0.1), min(2, 0.1), 0.1) = (-1, -1, 0.1, 0.1)
    # row 1: (min(3, 1), 1) = (1, 1), padding 0
    expected = torch.tensor([[-1.0, -1.0, 0.1, 0.1], [1.0, 1.0, 0.0, 0.0]])
    assert_close(loop_min_form_returns(rewards, mask), expected)


def test_min_form_rewards_hand_computed():
    rewards = torch.tensor([[0.0, 1.0], [2.0, NAN], [NAN, NAN]])
    mask = torch.tensor([[1, 1], [1, 0], [0, 0]])
    # tau = 1, row 0: weights (1, e^-1) / (1 + e^-1) = (0.7310586, 0.2689414); r* = (0, 0.2689414)
    # row 1: a single reward keeps weight 1: r* = 2; empty row: zeros
    expected = torch.tensor([[0.0, 0.2689414], [2.0, 0.0], [0.0, 0.0]])
    assert_close(min_form_rewards(rewards, mask, temperature=1.0), expected)


@pytest.mark.parametrize("tau", [1.0, 0.1])
def test_min_form_rewards_matches_loop(generator, make_mask, with_padding_garbage, tau):
    mask = make_mask(6, 5, empty_rows=True)
    rewards = with_padding_garbage(torch.randn(6, 5, generator=generator), mask)
    assert_close(min_form_rewards(rewards, mask, temperature=tau), loop_min_form_rewards(rewards, mask, tau))


def test_min_form_rewards_sum_tends_to_the_min(generator, make_mask):
    mask = make_mask(5, 6)
    rewards = torch.randn(5, 6, generator=generator)
    soft = discounted_returns(min_form_rewards(rewards, mask, temperature=1e-3), mask)[:, 0]
    assert_close(soft, loop_min_form_returns(rewards, mask)[:, 0], atol=1e-3, rtol=0)
