"""bench/pretrained_prm.py: the fact-disjoint word-problem split, per-group pairwise accuracy, the intervals, and
a run end to end on the tiny model (the real checkpoint is the benchmark's, too slow for a test)."""

import argparse
import json
import re

import pytest
import torch

from prime_trl.prm_health import RolloutPool
from prime_trl.word_problems import NUM_FACTS, NUM_PROBLEMS, fact_split, problem, problem_rows

from bench_scripts import load_bench

bench = load_bench("pretrained_prm")


def test_the_family_has_504_distinct_problems_and_126_facts():
    assert len({problem(i) for i in range(NUM_PROBLEMS)}) == NUM_PROBLEMS
    assert problem(NUM_PROBLEMS + 5) == problem(5)
    # problem i asks fact i % 126: the same operation and operands under another name
    for i in (3, 4):
        (q, a), (q2, a2) = problem(i), problem(i + NUM_FACTS)
        assert re.findall(r"\d+|more|away", q) == re.findall(r"\d+|more|away", q2) and a == a2 and q != q2


def test_fact_split_shares_no_fact_and_covers_every_problem():
    train, heldout = fact_split(heldout_fraction=0.25, seed=3)
    assert sorted(train + heldout) == list(range(NUM_PROBLEMS))
    assert not {i % NUM_FACTS for i in train} & {i % NUM_FACTS for i in heldout}
    assert len({i % NUM_FACTS for i in heldout}) == round(0.25 * NUM_FACTS)
    assert fact_split(0.25, seed=3) == (train, heldout) and fact_split(0.25, seed=4) != (train, heldout)
    assert [r["fact"] for r in problem_rows(heldout[:3])] == [i % NUM_FACTS for i in heldout[:3]]
    with pytest.raises(ValueError, match="heldout_fraction"):
        fact_split(1.0)


def test_mixed_groups_and_per_group_pairwise_accuracy_by_hand():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])  # G = 2: groups 0 and 3 are mixed
    assert bench.mixed_groups(scores, 2) == [0, 3]
    rows = [torch.tensor([0.5, -1.0]), torch.tensor([0.0]),  # group 0: S = -0.5 < 0 = S_wrong: ranked wrong
            *[torch.zeros(1)] * 4,
            torch.tensor([2.0]), torch.tensor([1.0, 1.0])]  # group 3: S equal, a tie counts 1/2  # fmt: skip
    assert bench.group_pairwise_accuracies(rows, scores, [0, 3], 2) == [0.0, 0.5]
    rows[0] = torch.tensor([0.5, 1.0])  # S = 1.5 > 0: ranked right
    assert bench.group_pairwise_accuracies(rows, scores, [0], 2) == [1.0]


def test_comparison_means_differences_and_intervals():
    reference = [0.5, 1.0, 0.0, 1.0]
    prm = [[1.0, 1.0, 0.5, 1.0], [0.0, 1.0, 0.5, 1.0]]  # two seeds; per group mean 0.5, 1, 0.5, 1
    facts = [7, 7, 9, 11]
    result = bench.comparison({"ref": reference, "flat": [0.5] * 4}, prm, facts)
    assert (result["groups"], result["facts"]) == (4, 3)
    assert result["ref"][0] == pytest.approx(2.5 / 4) and result["flat"][0] == pytest.approx(0.5)
    assert result["trained PRM, mean of seeds"][0] == pytest.approx(3.0 / 4)
    assert result["trained PRM - ref"][0] == pytest.approx((0.0 + 0.0 + 0.5 + 0.0) / 4)
    assert result["trained PRM - flat"][0] == pytest.approx(0.25)
    assert result["trained PRM per seed"] == pytest.approx([0.875, 0.625])
    mean, half = result["trained PRM over seeds (t)"]
    # t interval of (0.875, 0.625): sd = 0.25 / sqrt(2), half-width = 12.706 * sd / sqrt(2) = 12.706 * 0.125
    assert mean == pytest.approx(0.75) and half == pytest.approx(12.706 * 0.125)
    for key in ("ref", "trained PRM, mean of seeds", "trained PRM - ref"):
        value, low, high = result[key]
        assert low <= value <= high
    # resampling facts: fact 9 alone gives a difference of 0.5, facts 7 and 11 alone 0; no resample goes beyond
    assert result["trained PRM - ref"][1] >= 0.0 and result["trained PRM - ref"][2] <= 0.5


def test_cut_off_wrong_rollouts_join_no_pair():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0])
    texts = ["2 + 3 = 5. The answer is \\boxed{5}.", "2 + 3 = 6. The answer is \\boxed{6}.",
             "2 + 3 = 6. The answer is \\boxed{6", "2 + 3 = 5. The answer is \\boxed{5}."]  # fmt: skip
    left = bench.unanswered_wrong_left_out(scores, texts)
    assert left[:2].tolist() == [1.0, 0.0] and torch.isnan(left[2]) and left[3] == 1.0
    assert bench.mixed_groups(left, 2) == [0]  # the second group's only wrong rollout is cut off
    rows = [torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([9.0]), torch.tensor([0.0])]
    assert bench.group_pairwise_accuracies(rows, left, [0], 2) == [1.0]


ANSWER = "{} = {}. The answer is \\boxed{{{}}}."


def hand_made_pool(rows: list[dict]) -> RolloutPool:
    """Two right and two wrong rollouts per problem: a mixed group each, whatever a random model would sample."""
    prompts, completions, scores = [], [], []
    for r in rows:
        question = r["prompt"][-1]["content"]
        op = "+" if "more" in question else "-"
        a, b = map(int, re.findall(r"\d+", question))
        right, wrong = int(r["ground_truth"]), int(r["ground_truth"]) + 1
        completions.append([ANSWER.format(f"{a} {op} {b}", v, v) for v in (right, wrong, right, wrong)])
        prompts.append(r["prompt"])
        scores.append([1.0, 0.0, 1.0, 0.0])
    return RolloutPool(prompts, completions, scores)


@pytest.fixture
def hand_made_out(tiny_model_dir, tmp_path):
    args = argparse.Namespace(heldout_fraction=0.5, split_seed=0, num_train=3, num_heldout=2)
    for split, rows in bench.split_rows(args).items():
        hand_made_pool(rows).save(str(tmp_path / f"{split}_pool.jsonl"))
    return tmp_path


def test_end_to_end_on_saved_pools(tiny_model_dir, hand_made_out, capsys):
    out = hand_made_out
    argv = ["--model", tiny_model_dir, "--out", str(out), "--num-train", "3", "--num-heldout", "2", "--seeds", "0", "1",
            "--learning-rate", "1e-3", "--epochs", "4", "--groups-per-step", "1", "--beta", "0.5",
            "--save-prm", str(out / "prm")]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads((out / "report.json").read_text())
    assert result["train_mixed_groups"] == 3 and result["all"]["groups"] == 2
    assert result["answered"]["groups"] == 2  # every hand-made wrong rollout is a complete answer
    for first, *_, last in result["prm_loss_per_epoch"]:
        assert last < first - 0.05  # each seed's update moves its PRM
    # the per-group accuracies the intervals use agree with the library's pool-level metric
    for k, seed in enumerate((0, 1)):
        library = result["health"][f"PRM seed {seed}"]["heldout_pairwise_accuracy"]
        assert result["all"]["trained PRM per seed"][k] == pytest.approx(library)
    reference = result["health"]["reference log-likelihood"]["heldout_pairwise_accuracy"]
    assert result["all"]["reference log-likelihood"][0] == pytest.approx(reference)
    assert result["all"]["shorter first"][0] == 0.5  # right and wrong hand-made answers have the same length
    printed = capsys.readouterr().out
    assert printed.count("trained PRM - reference log-likelihood") == 2  # all groups, then answered ones
    # --save-prm kept the first seed's PRM: scored again from disk, it reproduces seed 0's held-out health
    from functools import partial

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_trl.prm import completion_logps
    from prime_trl.prm_health import health_of_rewards, load_rollout_pool, pool_token_rewards, tokenize_pool

    pool = tokenize_pool(load_rollout_pool(str(out / "heldout_pool.jsonl")), AutoTokenizer.from_pretrained(out / "prm"))
    with torch.no_grad():
        prm, ref = (pool_token_rewards(partial(completion_logps, AutoModelForCausalLM.from_pretrained(d).eval()), pool)
                    for d in (out / "prm", tiny_model_dir))  # fmt: skip
    health = health_of_rewards([0.5 * (a - b) for a, b in zip(prm, ref)], pool)
    for seed, agrees in ((0, True), (1, False)):
        saved = result["health"][f"PRM seed {seed}"]["heldout_length_correlation"]
        assert (health["heldout_length_correlation"] == pytest.approx(saved, abs=1e-5)) is agrees
    assert printed.count("trained PRM per seed") == 2


def test_pools_are_sampled_once_and_a_pool_of_other_problems_is_refused(tiny_model_dir, tmp_path):
    argv = ["--model", tiny_model_dir, "--out", str(tmp_path), "--num-heldout", "2", "--num-generations", "2",
            "--max-new-tokens", "4", "--sample-only", "heldout"]  # fmt: skip
    assert bench.main(argv) == 0
    pool = tmp_path / "heldout_pool.jsonl"
    records = [json.loads(line) for line in pool.read_text().splitlines()]
    args = argparse.Namespace(heldout_fraction=0.5, split_seed=0, num_train=None,
                                                        num_heldout=2)  # fmt: skip
    assert [r["prompt"] for r in records] == [r["prompt"] for r in bench.split_rows(args)["heldout"]]
    assert all(len(r["completions"]) == 2 for r in records)
    with pytest.raises(SystemExit, match="other problems"):
        bench.main([*argv[:5], "3", *argv[6:]])  # three held-out problems asked, two saved
