"""`prime-trl rerank`: best-of-N selection with an implicit PRM, against majority vote and a random pick.

For each problem, N candidates (sampled from --model, or read from a `prime-trl eval` samples.jsonl with
--samples) are verified and scored by the PRM; a candidate's score aggregates its step rewards by "sum" (the
sequence reward r(y)), "min" (its weakest step) or "last" (its final step). The table reports, per data source,
the accuracy of best-of-N under each aggregation, of majority vote over the extracted answers, of a random pick
(the expected value: the fraction of correct candidates) and of an oracle (pass@N). Writes
`<output-dir>/rerank.json` and `<output-dir>/rerank_samples.jsonl`.
"""

from __future__ import annotations

import argparse
import os
import sys

from prime_trl.generation import GENERATORS
from prime_trl.scripts.evaluate import check_model_path, sample_dataset


def add_prm_arguments(p: argparse.ArgumentParser) -> None:
    """The options `prm_from_args` reads: --prm, --ref, --beta, --step-separators (rerank and visualize)."""
    p.add_argument("--prm", required=True,
                   help="PRM directory: a PRIMETrainer output dir (its prm/ is used), a PRM adapter, or a full PRM")
    p.add_argument("--ref", default=None, help="reference model of a full PRM (not needed for an adapter)")
    p.add_argument("--beta", type=float, default=0.05, help="implicit reward scale (PRIME's prm_beta)")
    p.add_argument("--step-separators", nargs="+", default=None,
                   help="strings that end (whitespace) or start (markers) a step; default blank lines and the "
                        "Eurus action markers. Escapes \\n and \\t are read as newline and tab, so '\\n' gives "
                        "one step per line")


def build_parser() -> argparse.ArgumentParser:
    from prime_trl.evaluation import STEP_AGGREGATIONS

    p = argparse.ArgumentParser(prog="prime-trl rerank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prm_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", help="samples.jsonl written by `prime-trl eval --num-samples N`")
    source.add_argument("--dataset", help="problems to sample candidates for (needs --model); see `prime-trl eval`")
    p.add_argument("--model", help="policy that samples the candidates (with --dataset)")
    p.add_argument("--num-candidates", type=int, default=8, help="N of best-of-N (with --dataset)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--aggregation", nargs="+", default=list(STEP_AGGREGATIONS), choices=list(STEP_AGGREGATIONS),
                   help="how step rewards become a candidate's score (default: all)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per forward/generate call")
    p.add_argument("--backend", default="auto", choices=["auto", *GENERATORS])
    p.add_argument("--no-suffix", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="rerank-output")
    p.add_argument("--quiet", action="store_true")
    return p


def parse_separators(values: list[str] | None) -> tuple[str, ...] | None:
    """Command-line separators with the escapes \\n and \\t turned into newline and tab."""
    if not values:
        return None
    return tuple(v.replace("\\n", "\n").replace("\\t", "\t") for v in values)


def prm_from_args(parser: argparse.ArgumentParser, args):
    """The `ImplicitPRM` that `--prm/--ref/--beta/--step-separators` describe; bad paths end in `parser.error`."""
    if not os.path.isdir(args.prm):
        parser.error(f"--prm {args.prm!r}: no such directory")
    if args.ref is not None:
        check_model_path(parser, args.ref, "--ref")
    from prime_trl.implicit_prm import DEFAULT_STEP_SEPARATORS, ImplicitPRM

    separators = parse_separators(args.step_separators) or DEFAULT_STEP_SEPARATORS
    try:
        return ImplicitPRM.from_pretrained(args.prm, args.ref, beta=args.beta, step_separators=separators)
    except ValueError as err:
        parser.error(str(err))


def candidates_from_args(parser, args) -> tuple[list[dict], list[list[str]]]:
    """Problem rows and their candidates, from --samples or by sampling --model on --dataset."""
    from prime_trl import evaluation

    if args.samples:
        if not os.path.exists(args.samples):
            parser.error(f"--samples {args.samples!r}: no such file")
        records = evaluation.read_jsonl(args.samples)[: args.max_rows]
        return records, [r["completions"] for r in records]
    if not args.model:
        parser.error("--dataset needs --model to sample candidates")
    return sample_dataset(parser, args, args.num_candidates, args.temperature, "--num-candidates")


def rerank(prm, rows: list[dict], completions: list[list[str]], aggregations, batch_size: int = 8,
           progress: bool = True) -> tuple[dict, list[dict]]:
    """Verify, score with `prm` (an `ImplicitPRM`) and compare the selection rules; returns (table, records)."""
    from prime_trl import evaluation

    scores = evaluation.verify(rows, completions)
    keys = evaluation.answer_keys(rows, completions)
    pairs = [(row["prompt"], c) for row, cands in zip(rows, completions) for c in cands]
    scored = prm.score_batch(pairs, batch_size=batch_size, progress=progress)
    per_problem, records, i = [], [], 0
    for row, cands, s, k in zip(rows, completions, scores, keys):
        step_rewards = [r.step_rewards for r in scored[i:i + len(cands)]]
        i += len(cands)
        per_problem.append(evaluation.rerank_problem_metrics(s, k, step_rewards, aggregations))
        records.append({**{c: row[c] for c in evaluation.PRIME_COLUMNS}, "completions": list(cands), "scores": s,
                        "answers": k, "step_rewards": step_rewards,
                        **{f"prm_{a}": [evaluation.aggregate_steps(r, a) for r in step_rewards] for a in aggregations}})
    return evaluation.average_by_source(per_problem, [r["data_source"] for r in rows]), records


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prm = prm_from_args(parser, args)
    rows, completions = candidates_from_args(parser, args)
    from prime_trl import evaluation

    table, records = rerank(prm, rows, completions, args.aggregation, args.batch_size, progress=not args.quiet)
    n = len(completions[0]) if completions else 0
    report = {"prm": args.prm, "ref": args.ref, "beta": args.beta, "num_problems": len(rows), "num_candidates": n,
              "source": args.samples or {"model": args.model, "dataset": args.dataset,
                                         "temperature": args.temperature, "seed": args.seed},
              "aggregations": args.aggregation, "metrics": table}
    path = evaluation.write_report(args.output_dir, "rerank.json", report, "rerank_samples.jsonl", records)
    print(evaluation.format_table(table, f"best-of-{n} accuracy, {len(rows)} problems (random = expected value)"))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
