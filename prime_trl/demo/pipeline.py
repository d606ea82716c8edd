"""`run_demo(args)`: the demo's stages in order, each a call into this package, and `eval.json`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

import torch

from prime_trl.demo.args import DemoArguments, demo_splits, rl_settings
from prime_trl.demo.evaluate import evaluate_accuracy, sample_group_accuracy
from prime_trl.demo.model import build_demo_model_and_tokenizer
from prime_trl.demo.plots import plot_accuracy_curve, plot_training_curves
from prime_trl.demo.rl import run_rl
from prime_trl.demo.sft import run_sft
from prime_trl.demo.task import first_wrong_step_of_row, tokenizer_corpus
from prime_trl.prm_health import RolloutPool, sample_rollout_pool


class _Timer:
    """`with timer("sft_s"):` adds the block's wall time to `timer.seconds["sft_s"]`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        self._name = name
        return self

    def __enter__(self):
        self._start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self._name] = time.perf_counter() - self._start


def warm_start(args: DemoArguments, splits: dict[str, list[dict]], timer: _Timer):
    """Stages 2-3: build the model and tokenizer, SFT them, save to `output_dir/sft` (with `sft_run.json`).

    With `args.reuse_sft` and a saved SFT model in `output_dir/sft`, that model is loaded instead: the same
    seed and arguments give the same weights, so only the RL stage runs again.
    """
    sft_dir = os.path.join(args.output_dir, "sft")
    record = os.path.join(sft_dir, "sft_run.json")
    if args.reuse_sft and os.path.exists(os.path.join(sft_dir, "config.json")):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"reusing the SFT model in {sft_dir}")
        with open(record) as f:
            sft = json.load(f)
        return AutoModelForCausalLM.from_pretrained(sft_dir).eval(), AutoTokenizer.from_pretrained(sft_dir), sft
    with timer("build_s"):
        model, tokenizer = build_demo_model_and_tokenizer(
            tokenizer_corpus(splits["sft"]),
            vocab_size=args.vocab_size,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            seed=args.seed,
        )
    with timer("sft_s"):
        sft = run_sft(
            model,
            tokenizer,
            splits["sft"],
            output_dir=sft_dir,
            max_steps=args.sft_max_steps,
            batch_size=args.sft_batch_size,
            learning_rate=args.sft_learning_rate,
            seed=args.seed,
            dev_rows=splits["dev"],
            target_accuracy=args.sft_target_accuracy or None,  # 0 disables the check
            eval_every=args.sft_eval_every,
            max_new_tokens=args.max_completion_length,
        )
    model.save_pretrained(sft_dir)
    tokenizer.save_pretrained(sft_dir)
    with open(record, "w") as f:
        json.dump({**sft, "seconds": timer.seconds["sft_s"]}, f)
    return model, tokenizer, sft


def heldout_pool(args: DemoArguments, splits: dict[str, list[dict]], model, tokenizer) -> RolloutPool:
    """The fixed pool the PRM's health is measured on: SFT rollouts of the "pool" prompts, saved as prm_pool.jsonl."""
    pool = sample_rollout_pool(
        model,
        tokenizer,
        splits["pool"],
        num_generations=args.num_generations,
        max_new_tokens=args.max_completion_length,
        batch_size=args.eval_batch_size,
        seed=args.seed,
        first_wrong_step=first_wrong_step_of_row,
    )
    pool.save(os.path.join(args.output_dir, "prm_pool.jsonl"))
    return pool


def train_prime(args: DemoArguments, splits: dict[str, list[dict]], tokenizer, pool: RolloutPool | None = None):
    """Stage 5: PRIME from `output_dir/sft`; saves policy and PRM to `output_dir/prime`."""

    def heldout_accuracy(model) -> float:
        rows = splits["eval"]
        return evaluate_accuracy(
            model, tokenizer, rows, args.max_completion_length, args.eval_batch_size, progress=False
        )["accuracy"]

    trainer, curve, health = run_rl(
        os.path.join(args.output_dir, "sft"),
        tokenizer,
        splits["rl"],
        os.path.join(args.output_dir, "prime"),
        heldout_accuracy,
        **rl_settings(args),
        health_pool=pool,
        health_every=args.prm_health_every,
        # the pool's prompts again, sampled by the policy as it is: the rollouts the PRM actually scores
        onpolicy_rows=splits["pool"] if pool is not None else None,
        first_wrong_step=first_wrong_step_of_row,
    )
    trainer.save_model()  # policy in DIR/prime, PRM in DIR/prime/prm
    return trainer, curve, health


def last_logged(history: list[dict], key: str) -> float | None:
    return next((entry[key] for entry in reversed(history) if key in entry), None)


def run_demo(args: DemoArguments) -> dict:
    """Every stage, then `output_dir/eval.json` and the plots; returns what eval.json holds."""
    os.makedirs(args.output_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    timer = _Timer()
    splits = demo_splits(args)
    model, tokenizer, sft = warm_start(args, splits, timer)

    with timer("eval_s"):
        before = evaluate_accuracy(model, tokenizer, splits["eval"], args.max_completion_length, args.eval_batch_size)
        groups = sample_group_accuracy(
            model,
            tokenizer,
            splits["rl"][: args.num_group_prompts],
            num_generations=args.num_generations,
            max_new_tokens=args.max_completion_length,
            batch_size=args.eval_batch_size,
        )
        pool = heldout_pool(args, splits, model, tokenizer) if args.num_pool else None
    print(f"accuracy after SFT (greedy, {before['num_prompts']} held-out prompts): {before['accuracy']:.3f}")
    print(f"group accuracy at T=1: {groups['histogram']} (mixed: {groups['mixed_fraction']:.2f})")

    with timer("prime_s"):
        trainer, curve, health = train_prime(args, splits, tokenizer, pool)
    after = evaluate_accuracy(trainer.model, tokenizer, splits["eval"], args.max_completion_length,
                              args.eval_batch_size)
    curves_png = plot_training_curves(trainer.state.log_history, os.path.join(args.output_dir, "training_curves.png"))
    accuracy_png = plot_accuracy_curve(curve, os.path.join(args.output_dir, "heldout_accuracy.png"))
    print(f"accuracy after PRIME: {after['accuracy']:.3f} (before: {before['accuracy']:.3f}); "
          f"plots: {curves_png}, {accuracy_png}")  # fmt: skip

    result = {
        "accuracy_before": before["accuracy"],
        "accuracy_after": after["accuracy"],
        "accuracy_curve": curve,
        "num_eval_prompts": before["num_prompts"],
        "prm_heldout_pairwise_accuracy": last_logged(health, "prm/heldout_pairwise_accuracy"),
        "prm_onpolicy_pairwise_accuracy": last_logged(health, "prm/onpolicy_pairwise_accuracy"),
        "reference_onpolicy_pairwise_accuracy": last_logged(health, "prm/onpolicy_reference_pairwise_accuracy"),
        "prm_health": health,
        "group_accuracy_T1": groups,
        "sft_steps": sft["steps"],
        "sft_dev_accuracy": sft["dev_accuracy"],
        "samples_before": before["samples"],
        "samples_after": after["samples"],
        "timings_s": timer.seconds,
        "args": asdict(args),
    }
    with open(os.path.join(args.output_dir, "eval.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result
