"""Returns and advantages of PRIME: leave-one-out baselines, discounted returns, whitening.

PRIME has no critic and no GAE: each reward source (implicit process rewards, verifier outcome)
gets its own RLOO baseline, is turned into a discounted return, and the summed return is
whitened over the batch to give the advantage (paper §3.2; authors' `compute_rloo_returns`).

Group-size rule used throughout: a group's "size" n counts its rows with a non-empty mask.
With n >= 2 the leave-one-out baseline is the mean over the other n - 1 rows; with n <= 1
there is no other row, so the baseline is 0 (plain REINFORCE, R' = R) and nothing is divided
by zero. Rows with an empty mask get 0 and do not enter their group's baseline.
"""

import torch

from prime_trl.core._masked import last_token_mask, masked_fill_zero, masked_mean, to_groups


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Reward-to-go G_t = sum_{s>=t} gamma^(s-t) * r_s (paper Eq. 5, the sum over s).

    Args:
        rewards (torch.Tensor): per-token rewards r_t, shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        gamma (float): discount factor in [0, 1].

    Returns:
        torch.Tensor: G_t, shape (B, T), 0 on padding.
    """
    rewards = masked_fill_zero(rewards, mask)
    if gamma == 1.0:
        # G_t = sum_{s>=t} r_s, a reverse cumulative sum
        returns = rewards.flip(-1).cumsum(-1).flip(-1)  # (B, T)
    else:
        # G_t = r_t + gamma * G_{t+1}; a loop over T (vectorised over B) stays exact for any T,
        # where the closed form gamma^-t * cumsum(gamma^s * r_s) overflows for long completions
        returns = torch.zeros_like(rewards)
        running = torch.zeros_like(rewards[:, 0])  # (B,)
        for t in reversed(range(rewards.shape[-1])):
            running = rewards[:, t] + gamma * running
            returns[:, t] = running
    return masked_fill_zero(returns, mask)


def _leave_one_out(rewards: torch.Tensor, mask: torch.Tensor, num_generations: int) -> torch.Tensor:
    """The authors' `masked_rloo`: R'_t = R_t * n/(n-1) - (sum_{j in group} m_j)/(n-1) on valid tokens.

    m_j is row j's mean reward over its valid tokens and n the group's number of non-empty rows.
    Shapes: rewards (B, T), mask (B, T) -> (B, T), 0 on padding. n <= 1 gives R' = R (see module doc).
    """
    mask = mask.bool()
    rewards = masked_fill_zero(rewards, mask)
    row_valid = to_groups(mask.any(-1), num_generations)  # (P, G)
    # m_j = mean_t R_{j,t} over row j's valid tokens (0 for an empty row)
    row_means = to_groups(masked_mean(rewards, mask), num_generations)  # (P, G)
    n = row_valid.sum(-1, keepdim=True).to(rewards.dtype)  # (P, 1)
    has_others = n > 1
    denominator = torch.where(has_others, n - 1, torch.ones_like(n))
    # scale = n/(n-1) and offset = sum_j m_j/(n-1), or scale 1 and offset 0 when n <= 1
    scale = torch.where(has_others, n / denominator, torch.ones_like(n))  # (P, 1)
    offset = torch.where(has_others, row_means.sum(-1, keepdim=True) / denominator, torch.zeros_like(n))
    grouped = to_groups(rewards, num_generations)  # (P, G, T)
    # R'_{i,t} = R_{i,t} * n/(n-1) - sum_j m_j / (n-1)
    centred = grouped * scale.unsqueeze(-1) - offset.unsqueeze(-1)  # (P, G, T)
    return masked_fill_zero(centred.reshape(rewards.shape), mask)  # (B, T)


def outcome_rewards(outcome_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place each row's outcome score r_o on its last valid token (authors' `gt_scores`).

    Args:
        outcome_scores (torch.Tensor): verifier outcome r_o(y), shape (B,); may be NaN on empty rows.
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).

    Returns:
        torch.Tensor: shape (B, T), r_o at the last valid token and 0 elsewhere.
    """
    last = last_token_mask(mask)  # (B, T)
    scores = outcome_scores if outcome_scores.is_floating_point() else outcome_scores.float()
    # where, not multiplication, so a NaN score on an empty row stays out
    return torch.where(last, scores.unsqueeze(-1), 0.0)  # (B, T)


def rloo_returns(
    process_rewards: torch.Tensor | None,
    outcome_scores: torch.Tensor | None,
    mask: torch.Tensor,
    num_generations: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    gamma_process: float = 1.0,
    gamma_outcome: float = 1.0,
) -> torch.Tensor:
    """PRIME returns as the authors' code computes them (`compute_rloo_returns` in PRIME-RL/PRIME).

    Each source gets its own leave-one-out baseline (`_leave_one_out`), then its discounted
    return; the returns are summed with their coefficients. For the process source m_j is a
    per-token mean, so R'_t = r_t - (1/(n-1)) sum_{j!=i} m_j + (r_t - m_i)/(n-1): with gamma = 1
    it matches the paper's Eq. 5 summed over the completion (t = 0) but not at t > 0 (see
    `rloo_returns_paper_eq5`). The outcome lives on the last valid token, so its R' is plain
    RLOO, r_o^i - mean_{j!=i} r_o^j. The authors' paper run has both coefficients and gammas at 1;
    since the returns are whitened next, equal coefficients do not change the advantages.

    Edge cases: n counts a group's non-empty rows. Empty rows return 0 and are left out of the
    baseline (their scores may be NaN). With n = 1 (e.g. G = 1) the baseline is 0, so the row
    gets its raw discounted rewards (REINFORCE). A group with equal outcomes gets no outcome term.

    Args:
        process_rewards (torch.Tensor | None): r_phi(y_t), shape (B, T); not read if process_coef == 0.
        outcome_scores (torch.Tensor | None): r_o(y), shape (B,); not read if outcome_coef == 0.
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        num_generations (int): G, the contiguous rows per prompt; B must be a multiple of G.
        process_coef (float): weight of the process return; 0 skips the source.
        outcome_coef (float): weight of the outcome return; 0 skips the source.
        gamma_process (float): discount of the process return.
        gamma_outcome (float): discount of the outcome return.

    Returns:
        torch.Tensor: returns, shape (B, T), 0 on padding and on empty rows.
    """
    returns = torch.zeros(mask.shape, dtype=torch.get_default_dtype(), device=mask.device)
    if process_coef != 0:
        # R'^proc: leave-one-out over per-token means, on every valid token
        centred = _leave_one_out(process_rewards, mask, num_generations)
        returns = returns + process_coef * discounted_returns(centred, mask, gamma_process)
    if outcome_coef != 0:
        last = last_token_mask(mask)
        # R'^out = r_o^i - mean_{j!=i} r_o^j, on the last valid token only
        centred = _leave_one_out(outcome_rewards(outcome_scores, mask), last, num_generations)
        returns = returns + outcome_coef * discounted_returns(centred, mask, gamma_outcome)
    return returns


def rloo_returns_paper_eq5(
    process_rewards: torch.Tensor | None,
    outcome_scores: torch.Tensor | None,
    mask: torch.Tensor,
    num_generations: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    gamma: float = 1.0,
) -> torch.Tensor:
    """PRIME returns as written in the paper, Eq. 5 (an alternative; not what the authors ran).

    A_t^i = sum_{s>=t} gamma^(s-t) [r_phi(y_s^i) - (1/(n-1)) sum_{j!=i} m_j]
            + [r_o(y^i) - (1/(n-1)) sum_{j!=i} r_o(y^j)],
    with m_j the mean per-token process reward of row j: the paper's text says the
    leave-one-out baseline uses "the averaged implicit process rewards" (taking r_phi(y^j) as the
    sequence sum would subtract a whole-sequence quantity from every token). The outcome term is
    added undiscounted to every valid token, as in Eq. 5. At t = 0 with gamma = 1 this equals
    `rloo_returns`; later positions differ by the reverse cumsum of (r_t - m_i)/(n-1).

    Args:
        process_rewards (torch.Tensor | None): r_phi(y_t), shape (B, T); not read if process_coef == 0.
        outcome_scores (torch.Tensor | None): r_o(y), shape (B,); not read if outcome_coef == 0.
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        num_generations (int): G, the contiguous rows per prompt.
        process_coef (float): weight of the process term; 0 skips it.
        outcome_coef (float): weight of the outcome term; 0 skips it.
        gamma (float): discount of the process term.

    Returns:
        torch.Tensor: returns, shape (B, T), 0 on padding and on empty rows.
    """
    returns = torch.zeros(mask.shape, dtype=torch.get_default_dtype(), device=mask.device)
    if process_coef != 0:
        rewards = masked_fill_zero(process_rewards, mask)
        row_means = masked_mean(rewards, mask)  # (B,)
        # leave-one-out on the row means (one "token" per row) gives m_i - baseline_i
        row_mask = mask.bool().any(-1, keepdim=True)  # (B, 1)
        centred_means = _leave_one_out(row_means.unsqueeze(-1), row_mask, num_generations).squeeze(-1)
        # baseline_i = (1/(n-1)) sum_{j!=i} m_j, 0 when the group has no other row
        baseline = row_means - centred_means  # (B,)
        # r_s - baseline_i on valid tokens, then the discounted sum over s >= t
        centred = rewards - baseline.unsqueeze(-1)  # (B, T)
        returns = returns + process_coef * discounted_returns(centred, mask, gamma)
    if outcome_coef != 0:
        row_mask = mask.bool().any(-1, keepdim=True)  # (B, 1)
        scores = torch.where(row_mask.squeeze(-1), outcome_scores.to(returns.dtype), 0.0)  # (B,)
        # r_o^i - mean_{j!=i} r_o^j, broadcast to every valid token
        centred = _leave_one_out(scores.unsqueeze(-1), row_mask, num_generations)  # (B, 1)
        returns = returns + outcome_coef * masked_fill_zero(centred.expand_as(returns), mask)
    return returns


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Whiten over all valid tokens of the batch (authors' `masked_whiten`, applied to the returns).

    Mean mu and unbiased variance sigma^2 (Bessel's n/(n-1)) are taken over every valid token of
    the whole batch, not per row. Unlike the authors' code, padded positions are set to 0
    (theirs are shifted too, but never reach the loss).

    Args:
        values (torch.Tensor): e.g. returns, shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        eps (float): variance floor, 1e-8 in the authors' code.

    Returns:
        torch.Tensor: (x - mu) / sqrt(sigma^2 + eps), shape (B, T), 0 on padding. With fewer than
        two valid tokens the variance is taken as 0, so the result is all zeros (x - mu = 0).
    """
    mask = mask.bool()
    n = mask.sum().to(values.dtype)
    # mu = sum_t x_t / n over valid tokens
    mean = masked_fill_zero(values, mask).sum() / n.clamp(min=1)
    centred = masked_fill_zero(values - mean, mask)
    # sigma^2 = sum_t (x_t - mu)^2 / (n - 1), taken as 0 when n < 2
    variance = centred.pow(2).sum() / (n - 1).clamp(min=1)
    return centred * torch.rsqrt(variance + eps)
