import json

import pytest

from prime_trl.verifiers import REWARD_FUNCS, make_outcome_reward


def test_routes_rows_by_ability_and_keeps_order():
    calls = []

    def fake(tag):
        def reward(completions, ground_truth, **kw):
            calls.append((tag, list(completions), sorted(kw)))
            return [float(len(c)) for c in completions]

        return reward

    reward = make_outcome_reward({"math": fake("math"), "code": fake("code")})
    scores = reward(["a", "bb", "ccc"], ["1", "2", "3"], ability=["code", "math", "code"], prompts=["p"] * 3)
    assert scores == [1.0, 2.0, 3.0]
    assert calls == [("code", ["a", "ccc"], ["prompts"]), ("math", ["bb"], ["prompts"])]


def test_unknown_ability_names_row_and_value():
    reward = make_outcome_reward({"math": lambda c, g, **k: [0.0] * len(c)})
    with pytest.raises(ValueError, match=r"row 1: unknown ability 'chemistry'"):
        reward(["a", "b"], ["1", "2"], ability=["math", "chemistry"])


def test_mixed_batch_end_to_end():
    tests = json.dumps({"inputs": ["2\n"], "outputs": ["4\n"]})
    completions = ["\\boxed{4}", "```python\nprint(int(input()) * 2)\n```", "\\boxed{5}"]
    scores = REWARD_FUNCS["outcome"](completions, ["4", tests, "4"], ability=["math", "code", "math"])
    assert scores == [1.0, 1.0, 0.0]
