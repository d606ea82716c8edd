"""PRIME vs outcome-only RLOO (and GRPO) on the demo task: held-out accuracy against completions sampled, paired seeds.

Same SFT start (a `prime-trl demo` output directory), same number of sampled completions, same held-out
prompts; each seed trains every method (paired). "PRIME" uses the demo run's recipe; "outcome-only RLOO" is
the same trainer with `process_reward_coef=0` and a frozen PRM (the paper's "RLOO w/ OV only"; the PRM then
runs no pass at all); "outcome-only GRPO" the same with `advantage_estimator="grpo"` (`--no-grpo` leaves it
out; its comparison is reported the same way, under "vs_GRPO"). Reports, each as mean ± 95% t interval over
seeds:
- final held-out accuracy of each method and their paired difference;
- the samples each needs to reach the other's final accuracy, and the headline ratio
  `PRIME_sample_efficiency_vs_other` = RLOO's budget / samples PRIME needs to reach RLOO's final accuracy
  (on the seed-mean curves; > 1: PRIME is more sample-efficient; the paper reports 2.5 at 7B), with a
  paired bootstrap interval over seeds;
- PRIME's PRM health on the demo's held-out pool (`prm/heldout_*`) at the end.
Writes `sample_efficiency.png` and `sample_efficiency.json`. A benchmark, not a test. Each finished run leaves
`run-<seed>-<method>/curve.json`, which a later invocation reads instead of training again, so seeds can run
as parallel processes (`--seeds 0`, `--seeds 1`, ...) and one last call with every seed summarises them.

    prime-trl demo --output-dir prime-demo
    python bench/sample_efficiency.py --demo-dir prime-demo --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_run import load_demo_run  # noqa: E402  (bench/demo_run.py)
from intervals import bootstrap_ci, mean_ci, paired_difference_ci  # noqa: E402

# name -> (process_reward_coef (None: the demo run's own weight), advantage_estimator)
METHODS = {"PRIME": (None, "rloo"), "RLOO (outcome only)": (0.0, "rloo"), "GRPO (outcome only)": (0.0, "grpo")}
SHORT = {"PRIME": "PRIME", "RLOO (outcome only)": "RLOO", "GRPO (outcome only)": "GRPO"}


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
    """Mean over seeds of samples and accuracy at each accuracy check (the checks fall on the same steps; with
    dynamic sampling each seed has drawn a different number of completions by then)."""
    return [
        {"samples": sum(p["samples"] for p in points) / len(points),
         "accuracy": sum(p["accuracy"] for p in points) / len(points)}  # fmt: skip
        for points in zip(*curves)
    ]


def efficiency_ratio(mine: list[dict], other: list[dict]) -> float | None:
    """other's budget / samples `mine` needs to reach other's final accuracy.

    None if `mine` never reaches it, and also if it is there from the start (0 samples: no finite ratio);
    `samples_to_reach` tells the two apart.
    """
    needed = samples_to_reach(mine, other[-1]["accuracy"])
    return None if needed in (None, 0) else other[-1]["samples"] / needed


def summarize(prime_runs: list[list[dict]], other_runs: list[list[dict]], other: str = "RLOO",
              num_resamples: int = 2000) -> dict:  # fmt: skip
    """The report's numbers from paired runs: `prime_runs[s]` and the baseline's `other_runs[s]` share seed s."""
    if len(prime_runs) != len(other_runs) or not prime_runs:
        raise ValueError(f"PRIME and {other} need the same, non-zero number of paired seeds")
    report: dict = {"num_seeds": len(prime_runs)}
    finals = {name: [run[-1]["accuracy"] for run in runs] for name, runs in (("PRIME", prime_runs),
                                                                               (other, other_runs))}  # fmt: skip
    for name, values in finals.items():
        mean, half = mean_ci(values)
        report[f"{name}_final_accuracy"] = {"mean": mean, "ci95": half, "per_seed": values}
    mean, half = paired_difference_ci(finals["PRIME"], finals[other])
    report[f"PRIME_minus_{other}_final_accuracy"] = {"mean": mean, "ci95": half}
    pairs = list(zip(prime_runs, other_runs))
    for name, mine_index in (("PRIME", 0), (other, 1)):

        def ratio(resampled, i=mine_index):
            means = mean_curve([p[i] for p in resampled]), mean_curve([p[1 - i] for p in resampled])
            return efficiency_ratio(*means)

        mine, other = mean_curve([p[mine_index] for p in pairs]), mean_curve([p[1 - mine_index] for p in pairs])
        report[f"{name}_samples_to_reach_other_final"] = samples_to_reach(mine, other[-1]["accuracy"])
        report[f"{name}_sample_efficiency_vs_other"] = efficiency_ratio(mine, other)
        report[f"{name}_sample_efficiency_vs_other_ci95"] = list(bootstrap_ci(pairs, ratio, num_resamples))
        report[f"{name}_sample_efficiency_vs_other_per_seed"] = [efficiency_ratio(p[mine_index], p[1 - mine_index])
                                                                 for p in pairs]  # fmt: skip
    return report


def print_report(report: dict, means: dict[str, list[dict]], num_eval: int, other: str = "RLOO") -> None:
    prime, baseline = means["PRIME"], means[f"{other} (outcome only)"]
    print(f"\nheld-out greedy accuracy ({num_eval} problems), mean over {report['num_seeds']} seeds:")
    # each method's own sample count: with dynamic sampling they differ at the same step
    print(f"{'samples':>8} {'PRIME':>8} {'samples':>8} {other:>8}")
    for p, r in zip(prime, baseline):
        print(f"{p['samples']:>8.0f} {p['accuracy']:>8.3f} {r['samples']:>8.0f} {r['accuracy']:>8.3f}")
    for name in ("PRIME", other):
        final = report[f"{name}_final_accuracy"]
        print(f"{name} final accuracy: {final['mean']:.3f} ± {final['ci95']:.3f} (per seed {final['per_seed']})")
    diff = report[f"PRIME_minus_{other}_final_accuracy"]
    print(f"PRIME - {other} (paired): {diff['mean']:+.3f} ± {diff['ci95']:.3f}")
    for name in ("PRIME", other):
        print(f"{name} reaches the other's final accuracy on the seed-mean curves: {reach_text(report, name)}")


def reach_text(report: dict, name: str) -> str:
    """When `name`'s seed-mean curve reaches the other's final accuracy, at what ratio, with the bootstrap over
    seeds (none for one seed: every resample is that seed) and the per-seed ratios."""
    needed = report[f"{name}_samples_to_reach_other_final"]
    shown = {None: "never", 0.0: "before any sample (no ratio)"}.get(needed)
    shown = shown or f"after {needed:.0f} samples, x{report[f'{name}_sample_efficiency_vs_other']:.2f}"
    per_seed = ", ".join("never" if r is None else f"{r:.2f}"
                         for r in report[f"{name}_sample_efficiency_vs_other_per_seed"])  # fmt: skip
    if report["num_seeds"] < 2:
        return f"{shown} (one seed: no interval)"
    low, high = ("never" if v is None else f"{v:.2f}" for v in report[f"{name}_sample_efficiency_vs_other_ci95"])
    return f"{shown} (95% bootstrap over {report['num_seeds']} seeds: [{low}, {high}]; per seed {per_seed})"


def plot(curves: dict[str, list[list[dict]]], path: str) -> str:
    """Each seed thin, the seed mean thick, against completions sampled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for color, (label, runs) in zip(("C0", "C1", "C2"), curves.items()):
        for run in runs:
            ax.plot([p["samples"] for p in run], [p["accuracy"] for p in run], color=color, lw=0.8, alpha=0.35)
        mean = mean_curve(runs)
        ax.plot([p["samples"] for p in mean], [p["accuracy"] for p in mean], color=color, lw=2, marker="o",
                label=f"{label} (mean of {len(runs)} seeds)")  # fmt: skip
    ax.set_xlabel("completions sampled")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", required=True, help="output of `prime-trl demo` (its sft/, eval.json, pool)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="RL generation batches per run (default: the demo's)")
    parser.add_argument("--eval-every", type=int, default=None, help="generation batches between accuracy checks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-grpo", action="store_true", help="leave out the outcome-only GRPO baseline")
    parser.add_argument("--output-dir", default=None, help="default: <demo-dir>/sample_efficiency")
    args = parser.parse_args(argv)

    import torch

    from prime_trl.demo import rl_settings, run_rl
    from prime_trl.prm_health import load_rollout_pool

    torch.set_num_threads(args.threads)
    run = load_demo_run(args.demo_dir)
    demo, splits, sft_dir, tokenizer, accuracy = run.args, run.splits, run.sft_dir, run.tokenizer, run.accuracy
    pool_path = os.path.join(args.demo_dir, "prm_pool.jsonl")
    pool = load_rollout_pool(pool_path) if os.path.exists(pool_path) else None
    out_dir = args.output_dir or os.path.join(args.demo_dir, "sample_efficiency")
    os.makedirs(out_dir, exist_ok=True)

    methods = {k: v for k, v in METHODS.items() if not (args.no_grpo and k.startswith("GRPO"))}
    curves: dict[str, list[list[dict]]] = {name: [] for name in methods}
    health: list[dict] = []
    started = time.time()
    for seed in args.seeds:
        for name, (coef, estimator) in methods.items():  # alternate methods within a seed
            coef = demo.process_reward_coef if coef is None else coef
            run_dir = os.path.join(out_dir, f"run-{seed}-{SHORT[name]}")
            done = os.path.join(run_dir, "curve.json")  # a finished run is read back: seeds can run in parallel
            if os.path.exists(done):
                with open(done) as f:
                    saved = json.load(f)
            else:
                print(f"== seed {seed}: {name}", flush=True)
                started_run = time.time()
                settings = {**rl_settings(demo), "seed": seed, "process_reward_coef": coef,
                            "max_steps": args.steps or demo.rl_max_steps,
                            "eval_every": args.eval_every or demo.rl_eval_every,
                            "prm_update": "after" if coef else "none", "advantage_estimator": estimator}  # fmt: skip
                _, curve, history = run_rl(
                    sft_dir, tokenizer, splits["rl"], run_dir, accuracy, **settings,
                    health_pool=pool if coef else None, health_every=args.steps or demo.rl_max_steps,
                )  # fmt: skip
                saved = {"curve": curve, "health": history, "wall_s": time.time() - started_run}
                with open(done, "w") as f:
                    json.dump(saved, f)
            curves[name].append(saved["curve"])
            if saved["health"]:
                health.append({"seed": seed, **saved["health"][-1]})

    report = summarize(curves["PRIME"], curves["RLOO (outcome only)"])
    means = {name: mean_curve(runs) for name, runs in curves.items()}
    print_report(report, means, len(splits["eval"]))
    if "GRPO (outcome only)" in curves:  # the same numbers against GRPO, under "vs_GRPO"
        report["vs_GRPO"] = summarize(curves["PRIME"], curves["GRPO (outcome only)"], other="GRPO")
        print_report(report["vs_GRPO"], means, len(splits["eval"]), other="GRPO")
    report.update(seeds=args.seeds, curves=curves, mean_curves=means, prime_prm_health_final=health,
                  num_eval_prompts=len(splits["eval"]), wall_s=time.time() - started)  # fmt: skip
    plot(curves, os.path.join(out_dir, "sample_efficiency.png"))
    with open(os.path.join(out_dir, "sample_efficiency.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out_dir}/sample_efficiency.png and .json ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
