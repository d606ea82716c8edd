"""Run under `accelerate launch`: the best-checkpoint run of `tests/trainer/test_best_checkpoint.py` on several
processes. Every rank writes what it recorded (`state.best_model_checkpoint`), what it sees on disk, and whether
its final policy equals the best checkpoint's weights, to argv[1].rank<N>.json."""

import os
import pathlib
import sys

import torch
from safetensors.torch import load_file

from prime_trl import PRIMETrainer
from tests.distributed.worker_exit import exit_skipping_teardown, write_rank_result
from tests.trainer.helpers import parity_reward, toy_dataset
from tests.trainer.test_best_checkpoint import best_checkpoint_args, first_step_marker


def main(out_path, model_dir, run_dir, save_total_limit):
    limit = None if save_total_limit == "none" else int(save_total_limit)
    # 4 rows per process: one prompt group of 4 each, 8 rows in all, as on one process
    args = best_checkpoint_args(pathlib.Path(run_dir), save_total_limit=limit, per_device_train_batch_size=4,
                                per_device_eval_batch_size=4)
    trainer = PRIMETrainer(model=model_dir, reward_funcs=[parity_reward, first_step_marker], args=args,
                           train_dataset=toy_dataset(), eval_dataset=toy_dataset(8))
    trainer.train()
    trainer.accelerator.wait_for_everyone()
    best = trainer.state.best_model_checkpoint
    saved = load_file(os.path.join(best, "model.safetensors")) if best and os.path.isdir(best) else {}
    final = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    result = {
        "best_model_checkpoint": best,
        "checkpoints": sorted(d for d in os.listdir(args.output_dir) if d.startswith("checkpoint-")),
        "policy_equals_best": bool(saved) and all(torch.equal(final[n], saved[n]) for n in saved),
        "num_processes": trainer.accelerator.num_processes,
    }
    write_rank_result(trainer.accelerator, out_path, result)


if __name__ == "__main__":
    main(*sys.argv[1:5])
    exit_skipping_teardown()
