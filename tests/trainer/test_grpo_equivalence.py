"""With process rewards off and no filtering, PRIMETrainer(advantage_estimator="grpo") is GRPOTrainer.

Same seed, data, reward, loss type and `scale_rewards`: the two runs must end with the same policy weights.
"""

import pytest
import torch
from trl import GRPOConfig, GRPOTrainer

from prime_trl import PRIMETrainer
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

SHARED = dict(
    use_cpu=True, bf16=False, per_device_train_batch_size=8, gradient_accumulation_steps=1, max_completion_length=12,
    max_steps=3, learning_rate=1e-2, report_to="none", save_strategy="no", logging_steps=1, seed=0,
    disable_tqdm=True, num_generations=4, beta=0.0, epsilon=0.2,
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("scale_rewards,loss_type", [("group", "dapo"), ("batch", "grpo"), ("none", "dr_grpo")])
def test_grpo_estimator_without_process_rewards_is_grpo(tiny_model_dir, tmp_path, scale_rewards, loss_type):
    options = dict(SHARED, scale_rewards=scale_rewards, loss_type=loss_type)
    grpo = GRPOTrainer(
        model=tiny_model_dir, reward_funcs=parity_reward, train_dataset=toy_dataset(),
        args=GRPOConfig(output_dir=str(tmp_path / "grpo"), **options),
    )  # fmt: skip
    grpo.train()
    prime_args = cpu_config(
        tmp_path, advantage_estimator="grpo", process_reward_coef=0.0, prm_update="none",
        accuracy_lower_bound=0.0, accuracy_upper_bound=1.0, **options,
    )  # fmt: skip
    prime = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=prime_args, train_dataset=toy_dataset())
    start = {n: p.detach().clone() for n, p in prime.model.named_parameters()}
    prime.train()

    grpo_weights = dict(grpo.model.named_parameters())
    moved = 0
    for name, p in prime.model.named_parameters():
        torch.testing.assert_close(p, grpo_weights[name], rtol=0, atol=0, msg=name)
        moved += not torch.equal(p, start[name])
    assert moved > 0  # the runs trained; equal weights are not two untouched copies
