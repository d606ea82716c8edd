"""Run under `accelerate launch` (or plain python for one process); writes JSON results to argv[2].

`fixed`: every process takes its slice of one fixed global batch (completions trimmed to the slice's own
length, as generation would leave them) and runs PRIME's step on it; rank 0 writes the gathered per-token
advantages, the PRM loss and a checksum of the updated PRM.
`fixed_one_rank_empty`: the same with a band that keeps one group of rank 0 only, so rank 1 has no row to
learn from and must still join every gradient all-reduce.
`train`: two real training steps; every rank writes checksums of its policy and PRM weights.
`train_adapter`: the same with policy and PRM as LoRA adapters on one base model.
`dynamic_fixed`: dynamic sampling over two fixed rounds (each process sampling its share of a round, trimmed to
its own lengths): the informative groups are gathered, dealt out again and run through PRIME's step.
`train_dynamic`: two real training steps with dynamic sampling; every rank also writes the prompt numbers of the
rows of each of its grad-enabled policy forwards.
`PRIME_TEST_OPTIONS` (JSON) adds PRIMEConfig options, e.g. another advantage_estimator.
"""

import json
import os
import sys

import torch

if os.environ.get("PRIME_TEST_CPU_DEEPSPEED") == "1":
    from tests.distributed import cpu_deepspeed

    cpu_deepspeed.apply()

from prime_trl import PRIMETrainer
from tests.distributed.worker_exit import exit_skipping_teardown, write_rank_result
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

NUM_ROWS, PROMPT_LEN, MAX_COMPLETION = 16, 5, 9


def fixed_global_batch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, MAX_COMPLETION + 1, (NUM_ROWS,), generator=g)
    completion_mask = (torch.arange(MAX_COMPLETION) < lengths.unsqueeze(1)).long()
    completion_ids = torch.randint(3, 300, (NUM_ROWS, MAX_COMPLETION), generator=g) * completion_mask
    prompt_ids = torch.randint(3, 300, (NUM_ROWS, PROMPT_LEN), generator=g)
    outcome = torch.tensor([1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0.5, 1, 0, 1.0]).unsqueeze(1)  # (B, 1 reward func)
    return prompt_ids, completion_ids, completion_mask, outcome


def checksum(params):
    params = list(params)
    if any(hasattr(p, "ds_id") for p in params):  # partitioned by ZeRO-3: gather the full weights first
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            return float(sum(p.detach().double().sum() for p in params))
    return float(sum(p.detach().double().sum() for p in params))


def policy_checksum(trainer):
    prm = {id(p) for p in trainer.prm.parameters}  # an adapter PRM lives in the policy's model: leave it out
    return checksum(p for p in trainer.model.parameters() if id(p) not in prm)


def run_fixed(trainer):
    prompt_ids, completion_ids, completion_mask, outcome = fixed_global_batch()
    acc = trainer.accelerator
    n = NUM_ROWS // acc.num_processes
    rows = slice(acc.process_index * n, (acc.process_index + 1) * n)
    width = int(completion_mask[rows].sum(1).max())  # this process's own padded length
    output = {
        "prompt_ids": prompt_ids[rows],
        "prompt_mask": torch.ones_like(prompt_ids[rows]),
        "completion_ids": completion_ids[rows, :width],
        "completion_mask": completion_mask[rows, :width],
    }
    trainer.model.train()
    trainer._apply_prime(dict(output), outcome)  # step 1: the PRM starts equal to its reference, so r = 0; it learns
    output = trainer._apply_prime(dict(output), outcome)  # step 2: non-zero process rewards from the updated PRM
    advantages = trainer._gather_padded(output["advantages"])
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    result = {"advantages": advantages.tolist(), "prm_checksum": checksum(trainer.prm.parameters), "metrics": metrics}
    if trainer.value is not None:
        result["value_checksum"] = checksum(trainer.value.parameters)
    return result


def fixed_rounds():
    """Two rounds of 4 groups x 4 rows, prompts and completions of varied lengths. Group mean outcomes:
    round 1: 0.5, 0, 1, 0.75 and round 2: 0, 0.25, 0.5, 1, so [0.25, 0.75] keeps groups 0, 3 then 1, 2."""
    g = torch.Generator().manual_seed(1)
    rounds = []
    for k, means in enumerate(([0.5, 0, 1, 0.75], [0, 0.25, 0.5, 1])):
        prompt_lengths = torch.randint(2, PROMPT_LEN + 1, (NUM_ROWS,), generator=g)
        lengths = torch.randint(2, MAX_COMPLETION + 1, (NUM_ROWS,), generator=g)
        prompt_mask = (torch.arange(PROMPT_LEN) >= PROMPT_LEN - prompt_lengths.unsqueeze(1)).long()
        completion_mask = (torch.arange(MAX_COMPLETION) < lengths.unsqueeze(1)).long()
        prompt_ids = torch.randint(3, 300, (NUM_ROWS, PROMPT_LEN), generator=g) * prompt_mask
        prompt_ids[:, -1] = 10 * k + torch.arange(NUM_ROWS) // 4  # tags a row's round and group
        batch = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_mask": completion_mask,
                 "completion_ids": torch.randint(3, 300, (NUM_ROWS, MAX_COMPLETION), generator=g) * completion_mask}
        outcome = torch.tensor([float(i < m * 4) for m in means for i in range(4)]).unsqueeze(1)
        rounds.append((batch, outcome))
    return rounds


def run_dynamic_fixed(trainer):
    from prime_trl.sampling import Round, deal_rows, gather_rows, trim_padding

    acc, rounds = trainer.accelerator, iter(fixed_rounds())
    layouts = trainer.dynamic_sampler.layouts

    def sample_round(prompts):  # each process "generates" its share, padded to its own lengths
        batch, outcome = next(rounds)
        local = trim_padding(deal_rows(batch, acc.process_index, acc.num_processes), layouts)
        labels = trainer.prm_label_rule(outcome, trainer.reward_weights)
        return Round(gather_rows(local, layouts, acc), outcome, trainer._informative_groups(labels), prompts)

    trainer._sample_round = sample_round
    trainer.model.train()
    output, rewards = trainer._sample_informative_groups()
    trainer._apply_prime(dict(output), rewards)  # as in run_fixed: the second step has non-zero process rewards
    result = prime_step_result(trainer, trainer._apply_prime(dict(output), rewards))
    result.update(rows=output["completion_ids"].size(0), tags=output["prompt_ids"][:, -1].tolist(),
                  widths=[output["prompt_ids"].size(1), output["completion_ids"].size(1)])
    return result


def prime_step_result(trainer, output):
    advantages = trainer._gather_padded(output["advantages"])
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return {"advantages": advantages.tolist(), "prm_checksum": checksum(trainer.prm.parameters), "metrics": metrics}


def run_train_dynamic(trainer):
    from tests.trainer.test_dynamic_sampling import GradRows

    policy = GradRows(trainer.model, trainer.processing_class)
    result = run_train(trainer)
    result["forwards"] = policy.forwards
    return result


def run_train(trainer):
    trainer.train()
    result = {"policy_checksum": policy_checksum(trainer), "prm_checksum": checksum(trainer.prm.parameters)}
    if trainer.value is not None:
        result["value_checksum"] = checksum(trainer.value.parameters)
    return result


def main(mode, out_path, model_dir, tmp_dir):
    import pathlib

    # group mean outcomes are 0.5, 0.75, 0.0, 0.625: [0.25, 0.75] keeps groups 0, 1, 3 (rank 0 holds groups 0-1,
    # rank 1 groups 2-3); [0.7, 0.8] keeps group 1 alone
    low, high = (0.7, 0.8) if mode == "fixed_one_rank_empty" else (0.25, 0.75)
    dynamic = mode in ("dynamic_fixed", "train_dynamic")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # dynamic_fixed: a generation batch of 4 prompts (16 rows) whatever the process count
    per_device = 16 // world if mode == "dynamic_fixed" else (4 if mode == "train_dynamic" else 8)
    # use_cpu would make accelerate drop DeepSpeed; without a GPU the device is the CPU anyway
    args = cpu_config(pathlib.Path(tmp_dir), use_cpu=os.environ.get("ACCELERATE_USE_DEEPSPEED") != "true",
                      per_device_train_batch_size=per_device, max_steps=2, dynamic_sampling=dynamic,
                      accuracy_lower_bound=low, accuracy_upper_bound=high, prm_micro_batch_size=3,
                      **json.loads(os.environ.get("PRIME_TEST_OPTIONS", "{}")))
    peft_config = None
    if mode == "train_adapter":  # policy and PRM as two LoRA adapters on one shared base
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                 task_type="CAUSAL_LM")
    if mode == "train_dynamic":
        from tests.trainer.test_dynamic_sampling import alternating_reward as reward
    else:
        reward = parity_reward
    trainer = PRIMETrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=toy_dataset(),
                           peft_config=peft_config)
    run = {"fixed": run_fixed, "fixed_one_rank_empty": run_fixed, "train": run_train, "train_adapter": run_train,
           "dynamic_fixed": run_dynamic_fixed, "train_dynamic": run_train_dynamic}
    result = run[mode](trainer)
    acc = trainer.accelerator
    result.update(prm_wrapper=type(trainer.prm_model).__name__, policy_wrapper=type(trainer.model_wrapped).__name__,
                  distributed_type=acc.distributed_type.name, num_processes=acc.num_processes)
    write_rank_result(acc, out_path, result)


if __name__ == "__main__":
    main(*sys.argv[1:5])
    exit_skipping_teardown()
