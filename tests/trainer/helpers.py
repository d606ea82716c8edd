"""Small builders shared by the trainer tests: a toy dataset, a toy verifier, a CPU PRIMEConfig."""

from datasets import Dataset
from transformers import TrainerCallback

from prime_trl import PRIMEConfig


def toy_dataset(n: int = 16) -> Dataset:
    """Chat prompts; odd-numbered ones are `solvable`, the others always score 0 (see `half_solvable_reward`)."""
    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "solvable": i % 2 == 1} for i in range(n)]
    )


def parity_reward(completions, **kwargs) -> list[float]:
    """1.0 when the completion has an even number of characters: a verifier whose outcome varies within groups."""
    return [float(len(c[0]["content"]) % 2 == 0) for c in completions]


def cpu_config(tmp_path, **overrides) -> PRIMEConfig:
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        max_completion_length=12,
        max_steps=2,
        learning_rate=1e-2,
        prm_learning_rate=1e-2,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        disable_tqdm=True,
        dynamic_sampling=False,  # these tests mean the masking filter; dynamic-sampling tests turn it on
    )
    kwargs.update(overrides)
    return PRIMEConfig(**kwargs)


def half_solvable_reward(completions, solvable, **kwargs) -> list[float]:
    """Parity on solvable prompts, 0 on the rest: a batch then has groups both inside and outside the band."""
    return [score if ok else 0.0 for score, ok in zip(parity_reward(completions), solvable)]


class StopAfter(TrainerCallback):
    """Stops training after optimizer step `step`, as a crash would (for the resume tests)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
