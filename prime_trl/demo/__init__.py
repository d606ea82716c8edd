"""The offline demo (`prime-trl demo --output-dir DIR`): PRIME on a CPU, in minutes.

One module per stage; `run_demo(DemoArguments(...))` runs them all (`pipeline.py`).

Stages (each a function, so notebooks and tests can run them one by one):
1. synthetic multi-step arithmetic (`prime_trl.demo.task`), disjoint SFT / RL / eval splits;
2. a small Qwen2 and a digit-level BPE tokenizer built locally (`build_demo_model_and_tokenizer`);
3. a short SFT warm start on worked solutions with TRL's `SFTTrainer` (`run_sft`), tuned so the
   model is *partly* right: greedy accuracy ~0.3-0.6 with slips in the intermediate lines;
4. greedy held-out accuracy (`evaluate_accuracy`) and, at temperature 1, per-prompt group
   accuracy (`sample_group_accuracy`): PRIME learns only from groups with some right and some
   wrong samples, so the demo records how many there are;
5. PRIME from the SFT model (`prime_trl.demo.rl.run_rl`), then greedy held-out accuracy again, the
   accuracy-against-samples curve and the training curves as PNG.

The defaults of `DemoArguments` are the recipe measured on 2 shared CPU cores (field help has the
reasons). One run of those measurements (seed 0, 1 torch thread, other jobs on the machine):
- SFT: 525 steps of 32 rows (~1M-parameter Qwen2, 4x128) until dev accuracy 0.33 >= 0.3, 406 s
  under a load average of ~5 (about 2.8 steps/s when a core is free, so ~3 min);
- greedy held-out accuracy after SFT 0.42 (200 prompts); wrong answers come from slips in
  intermediate lines such as "9 - 1 = 6";
- T=1, 4 samples per prompt on 64 prompts: {0 right: 36, 1: 11, 2: 8, 3: 6, 4: 3}, 39% mixed
  groups, sample accuracy 0.22;
- `model.generate` of 64 samples x up to 64 new tokens: 0.35 s (1 thread);
- feasibility probe for the RL stage: TRL's GRPOTrainer with the outcome reward only (16 prompts
  x 4, lr 1e-4, beta 0) took greedy accuracy 0.42 -> 0.59 in 60 steps / 65 s.
"""

from prime_trl.demo.args import DemoArguments, demo_splits
from prime_trl.demo.evaluate import evaluate_accuracy, is_correct, sample_group_accuracy
from prime_trl.demo.model import build_demo_model_and_tokenizer
from prime_trl.demo.pipeline import run_demo
from prime_trl.demo.plots import plot_accuracy_curve, plot_training_curves
from prime_trl.demo.rl import run_rl
from prime_trl.demo.sft import run_sft
from prime_trl.demo.task import make_demo_splits, tokenizer_corpus

__all__ = [
    "DemoArguments",
    "build_demo_model_and_tokenizer",
    "demo_splits",
    "evaluate_accuracy",
    "is_correct",
    "make_demo_splits",
    "plot_accuracy_curve",
    "plot_training_curves",
    "run_demo",
    "run_rl",
    "run_sft",
    "sample_group_accuracy",
    "tokenizer_corpus",
]
