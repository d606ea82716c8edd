import random
import re

import pytest
import torch

from prime_trl.demo.task import (
    DATA_SOURCE,
    Problem,
    first_wrong_char,
    first_wrong_step,
    first_wrong_step_of_row,
    generate_problems,
    make_demo_splits,
    parse_question,
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
    splits = make_demo_splits(num_sft=300, num_rl=100, num_eval=50, num_dev=20, num_pool=10, seed=0, max_value=99)
    assert {k: len(v) for k, v in splits.items()} == {"sft": 300, "rl": 100, "eval": 50, "dev": 20, "pool": 10}
    # the PRM-health pool has its own stream: asking for it leaves every other split as it was
    without_pool = make_demo_splits(num_sft=300, num_rl=100, num_eval=50, num_dev=20, seed=0, max_value=99)
    assert all(without_pool[k] == splits[k] for k in ("sft", "rl", "eval", "dev"))
    questions = {k: {r["prompt"][-1]["content"] for r in v} for k, v in splits.items()}
    for a in questions:
        for b in questions:
            assert a == b or not questions[a] & questions[b], (a, b)
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


# --- the demo's stages that run without the trainer (tiny settings, a few SFT steps) -------------


def test_is_correct():
    from prime_trl.demo import is_correct

    assert is_correct("1 + 2 = 3\nThe answer is \\boxed{3}.", "3")
    assert not is_correct("The answer is \\boxed{4}.", "3")
    assert not is_correct("The answer is 3.", "3")
    assert is_correct("\\boxed{2} no, \\boxed{ 3 }", "3")  # the last box counts


def test_demo_main_writes_eval_json(tmp_path):
    import json

    from prime_trl.scripts.demo import main

    out = tmp_path / "demo"
    argv = ["--output-dir", str(out), "--num_sft", "64", "--num_rl", "8", "--num_eval", "8", "--num_dev", "4",
            "--hidden_size", "32", "--num_layers", "1", "--num_heads", "2", "--sft_max_steps", "3",
            "--sft_batch_size", "4", "--sft_eval_every", "2", "--sft_target_accuracy", "1.0",
            "--max_completion_length", "8", "--num_group_prompts", "2", "--num_generations", "2",
            "--rl_max_steps", "2", "--rl_prompts_per_step", "2", "--rl_eval_every", "1", "--num_pool", "3",
            "--prm_health_every", "1", "--policy_mini_batches", "2"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "eval.json").read_text())
    assert 0.0 <= result["accuracy_before"] <= 1.0 and result["num_eval_prompts"] == 8
    assert result["sft_steps"] == 3 and [step for step, _ in result["sft_dev_accuracy"]] == [2]
    assert result["args"]["prm_ref_type"] == "policy"  # the demo's recipe; the library keeps the paper's "frozen"
    assert sum(result["group_accuracy_T1"]["histogram"].values()) == 2
    assert (out / "sft" / "config.json").exists()
    # the PRIME stage ran: accuracy after, a curve point per step, plots, policy and PRM saved
    assert 0.0 <= result["accuracy_after"] <= 1.0
    # 2 generation batches x 2 policy mini-batches = 4 optimizer steps of 2 rollouts each
    assert [p["step"] for p in result["accuracy_curve"]] == [0, 2, 4]
    # dynamic sampling (the demo's default) charges every round: 1 to max_sampling_rounds (8) rounds of 2 x 2
    added = [b["samples"] - a["samples"] for a, b in zip(result["accuracy_curve"], result["accuracy_curve"][1:])]
    assert result["accuracy_curve"][0]["samples"] == 0 and all(n % 4 == 0 and 4 <= n <= 32 for n in added)
    # PRM health on the held-out pool: before training and after each generation batch
    assert [h["step"] for h in result["prm_health"]] == [0, 2, 4]
    assert result["prm_heldout_pairwise_accuracy"] == result["prm_health"][-1]["prm/heldout_pairwise_accuracy"]
    # and on fresh rollouts of the pool's prompts by the policy as it is, every rl_eval_every generation batches
    assert all("prm/onpolicy_pairwise_accuracy" in h for h in result["prm_health"])
    assert result["prm_onpolicy_pairwise_accuracy"] == result["prm_health"][-1]["prm/onpolicy_pairwise_accuracy"]
    reference = result["reference_onpolicy_pairwise_accuracy"]
    assert reference == result["prm_health"][-1]["prm/onpolicy_reference_pairwise_accuracy"] and 0 <= reference <= 1
    assert len((out / "prm_pool.jsonl").read_text().splitlines()) == 3
    for name in ("training_curves.png", "heldout_accuracy.png", "prime/config.json", "prime/prm/config.json"):
        assert (out / name).exists(), name
    # --reuse_sft loads the saved SFT model (no SFT step runs): the same greedy accuracy before RL
    sft_weights = (out / "sft" / "model.safetensors").read_bytes()
    assert main([*argv, "--reuse_sft", "true", "--rl_max_steps", "1", "--dynamic_sampling", "false"]) == 0
    again = json.loads((out / "eval.json").read_text())
    assert again["sft_steps"] == 3 and again["accuracy_before"] == result["accuracy_before"]
    assert [p["samples"] for p in again["accuracy_curve"]] == [0, 4]  # masking: one generation batch, 2 x 2
    assert (out / "sft" / "model.safetensors").read_bytes() == sft_weights


def test_an_unknown_prm_reference_is_refused_before_any_training(tmp_path, capsys):
    from prime_trl.scripts.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--output-dir", str(tmp_path / "demo"), "--prm_ref_type", "policyy"])
    assert exit_info.value.code == 2 and "--prm_ref_type" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # nothing built, nothing trained


def test_sft_stops_at_target_accuracy(tmp_path):
    """A target of 0 is met at the first check (every 2 steps), so SFT stops there."""
    from prime_trl.demo.task import make_demo_splits, tokenizer_corpus
    from prime_trl.demo import build_demo_model_and_tokenizer, run_sft

    splits = make_demo_splits(num_sft=32, num_rl=0, num_eval=0, num_dev=2, seed=0)
    model, tokenizer = build_demo_model_and_tokenizer(tokenizer_corpus(splits["sft"]), hidden_size=32, num_layers=1)
    before = [p.detach().clone() for p in model.parameters()]
    result = run_sft(model, tokenizer, splits["sft"], str(tmp_path), max_steps=10, batch_size=4,
                     dev_rows=splits["dev"], target_accuracy=0.0, eval_every=2,
                     max_new_tokens=4)  # fmt: skip
    assert result["steps"] == 2 and result["dev_accuracy"][0][0] == 2
    assert any(not (a == b).all() for a, b in zip(before, model.parameters()))


def test_same_seed_gives_the_same_sft_weights(tmp_path):
    """The SFT start is reproducible: the same seed gives bit-identical weights, another seed different ones."""
    from prime_trl.demo import build_demo_model_and_tokenizer, run_sft
    from prime_trl.demo.task import make_demo_splits, tokenizer_corpus

    def sft_weights(seed: int) -> dict:
        splits = make_demo_splits(num_sft=48, num_rl=0, num_eval=0, seed=seed)
        model, tokenizer = build_demo_model_and_tokenizer(tokenizer_corpus(splits["sft"]), hidden_size=32,
                                                          num_layers=1, seed=seed)  # fmt: skip
        run_sft(model, tokenizer, splits["sft"], str(tmp_path / f"sft-{seed}"), max_steps=4, batch_size=4, seed=seed)
        return {k: v.clone() for k, v in model.state_dict().items()}

    first, again, other = sft_weights(0), sft_weights(0), sft_weights(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(k in other and other[k].shape == first[k].shape and not torch.equal(first[k], other[k]) for k in first)


def test_first_wrong_step_finds_the_first_line_that_slips():
    problem = Problem((12, 7, 3, 5), ("+", "*", "-"))  # 12 + 7 = 19, 19 * 3 = 57, 57 - 5 = 52
    assert parse_question(problem.question) == problem
    assert first_wrong_step(problem, problem.solution) is None
    slip = problem.solution.replace("19 * 3 = 57", "19 * 3 = 47").replace("57 - 5 = 52", "47 - 5 = 42")
    assert first_wrong_step(problem, slip) == 1  # the later line follows from the slip, but the slip is first
    assert first_wrong_step(problem, problem.solution.replace("{52}", "{53}")) == 3  # only the answer line
    assert first_wrong_step(problem, "12 + 7 = 19") == 1  # stopped early: wrong at its first missing line
    row = to_prompt_row(problem)
    assert first_wrong_step_of_row(row, slip) == 1
    with pytest.raises(ValueError, match="not a demo question"):
        parse_question("What is the answer?")


def test_first_wrong_char_points_at_the_slip():
    problem = Problem((12, 7, 3, 5), ("+", "*", "-"))
    slip = problem.solution.replace("19 * 3 = 57", "19 * 3 = 47")
    # "12 + 7 = 19\n" is 12 characters, "19 * 3 = " 9 more: the "4" is character 21
    assert first_wrong_char(problem, slip) == 21 and slip[21] == "4"
    assert first_wrong_char(problem, problem.solution) is None
    assert first_wrong_char(problem, problem.solution + "\n") is None  # trailing whitespace is not a step
    assert first_wrong_char(problem, "12 + 7 = 19") == 11  # stopped early: where it ends
    assert first_wrong_char(problem, problem.solution + " 1") == len(problem.solution)  # ran on


def test_training_curves_show_what_refilling_found_instead_of_a_kept_fraction_of_one():
    from prime_trl.demo.plots import panel_curves

    masking = [{"step": 1, "filter/kept_fraction": 0.5, "prm/loss": 0.7}]
    refill = [{"step": 1, "filter/kept_fraction": 1.0, "sampling/informative_fraction": 0.4}]
    assert panel_curves(masking)[-1][0] == "filter/kept_fraction"
    assert panel_curves(refill)[-1][0] == "sampling/informative_fraction"
    assert [key for key, _ in panel_curves(masking)][:2] == ["rewards/math_reward/mean", "prm/loss"]
