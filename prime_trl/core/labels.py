"""From reward-function outputs to PRIME's two per-row numbers: the outcome reward and the PRM's label.

The outcome reward r_o keeps GRPO's meaning (the weighted sum of every reward function, any real range)
and feeds the advantage. The implicit PRM's cross-entropy needs a label in [0, 1] (paper Alg. 1 line 8);
it is a weighted mean over the reward functions chosen as label functions, each mapped into [0, 1] by a
stated transform. A reward function that returned `None` for a row (NaN here) is left out of both.
"""

import torch

# How one label function's output becomes a value in [0, 1]:
LABEL_TRANSFORMS = {
    # verifiers that already score correctness in [0, 1] (the authors' `acc`)
    "identity": lambda rewards: rewards,
    # a reward model's unbounded score read as a Bradley-Terry logit: sigma(r) = P(beats a score-0 completion)
    "sigmoid": torch.sigmoid,
    # scores in [-1, 1] such as +-1 correctness: (r + 1) / 2 sends -1 -> 0, +1 -> 1
    "signed": lambda rewards: (rewards + 1) / 2,
}


def outcome_scores(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """GRPO's outcome reward: the weighted sum of the reward functions that scored the row.

    Args:
        rewards_per_func (torch.Tensor): reward of each function, shape (B, F), NaN where it returned None.
        weights (torch.Tensor): `reward_weights`, shape (F,), any sign.

    Returns:
        torch.Tensor: r_o, shape (B,); NaN where every function returned None (unscorable).
    """
    weights = weights.to(rewards_per_func)
    # r_o = sum_f w_f * r_f over the functions f with a value
    scores = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
    return scores.masked_fill(rewards_per_func.isnan().all(dim=1), float("nan"))


def prm_labels(labels_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The PRM's label: the weighted mean of the label functions that scored the row.

    Args:
        labels_per_func (torch.Tensor): each function's output already mapped into [0, 1] (see
            `LABEL_TRANSFORMS`), shape (B, F), NaN where it returned None.
        weights (torch.Tensor): shape (F,), > 0 for label functions and 0 for the others.

    Returns:
        torch.Tensor: y in [0, 1], shape (B,); NaN where no label function scored the row.
    """
    weights = weights.to(labels_per_func).unsqueeze(0).expand_as(labels_per_func)  # (B, F)
    present = ~labels_per_func.isnan() & (weights > 0)
    w = torch.where(present, weights, 0.0)
    # y = sum_f w_f * l_f / sum_f w_f over label functions f with a value
    total = (torch.where(present, labels_per_func, 0.0) * w).sum(dim=1)
    norm = w.sum(dim=1)  # (B,)
    return torch.where(norm > 0, total / norm.clamp(min=torch.finfo(norm.dtype).tiny), float("nan"))
