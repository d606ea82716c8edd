"""The demo's evaluation: greedy held-out accuracy and per-prompt group accuracy at temperature 1."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from prime_trl.data import last_boxed_content


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
