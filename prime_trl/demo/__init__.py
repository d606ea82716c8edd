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

The PRM recipe (`DemoArguments` defaults; the library's defaults stay the authors'):
- beta 1.0 instead of 0.05: the authors' beta goes with ~1,000-token completions; the demo's are ~40
  tokens, so at 0.05 the PRM must move every token's log-probability ~20x further to express the same
  logit, and the cheapest way is a drift proportional to length (the sequence reward of the earlier
  recipe correlated -0.47 with length);
- PRM learning rate 1e-4 and 4 PRM mini-batches per generation batch (the authors' 4): an offline study
  on this model's rollouts (one seed, so a hypothesis) gave held-out pairwise accuracy 0.60 for the
  earlier beta 0.05 / lr 1e-3, 0.65 at lr 1e-4 and 0.73 at beta 1.0 / lr 1e-4;
- 4 policy mini-batches per generation batch (TRL's steps_per_generation, the authors' 4): with 1,
  PPO's ratio clipping never acts;
- dynamic sampling on (`PRIMEConfig.dynamic_sampling`, the authors' batch composition: further prompts are
  sampled until the batch holds only groups with both outcomes): after 60 steps it lifted PRIME from 0.240 to
  0.354 (process weight 0.5, 3 paired seeds: +0.114 +- 0.105), at about 3x the completions sampled;
- the process term weighted 0.1 and left unnormalised (`process_reward_norm="none"`): against outcome-only RLOO
  after 60 steps 0.5 cost -0.112 +- 0.096 and 0.1 is inside the noise (-0.016 +- 0.051), and the authors'
  batch_norm rescales even an untrained PRM's noise to the outcome's size, which collapsed this model;
- the policy as the PRM's reference (`prm_ref_type="policy"`, the authors' other option): this PRM's rewards
  largely repeat the policy's own drift from the SFT model, which a reference moving with the policy cancels;
  over 5 paired runs it ended +0.013 +- 0.020 above the frozen SFT reference (inside the noise, ahead on 4 of 5),
  holds no reference model, and gained +0.10 or more on each of the demo's 3 seeds, where 'frozen' fell short on one;
- `gamma_process` kept at the authors' 1.0: a perfect PRM (the task's first wrong token,
  bench/oracle_credit.py) gained over outcome-only RLOO only at 0.9, where credit stays near the slip,
  but this learned PRM's per-token noise (std 0.24-0.65 off the slip) cost more accuracy at 0.9.
What the recipe measured is in the README's Quickstart and "Where dense credit could pay", with their commands.
The PRM's health is measured as it trains on a fixed pool of SFT rollouts of held-out prompts
(`prm_pool.jsonl`, `prime_trl.prm_health`): held-out pairwise accuracy, length drift and how often the
lowest-reward line is a wrong solution's first wrong line (`prime_trl.demo.task.first_wrong_step`).
"""

from prime_trl.demo.args import DemoArguments, demo_splits, recorded_arguments, rl_settings
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
    "recorded_arguments",
    "run_demo",
    "run_rl",
    "rl_settings",
    "run_sft",
    "sample_group_accuracy",
    "tokenizer_corpus",
]
