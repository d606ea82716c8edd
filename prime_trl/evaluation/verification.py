"""Scoring completions with the training verifiers, and the answer each one votes for in majority vote."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prime_trl.evaluation.accuracy import aggregate_metrics
from prime_trl.evaluation.loading import PRIME_COLUMNS
from prime_trl.verifiers import extract_code, outcome_reward
from prime_trl.verifiers.math_verifier import extract_answer, normalise_answer


def _answer_key_math(completion: str) -> str | None:
    answer = extract_answer(completion)
    return normalise_answer(answer) if answer else None


def _answer_key_code(completion: str) -> str | None:
    code = (extract_code(completion) or "").strip()
    return code or None


# What "the same answer" means for majority vote, by ability: the verifiers' own extraction, normalised.
ANSWER_KEYS: dict[str, Callable[[str], str | None]] = {"math": _answer_key_math, "code": _answer_key_code}


def answer_key(completion: str, ability: str = "math") -> str | None:
    """The final answer a completion votes for, or None when it has none (it then casts no vote)."""
    return ANSWER_KEYS[ability](completion)


def verify(rows: Sequence[dict], completions: Sequence[Sequence[str]]) -> list[list[float]]:
    """Scores of each row's completions with the training verifiers (`outcome_reward`, routed by ability): (P, n)."""
    flat, gts, abilities = [], [], []
    for row, samples in zip(rows, completions):
        flat += list(samples)
        gts += [row["ground_truth"]] * len(samples)
        abilities += [row["ability"]] * len(samples)
    scores = outcome_reward(flat, gts, abilities) if flat else []
    unscored = [j for j, s in enumerate(scores) if s is None]
    if unscored:  # the verifier could not run them (e.g. its sandbox broke mid-run): no accuracy would be honest
        raise RuntimeError(
            f"{len(unscored)} of {len(scores)} completions could not be verified (first: completion {unscored[0]}); "
            "the verifier logged why. Fix the verifier and rerun the evaluation."
        )
    out, i = [], 0
    for samples in completions:
        out.append([float(s) for s in scores[i:i + len(samples)]])
        i += len(samples)
    return out


def answer_keys(rows: Sequence[dict], completions: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """`answer_key` of every completion: (P, n)."""
    return [[answer_key(c, row["ability"]) for c in samples] for row, samples in zip(rows, completions)]


def evaluate_completions(
    rows: Sequence[dict], completions: Sequence[Sequence[str]], ks: Sequence[int] | None = None
) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Verify and aggregate: returns the metrics table and one record per problem (for samples.jsonl)."""
    scores = verify(rows, completions)
    keys = answer_keys(rows, completions)
    table = aggregate_metrics(scores, keys, [r["data_source"] for r in rows], ks)
    records = [
        {**{c: r[c] for c in PRIME_COLUMNS}, "completions": list(comp), "scores": s, "answers": k}
        for r, comp, s, k in zip(rows, completions, scores, keys)
    ]
    return table, records
