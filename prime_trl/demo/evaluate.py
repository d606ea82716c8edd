"""The demo's evaluation: greedy held-out accuracy and per-prompt group accuracy at temperature 1."""

from __future__ import annotations

from prime_trl.generation import generate_texts
from prime_trl.verifiers.math_verifier import last_boxed


def is_correct(completion: str, ground_truth: str) -> bool:
    """Demo-only check: boxed answer equals the integer ground truth.

    Real data goes through `prime_trl.verifiers` (math-verify / PRIME's grader); the demo's answers
    are plain integers, so string equality after stripping is exact.
    """
    answer = last_boxed(completion)
    return answer is not None and answer.replace(" ", "") == ground_truth.strip()


def greedy_correct(
    model, tokenizer, rows: list[dict], max_new_tokens: int = 64, batch_size: int = 64, progress: bool = True
) -> tuple[list[str], list[bool]]:
    """Each row's greedy completion and whether its boxed answer equals the row's `ground_truth`."""
    prompts = [r["prompt"] for r in rows]
    completions = [c for (c,) in generate_texts(model, tokenizer, prompts, 1, 0.0, 1.0, max_new_tokens, batch_size,
                                                progress, desc="greedy eval")]  # fmt: skip
    return completions, [is_correct(c, r["ground_truth"]) for c, r in zip(completions, rows)]


def evaluate_accuracy(
    model, tokenizer, rows: list[dict], max_new_tokens: int = 64, batch_size: int = 64, progress: bool = True
) -> dict:
    """Greedy accuracy on prompt rows with `ground_truth`; also returns a few sample outputs."""
    completions, correct = greedy_correct(model, tokenizer, rows, max_new_tokens, batch_size, progress)
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
    # batch_size counts completions, as before: batch_size // G prompts of G samples per generate call
    groups = generate_texts(model, tokenizer, [r["prompt"] for r in rows], num_generations, temperature, 1.0,
                            max_new_tokens, max(1, batch_size // num_generations), desc="sample")  # fmt: skip
    histogram = {k: 0 for k in range(num_generations + 1)}
    for group, row in zip(groups, rows):
        histogram[sum(is_correct(c, row["ground_truth"]) for c in group)] += 1
    mixed = sum(n for k, n in histogram.items() if 0 < k < num_generations)
    total_right = sum(k * n for k, n in histogram.items())
    return {
        "histogram": histogram,
        "mixed_fraction": mixed / max(1, len(rows)),
        "sample_accuracy": total_right / max(1, len(rows) * num_generations),
    }
