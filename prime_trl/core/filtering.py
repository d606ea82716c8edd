"""Prompt filtering of PRIME: keep only prompts the policy sometimes, but not always, solves."""

import torch

from prime_trl.core._masked import to_groups


def accuracy_filter(
    scores: torch.Tensor, num_generations: int, low: float = 0.2, high: float = 0.8
) -> torch.Tensor:
    """Online accuracy filter (paper Alg. 1 line 5; authors' `RayPRIMETrainer.filter`).

    Keeps a prompt when low <= mean outcome of its G samples <= high, bounds inclusive as in both
    code bases (with G = 4 and binary outcomes: 0.25, 0.5 and 0.75 pass). NaN scores mark rows
    that could not be scored: they are left out of the group mean, and a prompt with no scorable
    row is dropped. The mean is taken in float64 so that e.g. 1/5 compares equal to low = 0.2.

    Args:
        scores (torch.Tensor): outcome r_o(y) in [0, 1] per completion, shape (B,), NaN if unscorable.
        num_generations (int): G, the contiguous rows per prompt; B must be a multiple of G.
        low (float): smallest mean accuracy kept.
        high (float): largest mean accuracy kept.

    Returns:
        torch.Tensor: bool, shape (P,), True for prompts to keep. Use
        `keep.repeat_interleave(num_generations)` for a (B,) row mask.
    """
    grouped = to_groups(scores.to(torch.float64), num_generations)  # (P, G)
    scorable = ~torch.isnan(grouped)
    num_scored = scorable.sum(-1)  # (P,)
    # acc_p = mean of the scorable r_o in the group
    mean_accuracy = torch.where(scorable, grouped, 0.0).sum(-1) / num_scored.clamp(min=1)
    # keep iff low <= acc_p <= high, and at least one row was scored
    return (num_scored > 0) & (mean_accuracy >= low) & (mean_accuracy <= high)
