"""The demo's RL stage: PRIME (or outcome-only RLOO) from the SFT model, with held-out accuracy
recorded against samples drawn. Shared by `prime-trl demo` and `bench/sample_efficiency.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from prime_trl.config import PRIMEConfig
from prime_trl.prm_health import OnPolicyPRMHealthCallback, PRMHealthCallback, RolloutPool
from prime_trl.trainer import PRIMETrainer

# The demo's steps are lines: "\n" closes one (the library's default is a blank line).
DEMO_STEP_SEPARATORS = ("\n",)


class HeldOutAccuracy(TrainerCallback):
    """Greedy held-out accuracy every `every` optimizer steps, against the trainer's completions sampled so far
    (`num_completions_sampled`: with dynamic sampling, every round's, not only the rows trained on)."""

    def __init__(self, evaluate, every: int, trainer: PRIMETrainer):
        self.evaluate, self.every, self.trainer = evaluate, every, trainer
        self.curve: list[dict] = []

    def _record(self, step: int, model) -> None:
        accuracy = self.evaluate(model)
        model.train()
        self.curve.append({"step": step, "samples": self.trainer.num_completions_sampled, "accuracy": accuracy})
        print(f"RL step {step}: held-out accuracy {accuracy:.3f}")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._record(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._record(state.global_step, model)


class ConciseProgress(TrainerCallback):
    """One progress bar with the few numbers worth watching, instead of a full log dict per step."""

    SHOWN = {"reward": "reward", "prm/accuracy": "prm_acc", "prm/heldout_pairwise_accuracy": "prm_heldout",
             "prm/onpolicy_pairwise_accuracy": "prm_onpolicy", "prm/loss": "prm_loss",
             "filter/kept_fraction": "kept", "sampling/rounds": "rounds",
             "sampling/informative_fraction": "informative"}

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
    policy_mini_batches: int = 1,
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
    health_pool: RolloutPool | None = None,
    health_every: int | None = None,
    onpolicy_rows: list[dict] | None = None,
    first_wrong_step: Callable[[dict, str], int | None] | None = None,
    trainer_cls: Callable[..., PRIMETrainer] = PRIMETrainer,
    use_cpu: bool = True,
    **config_overrides,
):
    """Train from `sft_dir` with PRIME; `process_reward_coef=0` gives the paper's outcome-only RLOO baseline.

    `evaluate(model) -> float` is the held-out greedy accuracy; `config_overrides` go to `PRIMEConfig`.
    `max_steps` and `eval_every` count generation batches of `prompts_per_step * num_generations` rollouts; the
    policy takes `policy_mini_batches` optimizer steps on each (TRL's `steps_per_generation`), so PPO's ratio
    clipping acts from the second mini-batch on. With a `health_pool`, the PRM's health on it is logged as
    `prm/heldout_*` every `health_every` generation batches (default `eval_every`). With `onpolicy_rows` (held-out
    rows), the PRM's health on fresh rollouts of those rows by the current policy is logged as `prm/onpolicy_*`
    every `eval_every` generation batches (`first_wrong_step(row, completion)` for error localisation).
    `trainer_cls` (a PRIMETrainer subclass, or a factory taking its arguments) lets a benchmark swap the trainer
    (bench/oracle_credit.py's oracle PRM). `use_cpu=False` trains on the accelerator where there is one (fp32).
    Returns (trainer, accuracy curve, PRM-health history: [] without a pool).
    """
    from datasets import Dataset

    from prime_trl.verifiers import math_reward

    rows_per_generation = prompts_per_step * num_generations
    if policy_mini_batches < 1 or rows_per_generation % policy_mini_batches:
        raise ValueError(f"policy_mini_batches={policy_mini_batches} must divide the {rows_per_generation} rollouts "
                         "of a generation batch")  # fmt: skip
    rows_per_step = rows_per_generation // policy_mini_batches
    args = PRIMEConfig(
        output_dir=output_dir,
        use_cpu=use_cpu,
        bf16=False,
        seed=seed,
        max_steps=max_steps * policy_mini_batches,
        per_device_train_batch_size=rows_per_step,
        steps_per_generation=policy_mini_batches,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        temperature=1.0,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        prm_learning_rate=prm_learning_rate,
        prm_beta=prm_beta,
        prm_update=prm_update,
        process_reward_coef=process_reward_coef,
        dynamic_sampling=dynamic_sampling,
        gradient_checkpointing=False,  # a 1M-parameter model: recomputation only costs time
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        **config_overrides,
    )
    trainer = trainer_cls(
        model=sft_dir,
        reward_funcs=reward_funcs or [math_reward],
        args=args,
        train_dataset=Dataset.from_list(rl_rows),
        processing_class=tokenizer,
    )
    curve = HeldOutAccuracy(evaluate, eval_every * policy_mini_batches, trainer)
    trainer.add_callback(curve)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ConciseProgress())
    health = None
    if health_pool is not None:
        every = (health_every or eval_every) * policy_mini_batches
        health = PRMHealthCallback.attach(trainer, health_pool, every_n_steps=every,
                                          step_separators=DEMO_STEP_SEPARATORS)  # fmt: skip
    onpolicy = None
    if onpolicy_rows:
        onpolicy = OnPolicyPRMHealthCallback.attach(
            trainer, onpolicy_rows, num_generations=num_generations, first_wrong_step=first_wrong_step,
            every_n_steps=eval_every * policy_mini_batches, step_separators=DEMO_STEP_SEPARATORS, batch_size=64,
            generation_batch_size=64, seed=seed,
        )
    trainer.train()
    return trainer, curve.curve, merged_history(health, onpolicy)


def merged_history(*callbacks) -> list[dict]:
    """The health callbacks' measurements, one entry per step that any of them measured."""
    by_step: dict[int, dict] = {}
    for callback in callbacks:
        for entry in callback.history if callback else []:
            by_step.setdefault(entry["step"], {}).update(entry)
    return [by_step[step] for step in sorted(by_step)]
