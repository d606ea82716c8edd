"""A `prime-trl demo` output directory as the RL benchmarks read it: its recorded arguments, its exact
splits, its SFT model and the held-out greedy accuracy they all report."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass
class DemoRun:
    args: object  # prime_trl.demo.DemoArguments, as eval.json recorded them
    splits: dict[str, list[dict]]
    sft_dir: str
    tokenizer: object

    def accuracy(self, model) -> float:
        """Greedy accuracy on the demo's held-out eval split."""
        from prime_trl.demo import evaluate_accuracy

        return evaluate_accuracy(model, self.tokenizer, self.splits["eval"], self.args.max_completion_length,
                                 self.args.eval_batch_size, progress=False)["accuracy"]  # fmt: skip


def load_demo_run(demo_dir: str) -> DemoRun:
    from transformers import AutoTokenizer

    from prime_trl.demo import demo_splits, recorded_arguments

    with open(os.path.join(demo_dir, "eval.json")) as f:
        args = recorded_arguments(json.load(f)["args"])
    sft_dir = os.path.join(demo_dir, "sft")
    return DemoRun(args, demo_splits(args), sft_dir, AutoTokenizer.from_pretrained(sft_dir))
