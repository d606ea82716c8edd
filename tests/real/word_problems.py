"""One-operation word problems as few-shot chat prompts: a 135M instruct model solves some, not all.

Sampled at temperature 0.7, SmolLM2-135M-Instruct answers about half of these right, so many groups of samples
have mixed outcomes and fall inside PRIME's accuracy band [0.2, 0.8]; problems with two operations are nearly
always wrong, which would leave the PRM nothing to learn from.
"""

from __future__ import annotations

from datasets import Dataset

SHOTS = [
    ("Sam has 5 pens and gets 3 more. How many pens does he have?", "5 + 3 = 8. The answer is \\boxed{8}."),
    ("A box holds 9 eggs. 4 eggs break. How many eggs are left?", "9 - 4 = 5. The answer is \\boxed{5}."),
]
NAMES = ["Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana"]
ITEMS = ["apples", "books", "coins", "shells", "stickers", "marbles", "cards", "plums"]


def problem(i: int) -> tuple[str, str]:
    """The i-th problem and its answer: additions and subtractions of small numbers, alternating."""
    name, item = NAMES[i % len(NAMES)], ITEMS[i % len(ITEMS)]
    a, b = 3 + (7 * i) % 9, 2 + (5 * i) % 7
    if i % 2 == 0:
        return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have?", str(a + b)
    a += b
    return f"{name} has {a} {item} and gives away {b}. How many {item} are left?", str(a - b)


def few_shot_prompt(question: str) -> list[dict]:
    messages = []
    for user, assistant in SHOTS:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return [*messages, {"role": "user", "content": question}]


def word_problem_dataset(n: int) -> Dataset:
    rows = [problem(i) for i in range(n)]
    return Dataset.from_list([{"prompt": few_shot_prompt(q), "ground_truth": a} for q, a in rows])


def eurus_rows(n: int) -> list[dict]:
    """The same problems as Eurus-2-RL-Data rows (chat `prompt`, `reward_model.ground_truth`), for the CLI."""
    return [{"data_source": "word_problems", "prompt": few_shot_prompt(q), "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": a}} for q, a in map(problem, range(n))]  # fmt: skip
