"""Evaluation of a policy: generate, verify with the training verifiers, and report pass@1 / pass@k / maj@k.

One module per concern; every public name is importable from `prime_trl.evaluation` itself:
- `accuracy`: pass@k, maj@n and their per-source averages (pure Python on lists);
- `rerank`: best-of-N by PRM step rewards vs majority vote vs a random pick (pure);
- `tables`: the printed text table;
- `loading`: problem rows (`load_rows`) and the local `evaluate` metric (`load_accuracy_metric`);
- `verification`: scores from the training verifiers, answer keys for majority vote, `evaluate_completions`;
- `jsonl`: the samples files;
- generation is `prime_trl.generation` (`generate`, `resolve_backend`, `GENERATORS`; `prompt_text` is its
  `render_prompt`).
"""

from prime_trl.evaluation.accuracy import (
    ALL_SOURCES,
    CORRECT_THRESHOLD,
    aggregate_metrics,
    average_by_source,
    default_ks,
    majority_correct,
    majority_index,
    pass_at_k,
    problem_metrics,
    score_is_correct,
)
from prime_trl.evaluation.jsonl import read_jsonl, write_jsonl, write_report
from prime_trl.evaluation.loading import PRIME_COLUMNS, load_accuracy_metric, load_rows
from prime_trl.evaluation.rerank import STEP_AGGREGATIONS, aggregate_steps, best_of_n_index, rerank_problem_metrics
from prime_trl.evaluation.tables import format_table
from prime_trl.evaluation.verification import ANSWER_KEYS, answer_key, answer_keys, evaluate_completions, verify
from prime_trl.generation import GENERATORS, generate, resolve_backend
from prime_trl.generation import render_prompt as prompt_text

__all__ = [
    "ALL_SOURCES",
    "ANSWER_KEYS",
    "CORRECT_THRESHOLD",
    "GENERATORS",
    "PRIME_COLUMNS",
    "STEP_AGGREGATIONS",
    "aggregate_metrics",
    "aggregate_steps",
    "answer_key",
    "answer_keys",
    "average_by_source",
    "best_of_n_index",
    "default_ks",
    "evaluate_completions",
    "format_table",
    "generate",
    "score_is_correct",
    "load_accuracy_metric",
    "load_rows",
    "majority_correct",
    "majority_index",
    "pass_at_k",
    "problem_metrics",
    "prompt_text",
    "read_jsonl",
    "rerank_problem_metrics",
    "resolve_backend",
    "verify",
    "write_jsonl",
    "write_report",
]
