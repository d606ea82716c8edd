"""Every advantage_estimator trains a tiny model: losses finite, the right parts move, frozen parts do not,
and the advantages that reach the loss are the core function's on the same batch."""

import math

import pytest
import torch
from peft import LoraConfig
from transformers.trainer_utils import get_last_checkpoint

from prime_trl import PRIMETrainer
from prime_trl.core import (
    gae_advantages,
    grpo_returns,
    masked_whiten,
    normalize_process_rewards,
    ppo_token_rewards,
    reinforce_returns,
    rloo_returns_paper_eq5,
)
from tests.trainer.helpers import StopAfter, cpu_config, parity_reward, toy_dataset

LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module, part=""):
    return sum(not torch.equal(before[n], p) for n, p in module.named_parameters() if n in before and part in n)


def _logs(trainer):
    return {k: v for entry in trainer.state.log_history for k, v in entry.items()}


# What each estimator must give on the batch the trainer saw (process rewards already normalised).
def _expected(name, args, process, scores, mask, G, values=None):
    cp, co = args.process_reward_coef, args.outcome_reward_coef
    if name == "rloo_paper_eq5":
        return masked_whiten(rloo_returns_paper_eq5(process, scores, mask, G, cp, co, args.gamma_process), mask) * mask
    if name == "reinforce":
        returns = reinforce_returns(process, scores, mask, cp, co, args.gamma_process, args.gamma_outcome)
        return masked_whiten(returns, mask) * mask
    if name == "grpo":
        return grpo_returns(process, scores, mask, G, args.scale_rewards, cp, co, args.gamma_process) * mask
    rewards = ppo_token_rewards(process, scores, mask, cp, co)
    return masked_whiten(gae_advantages(rewards, values, mask, args.gae_gamma, args.gae_lambda)[0], mask) * mask


class AdvantageRecorder(PRIMETrainer):
    def _token_advantages(self, process_rewards, scores, mask, batch=None):
        values = self.value.predict(batch) if self.value is not None else None
        advantages = super()._token_advantages(process_rewards, scores, mask, batch)
        self.recorded = (process_rewards.clone(), scores.clone(), mask.clone(), values, advantages.clone())
        return advantages


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["rloo_paper_eq5", "reinforce", "grpo", "ppo"])
def test_estimator_trains_and_feeds_its_advantages(tiny_model_dir, tmp_path, estimator):
    args = cpu_config(
        tmp_path, advantage_estimator=estimator, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0,
        value_learning_rate=1e-2, gae_lambda=0.9,
    )  # fmt: skip
    trainer = AdvantageRecorder(
        model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset()
    )
    policy0, prm0 = _snapshot(trainer.model), _snapshot(trainer.prm_model)
    ref0 = _snapshot(trainer.prm.placement.ref_model)
    value0 = _snapshot(trainer.value.placement.model) if trainer.value is not None else None
    trainer.train()

    assert _changed(policy0, trainer.model) > 0 and _changed(prm0, trainer.prm_model) > 0
    assert _changed(ref0, trainer.prm.placement.ref_model) == 0
    logs = _logs(trainer)
    assert math.isfinite(logs["loss"]) and math.isfinite(logs["prm/loss"])

    process, scores, mask, values, advantages = trainer.recorded  # the last step's (PRM rewards non-zero there)
    assert process.abs().sum() > 0
    expected = _expected(estimator, args, normalize_process_rewards(process, mask), scores, mask, 4, values)
    torch.testing.assert_close(advantages, expected)
    if estimator == "ppo":
        assert _changed(value0, trainer.value.placement.model) > 0
        assert values.abs().sum() > 0  # the head has learned away from its zero start
        assert math.isfinite(logs["value/loss"]) and math.isfinite(logs["value/explained_variance"])
    else:
        assert trainer.value is None


@pytest.mark.slow
def test_ppo_value_adapter_trains_alone(tiny_model_dir, tmp_path):
    """With PEFT the value model is a third adapter: its optimizer steps only it (and its head)."""
    args = cpu_config(tmp_path, advantage_estimator="ppo", accuracy_lower_bound=0.0, accuracy_upper_bound=1.0,
                      value_learning_rate=1e-2, max_steps=1)
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(),
                           peft_config=LoraConfig(**LORA))
    assert set(trainer.model.peft_config) == {"default", "prm", "value"}
    value_params = {id(p) for p in trainer.value.parameters}
    assert value_params.isdisjoint(id(p) for p in trainer.prm.parameters)
    before = _snapshot(trainer.model)
    trainer.train()
    assert value_params.isdisjoint(id(p) for group in trainer.optimizer.param_groups for p in group["params"])
    assert _changed(before, trainer.model, ".value.") > 0
    assert _changed(before, trainer.model, ".default.") > 0 and _changed(before, trainer.model, ".prm.") > 0
    base = {n for n in before if "lora_" not in n}
    assert sum(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if n in base) == 0


def _ppo_trainer(model_dir, out, peft):
    args = cpu_config(out, advantage_estimator="ppo", max_steps=4, per_device_train_batch_size=4,
                      steps_per_generation=2, save_strategy="steps", save_steps=1, accuracy_lower_bound=0.0,
                      accuracy_upper_bound=1.0, value_learning_rate=1e-2)
    return PRIMETrainer(model=model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(),
                        peft_config=LoraConfig(**LORA) if peft else None)


def _flat(parameters):
    return torch.cat([p.detach().flatten() for p in parameters])


@pytest.mark.slow
@pytest.mark.parametrize("peft", [False, True], ids=["separate", "adapter"])
def test_ppo_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path, peft):
    straight = _ppo_trainer(tiny_model_dir, tmp_path / "straight", peft)
    straight.train()
    stopped = _ppo_trainer(tiny_model_dir, tmp_path / "resumed", peft)
    stopped.add_callback(StopAfter(3))  # after the second generation batch: the value model has stepped twice
    stopped.train()
    checkpoint = get_last_checkpoint(stopped.args.output_dir)
    resumed = _ppo_trainer(tiny_model_dir, tmp_path / "resumed", peft)
    resumed.train(resume_from_checkpoint=checkpoint)

    assert torch.equal(_flat(resumed.model.parameters()), _flat(straight.model.parameters()))
    assert torch.equal(_flat(resumed.value.parameters), _flat(straight.value.parameters))
    for a, b in zip(resumed.value.optimizer.state.values(), straight.value.optimizer.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
