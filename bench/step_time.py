"""Seconds per step of PRIME against GRPO on the same model and data, and where PRIME's extra time goes.

    python bench/step_time.py                                   # CPU: a local random model, ~2-3 min
    python bench/step_time.py --model Qwen/Qwen2.5-0.5B-Instruct --bf16 --max-completion-length 512 \
        --prompts-per-step 16 --peak-tflops 989                 # GPU (989 = H100 SXM dense bf16)
    python bench/step_time.py --filter                          # filter on: GRPO, PRIME masking, PRIME refill

GRPOTrainer and PRIMETrainer are built the same way (same model, prompts, reward, seed, batch shape;
GRPO with beta=0 and loss_type="dapo", the values PRIMEConfig pins), each in its own process, and
take turns step by step: GRPO step 1, PRIME step 1, GRPO step 2, ... (a baton passed in the step
callbacks), so load from other users of a shared machine hits both alike rather than one whole run.
`--steps` optimizer steps each, `--repeats` such pairs of processes; the first step of every run is
dropped as warm-up. Each optimizer step generates once (steps_per_generation = GA = 1). Both trainers
are alive at once: on a GPU that needs memory for both (use a model small enough, or `--sequential`).

Breakdown: methods of each trainer are wrapped with timers (CUDA-synchronised):
    generation      GRPOTrainer._generate (sampling, decoding)
    rewards         GRPOTrainer._calculate_rewards
    PRM ref fwd     OnlinePRM.ref_logps (frozen reference forward)
    PRM fwd+update  OnlinePRM.step (PRM forward, backward, all-reduce, AdamW)
    other scoring   rest of _generate_and_score_completions (old log-probs, advantages, gathers)
    policy fwd      GRPOTrainer._compute_loss
    policy bwd      training_step minus scoring and policy fwd
    optimizer etc.  the step minus training_step (clip, AdamW, scheduler, logging)
The reward is a deterministic hash of the completion text, so groups have mixed outcomes, and the
accuracy filter is [0, 1]: every row reaches the PRM, the most PRIME can cost. With the paper's
[0.2, 0.8] filter fewer rows do. The default model is random, so completions are forced to full
length (min_new_tokens) to give both trainers the same amount of work.

`--filter`: the accuracy filter at the paper's [0.2, 0.8] on a reward that gives about a third of the
groups mixed outcomes (a CRC of the text on every third prompt, 0 on the others), three trainers taking
turns: GRPO (which trains every row; groups of equal outcomes have zero advantage), PRIME masking the
filtered groups (dynamic_sampling=False) and PRIME refilling the batch with informative groups
(dynamic_sampling=True). Besides seconds per optimizer step it prints seconds per informative row (a row
of a group whose mean outcome lies in the band): total step time over total such rows trained.

Benchmarks print ratios measured side by side in one run; they are not tests.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
import warnings
import zlib
from collections import defaultdict
from datetime import datetime, timezone

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from prime_trl import PRIMEConfig, PRIMETrainer  # noqa: E402
from prime_trl.tiny import save_tiny_model  # noqa: E402

PARTS = ["generation", "rewards", "PRM ref fwd", "PRM fwd+update", "other scoring", "policy fwd", "policy bwd",
         "optimizer etc."]


def hash_reward(completions, **kwargs) -> list[float]:
    """1.0 or 0.0 from a CRC of the text: deterministic, and mixed within a group."""
    return [float(zlib.crc32(c[0]["content"].encode()) % 2) for c in completions]


def third_hash_reward(completions, solvable, **kwargs) -> list[float]:
    """`hash_reward` on the solvable third of the prompts, 0 on the rest (groups the filter drops)."""
    return [score * ok for score, ok in zip(hash_reward(completions), solvable)]


def prompts(n: int) -> Dataset:
    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + {2 * i}? Show each step."}],
                               "solvable": i % 3 == 0} for i in range(n)])


BAND = (0.2, 0.8)
# variant -> (trainer, PRIMEConfig fields); the default run and the --filter run
VARIANTS = {"GRPO": ("GRPO", {}), "PRIME": ("PRIME", dict(accuracy_lower_bound=0.0, accuracy_upper_bound=1.0,
                                                          dynamic_sampling=False))}
FILTER_VARIANTS = {
    "GRPO": ("GRPO", {}),
    "PRIME mask": ("PRIME", dict(accuracy_lower_bound=BAND[0], accuracy_upper_bound=BAND[1], dynamic_sampling=False)),
    "PRIME refill": ("PRIME", dict(accuracy_lower_bound=BAND[0], accuracy_upper_bound=BAND[1], dynamic_sampling=True)),
}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Baton:
    """Turn-taking between the trainer processes, in a ring: wait for my turn, then hand it to the next.

    A process that has finished (or failed) leaves its `done` set, so the others never wait for it.
    """

    def __init__(self, name, turns, dones, start):
        self.name, self.turns, self.dones, self.start = name, turns, dones, start
        self.order = list(turns)
        self.started = False

    def acquire(self):
        if not self.started:
            self.start.wait(timeout=600)  # all trainers built and inside train(): setup overlaps no timed step
            self.started = True
        while not self.turns[self.name].wait(timeout=0.05):
            if all(self.dones[v].is_set() for v in self.order if v != self.name):
                return
        self.turns[self.name].clear()

    def release(self):
        i = self.order.index(self.name)
        for other in self.order[i + 1 :] + self.order[:i]:
            if not self.dones[other].is_set():
                self.turns[other].set()
                return

    def finish(self):
        self.dones[self.name].set()
        self.release()


class StepTimer(TrainerCallback):
    """Accumulates wrapped-method time per optimizer step; `steps` holds one dict per step."""

    def __init__(self, baton: Baton | None = None):
        self.steps, self.current, self.tokens, self.start = [], defaultdict(float), [], 0.0
        self.informative = []  # per generation batch: rows of groups inside the band that the step trains on
        self.baton = baton

    def wrap(self, obj, name: str, part: str, on_result=None):
        method = getattr(obj, name)

        @functools.wraps(method)
        def timed(*args, **kwargs):
            _sync()
            start = time.perf_counter()
            result = method(*args, **kwargs)
            _sync()
            self.current[part] += time.perf_counter() - start
            self.current[f"{part} calls"] += 1
            if on_result is not None:
                on_result(result)
            return result

        setattr(obj, name, timed)  # an instance attribute: the class's own calls go through it

    def on_step_begin(self, args, state, control, **kwargs):
        if self.baton is not None:
            self.baton.acquire()
        _sync()
        self.current, self.start = defaultdict(float), time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.current["step"] = time.perf_counter() - self.start
        self.steps.append(dict(self.current))
        if self.baton is not None:
            self.baton.release()


def count_tokens(timer: StepTimer, output: dict) -> None:
    prompt = int(output["prompt_mask"].sum())
    completion = int(output["completion_mask"].sum())
    timer.tokens.append((prompt + completion, completion))


def count_informative(trainer, timer: StepTimer, output: dict) -> None:
    """Rows of the trained batch whose group's mean outcome lies in the band (PRIME: kept by its filter)."""
    from prime_trl.core import accuracy_filter

    rows = output["completion_mask"].size(0)
    if isinstance(trainer, PRIMETrainer):
        kept = trainer._metrics["train"]["filter/kept_fraction"]
        timer.informative.append(round(kept[-1] * rows) if rows and kept else 0)
    else:
        scores = trainer._last_rewards.nansum(dim=1)
        timer.informative.append(int(accuracy_filter(scores, trainer.num_generations, *BAND).sum()) *
                                 trainer.num_generations)


def instrument(trainer, timer: StepTimer) -> None:
    timer.wrap(trainer, "_generate", "generation")
    timer.wrap(trainer, "_calculate_rewards", "rewards", on_result=lambda r: setattr(trainer, "_last_rewards", r))
    def on_scored(output):
        count_tokens(timer, output)
        count_informative(trainer, timer, output)

    timer.wrap(trainer, "_generate_and_score_completions", "scoring", on_result=on_scored)
    timer.wrap(trainer, "_compute_loss", "policy fwd")
    timer.wrap(trainer, "training_step", "training_step")
    if hasattr(trainer, "prm"):
        timer.wrap(trainer.prm, "ref_logps", "PRM ref fwd")
        timer.wrap(trainer.prm, "step", "PRM fwd+update")
    trainer.add_callback(timer)


def breakdown(step: dict) -> dict:
    """Raw timer sums of one step -> the exclusive parts of PARTS (they add up to step["step"])."""
    scoring_inner = sum(step.get(k, 0.0) for k in ("generation", "rewards", "PRM ref fwd", "PRM fwd+update"))
    parts = {k: step.get(k, 0.0) for k in ("generation", "rewards", "PRM ref fwd", "PRM fwd+update", "policy fwd")}
    parts["other scoring"] = step.get("scoring", 0.0) - scoring_inner
    parts["policy bwd"] = step.get("training_step", 0.0) - step.get("scoring", 0.0) - step.get("policy fwd", 0.0)
    parts["optimizer etc."] = step["step"] - step.get("training_step", 0.0)
    parts["step"] = step["step"]
    parts["informative rows"] = step.get("informative rows", 0)
    parts["generations"] = step.get("generation calls", 0)
    return parts


def run_once(variant: str, cli, model_path: str, out_dir: str, baton: Baton | None = None):
    kind, fields = (FILTER_VARIANTS if cli.filter else VARIANTS)[variant]
    common = dict(
        output_dir=out_dir, seed=cli.seed, max_steps=cli.steps, num_generations=cli.num_generations,
        per_device_train_batch_size=cli.prompts_per_step * cli.num_generations, gradient_accumulation_steps=1,
        max_completion_length=cli.max_completion_length, temperature=1.0, learning_rate=1e-6, beta=0.0,
        loss_type="dapo", epsilon=0.2, bf16=cli.bf16, use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=cli.gradient_checkpointing, logging_steps=1, report_to="none", save_strategy="no",
        disable_tqdm=True, model_init_kwargs={"dtype": "bfloat16" if cli.bf16 else "float32"},
        generation_kwargs={"min_new_tokens": cli.min_new_tokens} if cli.min_new_tokens else None,
    )  # fmt: skip
    dataset = prompts(cli.prompts_per_step * (cli.steps + 1))
    reward = third_hash_reward if cli.filter else hash_reward
    if kind == "GRPO":
        trainer = GRPOTrainer(model=model_path, reward_funcs=reward, args=GRPOConfig(**common),
                              train_dataset=dataset)  # fmt: skip
    else:
        args = PRIMEConfig(**common, **fields, prm_learning_rate=1e-6)
        trainer = PRIMETrainer(model=model_path, reward_funcs=reward, args=args, train_dataset=dataset)
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts; this script prints its own table
    timer = StepTimer(baton)
    instrument(trainer, timer)
    try:
        trainer.train()
    finally:
        if baton is not None:
            baton.finish()
    num_params = sum(p.numel() for p in trainer.model.parameters())
    del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    # Drop the first step (warm-up: allocator, kernels, lazy imports).
    for step, rows in zip(timer.steps, timer.informative):  # one generation per step (steps_per_generation = 1)
        step["informative rows"] = rows
    return [breakdown(s) for s in timer.steps[1:]], timer.tokens[1:], num_params


def _worker(variant, cli, model_path, out_dir, baton, queue):
    _quiet()
    if cli.threads:
        torch.set_num_threads(cli.threads)
    try:
        queue.put((variant, run_once(variant, cli, model_path, out_dir, baton)))
    except BaseException as err:
        baton.start.abort()  # the others must not wait at the start for a worker that will never come
        baton.finish()
        queue.put((variant, err))
        raise


def run_pair(cli, model_path: str, work: str, repeat: int) -> dict:
    """The variants in processes of their own taking turns step by step; returns {variant: run_once result}."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    variants = list(FILTER_VARIANTS if cli.filter else VARIANTS)
    variants = variants[repeat % len(variants):] + variants[: repeat % len(variants)]  # the first mover rotates
    turns = {v: ctx.Event() for v in variants}
    dones = {v: ctx.Event() for v in variants}
    start = ctx.Barrier(len(variants))
    turns[variants[0]].set()
    queue = ctx.Queue()
    procs = []
    for variant in variants:
        baton = Baton(variant, turns, dones, start)
        proc = ctx.Process(target=_worker, args=(variant, cli, model_path, os.path.join(work, f"{variant}{repeat}"),
                                                 baton, queue))  # fmt: skip
        proc.start()
        procs.append(proc)
    results = dict(queue.get() for _ in procs)
    for proc in procs:
        proc.join()
    for variant, result in results.items():
        if isinstance(result, BaseException):
            raise RuntimeError(f"the {variant} worker failed") from result
    return results


def _quiet():
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5.x renames (gradient_checkpointing)


def machine() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'cpu'})"
    return (f"{platform.node()} | {device} | {os.cpu_count()} cores, {torch.get_num_threads()} torch threads | "
            f"{platform.platform()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model id or path; default: a local random Qwen2 (hidden 256, 4 layers)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (the first is dropped)")
    parser.add_argument("--repeats", type=int, default=1, help="GRPO/PRIME run pairs (the first mover alternates)")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=32)
    parser.add_argument("--min-new-tokens", type=int, default=None,
                        help="default: --max-completion-length for the random model, 0 (off) with --model")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="accelerator peak (dense) TFLOP/s, for MFU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--filter", action="store_true",
                        help="the accuracy filter on: GRPO, PRIME masking and PRIME refilling, per informative row")
    parser.add_argument("--sequential", action="store_true",
                        help="whole runs one after the other in this process instead of step-by-step turns")
    cli = parser.parse_args()
    if cli.threads:
        torch.set_num_threads(cli.threads)
    _quiet()

    work = tempfile.mkdtemp(prefix="prime-bench-")
    model_path = cli.model
    if model_path is None:
        model_path = save_tiny_model(os.path.join(work, "model"), hidden_size=256, num_layers=4, num_heads=4,
                                     num_kv_heads=2, intermediate_size=1024)  # fmt: skip
    if cli.min_new_tokens is None:
        cli.min_new_tokens = cli.max_completion_length if cli.model is None else 0

    print(f"date     {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"machine  {machine()}")
    print(f"versions torch {torch.__version__}, trl {trl.__version__}, transformers {transformers.__version__}")
    schedule = "whole runs in turn" if cli.sequential else "one process per variant, taking turns step by step"
    print(f"setup    model {cli.model or 'random Qwen2 hidden 256 x 4 layers'}; {cli.prompts_per_step} prompts x "
          f"{cli.num_generations} samples, {cli.max_completion_length} new tokens (min {cli.min_new_tokens}), "
          f"{'bf16' if cli.bf16 else 'fp32'}; {cli.steps} steps/run (first dropped) x {cli.repeats} runs each, "
          f"{schedule}")

    load_start = _load()
    names = list(FILTER_VARIANTS if cli.filter else VARIANTS)
    results = {v: [] for v in names}
    tokens = {v: [] for v in names}
    num_params = 0
    for repeat in range(cli.repeats):
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        if cli.sequential:
            pair = {v: run_once(v, cli, model_path, os.path.join(work, f"{v}{repeat}")) for v in order}
        else:
            pair = run_pair(cli, model_path, work, repeat)
        for variant in order:
            steps, toks, num_params = pair[variant]
            results[variant] += steps
            tokens[variant] += toks
            print(f"  run {repeat} {variant:12s}: " + " ".join(f"{s['step']:.3f}" for s in steps) + " s/step")
    if cli.filter:
        report_filter(results, cli)
    else:
        report(results, tokens, num_params, cli.peak_tflops)
    print(f"load average (1 min) at start {load_start:.1f}, at end {_load():.1f} on {os.cpu_count()} cores: "
          "a shared machine inflates and scatters the times (compare min with median)")


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def report_filter(results, cli):
    rows_per_step = cli.prompts_per_step * cli.num_generations
    print(f"\naccuracy filter {list(BAND)}, {rows_per_step} rows per optimizer step; informative row = a row of a "
          "group whose mean outcome lies in the band")
    print(f"{'variant':13s} {'median s/step':>13s} {'min':>7s} {'generations/step':>17s} "
          f"{'informative rows/step':>22s} {'s/informative row':>18s} {'vs GRPO':>8s}")
    per_row = {}
    for variant, steps in results.items():
        times, rows = [s["step"] for s in steps], [s["informative rows"] for s in steps]
        per_row[variant] = sum(times) / max(sum(rows), 1)
        generations = statistics.mean(s["generations"] for s in steps)
        print(f"{variant:13s} {statistics.median(times):13.3f} {min(times):7.3f} {generations:17.2f} "
              f"{statistics.mean(rows):22.1f} {per_row[variant]:18.4f} {per_row[variant] / per_row['GRPO']:8.2f}")


def report(results, tokens, num_params, peak_tflops):
    median = {v: {k: statistics.median(s[k] for s in steps) for k in [*PARTS, "step"]} for v, steps in results.items()}
    print(f"\npolicy parameters: {num_params / 1e6:.1f} M")
    header = f"{'variant':8s} {'median s/step':>13s} {'mean':>7s} {'min':>7s} {'max':>7s} {'n':>3s}"
    cuda = torch.cuda.is_available()
    if cuda:
        header += f" {'tokens/s':>9s} {'MFU 6NT':>8s}"
    print(header)
    for variant, steps in results.items():
        times = [s["step"] for s in steps]
        line = (f"{variant:8s} {statistics.median(times):13.3f} {statistics.mean(times):7.3f} {min(times):7.3f} "
                f"{max(times):7.3f} {len(times):3d}")
        if cuda:
            # Tokens processed by the policy update (prompt + completion) per second of the whole step.
            tokens_per_s = sum(t for t, _ in tokens[variant]) / sum(times)
            mfu = 6 * num_params * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else float("nan")
            line += f" {tokens_per_s:9.0f} {mfu:8.2%}"
        print(line)
    fastest = {v: min(s["step"] for s in steps) for v, steps in results.items()}
    paired = [p["step"] / g["step"] for g, p in zip(results["GRPO"], results["PRIME"])]  # neighbouring steps
    print(f"ratio PRIME/GRPO: {median['PRIME']['step'] / median['GRPO']['step']:.2f} (medians), "
          f"{fastest['PRIME'] / fastest['GRPO']:.2f} (minima), {statistics.median(paired):.2f} (median of step-by-step "
          "pairs); paper, Table 2, 7B on 8 A800: 680.3 / 530.7 = 1.28")

    # Shares of a step are measured within the step, so a load spike between steps does not move them.
    share = {v: {k: statistics.median(s[k] / s["step"] for s in steps) for k in PARTS} for v, steps in results.items()}
    print(f"\n{'breakdown':16s} {'GRPO s':>8s} {'PRIME s':>8s} {'PRIME-GRPO':>11s} {'GRPO share':>11s} "
          f"{'PRIME share':>12s}   (medians over steps; shares = part / its own step)")
    for part in [*PARTS, "step"]:
        g, p = median["GRPO"][part], median["PRIME"][part]
        shares = f"{share['GRPO'][part]:11.0%} {share['PRIME'][part]:12.0%}" if part != "step" else ""
        print(f"{part:16s} {g:8.3f} {p:8.3f} {p - g:+11.3f} {shares}")
    prm_share = statistics.median((s["PRM ref fwd"] + s["PRM fwd+update"]) / s["step"] for s in results["PRIME"])
    print(f"PRM work (reference forward + forward/update) = {prm_share:.0%} of PRIME's step; if the rest cost what "
          f"GRPO's step costs, PRIME/GRPO = 1 / (1 - {prm_share:.2f}) = {1 / (1 - prm_share):.2f}")
    if cuda:
        print("MFU 6NT = 6 x policy parameters x tokens/s / peak: policy-update FLOPs only; PRIME's PRM update "
              "(~6NT) and reference forward (~2NT) are extra work it does not credit.")


if __name__ == "__main__":
    main()
