"""What an evaluation reads: problem rows in the PRIME schema, and the local `evaluate` metric module."""

from __future__ import annotations

import os

from prime_trl.data import OUTPUT_COLUMNS as PRIME_COLUMNS
from prime_trl.data import SHIPPED, load_prime_dataset
from prime_trl.evaluation.jsonl import read_jsonl

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # prime_trl/


def load_rows(name_or_path: str, max_rows: int | None = None, add_suffix: bool = True) -> list[dict]:
    """PRIME prompt rows `{"prompt", "ground_truth", "ability", "data_source"}` from a file or a shipped sample.

    `name_or_path`: a shipped sample name (`prime_trl.data.SHIPPED`: "eurus", "gsm8k", "math") or a local
    file/directory. A .jsonl whose rows already have the four PRIME columns (e.g. the demo's eval split) is read
    as is; anything else goes through `prime_trl.data.load_prime_dataset` (which adds the paper's user suffix
    unless `add_suffix=False`).
    """
    path = SHIPPED.get(name_or_path, name_or_path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"dataset {name_or_path!r} not found: pass a local file or one of {sorted(SHIPPED)}"
        )
    rows = _read_prime_jsonl(path) if path.endswith(".jsonl") else None
    if rows is None:
        rows = list(load_prime_dataset(path, add_suffix=add_suffix))
    return rows[:max_rows] if max_rows else rows


def _read_prime_jsonl(path: str) -> list[dict] | None:
    """Rows of a jsonl already in the PRIME schema, or None if it is in another schema."""
    rows = read_jsonl(path)
    if rows and all(all(c in r for c in PRIME_COLUMNS) for r in rows):
        return [{c: r[c] for c in PRIME_COLUMNS} for r in rows]
    return None


def load_accuracy_metric(**kwargs):
    """The `prime_accuracy` metric of the `evaluate` library, loaded from the local module shipped here."""
    import evaluate

    return evaluate.load(os.path.join(_PACKAGE_DIR, "metrics", "prime_accuracy"), **kwargs)
