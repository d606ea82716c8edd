"""Best-of-N with the implicit PRM vs majority vote vs a random pick, side by side in one run.

On the demo task (multi-step arithmetic, one operation per line, so the PRM's steps are lines):

    python bench/rerank.py --demo-dir prime-demo --model prime-demo/<policy> --prm prime-demo/<run>/prm \
        --ref prime-demo/<policy> --num-candidates 8 --seeds 0 1 2

(`--ref`: the PRM's reference in training: the demo's policy, or `prime-demo/sft` for a demo run with
`--prm_ref_type frozen`.)

`--demo-dir` regenerates the demo's held-out eval split from the arguments its `eval.json` recorded (or use
`--problems rows.jsonl` for any PRIME rows). For each seed the policy samples N candidates per problem at
temperature 1; every selection rule then picks from the same candidates, so the rules' accuracies are paired
and their differences are not sampling noise between rules. Prints one table per seed, the mean over seeds,
and each rule's ratio to majority vote; `--output` also writes them as JSON.

Length bias: a PRM whose reward drifts with length (see `prime_trl.prm_health`) makes the summed score pick
long (or short) candidates whatever their answer. So besides the library's rules (sum, min, last step) this
adds `best_of_n[mean]` (mean step reward), and reports for every rule the mean number of steps of the
candidates it picks against the mean over all candidates, the correlation of each score with the number of
steps, and each rule's accuracy minus majority vote's as mean ± 95% interval over problems x seeds (paired).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from intervals import paired_difference_ci  # noqa: E402


def demo_eval_rows(demo_dir: str | None, num_problems: int) -> list[dict]:
    """The demo's held-out eval problems, from the arguments a `prime-trl demo` run recorded (or the defaults)."""
    from prime_trl.demo import demo_splits, recorded_arguments

    recorded = {}
    path = os.path.join(demo_dir, "eval.json") if demo_dir else None
    if path and os.path.exists(path):
        with open(path) as f:
            recorded = json.load(f).get("args", {})
    # The exact splits of that run: every recorded knob (seed, sizes, max_value, ...) shapes them.
    splits = demo_splits(recorded_arguments(recorded))
    return splits["eval"][:num_problems]


def _pick(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first one on ties, as the library does


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sx, sy = sum((a - mx) ** 2 for a in x) ** 0.5, sum((b - my) ** 2 for b in y) ** 0.5
    return 0.0 if sx == 0 or sy == 0 else sum((a - mx) * (b - my) for a, b in zip(x, y)) / (sx * sy)


def length_bias(records: list[dict]) -> dict:
    """Per rule: accuracy of its picks and their mean number of steps; per score: its correlation with steps.

    `records` are `prime_trl.scripts.rerank.rerank`'s, each with `scores` (N,) and `step_rewards` (N, S_i).
    Rules: sum, mean and min of the step rewards (mean = sum / S_i, the one a length drift cannot favour).
    """
    rules = {"sum": sum, "mean": lambda r: sum(r) / len(r), "min": min}
    picked = {name: {"correct": [], "steps": []} for name in rules}
    lengths, values = [], {name: [] for name in rules}
    for record in records:
        steps = [len(r) for r in record["step_rewards"]]
        lengths += steps
        for name, rule in rules.items():
            score = [rule(r) if r else float("-inf") for r in record["step_rewards"]]
            values[name] += score
            i = _pick(score)
            picked[name]["correct"].append(float(record["scores"][i] >= 1.0))
            picked[name]["steps"].append(steps[i])
    finite = [i for i, v in enumerate(values["sum"]) if v != float("-inf")]
    return {
        "mean_steps_all_candidates": statistics.fmean(lengths),
        **{f"best_of_n[{name}]": {"accuracy": statistics.fmean(p["correct"]), "mean_steps_picked":
                                  statistics.fmean(p["steps"]), "per_problem_correct": p["correct"]}
           for name, p in picked.items()},
        **{f"corr(score[{name}], steps)": _pearson([values[name][i] for i in finite], [lengths[i] for i in finite])
           for name in rules},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="policy that samples the candidates")
    p.add_argument("--prm", required=True, help="PRM dir (trainer output dir, prm/ adapter or full PRM)")
    p.add_argument("--ref", default=None,
                   help="reference of a full PRM, as in its training: the model it started from, or the policy for "
                   "prm_ref_type='policy'")  # fmt: skip
    p.add_argument("--beta", type=float, default=None,
                   help="the PRM's beta (default: the demo run's prm_beta, else 0.05); it scales, never reorders")
    p.add_argument("--demo-dir", default=None, help="a `prime-trl demo` output dir: its eval split is the problem set")
    p.add_argument("--problems", default=None, help="PRIME rows (.jsonl) instead of the demo's eval split")
    p.add_argument("--num-problems", type=int, default=200)
    p.add_argument("--num-candidates", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--step-separators", nargs="+", default=["\\n"],
                   help="default one step per line (the demo's format); escapes \\n and \\t are read")
    p.add_argument("--output", default=None, help="write the tables as JSON here")
    args = p.parse_args(argv)

    from prime_trl import evaluation
    from prime_trl.implicit_prm import ImplicitPRM
    from prime_trl.scripts.rerank import parse_separators, rerank

    rows = evaluation.load_rows(args.problems, args.num_problems) if args.problems else \
        demo_eval_rows(args.demo_dir, args.num_problems)
    if args.beta is None:
        recorded = os.path.join(args.demo_dir or "", "eval.json")
        args.beta = json.load(open(recorded))["args"]["prm_beta"] if os.path.exists(recorded) else 0.05
    prm = ImplicitPRM.from_pretrained(args.prm, args.ref, beta=args.beta,
                                      step_separators=parse_separators(args.step_separators))
    per_seed, timings, bias, majority_correct = {}, [], {}, {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        completions = evaluation.generate(
            args.model, [r["prompt"] for r in rows], num_samples=args.num_candidates,
            temperature=args.temperature, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
            seed=seed, backend="hf", progress=False,
        )
        t1 = time.perf_counter()
        table, records = rerank(prm, rows, completions, list(evaluation.STEP_AGGREGATIONS), args.batch_size,
                                progress=False)  # fmt: skip
        t2 = time.perf_counter()
        per_seed[seed] = table[evaluation.ALL_SOURCES]
        bias[seed] = length_bias(records)
        majority_correct[seed] = [evaluation.majority_correct(r["answers"], r["scores"]) for r in records]
        per_seed[seed]["best_of_n[mean]"] = bias[seed]["best_of_n[mean]"]["accuracy"]
        num = len(rows) * args.num_candidates
        timings.append({"seed": seed, "generate_s": t1 - t0, "score_s": t2 - t1, "candidates": num})
        print(evaluation.format_table({f"seed {seed}": per_seed[seed]},
                                      f"seed {seed}: best-of-{args.num_candidates}, {len(rows)} problems"))
        print(f"  generated {num} candidates in {t1 - t0:.1f}s; verified + PRM-scored them in {t2 - t1:.1f}s "
              f"({num / max(t2 - t1, 1e-9):.1f} candidates/s)\n")

    rules = [k for k in per_seed[args.seeds[0]] if k != "num_problems"]
    mean = {r: statistics.fmean(per_seed[s][r] for s in args.seeds) for r in rules}
    std = {r: statistics.pstdev(per_seed[s][r] for s in args.seeds) for r in rules}
    majority = mean["majority_vote"]
    print(f"mean over seeds {args.seeds} ({len(rows)} problems x {args.num_candidates} candidates each):")
    print(f"{'rule':<18} {'accuracy':>9} {'std':>7} {'/ majority':>11}")
    for r in rules:
        ratio = f"{mean[r] / majority:>11.3f}" if majority > 0 else f"{'n/a':>11}"
        print(f"{r:<18} {mean[r]:>9.4f} {std[r]:>7.4f} {ratio}")
    majority = [c for s in args.seeds for c in majority_correct[s]]
    versus_majority = {}
    all_steps = statistics.fmean(bias[s]["mean_steps_all_candidates"] for s in args.seeds)
    print(f"\nlength bias (mean steps per candidate: {all_steps:.2f}):")
    for name in ("sum", "mean", "min"):
        rule = f"best_of_n[{name}]"
        correct = [c for s in args.seeds for c in bias[s][rule]["per_problem_correct"]]
        diff, half = paired_difference_ci(correct, majority)
        versus_majority[rule] = {"mean": diff, "ci95": half}
        steps = statistics.fmean(bias[s][rule]["mean_steps_picked"] for s in args.seeds)
        corr = statistics.fmean(bias[s][f"corr(score[{name}], steps)"] for s in args.seeds)
        print(f"{rule:<18} accuracy - majority {diff:+.3f} ± {half:.3f}; picks {steps:.2f} steps; "
              f"corr(score, steps) {corr:+.2f}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"args": vars(args), "per_seed": per_seed, "mean": mean, "std": std, "timings": timings,
                       "length_bias": {s: {k: v for k, v in b.items()} for s, b in bias.items()},
                       "minus_majority_vote": versus_majority}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
