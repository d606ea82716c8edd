"""Health of the implicit PRM on a fixed pool of rollouts: does its reward track correctness, or length?

These read the PRM's rewards on rollouts it is *not* trained on (`prime_trl.prm_health` scores the pool);
the pairwise accuracy itself is `prime_trl.core.metrics.prm_pairwise_accuracy`.
"""

import torch


def length_correlation(sequence_rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between the sequence reward r_phi(y) = sum_t r_t and the completion length |y|.

    A PRM that lowers (or raises) every token's log-ratio a little expresses its verdict through length:
    its sequence reward then correlates with |y| whatever the answer. Far from 0 means the reward has drifted.

    Args:
        sequence_rewards (torch.Tensor): r_phi(y) of each rollout, shape (N,).
        lengths (torch.Tensor): completion tokens of each rollout, shape (N,).

    Returns:
        torch.Tensor: scalar in [-1, 1]; 0 when N < 2 or either input is constant (no linear relation to measure).
    """
    x, y = sequence_rewards.double(), lengths.double()
    if x.numel() < 2:
        return torch.tensor(0.0)
    dx, dy = x - x.mean(), y - y.mean()
    # rho = sum_i dx_i dy_i / sqrt(sum_i dx_i^2 * sum_i dy_i^2)
    denominator = (dx.square().sum() * dy.square().sum()).sqrt()
    if denominator == 0:
        return torch.tensor(0.0)
    return ((dx * dy).sum() / denominator).to(torch.get_default_dtype())


def error_localisation(
    step_rewards: torch.Tensor, step_mask: torch.Tensor, first_wrong_step: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """How often the lowest-reward step of a wrong solution is its first wrong step, and what chance gives.

    Per rollout i with a known first wrong step k_i (0 <= k_i < its number of steps K_i):
    hit_i = [R_{i,k_i} == min_s R_{i,s}] / #{s : R_{i,s} == min_s R_{i,s}}, so a tie shares the credit and a
    PRM that gives every step the same reward scores exactly chance, 1 / K_i. Rows with k_i = -1 (unknown or
    no error) or k_i >= K_i take no part.

    Args:
        step_rewards (torch.Tensor): R_{i,s}, the summed token rewards of step s, shape (N, S).
        step_mask (torch.Tensor): 1 on real steps, 0 on padding; a row's real steps come first, shape (N, S).
        first_wrong_step (torch.Tensor): k_i, the index of the first wrong step, -1 if none is known, shape (N,).

    Returns:
        (hit rate, chance rate): two scalars, the means of hit_i and 1 / K_i over the rows that take part;
        NaN for both when no row does.
    """
    valid_steps = step_mask.bool()  # (N, S)
    num_steps = valid_steps.sum(-1)  # (N,) K_i
    rows = (first_wrong_step >= 0) & (first_wrong_step < num_steps)  # (N,)
    if not rows.any():
        nan = torch.tensor(float("nan"))
        return nan, nan
    rewards = step_rewards[rows].double()  # (M, S)
    valid = valid_steps[rows]  # (M, S)
    k = first_wrong_step[rows].long()  # (M,)
    lowest = torch.where(valid, rewards, torch.inf).min(-1).values  # (M,) min_s R_{i,s}
    at_min = valid & (rewards == lowest.unsqueeze(-1))  # (M, S)
    # hit_i = [R_{i,k_i} is a minimum] / number of minima
    hit = at_min.gather(-1, k.unsqueeze(-1)).squeeze(-1).double() / at_min.sum(-1).double()
    chance = 1.0 / num_steps[rows].double()
    dtype = torch.get_default_dtype()
    return hit.mean().to(dtype), chance.mean().to(dtype)
