"""Random right-padded batches for the loop-oracle comparisons of `prime_trl.core` (torch + pytest only)."""

import pytest
import torch


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def make_mask(generator):
    """Factory for a right-padded (B, T) completion mask with random lengths in [1, T].

    With `empty_rows=True`, about a third of the rows (never all) get an all-zero mask,
    as for rows the trainer masks out.
    """

    def make(batch_size: int, length: int, empty_rows: bool = False) -> torch.Tensor:
        lengths = torch.randint(1, length + 1, (batch_size,), generator=generator)
        if empty_rows:
            drop = torch.rand(batch_size, generator=generator) < 0.33
            drop[0] = False
            lengths = torch.where(drop, 0, lengths)
        return (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()  # (B, T)

    return make


@pytest.fixture
def with_padding_garbage():
    """Put NaN on padded positions, so a test fails if a function reads them."""

    def fill(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.bool(), values, torch.full_like(values, float("nan")))

    return fill
