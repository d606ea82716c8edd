"""Stop after a checkpoint, resume, and end with exactly the weights of an uninterrupted run."""

import os

import pytest
import torch
from peft import LoraConfig
from transformers.trainer_utils import get_last_checkpoint

from prime_trl import PRIMETrainer
from tests.trainer.helpers import StopAfter, cpu_config, parity_reward, toy_dataset


def _trainer(model_dir, out, peft):
    # steps_per_generation=2 with GA=1: one generation batch serves two optimizer steps, so the checkpoint
    # after step 1 falls in the middle of a generation cycle, the case GRPOTrainer alone cannot resume.
    args = cpu_config(out, max_steps=4, per_device_train_batch_size=4, steps_per_generation=2, save_strategy="steps",
                      save_steps=1, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM") if peft else None
    return PRIMETrainer(model=model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(),
                        peft_config=lora)


def _flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("peft", [False, True], ids=["separate", "adapter"])
def test_resume_mid_generation_matches_uninterrupted_run(tiny_model_dir, tmp_path, peft):
    straight = _trainer(tiny_model_dir, tmp_path / "straight", peft)
    straight.train()

    stopped = _trainer(tiny_model_dir, tmp_path / "resumed", peft)
    stopped.add_callback(StopAfter(1))
    stopped.train()
    checkpoint = get_last_checkpoint(stopped.args.output_dir)
    assert checkpoint.endswith("checkpoint-1")
    resumed = _trainer(tiny_model_dir, tmp_path / "resumed", peft)
    resumed.train(resume_from_checkpoint=checkpoint)

    assert resumed.state.global_step == straight.state.global_step == 4
    assert torch.equal(_flat(resumed.model), _flat(straight.model))  # policy (and, with PEFT, both adapters)
    assert torch.equal(_flat(resumed.prm_model), _flat(straight.prm_model))
    for a, b in zip(resumed.prm.optimizer.state.values(), straight.prm.optimizer.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
    assert resumed.num_completions_sampled == straight.num_completions_sampled > 0  # counted on from the checkpoint


def test_a_crash_while_saving_leaves_no_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    trainer = _trainer(tiny_model_dir, tmp_path / "crash", peft=False)
    trainer.add_callback(StopAfter(2))
    saves = []

    def failing_save(*args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise OSError("disk full")

    monkeypatch.setattr("prime_trl.trainer.save_generation_state", failing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.train()
    out = trainer.args.output_dir
    assert get_last_checkpoint(out).endswith("checkpoint-1")  # step 2's partial files are not a checkpoint
    assert not os.path.exists(os.path.join(out, "checkpoint-2"))
