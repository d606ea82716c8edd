"""Dynamic sampling end to end: full batches of informative groups, no filtered row in a gradient pass, exact resume.

The reward makes the informative prompts known by construction: on a solvable (odd-numbered) prompt it scores a
group's rows 1, 0, 1, 0 (mean 0.5, inside the band), on the others 0 (filtered). Every grad-enabled forward of the
policy and of the PRM is recorded row by row, each row named by the number in its prompt.
"""

import os
import re
from unittest import mock

import pytest
import torch
from peft import LoraConfig
from transformers.trainer_utils import get_last_checkpoint

from prime_trl import PRIMETrainer
from prime_trl.sampling import PromptStream
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset
from tests.trainer.test_resume import StopAfter, _flat

pytestmark = pytest.mark.slow
PROMPT_NUMBER = re.compile(r"What is (\d+) \+")


def alternating_reward(completions, solvable, **kwargs) -> list[float]:
    """1, 0, 1, 0 down the rows of a solvable prompt, 0 elsewhere (a process's rows start on a group boundary)."""
    return [float(ok and i % 2 == 0) for i, ok in enumerate(solvable)]


def zero_reward(completions, **kwargs) -> list[float]:
    return [0.0] * len(completions)


class GradRows:
    """The prompt number of every row of each grad-enabled forward of `module`, one list per forward."""

    def __init__(self, module, tokenizer):
        self.tokenizer, self.forwards = tokenizer, []
        module.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if torch.is_grad_enabled():
            ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            self.forwards.append([int(PROMPT_NUMBER.search(self.tokenizer.decode(row)).group(1)) for row in ids])

    @property
    def rows(self) -> list[int]:
        return [n for forward in self.forwards for n in forward]


def _build(tiny_model_dir, tmp_path, reward=alternating_reward, peft_config=None, **overrides):
    args = cpu_config(tmp_path, **{"dynamic_sampling": True, **overrides})
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=toy_dataset(),
                           peft_config=peft_config)
    policy = GradRows(trainer.model, trainer.processing_class)
    prm = policy if trainer.prm_placement == "adapter" else GradRows(trainer.prm.model, trainer.processing_class)
    return trainer, policy, prm


def _logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_bad_dynamic_sampling_settings_fail_clearly(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="max_sampling_rounds must be >= 1"):
        cpu_config(tmp_path, dynamic_sampling=True, max_sampling_rounds=0)
    with pytest.raises(ValueError, match="needs a map-style train_dataset"):
        PRIMETrainer(model=tiny_model_dir, reward_funcs=parity_reward, args=cpu_config(tmp_path, dynamic_sampling=True),
                     train_dataset=toy_dataset().to_iterable_dataset())


BATCHING = {  # per_device_train_batch_size, gradient_accumulation_steps, steps_per_generation, num_iterations
    "ga2": dict(per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=3),
    "spg2-iter2": dict(per_device_train_batch_size=4, steps_per_generation=2, num_iterations=2, max_steps=4),
}


@pytest.mark.parametrize("batching", BATCHING, ids=list(BATCHING))
def test_every_step_trains_a_full_batch_of_informative_rows(tiny_model_dir, tmp_path, batching):
    config = BATCHING[batching]
    trainer, policy, prm = _build(tiny_model_dir, tmp_path, **config)
    trainer.train()
    per_device, GA = config["per_device_train_batch_size"], config.get("gradient_accumulation_steps", 1)
    assert all(len(forward) == per_device for forward in policy.forwards)  # every micro-batch is full
    assert len(policy.rows) == config["max_steps"] * per_device * GA  # ... and every optimizer step
    generations = config["max_steps"] * GA // (trainer.args.steps_per_generation * trainer.num_iterations)
    assert len(prm.rows) == generations * trainer.args.generation_batch_size  # the PRM learns from the full batch
    assert all(n % 2 == 1 for n in policy.rows + prm.rows), "a filtered (even) prompt reached a gradient pass"
    assert _logged(trainer, "sampling/filled_fraction") == [1.0] * len(_logged(trainer, "sampling/rounds"))
    assert max(_logged(trainer, "sampling/rounds")) > 1  # half the prompts are filtered: refills happened
    fractions = _logged(trainer, "sampling/informative_fraction")
    assert all(0 < f <= 1 for f in fractions) and min(fractions) < 1
    # the sample count holds every round's completions, more than the rows trained on
    sampled = sum(_logged(trainer, "sampling/prompts_sampled")) * trainer.num_generations
    assert trainer.num_completions_sampled == sampled > generations * trainer.args.generation_batch_size


def test_masking_instead_sends_filtered_rows_through_the_policy(tiny_model_dir, tmp_path):
    """The same probe without dynamic sampling sees the filtered prompts: the assertions above can fail."""
    trainer, policy, _ = _build(tiny_model_dir, tmp_path, dynamic_sampling=False, per_device_train_batch_size=8)
    trainer.train()
    assert any(n % 2 == 0 for n in policy.rows)
    generations = trainer.args.max_steps // trainer.args.steps_per_generation
    assert trainer.num_completions_sampled == generations * trainer.args.generation_batch_size


LORA = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


@pytest.mark.parametrize("placement", ["adapter", "separate"])
def test_lora_policy_with_either_prm_placement_trains_only_informative_rows(tiny_model_dir, tmp_path, placement):
    trainer, policy, prm = _build(tiny_model_dir, tmp_path, peft_config=LORA, prm_placement=placement,
                                  per_device_train_batch_size=8)
    trainer.train()
    rows = policy.rows + (prm.rows if prm is not policy else [])
    assert len(rows) >= 2 * 8 and all(n % 2 == 1 for n in rows)


def test_with_every_group_informative_it_trains_exactly_like_masking(tiny_model_dir, tmp_path):
    """Band [0, 1] keeps every group: one round, rows joined, dealt and re-padded must change nothing."""
    runs = {}
    for dynamic in (False, True):
        trainer, _, _ = _build(tiny_model_dir, tmp_path / str(dynamic), reward=parity_reward, dynamic_sampling=dynamic,
                               accuracy_lower_bound=0.0, accuracy_upper_bound=1.0, per_device_train_batch_size=4,
                               steps_per_generation=2, max_steps=4)
        trainer.train()
        runs[dynamic] = (_flat(trainer.model), _flat(trainer.prm_model))
    assert torch.equal(runs[True][0], runs[False][0]) and torch.equal(runs[True][1], runs[False][1])


def test_exhausted_rounds_train_on_the_informative_groups_held(tiny_model_dir, tmp_path):
    # one round of 4 prompts a step: a step trains 4 rows for each solvable prompt the data order gave it
    trainer, policy, prm = _build(tiny_model_dir, tmp_path, max_sampling_rounds=1, per_device_train_batch_size=16,
                                  max_steps=4)
    with mock.patch("prime_trl.trainer.logger.warning") as warning:
        trainer.train()
    stream = PromptStream(16, seed=0)
    solvable = [sum(i % 2 for i in stream.take(4)) for _ in range(4)]
    assert 0 < min(solvable) < 4  # the seed gives partial steps (and no empty one)
    assert [len(forward) for forward in policy.forwards] == [4 * k for k in solvable]
    assert [len(forward) for forward in prm.forwards] == [4 * k for k in solvable]  # prm_micro_batch_size 16
    assert all(n % 2 == 1 for n in policy.rows + prm.rows)
    assert warning.call_count == sum(k < 4 for k in solvable)
    assert _logged(trainer, "sampling/filled_fraction") == [k / 4 for k in solvable]


def test_no_informative_group_skips_the_step_and_changes_no_weight(tiny_model_dir, tmp_path):
    trainer, policy, prm = _build(tiny_model_dir, tmp_path, reward=zero_reward, max_sampling_rounds=2, max_steps=2)
    start = _flat(trainer.model), _flat(trainer.prm_model)
    with mock.patch("prime_trl.trainer.logger.warning") as warning:
        trainer.train()
    assert trainer.state.global_step == 2 and warning.call_count == 2
    assert policy.forwards == [] and prm.forwards == []
    assert torch.equal(_flat(trainer.model), start[0]) and torch.equal(_flat(trainer.prm_model), start[1])
    assert _logged(trainer, "sampling/rounds") == [2.0, 2.0]
    assert _logged(trainer, "sampling/prompts_sampled") == [4.0, 4.0]  # 2 rounds of 2 prompts
    assert trainer.num_completions_sampled == 8 * trainer.num_generations  # sampled, though none trained


@pytest.mark.parametrize("peft", [False, True], ids=["separate", "adapter"])
def test_resume_mid_generation_with_dynamic_sampling_is_exact(tiny_model_dir, tmp_path, peft):
    def build(out):
        args = cpu_config(out, dynamic_sampling=True, max_steps=4, per_device_train_batch_size=4,
                          steps_per_generation=2, save_strategy="steps", save_steps=1)
        return PRIMETrainer(model=tiny_model_dir, reward_funcs=alternating_reward, args=args,
                            train_dataset=toy_dataset(), peft_config=LORA if peft else None)

    straight = build(tmp_path / "straight")
    straight.train()
    assert max(_logged(straight, "sampling/rounds")) > 1  # refills moved the data order ahead of the dataloader
    stopped = build(tmp_path / "resumed")
    stopped.add_callback(StopAfter(1))
    stopped.train()
    checkpoint = get_last_checkpoint(stopped.args.output_dir)
    assert os.path.isfile(os.path.join(checkpoint, "sampling_state_rank0.pt"))
    resumed = build(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=checkpoint)
    assert torch.equal(_flat(resumed.model), _flat(straight.model))
    assert torch.equal(_flat(resumed.prm_model), _flat(straight.prm_model))
