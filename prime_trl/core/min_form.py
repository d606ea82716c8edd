"""Min-form credit assignment of PURE (Cheng et al. 2025, arXiv 2504.15275), an alternative to summed returns.

Summing dense process rewards lets a policy farm many small positive rewards (reward hacking).
PURE instead values a state by the worst process reward still ahead: V(s_t) = min_{s>=t} r_s.
Its code (CJReinforce/PURE, `turn_process_reward_logits_to_reward`) approximates this with a
softmax re-weighting of the rewards followed by the usual sum-form return, which is what PRIME runs
(`process_credit_assignment="min_form"`); the exact minimum is the test suite's oracle for it.

`mask` marks the positions that carry a process reward: every completion token for PRIME's
token-level rewards, or only the step-end tokens for a step-level PRM as in PURE.
"""

import torch

from prime_trl.core._masked import masked_fill_zero


def min_form_rewards(process_rewards: torch.Tensor, mask: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """PURE's practical transform: r*_t = softmax_s(-r_s / tau)_t * r_t over a row's valid positions.

    sum_t r*_t is a soft minimum of the row's rewards (it tends to min_t r_t as tau -> 0), so the
    sum-form return of r* at the first position approximates the min-form value; later positions
    keep the row-level weights (as in PURE's code), they are not re-normalised per suffix.

    Args:
        process_rewards (torch.Tensor): r_t, shape (B, T).
        mask (torch.Tensor): 1 where a process reward lives, 0 elsewhere, shape (B, T).
        temperature (float): tau > 0; 0.1 in PURE's code.

    Returns:
        torch.Tensor: r*_t, shape (B, T), 0 where mask is 0 and on empty rows. Feed it to
        `discounted_returns` (gamma = 1) to get returns.
    """
    mask = mask.bool()
    # -inf logits outside the mask; an empty row would be all -inf, so it gets zeros instead
    logits = torch.where(mask, -process_rewards / temperature, torch.full_like(process_rewards, float("-inf")))
    logits = torch.where(mask.any(-1, keepdim=True), logits, torch.zeros_like(logits))
    # w_t = exp(-r_t / tau) / sum_s exp(-r_s / tau)
    weights = torch.softmax(logits, dim=-1)  # (B, T)
    # r*_t = w_t * r_t
    return masked_fill_zero(weights * masked_fill_zero(process_rewards, mask), mask)
