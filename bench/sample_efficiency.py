"""PRIME vs outcome-only RLOO on the demo task: held-out accuracy against completions sampled.

Same SFT start (a `prime-trl demo` output directory), same number of sampled completions, several seeds.
"PRIME" uses the demo's `process_reward_coef`; "outcome-only RLOO" is the same trainer with
`process_reward_coef=0` and a frozen PRM (the paper's "RLOO w/ OV only"; the PRM then runs no pass at all).
Prints accuracy against samples for both, and the ratio of samples each needs to reach the other's final
accuracy; writes `sample_efficiency.png` and `sample_efficiency.json`. A benchmark, not a test.

    prime-trl demo --output-dir prime-demo
    python bench/sample_efficiency.py --demo-dir prime-demo --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

# name -> process_reward_coef (None: the demo run's own weight)
METHODS = {"PRIME": None, "RLOO (outcome only)": 0.0}


def samples_to_reach(curve: list[dict], target: float) -> float | None:
    """Completions sampled when the (linearly interpolated) accuracy first reaches `target`; None if never."""
    previous = None
    for point in curve:
        if point["accuracy"] >= target:
            if previous is None or point["accuracy"] == previous["accuracy"]:
                return float(point["samples"])
            frac = (target - previous["accuracy"]) / (point["accuracy"] - previous["accuracy"])
            return previous["samples"] + frac * (point["samples"] - previous["samples"])
        previous = point
    return None


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Point-wise mean over seeds (all curves share the same sample grid)."""
    return [
        {"samples": points[0]["samples"], "accuracy": sum(p["accuracy"] for p in points) / len(points)}
        for points in zip(*curves)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", required=True, help="output of `prime-trl demo` (its sft/ and eval.json)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the demo's)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between accuracy checks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", default=None, help="default: <demo-dir>/sample_efficiency")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from prime_trl.demo import DemoArguments, demo_splits, evaluate_accuracy, plot_accuracy_curve, run_rl

    torch.set_num_threads(args.threads)
    recorded = json.load(open(os.path.join(args.demo_dir, "eval.json")))["args"]
    demo = DemoArguments(**recorded)
    splits = demo_splits(demo)
    sft_dir = os.path.join(args.demo_dir, "sft")
    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    out_dir = args.output_dir or os.path.join(args.demo_dir, "sample_efficiency")
    os.makedirs(out_dir, exist_ok=True)

    def accuracy(model):
        return evaluate_accuracy(model, tokenizer, splits["eval"], demo.max_completion_length,
                                 demo.eval_batch_size, progress=False)["accuracy"]  # fmt: skip

    curves: dict[str, list[list[dict]]] = {name: [] for name in METHODS}
    started = time.time()
    for seed in args.seeds:
        for name, coef in METHODS.items():  # alternate methods within a seed
            coef = demo.process_reward_coef if coef is None else coef
            print(f"== seed {seed}: {name}", flush=True)
            _, curve, _ = run_rl(
                sft_dir, tokenizer, splits["rl"], os.path.join(out_dir, f"run-{seed}-{coef}"), accuracy,
                process_reward_coef=coef, max_steps=args.steps or demo.rl_max_steps,
                prompts_per_step=demo.rl_prompts_per_step, num_generations=demo.num_generations,
                learning_rate=demo.rl_learning_rate, prm_learning_rate=demo.prm_learning_rate, prm_beta=demo.prm_beta,
                max_completion_length=demo.max_completion_length, eval_every=args.eval_every or demo.rl_eval_every,
                seed=seed, process_reward_norm=demo.process_reward_norm, prm_update="after" if coef else "none",
            )  # fmt: skip
            curves[name].append(curve)

    means = {name: mean_curve(runs) for name, runs in curves.items()}
    prime, rloo = means["PRIME"], means["RLOO (outcome only)"]
    print(f"\nheld-out greedy accuracy ({len(splits['eval'])} problems), mean over seeds {args.seeds}:")
    print(f"{'samples':>8} {'PRIME':>8} {'RLOO':>8}")
    for p, r in zip(prime, rloo):
        print(f"{p['samples']:>8} {p['accuracy']:>8.3f} {r['accuracy']:>8.3f}")
    report = {"seeds": args.seeds, "curves": curves, "mean_curves": means, "wall_s": time.time() - started}
    for name, mine, other in (("PRIME", prime, rloo), ("RLOO", rloo, prime)):
        target = other[-1]["accuracy"]
        needed = samples_to_reach(mine, target)
        ratio = None if needed in (None, 0) else other[-1]["samples"] / needed
        report[f"{name}_samples_to_reach_other_final"] = needed
        report[f"{name}_sample_efficiency_vs_other"] = ratio
        verdict = "never" if needed is None else f"{needed:.0f} samples (x{ratio:.2f} vs the other's budget)"
        print(f"{name} reaches the other's final accuracy {target:.3f} after: {verdict}")
    plot_accuracy_curve(means, os.path.join(out_dir, "sample_efficiency.png"))
    with open(os.path.join(out_dir, "sample_efficiency.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out_dir}/sample_efficiency.png and .json ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
