"""`prime-trl demo --output-dir DIR`: the offline demo, on a CPU, in minutes.

Stages (each a function, so notebooks and tests can run them one by one):
1. synthetic multi-step arithmetic (`prime_trl.demo_task`), disjoint SFT / RL / eval splits;
2. a small Qwen2 and a digit-level BPE tokenizer built locally (`build_demo_model_and_tokenizer`);
3. a short SFT warm start on worked solutions with TRL's `SFTTrainer` (`run_sft`), tuned so the
   model is *partly* right: greedy accuracy ~0.3-0.6 with slips in the intermediate lines;
4. greedy held-out accuracy (`evaluate_accuracy`) and, at temperature 1, per-prompt group
   accuracy (`sample_group_accuracy`): PRIME learns only from groups with some right and some
   wrong samples, so the demo records how many there are;
5. PRIME from the SFT model (`prime_trl.demo_rl.run_rl`), then greedy held-out accuracy again, the
   accuracy-against-samples curve and the training curves as PNG.

The defaults of `DemoArguments` are the recipe measured on 2 shared CPU cores (field help has the
reasons). One run of those measurements (seed 0, 1 torch thread, other jobs on the machine):
- SFT: 525 steps of 32 rows (~1M-parameter Qwen2, 4x128) until dev accuracy 0.33 >= 0.3, 406 s
  under a load average of ~5 (about 2.8 steps/s when a core is free, so ~3 min);
- greedy held-out accuracy after SFT 0.42 (200 prompts); wrong answers come from slips in
  intermediate lines such as "9 - 1 = 6";
- T=1, 4 samples per prompt on 64 prompts: {0 right: 36, 1: 11, 2: 8, 3: 6, 4: 3}, 39% mixed
  groups, sample accuracy 0.22;
- `model.generate` of 64 samples x up to 64 new tokens: 0.35 s (1 thread);
- feasibility probe for the RL stage: TRL's GRPOTrainer with the outcome reward only (16 prompts
  x 4, lr 1e-4, beta 0) took greedy accuracy 0.42 -> 0.59 in 60 steps / 65 s.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from prime_trl.data import last_boxed_content
from prime_trl.demo_rl import plot_accuracy_curve, plot_training_curves, run_rl
from prime_trl.demo_task import make_demo_splits, tokenizer_corpus
from prime_trl.tiny import build_model, build_tokenizer


@dataclass
class DemoArguments:
    output_dir: str = field(default="prime-demo", metadata={"help": "Where eval.json and the models go."})
    seed: int = field(default=0, metadata={"help": "Seeds the task generator, the model init and the trainers."})
    num_threads: int = field(
        default=1,
        metadata={"help": "torch CPU threads (0: torch's default). On 2 shared cores, 2 threads ran SFT at 0.59 "
                  "steps/s and 1 thread at 2.78 steps/s side by side: OpenMP threads stall when another process "
                  "holds a core."},
    )  # fmt: skip
    # --- task (difficulty knobs of prime_trl.demo_task.sample_problem) ---
    min_steps: int = field(default=2, metadata={"help": "Fewest operations per problem."})
    max_steps: int = field(default=4, metadata={"help": "Most operations per problem."})
    max_operand: int = field(
        default=9,
        metadata={"help": "Operands of + and - are drawn from [1, max_operand]. Two-digit operands did not reach "
                  "0.1 accuracy within 600 SFT steps."},
    )  # fmt: skip
    max_multiplier: int = field(default=9, metadata={"help": "Operands of * are drawn from [2, max_multiplier]."})
    max_value: int = field(default=99, metadata={"help": "Every running value stays in [0, max_value]."})
    num_sft: int = field(default=20000, metadata={"help": "Worked solutions for the SFT warm start (< 1 epoch is used)."})
    num_rl: int = field(default=2000, metadata={"help": "Prompts for the RL stage."})
    num_eval: int = field(default=200, metadata={"help": "Held-out prompts for greedy accuracy."})
    num_dev: int = field(
        default=128, metadata={"help": "Held-out prompts (not eval) that decide when SFT stops (64 was noisy: +-0.06)."}
    )
    # --- model and tokenizer ---
    vocab_size: int = field(default=400, metadata={"help": "BPE vocabulary (digits are always single tokens)."})
    hidden_size: int = field(default=128, metadata={"help": "Model width (4 layers x 128: about 1M parameters)."})
    num_layers: int = field(default=4, metadata={"help": "Transformer layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (KV heads = heads / 2)."})
    # --- SFT warm start ---
    sft_max_steps: int = field(
        default=800, metadata={"help": "Cap on SFT optimizer steps if the dev target is never reached."}
    )
    sft_target_accuracy: float = field(
        default=0.3,
        metadata={"help": "Stop SFT once greedy dev accuracy reaches this: the model should be partly right, "
                  "leaving room for RL. Accuracy rises steeply (0.14 -> 0.71 between steps 300 and 600), so a "
                  "fixed step count would land anywhere in that range; 0 disables the check."},
    )  # fmt: skip
    sft_eval_every: int = field(default=25, metadata={"help": "SFT steps between dev-accuracy checks."})
    sft_batch_size: int = field(default=32, metadata={"help": "SFT rows per optimizer step."})
    sft_learning_rate: float = field(
        default=1e-3, metadata={"help": "SFT learning rate, constant after a short warmup (3e-3 learned slower)."}
    )
    # --- evaluation ---
    max_completion_length: int = field(default=64, metadata={"help": "New tokens per completion (4 steps ~ 45)."})
    eval_batch_size: int = field(default=64, metadata={"help": "Prompts per generate call."})
    num_group_prompts: int = field(default=64, metadata={"help": "Prompts for the T=1 group-accuracy check."})
    num_generations: int = field(default=4, metadata={"help": "Samples per prompt (group-accuracy check and RL)."})
    # --- PRIME ---
    rl_max_steps: int = field(default=150, metadata={"help": "PRIME optimizer steps (one generation batch each)."})
    rl_prompts_per_step: int = field(default=32, metadata={"help": "Prompts per PRIME step (x num_generations samples)."})
    rl_learning_rate: float = field(default=3e-5, metadata={"help": "Policy learning rate (constant)."})
    prm_learning_rate: float = field(
        default=1e-3,
        metadata={"help": "Implicit PRM learning rate (constant). 10x the 1e-4 we tried first: a 1M-parameter PRM "
                  "seeing ~30 kept rows per step stays near chance at 1e-4."},
    )  # fmt: skip
    prm_beta: float = field(default=0.05, metadata={"help": "beta of the implicit reward (paper: 0.05)."})
    process_reward_norm: str = field(
        default="none",
        metadata={"help": "'none' keeps the process reward at beta * log-ratio, so it grows only as the PRM learns; "
                  "'batch_norm' (the authors') rescales even an untrained PRM's noise to the outcome's size, which "
                  "collapsed the tiny demo model in our runs."},
    )  # fmt: skip
    process_reward_coef: float = field(
        default=0.25,
        metadata={"help": "Weight of the process-reward returns against the outcome's (PRIMEConfig field). On this "
                  "1M-parameter model the implicit PRM stays near chance, so at 1.0 its noise held PRIME to +0.06 "
                  "(150 steps); 0.25 reached +0.10 in our run."},
    )  # fmt: skip
    rl_eval_every: int = field(default=25, metadata={"help": "PRIME steps between held-out accuracy checks."})


def demo_splits(args: DemoArguments) -> dict[str, list[dict]]:
    """The demo's "sft" / "rl" / "eval" / "dev" rows for `args`; other tools (bench/rerank.py)
    call this to rebuild the exact held-out problems of a run from its recorded args."""
    return make_demo_splits(
        num_sft=args.num_sft,
        num_rl=args.num_rl,
        num_eval=args.num_eval,
        num_dev=args.num_dev,
        seed=args.seed,
        num_steps=(args.min_steps, args.max_steps),
        max_operand=args.max_operand,
        max_multiplier=args.max_multiplier,
        max_value=args.max_value,
    )


# ---------------------------------------------------------------------------------------------
# Stage 2: model and tokenizer
# ---------------------------------------------------------------------------------------------


def build_demo_model_and_tokenizer(
    corpus: list[str],
    vocab_size: int = 400,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    seed: int = 0,
):
    """A random Qwen2 and a BPE tokenizer with one token per digit, trained on `corpus`."""
    # The chat roles are in every sequence: let BPE merge them too.
    corpus = [*corpus, "user\nassistant\nsystem\n"]
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size, individual_digits=True)
    model = build_model(
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=max(1, num_heads // 2),
        intermediate_size=4 * hidden_size,
        max_positions=512,
        seed=seed,
    )
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Stage 3: SFT warm start
# ---------------------------------------------------------------------------------------------


def run_sft(
    model,
    tokenizer,
    sft_rows: list[dict],
    output_dir: str,
    max_steps: int = 800,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    dev_rows: list[dict] | None = None,
    target_accuracy: float | None = None,
    eval_every: int = 25,
    max_new_tokens: int = 64,
    logging_steps: int = 25,
) -> dict:
    """Fine-tune `model` in place on prompt/completion rows (loss on the completion only).

    With `dev_rows` and a `target_accuracy`, greedy accuracy on `dev_rows` is checked every
    `eval_every` steps and training stops once it reaches the target. The learning rate is
    constant after a 3% warmup so that stopping early leaves no half-finished decay.
    Returns {"steps": steps run, "dev_accuracy": [(step, accuracy), ...]}.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=0.03,
        weight_decay=0.0,
        max_length=256,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to="none",
        use_cpu=True,  # TRL_NOTES §6: TRL defaults bf16=True, which fails on a CPU-only box
        bf16=False,
        seed=seed,
        dataloader_num_workers=0,
    )
    callbacks = []
    if dev_rows and target_accuracy is not None:
        callbacks.append(StopAtAccuracy(tokenizer, dev_rows, target_accuracy, eval_every, max_new_tokens))
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(sft_rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.train()
    model.eval()
    return {"steps": trainer.state.global_step, "dev_accuracy": callbacks[0].history if callbacks else []}


class StopAtAccuracy(TrainerCallback):
    """Stops training once greedy accuracy on `dev_rows` reaches `target`; checked every `every` steps."""

    def __init__(self, tokenizer, dev_rows: list[dict], target: float, every: int = 25, max_new_tokens: int = 64):
        self.tokenizer, self.dev_rows, self.target, self.every = tokenizer, dev_rows, target, every
        self.max_new_tokens = max_new_tokens
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        rows = self.dev_rows
        accuracy = evaluate_accuracy(model, self.tokenizer, rows, self.max_new_tokens, len(rows), progress=False)
        accuracy = accuracy["accuracy"]
        model.train()
        self.history.append((state.global_step, accuracy))
        print(f"SFT step {state.global_step}: dev accuracy {accuracy:.3f} (stop at {self.target})")
        control.should_training_stop = accuracy >= self.target


# ---------------------------------------------------------------------------------------------
# Stage 4: evaluation
# ---------------------------------------------------------------------------------------------


def is_correct(completion: str, ground_truth: str) -> bool:
    """Demo-only check: boxed answer equals the integer ground truth.

    Real data goes through `prime_trl.verifiers` (math-verify / PRIME's grader); the demo's answers
    are plain integers, so string equality after stripping is exact.
    """
    answer = last_boxed_content(completion)
    return answer is not None and answer.replace(" ", "") == ground_truth.strip()


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    prompts: list[list[dict]],
    max_new_tokens: int = 64,
    batch_size: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    desc: str = "generate",
    progress: bool = True,
) -> list[str]:
    """Batched, left-padded `model.generate` on chat prompts; returns decoded completions."""
    model.eval()
    completions: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, leave=False, disable=not progress):
        texts = [
            tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
            for p in prompts[start : start + batch_size]
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        # Plain sampling at `temperature` (no top-k/top-p), as RL rollouts use.
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if do_sample else {"do_sample": False}
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        completion_ids = out[:, batch["input_ids"].shape[1] :]  # (b, T)
        completions += tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return completions


def evaluate_accuracy(
    model, tokenizer, rows: list[dict], max_new_tokens: int = 64, batch_size: int = 64, progress: bool = True
) -> dict:
    """Greedy accuracy on prompt rows with `ground_truth`; also returns a few sample outputs."""
    prompts = [r["prompt"] for r in rows]
    completions = generate_completions(
        model, tokenizer, prompts, max_new_tokens, batch_size, desc="greedy eval", progress=progress
    )
    correct = [is_correct(c, r["ground_truth"]) for c, r in zip(completions, rows)]
    return {
        "accuracy": sum(correct) / max(1, len(rows)),
        "num_prompts": len(rows),
        "samples": [
            {"prompt": r["prompt"][-1]["content"], "completion": c, "ground_truth": r["ground_truth"], "correct": ok}
            for r, c, ok in list(zip(rows, completions, correct))[:5]
        ],
    }


def sample_group_accuracy(
    model,
    tokenizer,
    rows: list[dict],
    num_generations: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 64,
) -> dict:
    """Sample `num_generations` completions per prompt at `temperature`; count right ones per group.

    Returns the histogram `{k: number of prompts with k right}` for k = 0..G and the fraction of
    "mixed" prompts (0 < k < G), the ones whose RLOO advantages are not all zero.
    """
    prompts = [r["prompt"] for r in rows for _ in range(num_generations)]  # G contiguous rows per prompt
    completions = generate_completions(
        model, tokenizer, prompts, max_new_tokens, batch_size, do_sample=True, temperature=temperature, desc="sample"
    )
    histogram = {k: 0 for k in range(num_generations + 1)}
    for i, row in enumerate(rows):
        group = completions[i * num_generations : (i + 1) * num_generations]
        histogram[sum(is_correct(c, row["ground_truth"]) for c in group)] += 1
    mixed = sum(n for k, n in histogram.items() if 0 < k < num_generations)
    total_right = sum(k * n for k, n in histogram.items())
    return {
        "histogram": histogram,
        "mixed_fraction": mixed / max(1, len(rows)),
        "sample_accuracy": total_right / max(1, len(prompts)),
    }


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    (args,) = TrlParser((DemoArguments,)).parse_args_and_config(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    splits = demo_splits(args)
    model, tokenizer = build_demo_model_and_tokenizer(
        tokenizer_corpus(splits["sft"]),
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        seed=args.seed,
    )
    timings["build_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sft = run_sft(
        model,
        tokenizer,
        splits["sft"],
        output_dir=os.path.join(args.output_dir, "sft"),
        max_steps=args.sft_max_steps,
        batch_size=args.sft_batch_size,
        learning_rate=args.sft_learning_rate,
        seed=args.seed,
        dev_rows=splits["dev"],
        target_accuracy=args.sft_target_accuracy or None,  # 0 disables the check
        eval_every=args.sft_eval_every,
        max_new_tokens=args.max_completion_length,
    )
    timings["sft_s"] = time.perf_counter() - t0
    model.save_pretrained(os.path.join(args.output_dir, "sft"))
    tokenizer.save_pretrained(os.path.join(args.output_dir, "sft"))

    t0 = time.perf_counter()
    before = evaluate_accuracy(model, tokenizer, splits["eval"], args.max_completion_length, args.eval_batch_size)
    groups = sample_group_accuracy(
        model,
        tokenizer,
        splits["rl"][: args.num_group_prompts],
        num_generations=args.num_generations,
        max_new_tokens=args.max_completion_length,
        batch_size=args.eval_batch_size,
    )
    timings["eval_s"] = time.perf_counter() - t0
    print(f"accuracy after SFT (greedy, {before['num_prompts']} held-out prompts): {before['accuracy']:.3f}")
    print(f"group accuracy at T=1: {groups['histogram']} (mixed: {groups['mixed_fraction']:.2f})")

    t0 = time.perf_counter()
    trainer, curve = run_rl(
        os.path.join(args.output_dir, "sft"),
        tokenizer,
        splits["rl"],
        os.path.join(args.output_dir, "prime"),
        lambda m: evaluate_accuracy(m, tokenizer, splits["eval"], args.max_completion_length, args.eval_batch_size,
                                    progress=False)["accuracy"],
        max_steps=args.rl_max_steps,
        prompts_per_step=args.rl_prompts_per_step,
        num_generations=args.num_generations,
        learning_rate=args.rl_learning_rate,
        prm_learning_rate=args.prm_learning_rate,
        prm_beta=args.prm_beta,
        max_completion_length=args.max_completion_length,
        eval_every=args.rl_eval_every,
        seed=args.seed,
        process_reward_norm=args.process_reward_norm,
        process_reward_coef=args.process_reward_coef,
    )
    trainer.save_model()  # policy in DIR/prime, PRM in DIR/prime/prm
    timings["prime_s"] = time.perf_counter() - t0
    after = evaluate_accuracy(trainer.model, tokenizer, splits["eval"], args.max_completion_length, args.eval_batch_size)
    curves_png = plot_training_curves(trainer.state.log_history, os.path.join(args.output_dir, "training_curves.png"))
    accuracy_png = plot_accuracy_curve(curve, os.path.join(args.output_dir, "heldout_accuracy.png"))
    print(f"accuracy after PRIME: {after['accuracy']:.3f} (before: {before['accuracy']:.3f}); "
          f"plots: {curves_png}, {accuracy_png}")

    result = {
        "accuracy_before": before["accuracy"],
        "accuracy_after": after["accuracy"],
        "accuracy_curve": curve,
        "num_eval_prompts": before["num_prompts"],
        "group_accuracy_T1": groups,
        "sft_steps": sft["steps"],
        "sft_dev_accuracy": sft["dev_accuracy"],
        "samples_before": before["samples"],
        "samples_after": after["samples"],
        "timings_s": timings,
        "args": asdict(args),
    }
    with open(os.path.join(args.output_dir, "eval.json"), "w") as f:
        json.dump(result, f, indent=2)
    return 0
