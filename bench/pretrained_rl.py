"""PRIME against outcome-only RLOO from a pretrained model, and its PRM on the policy's own rollouts.

`bench/pretrained_prm.py` shows that the implicit PRM learns on SmolLM2-135M-Instruct, ranked on the frozen
model's rollouts. This trains the policy, offline, on the same fact-split word problems (`prime_trl.word_problems`)
and asks what PRIME does with it:

1. Each run is `prime_trl.demo.run_rl` (the demo's RL stage; nothing in it is demo-specific) from `--model`:
   `--steps` generation batches of `--prompts-per-step` training problems x `--num-generations` rollouts (T = 1,
   `--max-new-tokens`), one policy step each, the accuracy band [0.2, 0.8] without dynamic sampling (the groups
   outside it are dropped, not refilled), and the authors' advantages otherwise (process rewards batch-norm'd,
   undiscounted, process and outcome terms at weight 1); on a GPU where there is one (fp32), else on CPU. "PRIME":
   a full copy as the implicit PRM, updated after each step (`--beta`, `--prm-learning-rate`: the recipe
   `bench/pretrained_prm.py` measured; `--prm-mini-batches` optimizer steps each), or from `--prm-init`, a PRM
   trained offline on the frozen model's rollouts (`bench/pretrained_prm.py --save-prm`), the checkpoint staying
   its reference; `--prm-update none` freezes it (an offline PRM, the paper's ablation of the online update).
   "RLOO": the same trainer with `process_reward_coef=0` and the PRM frozen, the paper's outcome-only baseline,
   which reads none of the PRM's options (its saved runs serve every PRIME variant).
2. Greedy accuracy on every held-out problem, before and after (and every `--eval-every` generation batches), kept
   per problem so the two methods are paired; from the seed-mean curves, `PRIME_sample_efficiency_vs_other`: RLOO's
   samples over those PRIME needs to reach RLOO's final accuracy, as `bench/sample_efficiency.py` computes it
   (linear between checks: with only the start and the end, a straight line).
3. PRIME's PRM on `--onpolicy` held-out problems' rollouts by the policy as it is at the start and at the end
   (`OnPolicyPRMHealthCallback`): pairwise accuracy against the reference's own likelihood on the same rollouts.
4. 95% intervals: per seed, the paired PRIME - RLOO difference with a percentile bootstrap over held-out facts (the
   evaluation's noise; a fact's problems differ only in names); over seeds, Student t (the training's own noise,
   which the bootstrap does not see; it needs 2 seeds or more).

Each finished run is saved as OUT/runs/<method>-<seed>.json and read back (refused if it was trained with other
settings), so runs can go as parallel processes (`--methods prime --seeds 0`, ...) and a last call with every method
and seed summarises into OUT/report.json and OUT/accuracy.png (accuracy against completions sampled).
`--compare RUN RUN` pairs any two saved runs of one start (two PRIME variants, say) and prints their training traces:
in-batch PRM accuracy and the share of cut-off rollouts.

    python bench/pretrained_rl.py --model M --out pretrained-rl --methods rloo --seeds 0 --threads 2
    python bench/pretrained_rl.py --model M --out pretrained-rl --methods prime --seeds 0 --threads 2
    python bench/pretrained_rl.py --model M --out pretrained-rl --seeds 0

On 2 CPU threads a PRIME step of 32 completions takes about 80 s, and a 20-step PRIME run about 46 minutes with
its two on-policy measurements: meant for a GPU, or for one seed at a short horizon on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from intervals import mean_ci  # noqa: E402
from pretrained_prm import interval, mean_of, model_dir, split_rows  # noqa: E402
from sample_efficiency import plot as plot_curves  # noqa: E402
from sample_efficiency import reach_text  # noqa: E402
from sample_efficiency import summarize as summarize_curves  # noqa: E402

METHODS = ("prime", "rloo")
# the options a saved run must share with the current ones to be read back (not --model's path, --methods, --seeds);
# RLOO's PRM is frozen and unused, so only PRIME's runs must share the PRM's options
TRAINING_OPTIONS = ("steps", "prompts_per_step", "num_generations", "max_new_tokens", "learning_rate",
                    "num_train", "num_heldout", "heldout_fraction", "split_seed", "eval_every")  # fmt: skip
PRM_OPTIONS = ("prm_learning_rate", "beta", "onpolicy", "prm_init", "prm_mini_batches", "prm_update")


def greedy_evaluator(tokenizer, rows: list[dict], max_new_tokens: int, batch_size: int = 64):
    """evaluate(model) -> greedy accuracy on `rows`; each call's per-problem results go to `evaluate.per_problem`."""
    from prime_trl.demo.evaluate import greedy_correct

    def evaluate(model) -> float:
        _, right = greedy_correct(model, tokenizer, rows, max_new_tokens, batch_size, progress=False)
        evaluate.per_problem.append(right)
        return sum(right) / len(right)

    evaluate.per_problem = []
    return evaluate


def train_run(method: str, seed: int, path: str, tokenizer, rows: dict[str, list[dict]], args) -> dict:
    """One method from the checkpoint: its accuracy curve, per-problem results, PRM health and training logs."""
    import torch

    from prime_trl.demo.rl import run_rl

    # the rewards need no fact
    train, heldout = ([{k: v for k, v in r.items() if k != "fact"} for r in rows[s]] for s in ("train", "heldout"))
    evaluate = greedy_evaluator(tokenizer, heldout, args.max_new_tokens)
    prime = method == "prime"
    start = time.time()
    trainer, curve, health = run_rl(
        path, tokenizer, train, os.path.join(args.out, "checkpoints", f"{method}-{seed}"), evaluate,
        max_steps=args.steps, prompts_per_step=args.prompts_per_step, num_generations=args.num_generations,
        learning_rate=args.learning_rate, prm_learning_rate=args.prm_learning_rate, prm_beta=args.beta,
        max_completion_length=args.max_new_tokens, eval_every=args.eval_every or args.steps, seed=seed,
        process_reward_coef=1.0 if prime else 0.0, prm_update=args.prm_update if prime else "none",
        onpolicy_rows=heldout[: args.onpolicy] if prime else None, use_cpu=not torch.cuda.is_available(),
        prm_num_mini_batches=args.prm_mini_batches if prime else 1,
        # a warmed-up PRM keeps the checkpoint as its reference: r_t measures what the warm-up learned
        prm_model_name_or_path=args.prm_init if prime else None, prm_ref_model_name_or_path=path,
    )  # fmt: skip
    return {"method": method, "seed": seed, "curve": curve, "per_problem": evaluate.per_problem, "health": health,
            "logs": trainer.state.log_history, "seconds": time.time() - start}  # fmt: skip


def fact_bootstrap(values_by_fact: dict[int, list[float]]) -> list[float | None]:
    """[mean over all problems, low, high]: the 95% percentile bootstrap resamples whole facts."""
    return interval(values_by_fact, mean_of)


def by_fact(values: list[float], facts: list[int]) -> dict[int, list[float]]:
    grouped: dict[int, list[float]] = {}
    for value, fact in zip(values, facts):
        grouped.setdefault(fact, []).append(value)
    return grouped


def paired_difference(a: list[bool], b: list[bool], facts: list[int]) -> list[float | None]:
    """Accuracy of answers `a` minus that of `b` on the same problems, with the bootstrap over facts."""
    return fact_bootstrap(by_fact([float(x) - float(y) for x, y in zip(a, b)], facts))


def summarize(runs: dict[tuple[str, int], dict], seeds: list[int], facts: list[int]) -> dict:
    """Per seed: accuracy before and after each method, and PRIME - RLOO paired by problem with its bootstrap over
    facts; over seeds: t intervals of each method's gain and of the difference; PRIME's PRM at start and end."""
    report: dict = {"num_heldout": len(facts), "num_facts": len(set(facts)), "per_seed": {}}
    for seed in seeds:
        prime, rloo = runs["prime", seed], runs["rloo", seed]
        for run in (prime, rloo):
            if any(len(answers) != len(facts) for answers in run["per_problem"]):
                raise SystemExit(f"seed {seed}: a run was evaluated on other held-out problems than the "
                                 f"{len(facts)} asked for")  # fmt: skip
        before, prime_after, rloo_after = prime["per_problem"][0], prime["per_problem"][-1], rloo["per_problem"][-1]
        if rloo["per_problem"][0] != before:
            raise SystemExit(f"seed {seed}: PRIME and RLOO start from different greedy answers; not the same model")

        keys = ("step", "prm/onpolicy_pairwise_accuracy", "prm/onpolicy_reference_pairwise_accuracy",
                "prm/onpolicy_mixed_groups")
        onpolicy = [{k: entry[k] for k in keys if k in entry} for entry in prime["health"]]
        report["per_seed"][seed] = {
            "accuracy_before": sum(before) / len(before),
            "PRIME": fact_bootstrap(by_fact([float(v) for v in prime_after], facts)),
            "RLOO": fact_bootstrap(by_fact([float(v) for v in rloo_after], facts)),
            "PRIME gain": paired_difference(prime_after, before, facts),
            "RLOO gain": paired_difference(rloo_after, before, facts),
            "PRIME - RLOO": paired_difference(prime_after, rloo_after, facts),
            "samples": {"PRIME": prime["curve"][-1]["samples"], "RLOO": rloo["curve"][-1]["samples"]},
            "onpolicy_prm": onpolicy,
        }
    curves = summarize_curves([runs["prime", s]["curve"] for s in seeds], [runs["rloo", s]["curve"] for s in seeds])
    report["sample_efficiency"] = {k: v for k, v in curves.items() if "_sample" in k or k == "num_seeds"}
    if len(seeds) > 1:
        per_seed = list(report["per_seed"].values())
        names = ("PRIME gain", "RLOO gain", "PRIME - RLOO")
        report["over_seeds"] = {name: list(mean_ci([s[name][0] for s in per_seed])) for name in names}
    return report


def training_trace(run: dict) -> dict:
    """From a saved run's training logs, per half of its steps: the mean in-batch PRM pairwise accuracy
    (`prm/accuracy`: the groups inside the band, scored before the PRM's update; absent for RLOO) and the share of
    cut-off rollouts (`completions/clipped_ratio`), its value at the first step and its largest in the second half."""
    steps = [entry for entry in run["logs"] if "completions/clipped_ratio" in entry]
    halves = (steps[: len(steps) // 2], steps[len(steps) // 2 :])
    trace = {"cut-off share, first step": steps[0]["completions/clipped_ratio"],
             "cut-off share, most in the second half": max(e["completions/clipped_ratio"] for e in halves[1])}
    for name, half in zip(("first", "second"), halves):
        accuracies = [e["prm/accuracy"] for e in half if "prm/accuracy" in e]
        if accuracies:
            trace[f"in-batch PRM pairwise accuracy, {name} half"] = sum(accuracies) / len(accuracies)
    return trace


def compare_runs(paths: list[str], facts: list[int]) -> dict:
    """Two saved runs of the same held-out problems (any methods or options): the first's final accuracy minus the
    second's, paired by problem with the bootstrap over facts, and each run's training trace."""
    first, second = (json.loads(Path(path).read_text()) for path in paths)
    if first["per_problem"][0] != second["per_problem"][0] or len(first["per_problem"][0]) != len(facts):
        raise SystemExit(f"{paths[0]} and {paths[1]} do not start from the same greedy answers on these "
                         f"{len(facts)} held-out problems")  # fmt: skip
    return {"difference": paired_difference(first["per_problem"][-1], second["per_problem"][-1], facts),
            "traces": {path: training_trace(run) for path, run in zip(paths, (first, second))}}  # fmt: skip


def print_report(report: dict) -> None:
    print(f"\nheld-out greedy accuracy on {report['num_heldout']} problems ({report['num_facts']} facts), "
          "mean [95% bootstrap over facts]")  # fmt: skip
    for seed, s in report["per_seed"].items():
        print(f"seed {seed}: before {s['accuracy_before']:.3f}; " + "; ".join(
            f"{name} {s[name][0]:.3f} [{s[name][1]:.3f}, {s[name][2]:.3f}]" for name in ("PRIME", "RLOO")))
        print("  paired by problem: " + "; ".join(
            f"{name} {s[name][0]:+.3f} [{s[name][1]:+.3f}, {s[name][2]:+.3f}]"
            for name in ("PRIME gain", "RLOO gain", "PRIME - RLOO")))
        for entry in s["onpolicy_prm"]:
            print(f"  PRIME's PRM on the policy's rollouts, step {entry['step']}: pairwise accuracy "
                  f"{entry.get('prm/onpolicy_pairwise_accuracy', float('nan')):.3f}, the reference's likelihood "
                  f"{entry.get('prm/onpolicy_reference_pairwise_accuracy', float('nan')):.3f}"
                  + (f" ({entry['prm/onpolicy_mixed_groups']:.0f} groups with both outcomes)"
                     if "prm/onpolicy_mixed_groups" in entry else ""))
    for name, (mean, half) in report.get("over_seeds", {}).items():
        print(f"over seeds (t): {name} {mean:+.3f} ± {half:.3f}")
    for name, other in (("PRIME", "RLOO"), ("RLOO", "PRIME")):
        print(f"{name} reaches {other}'s final accuracy on the seed-mean curves: "
              f"{reach_text(report['sample_efficiency'], name)}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a Hugging Face model directory or a .gguf file (needed unless --compare)")
    p.add_argument("--out", help="where the runs, the converted model and report.json go (needed unless --compare)")
    p.add_argument("--compare", nargs=2, metavar="RUN", default=None,
                   help="two saved runs (OUT/runs/<method>-<seed>.json): print the first's accuracy minus the "
                        "second's, paired, and their training traces; trains nothing")  # fmt: skip
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20, help="generation batches per run")
    p.add_argument("--eval-every", type=int, default=None,
                   help="generation batches between held-out evaluations (default: only at the start and the end)")
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--learning-rate", type=float, default=5e-6, help="policy learning rate")
    p.add_argument("--prm-learning-rate", type=float, default=5e-6)
    p.add_argument("--beta", type=float, default=0.5, help="prm_beta; 24-token answers, not the authors' ~1,000")
    p.add_argument("--prm-mini-batches", type=int, default=1, help="PRM optimizer steps per generation batch")
    p.add_argument("--prm-update", choices=("after", "none"), default="after",
                   help="PRIME's PRM learns online after scoring (the authors'), or stays frozen ('none')")
    p.add_argument("--prm-init", default=None, metavar="DIR",
                   help="PRIME's PRM starts from this model (bench/pretrained_prm.py --save-prm), not the checkpoint")
    p.add_argument("--onpolicy", type=int, default=128, help="held-out problems PRIME's PRM is measured on")
    p.add_argument("--num-train", type=int, default=None, help="at most this many training problems (all 252)")
    p.add_argument("--num-heldout", type=int, default=None, help="at most this many held-out problems (all 252)")
    p.add_argument("--heldout-fraction", type=float, default=0.5)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.compare:
        comparison = compare_runs(args.compare, [r["fact"] for r in split_rows(args)["heldout"]])
        value, low, high = comparison["difference"]
        print(f"{args.compare[0]} - {args.compare[1]}, paired by problem: {value:+.3f} [{low:+.3f}, {high:+.3f}]")
        for path, trace in comparison["traces"].items():
            print(f"{path}: " + "; ".join(f"{name} {v:.3f}" for name, v in trace.items()))
        return 0
    if not (args.model and args.out):
        p.error("--model and --out are needed to train or summarise")

    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    path = model_dir(args.model, args.out)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = split_rows(args)
    runs = {}
    for seed in args.seeds:
        for method in args.methods:
            saved = os.path.join(args.out, "runs", f"{method}-{seed}.json")
            if not os.path.isfile(saved):  # a finished run is read back: runs can go as parallel processes
                run = train_run(method, seed, path, tokenizer, rows, args)
                with open(saved + ".tmp", "w") as f:
                    json.dump({**run, "settings": vars(args)}, f, default=float)
                os.replace(saved + ".tmp", saved)  # another process never reads half a file
            with open(saved) as f:
                runs[method, seed] = json.load(f)
            checked = TRAINING_OPTIONS + (PRM_OPTIONS if method == "prime" else ())
            settings = runs[method, seed]["settings"]  # a run saved before an option existed had its default
            differing = [k for k in checked if settings.get(k, p.get_default(k)) != getattr(args, k)]
            if differing:
                options = ", ".join("--" + k.replace("_", "-") for k in differing)
                raise SystemExit(f"{saved} was trained with other {options}; move it away or pass the options it "
                                 "was trained with")  # fmt: skip
    if set(args.methods) != set(METHODS):
        return 0  # one method's runs: the summary needs both
    report = summarize(runs, args.seeds, [r["fact"] for r in rows["heldout"]])
    print_report(report)
    plot_curves({name: [runs[method, s]["curve"] for s in args.seeds] for name, method in
                 (("PRIME", "prime"), ("RLOO (outcome only)", "rloo"))}, os.path.join(args.out, "accuracy.png"))
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump({**report, "settings": vars(args)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
