"""Dynamic sampling: fill a generation batch with informative groups only (PRIME's refill, DAPO's dynamic sampling).

PRIME's trainer (PRIME-RL/PRIME `ray_trainer.py`) samples a batch of prompts, keeps the groups that pass the accuracy
filter and samples further prompts until `batch_size * n` rollouts pass; surplus prompts go back into a buffer. Here:

    round k:  take P prompts from `PromptStream` (the sampler's data order) -> generate + score (GRPO) -> keep the
              informative groups, gathered over processes
    until:    >= P groups are held or `max_rounds` rounds ran
    then:     the first P held groups (or, rounds exhausted, the most whole groups that split evenly over processes
              and micro-steps) are the batch; surplus prompts go back to the stream's front; each process takes
              its contiguous share of rows, re-padded to its own longest prompt and completion.

Notation as in `prime_trl.core`: P prompts, G rows per prompt (contiguous), B = P*G rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

# How a batch tensor's second dimension is padded when rows of differently padded batches are joined:
# prompts are left-padded and completions right-padded, as GRPO builds them; "rows" tensors have no such dimension.
LEFT, RIGHT, ROWS = "left", "right", "rows"


def row_layouts(pad_token_id: int, sequence_level_ratio: bool = False) -> dict[str, tuple[str, float]]:
    """(side, padding value) of each tensor GRPO's `_generate_and_score_completions` returns for text rows."""
    completion_float = (RIGHT, 0.0)
    return {
        "prompt_ids": (LEFT, pad_token_id),
        "prompt_mask": (LEFT, 0),
        "completion_ids": (RIGHT, pad_token_id),
        "completion_mask": (RIGHT, 0),
        "tool_mask": (RIGHT, 1),  # GRPO pads it with 1; padding is out of completion_mask anyway
        "old_per_token_logps": completion_float,
        "ref_per_token_logps": completion_float,
        "sampling_per_token_logps": completion_float,
        "importance_sampling_ratio": (ROWS, 0.0) if sequence_level_ratio else completion_float,  # (B, 1) or (B, T)
        "advantages": (ROWS, 0.0),  # GRPO's (B,) advantages; PRIME replaces them
    }


def row_tensors(batch: dict, layouts: dict) -> dict[str, torch.Tensor]:
    """The per-row tensors of a GRPO output; 0-dim entries (num_items_in_batch) are recomputed later and dropped."""
    rows = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim == 0:
            continue
        if key not in layouts or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"dynamic_sampling cannot join generation batches holding {key!r} (multimodal or custom rollout "
                "outputs are not supported); set dynamic_sampling=False."
            )
        rows[key] = value
    return rows


def pad_columns(tensor: torch.Tensor, width: int, side: str, value) -> torch.Tensor:
    """(N, W, ...) -> (N, width, ...), padding `value` on `side`."""
    if side == ROWS or width == tensor.size(1):
        return tensor
    missing = width - tensor.size(1)
    pad = tensor.new_full((tensor.size(0), missing, *tensor.shape[2:]), value)
    return torch.cat([pad, tensor] if side == LEFT else [tensor, pad], dim=1)


def concat_rows(batches: list[dict[str, torch.Tensor]], layouts: dict) -> dict[str, torch.Tensor]:
    """Stack the rows of batches padded to different widths: (sum N_i, max W_i, ...) per key."""
    joined = {}
    for key in batches[0]:
        side, value = layouts[key]
        width = max(batch[key].size(1) for batch in batches) if side != ROWS else None
        joined[key] = torch.cat([pad_columns(batch[key], width, side, value) for batch in batches])
    return joined


def select_rows(batch: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: tensor[index] for key, tensor in batch.items()}


def trim_padding(batch: dict[str, torch.Tensor], layouts: dict, multiple: int | None = None) -> dict[str, torch.Tensor]:
    """Drop the columns that are padding in every row: what GRPO would have padded these rows to had it sampled
    them together. Prompt left-padding shifts position ids, so it must match a batch sampled as it is.

    Prompt width: the longest `prompt_mask`. Completion width: the longest row, a row ending at its last
    `completion_mask` token or its last non-padding id (a truncated row masked by `mask_truncated_completions`).
    Both are rounded up to `multiple` (GRPO's `pad_to_multiple_of`).
    """
    def rounded(width: int) -> int:
        return width if not multiple else -(-width // multiple) * multiple

    positions = torch.arange(1, batch["completion_ids"].size(1) + 1, device=batch["completion_ids"].device)
    pad_id = layouts["completion_ids"][1]
    in_completion = (batch["completion_mask"] > 0) | (batch["completion_ids"] != pad_id)  # (N, T)
    empty = len(in_completion) == 0
    widths = {
        LEFT: 0 if empty else rounded(int(batch["prompt_mask"].sum(1).max())),
        RIGHT: 0 if empty else rounded(int((in_completion * positions).max())),  # last completion column, 1-based
    }
    crop = {
        LEFT: lambda t: t[:, t.size(1) - min(widths[LEFT], t.size(1)) :],  # keep the last columns
        RIGHT: lambda t: t[:, : widths[RIGHT]],
        ROWS: lambda t: t,
    }
    return {key: crop[layouts[key][0]](tensor) for key, tensor in batch.items()}


def gather_rows(batch: dict[str, torch.Tensor], layouts: dict, accelerator) -> dict[str, torch.Tensor]:
    """Every process's rows, in process order, on every process (widths padded to the widest process)."""
    if accelerator.num_processes == 1:
        return batch
    gathered = {}
    for key, tensor in batch.items():
        side, value = layouts[key]
        if side != ROWS:
            tensor = accelerator.pad_across_processes(tensor, dim=1, pad_index=value, pad_first=side == LEFT)
        gathered[key] = accelerator.gather(tensor)
    return gathered


def deal_rows(batch: dict[str, torch.Tensor], process_index: int, num_processes: int) -> dict[str, torch.Tensor]:
    """Process `process_index`'s contiguous share of the rows (the split GRPO's dataloader makes)."""
    num_rows = next(iter(batch.values())).size(0)
    share = num_rows // num_processes
    return {key: tensor[process_index * share : (process_index + 1) * share] for key, tensor in batch.items()}


def usable_groups(num_held: int, num_generations: int, rows_multiple: int) -> int:
    """Most whole groups (<= num_held) whose rows split evenly into `rows_multiple` parts (processes x micro-steps)."""
    unit = math.lcm(num_generations, rows_multiple) // num_generations  # groups per evenly splittable unit
    return num_held // unit * unit


class PromptStream:
    """Dataset indices in the order GRPO's `RepeatSampler` visits them (one permutation per pass, seeded like it),
    read on without end, with prompts put back to the front. Its state travels in checkpoints."""

    def __init__(self, num_prompts: int, seed: int, shuffle: bool = True):
        if num_prompts < 1:
            raise ValueError("dynamic_sampling needs a non-empty train_dataset.")
        self.num_prompts, self.shuffle = num_prompts, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.position = 0
        self.passes = 0  # completed reads of the dataset
        self.returned: list[int] = []

    def take(self, n: int) -> list[int]:
        taken, self.returned = self.returned[:n], self.returned[n:]
        while len(taken) < n:
            if self.position == len(self.order):
                self._next_pass()
            step = min(n - len(taken), len(self.order) - self.position)
            taken += self.order[self.position : self.position + step]
            self.position += step
        return taken

    def put_back(self, indices: list[int]) -> None:
        self.returned = list(indices) + self.returned

    def _next_pass(self) -> None:
        if self.order:
            self.passes += 1
        if self.shuffle:
            self.order = torch.randperm(self.num_prompts, generator=self.generator).tolist()
        else:
            self.order = list(range(self.num_prompts))
        self.position = 0

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "order": torch.tensor(self.order, dtype=torch.long),
            "position": self.position,
            "passes": self.passes,
            "returned": torch.tensor(self.returned, dtype=torch.long),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.order = state["order"].tolist()
        self.position, self.passes = int(state["position"]), int(state["passes"])
        self.returned = state["returned"].tolist()


@dataclass
class Round:
    """One sampling round, gathered over processes.

    batch:   per-row tensors (B_round, ...) of every process, G contiguous rows per prompt
    rewards: (B_round, F) outcome rewards per reward function (NaN: unscorable)
    keep:    (P_round,) bool, the groups that pass the accuracy filter
    prompts: (P_round,) dataset indices of the round's prompts
    """

    batch: dict[str, torch.Tensor]
    rewards: torch.Tensor
    keep: torch.Tensor
    prompts: list[int]


@dataclass
class SampledBatch:
    """The informative groups chosen for one generation batch, all processes' rows (B_trained, ...)."""

    batch: dict[str, torch.Tensor]
    rewards: torch.Tensor
    num_rounds: int
    num_prompts_sampled: int
    num_informative: int
    num_trained: int  # groups in `batch`
    num_wanted: int  # groups the generation batch has

    @property
    def exhausted(self) -> bool:
        return self.num_trained < self.num_wanted


class DynamicSampler:
    """Builds a generation batch of informative groups from rounds of `sample_round(prompt_indices) -> Round`.

    Args:
        stream: where prompts come from.
        num_prompts: P, prompts (= groups) per generation batch, and per round.
        num_generations: G.
        max_rounds: most rounds per generation batch.
        rows_multiple: the trained row count must divide by this (processes x steps_per_generation).
        layouts: `row_layouts(...)`.
    """

    def __init__(self, stream: PromptStream, num_prompts: int, num_generations: int, max_rounds: int,
                 rows_multiple: int, layouts: dict):
        self.stream, self.num_prompts, self.num_generations = stream, num_prompts, num_generations
        self.max_rounds, self.rows_multiple, self.layouts = max_rounds, rows_multiple, layouts

    def sample(self, sample_round: Callable[[list[int]], Round]) -> SampledBatch:
        G = self.num_generations
        held_batches, held_rewards, held_prompts = [], [], []
        num_rounds = 0
        while num_rounds < self.max_rounds and len(held_prompts) < self.num_prompts:
            prompts = self.stream.take(self.num_prompts)
            result = sample_round(prompts)
            num_rounds += 1
            kept_rows = result.keep.repeat_interleave(G).nonzero().squeeze(1)  # whole groups, in order
            held_batches.append(select_rows(result.batch, kept_rows))
            held_rewards.append(result.rewards[kept_rows])
            held_prompts += [p for p, keep in zip(prompts, result.keep.tolist()) if keep]
        num_held = len(held_prompts)
        if num_held >= self.num_prompts:
            num_trained = self.num_prompts
        else:
            num_trained = usable_groups(num_held, G, self.rows_multiple)
        self.stream.put_back(held_prompts[num_trained:])  # sampled again, by the then current policy
        batch = select_rows(concat_rows(held_batches, self.layouts), slice(0, num_trained * G))
        rewards = torch.cat(held_rewards)[: num_trained * G]
        return SampledBatch(
            batch=batch,
            rewards=rewards,
            num_rounds=num_rounds,
            num_prompts_sampled=num_rounds * self.num_prompts,
            num_informative=num_held,
            num_trained=num_trained,
            num_wanted=self.num_prompts,
        )

    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])


def sampling_metrics(sampled: SampledBatch) -> dict[str, float]:
    """What the trainer logs per generation batch."""
    return {
        "sampling/rounds": float(sampled.num_rounds),
        "sampling/prompts_sampled": float(sampled.num_prompts_sampled),
        "sampling/informative_fraction": sampled.num_informative / sampled.num_prompts_sampled,
        "sampling/filled_fraction": sampled.num_trained / sampled.num_wanted,
    }
