import json

import pytest

from prime_trl.verifiers import extract_code, make_code_reward
from prime_trl.verifiers.code_verifier import call_matches, stdout_matches

ADD = json.dumps({"inputs": ["1 2\n", "3 4\n", "10 -3\n"], "outputs": ["3\n", "7\n", "7\n"]})


@pytest.fixture(scope="module")
def code_reward():
    return make_code_reward(timeout_s=1.0, total_timeout_s=6.0, memory_mb=256, max_procs=8, workers=2)


def fenced(src: str) -> str:
    return f"Here is my solution.\n```python\n{src}\n```\n"


def test_extract_code_takes_the_last_block():
    text = "```python\nprint(1)\n```\nbetter:\n```python\nprint(2)\n```"
    assert extract_code(text) == "print(2)\n"
    assert extract_code("```py\nx=1\n") == "x=1\n"  # generation stopped inside the fence
    assert extract_code("no code") is None


def test_whitespace_tolerant_matching():
    assert stdout_matches("3  \n\n", "3\n")
    assert stdout_matches("1 2\n3", "1 2 3")
    assert stdout_matches("0.3333333", "0.33333333")
    assert not stdout_matches("3 4", "34")
    assert call_matches("[1, 2]", [[1, 2]])  # APPS: expected value wrapped in a list
    assert call_matches("[1, 2]", (1, 2))


def test_pass_partial_fail_compile_error(code_reward):
    completions = [
        fenced("a, b = map(int, input().split())\nprint(a + b)"),  # passes
        fenced("a, b = map(int, input().split())\nprint(abs(a) + abs(b))"),  # 2 of 3
        fenced("print(7)"),  # 2 of 3 by luck
        fenced("def f(:\n  pass"),  # does not compile
        fenced("raise RuntimeError('boom')"),
        "I cannot solve this.",  # no code
        "",
        [{"role": "assistant", "content": fenced("import sys\nprint(sum(map(int, sys.stdin.read().split())))")}],
    ]
    scores = code_reward(completions, [ADD] * len(completions), prompts=["p"] * 8, trainer_state=None)
    assert scores == [1.0, 2 / 3, 2 / 3, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_call_based(code_reward):
    tests = {"fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [[3], 7]}
    completions = [
        fenced("def add(a, b):\n    print('noise on stdout')\n    return a + b"),
        fenced("class Solution:\n    def add(self, a, b):\n        return a + b"),
        fenced("def add(a, b):\n    return a * b"),
        fenced("def other(a, b):\n    return a + b"),
    ]
    assert code_reward(completions, [tests] * 4) == [1.0, 1.0, 0.0, 0.0]


def test_outcome_metrics_tell_failures_apart(code_reward):
    completions = [
        fenced("a, b = map(int, input().split())\nprint(a + b)"),  # passed
        fenced("print(7)"),  # wrong_answer (2 of 3 right, 1 wrong)
        fenced("import time\ntime.sleep(10)"),  # timeout
        fenced("a, b = map(int, input().split())\nif a == 10:\n    while True: pass\nprint(0)"),  # wrong + timeout
        fenced("raise RuntimeError('boom')"),  # program_error
        fenced("def f(:\n  pass"),  # program_error (compile)
        "no code at all",  # no_code
        fenced("print(3)"),  # wrong_answer
    ]
    logged = {}
    scores = code_reward(completions, [ADD] * len(completions), log_metric=lambda k, v: logged.__setitem__(k, v))
    assert scores == [1.0, 2 / 3, 0.0, 0.0, 0.0, 0.0, 0.0, 1 / 3]
    assert logged == {
        "verifiers/code/passed": 1 / 8,
        "verifiers/code/wrong_answer": 2 / 8,
        "verifiers/code/timeout": 2 / 8,  # a timeout outranks a wrong answer in the same completion
        "verifiers/code/program_error": 2 / 8,
        "verifiers/code/no_code": 1 / 8,
        "verifiers/code/sandbox_error": 0.0,
        "verifiers/code/sandbox_errors_total": 0.0,
    }


def test_bad_ground_truth_names_the_row(code_reward):
    with pytest.raises(ValueError, match="row 0"):
        code_reward(["x"], ["not json"])
    with pytest.raises(ValueError, match="row 0"):
        code_reward(["x"], [json.dumps({"inputs": [1], "outputs": []})])
    with pytest.raises(ValueError, match="row 1: code ground_truth has no tests"):
        code_reward(["x", "y"], [ADD, json.dumps({"inputs": [], "outputs": []})])
