"""A synthetic multi-step arithmetic task for the offline demo.

A problem is a left-nested chain such as "Compute ((12 + 7) * 3) - 5." whose worked solution
writes one operation per line and ends with the boxed answer:

    12 + 7 = 19
    19 * 3 = 57
    57 - 5 = 52
    The answer is \\boxed{52}.

Every intermediate line is a place where a small model can slip, and a slip changes the final
answer: that is what gives PRIME's process reward something to teach on a CPU in minutes.
Everything is drawn from one `random.Random(seed)`, so the splits are reproducible.

Rows come in the shapes TRL expects:
- RL / eval rows: conversational prompt rows with `ground_truth`, `ability="math"`, `data_source`
  (the same columns as `prime_trl.data` produces for real data);
- SFT rows: conversational prompt/completion rows, which TRL's `SFTTrainer` trains on with the
  loss on the completion only.
"""

from __future__ import annotations

import operator
import random
import re
from dataclasses import dataclass

DATA_SOURCE = "demo_arithmetic"

# The operations and how to apply them; `*` draws its operand from a smaller range so the
# numbers stay short (a few digits) even after several steps.
OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]  # (num_steps + 1,)
    ops: tuple[str, ...]  # (num_steps,)

    @property
    def partial_results(self) -> list[int]:
        """The value after each step: s_1, ..., s_K (s_K is the answer)."""
        value, results = self.operands[0], []
        for op, operand in zip(self.ops, self.operands[1:]):
            value = OPERATIONS[op](value, operand)
            results.append(value)
        return results

    @property
    def answer(self) -> int:
        return self.partial_results[-1]

    @property
    def expression(self) -> str:
        """"((a + b) * c) - d": parentheses make the left-to-right order explicit."""
        text = str(self.operands[0])
        for i, (op, operand) in enumerate(zip(self.ops, self.operands[1:])):
            if i > 0:
                text = f"({text})"
            text = f"{text} {op} {operand}"
        return text

    @property
    def question(self) -> str:
        return f"Compute {self.expression}."

    @property
    def steps(self) -> list[str]:
        """One line per operation: "s_{k-1} op x_k = s_k"."""
        lefts = [self.operands[0], *self.partial_results[:-1]]
        return [
            f"{left} {op} {operand} = {result}"
            for left, op, operand, result in zip(lefts, self.ops, self.operands[1:], self.partial_results)
        ]

    @property
    def solution(self) -> str:
        return "\n".join(self.steps) + f"\nThe answer is \\boxed{{{self.answer}}}."


def _operand_range(
    op: str,
    value: int,
    max_operand: int,
    max_multiplier: int,
    max_value: int | None,
) -> tuple[int, int]:
    """Inclusive operand range for `value op x` that keeps every value in [0, max_value]; empty if low > high."""
    cap = float("inf") if max_value is None else max_value
    if op == "+":
        return 1, int(min(max_operand, cap - value))
    if op == "-":
        return 1, min(max_operand, value)
    return 2, int(min(max_multiplier, cap // value if value else max_multiplier))


def sample_problem(
    rng: random.Random,
    num_steps: int | tuple[int, int] = (2, 4),
    max_operand: int = 50,
    max_multiplier: int = 9,
    max_value: int | None = None,
) -> Problem:
    """Draw one problem. `num_steps` is an int or an inclusive (min, max) range.

    Operands of `+`/`-` are in [1, max_operand], of `*` in [2, max_multiplier]. Each step picks
    uniformly among the operations that keep the running value in [0, max_value] (no sign
    tokens; `max_value=None` leaves it unbounded above), so shorter numbers = easier problems.
    """
    low, high = (num_steps, num_steps) if isinstance(num_steps, int) else num_steps
    if not 1 <= low <= high:
        raise ValueError(f"num_steps must be >= 1 and min <= max, got {num_steps!r}")
    if max_value is not None and max_value < 2:
        raise ValueError(f"max_value must be >= 2, got {max_value}")
    k = rng.randint(low, high)
    value = rng.randint(1, max_operand if max_value is None else min(max_operand, max_value - 1))
    operands, ops = [value], []
    for _ in range(k):
        ranges = {op: _operand_range(op, value, max_operand, max_multiplier, max_value) for op in OPERATIONS}
        op = rng.choice([op for op, (lo, hi) in ranges.items() if lo <= hi])
        operand = rng.randint(*ranges[op])
        value = OPERATIONS[op](value, operand)
        operands.append(operand)
        ops.append(op)
    return Problem(tuple(operands), tuple(ops))


def generate_problems(n: int, seed: int = 0, exclude: set[str] | None = None, **difficulty) -> list[Problem]:
    """`n` distinct problems from `seed`, none whose question is in `exclude`.

    `difficulty` goes to `sample_problem` (num_steps, max_operand, max_multiplier, max_value).
    """
    rng = random.Random(seed)
    seen = set(exclude or ())
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not draw {n} distinct problems with {difficulty}; widen the ranges")
        problem = sample_problem(rng, **difficulty)
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
    return problems


def to_prompt_row(problem: Problem, suffix: str = "") -> dict:
    """A TRL conversational prompt row with PRIME's columns (see `prime_trl.data`)."""
    return {
        "prompt": [{"role": "user", "content": problem.question + suffix}],
        "ground_truth": str(problem.answer),
        "ability": "math",
        "data_source": DATA_SOURCE,
    }


def to_sft_row(problem: Problem, suffix: str = "") -> dict:
    """A TRL conversational prompt/completion row; SFTTrainer puts the loss on the completion."""
    return {
        "prompt": [{"role": "user", "content": problem.question + suffix}],
        "completion": [{"role": "assistant", "content": problem.solution}],
    }


def make_demo_splits(
    num_sft: int = 2000,
    num_rl: int = 1000,
    num_eval: int = 200,
    seed: int = 0,
    suffix: str = "",
    num_dev: int = 0,
    num_pool: int = 0,
    **difficulty,
) -> dict[str, list[dict]]:
    """Disjoint splits: "sft" (worked solutions), "rl", "eval", "dev" and "pool" (prompt rows with ground truth).

    The held-out questions ("eval", then "dev" for stopping decisions) are drawn first and excluded from the
    training splits, so held-out accuracy is on questions the model never saw. The "pool" prompts (the PRM's
    held-out rollouts) come last from their own stream and avoid every other split, so asking for them
    changes none of the others.
    """
    held_out = generate_problems(num_eval + num_dev, seed=seed + 1, **difficulty)
    seen = {p.question for p in held_out}
    train_problems = generate_problems(num_sft + num_rl, seed=seed, exclude=seen, **difficulty)
    seen |= {p.question for p in train_problems}
    pool = generate_problems(num_pool, seed=seed + 2, exclude=seen, **difficulty) if num_pool else []
    return {
        "sft": [to_sft_row(p, suffix) for p in train_problems[:num_sft]],
        "rl": [to_prompt_row(p, suffix) for p in train_problems[num_sft:]],
        "eval": [to_prompt_row(p, suffix) for p in held_out[:num_eval]],
        "dev": [to_prompt_row(p, suffix) for p in held_out[num_eval:]],
        "pool": [to_prompt_row(p, suffix) for p in pool],
    }


def parse_question(question: str) -> Problem:
    """The `Problem` behind a question text ("Compute ((12 + 7) * 3) - 5."): its numbers and operators in order."""
    tokens = re.findall(r"\d+|[-+*]", question)
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        raise ValueError(f"not a demo question: {question!r}")
    return Problem(tuple(int(t) for t in tokens[::2]), tuple(tokens[1::2]))


def first_wrong_step(problem: Problem, completion: str) -> int | None:
    """Index of the first line of `completion` that differs from the worked solution's; None if none does.

    Every line of the solution is determined by the lines before it, so the first line that differs is the
    first wrong step: a slip such as "19 * 3 = 47", a wrong operand, or a wrong final line. A completion that
    stops early is wrong at its first missing line.
    """
    lines = completion.strip().split("\n")
    for k, expected in enumerate(problem.solution.split("\n")):
        if k >= len(lines) or lines[k].strip() != expected:
            return k
    return None


def first_wrong_char(problem: Problem, completion: str) -> int | None:
    """Offset of the first character of `completion` that leaves the worked solution; None if it is the solution.

    Finer than `first_wrong_step`: in "19 * 3 = 47" it points at the "4", the token a slip is made on. A completion
    that stops early leaves the solution where it ends; one that runs on, where the solution ends.
    """
    solution = problem.solution
    if completion.rstrip() == solution:  # offsets index `completion` as given, so only trailing space is ignored
        return None
    common = min(len(completion), len(solution))
    return next((c for c in range(common) if completion[c] != solution[c]), common)


def first_wrong_token(problem: Problem, completion_ids: list[int], tokenizer) -> int | None:
    """Index of the completion token holding the first character that leaves `problem`'s worked solution.

    Decodes growing prefixes, so a character is found in the token that completes it (byte-level merges
    included). None for the worked solution itself; the last token for a completion that only runs on.
    """
    texts = [tokenizer.decode(completion_ids[: k + 1], skip_special_tokens=True) for k in range(len(completion_ids))]
    offset = first_wrong_char(problem, texts[-1] if texts else "")
    if offset is None or not texts:
        return None
    return next((k for k, text in enumerate(texts) if len(text) > offset), len(texts) - 1)


def first_wrong_step_of_row(row: dict, completion: str) -> int | None:
    """`first_wrong_step` for a prompt row of this task (the problem is read back from the question)."""
    return first_wrong_step(parse_question(row["prompt"][-1]["content"]), completion)


def tokenizer_corpus(sft_rows: list[dict]) -> list[str]:
    """Texts to train the demo tokenizer on: every question and worked solution."""
    return [row["prompt"][-1]["content"] + "\n" + row["completion"][-1]["content"] for row in sft_rows]
