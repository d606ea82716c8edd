"""Health metrics of the implicit PRM."""

import torch

from prime_trl.core._masked import masked_sum, to_groups


def prm_pairwise_accuracy(
    process_rewards: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, num_generations: int
) -> torch.Tensor:
    """How often the PRM ranks two samples of a prompt as the verifier does (authors' `compute_dpo_accuracy`).

    Within each group, over pairs (i, j) with different outcomes, the |acc_i - acc_j|-weighted
    fraction where S_i - S_j has the sign of acc_i - acc_j, with S = sum_t r_t the summed process
    reward. A tie S_i == S_j counts 1/2, so an untrained PRM (r = 0 everywhere) scores exactly 0.5;
    the authors' code instead counts a tie right or wrong depending on the row order. A group
    with no such pair (all outcomes equal, G = 1) scores 0.5. Rows with an empty mask or a NaN
    score take part in no pair. The result is the mean over groups.

    Args:
        process_rewards (torch.Tensor): r_t (raw or normalised; only the order of S matters), shape (B, T).
        scores (torch.Tensor): outcome acc in [0, 1], shape (B,).
        mask (torch.Tensor): 1 on completion tokens, 0 on padding, shape (B, T).
        num_generations (int): G, the contiguous rows per prompt.

    Returns:
        torch.Tensor: scalar in [0, 1]; 0.5 for an empty batch.
    """
    row_valid = mask.bool().any(-1) & ~torch.isnan(scores)  # (B,)
    # S_i = sum_t r_{i,t} * mask_{i,t}
    summed = to_groups(masked_sum(process_rewards, mask).double(), num_generations)  # (P, G)
    acc = to_groups(torch.where(row_valid, scores.double(), 0.0), num_generations)  # (P, G)
    valid = to_groups(row_valid, num_generations)  # (P, G)
    if summed.shape[0] == 0:
        return torch.tensor(0.5)
    # every ordered pair (i, j) of the group; each unordered pair appears twice, which leaves the ratio unchanged
    delta_summed = summed.unsqueeze(-1) - summed.unsqueeze(-2)  # (P, G, G)
    delta_acc = acc.unsqueeze(-1) - acc.unsqueeze(-2)  # (P, G, G)
    pair_valid = valid.unsqueeze(-1) & valid.unsqueeze(-2)  # (P, G, G)
    # w_ij = |acc_i - acc_j|, 0 for a pair touching an invalid row
    weight = torch.where(pair_valid, delta_acc.abs(), 0.0)
    # agreement 1 if sign(S_i - S_j) == sign(acc_i - acc_j), 1/2 on a tie in S, else 0
    agreement = torch.where(delta_summed == 0, 0.5, (torch.sign(delta_summed) == torch.sign(delta_acc)).double())
    total_weight = weight.sum((-2, -1))  # (P,)
    # group accuracy = sum_ij w_ij * agreement_ij / sum_ij w_ij, or 0.5 when no pair has a weight
    group_accuracy = torch.where(
        total_weight > 0, (weight * agreement).sum((-2, -1)) / total_weight.clamp(min=1e-12), 0.5
    )
    return group_accuracy.mean().to(torch.get_default_dtype())
