"""Prompt filtering of PRIME: keep only prompts the policy sometimes, but not always, solves."""

import torch

from prime_trl.core._masked import to_groups


def accuracy_filter(
    scores: torch.Tensor, num_generations: int, low: float = 0.2, high: float = 0.8
) -> torch.Tensor:
    """Online accuracy filter (paper Alg. 1 line 5; authors' `RayPRIMETrainer.filter`).

    Keeps a prompt when low <= mean outcome of its G samples <= high, bounds inclusive as in both
    code bases (with G = 4 and binary outcomes: 0.25, 0.5 and 0.75 pass). NaN marks a row that could
    not be scored: its prompt is dropped, because the leave-one-out baselines of RLOO average all G
    rows of a group and such a row has no value to enter them (the authors' verifier scores every row).
    The mean is taken in float64 so that e.g. 1/5 compares equal to low = 0.2.

    Args:
        scores (torch.Tensor): outcome r_o(y) in [0, 1] per completion (PRIME's label), shape (B,), NaN if
            unscorable.
        num_generations (int): G, the contiguous rows per prompt; B must be a multiple of G.
        low (float): smallest mean accuracy kept.
        high (float): largest mean accuracy kept.

    Returns:
        torch.Tensor: bool, shape (P,), True for prompts to keep. Use
        `keep.repeat_interleave(num_generations)` for a (B,) row mask.
    """
    grouped = to_groups(scores.to(torch.float64), num_generations)  # (P, G)
    # acc_p = mean_G r_o; NaN if any row of the group is NaN, and NaN fails both comparisons below
    mean_accuracy = grouped.mean(-1)  # (P,)
    # keep iff low <= acc_p <= high
    return (mean_accuracy >= low) & (mean_accuracy <= high)
