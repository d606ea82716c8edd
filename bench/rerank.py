"""Best-of-N with the implicit PRM vs majority vote vs a random pick, side by side in one run.

On the demo task (multi-step arithmetic, one operation per line, so the PRM's steps are lines):

    python bench/rerank.py --demo-dir prime-demo --model prime-demo/<policy> --prm prime-demo/<run>/prm \
        --ref prime-demo/sft --num-candidates 8 --seeds 0 1 2

`--demo-dir` regenerates the demo's held-out eval split from the arguments its `eval.json` recorded (or use
`--problems rows.jsonl` for any PRIME rows). For each seed the policy samples N candidates per problem at
temperature 1; every selection rule then picks from the same candidates, so the rules' accuracies are paired
and their differences are not sampling noise between rules. Prints one table per seed, the mean over seeds,
and each rule's ratio to majority vote; `--output` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def demo_eval_rows(demo_dir: str | None, num_problems: int) -> list[dict]:
    """The demo's held-out eval problems, from the arguments a `prime-trl demo` run recorded (or the defaults)."""
    from prime_trl.demo import DemoArguments, demo_splits

    recorded = {}
    path = os.path.join(demo_dir, "eval.json") if demo_dir else None
    if path and os.path.exists(path):
        with open(path) as f:
            recorded = json.load(f).get("args", {})
    # The exact splits of that run: every recorded knob (seed, sizes, max_value, ...) shapes them.
    splits = demo_splits(DemoArguments(**recorded))
    return splits["eval"][:num_problems]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="policy that samples the candidates")
    p.add_argument("--prm", required=True, help="PRM dir (trainer output dir, prm/ adapter or full PRM)")
    p.add_argument("--ref", default=None, help="reference of a full PRM (the model the PRM started from)")
    p.add_argument("--beta", type=float, default=0.05)
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
    prm = ImplicitPRM.from_pretrained(args.prm, args.ref, beta=args.beta,
                                      step_separators=parse_separators(args.step_separators))
    per_seed, timings = {}, []
    for seed in args.seeds:
        t0 = time.perf_counter()
        completions = evaluation.generate(
            args.model, [r["prompt"] for r in rows], num_samples=args.num_candidates,
            temperature=args.temperature, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
            seed=seed, backend="hf", progress=False,
        )
        t1 = time.perf_counter()
        table, _ = rerank(prm, rows, completions, list(evaluation.STEP_AGGREGATIONS), args.batch_size, progress=False)
        t2 = time.perf_counter()
        per_seed[seed] = table[evaluation.ALL_SOURCES]
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
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"args": vars(args), "per_seed": per_seed, "mean": mean, "std": std, "timings": timings}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
