"""One-operation word problems as few-shot chat prompts: a 135M instruct model solves some, not all.

Sampled at temperature 0.7 with 24 new tokens, SmolLM2-135M-Instruct answers about 13% of them right, and about a
third of the groups of 4 samples have mixed outcomes, inside PRIME's accuracy band [0.2, 0.8] (measured over all
504 problems × 4 by `bench/pretrained_prm.py`); problems with two operations are nearly always wrong, which would
leave the PRM nothing to learn from. The tests and `bench/pretrained_prm.py` use them with the offline SmolLM2
checkpoint.

The family is finite: the operands repeat every 63 problems and the operation every 2, so there are
`NUM_FACTS` = 126 arithmetic facts, and with the 8 names and items `NUM_PROBLEMS` = 504 distinct problems.
`fact_split` splits them by fact: no held-out problem applies its operation to the operands of a training one
(with the default split, 7 of the 63 held-out sums appear commuted in training, b + a for a + b).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from datasets import Dataset

SHOTS = [
    ("Sam has 5 pens and gets 3 more. How many pens does he have?", "5 + 3 = 8. The answer is \\boxed{8}."),
    ("A box holds 9 eggs. 4 eggs break. How many eggs are left?", "9 - 4 = 5. The answer is \\boxed{5}."),
]
NUM_FACTS = 126  # lcm(63, 2): problem i asks fact i % 126
NUM_PROBLEMS = 504  # lcm(126, 8): problem i + 504 repeats problem i word for word
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


# Problems SmolLM2-135M-Instruct answers right about half the time at temperature 0.7 (9, 9, 9 and 7 of 16
# samples, an estimate): at p = 1/2 a group of 4 lands inside PRIME's accuracy band [0.2, 0.8] 87.5% of the time,
# at p = 0.3 or 0.7 still 75%.
ABOUT_HALF_RIGHT = (8, 54, 75, 107)


def word_problem_dataset(indices: Iterable[int]) -> Dataset:
    """Prompt rows (`prompt`, `ground_truth`) of the given problems."""
    rows = [problem(i) for i in indices]
    return Dataset.from_list([{"prompt": few_shot_prompt(q), "ground_truth": a} for q, a in rows])


def eurus_rows(n: int) -> list[dict]:
    """The same problems as Eurus-2-RL-Data rows (chat `prompt`, `reward_model.ground_truth`), for the CLI."""
    return [{"data_source": "word_problems", "prompt": few_shot_prompt(q), "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": a}} for q, a in map(problem, range(n))]  # fmt: skip


def fact_split(heldout_fraction: float = 0.5, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, held-out) indices of the `NUM_PROBLEMS` distinct problems, split by arithmetic fact.

    A seeded `heldout_fraction` of the facts goes to held-out, with all of its problems; the two lists share no
    fact (no `i % NUM_FACTS`): no held-out problem applies its operation to the operands of a training one.
    """
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must lie in (0, 1), got {heldout_fraction}")
    facts = list(range(NUM_FACTS))
    random.Random(seed).shuffle(facts)
    heldout_facts = set(facts[: round(heldout_fraction * NUM_FACTS)])
    train = [i for i in range(NUM_PROBLEMS) if i % NUM_FACTS not in heldout_facts]
    heldout = [i for i in range(NUM_PROBLEMS) if i % NUM_FACTS in heldout_facts]
    return train, heldout


def problem_rows(indices: list[int]) -> list[dict]:
    """PRIME rows of the given problems: chat `prompt`, `ground_truth`, `ability`, and the problem's `fact`."""
    rows = []
    for i in indices:
        question, answer = problem(i)
        rows.append({"prompt": few_shot_prompt(question), "ground_truth": answer, "ability": "math",
                     "fact": i % NUM_FACTS})  # fmt: skip
    return rows
