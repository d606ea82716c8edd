"""Masked reductions and group reshapes shared by the `prime_trl.core` modules.

Every helper reads `mask` as a boolean (1 on completion tokens, 0 on padding) and uses
`torch.where` rather than multiplication, so a NaN or -inf sitting in a padded position
(e.g. a log-prob that was never computed) can reach neither the result nor the gradient.
"""

import torch


def masked_fill_zero(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`values` where `mask` is set, exactly 0 elsewhere. Shapes: (B, T), (B, T) -> (B, T)."""
    return torch.where(mask.bool(), values, torch.zeros_like(values))


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sum of `values` over valid positions along `dim`: (B, T) -> (B,) with the default dim."""
    return masked_fill_zero(values, mask).sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Mean of `values` over valid positions along `dim`; 0 where there is none. (B, T) -> (B,)."""
    count = mask.bool().sum(dim).to(values.dtype)
    return masked_sum(values, mask, dim) / count.clamp(min=1)


def to_groups(values: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Split the row dimension into prompts: (B, ...) -> (P, G, ...), the G rows of a prompt contiguous."""
    if num_generations < 1 or values.shape[0] % num_generations != 0:
        raise ValueError(
            f"the {values.shape[0]} rows cannot be split into groups of num_generations={num_generations}"
        )
    return values.reshape(-1, num_generations, *values.shape[1:])


def last_token_mask(mask: torch.Tensor) -> torch.Tensor:
    """One-hot on the last valid position of each row; all zeros for an empty row. (B, T) -> bool (B, T)."""
    mask = mask.bool()
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    # index of the last valid token: the largest position where mask is set (-1 for an empty row)
    last = torch.where(mask, positions, torch.full_like(positions, -1)).amax(-1, keepdim=True)  # (B, 1)
    return (positions == last) & mask
