import math

import pytest
import torch
from torch.testing import assert_close

from prime_trl.core import clipped_value_loss, ppo_clip_loss, prm_ce_loss, prm_dpo_loss

NAN = float("nan")


def loop_prm_ce(prm, ref, mask, labels, beta):
    """Slow oracle: per-row BCE of sigmoid(beta * sum of valid log-ratios), in float64 python."""
    losses = []
    for p_row, r_row, m_row, label in zip(prm.tolist(), ref.tolist(), mask.tolist(), labels.tolist()):
        if not any(m_row):
            losses.append(0.0)
            continue
        logit = beta * sum(p - r for p, r, m in zip(p_row, r_row, m_row) if m)
        prob = 1 / (1 + math.exp(-logit))
        losses.append(-(label * math.log(prob) + (1 - label) * math.log(1 - prob)))
    return losses


def loop_ppo(logps, old_logps, advantages, mask, eps_low, eps_high):
    """Slow oracle: token-mean of max(-A r, -A clip(r)) and the clipped fractions."""
    total, count, low, high = 0.0, 0, 0, 0
    for lp_row, old_row, a_row, m_row in zip(logps.tolist(), old_logps.tolist(), advantages.tolist(), mask.tolist()):
        for lp, old, a, m in zip(lp_row, old_row, a_row, m_row):
            if not m:
                continue
            ratio = math.exp(lp - old)
            total += max(-a * ratio, -a * min(max(ratio, 1 - eps_low), 1 + eps_high))
            count += 1
            low += ratio < 1 - eps_low and a < 0
            high += ratio > 1 + eps_high and a > 0
    count = max(count, 1)
    return total / count, low / count, high / count


# --- prm_ce_loss -------------------------------------------------------------------------------


def test_prm_ce_loss_hand_computed():
    # beta = 0.5; log-ratios: row 0 (1, 1) -> logit 1; row 1 (-2, pad) -> logit -1; row 2 (0, 0) -> logit 0
    prm = torch.tensor([[0.0, 0.0], [-2.0, NAN], [-1.0, -1.0]])
    ref = torch.tensor([[-1.0, -1.0], [0.0, NAN], [-1.0, -1.0]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    labels = torch.tensor([1.0, 0.25, 0.5])
    # row 0: -log sigmoid(1) = softplus(-1) = 0.3132617
    # row 1 (fractional label): 0.25 * softplus(1) + 0.75 * softplus(-1)
    #   = 0.25 * 1.3132617 + 0.75 * 0.3132617 = 0.5632617
    # row 2: -log(1/2) = 0.6931472
    expected = torch.tensor([0.3132617, 0.5632617, 0.6931472])
    assert_close(prm_ce_loss(prm, ref, mask, labels, beta=0.5, reduction="none"), expected)
    assert_close(prm_ce_loss(prm, ref, mask, labels, beta=0.5, reduction="sum"), expected.sum())
    # mean: (0.3132617 + 0.5632617 + 0.6931472) / 3 = 0.5232235
    assert_close(prm_ce_loss(prm, ref, mask, labels, beta=0.5), torch.tensor(0.5232235))


@pytest.mark.parametrize("fractional", [False, True])
@pytest.mark.parametrize("empty_rows", [False, True])
def test_prm_ce_loss_matches_loop(generator, make_mask, with_padding_garbage, fractional, empty_rows):
    mask = make_mask(8, 6, empty_rows=empty_rows)
    prm = with_padding_garbage(torch.randn(8, 6, generator=generator), mask)
    ref = with_padding_garbage(torch.randn(8, 6, generator=generator), mask)
    labels = (
        torch.rand(8, generator=generator) if fractional else torch.randint(0, 2, (8,), generator=generator).float()
    )
    expected = torch.tensor(loop_prm_ce(prm, ref, mask, labels, beta=0.3))
    assert_close(prm_ce_loss(prm, ref, mask, labels, beta=0.3, reduction="none"), expected)
    num_rows = int(mask.any(-1).sum())
    assert_close(prm_ce_loss(prm, ref, mask, labels, beta=0.3), expected.sum() / num_rows)


def test_prm_ce_loss_empty_rows_are_absent():
    prm = torch.tensor([[0.0, 0.0], [NAN, NAN]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0], [NAN, NAN]])
    mask = torch.tensor([[1, 1], [0, 0]])
    labels = torch.tensor([1.0, NAN])  # an unscorable label on a masked-out row is never read
    loss = prm_ce_loss(prm, ref, mask, labels, beta=0.5)
    # only row 0 counts: softplus(-1) = 0.3132617, divided by 1 non-empty row
    assert_close(loss, torch.tensor(0.3132617))
    loss.backward()
    # d/d prm_t = beta * (sigmoid(1) - 1) = 0.5 * (0.7310586 - 1) = -0.1344707 on row 0, 0 on row 1
    assert_close(prm.grad, torch.tensor([[-0.1344707, -0.1344707], [0.0, 0.0]]))
    all_empty = prm_ce_loss(prm, ref, torch.zeros(2, 2), labels, beta=0.5)
    assert all_empty.item() == 0.0


def test_prm_ce_loss_is_stable_for_large_logits():
    # logit = 1.0 * (300 + 300) = 600; label 0 -> loss 600, label 1 -> loss 0 (a sigmoid would give inf / nan)
    prm = torch.tensor([[300.0, 300.0], [300.0, 300.0]])
    loss = prm_ce_loss(prm, torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([0.0, 1.0]), beta=1.0, reduction="none")
    assert_close(loss, torch.tensor([600.0, 0.0]))


def test_prm_ce_loss_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="reduction"):
        prm_ce_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1), 0.05, reduction="max")


# --- ppo_clip_loss -----------------------------------------------------------------------------


def _hand_case():
    # ratios exp(logps - old) = (1.5, 0.5, 1.0, 1.1) and a padded fifth position holding NaN
    old = torch.zeros(1, 5)
    logps = torch.log(torch.tensor([[1.5, 0.5, 1.0, 1.1, NAN]]))
    advantages = torch.tensor([[1.0, -1.0, 2.0, -1.0, NAN]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    return logps, old, advantages, mask


def test_ppo_clip_loss_hand_computed():
    logps, old, advantages, mask = _hand_case()
    logps.requires_grad_(True)
    loss, metrics = ppo_clip_loss(logps, old, advantages, mask)
    # t0: max(-1 * 1.5, -1 * 1.2) = -1.2 (clipped high)
    # t1: max(1 * 0.5, 1 * 0.8) = 0.8 (clipped low)
    # t2: max(-2 * 1.0, -2 * 1.0) = -2.0
    # t3: max(1 * 1.1, 1 * 1.1) = 1.1
    # mean over 4 valid tokens: (-1.2 + 0.8 - 2.0 + 1.1) / 4 = -0.325
    assert_close(loss, torch.tensor(-0.325))
    assert_close(metrics["clip_fraction_low"], torch.tensor(0.25))
    assert_close(metrics["clip_fraction_high"], torch.tensor(0.25))
    assert_close(metrics["clip_fraction"], torch.tensor(0.5))
    # k3: mean of r - 1 - log r = (0.5 - 0.405465, -0.5 + 0.693147, 0, 0.1 - 0.095310) / 4 = 0.073093
    assert_close(metrics["approx_kl"], torch.tensor(0.0730930))
    loss.backward()
    # d/d logp_t of -A r / 4 = -A r / 4 where unclipped: t2: -2 / 4 = -0.5; t3: 1.1 / 4 = 0.275; clipped: 0
    assert_close(logps.grad, torch.tensor([[0.0, 0.0, -0.5, 0.275, 0.0]]))


def test_ppo_clip_loss_asymmetric_epsilon():
    logps, old, advantages, mask = _hand_case()
    # eps_high = 0.6 (clip-higher): t0 is no longer clipped, -1 * 1.5 = -1.5
    # mean: (-1.5 + 0.8 - 2.0 + 1.1) / 4 = -0.4
    loss, metrics = ppo_clip_loss(logps, old, advantages, mask, epsilon_low=0.2, epsilon_high=0.6)
    assert_close(loss, torch.tensor(-0.4))
    assert_close(metrics["clip_fraction_high"], torch.tensor(0.0))


@pytest.mark.parametrize("eps", [(0.2, 0.2), (0.1, 0.28)])
@pytest.mark.parametrize("empty_rows", [False, True])
def test_ppo_clip_loss_matches_loop(generator, make_mask, with_padding_garbage, eps, empty_rows):
    mask = make_mask(6, 7, empty_rows=empty_rows)
    old = with_padding_garbage(torch.randn(6, 7, generator=generator), mask)
    logps = with_padding_garbage(old + 0.3 * torch.randn(6, 7, generator=generator), mask)
    advantages = with_padding_garbage(torch.randn(6, 7, generator=generator), mask)
    loss, metrics = ppo_clip_loss(logps, old, advantages, mask, *eps)
    expected_loss, expected_low, expected_high = loop_ppo(logps, old, advantages, mask, *eps)
    assert_close(loss, torch.tensor(expected_loss))
    assert_close(metrics["clip_fraction_low"], torch.tensor(expected_low))
    assert_close(metrics["clip_fraction_high"], torch.tensor(expected_high))
    assert expected_low + expected_high > 0  # the random case does exercise clipping


def test_ppo_clip_loss_empty_mask_is_zero():
    loss, metrics = ppo_clip_loss(torch.full((2, 3), NAN), torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3))
    assert loss.item() == 0.0
    assert all(value.item() == 0.0 for value in metrics.values())


# --- prm_dpo_loss ------------------------------------------------------------------------------


def loop_prm_dpo(prm, ref, mask, labels, beta, group_rewards, group_labels):
    """Slow oracle of veRL's pairwise loss, row by row in python floats."""
    losses = []
    for i, m_row in enumerate(mask.tolist()):
        if not any(m_row):
            losses.append(0.0)
            continue
        reward = beta * sum(p - r for p, r, m in zip(prm[i].tolist(), ref[i].tolist(), m_row) if m)
        label = labels[i].item()
        pairs = zip(group_rewards[i].tolist(), group_labels[i].tolist())
        side = [q for q, a in pairs if (a < label if label > 0 else a > label)]
        other = sum(side) / len(side) if side else 0.0
        sign = 1.0 if label > 0 else -1.0
        losses.append(math.log1p(math.exp(-sign * (reward - other))))  # -log sigmoid(x) = log(1 + e^-x)
    return losses


def test_prm_dpo_loss_hand_computed():
    # beta = 1, one token per row: r = 1, -1, 0.5 with labels 1, 0, 1, all one group
    prm = torch.tensor([[1.0], [-1.0], [0.5]])
    ref = torch.zeros(3, 1)
    mask = torch.ones(3, 1)
    labels = torch.tensor([1.0, 0.0, 1.0])
    group_rewards = torch.tensor([1.0, -1.0, 0.5]).expand(3, 3)
    group_labels = labels.expand(3, 3)
    # row 0: other = r_1 = -1 -> softplus(-(1 + 1)) = 0.1269280
    # row 1 (r_o = 0): other = mean(1, 0.5) = 0.75, sign -1 -> softplus(-(0.75 + 1)) = 0.1602242
    # row 2: other = -1 -> softplus(-(0.5 + 1)) = 0.2014133
    expected = torch.tensor([0.1269280, 0.1602242, 0.2014133])
    got = prm_dpo_loss(prm, ref, mask, labels, 1.0, group_rewards, group_labels, reduction="none")
    assert_close(got, expected)
    assert_close(prm_dpo_loss(prm, ref, mask, labels, 1.0, group_rewards, group_labels), expected.mean())


def test_prm_dpo_loss_no_other_side_and_empty_rows():
    # all labels equal: no row has another side, other = 0 -> softplus(-s * r); the empty row gives 0
    prm = torch.tensor([[0.0], [NAN]])
    ref = torch.zeros(2, 1)
    mask = torch.tensor([[1], [0]])
    labels = torch.tensor([1.0, NAN])
    got = prm_dpo_loss(prm, ref, mask, labels, 0.05, torch.zeros(2, 2), torch.ones(2, 2), reduction="none")
    assert_close(got, torch.tensor([math.log(2.0), 0.0]))


def test_prm_dpo_loss_matches_loop_and_detaches_the_group(make_mask, generator):
    B, T, G = 8, 5, 4
    mask = make_mask(B, T, empty_rows=True)
    prm = torch.randn(B, T, generator=generator, requires_grad=True)
    ref = torch.randn(B, T, generator=generator)
    labels = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.25, 1.0])
    sequence = 0.1 * ((prm - ref) * mask).sum(-1)  # (B,)
    group_rewards = sequence.view(-1, G).repeat_interleave(G, 0)  # (B, G), still attached to prm
    group_labels = labels.view(-1, G).repeat_interleave(G, 0)
    got = prm_dpo_loss(prm, ref, mask, labels, 0.1, group_rewards, group_labels, reduction="none")
    want = loop_prm_dpo(prm.detach(), ref, mask, labels, 0.1, group_rewards.detach(), group_labels)
    assert_close(got, torch.tensor(want))
    got.sum().backward()
    # the gradient flows only through each row's own reward: d/d(prm) = beta * mask * dL_i/dr_i
    r = sequence.detach().requires_grad_(True)
    own = prm_dpo_loss(r.unsqueeze(-1), torch.zeros(B, 1), mask.any(-1, keepdim=True), labels, 1.0,
                       group_rewards.detach(), group_labels, reduction="none").sum()
    (d_r,) = torch.autograd.grad(own, r)
    assert_close(prm.grad, 0.1 * mask * d_r.unsqueeze(-1))


# --- clipped_value_loss ------------------------------------------------------------------------


def loop_value_loss(values, old, returns, mask, c):
    total, count = 0.0, 0
    for v_row, o_row, r_row, m_row in zip(values.tolist(), old.tolist(), returns.tolist(), mask.tolist()):
        for v, o, r, m in zip(v_row, o_row, r_row, m_row):
            if m:
                clipped = o + min(max(v - o, -c), c)
                total += 0.5 * max((v - r) ** 2, (clipped - r) ** 2)
                count += 1
    return total / max(count, 1)


def test_clipped_value_loss_hand_computed():
    values = torch.tensor([[1.0, 0.0, -0.5, NAN]])
    old = torch.zeros(1, 4)
    returns = torch.tensor([[2.0, 1.0, 0.1, NAN]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # t0: max((1 - 2)^2, (0.2 - 2)^2) = 3.24 -> 1.62 (the clipped term is the larger)
    # t1: V = V_old: (0 - 1)^2 = 1 -> 0.5
    # t2: max((-0.5 - 0.1)^2, (-0.2 - 0.1)^2) = 0.36 -> 0.18 (the unclipped term is the larger)
    assert_close(clipped_value_loss(values, old, returns, mask, 0.2), torch.tensor((1.62 + 0.5 + 0.18) / 3))
    assert_close(clipped_value_loss(values, old, returns, mask, 0.2, reduction="sum"), torch.tensor(2.3))


def test_clipped_value_loss_matches_loop(make_mask, generator):
    mask = make_mask(6, 5, empty_rows=True)
    values, old, returns = (torch.randn(6, 5, generator=generator) for _ in range(3))
    assert_close(clipped_value_loss(values, old, returns, mask, 0.3),
                 torch.tensor(loop_value_loss(values, old, returns, mask, 0.3)))
