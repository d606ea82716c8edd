"""Accuracy metrics of sampled completions (pure Python on lists): pass@1, pass@k, maj@n, mean score.

Per problem, n samples of which c are correct:
- `pass@1`: the mean correctness of all samples, i.e. avg@n; with one greedy sample (greedy decoding is how the
  paper evaluates) it is the usual greedy accuracy.
- `pass@k`: the unbiased estimator 1 - C(n-c, k) / C(n, k) of "some of k samples is correct" (Chen et al. 2021,
  arXiv 2107.03374), averaged over problems.
- `maj@n`: correctness of the most frequent final answer among the n samples (self-consistency).
- `mean_score`: the mean verifier score, which keeps the partial credit of code rows; the pass metrics count a
  sample as correct only when its score is 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

CORRECT_THRESHOLD = 1.0 - 1e-6  # a sample is correct when its score is 1 (code: every test passed)
ALL_SOURCES = "all"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, Eq. 1).

    pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i): the product form avoids the huge
    binomials. With fewer than k wrong samples every k-subset holds a correct one, so the result is 1.
    """
    if not (0 <= c <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def score_is_correct(score: float | None) -> bool:
    """A verifier score counts as correct when it is 1 (code: every test passed); None (no score) does not."""
    return score is not None and score >= CORRECT_THRESHOLD


def majority_index(keys: Sequence[str | None]) -> int | None:
    """Index of the first sample whose answer is the most frequent; ties go to the answer seen first.

    None keys cast no vote; returns None when no sample has an answer.
    """
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    top = max(counts.values())
    for i, k in enumerate(keys):
        if k is not None and counts[k] == top:
            return i
    raise AssertionError("unreachable")


def majority_correct(keys: Sequence[str | None], scores: Sequence[float]) -> float:
    """maj@n of one problem: 1.0 if the majority answer's (first) sample is correct, else 0.0."""
    i = majority_index(keys)
    return float(i is not None and score_is_correct(scores[i]))


def default_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def problem_metrics(scores: Sequence[float], keys: Sequence[str | None], ks: Sequence[int]) -> dict[str, float]:
    """Metrics of one problem from its n sample scores and answer keys."""
    n = len(scores)
    c = sum(score_is_correct(s) for s in scores)
    out = {"pass@1": c / n, "mean_score": sum(s or 0.0 for s in scores) / n}
    out.update({f"pass@{k}": pass_at_k(n, c, k) for k in ks if 1 < k <= n})
    if n > 1:  # maj@1 would repeat pass@1
        out[f"maj@{n}"] = majority_correct(keys, scores)
    return out


def aggregate_metrics(
    scores: Sequence[Sequence[float]],
    keys: Sequence[Sequence[str | None]],
    data_sources: Sequence[str],
    ks: Sequence[int] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean of each problem metric per data source and over all problems ("all").

    Args:
        scores: (P, n) verifier scores of n samples for each of P problems.
        keys: (P, n) answer keys (see `answer_key`).
        data_sources: (P,) the data source of each problem.
        ks: the k of pass@k (default `default_ks(n)`); every problem must have the same n.
    """
    if not scores:
        return {}
    n = len(scores[0])
    if any(len(s) != n for s in scores):
        raise ValueError("every problem must have the same number of samples")
    ks = default_ks(n) if ks is None else ks
    return average_by_source([problem_metrics(s, k, ks) for s, k in zip(scores, keys)], data_sources)


def average_by_source(
    per_problem: Sequence[dict[str, float]], data_sources: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean of each metric per data source, then over all problems under "all" (last row)."""
    groups: dict[str, list[dict[str, float]]] = {}
    for m, source in zip(per_problem, data_sources):
        groups.setdefault(source, []).append(m)
    groups[ALL_SOURCES] = list(per_problem)
    table = {}
    for source, rows in sorted(groups.items(), key=lambda kv: (kv[0] == ALL_SOURCES, kv[0])):
        table[source] = {"num_problems": len(rows)}
        table[source].update({name: sum(r[name] for r in rows) / len(rows) for name in rows[0]})
    return table
