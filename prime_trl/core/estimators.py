"""Advantage estimators that PRIME's process rewards plug into besides RLOO: REINFORCE, GRPO and PPO (GAE).

The paper (§5, Table 4) reports the implicit PRM helping REINFORCE, GRPO and PPO as well as RLOO, keeping
PRIME's rule of computing the return of each reward source separately and summing them (§3.2). It gives no
per-algorithm formula, so each function below takes its algorithm's standard form and adds the process
source to it the same way; every choice is stated in its docstring.

Notation as in `prime_trl.core`: B = P*G rows, G contiguous rows per prompt, T completion positions,
`mask` 1 on completion tokens. r_phi(y_t) are the (normalised) process rewards, r_o(y) the outcome scores.
A row with an empty mask is absent: it gets 0 and enters no statistic.
"""

import torch

from prime_trl.core._masked import last_token_mask, masked_fill_zero, to_groups
from prime_trl.core.advantages import discounted_returns, outcome_rewards

# TRL's GRPOTrainer adds this to the std before dividing (`advantages / (std_rewards + 1e-4)`).
GRPO_STD_EPS = 1e-4
GRPO_SCALE_REWARDS = ("group", "batch", "none")


def reinforce_returns(
    process_rewards: torch.Tensor | None,
    outcome_scores: torch.Tensor | None,
    mask: torch.Tensor,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    gamma_process: float = 1.0,
    gamma_outcome: float = 1.0,
) -> torch.Tensor:
    """REINFORCE returns (Williams 1992) of both sources, no baseline; the trainer whitens them as PRIME does.

    G_t = c_p * sum_{s>=t} gamma_p^(s-t) r_phi(y_s) + c_o * gamma_o^(|y|-1-t) r_o(y)
    i.e. `rloo_returns` without the leave-one-out baselines; the batch whitening that follows is then the
    only baseline (a batch mean), which is how REINFORCE is run next to PRIME's RLOO.

    Args:
        process_rewards (torch.Tensor | None): r_phi(y_t), shape (B, T); not read if process_coef == 0.
        outcome_scores (torch.Tensor | None): r_o(y), shape (B,); not read if outcome_coef == 0.
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        process_coef (float): c_p, weight of the process return; 0 skips the source.
        outcome_coef (float): c_o, weight of the outcome return; 0 skips the source.
        gamma_process (float): gamma_p, discount of the process return.
        gamma_outcome (float): gamma_o, discount of the outcome return.

    Returns:
        torch.Tensor: returns, shape (B, T), 0 on padding and on empty rows.
    """
    returns = torch.zeros(mask.shape, dtype=torch.get_default_dtype(), device=mask.device)
    if process_coef != 0:
        returns = returns + process_coef * discounted_returns(process_rewards, mask, gamma_process)
    if outcome_coef != 0:
        returns = returns + outcome_coef * discounted_returns(
            outcome_rewards(outcome_scores, mask), mask, gamma_outcome
        )
    return returns


def grpo_outcome_advantages(
    outcome_scores: torch.Tensor, row_mask: torch.Tensor, num_generations: int, scale_rewards: str = "group"
) -> torch.Tensor:
    """GRPO's outcome advantage exactly as TRL's GRPOTrainer computes it (DeepSeekMath §4.1.2).

    A_i = (r_o^i - mean_{j in group} r_o^j) / (std + 1e-4), std the unbiased std of the group's outcomes
    (scale_rewards="group"), of the whole batch's outcomes ("batch"), or no division at all ("none").
    The mean is always the group's. Rows outside `row_mask` enter neither statistic (TRL's NaN rows).

    Args:
        outcome_scores (torch.Tensor): r_o(y), shape (B,); may be NaN outside row_mask.
        row_mask (torch.Tensor): rows that take part, shape (B,).
        num_generations (int): G.
        scale_rewards (str): one of "group", "batch", "none" (TRL's `scale_rewards`).

    Returns:
        torch.Tensor: A_i, shape (B,), 0 outside row_mask. A group of one row (or of equal outcomes) gets 0.
    """
    row_mask = row_mask.bool()
    scores = torch.where(row_mask, outcome_scores.to(torch.get_default_dtype()), float("nan"))  # (B,)
    grouped = to_groups(scores, num_generations)  # (P, G)
    # mean over the group's present rows
    mean = torch.nanmean(grouped, dim=1, keepdim=True).expand_as(grouped).reshape(-1)  # (B,)
    centred = scores - mean
    if scale_rewards != "none":
        # sigma = sqrt(sum (r - mu)^2 / (n - 1)), over the group or the batch
        std = _nan_std(grouped, dim=1).expand_as(grouped).reshape(-1) if scale_rewards == "group" else _nan_std(scores)
        centred = centred / (std + GRPO_STD_EPS)
    return torch.nan_to_num(centred, nan=0.0)


def grpo_process_returns(
    process_rewards: torch.Tensor,
    mask: torch.Tensor,
    num_generations: int,
    scale_rewards: str = "group",
    gamma: float = 1.0,
) -> torch.Tensor:
    """GRPO's process-supervision advantage (DeepSeekMath §4.1.3) with every token a step.

    r~_t = (r_phi(y_t) - mean(R)) / (std(R) + 1e-4), R the process rewards of every valid token of the
    group's rows (scale_rewards="group"; "batch" takes the std over the batch's tokens, "none" does not
    divide), then A_t = sum_{s>=t} gamma^(s-t) r~_s.

    Args:
        process_rewards (torch.Tensor): r_phi(y_t), shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        num_generations (int): G.
        scale_rewards (str): one of "group", "batch", "none".
        gamma (float): discount of the process return.

    Returns:
        torch.Tensor: A_t, shape (B, T), 0 on padding.
    """
    mask = mask.bool()
    rewards = torch.where(mask, process_rewards.to(torch.get_default_dtype()), float("nan"))  # (B, T)
    grouped = to_groups(rewards, num_generations).flatten(1)  # (P, G*T), NaN off the mask
    mean = torch.nanmean(grouped, dim=1, keepdim=True)  # (P, 1)
    centred = grouped - mean
    if scale_rewards != "none":
        std = _nan_std(grouped, dim=1) if scale_rewards == "group" else _nan_std(rewards)
        centred = centred / (std + GRPO_STD_EPS)
    normalised = torch.nan_to_num(centred.reshape(rewards.shape), nan=0.0)  # (B, T)
    return discounted_returns(normalised, mask, gamma)


def grpo_returns(
    process_rewards: torch.Tensor | None,
    outcome_scores: torch.Tensor | None,
    mask: torch.Tensor,
    num_generations: int,
    scale_rewards: str = "group",
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    gamma_process: float = 1.0,
) -> torch.Tensor:
    """GRPO advantages with PRIME's process rewards: the outcome advantage on every token plus the process return.

    A_t = c_o * (r_o - mean_g r_o) / (std + 1e-4) + c_p * sum_{s>=t} gamma_p^(s-t) r~_s
    (`grpo_outcome_advantages`, `grpo_process_returns`). Not whitened afterwards: with c_p = 0 and c_o = 1
    this is exactly TRL's GRPO advantage broadcast over the completion. The outcome term is undiscounted
    on every token, as GRPO broadcasts it.

    Args:
        process_rewards (torch.Tensor | None): r_phi(y_t), shape (B, T); not read if process_coef == 0.
        outcome_scores (torch.Tensor | None): r_o(y), shape (B,); not read if outcome_coef == 0.
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        num_generations (int): G.
        scale_rewards (str): TRL's `scale_rewards`: "group", "batch" or "none".
        process_coef (float): c_p; 0 skips the source.
        outcome_coef (float): c_o; 0 skips the source.
        gamma_process (float): gamma_p.

    Returns:
        torch.Tensor: advantages, shape (B, T), 0 on padding and on empty rows.
    """
    if scale_rewards not in GRPO_SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {list(GRPO_SCALE_REWARDS)}, got {scale_rewards!r}")
    advantages = torch.zeros(mask.shape, dtype=torch.get_default_dtype(), device=mask.device)
    if process_coef != 0:
        advantages = advantages + process_coef * grpo_process_returns(
            process_rewards, mask, num_generations, scale_rewards, gamma_process
        )
    if outcome_coef != 0:
        row_advantages = grpo_outcome_advantages(outcome_scores, mask.bool().any(-1), num_generations, scale_rewards)
        advantages = advantages + outcome_coef * masked_fill_zero(
            row_advantages.unsqueeze(-1).expand_as(advantages), mask
        )
    return advantages


def ppo_token_rewards(
    process_rewards: torch.Tensor | None,
    outcome_scores: torch.Tensor | None,
    mask: torch.Tensor,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
) -> torch.Tensor:
    """PPO's per-token reward with PRIME: r_t = c_p * r_phi(y_t) + c_o * r_o(y) * 1[t = last valid token].

    Shapes: process_rewards (B, T) or None, outcome_scores (B,) or None, mask (B, T) -> (B, T), 0 on padding.
    """
    rewards = torch.zeros(mask.shape, dtype=torch.get_default_dtype(), device=mask.device)
    if process_coef != 0:
        rewards = rewards + process_coef * masked_fill_zero(process_rewards, mask)
    if outcome_coef != 0:
        rewards = rewards + outcome_coef * outcome_rewards(outcome_scores, mask)
    return rewards


def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded completions.

    delta_t = r_t + gamma * V_{t+1} - V_t, with V_{t+1} = 0 after the last valid token (the episode ends);
    A_t = sum_{l>=0} (gamma * lam)^l delta_{t+l};  value targets R_t = A_t + V_t.

    Args:
        rewards (torch.Tensor): r_t, shape (B, T).
        values (torch.Tensor): V(s_t) of the value model, shape (B, T); padding is not read.
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        gamma (float): discount.
        lam (float): GAE lambda in [0, 1].

    Returns:
        tuple: advantages A_t and returns R_t, both (B, T), 0 on padding (not whitened).
    """
    mask = mask.bool()
    rewards = masked_fill_zero(rewards, mask)
    values = masked_fill_zero(values, mask)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])  # (B,)
    next_value = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(rewards.shape[-1])):
        valid = mask[:, t]
        # delta_t = r_t + gamma V_{t+1} - V_t; padding after the end keeps next_value = 0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # A_t = delta_t + gamma lam A_{t+1}; a padded position passes nothing on
        running = torch.where(valid, delta + gamma * lam * running, torch.zeros_like(running))
        advantages[:, t] = running
        next_value = torch.where(valid, values[:, t], torch.zeros_like(next_value))
    return advantages, masked_fill_zero(advantages + values, mask)


def _nan_std(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased std ignoring NaNs, as TRL's `nanstd`: (P, N) -> (P, 1) with dim=1, or a scalar with dim=None."""
    if dim is None:
        values = values.flatten()
        dim = 0
    mean = torch.nanmean(values, dim=dim, keepdim=True)
    count = (~values.isnan()).sum(dim=dim, keepdim=True).to(values.dtype)
    variance = torch.nanmean((values - mean) ** 2, dim=dim, keepdim=True) * count / (count - 1)
    return variance.sqrt()


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var[R - V] / Var[R] over valid tokens: 1 for a perfect value model, 0 for a constant one.

    Shapes: values (B, T), returns (B, T), mask (B, T) -> scalar; NaN when Var[R] = 0 or no token is valid.
    """
    mask = mask.bool()
    returns, residual = returns[mask], (returns - values)[mask]  # (N,)
    # population variances, as cleanrl's explained_variance
    return 1 - residual.var(unbiased=False) / returns.var(unbiased=False)
