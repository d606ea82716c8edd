"""The PRM a PRIMETrainer run saves loads into ImplicitPRM (both placements, either reference), and the
training-time visualiser writes pages whose rewards are the trainer PRM's."""

import os

import pytest
import torch
from peft import LoraConfig

from prime_trl import ImplicitPRM, PRIMETrainer
from prime_trl.implicit_prm import build_completion_batch
from prime_trl.visualize import ProcessRewardVisualizer
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset


def _train(tiny_model_dir, tmp_path, config=None, **kwargs):
    args = cpu_config(tmp_path, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0, max_steps=1, **(config or {}))
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(),
                           **kwargs)
    visualizer = ProcessRewardVisualizer(trainer, every_n_steps=1, num_samples=2, max_new_tokens=8)
    trainer.add_callback(visualizer)
    trainer.train()
    trainer.save_model()
    return trainer, visualizer


def _ids_batch(visualizer, tokenizer):
    prompt_ids, completion_ids = visualizer.completions()
    return build_completion_batch(prompt_ids, completion_ids, tokenizer.pad_token_id)


def test_separate_placement_saved_prm_and_visualizer(tiny_model_dir, tmp_path):
    trainer, visualizer = _train(tiny_model_dir, tmp_path)
    out = trainer.args.output_dir
    for ext in ("html", "png"):
        assert os.path.getsize(os.path.join(out, "process_rewards", f"step-1.{ext}")) > 0
    assert visualizer.written == [os.path.join(out, "process_rewards", "step-1.html")]

    # the saved PRM, with the policy's starting model as reference, gives the trainer PRM's rewards
    prm = ImplicitPRM.from_pretrained(out, ref_path=tiny_model_dir, beta=trainer.args.prm_beta)
    batch = _ids_batch(visualizer, prm.tokenizer)  # greedy: the same ids the visualiser scored
    expected = trainer.prm.score(batch, trainer.prm.ref_logps(batch))
    got = prm.token_rewards(batch)
    assert got == pytest.approx(expected, abs=1e-5)
    assert got.abs().max() > 0  # the PRM update moved it away from the reference
    scored = visualizer.score()
    for row, result in zip(got, scored):
        assert result.token_rewards == pytest.approx(row[: len(result.token_rewards)].tolist(), abs=1e-5)
        assert sum(result.step_rewards) == pytest.approx(result.sequence_reward, abs=1e-6)


def test_a_prm_trained_against_the_policy_scores_as_in_training_with_the_trained_policy_as_reference(
    tiny_model_dir, tmp_path
):
    trainer, visualizer = _train(tiny_model_dir, tmp_path, config={"prm_ref_type": "policy"})
    out = trainer.args.output_dir  # the trained policy, and the PRM in out/prm
    prm = ImplicitPRM.from_pretrained(out, ref_path=out, beta=trainer.args.prm_beta)
    batch = _ids_batch(visualizer, prm.tokenizer)
    expected = trainer.prm.score(batch, trainer.prm.reference_logps(batch))
    assert prm.token_rewards(batch) == pytest.approx(expected, abs=1e-5)
    for row, result in zip(expected, visualizer.score()):  # the visualiser scores against the policy too
        assert result.token_rewards == pytest.approx(row[: len(result.token_rewards)].tolist(), abs=1e-5)
    # against its start instead, the rewards are not the ones it was trained and used with: the policy moved
    from_start = ImplicitPRM.from_pretrained(out, ref_path=tiny_model_dir, beta=trainer.args.prm_beta)
    assert (from_start.token_rewards(batch) - expected).abs().max() > 1e-4


def test_adapter_placement_saved_prm_loads_with_adapters_off_reference(tiny_model_dir, tmp_path):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer, visualizer = _train(tiny_model_dir, tmp_path, peft_config=lora)
    assert trainer.prm_placement == "adapter"
    prm = ImplicitPRM.from_pretrained(trainer.args.output_dir, beta=trainer.args.prm_beta)  # -> <output_dir>/prm
    batch = _ids_batch(visualizer, prm.tokenizer)
    expected = trainer.prm.score(batch, trainer.prm.ref_logps(batch))
    assert prm.token_rewards(batch) == pytest.approx(expected, abs=1e-5)
    assert torch.is_tensor(expected) and expected.abs().max() > 0


def test_an_adapter_prm_trained_against_the_policy_loads_with_the_trained_policy_as_reference(
    tiny_model_dir, tmp_path
):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer, visualizer = _train(tiny_model_dir, tmp_path, config={"prm_ref_type": "policy"}, peft_config=lora)
    assert trainer.prm_placement == "adapter"
    out = trainer.args.output_dir  # the policy adapter, and the PRM adapter in out/prm
    prm = ImplicitPRM.from_pretrained(out, ref_path=out, beta=trainer.args.prm_beta)
    batch = _ids_batch(visualizer, prm.tokenizer)
    expected = trainer.prm.score(batch, trainer.prm.reference_logps(batch))
    assert prm.token_rewards(batch) == pytest.approx(expected, abs=1e-5)
    adapters_off = ImplicitPRM.from_pretrained(out, beta=trainer.args.prm_beta)  # its start, not its reference
    assert (adapters_off.token_rewards(batch) - expected).abs().max() > 1e-4  # the policy adapter moved
