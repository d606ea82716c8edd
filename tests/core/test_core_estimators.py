import math
import statistics

import pytest
import torch
from torch.testing import assert_close

from prime_trl.core import (
    explained_variance,
    gae_advantages,
    grpo_outcome_advantages,
    grpo_returns,
    ppo_token_rewards,
    reinforce_returns,
)

EPS = 1e-4


# --- slow, obvious oracles ----------------------------------------------------------------------


def _valid(mask_row):
    return [t for t, m in enumerate(mask_row) if m]


def _std(values):
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def loop_reinforce(process, scores, mask, cp, co, gp, go):
    out = []
    for i, row in enumerate(mask.tolist()):
        valid = _valid(row)
        last = valid[-1] if valid else None
        out.append([
            (cp * sum(gp ** (s - t) * process[i][s].item() for s in valid if s >= t)
             + co * go ** (last - t) * scores[i].item())
            if m else 0.0
            for t, m in enumerate(row)
        ])
    return torch.tensor(out)


def loop_grpo(process, scores, mask, G, scale, cp, co, gp):
    mask = mask.tolist()
    B, T = len(mask), len(mask[0])
    present = [i for i in range(B) if any(mask[i])]
    batch_scores = [scores[i].item() for i in present]
    batch_tokens = [process[i][t].item() for i in present for t in _valid(mask[i])]
    out = [[0.0] * T for _ in range(B)]
    for start in range(0, B, G):
        rows = [i for i in range(start, start + G) if any(mask[i])]
        if not rows:
            continue
        group_scores = [scores[i].item() for i in rows]
        group_tokens = [process[i][t].item() for i in rows for t in _valid(mask[i])]
        mean_o, mean_p = sum(group_scores) / len(rows), sum(group_tokens) / len(group_tokens)
        std_o = {"group": _std(group_scores), "batch": _std(batch_scores), "none": None}[scale]
        std_p = {"group": _std(group_tokens), "batch": _std(batch_tokens), "none": None}[scale]
        for i in rows:
            a_o = scores[i].item() - mean_o
            if std_o is not None:
                a_o = a_o / (std_o + EPS)
            a_o = 0.0 if math.isnan(a_o) else a_o
            normed = {}
            for t in _valid(mask[i]):
                value = process[i][t].item() - mean_p
                value = value / (std_p + EPS) if std_p is not None else value
                normed[t] = 0.0 if math.isnan(value) else value
            for t in _valid(mask[i]):
                a_p = sum(gp ** (s - t) * normed[s] for s in normed if s >= t)
                out[i][t] = cp * a_p + co * a_o
    return torch.tensor(out)


def loop_gae(rewards, values, mask, gamma, lam):
    adv, ret = [], []
    for i, row in enumerate(mask.tolist()):
        valid = _valid(row)
        a_row, r_row = [0.0] * len(row), [0.0] * len(row)
        for t in valid:
            # A_t = sum_l (gamma lam)^l delta_{t+l}, V = 0 past the end
            total = 0.0
            for k, s in enumerate(u for u in valid if u >= t):
                v_next = values[i][s + 1].item() if s + 1 in valid else 0.0
                delta = rewards[i][s].item() + gamma * v_next - values[i][s].item()
                total += (gamma * lam) ** k * delta
            a_row[t], r_row[t] = total, total + values[i][t].item()
        adv.append(a_row)
        ret.append(r_row)
    return torch.tensor(adv), torch.tensor(ret)


# --- hand-computed values -----------------------------------------------------------------------


def test_reinforce_hand_computed():
    process = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    scores = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # row 0: process 6, 5, 3 plus outcome 1 on every position (gamma 1); row 1: 4 + 0
    assert_close(reinforce_returns(process, scores, mask), torch.tensor([[7.0, 6.0, 4.0], [4.0, 0.0, 0.0]]))
    # gamma_o = 0.5: outcome 0.25, 0.5, 1 over row 0
    got = reinforce_returns(process, scores, mask, process_coef=0.0, gamma_outcome=0.5)
    assert_close(got, torch.tensor([[0.25, 0.5, 1.0], [0.0, 0.0, 0.0]]))


def test_grpo_outcome_hand_computed():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0])
    rows = torch.ones(4, dtype=torch.bool)
    # groups {1, 0}, {0, 1}: mean 0.5, unbiased std sqrt(0.5) = 0.70711
    half = 0.5 / (math.sqrt(0.5) + EPS)
    assert_close(grpo_outcome_advantages(scores, rows, 2, "group"), torch.tensor([half, -half, -half, half]))
    # batch std of {1, 0, 0, 1}: sqrt(1/3) = 0.57735
    third = 0.5 / (math.sqrt(1 / 3) + EPS)
    assert_close(grpo_outcome_advantages(scores, rows, 2, "batch"), torch.tensor([third, -third, -third, third]))
    assert_close(grpo_outcome_advantages(scores, rows, 2, "none"), torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_grpo_outcome_absent_rows_and_equal_groups():
    scores = torch.tensor([1.0, float("nan"), 0.3, 0.3])
    rows = torch.tensor([True, False, True, True])
    # group 0 has one present row (std undefined) and group 1 equal outcomes: all advantages 0
    assert_close(grpo_outcome_advantages(scores, rows, 2, "group"), torch.zeros(4))


def test_grpo_returns_broadcasts_outcome_and_adds_process():
    scores = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    process = torch.tensor([[1.0, 0.0, 9.0], [2.0, 9.0, 9.0]])
    half = 0.5 / (math.sqrt(0.5) + EPS)
    outcome_only = grpo_returns(None, scores, mask, 2, "group", process_coef=0.0)
    assert_close(outcome_only, torch.tensor([[half, half, 0.0], [-half, 0.0, 0.0]]))
    # group tokens {1, 0, 2}: mean 1, std 1 -> r~ = 0, -1 | 1; returns -1, -1 | 1
    s = 1 / (1 + EPS)
    process_only = grpo_returns(process, None, mask, 2, "group", outcome_coef=0.0)
    assert_close(process_only, torch.tensor([[-s, -s, 0.0], [s, 0.0, 0.0]]))


def test_gae_hand_computed():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # lam = 1: A_t = G_t - V_t = 0.5 everywhere in row 0; row 1 ends at once: delta = 2 - 1
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert_close(adv, torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]))
    assert_close(ret, torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]]))
    # lam = 0.5: deltas 0, 0, 0.5 -> A = 0.125, 0.25, 0.5
    adv, _ = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    assert_close(adv[0], torch.tensor([0.125, 0.25, 0.5]))


def test_ppo_token_rewards_hand_computed():
    process = torch.tensor([[0.1, 0.2, 0.3], [0.4, 5.0, 5.0]])
    scores = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    got = ppo_token_rewards(process, scores, mask, process_coef=2.0)
    assert_close(got, torch.tensor([[0.2, 0.4, 1.6], [0.8, 0.0, 0.0]]))


# --- loop oracles on random batches -------------------------------------------------------------


@pytest.mark.parametrize("gammas", [(1.0, 1.0), (0.9, 0.7)])
def test_reinforce_matches_loop(make_mask, generator, with_padding_garbage, gammas):
    mask = make_mask(8, 6)
    process = torch.randn(8, 6, generator=generator)
    scores = torch.rand(8, generator=generator)
    got = reinforce_returns(with_padding_garbage(process, mask), scores, mask, 0.5, 2.0, *gammas)
    assert_close(got, loop_reinforce(process, scores, mask, 0.5, 2.0, *gammas))


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_matches_loop(make_mask, generator, with_padding_garbage, scale):
    mask = make_mask(12, 5, empty_rows=True)
    process = torch.randn(12, 5, generator=generator)
    scores = torch.randint(0, 2, (12,), generator=generator).float()
    scores = torch.where(mask.bool().any(-1), scores, float("nan"))  # absent rows may carry NaN
    got = grpo_returns(with_padding_garbage(process, mask), scores, mask, 4, scale, 0.7, 1.3, 0.9)
    assert_close(got, loop_grpo(process, scores, mask, 4, scale, 0.7, 1.3, 0.9))


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0)])
def test_gae_matches_loop(make_mask, generator, with_padding_garbage, gamma, lam):
    mask = make_mask(6, 7, empty_rows=True)
    rewards = torch.randn(6, 7, generator=generator)
    values = torch.randn(6, 7, generator=generator)
    adv, ret = gae_advantages(with_padding_garbage(rewards, mask), with_padding_garbage(values, mask), mask, gamma, lam)
    want_adv, want_ret = loop_gae(rewards, values, mask, gamma, lam)
    assert_close(adv, want_adv)
    assert_close(ret, want_ret)


def test_explained_variance_hand_computed():
    returns = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    values = torch.tensor([[1.0, 2.0, 2.0, -9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # residual (0, 0, 1): population variance 2/9; Var[R] = 2/3 -> 1 - (2/9) / (2/3) = 2/3
    assert_close(explained_variance(values, returns, mask), torch.tensor(2 / 3))
    assert_close(explained_variance(returns, returns, mask), torch.tensor(1.0))
