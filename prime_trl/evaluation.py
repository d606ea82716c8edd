"""Evaluation of a policy: generate, verify with the training verifiers, and report pass@1 / pass@k / maj@k.

Metrics, per data source and over all rows (n samples per problem, c of them correct):
- `pass@1`: the mean correctness of all samples, i.e. avg@n; with one greedy sample (the paper's eval
  decoding, PRIME_SPEC §7) it is the usual greedy accuracy.
- `pass@k`: the unbiased estimator 1 - C(n-c, k) / C(n, k) of "some of k samples is correct" (Chen et al. 2021,
  arXiv 2107.03374), averaged over problems.
- `maj@n`: correctness of the most frequent final answer among the n samples (self-consistency).
- `mean_score`: the mean verifier score, which keeps the partial credit of code rows; the pass metrics count a
  sample as correct only when its score is 1.

Everything here is pure Python on lists, so the metrics are testable without a model.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence

# Generation lives in `prime_trl.generation`; these names stay importable from here.
from prime_trl.generation import GENERATORS, generate, resolve_backend  # noqa: F401
from prime_trl.generation import render_prompt as prompt_text  # noqa: F401

CORRECT_THRESHOLD = 1.0 - 1e-6  # a sample is correct when its score is 1 (code: every test passed)
ALL_SOURCES = "all"


# ---------------------------------------------------------------------------------------------
# Metrics (pure)
# ---------------------------------------------------------------------------------------------


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


def is_correct(score: float | None) -> bool:
    return score is not None and score >= CORRECT_THRESHOLD


def _answer_key_math(completion: str) -> str | None:
    from prime_trl.verifiers.math_verifier import extract_answer, normalise_answer

    answer = extract_answer(completion)
    return normalise_answer(answer) if answer else None


def _answer_key_code(completion: str) -> str | None:
    from prime_trl.verifiers import extract_code

    code = (extract_code(completion) or "").strip()
    return code or None


# What "the same answer" means for majority vote, by ability: the verifiers' own extraction, normalised.
ANSWER_KEYS: dict[str, Callable[[str], str | None]] = {"math": _answer_key_math, "code": _answer_key_code}


def answer_key(completion: str, ability: str = "math") -> str | None:
    """The final answer a completion votes for, or None when it has none (it then casts no vote)."""
    return ANSWER_KEYS[ability](completion)


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
    return float(i is not None and is_correct(scores[i]))


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
    c = sum(is_correct(s) for s in scores)
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


# ---------------------------------------------------------------------------------------------
# Reranking: best-of-N with a PRM vs majority vote vs a random pick (pure)
# ---------------------------------------------------------------------------------------------

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
        out[f"best_of_n[{name}]"] = float(is_correct(scores[pick]))
    out["majority_vote"] = majority_correct(keys, scores)
    out["random"] = sum(is_correct(s) for s in scores) / len(scores)
    out["oracle"] = float(any(is_correct(s) for s in scores))
    return out


def format_table(table: dict[str, dict[str, float]], title: str | None = None) -> str:
    """A fixed-width text table: one row per data source, one column per metric."""
    if not table:
        return "(no problems)"
    columns = list(next(iter(table.values())))
    width = max(12, *(len(s) for s in table))
    header = f"{'data_source':<{width}} " + " ".join(f"{c:>12}" for c in columns)
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for source, row in table.items():
        cells = [f"{row[c]:>12d}" if isinstance(row[c], int) else f"{row[c]:>12.4f}" for c in columns]
        lines.append(f"{source:<{width}} " + " ".join(cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

PRIME_COLUMNS = ("prompt", "ground_truth", "ability", "data_source")


def load_rows(name_or_path: str, max_rows: int | None = None, add_suffix: bool = True) -> list[dict]:
    """PRIME prompt rows `{"prompt", "ground_truth", "ability", "data_source"}` from a file or a shipped sample.

    `name_or_path`: a shipped sample name (`prime_trl.data.SHIPPED`: "eurus", "gsm8k", "math") or a local
    file/directory. A .jsonl whose rows already have the four PRIME columns (e.g. the demo's eval split) is read
    as is; anything else goes through `prime_trl.data.load_prime_dataset` (which adds the paper's user suffix
    unless `add_suffix=False`).
    """
    from prime_trl import data

    path = data.SHIPPED.get(name_or_path, name_or_path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"dataset {name_or_path!r} not found: pass a local file or one of {sorted(data.SHIPPED)}"
        )
    rows = _read_prime_jsonl(path) if path.endswith(".jsonl") else None
    if rows is None:
        rows = list(data.load_prime_dataset(path, add_suffix=add_suffix))
    return rows[:max_rows] if max_rows else rows


def _read_prime_jsonl(path: str) -> list[dict] | None:
    """Rows of a jsonl already in the PRIME schema, or None if it is in another schema."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if rows and all(all(c in r for c in PRIME_COLUMNS) for r in rows):
        return [{c: r[c] for c in PRIME_COLUMNS} for r in rows]
    return None


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


def verify(rows: Sequence[dict], completions: Sequence[Sequence[str]]) -> list[list[float]]:
    """Scores of each row's completions with the training verifiers (`outcome_reward`, routed by ability): (P, n)."""
    from prime_trl.verifiers import outcome_reward

    flat, gts, abilities = [], [], []
    for row, samples in zip(rows, completions):
        flat += list(samples)
        gts += [row["ground_truth"]] * len(samples)
        abilities += [row["ability"]] * len(samples)
    scores = outcome_reward(flat, gts, abilities) if flat else []
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


def write_jsonl(path: str, records: Sequence[dict]) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_accuracy_metric(**kwargs):
    """The `prime_accuracy` metric of the `evaluate` library, loaded from the local module shipped here."""
    import evaluate

    return evaluate.load(os.path.join(os.path.dirname(__file__), "metrics", "prime_accuracy"), **kwargs)
