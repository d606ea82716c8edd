"""`prime-trl visualize`: colour responses by their implicit process rewards (HTML page and PNG).

Responses come from --prompt/--response (or --response-file), or from a samples.jsonl written by `prime-trl
eval` / `prime-trl rerank` (--samples, the first --num-responses completions). Writes
`<output-dir>/process_rewards.html`, `.png` and `.json` (tokens, token rewards, steps, step rewards).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from prime_trl.scripts.rerank import add_prm_arguments, prm_from_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prime-trl visualize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prm_arguments(p)
    p.add_argument("--prompt", help="the question (sent as one user message through the chat template)")
    p.add_argument("--raw-prompt", action="store_true", help="use --prompt as raw text, without the chat template")
    p.add_argument("--response", help="the response to score")
    p.add_argument("--response-file", help="read the response from this file")
    p.add_argument("--samples", help="samples.jsonl from `prime-trl eval` or `prime-trl rerank`")
    p.add_argument("--num-responses", type=int, default=4, help="with --samples: how many completions to show")
    p.add_argument("--no-png", action="store_true")
    p.add_argument("--output-dir", default="visualize-output")
    return p


def inputs_from_args(parser, args) -> tuple[list[tuple], list[str]]:
    """(prompt, response) pairs and their titles."""
    if args.samples:
        if not os.path.exists(args.samples):
            parser.error(f"--samples {args.samples!r}: no such file")
        from prime_trl.evaluation import read_jsonl

        pairs, titles = [], []
        for i, record in enumerate(read_jsonl(args.samples)):
            for j, completion in enumerate(record["completions"]):
                score = record.get("scores", [None] * (j + 1))[j]
                pairs.append((record["prompt"], completion))
                verdict = f" (verifier score {score:g})" if score is not None else ""
                titles.append(f"problem {i}, sample {j}{verdict}")
        return pairs[: args.num_responses], titles[: args.num_responses]
    if args.prompt is None or (args.response is None) == (args.response_file is None):
        parser.error("give --samples, or --prompt with exactly one of --response / --response-file")
    if args.response_file:
        if not os.path.exists(args.response_file):
            parser.error(f"--response-file {args.response_file!r}: no such file")
        with open(args.response_file) as f:
            args.response = f.read()
    prompt = args.prompt if args.raw_prompt else [{"role": "user", "content": args.prompt}]
    return [(prompt, args.response)], ["response"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prm = prm_from_args(parser, args)
    pairs, titles = inputs_from_args(parser, args)
    from prime_trl.visualize import write_visualization

    results = prm.score_batch(pairs, progress=False)
    paths = write_visualization(results, args.output_dir, titles=titles, png=not args.no_png)
    paths["json"] = os.path.join(args.output_dir, "process_rewards.json")
    with open(paths["json"], "w") as f:
        json.dump([{"title": t, **r.to_dict()} for t, r in zip(titles, results)], f, indent=1)
    for title, r in zip(titles, results):
        print(f"{title}: r(y) = {r.sequence_reward:+.4f}")
        for k, (step, reward) in enumerate(zip(r.steps, r.step_rewards)):
            print(f"  step {k:>2} {reward:+.4f}  {step.strip()[:70]!r}")
    print("wrote " + ", ".join(paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
