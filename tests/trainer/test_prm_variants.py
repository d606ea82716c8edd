"""The PRM's reference and loss variants (`prm_ref_type`, `prm_loss_type`) train as their definitions say."""

import copy
import math

import pytest
import torch
from peft import LoraConfig

from prime_trl import PRIMETrainer
from prime_trl.core import prm_dpo_loss, sequence_implicit_rewards
from prime_trl.prm import CompletionBatch, completion_logps
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return sum(not torch.equal(before[n], p) for n, p in module.named_parameters() if n in before)


class ReferenceRecorder(PRIMETrainer):
    """Records the reference log-probs PRIME used and the policy's own log-probs of the same rows."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        reference_logps = self.prm.reference_logps

        def recording(batch):
            ref = reference_logps(batch)
            with torch.no_grad():
                self.recorded = (ref.clone(), completion_logps(self.model, batch).float())
            return ref

        self.prm.reference_logps = recording


@pytest.mark.slow
@pytest.mark.parametrize("peft", [False, True], ids=["separate", "adapter"])
def test_policy_reference_holds_no_model_and_uses_the_policy(tiny_model_dir, tmp_path, peft):
    args = cpu_config(tmp_path, prm_ref_type="policy", accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM") if peft else None
    trainer = ReferenceRecorder(model=tiny_model_dir, reward_funcs=parity_reward, args=args,
                                train_dataset=toy_dataset(), peft_config=lora)
    assert peft or trainer.prm.placement.ref_model is None  # the adapter PRM never holds one
    policy0, prm0 = _snapshot(trainer.model), _snapshot(trainer.prm_model)
    trainer.train()
    ref, policy_logps = trainer.recorded  # the last step's: the policy has moved since the start
    torch.testing.assert_close(ref, policy_logps)
    assert _changed(policy0, trainer.model) > 0 and _changed(prm0, trainer.prm_model) > 0
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert math.isfinite(logs["prm/loss"]) and math.isfinite(logs["loss"])


def test_policy_reference_refuses_a_reference_model(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="prm_ref_type='policy'"):
        cpu_config(tmp_path, prm_ref_type="policy", prm_ref_model_name_or_path=tiny_model_dir)


class DPOLossRecorder(PRIMETrainer):
    """Recomputes the PRM's DPO loss from the batch it learned from, with the pre-update PRM."""

    def _apply_prime(self, output, rewards_per_func):
        self.prm_before = copy.deepcopy(self.prm_model)
        self.last_output = {k: v.clone() for k, v in output.items() if torch.is_tensor(v)}
        self.last_labels = self.prm_label_rule(rewards_per_func, self.reward_weights).clone()  # the PRM's labels
        return super()._apply_prime(output, rewards_per_func)


@pytest.mark.slow
def test_dpo_loss_is_the_pairwise_loss_of_the_batch(tiny_model_dir, tmp_path):
    args = cpu_config(tmp_path, prm_loss_type="dpo", accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
    trainer = DPOLossRecorder(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())
    prm0 = _snapshot(trainer.prm_model)
    trainer.train()
    assert _changed(prm0, trainer.prm_model) > 0

    # recompute the last step's loss with the PRM as it was before that update
    out, G, beta = trainer.last_output, args.num_generations, args.prm_beta
    before = trainer.prm_before
    batch = CompletionBatch(
        torch.cat([out["prompt_ids"], out["completion_ids"]], 1),
        torch.cat([out["prompt_mask"], out["completion_mask"]], 1),
        out["completion_mask"],
    )
    with torch.no_grad():
        prm_logps = completion_logps(before, batch).float()
        ref_logps = completion_logps(trainer.prm.placement.ref_model, batch).float()
    mask, labels = batch.completion_mask, trainer.last_labels
    rewards = sequence_implicit_rewards(prm_logps, ref_logps, mask, beta)
    expected = prm_dpo_loss(
        prm_logps, ref_logps, mask, labels, beta,
        rewards.view(-1, G).repeat_interleave(G, 0), labels.view(-1, G).repeat_interleave(G, 0),
    )  # fmt: skip
    logged = [entry["prm/loss"] for entry in trainer.state.log_history if "prm/loss" in entry][-1]
    assert math.isclose(logged, expected.item(), rel_tol=1e-4)

