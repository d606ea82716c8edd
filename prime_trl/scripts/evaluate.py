"""`prime-trl eval --model M --dataset D [--num-samples k]`: pass@1, pass@k and maj@k per data source.

Generates with HF generate (vLLM when installed and a GPU is visible), verifies with the training verifiers,
prints a table and writes `<output-dir>/eval.json` (metrics and settings) and `<output-dir>/samples.jsonl` (each
problem's completions, scores and extracted answers; `prime-trl rerank --samples` and `prime-trl visualize
--samples` read it). One sample is greedy decoding, as the authors' eval scripts decode (temperature 0).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from prime_trl.generation import GENERATORS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prime-trl eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="local model directory (or hub id where the hub is reachable)")
    p.add_argument("--dataset", required=True,
                   help="a .jsonl/.json/.parquet file or directory of PRIME rows or a schema prime_trl.data reads, "
                        "or a shipped sample: eurus, gsm8k, math")
    p.add_argument("--num-samples", type=int, default=1,
                   help="samples per problem; 1 = greedy (pass@1), k > 1 samples at --temperature "
                        "(pass@1 as avg@k, pass@k, maj@k)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature; default 0 (greedy) for one sample, 1.0 for several")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (HF backend)")
    p.add_argument("--max-rows", type=int, default=None, help="evaluate only the first N problems")
    p.add_argument("--pass-k", type=int, nargs="*", default=None,
                   help="k of pass@k (default 1, 2, 4, ..., num-samples)")
    p.add_argument("--backend", default="auto", choices=["auto", *GENERATORS])
    p.add_argument("--no-suffix", action="store_true", help="do not append the paper's math/code user suffix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="eval-output")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def check_model_path(parser: argparse.ArgumentParser, path: str, flag: str) -> None:
    """A missing local path is a user error now, not a failed hub lookup later (hub ids are "org/name")."""
    hub_id = re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", path) is not None
    if not os.path.exists(path) and (not hub_id or os.environ.get("HF_HUB_OFFLINE") == "1"):
        parser.error(f"{flag} {path!r}: no such directory")


def sample_dataset(parser: argparse.ArgumentParser, args, num_samples: int, temperature: float,
                   count_flag: str) -> tuple[list[dict], list[list[str]]]:
    """The rows of --dataset and `num_samples` completions of --model for each (eval and rerank).

    A missing model or dataset, or greedy decoding asked for several samples (`count_flag` > 1), ends in
    `parser.error`.
    """
    check_model_path(parser, args.model, "--model")
    if temperature <= 0 and num_samples > 1:
        parser.error(f"greedy decoding gives identical samples: use --temperature > 0 with {count_flag} > 1")
    from prime_trl import evaluation

    try:
        rows = evaluation.load_rows(args.dataset, args.max_rows, add_suffix=not args.no_suffix)
    except FileNotFoundError as err:
        parser.error(str(err))
    completions = evaluation.generate(
        args.model, [r["prompt"] for r in rows], num_samples=num_samples, temperature=temperature,
        top_p=args.top_p, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
        backend=args.backend, progress=not args.quiet,
    )
    return rows, completions


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        parser.error("--num-samples must be >= 1")
    temperature = args.temperature if args.temperature is not None else (0.0 if args.num_samples == 1 else 1.0)
    rows, completions = sample_dataset(parser, args, args.num_samples, temperature, "--num-samples")
    from prime_trl import evaluation

    table, records = evaluation.evaluate_completions(rows, completions, args.pass_k)
    decoding = "greedy" if temperature <= 0 else f"sampling (temperature={temperature}, top_p={args.top_p})"
    report = {
        "model": args.model, "dataset": args.dataset, "num_problems": len(rows), "num_samples": args.num_samples,
        "decoding": decoding, "max_new_tokens": args.max_new_tokens,
        "backend": evaluation.resolve_backend(args.backend),
        "seed": args.seed, "metrics": table,
    }
    path = evaluation.write_report(args.output_dir, "eval.json", report, "samples.jsonl", records)
    print(evaluation.format_table(table, f"{args.model} on {args.dataset}: {len(rows)} problems, "
                                         f"{args.num_samples} sample(s), {decoding}"))
    print(f"wrote {path} and samples.jsonl", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
