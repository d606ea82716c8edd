"""The demo's RL stage: PRIME (or outcome-only RLOO) from the SFT model, held-out accuracy against
samples drawn, and the training curves as PNG. Shared by `prime-trl demo` and `bench/sample_efficiency.py`.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from prime_trl.config import PRIMEConfig
from prime_trl.trainer import PRIMETrainer

CURVES = {  # log key -> panel title
    "rewards/math_reward/mean": "outcome reward (train samples)",
    "prm/loss": "PRM loss (BCE)",
    "prm/accuracy": "PRM pairwise accuracy",
    "filter/kept_fraction": "kept fraction (accuracy filter)",
}


class HeldOutAccuracy(TrainerCallback):
    """Greedy held-out accuracy every `every` optimizer steps, against completions sampled so far."""

    def __init__(self, evaluate, every: int, completions_per_step: int):
        self.evaluate, self.every, self.completions_per_step = evaluate, every, completions_per_step
        self.curve: list[dict] = []

    def _record(self, step: int, model) -> None:
        accuracy = self.evaluate(model)
        model.train()
        self.curve.append({"step": step, "samples": step * self.completions_per_step, "accuracy": accuracy})
        print(f"RL step {step}: held-out accuracy {accuracy:.3f}")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._record(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._record(state.global_step, model)


class ConciseProgress(TrainerCallback):
    """One progress bar with the few numbers worth watching, instead of a full log dict per step."""

    SHOWN = {"reward": "reward", "prm/accuracy": "prm_acc", "prm/loss": "prm_loss", "filter/kept_fraction": "kept",
             "sampling/rounds": "rounds", "sampling/informative_fraction": "informative"}

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc="PRIME", dynamic_ncols=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        shown = {short: f"{logs[key]:.3f}" for key, short in self.SHOWN.items() if key in (logs or {})}
        if shown:
            self.bar.set_postfix(shown, refresh=False)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()


def run_rl(
    sft_dir: str,
    tokenizer,
    rl_rows: list[dict],
    output_dir: str,
    evaluate,
    *,
    process_reward_coef: float = 1.0,
    max_steps: int = 120,
    prompts_per_step: int = 16,
    num_generations: int = 4,
    learning_rate: float = 1e-4,
    prm_learning_rate: float = 1e-4,
    prm_beta: float = 0.05,
    prm_update: str = "after",
    max_completion_length: int = 64,
    eval_every: int = 20,
    seed: int = 0,
    dynamic_sampling: bool = False,
    reward_funcs=None,
    **config_overrides,
):
    """Train from `sft_dir` with PRIME; `process_reward_coef=0` gives the paper's outcome-only RLOO baseline.

    `evaluate(model) -> float` is the held-out greedy accuracy; `config_overrides` go to `PRIMEConfig`.
    Returns (trainer, accuracy curve).
    """
    from datasets import Dataset

    from prime_trl.verifiers import math_reward

    args = PRIMEConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        seed=seed,
        max_steps=max_steps,
        per_device_train_batch_size=prompts_per_step * num_generations,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        temperature=1.0,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        prm_learning_rate=prm_learning_rate,
        prm_beta=prm_beta,
        prm_update=prm_update,
        process_reward_coef=process_reward_coef,
        # False: the demo's recorded results (README) were measured with the masking filter
        dynamic_sampling=dynamic_sampling,
        gradient_checkpointing=False,  # a 1M-parameter model: recomputation only costs time
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        **config_overrides,
    )
    curve = HeldOutAccuracy(evaluate, eval_every, prompts_per_step * num_generations)
    trainer = PRIMETrainer(
        model=sft_dir,
        reward_funcs=reward_funcs or [math_reward],
        args=args,
        train_dataset=Dataset.from_list(rl_rows),
        processing_class=tokenizer,
        callbacks=[curve],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ConciseProgress())
    trainer.train()
    return trainer, curve.curve


def plot_training_curves(log_history: list[dict], path: str, title: str = "PRIME on the demo task") -> str:
    """One panel per metric in `CURVES`, against the optimizer step; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, (key, label) in zip(axes, CURVES.items()):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, lw=1, alpha=0.4, color="C0")
            ax.plot(steps, _moving_average(values, 10), lw=2, color="C0")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _moving_average(values, window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_accuracy_curve(curves: dict[str, list[dict]] | list[dict], path: str) -> str:
    """Held-out accuracy against completions sampled, one line per run (or per method); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {"PRIME": curves} if isinstance(curves, list) else curves
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, curve in curves.items():
        ax.plot([p["samples"] for p in curve], [p["accuracy"] for p in curve], marker="o", label=label)
    ax.set_xlabel("completions sampled")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
