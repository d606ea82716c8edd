"""Advantage estimators with and without process rewards on the demo task: final held-out accuracy over seeds.

Every (advantage_estimator, process rewards on/off) pair trains from the same SFT start (a `prime-trl demo` output
directory) with the demo's RL settings; "off" is `process_reward_coef=0` with a frozen PRM (no PRM pass).
Prints the final greedy held-out accuracy as mean +- 95% CI (Student t over seeds) and the gain of process
rewards per estimator; writes `estimators.json`. A benchmark, not a test: a gain whose CI contains 0 is noise.

    prime-trl demo --output-dir prime-demo
    python bench/estimators.py --demo-dir prime-demo --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

ESTIMATORS = ("rloo", "reinforce", "grpo", "ppo")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_run import load_demo_run  # noqa: E402  (bench/demo_run.py)
from intervals import mean_ci, paired_difference_ci  # noqa: E402  (bench/intervals.py, the shared statistics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", required=True, help="output of `prime-trl demo` (its sft/ and eval.json)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the demo's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", default=None, help="default: <demo-dir>/estimators")
    args = parser.parse_args(argv)

    from prime_trl.demo import rl_settings, run_rl

    torch.set_num_threads(args.threads)
    run = load_demo_run(args.demo_dir)
    demo, splits, sft_dir, tokenizer, accuracy = run.args, run.splits, run.sft_dir, run.tokenizer, run.accuracy
    out_dir = args.output_dir or os.path.join(args.demo_dir, "estimators")
    os.makedirs(out_dir, exist_ok=True)
    steps = args.steps or demo.rl_max_steps

    final: dict[str, list[float]] = {}
    started = time.time()
    for seed in args.seeds:
        for estimator in args.estimators:
            for process in (True, False):  # alternate settings within a seed
                name = f"{estimator}{'+process' if process else ''}"
                coef = demo.process_reward_coef if process else 0.0
                print(f"== seed {seed}: {name}", flush=True)
                settings = {**rl_settings(demo), "max_steps": steps, "eval_every": steps, "seed": seed,
                            "process_reward_coef": coef, "prm_update": "after" if process else "none",
                            "advantage_estimator": estimator}  # fmt: skip
                _, curve, _ = run_rl(sft_dir, tokenizer, splits["rl"], os.path.join(out_dir, f"run-{seed}-{name}"),
                                     accuracy, **settings)  # fmt: skip
                final.setdefault(name, []).append(curve[-1]["accuracy"])

    report = {"seeds": args.seeds, "steps": steps, "final_accuracy": final, "wall_s": time.time() - started}
    print(f"\nfinal held-out greedy accuracy ({len(splits['eval'])} problems) after {steps} steps, "
          f"mean +- 95% CI over seeds {args.seeds}:")  # fmt: skip
    for estimator in args.estimators:
        on, off = final[f"{estimator}+process"], final[estimator]
        gain = paired_difference_ci(on, off)  # paired by seed
        report[f"{estimator}_process_gain"] = gain
        (m_on, h_on), (m_off, h_off) = mean_ci(on), mean_ci(off)
        print(f"{estimator:>10}: with process rewards {m_on:.3f} +- {h_on:.3f}, without {m_off:.3f} +- {h_off:.3f}, "
              f"gain {gain[0]:+.3f} +- {gain[1]:.3f}")  # fmt: skip
    with open(os.path.join(out_dir, "estimators.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out_dir}/estimators.json ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
