"""How precisely bf16 autocast computes the log-ratios PRIME and GRPO depend on, against fp32, side by side.

    python bench/implicit_reward_precision.py [--hidden 256] [--layers 2] [--rows 4] [--tokens 64] [--seeds 3]
                                              [--lr 1e-6]

Implicit reward (PRIME): reference = a random Qwen2, PRM = the same after one AdamW step at `--lr` (default 1e-6,
the paper's PRM rate) on the rows' log-likelihood; log-ratio = log pi_prm - log pi_ref per completion token, for both
placements (a separate PRM; a LoRA adapter on the reference's base, B starting at 0), computed
- fp32:           everything in fp32 (the truth);
- bf16 logits:    bf16 autocast, log-softmax of the bf16 logits (prime-trl before the fp32 head);
- fp32 head:      bf16 autocast body, fp32 head (`prime_trl.prm.completion_logps` now).

Also: with bf16-loaded weights, the separate PRM (upcast to fp32 master weights) against its reference before any
step (the truth is 0), the reference kept in bf16 (as before) and upcast like the PRM (as PRIMETrainer does now).

Policy ratio (GRPO): the PPO ratio exp(log pi_new - log pi_old) for the same one-step change (GRPO's default lr is
also 1e-6), with log-probs from TRL's fused LM head as GRPOTrainer computes them under bf16 autocast, with
`cast_lm_head_to_fp32` False (GRPO's default) and True, against fp32. Also the on-policy ratio between two
evaluations of the same weights in different micro-batch shapes (1 row vs all rows), which should be exactly 1.

Reported per method: mean |log-ratio| (the true one is the fp32 row), mean and max |error| against fp32, the share of
tokens whose log-ratio is exactly 0, and the correlation with fp32; means over `--seeds` seeds (different models and
rows), with their range. CPU autocast stands in for a GPU's: bf16 rounding is the same, kernels differ.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from peft import LoraConfig, get_peft_model
from trl.trainer.utils import add_fused_lm_head, selective_log_softmax

from prime_trl.prm import AdapterPRM, CompletionBatch, SeparatePRM, completion_logps
from prime_trl.tiny import build_model, build_tokenizer

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def bf16_logit_logps(model, batch: CompletionBatch) -> torch.Tensor:
    t = batch.completion_mask.size(1)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=t + 1).logits
    return selective_log_softmax(logits[:, :-1], batch.input_ids[:, -t:]).float()


def fused_head_logps(model, batch: CompletionBatch) -> torch.Tensor:
    """GRPO's per-token log-probs: TRL's fused head (patched onto `model`) on the completion tokens."""
    t = batch.completion_mask.size(1)
    labels = batch.input_ids.clone()
    labels[:, :-t] = -100
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -t:].float()


def random_batch(vocab: int, rows: int, tokens: int, seed: int) -> CompletionBatch:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (rows, 16 + tokens), generator=g)
    return CompletionBatch(input_ids, torch.ones_like(input_ids), torch.ones((rows, tokens), dtype=torch.long))


def one_step(placement, batch: CompletionBatch, lr: float):
    with placement.prm_scope() as model:
        optimizer = torch.optim.AdamW(placement.trainable_parameters(), lr=lr)
        (-completion_logps(model, batch).sum()).backward()
        optimizer.step()
    return placement


def log_ratios(placement, batch: CompletionBatch, logps_fn, autocast: bool) -> torch.Tensor:
    """log pi_prm - log pi_ref per token, flattened."""
    out = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for scope in (placement.prm_scope, placement.ref_scope):
            with scope() as model:
                out.append(logps_fn(model, batch))
    return (out[0] - out[1]).flatten()


def stats(ratio: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    err = (ratio - exact).abs()
    varies = ratio.std() > 0 and exact.std() > 0  # a correlation needs both to vary; else "nan"
    corr = torch.corrcoef(torch.stack([ratio.double(), exact.double()]))[0, 1].item() if varies else float("nan")
    return {"mean |x|": ratio.abs().mean().item(), "mean err": err.mean().item(), "max err": err.max().item(),
            "zeros %": 100 * (ratio == 0).float().mean().item(), "corr": corr}


def implicit_reward_rows(tokenizer, args, seed: int) -> dict[str, dict[str, float]]:
    batch = random_batch(len(tokenizer), args.rows, args.tokens, seed)
    ref = build_model(tokenizer, hidden_size=args.hidden, num_layers=args.layers, num_heads=args.hidden // 32,
                      num_kv_heads=max(1, args.hidden // 64), seed=seed)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    peft_model = get_peft_model(copy.deepcopy(ref), lora)
    peft_model.add_adapter("prm", lora)
    placements = {"separate": SeparatePRM(copy.deepcopy(ref).train(), ref), "adapter": AdapterPRM(peft_model)}
    # bf16-loaded weights, before any step (the truth is 0): PRIMETrainer upcasts the separate PRM to fp32 master
    # weights; a reference left in bf16 disagrees with it, one upcast like the PRM (what the trainer does) does not
    loaded = copy.deepcopy(ref).to(torch.bfloat16)
    rows = {}
    for name, ref_dtype in (("kept bf16", torch.bfloat16), ("upcast to fp32 like the PRM", torch.float32)):
        start = log_ratios(SeparatePRM(copy.deepcopy(loaded).float(), copy.deepcopy(loaded).to(ref_dtype)), batch,
                           completion_logps, autocast=True)
        rows[f"separate, bf16-loaded, step 0, reference {name}"] = stats(start, torch.zeros_like(start))
    for name, placement in placements.items():
        one_step(placement, batch, args.lr)
        exact = log_ratios(placement, batch, completion_logps, autocast=False)
        rows[f"{name}: fp32"] = stats(exact, exact)
        rows[f"{name}: bf16 logits"] = stats(log_ratios(placement, batch, bf16_logit_logps, True), exact)
        rows[f"{name}: fp32 head"] = stats(log_ratios(placement, batch, completion_logps, True), exact)
    return rows


def policy_ratio_rows(tokenizer, args, seed: int) -> dict[str, dict[str, float]]:
    batch = random_batch(len(tokenizer), args.rows, args.tokens, seed)
    old = build_model(tokenizer, hidden_size=args.hidden, num_layers=args.layers, num_heads=args.hidden // 32,
                      num_kv_heads=max(1, args.hidden // 64), seed=seed)
    new = one_step(SeparatePRM(copy.deepcopy(old).train(), old), batch, args.lr).model
    rows = {}
    exact = None
    for cast in (None, False, True):  # None: the fp32 truth
        models = [copy.deepcopy(m) for m in (old, new)]
        for m in models:
            add_fused_lm_head(m, cast_lm_head_to_fp32=bool(cast))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cast is not None):
            old_logps, new_logps = (fused_head_logps(m, batch) for m in models)
            one_row = torch.cat([fused_head_logps(models[0], batch.rows(torch.tensor([i]))) for i in range(len(batch))])
        log_ratio = (new_logps - old_logps).flatten()  # log of the PPO ratio after one step
        if exact is None:
            exact = log_ratio
        label = "fp32" if cast is None else f"bf16, cast_lm_head_to_fp32={cast}"
        rows[f"policy step, {label}"] = stats(log_ratio, exact)
        on_policy = (one_row - old_logps).flatten()  # same weights, other batch shape: the truth is 0
        rows[f"on-policy, {label}"] = stats(on_policy, torch.zeros_like(on_policy))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-6, help="the one AdamW step's learning rate")
    args = parser.parse_args()
    tokenizer = build_tokenizer()
    print(f"random Qwen2, hidden {args.hidden}, {args.layers} layers, vocab {len(tokenizer)}; {args.rows} rows x "
          f"{args.tokens} completion tokens; one AdamW step at lr {args.lr}; CPU bf16 autocast; {args.seeds} seeds")
    per_seed = [implicit_reward_rows(tokenizer, args, s) | policy_ratio_rows(tokenizer, args, s)
                for s in range(args.seeds)]
    columns = {"mean |x|": "{:.1e}", "mean err": "{:.1e}", "max err": "{:.1e}", "zeros %": "{:.1f}", "corr": "{:.2f}"}
    print("each cell: mean over seeds [min, max]")
    print(f"{'log-ratio':<48}" + "".join(f"{c:>28}" for c in columns))
    for row in per_seed[0]:
        cells = []
        for column, fmt in columns.items():
            values = [seed_rows[row][column] for seed_rows in per_seed]
            mean, low, high = (fmt.format(x) for x in (statistics.mean(values), min(values), max(values)))
            cells.append(f"{mean} [{low}, {high}]")
        print(f"{row:<48}" + "".join(f"{cell:>28}" for cell in cells))

if __name__ == "__main__":
    main()
