"""Best-model checkpoints under atomic publishing: the Trainer's records point at the published checkpoint, so
`load_best_model_at_end` loads it and `save_total_limit` rotation keeps it."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from prime_trl import PRIMETrainer
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset


def first_step_marker(completions, trainer_state, **kwargs) -> list[float]:
    """1 on the batches scored right after step 1 (its evaluation among them), else 0: checkpoint-1 is the best."""
    return [float(trainer_state.global_step == 1)] * len(completions)


class PolicySnapshots(TrainerCallback):
    def __init__(self):
        self.by_step = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = {n: p.detach().clone() for n, p in model.state_dict().items()}


def best_checkpoint_args(out_dir, **overrides):
    """Evaluate and save every step, keep the best by the marker; the label comes from parity alone."""
    kwargs = dict(
        max_steps=3, eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1,
        load_best_model_at_end=True, metric_for_best_model="rewards/first_step_marker/mean",
        per_device_eval_batch_size=8, prm_label_funcs=["parity_reward"], accuracy_lower_bound=0.0,
        accuracy_upper_bound=1.0,
    )
    return cpu_config(out_dir, **{**kwargs, **overrides})


def _same(state, reference):
    return all(torch.equal(state[n], reference[n]) for n in reference)


@pytest.mark.slow
@pytest.mark.parametrize("save_total_limit", [None, 1])
def test_best_checkpoint_is_published_loaded_and_kept(tiny_model_dir, tmp_path, save_total_limit):
    args = best_checkpoint_args(tmp_path, save_total_limit=save_total_limit)
    snapshots = PolicySnapshots()
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=[parity_reward, first_step_marker], args=args,
                           train_dataset=toy_dataset(), eval_dataset=toy_dataset(8), callbacks=[snapshots])
    trainer.train()
    out = args.output_dir
    best = os.path.join(out, "checkpoint-1")

    assert trainer.state.best_model_checkpoint == best and os.path.isdir(best)
    assert not os.path.exists(os.path.join(out, ".staging"))
    kept = sorted(d for d in os.listdir(out) if d.startswith("checkpoint-"))
    # rotation keeps the best; with a limit of 1 the Trainer's end-of-training cleanup leaves only it
    assert kept == (["checkpoint-1"] if save_total_limit == 1 else ["checkpoint-1", "checkpoint-2", "checkpoint-3"])
    for name in kept[1:]:  # each saved state records the published best, not a staging path
        state = json.load(open(os.path.join(out, name, "trainer_state.json")))
        assert state["best_model_checkpoint"] == best

    # load_best_model_at_end: the policy and the PRM now hold checkpoint-1's weights, not step 3's
    final = trainer.model.state_dict()
    best_policy = load_file(os.path.join(best, "model.safetensors"))
    assert _same(final, best_policy)
    assert _same(final, snapshots.by_step[1]) and not _same(final, snapshots.by_step[3])
    best_prm = load_file(os.path.join(best, "prm", "model.safetensors"))
    assert _same(trainer.prm_model.state_dict(), best_prm)
