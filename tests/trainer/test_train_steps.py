"""PRIMETrainer trains a tiny local model for a few real steps: what must move moves, what must not does not."""

import math

import torch

from prime_trl import PRIMETrainer
from prime_trl.prm import CompletionBatch
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return sum(not torch.equal(before[n], p) for n, p in module.named_parameters() if n in before)


def test_policy_and_prm_move_reference_does_not(tiny_model_dir, tmp_path):
    # Bounds [0, 1] keep every group, so both losses see data on every step.
    args = cpu_config(tmp_path, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())
    policy0, prm0 = _snapshot(trainer.model), _snapshot(trainer.prm_model)
    ref0 = _snapshot(trainer.prm.placement.ref_model)
    assert all(torch.equal(policy0[n], prm0[n]) for n in policy0)  # the PRM starts as the policy's copy

    trainer.train()

    assert _changed(policy0, trainer.model) > 0
    assert _changed(prm0, trainer.prm_model) > 0
    assert _changed(ref0, trainer.prm.placement.ref_model) == 0
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    for key in ("prm/loss", "prm/accuracy", "prm/process_reward_mean", "prm/grad_norm", "filter/kept_fraction",
                "rewards/parity_reward/mean", "rewards/parity_reward/std"):
        assert key in logs and math.isfinite(logs[key]), key
    assert 0.0 <= logs["prm/accuracy"] <= 1.0


def test_prm_update_none_keeps_prm_frozen(tiny_model_dir, tmp_path):
    args = cpu_config(tmp_path, prm_update="none", accuracy_lower_bound=0.0, accuracy_upper_bound=1.0, max_steps=1)
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())
    prm0 = _snapshot(trainer.prm_model)
    trainer.train()
    assert _changed(prm0, trainer.prm_model) == 0


def test_save_model_writes_loadable_prm(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    args = cpu_config(tmp_path, max_steps=1, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())
    trainer.train()
    trainer.save_model()
    loaded = AutoModelForCausalLM.from_pretrained(f"{args.output_dir}/prm")
    for name, p in trainer.prm_model.named_parameters():
        assert torch.equal(loaded.state_dict()[name], p.detach()), name


def test_quantized_base_without_cuda_fails_clearly(tiny_model_dir, tmp_path):
    import pytest
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    if torch.cuda.is_available():
        pytest.skip("CUDA present: QLoRA can run here")
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    with pytest.raises(ValueError, match="needs bitsandbytes on a CUDA GPU"):
        PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=cpu_config(tmp_path),
                     train_dataset=toy_dataset(), peft_config=lora,
                     quantization_config=BitsAndBytesConfig(load_in_4bit=True))


def test_invalid_config_names_the_option(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="accuracy_lower_bound"):
        cpu_config(tmp_path, accuracy_lower_bound=0.9, accuracy_upper_bound=0.1)
    with pytest.raises(ValueError, match="prm_update='later'"):
        cpu_config(tmp_path, prm_update="later")
    with pytest.raises(ValueError, match="prm_beta"):
        cpu_config(tmp_path, prm_beta=0.0)
    with pytest.raises(ValueError, match="prm_placement='adapter' shares"):
        cpu_config(tmp_path, prm_placement="adapter", prm_model_name_or_path="x")


def test_label_outside_unit_interval_names_the_function_and_the_fix(tiny_model_dir, tmp_path):
    import pytest

    def signed_reward(completions, **kwargs):
        return [-1.0] * len(completions)

    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=signed_reward, args=cpu_config(tmp_path, max_steps=1),
                           train_dataset=toy_dataset())
    with pytest.raises(ValueError, match=r"reward function 'signed_reward' scored -1 at row 0.*prm_label_transform="):
        trainer.train()


def test_evaluation_uses_grpo_path_and_leaves_the_prm_alone(tiny_model_dir, tmp_path):
    args = cpu_config(tmp_path, per_device_eval_batch_size=8, eval_strategy="no")
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(),
                           eval_dataset=toy_dataset(8))
    prm0 = _snapshot(trainer.prm_model)
    metrics = trainer.evaluate()
    assert "eval_reward" in metrics
    assert _changed(prm0, trainer.prm_model) == 0
    assert trainer.prm.optimizer.state == {}  # no PRM step was taken


def test_completions_table_shows_prime_advantages(tiny_model_dir, tmp_path):
    args = cpu_config(tmp_path, max_steps=1, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())
    trainer.train()
    logged = list(trainer._logs["advantages"])
    assert len(logged) == args.generation_batch_size
    assert all(math.isfinite(a) for a in logged) and any(a != 0 for a in logged)


def test_a_bf16_prm_trains_in_fp32_master_weights(tiny_model_dir, tmp_path):
    import torch as _torch

    args = cpu_config(tmp_path, max_steps=1, model_init_kwargs={"dtype": "bfloat16"})
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())
    assert next(trainer.model.parameters()).dtype == _torch.bfloat16  # the policy is as the user asked
    assert all(p.dtype == _torch.float32 for p in trainer.prm.parameters)
    assert all(p.dtype == _torch.float32 for p in trainer.prm.placement.ref_model.parameters())
    # PRM and reference start from the same weights in the same dtype, so every implicit reward is exactly 0
    ids = _torch.randint(trainer.model.config.vocab_size, (3, 9), generator=_torch.Generator().manual_seed(0))
    batch = CompletionBatch(ids, _torch.ones_like(ids), _torch.ones_like(ids[:, 4:]))  # 4 prompt, 5 completion
    rewards = trainer.prm.score(batch, trainer.prm.ref_logps(batch))
    assert _torch.equal(rewards, _torch.zeros_like(rewards))


def test_an_already_quantized_model_without_cuda_fails_clearly():
    import types

    import pytest

    from prime_trl.placement import check_quantization_runs_here

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="needs bitsandbytes on a CUDA GPU"):
        check_quantization_runs_here(None, types.SimpleNamespace(is_loaded_in_4bit=True))
    check_quantization_runs_here(None, "a/model/path")  # nothing quantized: no error


def test_outcome_only_rloo_with_a_frozen_prm_runs_no_prm_pass(tiny_model_dir, tmp_path):
    args = cpu_config(tmp_path, process_reward_coef=0.0, prm_update="none", max_steps=1,
                      accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the PRM ran although nothing uses its rewards")

    trainer.prm.ref_logps = trainer.prm.step = must_not_run
    policy0 = _snapshot(trainer.model)
    trainer.train()
    assert _changed(policy0, trainer.model) > 0  # the outcome-only RLOO advantages still train the policy
    logs = {k for entry in trainer.state.log_history for k in entry}
    assert "prm/accuracy" not in logs and "prm/loss" not in logs
    learning_prm = cpu_config(tmp_path, process_reward_coef=0.0)  # prm_update="after": the PRM still learns
    assert PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=learning_prm,
                        train_dataset=toy_dataset()).prm_in_use
