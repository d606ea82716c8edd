import random
import re

import pytest

from prime_trl.demo_task import (
    DATA_SOURCE,
    generate_problems,
    make_demo_splits,
    sample_problem,
    to_prompt_row,
    to_sft_row,
    tokenizer_corpus,
)


def evaluate_expression(expression: str) -> int:
    """Independent oracle: Python's own parser on the question's fully parenthesised expression."""
    assert re.fullmatch(r"[0-9+\-* ()]+", expression), expression
    return eval(expression)  # noqa: S307 - digits, + - *, spaces and parentheses only (checked above)


def test_answers_match_an_independent_evaluation():
    for problem in generate_problems(300, seed=1, num_steps=(1, 5), max_operand=60, max_multiplier=9):
        assert problem.question.startswith("Compute ") and problem.question.endswith(".")
        assert evaluate_expression(problem.question[len("Compute ") : -1]) == problem.answer


def test_every_worked_step_is_right_and_chains():
    for problem in generate_problems(200, seed=2, num_steps=(2, 4)):
        previous = None
        for line in problem.steps:
            left, op, right, eq, result = line.split()
            assert eq == "="
            assert evaluate_expression(f"{left} {op} {right}") == int(result)
            if previous is not None:
                assert int(left) == previous  # each step starts from the previous result
            previous = int(result)
        assert previous == problem.answer


def test_solution_ends_with_the_boxed_answer():
    for problem in generate_problems(50, seed=3):
        assert problem.solution.endswith(f"The answer is \\boxed{{{problem.answer}}}.")
        assert problem.solution.count("\n") == len(problem.ops)


def test_difficulty_knobs_bound_the_numbers():
    problems = generate_problems(500, seed=4, num_steps=(3, 3), max_operand=9, max_multiplier=5, max_value=99)
    for problem in problems:
        assert len(problem.ops) == 3
        assert all(0 <= v <= 99 for v in (*problem.operands, *problem.partial_results))
        for op, operand in zip(problem.ops, problem.operands[1:]):
            assert 2 <= operand <= 5 if op == "*" else 1 <= operand <= 9
    assert {op for p in problems for op in p.ops} == {"+", "-", "*"}


def test_unbounded_values_stay_non_negative():
    for problem in generate_problems(300, seed=5, num_steps=(4, 6)):
        assert min(problem.partial_results) >= 0


def test_invalid_num_steps():
    with pytest.raises(ValueError, match="num_steps"):
        sample_problem(random.Random(0), num_steps=(3, 2))


def test_determinism_by_seed():
    assert make_demo_splits(20, 10, 10, seed=7) == make_demo_splits(20, 10, 10, seed=7)
    assert make_demo_splits(20, 10, 10, seed=7) != make_demo_splits(20, 10, 10, seed=8)


def test_splits_are_disjoint_and_shaped_for_trl():
    splits = make_demo_splits(num_sft=300, num_rl=100, num_eval=50, seed=0, max_value=99)
    assert {k: len(v) for k, v in splits.items()} == {"sft": 300, "rl": 100, "eval": 50}
    questions = {k: {r["prompt"][-1]["content"] for r in v} for k, v in splits.items()}
    assert not questions["eval"] & (questions["sft"] | questions["rl"])
    assert not questions["sft"] & questions["rl"]
    row = splits["rl"][0]
    assert set(row) == {"prompt", "ground_truth", "ability", "data_source"}
    assert row["ability"] == "math" and row["data_source"] == DATA_SOURCE
    sft = splits["sft"][0]
    assert sft["prompt"][0]["role"] == "user" and sft["completion"][0]["role"] == "assistant"


def test_rows_and_corpus():
    problem = generate_problems(1, seed=0)[0]
    suffix = "\n\nPresent the answer in LaTex format: \\boxed{Your answer}"
    assert to_prompt_row(problem, suffix)["prompt"][0]["content"] == problem.question + suffix
    assert to_prompt_row(problem)["ground_truth"] == str(problem.answer)
    corpus = tokenizer_corpus([to_sft_row(problem)])
    assert corpus == [problem.question + "\n" + problem.solution]
