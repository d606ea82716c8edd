"""Peak memory of PRIME's PRM placements next to GRPO with LoRA, on the same model.

    python bench/memory.py [--hidden 768] [--layers 6] [--steps 2] [--model DIR]
    python bench/memory.py --head [--vocab 151936] [--head-hidden 256] [--rows 4] [--tokens 128]

Variants, each trained for `--steps` steps in a fresh process (same data, batch and LoRA settings):
- grpo-lora:      TRL's GRPOTrainer, policy = LoRA adapter (the baseline);
- prime-adapter:  PRIMETrainer, prm_placement="adapter": the PRM is a second LoRA adapter on the same base,
                  the reference is that base with adapters off;
- prime-separate: PRIMETrainer, prm_placement="separate": policy LoRA + a full trainable PRM (with AdamW
                  state) + a frozen reference model.

Memory, measured in each child process:
- CUDA: `torch.cuda.max_memory_allocated()` during `train()` (weights, optimizer states, activations).
- CPU: the peak resident set size during `train()` minus the RSS right after the imports (~0.5 GB of
  torch/transformers/TRL that every variant pays). The peak (VmHWM) is reset before training through
  /proc/self/clear_refs, so the spike of loading safetensors does not count as training memory. RSS right
  after init says little on CPU: safetensors are memory-mapped and only become resident when first used.
Ratios are to grpo-lora. Every group is kept by the accuracy filter, so the PRM updates on every step (its worst
case). Without --model, a random Qwen2 of the given size is built locally; its fp32 weights (~125 MiB at the
defaults) dominate the training memory. Times are wall-clock on a possibly shared machine: indicative only.

`--head`: what the PRM's log-probs cost at a real vocabulary (Qwen2's 151,936) under bf16 autocast, for one
micro-batch of `--rows` x `--tokens` completion tokens, forward only (reference / scoring) and forward + backward
(the update), each variant in a fresh process; a small body (`--head-hidden`, 2 layers) so the head dominates:
- bf16-logits: the model's bf16 logits (N, T+1, V), log-softmax in bf16 (prime-trl before the fp32 head);
- fp32-logits: the same logits upcast to fp32, unchunked (the naive fix);
- fp32-head:   `prime_trl.prm.completion_logps`, the fp32 head over chunks of rows holding <= 2^23 logits (32 MiB).
Peak = CUDA max allocated, or peak RSS, during the pass minus before it (after a warm-up pass that allocates the
gradients, so persistent gradient buffers are not counted; transient ones are).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

VARIANTS = ("grpo-lora", "prime-adapter", "prime-separate")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak RSS since the process started or since `reset_peak_rss()` (VmHWM)."""
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024


def reset_peak_rss() -> bool:
    """Restart VmHWM from the current RSS (Linux >= 4.0), so loading spikes do not count as training."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def parity_reward(completions, **kwargs) -> list[float]:
    """1.0 for an even number of characters: outcomes vary within groups, so no group is degenerate."""
    return [float(len(c[0]["content"]) % 2 == 0) for c in completions]


def run_variant(variant: str, model_dir: str, steps: int, out_dir: str) -> dict:
    """Train `steps` steps of `variant` in this process and return its memory numbers."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from prime_trl import PRIMEConfig, PRIMETrainer

    after_imports = rss_bytes()  # every library loaded, no model yet
    cuda = torch.cuda.is_available()
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(64)])
    common = dict(
        output_dir=out_dir, use_cpu=not cuda, bf16=cuda, per_device_train_batch_size=8, num_generations=4,
        gradient_accumulation_steps=1, max_completion_length=12, max_steps=steps, learning_rate=1e-4,
        loss_type="dapo", beta=0.0, report_to="none", save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    if variant == "grpo-lora":
        trainer = GRPOTrainer(model=model_dir, reward_funcs=parity_reward, args=GRPOConfig(**common),
                              train_dataset=dataset, peft_config=lora)
    else:
        args = PRIMEConfig(**common, prm_placement=variant.removeprefix("prime-"), prm_learning_rate=1e-4,
                           accuracy_lower_bound=0.0, accuracy_upper_bound=1.0)
        trainer = PRIMETrainer(model=model_dir, reward_funcs=parity_reward, args=args, train_dataset=dataset,
                               peft_config=lora)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    peak_was_reset = cuda or reset_peak_rss()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    if cuda:
        return {"seconds": seconds, "base": 0, "peak": torch.cuda.max_memory_allocated(), "peak_was_reset": True}
    return {"seconds": seconds, "base": after_imports, "peak": peak_rss_bytes(), "peak_was_reset": peak_was_reset}


def bf16_logit_logps(model, batch):
    import torch
    from trl.trainer.utils import selective_log_softmax

    t = batch.completion_mask.size(1)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=t + 1).logits
    return selective_log_softmax(logits[:, :-1], batch.input_ids[:, -t:]).to(torch.float32)


def fp32_logit_logps(model, batch):
    t = batch.completion_mask.size(1)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=t + 1).logits
    logps = logits[:, :-1].float().log_softmax(-1)  # (N, T, V) in fp32
    return logps.gather(-1, batch.input_ids[:, -t:, None]).squeeze(-1)


def _completion_logps(model, batch):
    from prime_trl.prm import completion_logps

    return completion_logps(model, batch)


HEAD_VARIANTS = {"bf16-logits": bf16_logit_logps, "fp32-logits": fp32_logit_logps, "fp32-head": _completion_logps}


def run_head_variant(variant: str, vocab: int, hidden: int, rows: int, tokens: int) -> dict:
    """Peak memory of one PRM log-prob pass of `variant` (forward; forward + backward) under bf16 autocast."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from prime_trl.prm import CompletionBatch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 128),
                         tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config).to(device)  # fp32 master weights, as the PRM keeps them
    input_ids = torch.randint(0, vocab, (rows, 64 + tokens), device=device)
    batch = CompletionBatch(input_ids, torch.ones_like(input_ids), torch.ones_like(input_ids[:, -tokens:]))
    logps_fn = HEAD_VARIANTS[variant]

    def forward():
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
            return logps_fn(model, batch)

    def forward_backward():
        with torch.autocast(device, dtype=torch.bfloat16):
            logps = logps_fn(model, batch)
        logps.sum().backward()
        return logps

    result = {}
    for name, run in (("forward", forward), ("forward+backward", forward_backward)):
        run()  # warm-up: allocator caches and the .grad buffers, which every variant keeps alike
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            reset_peak_rss()
            before = rss_bytes()
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes()
        result[name] = {"peak": peak - before, "seconds": seconds}
    return result


def head_main(args, env) -> None:
    print(f"PRM log-probs under bf16 autocast: random Qwen2 body (hidden {args.head_hidden}, 2 layers), vocabulary "
          f"{args.vocab:,}; one micro-batch of {args.rows} rows x {args.tokens} completion tokens (+64 prompt)")
    results = {}
    for variant in HEAD_VARIANTS:
        command = [sys.executable, __file__, "--head-child", variant, "--vocab", str(args.vocab), "--head-hidden",
                   str(args.head_hidden), "--rows", str(args.rows), "--tokens", str(args.tokens)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    logits_mib = args.rows * (args.tokens + 1) * args.vocab * 2 / 2**20
    print(f"peak during the pass minus before it; for scale, the bf16 logits alone are {logits_mib:.0f} MiB")
    header = "".join(f"{name + ' peak':>26}{'vs bf16-logits':>16}{'s':>7}" for name in results["fp32-head"])
    print(f"{'variant':<14}{header}")
    for variant, passes in results.items():
        cells = []
        for name, r in passes.items():
            ratio = r["peak"] / results["bf16-logits"][name]["peak"]
            cells.append(f"{r['peak'] / 2**20:>22.0f} MiB{ratio:>16.2f}{r['seconds']:>7.2f}")
        print(f"{variant:<14}" + "".join(cells))


def build_model(hidden: int, layers: int, out_dir: str) -> tuple[str, int]:
    from prime_trl.tiny import build_model as build, build_tokenizer

    tokenizer = build_tokenizer()
    model = build(tokenizer, hidden_size=hidden, num_layers=layers, num_heads=hidden // 64,
                  num_kv_heads=max(1, hidden // 128))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir, sum(p.numel() for p in model.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", help="a local model directory instead of the built random Qwen2")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--head", action="store_true", help="measure the PRM log-prob head instead (see above)")
    parser.add_argument("--vocab", type=int, default=151936, help="--head: vocabulary size (Qwen2's by default)")
    parser.add_argument("--head-hidden", type=int, default=256, help="--head: hidden size of the small body")
    parser.add_argument("--rows", type=int, default=4, help="--head: rows in the micro-batch")
    parser.add_argument("--tokens", type=int, default=128, help="--head: completion tokens per row")
    parser.add_argument("--head-child", choices=list(HEAD_VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.head_child:
        print(json.dumps(run_head_variant(args.head_child, args.vocab, args.head_hidden, args.rows, args.tokens)))
        return
    if args.child:  # one variant, in its own process, so every peak starts from a clean slate
        print(json.dumps(run_variant(args.child, args.model, args.steps, args.out)))
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRL_EXPERIMENTAL_SILENCE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if args.head:
        head_main(args, env)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir, description = args.model, args.model
        else:
            model_dir, num_params = build_model(args.hidden, args.layers, os.path.join(tmp, "model"))
            description = (f"random Qwen2, hidden {args.hidden}, {args.layers} layers, {num_params / 1e6:.1f}M params "
                           f"({num_params * 4 / 2**20:.0f} MiB in fp32)")
        print(f"model: {description}; {args.steps} steps, 8 prompts x 4 completions of <= 12 tokens, LoRA r=16 on "
              f"all linear layers")
        results = {}
        for variant in args.variants:
            command = [sys.executable, __file__, "--child", variant, "--model", model_dir, "--steps", str(args.steps),
                       "--out", os.path.join(tmp, variant)]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])

    print_table(results)


def print_table(results: dict) -> None:
    """Training peak per variant (CPU: net of the imports) and its ratio to grpo-lora."""
    on_cpu = next(iter(results.values()))["base"] > 0
    print(f"train peak = {'peak RSS during train() minus RSS after imports' if on_cpu else 'CUDA max allocated'}")
    if not all(r["peak_was_reset"] for r in results.values()):
        print("note: the peak RSS could not be reset, so 'train peak' includes model loading")
    peak = {variant: r["peak"] - r["base"] for variant, r in results.items()}
    baseline = peak.get("grpo-lora")
    print(f"{'variant':<16}{'train peak':>14}{'vs grpo-lora':>14}{'train s':>10}")
    for variant, value in peak.items():
        ratio = f"{value / baseline:.3f}" if baseline else "-"
        print(f"{variant:<16}{value / 2**20:>10.0f} MiB{ratio:>14}{results[variant]['seconds']:>10.1f}")
    if baseline and "prime-adapter" in peak:
        ratio = peak["prime-adapter"] / baseline
        print(f"prime-adapter / grpo-lora: {ratio:.3f} ({'within' if ratio <= 1.10 else 'NOT within'} the 10% target)")
        if on_cpu:
            whole = results["prime-adapter"]["peak"] / results["grpo-lora"]["peak"]
            print(f"same ratio for the whole process's peak RSS, imports included: {whole:.3f}")


if __name__ == "__main__":
    main()
