"""One GPU check of prime-trl, sized for about 8 minutes on one GPU (not yet timed on one), writing one JSON file.

    python bench/gpu_check.py --out gpu_check.json              # one CUDA GPU
    python bench/gpu_check.py --dry-run --out gpu_check.json    # CPU: tiny models, checks this script's plumbing

Sections (each records its result, or its error and traceback; a failing section never stops the others, and
the JSON is rewritten after every section, so a run cut short keeps what it measured):
    throughput  bf16 seconds per step and tokens/s of GRPO against PRIME on the same work: full weights (GRPO vs
                PRIME with a separate PRM) and LoRA (GRPO-LoRA vs PRIME with the PRM as a second adapter); a
                randomly initialised model of Qwen2.5-0.5B's shape (494 M parameters, vocabulary 151,936),
                completions forced to 512 tokens, accuracy filter [0, 1] so every row reaches the PRM; MFU.
    qlora       4-bit NF4 base (bitsandbytes), policy and PRM adapters train 3 steps: peak GPU memory against
                GRPO-QLoRA on the same work, and whether both adapters moved and the 4-bit base did not.
    vllm        generation by vLLM in colocate mode with the PRM adapter on the policy, 2 steps: the adapters
                move and vLLM's sampling log-probs agree with the trainer's (TRL's `sampling/*` metrics), i.e.
                vLLM was given the policy's weights and not the PRM's. "not installed" without vLLM.
    notebook    notebooks/prime_qlora_gsm8k.ipynb executed on a local model and the shipped GSM8K rows; on
                CUDA with TINY=False, its real path (4-bit base, bf16).
In --dry-run every section runs on CPU with tiny models and a few tokens; without CUDA the QLoRA section trains
plain LoRA and measures no memory. Times from a dry run mean nothing.
Benchmarks print ratios measured side by side in one run; they are not tests.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import zlib
from datetime import datetime, timezone

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # step_time's timers, next to this file

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402

from step_time import StepTimer, breakdown, instrument  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "prime_qlora_gsm8k.ipynb")
GSM8K_ROWS = os.path.join(ROOT, "prime_trl", "sample_data", "gsm8k_sample.jsonl")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Dense bf16 peak TFLOP/s by device-name fragment (vendor data sheets, SXM parts), for MFU.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0}

# Qwen2.5-0.5B's shape (tied embeddings). `vocab_size=None`: the local tokenizer's own size.
QWEN2_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936)  # fmt: skip
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=None)  # fmt: skip
PROFILES = {
    "gpu": dict(shape=QWEN2_05B, prompts=8, generations=4, completion=512, steps=3,
                qlora=dict(prompts=8, completion=128, steps=3), vllm=dict(prompts=8, completion=128, steps=2),
                notebook=dict(MAX_STEPS=3, MAX_COMPLETION_LENGTH=64, PER_DEVICE_BATCH=8, TINY=False)),
    "dry": dict(shape=TINY, prompts=2, generations=2, completion=4, steps=2,
                qlora=dict(prompts=2, completion=4, steps=2), vllm=dict(prompts=2, completion=4, steps=1),
                notebook=dict(MAX_STEPS=1, MAX_COMPLETION_LENGTH=8, PER_DEVICE_BATCH=4, TINY=True)),
}  # fmt: skip


# -- models and data --------------------------------------------------------------------------------------
def save_random_qwen2(out_dir: str, shape: dict, seed: int = 0) -> str:
    """A random Qwen2 of `shape` and the local BPE tokenizer, saved in bf16 (built on the GPU when there is one).

    A vocabulary larger than the tokenizer's is allowed: sampled ids beyond it decode to nothing, which leaves
    the work per token (the 151,936-way output layer) as in the real model.
    """
    from transformers import AutoModelForCausalLM, Qwen2Config

    from prime_trl.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = Qwen2Config(**{**shape, "vocab_size": shape["vocab_size"] or len(tokenizer)}, tie_word_embeddings=True,
                         max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)  # fmt: skip
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    _free()
    return out_dir


def id_hash_reward(completions, completion_ids, **kwargs) -> list[float]:
    """1.0 or 0.0 from a CRC of the token ids: deterministic, mixed within a group, blind to decoding."""
    return [float(zlib.crc32(str(list(ids)).encode()) % 2) for ids in completion_ids]


def prompts(n: int) -> Dataset:
    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + {2 * i}? Show each step."}]}
                              for i in range(n)])  # fmt: skip


def _free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _lora():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")


def build_trainer(kind: str, model_path: str, work: str, prompts_per_step: int, generations: int,
                  completion: int, steps: int, peft: bool, placement: str | None = None, **extra):  # fmt: skip
    """GRPO or PRIME on identical settings (GRPO with beta=0 and loss_type="dapo", the values PRIME pins)."""
    from trl import GRPOConfig, GRPOTrainer

    from prime_trl import PRIMEConfig, PRIMETrainer

    cuda = torch.cuda.is_available()
    trainer_kwargs = {k: extra.pop(k) for k in ("quantization_config",) if k in extra}
    # A random model: force full-length completions so both trainers do the same work (vLLM calls it min_tokens).
    generation_kwargs = extra.pop("generation_kwargs", {"min_new_tokens": completion})
    common = dict(
        output_dir=os.path.join(work, f"{kind}-{placement}-{peft}"), seed=0, max_steps=steps,
        num_generations=generations, per_device_train_batch_size=prompts_per_step * generations,
        gradient_accumulation_steps=1, max_completion_length=completion, temperature=1.0, learning_rate=1e-5,
        beta=0.0, loss_type="dapo", epsilon=0.2, bf16=cuda, use_cpu=not cuda, gradient_checkpointing=False,
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        model_init_kwargs={"dtype": "bfloat16" if cuda else "float32"},
        generation_kwargs=generation_kwargs,
        **extra,
    )  # fmt: skip
    dataset = prompts(prompts_per_step * (steps + 1))
    peft_config = _lora() if peft else None
    if kind == "GRPO":
        return GRPOTrainer(model=model_path, reward_funcs=id_hash_reward, args=GRPOConfig(**common),
                           train_dataset=dataset, peft_config=peft_config, **trainer_kwargs)  # fmt: skip
    args = PRIMEConfig(**common, prm_placement=placement, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0,
                       prm_learning_rate=1e-5)  # fmt: skip
    return PRIMETrainer(model=model_path, reward_funcs=id_hash_reward, args=args, train_dataset=dataset,
                        peft_config=peft_config, **trainer_kwargs)  # fmt: skip


def _groups(model) -> dict[str, dict[str, torch.Tensor]]:
    """Parameters by role: the policy adapter (".default."), the PRM adapter (".prm."), the base."""
    out = {"policy adapter": {}, "PRM adapter": {}, "base": {}}
    for name, p in model.named_parameters():
        role = "policy adapter" if ".default." in name else "PRM adapter" if ".prm." in name else "base"
        out[role][name] = p.detach().clone().cpu()
    return out


def _moved(before: dict[str, dict[str, torch.Tensor]], model) -> dict[str, int]:
    """How many tensors of each role changed since `before`."""
    now = _groups(model)
    return {role: sum(not torch.equal(t, now[role][n]) for n, t in tensors.items()) for role, tensors in
            before.items()}  # fmt: skip


# -- (a) throughput ---------------------------------------------------------------------------------------
THROUGHPUT_VARIANTS = {  # name: (trainer, LoRA policy, PRM placement); each pair does the same work
    "GRPO": ("GRPO", False, None),
    "PRIME, separate PRM": ("PRIME", False, "separate"),
    "GRPO-LoRA": ("GRPO", True, None),
    "PRIME, PRM adapter": ("PRIME", True, "adapter"),
}
PAIRS = {"full weights": ("GRPO", "PRIME, separate PRM"), "LoRA": ("GRPO-LoRA", "PRIME, PRM adapter")}


def peak_tflops(override: float | None) -> float | None:
    if override or not torch.cuda.is_available():
        return override
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def section_throughput(ctx: dict) -> dict:
    profile, results = ctx["profile"], {}
    peak = peak_tflops(ctx["peak_tflops"])
    for name, (kind, peft, placement) in THROUGHPUT_VARIANTS.items():
        trainer = build_trainer(kind, ctx["model"], ctx["work"], profile["prompts"], profile["generations"],
                                profile["completion"], profile["steps"], peft, placement)  # fmt: skip
        timer = StepTimer()
        instrument(trainer, timer)
        trainer.train()
        num_params = sum(p.numel() for n, p in trainer.model.named_parameters() if "lora_" not in n)  # the base
        steps, tokens = [breakdown(s) for s in timer.steps[1:]], timer.tokens[1:]  # the first step is warm-up
        del trainer
        _free()
        seconds = sum(s["step"] for s in steps)
        tokens_per_s = sum(t for t, _ in tokens) / seconds  # prompt + completion tokens of the policy update
        results[name] = {
            "seconds_per_step": [round(s["step"], 4) for s in steps],
            "median_seconds_per_step": statistics.median(s["step"] for s in steps),
            "median_breakdown_s": {k: statistics.median(s[k] for s in steps) for k in steps[0]},
            "tokens_per_s": tokens_per_s,
            "completion_tokens_per_s": sum(c for _, c in tokens) / seconds,
            # 6 N T: the policy update's FLOPs only; the PRM's update (~6NT) and reference (~2NT) are not credited
            "mfu_policy_6NT": 6 * num_params * tokens_per_s / (peak * 1e12) if peak else None,
            "policy_parameters": num_params,
        }
    ratios = {pair: results[p]["median_seconds_per_step"] / results[g]["median_seconds_per_step"]
              for pair, (g, p) in PAIRS.items()}  # fmt: skip
    return {"variants": results, "prime_over_grpo_seconds_per_step": ratios, "peak_bf16_tflops": peak,
            "work": {k: profile[k] for k in ("prompts", "generations", "completion", "steps")}}  # fmt: skip


# -- (b) QLoRA memory --------------------------------------------------------------------------------------
def section_qlora(ctx: dict) -> dict:
    cuda = torch.cuda.is_available()
    if cuda and importlib.util.find_spec("bitsandbytes") is None:
        return {"status": "not installed", "reason": "bitsandbytes is not installed (pip install 'prime-trl[quant]')"}
    extra = {}
    if cuda:
        from transformers import BitsAndBytesConfig

        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )  # fmt: skip
    work, out = ctx["profile"]["qlora"], {"quantized": cuda, "variants": {}}
    for name, kind in (("GRPO-QLoRA", "GRPO"), ("PRIME-QLoRA, PRM adapter", "PRIME")):
        _free()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        before_load = torch.cuda.memory_allocated() if cuda else 0
        trainer = build_trainer(kind, ctx["model"], ctx["work"], work["prompts"], ctx["profile"]["generations"],
                                work["completion"], work["steps"], True, "adapter" if kind == "PRIME" else None,
                                **extra)  # fmt: skip
        start = _groups(trainer.model)
        packed = sum(t.dtype == torch.uint8 for t in start["base"].values())
        trainer.train()
        logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
        out["variants"][name] = {
            "peak_gib": (torch.cuda.max_memory_allocated() - before_load) / 2**30 if cuda else None,
            "tensors_moved": _moved(start, trainer.model),
            "packed_4bit_base_tensors": packed,
            "prm_loss": logs.get("prm/loss"),
        }
        del trainer
    grpo, prime = out["variants"]["GRPO-QLoRA"], out["variants"]["PRIME-QLoRA, PRM adapter"]
    out["prime_over_grpo_peak"] = prime["peak_gib"] / grpo["peak_gib"] if cuda else None
    moved = prime["tensors_moved"]
    out["adapters_moved_base_frozen"] = moved["policy adapter"] > 0 and moved["PRM adapter"] > 0 and moved["base"] == 0
    if not cuda:
        out["note"] = "no CUDA: plain LoRA (bitsandbytes 4-bit needs CUDA), no GPU memory measured"
    return out


# -- (c) vLLM colocate ---------------------------------------------------------------------------------------
def section_vllm(ctx: dict) -> dict:
    if importlib.util.find_spec("vllm") is None:
        return {"status": "not installed"}
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29533"}.items():  # fmt: skip
        os.environ.setdefault(key, value)  # vLLM's colocate engine joins a (one-process) torch.distributed group
    work = ctx["profile"]["vllm"]
    start_time = time.perf_counter()
    # vLLM detokenizes what it samples, so this model's vocabulary is the tokenizer's own.
    trainer = build_trainer("PRIME", ctx["model_own_vocab"], ctx["work"], work["prompts"],
                            ctx["profile"]["generations"], work["completion"], work["steps"] + 1, True, "adapter",
                            use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3,
                            generation_kwargs={"min_tokens": work["completion"]})  # fmt: skip
    build_s = time.perf_counter() - start_time
    timer = StepTimer()
    instrument(trainer, timer)
    start = _groups(trainer.model)
    trainer.train()
    sampling = {k: v for entry in trainer.state.log_history for k, v in entry.items() if k.startswith("sampling/")}
    out = {
        "build_seconds": build_s,
        "seconds_per_step": [round(s["step"], 4) for s in timer.steps[1:]],
        "generation_seconds": [round(s.get("generation", 0.0), 4) for s in timer.steps[1:]],
        "tensors_moved": _moved(start, trainer.model),
        "active_adapter_after": trainer.model.active_adapter,
        "vllm_engine": type(getattr(getattr(trainer, "vllm_generation", None), "llm", None)).__name__,
        "trl_sampling_metrics_last_step": sampling,
    }
    del trainer
    _free()
    return out


# -- (d) the notebook ------------------------------------------------------------------------------------------
def section_notebook(ctx: dict) -> dict:
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    overrides = dict(
        MODEL=ctx["model_own_vocab"], DATASET=GSM8K_ROWS, NUM_PROMPTS=3, NUM_GENERATIONS=4, GRADIENT_ACCUMULATION=1,
        # a random model answers nothing right: keep every group so the PRM still learns
        ACCURACY_LOWER_BOUND=0.0, ACCURACY_UPPER_BOUND=1.0, LORA_R=8, INSTALL=False,
        OUTPUT_DIR=os.path.join(ctx["work"], "notebook-run"), **ctx["profile"]["notebook"],
    )  # fmt: skip
    cell.source += "\n\n# gpu_check overrides\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": ctx["work"]}})  # fmt: skip
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as err:  # a failing cell: keep what the cells before it printed
        error = f"{type(err).__name__}: {str(err)[-2000:]}"
    text = "\n".join("".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream")
                     for c in nb.cells if c.cell_type == "code")  # fmt: skip
    wanted = ("4-bit base:", "model in memory", "peak memory:", "adapters:", "sequence reward (sum of r_t):")
    out = {
        "seconds": time.perf_counter() - start,
        "overrides": {k: v for k, v in overrides.items() if k not in ("MODEL", "DATASET", "OUTPUT_DIR")},
        "cells_executed": sum(c.get("execution_count") is not None for c in nb.cells if c.cell_type == "code"),
        "code_cells": sum(c.cell_type == "code" for c in nb.cells),
        "key_lines": [line for line in text.splitlines() if line.startswith(wanted)],
    }
    if error:
        out.update(status="error", error=error)
    return out


SECTIONS = {"throughput": section_throughput, "qlora": section_qlora, "vllm": section_vllm,
            "notebook": section_notebook}  # fmt: skip


# -- driver ------------------------------------------------------------------------------------------------------
def run_section(name: str, ctx: dict) -> dict:
    """One section's result, with status "ok", "error" (and the traceback's end) or the section's own status."""
    start = time.perf_counter()
    try:
        result = {"status": "ok", **SECTIONS[name](ctx)}
    except Exception as err:
        result = {"status": "error", "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc()[-4000:]}  # fmt: skip
    _free()
    result["section_seconds"] = round(time.perf_counter() - start, 2)
    return result


def environment(dry_run: bool) -> dict:
    import transformers
    import trl

    versions = {"python": platform.python_version(), "torch": torch.__version__, "trl": trl.__version__,
                "transformers": transformers.__version__}  # fmt: skip
    for package in ("peft", "bitsandbytes", "vllm"):
        if importlib.util.find_spec(package) is not None:
            versions[package] = getattr(__import__(package), "__version__", "?")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "dry_run": dry_run,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON file to write")
    parser.add_argument("--dry-run", action="store_true", help="tiny models, a few tokens: checks the plumbing")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for MFU (default: by name)")
    cli = parser.parse_args(argv)
    if not cli.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU, or pass --dry-run to check the script on CPU")
    profile = PROFILES["dry" if cli.dry_run else "gpu"]
    report = {**environment(cli.dry_run), "profile": profile, "sections": {}}
    with tempfile.TemporaryDirectory(prefix="prime-gpu-check-") as work:  # the random models go with it
        ctx = {"profile": profile, "work": work, "peak_tflops": cli.peak_tflops,
               "model": save_random_qwen2(os.path.join(work, "model"), profile["shape"]),
               "model_own_vocab": save_random_qwen2(os.path.join(work, "model-own-vocab"),
                                                    {**profile["shape"], "vocab_size": None})}  # fmt: skip
        for name in cli.sections:
            print(f"[gpu_check] {name} ...", flush=True)
            report["sections"][name] = run_section(name, ctx)
            print(f"[gpu_check] {name}: {report['sections'][name]['status']} "
                  f"({report['sections'][name]['section_seconds']} s)", flush=True)  # fmt: skip
            with open(cli.out, "w") as f:
                json.dump(report, f, indent=2, default=str)
    return report


if __name__ == "__main__":
    main()
