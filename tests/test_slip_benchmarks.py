"""The demo task's first wrong token and the benchmarks built on it: the oracle PRM and the slip breakdown."""

import pytest
import torch

from prime_trl.demo.task import Problem, first_wrong_token, make_demo_splits, tokenizer_corpus
from prime_trl.prm import CompletionBatch
from prime_trl.tiny import build_tokenizer

from bench_scripts import load_bench

oracle_credit, prm_health_bench = load_bench("oracle_credit"), load_bench("prm_health")

PROBLEM = Problem((12, 7, 3, 5), ("+", "*", "-"))  # 12 + 7 = 19, 19 * 3 = 57, 57 - 5 = 52
SLIP = PROBLEM.solution.replace("19 * 3 = 57", "19 * 3 = 47").replace("57 - 5 = 52", "47 - 5 = 42")


def demo_tokenizer():
    corpus = tokenizer_corpus(make_demo_splits(num_sft=200, num_rl=0, num_eval=0)["sft"])
    return build_tokenizer([*corpus, "user\nassistant\nsystem\n"], vocab_size=300, individual_digits=True)


def prompt_batch(tokenizer, texts: list[str]) -> tuple[CompletionBatch, list[list[int]]]:
    """`texts` as completions of PROBLEM's question, laid out as GRPO does; also their token ids."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROBLEM.question}], tokenize=False,
                                           add_generation_prompt=True)  # fmt: skip
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completions = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    T = max(map(len, completions)) + 2  # two padding tokens on the longest row too
    rows = [prompt_ids + c + [tokenizer.pad_token_id] * (T - len(c)) for c in completions]
    completion_mask = torch.tensor([[1] * len(c) + [0] * (T - len(c)) for c in completions])
    attention_mask = torch.cat([torch.ones(len(texts), len(prompt_ids), dtype=torch.long), completion_mask], dim=1)
    return CompletionBatch(torch.tensor(rows), attention_mask, completion_mask), completions


def test_first_wrong_token_is_the_token_of_the_slip():
    tokenizer = demo_tokenizer()
    ids = tokenizer(SLIP, add_special_tokens=False)["input_ids"]
    k = first_wrong_token(PROBLEM, ids, tokenizer)
    assert tokenizer.decode(ids[: k + 1]).endswith("19 * 3 = 4")  # digits are single tokens: the "4" itself
    solution_ids = tokenizer(PROBLEM.solution, add_special_tokens=False)["input_ids"]
    assert first_wrong_token(PROBLEM, solution_ids, tokenizer) is None


def test_oracle_rewards_only_the_slip_of_wrong_rows():
    tokenizer = demo_tokenizer()
    batch, completions = prompt_batch(tokenizer, [SLIP, PROBLEM.solution])

    rewards, metrics = oracle_credit.OracleProcessRewards(tokenizer).learn("none", batch, torch.tensor([0.0, 1.0]))

    k = first_wrong_token(PROBLEM, completions[0], tokenizer)
    expected = torch.zeros(batch.completion_mask.shape)
    expected[0, k] = -1.0
    assert torch.equal(rewards, expected) and metrics == {}


def test_slip_breakdown_splits_rewards_around_the_first_wrong_token():
    tokenizer = demo_tokenizer()
    slip_ids, right_ids = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (SLIP, PROBLEM.solution))
    k = first_wrong_token(PROBLEM, slip_ids, tokenizer)
    # wrong row: 0.5 before the slip, -2 on it, 0.1 after; right row: 0.3 on every token
    wrong = torch.tensor([0.5] * k + [-2.0] + [0.1] * (len(slip_ids) - k - 1))
    right = torch.full((len(right_ids),), 0.3)
    summary = prm_health_bench.slip_breakdown(
        [wrong, right], [slip_ids, right_ids], torch.tensor([0.0, 1.0]), [PROBLEM, PROBLEM], tokenizer
    )
    assert summary["wrong: before"]["mean"] == pytest.approx(0.5) and summary["wrong: before"]["n"] == k
    assert summary["wrong: first wrong token"]["mean"] == pytest.approx(-2.0)
    assert summary["wrong: first wrong token"]["n"] == 1
    after = summary["wrong: after"]
    assert after["mean"] == pytest.approx(0.1) and after["std"] == pytest.approx(0.0)
    assert summary["right"]["mean"] == pytest.approx(0.3) and summary["right"]["n"] == len(right_ids)
    # the wrong row's 4s: the slip's "47", then "47 - 5 = 42" after it; the right row has none
    assert summary["digit 4"]["mean"] == pytest.approx((-2.0 + 0.1 + 0.1) / 3) and summary["digit 4"]["n"] == 3


def test_noisy_oracle_adds_seeded_noise_on_completion_tokens_only():
    tokenizer = demo_tokenizer()
    batch, (ids,) = prompt_batch(tokenizer, [SLIP])
    labels = torch.tensor([0.0])
    clean, _ = oracle_credit.OracleProcessRewards(tokenizer).learn("none", batch, labels)
    noisy, _ = oracle_credit.OracleProcessRewards(tokenizer, noise_std=0.3, seed=1).learn("none", batch, labels)
    again, _ = oracle_credit.OracleProcessRewards(tokenizer, noise_std=0.3, seed=1).learn("none", batch, labels)
    assert torch.equal(noisy, again)  # seeded
    assert torch.equal(noisy[:, -2:], torch.zeros(1, 2))  # padding untouched
    residual = (noisy - clean)[:, : len(ids)]
    assert residual.abs().min() > 0 and 0.1 < residual.std() < 0.6  # sigma 0.3 on every completion token


def test_token_correlation_pools_every_token_of_every_row():
    # tokens (1, 2, 3) against (2, 4, 6) across two rows: a perfect line; reversed: -1
    a = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    assert prm_health_bench.token_correlation(a, [torch.tensor([2.0, 4.0]), torch.tensor([6.0])]) == pytest.approx(1.0)
    assert prm_health_bench.token_correlation(a, [torch.tensor([3.0, 2.0]), torch.tensor([1.0])]) == pytest.approx(-1.0)
    # (1, 2, 3) against (1, 3, 2): covariance 1/2 over variance 1 each (population): 0.5
    assert prm_health_bench.token_correlation(a, [torch.tensor([1.0, 3.0]), torch.tensor([2.0])]) == pytest.approx(0.5)


def test_policy_drift_next_to_the_prm(tmp_path, tiny_model_dir, capsys):
    """A policy saved as the PRM's exact copy drifts exactly as the PRM rewards (beta 1): correlation 1, same health;
    the reference as its own policy drifts nowhere: every r_t = 0, pairwise accuracy exactly chance."""
    import json

    from transformers import AutoModelForCausalLM

    from prime_trl.prm_health import RolloutPool

    moved = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn_like(p))
    moved.save_pretrained(tmp_path / "moved")
    pool = RolloutPool(["What is 1 + 1?", "What is 2 + 2?"], [["2", "3", "1 1", "2 2"], ["4", "5 5", "4 4", "44"]],
                       [[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])  # fmt: skip
    pool.save(str(tmp_path / "pool.jsonl"))

    def run(policy: str) -> dict:
        argv = ["--pool", str(tmp_path / "pool.jsonl"), "--ref", tiny_model_dir, "--prm", str(tmp_path / "moved"),
                "--policy", policy, "--beta", "1.0"]  # fmt: skip
        assert prm_health_bench.main(argv) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    twin = run(str(tmp_path / "moved"))
    assert twin["token_correlation_prm_policy_drift"] == pytest.approx(1.0)
    assert twin["policy drift"] == pytest.approx(twin["PRM"], nan_ok=True)  # no first wrong steps: NaN
    assert twin["PRM"]["heldout_pairwise_accuracy"] != 0.5  # the copy moved: the test can tell the two apart
    still = run(tiny_model_dir)
    assert still["policy drift"]["heldout_pairwise_accuracy"] == 0.5


def test_sample_from_scores_a_fresh_pool_of_the_model(tmp_path, tiny_model_dir, capsys):
    """`--sample-from` writes the pool `sample_rollout_pool` samples with the same settings, and reports exactly
    what scoring that saved pool with `--pool` alone reports; without a problem set it says which options it needs."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_trl.prm_health import load_rollout_pool, sample_rollout_pool

    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "ground_truth": str(i + 1),
             "ability": "math", "data_source": "toy"} for i in range(3)]  # fmt: skip
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool_path = str(tmp_path / "sampled.jsonl")
    common = ["--ref", tiny_model_dir, "--prm", tiny_model_dir]
    sampling = ["--sample-from", tiny_model_dir, "--problems", str(tmp_path / "rows.jsonl"), "--num-generations", "2",
                "--max-new-tokens", "6", "--seed", "3"]  # fmt: skip
    assert prm_health_bench.main(["--pool", pool_path, *common, *sampling]) == 0
    sampled_report = capsys.readouterr().out.strip().splitlines()[-1]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    expected = sample_rollout_pool(model, AutoTokenizer.from_pretrained(tiny_model_dir), rows, num_generations=2,
                                   max_new_tokens=6, batch_size=64, seed=3)  # fmt: skip
    saved = load_rollout_pool(pool_path)
    assert (saved.completions, saved.scores) == (expected.completions, expected.scores)
    assert prm_health_bench.main(["--pool", pool_path, *common]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == sampled_report

    with pytest.raises(SystemExit, match="--demo-dir and --problems"):
        prm_health_bench.main(["--pool", pool_path, *common, "--sample-from", tiny_model_dir])
