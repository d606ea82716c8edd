"""Losses of PRIME: the implicit PRM's cross-entropy and the policy's PPO clipped surrogate."""

import torch
import torch.nn.functional as F

from prime_trl.core._masked import masked_fill_zero
from prime_trl.core.rewards import sequence_implicit_rewards

_REDUCTIONS = {
    "mean": lambda per_row, num_rows: per_row.sum() / num_rows.clamp(min=1),
    "sum": lambda per_row, num_rows: per_row.sum(),
    "none": lambda per_row, num_rows: per_row,
}


def prm_ce_loss(
    prm_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """Online implicit-PRM loss L_CE(phi) (paper Alg. 1 line 8; authors' `compute_ce_dpo_loss_rm`).

    L_CE = -[r_o * log sigmoid(r_phi(y)) + (1 - r_o) * log(1 - sigmoid(r_phi(y)))], computed
    from the logit r_phi(y) with `binary_cross_entropy_with_logits` (no saturation at large |r_phi|).

    A row with an empty mask is treated as absent: its loss is 0 (and its label is never read,
    so it may be NaN), and "mean" divides by the number of non-empty rows only.

    Args:
        prm_logps (torch.Tensor): log pi_phi(y_t | y_<t), shape (B, T); carries the gradient.
        ref_logps (torch.Tensor): log pi_ref(y_t | y_<t), shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        labels (torch.Tensor): outcome r_o in [0, 1], fractional for partial code credit, shape (B,).
        beta (float): the PRM's KL scale beta (0.05 in the paper).
        reduction (str): "mean" over non-empty rows, "sum", or "none" for per-row losses (B,).

    Returns:
        torch.Tensor: a scalar, or shape (B,) with reduction="none".
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(_REDUCTIONS)}, got {reduction!r}")
    row_valid = mask.bool().any(-1)  # (B,)
    # r_phi(y) = beta * sum_t log[pi_phi / pi_ref], the logit of P(correct)
    logits = sequence_implicit_rewards(prm_logps, ref_logps, mask, beta)  # (B,)
    labels = torch.where(row_valid, labels.to(logits.dtype), torch.zeros_like(logits))
    # BCE(sigmoid(r_phi(y)), r_o), per row
    per_row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (B,)
    per_row = torch.where(row_valid, per_row, torch.zeros_like(per_row))
    return _REDUCTIONS[reduction](per_row, row_valid.sum())


def ppo_clip_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate, token-mean over all valid tokens (paper Eq. 6; authors' `compute_policy_loss`).

    Args:
        logps (torch.Tensor): log pi_theta(y_t | y_<t) under the current policy, shape (B, T).
        old_logps (torch.Tensor): log pi_theta_old(y_t | y_<t) from the rollout policy, shape (B, T).
        advantages (torch.Tensor): A_t, shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        epsilon_low (float): lower clip range, ratio >= 1 - epsilon_low.
        epsilon_high (float): upper clip range, ratio <= 1 + epsilon_high.

    Returns:
        tuple: the scalar loss (0 when no token is valid), and detached scalar metrics over valid tokens:
        "clip_fraction_low" (ratio < 1 - eps_low with A < 0), "clip_fraction_high" (ratio > 1 + eps_high
        with A > 0), "clip_fraction" (either: the clipped term is the active one), and "approx_kl"
        (the k3 estimate E[ratio - 1 - log ratio] of KL(pi_old || pi_theta)).
    """
    mask = mask.bool()
    num_tokens = mask.sum().clamp(min=1)
    # log rho_t = log pi_theta - log pi_theta_old, zeroed on padding so that rho = 1 there
    log_ratio = masked_fill_zero(logps - old_logps, mask)  # (B, T)
    ratio = torch.exp(log_ratio)
    advantages = masked_fill_zero(advantages, mask)
    # L_t = max(-A_t * rho_t, -A_t * clip(rho_t, 1 - eps_low, 1 + eps_high))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = torch.maximum(unclipped, clipped)  # (B, T)
    loss = masked_fill_zero(per_token, mask).sum() / num_tokens

    with torch.no_grad():
        low = (ratio < 1 - epsilon_low) & (advantages < 0) & mask
        high = (ratio > 1 + epsilon_high) & (advantages > 0) & mask
        metrics = {
            "clip_fraction_low": low.sum() / num_tokens,
            "clip_fraction_high": high.sum() / num_tokens,
            "clip_fraction": (low | high).sum() / num_tokens,
            # k3 estimator: rho - 1 - log rho >= 0, 0 on padding since log rho = 0 there
            "approx_kl": (ratio - 1 - log_ratio).sum() / num_tokens,
        }
    return loss, metrics


def prm_dpo_loss(
    prm_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    group_rewards: torch.Tensor,
    group_labels: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pairwise DPO loss of the implicit PRM (veRL's `compute_detach_dpo_loss_rm`, paper App. C.2).

    Each row is compared with the mean detached reward of the other rows of its group on the other side of it:
        other_i = mean{ r_phi(y^j) : r_o^j < r_o^i }  if r_o^i > 0,  else  mean{ r_phi(y^j) : r_o^j > r_o^i },
        L_i = -log sigmoid( s_i * (r_phi(y^i) - other_i) ),  s_i = +1 if r_o^i > 0 else -1,
    with other_i = 0 when that set is empty, r_phi(y^i) = beta * sum_t log[pi_phi / pi_ref] carrying the gradient
    and the group's rewards r_phi(y^j) detached (computed before the update, as veRL broadcasts them).

    Args:
        prm_logps (torch.Tensor): log pi_phi(y_t | y_<t), shape (B, T); carries the gradient.
        ref_logps (torch.Tensor): log pi_ref(y_t | y_<t), shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        labels (torch.Tensor): outcome r_o^i in [0, 1], shape (B,).
        beta (float): the PRM's KL scale beta.
        group_rewards (torch.Tensor): detached r_phi(y^j) of the G rows of row i's group, shape (B, G).
        group_labels (torch.Tensor): r_o^j of those rows, shape (B, G).
        reduction (str): "mean" over non-empty rows, "sum", or "none" for per-row losses (B,).

    Returns:
        torch.Tensor: a scalar, or shape (B,) with reduction="none"; 0 for an empty row.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(_REDUCTIONS)}, got {reduction!r}")
    row_valid = mask.bool().any(-1)  # (B,)
    rewards = sequence_implicit_rewards(prm_logps, ref_logps, mask, beta)  # (B,)
    labels = torch.where(row_valid, labels.to(rewards.dtype), torch.zeros_like(rewards)).unsqueeze(-1)  # (B, 1)
    positive = labels > 0  # (B, 1)
    group_labels = group_labels.to(rewards.dtype)
    # the other side: lower outcomes for a row with r_o > 0, higher ones for a row with r_o = 0
    other_side = torch.where(positive, group_labels < labels, group_labels > labels)  # (B, G)
    count = other_side.sum(-1)
    other = torch.where(other_side, group_rewards.detach().to(rewards.dtype), 0.0).sum(-1) / count.clamp(min=1)
    sign = torch.where(positive.squeeze(-1), 1.0, -1.0)
    # L_i = -log sigmoid(s_i * (r_phi(y^i) - other_i))
    per_row = -F.logsigmoid(sign * (rewards - other))
    per_row = torch.where(row_valid, per_row, torch.zeros_like(per_row))
    return _REDUCTIONS[reduction](per_row, row_valid.sum())


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
    reduction: str = "mean",
) -> torch.Tensor:
    """PPO's clipped value loss (Schulman et al. 2017; veRL's `compute_value_loss`), over valid tokens.

    V_clip = V_old + clip(V - V_old, -c, c);  L_t = 0.5 * max((V - R)^2, (V_clip - R)^2).

    Args:
        values (torch.Tensor): V(s_t) of the value model being trained, shape (B, T); carries the gradient.
        old_values (torch.Tensor): V_old(s_t) at rollout time, shape (B, T).
        returns (torch.Tensor): value targets R_t (GAE returns), shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        clip_range (float): c > 0.
        reduction (str): "mean" over valid tokens (0 if none) or "sum" over them.

    Returns:
        torch.Tensor: a scalar.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    mask = mask.bool()
    # V_clip = V_old + clip(V - V_old, -c, c)
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    # L_t = 0.5 * max((V - R)^2, (V_clip - R)^2)
    per_token = 0.5 * torch.maximum((values - returns).pow(2), (clipped - returns).pow(2))  # (B, T)
    total = masked_fill_zero(per_token, mask).sum()
    return total / mask.sum().clamp(min=1) if reduction == "mean" else total
