"""PRM health of a saved PRM on a rollout pool, next to the reference's own log-likelihood as a baseline.

A rollout pool (one JSON record per prompt: prompt, completions, scores, optionally first_wrong_steps; the
demo writes `prm_pool.jsonl`, `prime-trl eval` writes `samples.jsonl`) goes in, the `prime_trl.prm_health`
metrics come out for:
- "reference log-likelihood": r_t = log pi_ref(y_t | y_<t), the score an untrained model already gives; an
  implicit PRM is worth its training only where it beats this;
- "PRM" (with `--prm`): the implicit reward r_t = beta * log(pi_prm / pi_ref);
- "policy drift" (with `--policy`, the policy trained alongside that PRM): r_t = log(pi_policy / pi_ref), how far
  the policy's own RL update has moved each token. The PRM learns from the same rollouts and labels by a
  likelihood-ratio gradient much like the policy's, so its rewards are worth adding only where they rank
  better than this drift; with both, the token-level correlation of the two is printed as well.
With `--demo-slips` (a pool of the demo's arithmetic task, which knows where each wrong rollout first leaves
its worked solution), it also prints each model's mean token reward on wrong rollouts before, at and after
that first wrong token and on right rollouts, and per digit: dense credit needs the first wrong token to
stand out, and a digit that scores low everywhere is a feature the policy can chase, not a slip.

    python bench/prm_health.py --pool prime-demo/prm_pool.jsonl --ref prime-demo/sft \\
        --prm prime-demo/prime/prm --step-separators '\\n'

A fixed pool holds the rollouts of the model that sampled it. PRIME scores the current policy's rollouts, so
`--sample-from MODEL` first samples a fresh pool from MODEL (usually the trained policy) on held-out problems
(`--demo-dir D`: the demo's eval split, with the task's first wrong steps; or `--problems rows.jsonl`), writes
it to `--pool` and scores that:

    python bench/prm_health.py --sample-from prime-demo/prime --demo-dir prime-demo --num-problems 500 \\
        --pool onpolicy_pool.jsonl --ref prime-demo/sft --prm prime-demo/prime/prm --policy prime-demo/prime \\
        --step-separators '\\n' --demo-slips
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerank import demo_eval_rows  # noqa: E402

SLIP_PARTS = ("wrong: before", "wrong: first wrong token", "wrong: after", "right")


def slip_breakdown(rows: list[torch.Tensor], completion_ids: list[list[int]], scores: torch.Tensor,
                   problems: list, tokenizer) -> dict[str, dict[str, float]]:  # fmt: skip
    """Mean, std and count of r_t in each of `SLIP_PARTS` and on each digit token ("digit 0" ... "digit 9").

    rows[i]: (|y_i|,) token rewards of pool row i; completion_ids[i] its tokens; scores: (N,) outcomes, >= 0.5
    right; problems[i]: the row's `prime_trl.demo.task.Problem`. A wrong row whose text is the worked solution
    (a label the text disagrees with) is left out of the parts.
    """
    from prime_trl.demo.task import first_wrong_token

    parts: dict[str, list[float]] = {name: [] for name in SLIP_PARTS}
    for rewards, ids, score, problem in zip(rows, completion_ids, scores.tolist(), problems):
        values = rewards.tolist()
        if score >= 0.5:
            parts["right"] += values
            continue
        k = first_wrong_token(problem, ids, tokenizer)
        if k is not None:
            parts["wrong: before"] += values[:k]
            parts["wrong: first wrong token"].append(values[k])
            parts["wrong: after"] += values[k + 1 :]
    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    for d, token in enumerate(digits):
        parts[f"digit {d}"] = [v for r, ids in zip(rows, completion_ids) for v, t in zip(r.tolist(), ids) if t == token]
    summary = {}
    for name, values in parts.items():
        t = torch.tensor(values, dtype=torch.float64)
        std = t.std().item() if len(values) > 1 else float("nan")
        summary[name] = {"mean": t.mean().item() if values else float("nan"), "std": std, "n": len(values)}
    return summary


def token_correlation(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Pearson correlation of two scorers' r_t over every token of a pool; a[i], b[i]: (|y_i|,) for row i."""
    x, y = torch.cat(a).double(), torch.cat(b).double()
    return torch.corrcoef(torch.stack([x, y]))[0, 1].item()


def sample_pool(args, tokenizer):
    """Sample `args.num_generations` rollouts per held-out problem from `args.sample_from` and save them to
    `args.pool`; the demo's problems carry their first wrong steps."""
    from transformers import AutoModelForCausalLM

    from prime_trl import evaluation
    from prime_trl.prm_health import sample_rollout_pool

    if (args.demo_dir is None) == (args.problems is None):
        raise SystemExit("--sample-from needs exactly one of --demo-dir and --problems: the problems to sample")
    first_wrong_step = None
    if args.demo_dir:
        from prime_trl.demo.task import first_wrong_step_of_row

        rows, first_wrong_step = demo_eval_rows(args.demo_dir, args.num_problems), first_wrong_step_of_row
    else:
        rows = evaluation.load_rows(args.problems, args.num_problems)
    model = AutoModelForCausalLM.from_pretrained(args.sample_from).eval()
    pool = sample_rollout_pool(model, tokenizer, rows, num_generations=args.num_generations,
                               max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               batch_size=args.generation_batch_size, seed=args.seed,
                               first_wrong_step=first_wrong_step)  # fmt: skip
    pool.save(args.pool)
    return pool


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", required=True, help="rollout pool (.jsonl); with --sample-from, where it is written")
    p.add_argument("--ref", required=True, help="the reference model (the model the PRM started from)")
    p.add_argument("--prm", default=None, help="a saved PRM (trainer output dir, prm/ adapter or full PRM)")
    p.add_argument("--policy", default=None, help="the policy trained alongside --prm (its trainer output dir)")
    p.add_argument("--beta", type=float, default=1.0,
                   help="scales the PRM's rewards and so the slip breakdown; the health metrics ignore it")  # fmt: skip
    p.add_argument("--step-separators", nargs="+", default=["\\n\\n"], help="escapes \\n and \\t are read")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--demo-slips", action="store_true", help="the pool is the demo task's: break rewards down by slip")
    sample = p.add_argument_group("sampling a fresh pool")
    sample.add_argument("--sample-from", default=None, help="sample the pool from this model (a trainer output dir)")
    sample.add_argument("--demo-dir", default=None, help="a `prime-trl demo` output dir: its eval split is sampled")
    sample.add_argument("--problems", default=None, help="PRIME rows (.jsonl) to sample instead of the demo's")
    sample.add_argument("--num-problems", type=int, default=500)
    sample.add_argument("--num-generations", type=int, default=4)
    sample.add_argument("--max-new-tokens", type=int, default=64)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--generation-batch-size", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_trl.generation import pad_token_id
    from prime_trl.implicit_prm import ImplicitPRM
    from prime_trl.prm import completion_logps
    from prime_trl.prm_health import (
        HEALTH_KEYS, health_of_rewards, load_rollout_pool, pool_token_rewards, tokenize_pool,
    )  # fmt: skip
    from prime_trl.scripts.rerank import parse_separators

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.ref)
    rollouts = sample_pool(args, tokenizer) if args.sample_from else load_rollout_pool(args.pool)
    pool = tokenize_pool(rollouts, tokenizer, parse_separators(args.step_separators))
    ref = AutoModelForCausalLM.from_pretrained(args.ref).eval()
    pad = pad_token_id(tokenizer)
    scorers = {"reference log-likelihood": lambda b: completion_logps(ref, b)}
    if args.prm:
        scorers["PRM"] = ImplicitPRM.from_pretrained(args.prm, args.ref, beta=args.beta).token_rewards
    if args.policy:
        policy = AutoModelForCausalLM.from_pretrained(args.policy).eval()
        scorers["policy drift"] = lambda b: completion_logps(policy, b) - completion_logps(ref, b)
    with torch.no_grad():  # each scorer's r_t once; every figure below reads them
        rewards = {name: pool_token_rewards(scorer, pool, pad, args.batch_size) for name, scorer in scorers.items()}
    results = {name: health_of_rewards(rows, pool) for name, rows in rewards.items()}
    slips = {}
    if args.demo_slips:
        from prime_trl.demo.task import parse_question

        G = pool.num_generations
        problems = [parse_question(p[-1]["content"]) for p in rollouts.prompts for _ in range(G)]
        for name, rows in rewards.items():
            slips[name] = slip_breakdown(rows, pool.completion_ids, pool.scores, problems, tokenizer)
    print(f"{'metric':<36}" + "".join(f"{name:>26}" for name in results))
    for key in HEALTH_KEYS:
        print(f"{key:<36}" + "".join(f"{r[key]:>26.3f}" for r in results.values()))
    if args.prm and args.policy:
        correlation = token_correlation(rewards["PRM"], rewards["policy drift"])
        results["token_correlation_prm_policy_drift"] = correlation
        print(f"{'token correlation, PRM ~ policy drift':<36}{correlation:>26.3f}")
    if slips:
        print(f"\nmean token reward +- std (tokens){'':<5}" + "".join(f"{name:>26}" for name in slips))
        for part in next(iter(slips.values())):
            cells = [f"{s[part]['mean']:+.3f} +- {s[part]['std']:.3f} ({s[part]['n']})" for s in slips.values()]
            print(f"{part:<36}" + "".join(f"{c:>26}" for c in cells))
        results = {"health": results, "slips": slips}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
