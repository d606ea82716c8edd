import threading
import time

import pytest

from prime_trl.verifiers import extract_answer, make_math_reward


@pytest.fixture(scope="module")
def math_reward():
    return make_math_reward(timeout_s=1.0, workers=2)


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so x = \\boxed{3} or maybe \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # the last box
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces inside
        ("\\fbox{42}", "42"),
        ("\\boxed 7 is it", "7"),
        ("first \\boxed{5} then \\boxed{unclosed", "5"),  # truncated last box: the previous one
        ("Thus, the answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("Final answer: 12", "12"),
        ("We get $x = 2$ and finally $7$", "7"),
        ("[ASSESS]\n\nWe need x.\n\n[OUTPUT]\n\nThe final answer is: $\\boxed{9}$", "9"),
        ("[ASSESS]\n\\boxed{1} is wrong\n[OUTPUT]\nThe answer is 2.", "2"),
        ("no answer here", None),
        ("", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_formats_and_equivalences(math_reward):
    cases = [  # (completion, reference, expected score)
        ("\\boxed{0.75}", "\\frac{3}{4}", 1.0),  # fraction vs decimal
        ("\\boxed{\\dfrac{3}{4}}", "0.75", 1.0),
        ("\\boxed{[0, 1)}", "[0,1)", 1.0),  # intervals
        ("\\boxed{(0, 1]}", "[0,1)", 0.0),
        ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}", 1.0),  # sets
        ("\\boxed{(1, 2)}", "(1,2)", 1.0),  # tuples
        ("\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 1.0),
        ("\\boxed{10\\text{ cm}}", "10", 1.0),  # units
        ("\\boxed{B}", "\\text{(B)}", 1.0),  # \text{} choices
        ("\\boxed{1000}", "1,000", 1.0),  # thousands separator
        ("\\boxed{1+x^2}", "x^2+1", 1.0),
        ("the answer is 3.", "3", 1.0),
        ("\\boxed{4}", "3", 0.0),  # wrong
        ("\\boxed{x^2-1}", "x^2+1", 0.0),
        ("", "3", 0.0),  # empty
        ("\x00\x01 }{ \\boxed{ \\frac{ ", "3", 0.0),  # garbage, unbalanced
        ("\\boxed{\\frac{}{}}", "1", 0.0),  # unparsable answer
        ("\\boxed{\\\\\\\\}", "\\frac{", 0.0),  # unparsable reference: 0.0, no exception
        ([{"role": "assistant", "content": "\\boxed{5}"}], "5", 1.0),  # conversational
        (None, "5", 0.0),
    ]
    scores = math_reward([c for c, _, _ in cases], [g for _, g, _ in cases])
    assert scores == [s for _, _, s in cases]


def test_protocol_extra_kwargs_and_metrics(math_reward):
    logged = {}
    scores = math_reward(
        prompts=["p"] * 4, completions=["\\boxed{1}", "\\boxed{3}", "I give up", "\\boxed{\\\\}"],
        completion_ids=[[1]] * 4, ground_truth=["1", "2", "3", "1"], ability=["math"] * 4, trainer_state=None,
        log_extra=lambda *a: None, log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    assert scores == [1.0, 0.0, 0.0, 0.0]
    assert logged == {
        "verifiers/math/correct": 0.25,
        "verifiers/math/wrong": 0.25,
        "verifiers/math/no_answer": 0.25,
        "verifiers/math/parse_error": 0.25,  # math-verify cannot read a bare "\\\\"
        "verifiers/math/timeout": 0.0,
        "verifiers/math/infra_error": 0.0,
        "verifiers/math/infra_errors_total": 0.0,
    }


def test_bad_ground_truth_names_the_row(math_reward):
    with pytest.raises(ValueError, match="row 1"):
        math_reward(["\\boxed{1}", "\\boxed{2}"], ["1", {"not": "an answer"}])


def test_pathological_inputs_are_bounded(math_reward):
    huge = "blah " * 400_000 + "\\boxed{" + "9" * 50_000 + "}"  # 2 MB, 50k-digit "answer"
    tower = "\\boxed{2^{2^{2^{2^{2^{100}}}}}}"
    start = time.monotonic()
    logged = {}
    scores = math_reward([huge, tower, "\\boxed{1}"], ["9", "2", "1"], log_metric=logged.__setitem__)
    elapsed = time.monotonic() - start
    assert scores == [0.0, 0.0, 1.0]  # a timeout is the answer's fault: 0.0, not None
    assert elapsed < 8.0  # timeout_s=1: the stalled worker is killed after 2*1+1 s
    assert logged["verifiers/math/timeout"] == logged["verifiers/math/no_answer"] == 1 / 3  # too long to parse


def test_bounded_from_a_worker_thread(math_reward):
    """TRL's async path calls reward functions off the main thread, where SIGALRM cannot fire."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("s", math_reward(["\\boxed{2^{2^{2^{2^{99}}}}}"], ["1"])))
    start = time.monotonic()
    thread.start()
    thread.join(20)
    assert out.get("s") == [0.0]
    assert time.monotonic() - start < 8.0
