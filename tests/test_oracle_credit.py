"""The oracle-credit benchmark's stand-in PRM: -1 on the first wrong token of a wrong rollout, nothing else."""

import importlib.util
import os

import torch

from prime_trl.demo.task import Problem, make_demo_splits, tokenizer_corpus
from prime_trl.prm import CompletionBatch
from prime_trl.tiny import build_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("oracle_credit", os.path.join(ROOT, "bench", "oracle_credit.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

PROBLEM = Problem((12, 7, 3, 5), ("+", "*", "-"))  # 12 + 7 = 19, 19 * 3 = 57, 57 - 5 = 52
SLIP = PROBLEM.solution.replace("19 * 3 = 57", "19 * 3 = 47").replace("57 - 5 = 52", "47 - 5 = 42")


def demo_tokenizer():
    corpus = tokenizer_corpus(make_demo_splits(num_sft=200, num_rl=0, num_eval=0)["sft"])
    return build_tokenizer([*corpus, "user\nassistant\nsystem\n"], vocab_size=300, individual_digits=True)


def test_first_wrong_token_is_the_token_of_the_slip():
    tokenizer = demo_tokenizer()
    ids = tokenizer(SLIP, add_special_tokens=False)["input_ids"]
    k = bench.first_wrong_token(ids, tokenizer, PROBLEM)
    assert tokenizer.decode(ids[: k + 1]).endswith("19 * 3 = 4")  # digits are single tokens: the "4" itself
    solution_ids = tokenizer(PROBLEM.solution, add_special_tokens=False)["input_ids"]
    assert bench.first_wrong_token(solution_ids, tokenizer, PROBLEM) is None


def test_oracle_rewards_only_the_slip_of_wrong_rows():
    tokenizer = demo_tokenizer()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROBLEM.question}], tokenize=False,
                                           add_generation_prompt=True)  # fmt: skip
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completions = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in (SLIP, PROBLEM.solution)]
    T = max(map(len, completions))
    pad = tokenizer.pad_token_id
    rows = [prompt_ids + c + [pad] * (T - len(c)) for c in completions]
    completion_mask = torch.tensor([[1] * len(c) + [0] * (T - len(c)) for c in completions])
    attention_mask = torch.cat([torch.ones(2, len(prompt_ids), dtype=torch.long), completion_mask], dim=1)
    batch = CompletionBatch(torch.tensor(rows), attention_mask, completion_mask)

    rewards, metrics = bench.OracleProcessRewards(tokenizer).learn("none", batch, torch.tensor([0.0, 1.0]))

    k = bench.first_wrong_token(completions[0], tokenizer, PROBLEM)
    expected = torch.zeros(2, T)
    expected[0, k] = -1.0
    assert torch.equal(rewards, expected) and metrics == {}
