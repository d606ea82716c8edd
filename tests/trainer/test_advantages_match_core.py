"""The (B, T) advantages PRIMETrainer feeds to the loss equal the core functions applied to the same batch.

The test recomputes everything from the captured batch with its own plain forward passes (full logits,
log_softmax, gather), so it checks the trainer's orchestration: filtering, which PRM weights score the rows
("after": the pre-update PRM), normalisation, RLOO, whitening, masking of filtered rows.
"""

import copy

import torch

from prime_trl import PRIMETrainer
import pytest

from prime_trl.core import (
    accuracy_filter,
    implicit_process_rewards,
    masked_whiten,
    min_form_rewards,
    normalize_process_rewards,
    rloo_returns,
)
from tests.trainer.helpers import cpu_config, half_solvable_reward, toy_dataset


class CapturingTrainer(PRIMETrainer):
    """Records the PRM before its update, the batch, the advantages it built and those the loss received."""

    def _apply_prime(self, output, rewards_per_func):
        self.prm_before = copy.deepcopy(self.prm_model)
        self.outcome = rewards_per_func.clone()
        output = super()._apply_prime(output, rewards_per_func)
        self.batch = {k: v.clone() for k, v in output.items() if torch.is_tensor(v)}
        self.loss_advantages = []
        return output

    def _compute_loss(self, model, inputs):
        self.loss_advantages.append((inputs["completion_ids"].clone(), inputs["advantages"].clone()))
        return super()._compute_loss(model, inputs)


def _plain_logps(model, input_ids, attention_mask, num_completion):
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, V)
    logps = logits[:, -num_completion - 1 : -1].log_softmax(-1)  # (B, T, V)
    return logps.gather(-1, input_ids[:, -num_completion:].unsqueeze(-1)).squeeze(-1)  # (B, T)


def _snapshot_tensor(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


VARIANTS = {
    "prime": dict(gamma_process=0.9, process_reward_coef=2.0),
    "pure_min_form": dict(process_credit_assignment="min_form", process_reward_norm="none", gamma_outcome=0.95),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_advantages_equal_core_functions(tiny_model_dir, tmp_path, variant):
    options = VARIANTS[variant]
    args = cpu_config(
        tmp_path, max_steps=2, per_device_train_batch_size=16, accuracy_lower_bound=0.25, accuracy_upper_bound=0.75,
        prm_learning_rate=1e-2, **options,
    )
    trainer = CapturingTrainer(
        model=tiny_model_dir, reward_funcs=half_solvable_reward, args=args, train_dataset=toy_dataset()
    )
    trainer.train()  # the checks use the last step: at step 1 the PRM still equals its reference (r = 0)
    b = trainer.batch
    G, beta = args.num_generations, args.prm_beta
    mask = b["completion_mask"].float()
    T = mask.size(1)
    input_ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
    attention_mask = torch.cat([b["prompt_mask"], b["completion_mask"]], 1)

    scores = trainer.outcome[:, 0]  # one reward function, weight 1
    keep = accuracy_filter(scores, G, 0.25, 0.75).repeat_interleave(G)
    assert 0 < keep.sum() < len(keep), "the toy batch should have both kept and filtered groups"
    assert not torch.equal(_snapshot_tensor(trainer.prm_before), _snapshot_tensor(trainer.prm.placement.ref_model))
    kept_mask = mask * keep.unsqueeze(1)

    prm_logps = _plain_logps(trainer.prm_before, input_ids, attention_mask, T)
    ref_logps = _plain_logps(trainer.prm.placement.ref_model, input_ids, attention_mask, T)
    rewards = implicit_process_rewards(prm_logps, ref_logps, kept_mask, beta)
    if variant == "pure_min_form":
        rewards = min_form_rewards(rewards, kept_mask, temperature=0.1)
    else:
        rewards = normalize_process_rewards(rewards, kept_mask)
    returns = rloo_returns(
        rewards, scores, kept_mask, G,
        process_coef=options.get("process_reward_coef", 1.0), gamma_process=options.get("gamma_process", 1.0),
        gamma_outcome=options.get("gamma_outcome", 1.0),
    )
    expected = masked_whiten(returns, kept_mask) * kept_mask

    assert b["advantages"].shape == (16, T)
    torch.testing.assert_close(b["advantages"], expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(b["tool_mask"], b["completion_mask"] * keep.unsqueeze(1).to(b["completion_mask"].dtype))
    assert b["num_items_in_batch"].item() == kept_mask.sum().item()
    # the process term really differs from token to token (not a broadcast sequence advantage)
    kept_rows = keep.nonzero().squeeze(1)
    assert (expected[kept_rows][:, 1:] - expected[kept_rows][:, :-1]).abs().max() > 1e-3

    # what _compute_loss received: the same per-token rows, after GRPO's buffer shuffle
    (completion_ids, loss_adv), = trainer.loss_advantages
    for row in range(completion_ids.size(0)):
        src = (b["completion_ids"] == completion_ids[row]).all(1).nonzero()[0, 0]
        torch.testing.assert_close(loss_adv[row], b["advantages"][src])
