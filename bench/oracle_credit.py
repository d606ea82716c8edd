"""How much dense credit can pay on the demo task: PRIME's estimator fed the task's own first wrong token.

The demo's task knows where every wrong solution first leaves the worked one, so it can stand in for a
perfect PRM: r_t = -1 on that token of a wrong rollout, 0 everywhere else. The arms, each per seed and from
the same SFT start (a `prime-trl demo` output directory) with the demo's RL settings:
- "rloo":    outcome-only RLOO (process_reward_coef 0, no PRM pass);
- "oracle":  the same plus the oracle's process returns (process_reward_coef, gamma_process below);
- "learned": the same plus the demo's learned implicit PRM, with the same coefficient and discount;
- "noisy-oracle" (optional): the oracle plus N(0, sigma^2) on every completion token (`--oracle-noise`), to see
  how much token-level noise, which a learned PRM also carries, the oracle's gain survives.
Prints the final greedy held-out accuracy as mean +- 95% CI over seeds, and each arm's paired gain over
"rloo"; writes `oracle_credit.json`. The oracle's gain is what a PRM that finds every slip, and nothing
else, gives with this estimator and discount; a gain whose CI contains 0 is noise. Finished runs are saved
and read back, so seeds can run as parallel processes (`--seeds 0`, `--seeds 1`, ... then all seeds once
more to summarise).

    python bench/oracle_credit.py --demo-dir prime-demo --seeds 0 1 2 --gamma-process 1.0 0.9
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time

import torch

from prime_trl.demo.task import first_wrong_token, parse_question
from prime_trl.trainer import PRIMETrainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_run import load_demo_run  # noqa: E402  (bench/demo_run.py)
from intervals import mean_ci, paired_difference_ci  # noqa: E402  (bench/intervals.py, the shared statistics)

QUESTION = re.compile(r"Compute [^.]*\.")


class OracleProcessRewards:
    """Stands in for the trainer's online PRM: `learn` returns r_t = -1 on each wrong row's first wrong token.

    With `noise_std` > 0, N(0, noise_std^2) is added on every completion token (seeded by `seed`)."""

    def __init__(self, tokenizer, noise_std: float = 0.0, seed: int = 0):
        self.tokenizer, self.noise_std = tokenizer, noise_std
        self.generator = torch.Generator().manual_seed(seed)

    def learn(self, mode: str, batch, labels: torch.Tensor):
        """(N, T) oracle rewards for a `CompletionBatch` and its (N,) labels (1 = correct); no metrics."""
        T = batch.completion_mask.size(1)
        rewards = torch.zeros(batch.completion_mask.shape)
        for i in range(len(batch)):
            if labels[i] >= 0.5:
                continue
            prompt_ids = batch.input_ids[i, :-T][batch.attention_mask[i, :-T].bool()]
            question = QUESTION.search(self.tokenizer.decode(prompt_ids, skip_special_tokens=True)).group(0)
            ids = batch.input_ids[i, -T:][batch.completion_mask[i].bool()].tolist()
            k = first_wrong_token(parse_question(question), ids, self.tokenizer)
            rewards[i, len(ids) - 1 if k is None else k] = -1.0  # k is None: the label and the text disagree
        if self.noise_std:
            noise = torch.randn(rewards.shape, generator=self.generator) * self.noise_std
            rewards = rewards + noise * batch.completion_mask
        return rewards, {}


class OracleCreditTrainer(PRIMETrainer):
    """PRIMETrainer whose process rewards come from the task's first wrong token instead of a PRM."""

    def __init__(self, *args, oracle_noise_std: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.prm = OracleProcessRewards(self.processing_class, oracle_noise_std, self.args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", required=True, help="output of `prime-trl demo` (its sft/ and eval.json)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gamma-process", type=float, nargs="+", default=[1.0, 0.9],
                        help="discounts of the process returns to compare (the authors' 1.0 first)")  # fmt: skip
    parser.add_argument("--process-coef", type=float, default=None, help="default: the demo's process_reward_coef")
    parser.add_argument("--arms", nargs="+", default=["oracle", "learned"],
                        choices=["oracle", "noisy-oracle", "learned"])  # fmt: skip
    parser.add_argument("--oracle-noise", type=float, default=0.3, help="sigma of the noisy-oracle arm's token noise")
    parser.add_argument("--steps", type=int, default=20, help="RL generation batches per run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", default=None, help="default: <demo-dir>/oracle_credit")
    args = parser.parse_args(argv)

    from prime_trl.demo import rl_settings, run_rl

    torch.set_num_threads(args.threads)
    run = load_demo_run(args.demo_dir)
    demo, splits, sft_dir, tokenizer, accuracy = run.args, run.splits, run.sft_dir, run.tokenizer, run.accuracy
    out_dir = args.output_dir or os.path.join(args.demo_dir, "oracle_credit")
    os.makedirs(out_dir, exist_ok=True)
    coef = demo.process_reward_coef if args.process_coef is None else args.process_coef

    def train(name: str, seed: int, **overrides) -> float:
        run_dir = os.path.join(out_dir, f"run-{seed}-{name}")
        done = os.path.join(run_dir, "final.json")  # a finished run is read back: seeds can run in parallel
        if os.path.exists(done):
            with open(done) as f:
                saved = json.load(f)
            if saved["steps"] == args.steps:
                return saved["accuracy"]
        print(f"== seed {seed}: {name}", flush=True)
        settings = {**rl_settings(demo), "max_steps": args.steps, "eval_every": args.steps, "seed": seed, **overrides}
        _, curve, _ = run_rl(sft_dir, tokenizer, splits["rl"], run_dir, accuracy, **settings)
        with open(done, "w") as f:
            json.dump({"steps": args.steps, "accuracy": curve[-1]["accuracy"]}, f)
        return curve[-1]["accuracy"]

    noisy = functools.partial(OracleCreditTrainer, oracle_noise_std=args.oracle_noise)
    trainer_classes = {"oracle": OracleCreditTrainer, "noisy-oracle": noisy, "learned": PRIMETrainer}
    final: dict[str, list[float]] = {}
    started = time.time()
    for seed in args.seeds:
        final.setdefault("rloo", []).append(train("rloo", seed, process_reward_coef=0.0, prm_update="none"))
        for gamma in args.gamma_process:
            for arm in args.arms:
                name = f"{arm}{args.oracle_noise:g}" if arm == "noisy-oracle" else arm
                name = f"{name}-gamma{gamma:g}"
                final.setdefault(name, []).append(train(
                    name, seed, process_reward_coef=coef, gamma_process=gamma,
                    prm_update="after" if arm == "learned" else "none", trainer_cls=trainer_classes[arm],
                ))  # fmt: skip

    report = {"seeds": args.seeds, "steps": args.steps, "process_reward_coef": coef, "oracle_noise": args.oracle_noise,
              "final_accuracy": final, "wall_s": time.time() - started}  # fmt: skip
    print(f"\nfinal held-out greedy accuracy ({len(splits['eval'])} problems) after {args.steps} steps, "
          f"mean +- 95% CI over seeds {args.seeds}; gain = paired difference with rloo:")  # fmt: skip
    for name, values in final.items():
        mean, half = mean_ci(values)
        line = f"{name:>20}: {mean:.3f} +- {half:.3f}"
        if name != "rloo":
            report[f"{name}_gain"] = gain = paired_difference_ci(values, final["rloo"])
            line += f", gain {gain[0]:+.3f} +- {gain[1]:.3f}"
        print(line)
    with open(os.path.join(out_dir, "oracle_credit.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out_dir}/oracle_credit.json ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
