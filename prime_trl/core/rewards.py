"""Implicit process rewards of PRIME (Cui et al. 2025, arXiv 2502.01456, §3.1).

The implicit PRM pi_phi is a causal LM trained only on outcome labels; its token-level
log-ratio against a frozen reference pi_ref is a dense, per-token reward (Eq. 3).
"""

import torch

from prime_trl.core._masked import masked_fill_zero, masked_sum


def implicit_process_rewards(
    prm_logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Token-level implicit process rewards r_phi(y_t) (paper Eq. 3).

    The authors' code stores the unscaled log-ratio; with `normalize_process_rewards`
    applied afterwards the factor beta cancels (up to its 1e-6 epsilon), so both agree.

    Args:
        prm_logps (torch.Tensor): log pi_phi(y_t | y_<t) of the sampled tokens, shape (B, T).
        ref_logps (torch.Tensor): log pi_ref(y_t | y_<t) of the same tokens, shape (B, T).
        mask (torch.Tensor): 1 on completion tokens (EOS included), 0 on padding, shape (B, T).
        beta (float): the PRM's KL scale beta (0.05 in the paper).

    Returns:
        torch.Tensor: r_t, shape (B, T), exactly 0 on padding (even if the log-probs there are not finite).
    """
    # r_phi(y_t) = beta * log[pi_phi(y_t|y_<t) / pi_ref(y_t|y_<t)]
    return beta * masked_fill_zero(prm_logps - ref_logps, mask)


def sequence_implicit_rewards(
    prm_logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Sequence-level implicit reward r_phi(y) = beta * log[pi_phi(y) / pi_ref(y)] (paper Eq. 3).

    This is the logit of the PRM's outcome prediction used by `prm_ce_loss`
    (authors' code: `compute_ce_dpo_loss_rm`, `(q * mask).sum(1) * beta`).

    Args:
        prm_logps (torch.Tensor): log pi_phi(y_t | y_<t), shape (B, T).
        ref_logps (torch.Tensor): log pi_ref(y_t | y_<t), shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        beta (float): the PRM's KL scale beta.

    Returns:
        torch.Tensor: r_phi(y), shape (B,); 0 for a row whose mask is empty.
    """
    # r_phi(y) = beta * sum_t (log pi_phi(y_t|y_<t) - log pi_ref(y_t|y_<t)) * mask_t
    return beta * masked_sum(prm_logps - ref_logps, mask)


def normalize_process_rewards(rewards: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The authors' `prime_norm: batch_norm`: scale all rewards by the largest |return| in the batch.

    The authors apply this per data-parallel shard (each GPU scales its own rows); pass the
    rows of one shard, or gather first to normalise over the global batch.

    Args:
        rewards (torch.Tensor): process rewards r_t, shape (B, T).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        eps (float): added to the denominator; 1e-6 in the authors' code.

    Returns:
        torch.Tensor: r_t / (max_{i,t} |sum_{s>=t} r_{i,s}| + eps), shape (B, T), 0 on padding.
        An all-padding batch returns zeros.
    """
    rewards = masked_fill_zero(rewards, mask)
    if rewards.numel() == 0:
        return rewards
    # Q_{i,t} = sum_{s>=t} r_{i,s}, the reverse cumulative sum of each row
    reverse_cumsum = rewards.flip(-1).cumsum(-1).flip(-1)  # (B, T)
    # r_t <- r_t / (max_{i,t} |Q_{i,t}| + eps)
    return rewards / (reverse_cumsum.abs().max() + eps)
