"""Reranking N candidates: best-of-N by PRM step rewards vs majority vote vs a random pick (pure Python)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prime_trl.evaluation.accuracy import majority_correct, score_is_correct

# How a candidate's step rewards become one score (PRIME's authors rank by the PRM's rewards; "min" is the
# weakest-step view of PRM best-of-N, "last" trusts the final step).
STEP_AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "sum": lambda r: float(sum(r)),
    "min": lambda r: float(min(r)),
    "last": lambda r: float(r[-1]),
}


def aggregate_steps(step_rewards: Sequence[float], aggregation: str) -> float:
    """One score from a candidate's step rewards; a candidate with no step scores -inf (never picked first)."""
    if aggregation not in STEP_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {sorted(STEP_AGGREGATIONS)}, got {aggregation!r}")
    return STEP_AGGREGATIONS[aggregation](step_rewards) if len(step_rewards) else float("-inf")


def best_of_n_index(candidate_scores: Sequence[float]) -> int:
    """Index of the highest score; the first one on ties."""
    return max(range(len(candidate_scores)), key=lambda i: (candidate_scores[i], -i))


def rerank_problem_metrics(
    scores: Sequence[float], keys: Sequence[str | None], step_rewards: Sequence[Sequence[float]],
    aggregations: Sequence[str] = tuple(STEP_AGGREGATIONS),
) -> dict[str, float]:
    """Accuracy of each selection rule on one problem's N candidates.

    Args:
        scores: (N,) verifier scores; keys: (N,) answer keys; step_rewards: (N, S_i) PRM step rewards.
    Returns: best_of_n[<aggregation>] for each aggregation, majority_vote, random (the expected accuracy of a
        uniform pick, i.e. the fraction of correct candidates, with no sampling noise) and oracle (pass@N).
    """
    out = {}
    for name in aggregations:
        pick = best_of_n_index([aggregate_steps(r, name) for r in step_rewards])
        out[f"best_of_n[{name}]"] = float(score_is_correct(scores[pick]))
    out["majority_vote"] = majority_correct(keys, scores)
    out["random"] = sum(score_is_correct(s) for s in scores) / len(scores)
    out["oracle"] = float(any(score_is_correct(s) for s in scores))
    return out
