"""Load RL prompts from PRIME's and common math schemas into TRL conversational prompt rows.

Every schema becomes the same columns, which `PRIMETrainer` and `prime_trl.verifiers` read:

    {"prompt": [{"role": "system"|"user", "content": str}, ...],   # TRL conversational prompt
     "ground_truth": str,          # math: LaTeX answer; code: APPS JSON {"inputs": [...], "outputs": [...]}
     "ability": "math" | "code",   # selects the outcome verifier
     "data_source": str}

Schemas (`SCHEMAS`, picked from the columns with `schema="auto"`):
- "eurus": Eurus-2-RL-Data (`data_source`, `prompt` as chat messages, `ability`,
  `reward_model.ground_truth`, `extra_info`), PRIME's RL data, as the authors' `data_prepare.py` writes it;
- "gsm8k": `question`, `answer` with the final answer after "####";
- "math": `problem`, `solution` with the answer in the last `\\boxed{}` (falls back to an
  `answer` column, as in MATH-500).

A bad row (missing or empty ground truth, unknown ability, prompt longer than
`max_prompt_length` tokens, ...) raises `BadRowError("row 3: field 'reward_model.ground_truth' is
empty")`, or with `on_bad_row="skip"` is dropped and counted in a `LoadReport` (and the log).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prime_trl.generation import render_prompt
from prime_trl.verifiers.code_verifier import InvalidTests, parse_tests
from prime_trl.verifiers.math_verifier import last_boxed

logger = logging.getLogger(__name__)

EURUS_HUB_ID = "PRIME-RL/Eurus-2-RL-Data"
ABILITIES = ("math", "code")

# User-turn suffixes of PRIME's README "Usage" section, which all of the authors' eval scripts append.
MATH_SUFFIX = "\n\nPresent the answer in LaTex format: \\boxed{Your answer}"
CODE_SUFFIX = "\n\nWrite Python code to solve the problem. Present the code in \n```python\nYour code\n```\nat the end."
SUFFIXES = {"math": MATH_SUFFIX, "code": CODE_SUFFIX}

# PRIME's short action-centric system prompt (`training/scripts/data_prepare.py`), already in
# Eurus-2-RL-Data rows; pass it as `system_prompt` to give other data the same format.
EURUS_SYSTEM_PROMPT = (
    "\nWhen tackling complex reasoning tasks, you have access to the following actions. Use them as needed to "
    "progress through your thought process.\n\n[ASSESS]\n\n[ADVANCE]\n\n[VERIFY]\n\n[SIMPLIFY]\n\n[SYNTHESIZE]\n\n"
    "[PIVOT]\n\n[OUTPUT]\n\nYou should strictly follow the format below:\n\n[ACTION NAME]\n\n# Your action step 1\n\n"
    "# Your action step 2\n\n# Your action step 3\n\n...\n\nNext action: [NEXT ACTION NAME]\n\n"
)

SHIPPED_DIR = os.path.join(os.path.dirname(__file__), "sample_data")
# Hand-written rows in each schema, for tests and examples (not from the real datasets).
SHIPPED = {
    "eurus": os.path.join(SHIPPED_DIR, "eurus_sample.jsonl"),
    "gsm8k": os.path.join(SHIPPED_DIR, "gsm8k_sample.jsonl"),
    "math": os.path.join(SHIPPED_DIR, "math_sample.jsonl"),
}

# `datasets` builder for a local file, by extension.
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}

OUTPUT_COLUMNS = ("prompt", "ground_truth", "ability", "data_source")


class BadRowError(ValueError):
    """A row that cannot become a PRIME prompt row; the message names the row and the field."""


class _BadField(Exception):
    """Raised by a schema normaliser; `_normalize_or_flag` adds the row index."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"field '{field_name}' {reason}")
        self.field_name, self.reason = field_name, reason


@dataclass
class LoadReport:
    """What `load_prime_dataset(..., on_bad_row="skip")` dropped, by "field: reason"."""

    num_rows: int
    num_kept: int
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return self.num_rows - self.num_kept


def gsm8k_final_answer(answer: str) -> str | None:
    """The number after the last "####" of a GSM8K answer, thousands separators removed."""
    if "####" not in answer:
        return None
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


# ---------------------------------------------------------------------------------------------
# Schema normalisers: raw row -> (prompt messages, ground_truth, ability, data_source).
# Each raises _BadField(field, reason) for a row it cannot use.
# ---------------------------------------------------------------------------------------------


def _require_text(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None:
        raise _BadField(name, "is missing")
    if not isinstance(value, str):
        raise _BadField(name, f"is a {type(value).__name__}, expected a string")
    if not value.strip():
        raise _BadField(name, "is empty")
    return value


def _check_code_ground_truth(ground_truth: str, field_name: str) -> None:
    """Code ground truth must be APPS tests (the code verifier's `parse_tests`) with at least one case."""
    try:
        tests = parse_tests(ground_truth)
    except InvalidTests as err:
        raise _BadField(field_name, err.reason) from None
    if not tests["inputs"]:
        raise _BadField(field_name, "has no test cases")


def _normalize_eurus(row: dict) -> tuple[list[dict], str, str, str]:
    messages = row.get("prompt")
    if not messages:
        raise _BadField("prompt", "is missing or empty")
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise _BadField("prompt", "must be a list of {'role', 'content'} messages")
    if not any(m["role"] == "user" and (m["content"] or "").strip() for m in messages):
        raise _BadField("prompt", "has no non-empty user message")
    ability = row.get("ability")
    if ability not in ABILITIES:
        raise _BadField("ability", f"is {ability!r}, expected one of {list(ABILITIES)}")
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
        raise _BadField("reward_model.ground_truth", "is missing")
    ground_truth = reward_model["ground_truth"]
    if not isinstance(ground_truth, str):
        raise _BadField("reward_model.ground_truth", f"is a {type(ground_truth).__name__}, expected a string")
    if not ground_truth.strip():
        raise _BadField("reward_model.ground_truth", "is empty")
    if ability == "code":
        _check_code_ground_truth(ground_truth, "reward_model.ground_truth")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    return messages, ground_truth.strip(), ability, row.get("data_source") or "eurus"


def _normalize_gsm8k(row: dict) -> tuple[list[dict], str, str, str]:
    question = _require_text(row, "question")
    answer = gsm8k_final_answer(_require_text(row, "answer"))
    if answer is None:
        raise _BadField("answer", "has no final answer after '####'")
    if not answer:
        raise _BadField("answer", "is empty after '####'")
    return [{"role": "user", "content": question}], answer, "math", "gsm8k"


def _normalize_math(row: dict) -> tuple[list[dict], str, str, str]:
    problem = _require_text(row, "problem")
    solution = row.get("solution") or ""
    answer = last_boxed(solution) if isinstance(solution, str) else None
    answer = answer.strip() if answer is not None else None
    if not answer and isinstance(row.get("answer"), str):
        answer = row["answer"].strip()  # MATH-500 style: a separate answer column
    if answer is None:
        raise _BadField("solution", "has no \\boxed{} answer" if solution else "is missing or empty")
    if not answer:
        raise _BadField("solution", "has an empty \\boxed{} answer")
    return [{"role": "user", "content": problem}], answer, "math", "math"


@dataclass(frozen=True)
class Schema:
    columns: frozenset[str]  # the columns that identify the schema for schema="auto"
    normalize: Callable[[dict], tuple[list[dict], str, str, str]]


SCHEMAS: dict[str, Schema] = {
    "eurus": Schema(frozenset({"prompt", "ability", "reward_model"}), _normalize_eurus),
    "gsm8k": Schema(frozenset({"question", "answer"}), _normalize_gsm8k),
    "math": Schema(frozenset({"problem", "solution"}), _normalize_math),
}


def detect_schema(column_names: list[str]) -> str:
    """The one schema whose identifying columns are all present."""
    matches = [name for name, schema in SCHEMAS.items() if schema.columns <= set(column_names)]
    if len(matches) != 1:
        expected = {name: sorted(schema.columns) for name, schema in SCHEMAS.items()}
        found = "several" if matches else "no"
        raise ValueError(
            f"schema='auto' found {found} schema matching columns {sorted(column_names)} "
            f"(matches: {matches}); pass schema= one of {expected}"
        )
    return matches[0]


# ---------------------------------------------------------------------------------------------
# Prompt formatting
# ---------------------------------------------------------------------------------------------


def format_prompt(
    messages: list[dict], ability: str, add_suffix: bool = True, system_prompt: str | None = None
) -> list[dict]:
    """Apply the paper's user suffix and an optional system prompt to a message list.

    The suffix goes at the end of the last user message unless it is already there (Eurus rows
    may carry it). `system_prompt=None` keeps the row's own system message(s); a string replaces
    them (an empty string removes them).
    """
    messages = [dict(m) for m in messages]
    if add_suffix:
        suffix = SUFFIXES[ability]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        if suffix.strip() not in messages[last_user]["content"]:
            messages[last_user]["content"] += suffix
    if system_prompt is not None:
        messages = [m for m in messages if m["role"] != "system"]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def prompt_num_tokens(tokenizer, messages: list[dict]) -> int:
    """Prompt length as the trainer sees it: chat template with the generation prompt."""
    return len(tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------
# Row and dataset normalisation
# ---------------------------------------------------------------------------------------------

ON_BAD_ROW = ("error", "skip")


def normalize_row(
    row: dict,
    index: int,
    schema: str,
    add_suffix: bool = True,
    system_prompt: str | None = None,
    tokenizer=None,
    max_prompt_length: int | None = None,
) -> dict:
    """One raw row -> a PRIME prompt row; raises `BadRowError` naming `index` and the field."""
    try:
        messages, ground_truth, ability, data_source = SCHEMAS[schema].normalize(row)
        prompt = format_prompt(messages, ability, add_suffix, system_prompt)
        if max_prompt_length is not None:
            num_tokens = prompt_num_tokens(tokenizer, prompt)
            if num_tokens > max_prompt_length:
                raise _BadField("prompt", f"is {num_tokens} tokens, longer than max_prompt_length={max_prompt_length}")
    except _BadField as err:
        raise BadRowError(f"row {index}: {err}") from None
    return {"prompt": prompt, "ground_truth": ground_truth, "ability": ability, "data_source": data_source}


def normalize_dataset(
    dataset,
    schema: str = "auto",
    add_suffix: bool = True,
    system_prompt: str | None = None,
    tokenizer=None,
    max_prompt_length: int | None = None,
    on_bad_row: str = "error",
    num_proc: int | None = None,
):
    """A `datasets.Dataset` in any of `SCHEMAS` -> (Dataset of PRIME prompt rows, LoadReport).

    Args:
        schema: "auto" (from the columns) or one of `SCHEMAS`.
        add_suffix: append the paper's math/code instruction to the last user message.
        system_prompt: None keeps the rows' system messages; a string replaces them ("" removes).
        tokenizer, max_prompt_length: with both, prompts longer than `max_prompt_length` tokens
            (chat template + generation prompt) are bad rows.
        on_bad_row: "error" raises `BadRowError` at the first bad row; "skip" drops bad rows,
            logs their count by reason and records it in the `LoadReport`.
        num_proc: processes for `Dataset.map`.

    Row indices in errors are positions in `dataset`.
    """
    if on_bad_row not in ON_BAD_ROW:
        raise ValueError(f"on_bad_row={on_bad_row!r} is not one of {list(ON_BAD_ROW)}")
    if schema == "auto":
        schema = detect_schema(dataset.column_names)
    if schema not in SCHEMAS:
        raise ValueError(f"schema={schema!r} is not one of {['auto', *SCHEMAS]}")
    if max_prompt_length is not None and tokenizer is None:
        raise ValueError("max_prompt_length needs a tokenizer to count prompt tokens")
    options = dict(add_suffix=add_suffix, system_prompt=system_prompt, tokenizer=tokenizer,
                   max_prompt_length=max_prompt_length)  # fmt: skip

    def convert(row: dict, index: int) -> dict:
        try:
            return {**normalize_row(row, index, schema, **options), "_bad": ""}
        except BadRowError as err:
            if on_bad_row == "error":
                raise
            # Same column types as a good row, so Arrow can store the batch; dropped below.
            return {"prompt": [], "ground_truth": "", "ability": "", "data_source": "", "_bad": str(err)}

    converted = dataset.map(
        convert, with_indices=True, remove_columns=dataset.column_names, num_proc=num_proc, desc=f"{schema} rows"
    )
    bad = [message for message in converted["_bad"] if message]
    kept = converted.filter(lambda message: not message, input_columns="_bad").select_columns(list(OUTPUT_COLUMNS))
    # "row 3: field 'x' is empty" -> count by "field 'x' is empty"
    report = LoadReport(len(dataset), len(kept), dict(Counter(m.split(": ", 1)[1] for m in bad)))
    if bad:
        logger.warning(
            "skipped %d of %d rows (%s); first: %s",
            report.num_skipped,
            report.num_rows,
            "; ".join(f"{n} x {reason}" for reason, n in report.skipped.items()),
            bad[0],
        )
    return kept, report


def load_raw_dataset(name_or_path: str, split: str = "train"):
    """A local file, a local directory, or a hub id, loaded with `datasets.load_dataset`.

    A single file is one split, so `split` applies to directories and hub ids only.
    """
    from datasets import load_dataset

    if os.path.isfile(name_or_path):
        extension = os.path.splitext(name_or_path)[1].lower()
        if extension not in FILE_BUILDERS:
            raise ValueError(f"{name_or_path}: unsupported file type {extension!r}; use one of {sorted(FILE_BUILDERS)}")
        return load_dataset(FILE_BUILDERS[extension], data_files=name_or_path, split="train")
    # A local directory (files named by split, e.g. train.parquet) or a hub id such as EURUS_HUB_ID.
    return load_dataset(name_or_path, split=split)


def load_prime_dataset(name_or_path: str, split: str = "train", return_report: bool = False, **options) -> Any:
    """Load and normalise RL prompts into PRIME prompt rows (see the module docstring).

    Args:
        name_or_path: hub id (e.g. `EURUS_HUB_ID`), a local .jsonl/.json/.parquet/.csv file, or a
            local directory of such files.
        split: split of a hub dataset or directory.
        return_report: return `(dataset, LoadReport)` instead of the dataset.
        **options: those of `normalize_dataset` (schema, add_suffix, system_prompt, tokenizer,
            max_prompt_length, on_bad_row, num_proc).
    """
    dataset, report = normalize_dataset(load_raw_dataset(name_or_path, split), **options)
    return (dataset, report) if return_report else dataset
