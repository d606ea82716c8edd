"""Checkpoint pieces that TRL's GRPOTrainer leaves out, and atomic publication.

GRPO samples one generation batch and spends it over `steps_per_generation * num_iterations` micro-steps,
keeping the unspent part in `_buffered_inputs` and its position in `_step`. Neither is saved, so a run
resumed from a checkpoint taken mid-cycle samples a new batch (and PRIME's PRM learns from it a second
time) instead of finishing the old one: the resumed run drifts from the uninterrupted one. We save both,
per process, next to the PRM's optimizer state, and with dynamic sampling the prompt stream's position
(its extra prompts come from the data order, ahead of the dataloader's).

A checkpoint is written into a hidden staging folder and renamed into place once complete, so a crash
while saving never leaves a `checkpoint-N` that resumes from partial files (`os.replace` is atomic on one
filesystem; `get_last_checkpoint` ignores the staging name). The Trainer records the checkpoint it writes
(`state.best_model_checkpoint`, then used for rotation and `load_best_model_at_end`); that record is moved
to the published path before the state is saved, so nothing points into the staging folder once renamed.
"""

from __future__ import annotations

import os
import shutil

import torch

STAGING_DIR = ".staging"
PRM_STATE_FILE = "prm_state.pt"


def generation_state_file(process_index: int) -> str:
    return f"generation_state_rank{process_index}.pt"


def save_generation_state(
    checkpoint_dir: str, process_index: int, step: int, buffered_inputs, num_completions_sampled: int = 0
) -> None:
    """Save GRPO's micro-step counter, unspent generation batch (a list of dicts of tensors) and the count of
    completions sampled so far."""
    state = {"step": step, "buffered_inputs": buffered_inputs, "num_completions_sampled": num_completions_sampled}
    torch.save(state, os.path.join(checkpoint_dir, generation_state_file(process_index)))


def load_generation_state(checkpoint_dir: str, process_index: int, device) -> tuple[int, list | None, int] | None:
    """(step, buffered_inputs, num_completions_sampled) saved by `save_generation_state`, tensors on `device`;
    None if absent. A checkpoint from before the count was saved gives 0."""
    path = os.path.join(checkpoint_dir, generation_state_file(process_index))
    if not os.path.exists(path):
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    return state["step"], state["buffered_inputs"], state.get("num_completions_sampled", 0)


def sampling_state_file(process_index: int) -> str:
    return f"sampling_state_rank{process_index}.pt"


def save_sampling_state(checkpoint_dir: str, process_index: int, state: dict) -> None:
    """Save dynamic sampling's prompt stream (its position in the data order, prompts put back)."""
    torch.save(state, os.path.join(checkpoint_dir, sampling_state_file(process_index)))


def load_sampling_state(checkpoint_dir: str, process_index: int) -> dict | None:
    path = os.path.join(checkpoint_dir, sampling_state_file(process_index))
    return torch.load(path, map_location="cpu", weights_only=True) if os.path.exists(path) else None


def publish(staged_dir: str, final_dir: str) -> None:
    """Move a fully written checkpoint into place in one rename (replacing an older one of the same step)."""
    if os.path.exists(final_dir):
        shutil.rmtree(final_dir)
    os.replace(staged_dir, final_dir)


def published_path(path: str | None, staging_root: str, run_dir: str) -> str | None:
    """Where a checkpoint recorded under `staging_root` lives once published into `run_dir`; other paths as is."""
    if path is None or os.path.dirname(os.path.abspath(path)) != os.path.abspath(staging_root):
        return path
    return os.path.join(run_dir, os.path.basename(path))
