"""The demo's SFT warm start: TRL's `SFTTrainer` until greedy dev accuracy reaches a target."""

from __future__ import annotations

from transformers import TrainerCallback

from prime_trl.demo.evaluate import evaluate_accuracy


def run_sft(
    model,
    tokenizer,
    sft_rows: list[dict],
    output_dir: str,
    max_steps: int = 800,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    dev_rows: list[dict] | None = None,
    target_accuracy: float | None = None,
    eval_every: int = 25,
    max_new_tokens: int = 64,
    logging_steps: int = 25,
) -> dict:
    """Fine-tune `model` in place on prompt/completion rows (loss on the completion only).

    With `dev_rows` and a `target_accuracy`, greedy accuracy on `dev_rows` is checked every
    `eval_every` steps and training stops once it reaches the target. The learning rate is
    constant after a 3% warmup so that stopping early leaves no half-finished decay.
    Returns {"steps": steps run, "dev_accuracy": [(step, accuracy), ...]}.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=0.03,
        weight_decay=0.0,
        max_length=256,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to="none",
        use_cpu=True,  # TRL defaults bf16=True, which fails on a CPU-only box
        bf16=False,
        seed=seed,
        dataloader_num_workers=0,
    )
    callbacks = []
    if dev_rows and target_accuracy is not None:
        callbacks.append(StopAtAccuracy(tokenizer, dev_rows, target_accuracy, eval_every, max_new_tokens))
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(sft_rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.train()
    model.eval()
    return {"steps": trainer.state.global_step, "dev_accuracy": callbacks[0].history if callbacks else []}


class StopAtAccuracy(TrainerCallback):
    """Stops training once greedy accuracy on `dev_rows` reaches `target`; checked every `every` steps."""

    def __init__(self, tokenizer, dev_rows: list[dict], target: float, every: int = 25, max_new_tokens: int = 64):
        self.tokenizer, self.dev_rows, self.target, self.every = tokenizer, dev_rows, target, every
        self.max_new_tokens = max_new_tokens
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        rows = self.dev_rows
        accuracy = evaluate_accuracy(model, self.tokenizer, rows, self.max_new_tokens, len(rows), progress=False)
        accuracy = accuracy["accuracy"]
        model.train()
        self.history.append((state.global_step, accuracy))
        print(f"SFT step {state.global_step}: dev accuracy {accuracy:.3f} (stop at {self.target})")
        control.should_training_stop = accuracy >= self.target
