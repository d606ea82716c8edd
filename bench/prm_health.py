"""PRM health of a saved PRM on a rollout pool, next to the reference's own log-likelihood as a baseline.

A rollout pool (one JSON record per prompt: prompt, completions, scores, optionally first_wrong_steps; the
demo writes `prm_pool.jsonl`, `prime-trl eval` writes `samples.jsonl`) goes in, the `prime_trl.prm_health`
metrics come out for:
- "reference log-likelihood": r_t = log pi_ref(y_t | y_<t), the score an untrained model already gives; an
  implicit PRM is worth its training only where it beats this;
- "PRM" (with `--prm`): the implicit reward r_t = beta * log(pi_prm / pi_ref).

    python bench/prm_health.py --pool prime-demo/prm_pool.jsonl --ref prime-demo/sft \\
        --prm prime-demo/prime/prm --step-separators '\\n'
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", required=True, help="rollout pool (.jsonl)")
    p.add_argument("--ref", required=True, help="the reference model (the model the PRM started from)")
    p.add_argument("--prm", default=None, help="a saved PRM (trainer output dir, prm/ adapter or full PRM)")
    p.add_argument("--beta", type=float, default=1.0, help="only scales the PRM's rewards; the metrics ignore it")
    p.add_argument("--step-separators", nargs="+", default=["\\n\\n"], help="escapes \\n and \\t are read")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_trl.generation import pad_token_id
    from prime_trl.implicit_prm import ImplicitPRM
    from prime_trl.prm import completion_logps
    from prime_trl.prm_health import HEALTH_KEYS, load_rollout_pool, prm_health, tokenize_pool
    from prime_trl.scripts.rerank import parse_separators

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.ref)
    pool = tokenize_pool(load_rollout_pool(args.pool), tokenizer, parse_separators(args.step_separators))
    ref = AutoModelForCausalLM.from_pretrained(args.ref).eval()
    pad = pad_token_id(tokenizer)
    with torch.no_grad():
        results = {"reference log-likelihood": prm_health(lambda b: completion_logps(ref, b), pool, pad,
                                                          args.batch_size)}  # fmt: skip
    if args.prm:
        prm = ImplicitPRM.from_pretrained(args.prm, args.ref, beta=args.beta)
        results["PRM"] = prm_health(prm.token_rewards, pool, pad, args.batch_size)
    print(f"{'metric':<36}" + "".join(f"{name:>26}" for name in results))
    for key in HEALTH_KEYS:
        print(f"{key:<36}" + "".join(f"{r[key]:>26.3f}" for r in results.values()))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
