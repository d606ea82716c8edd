"""`DemoArguments`: every knob of `prime-trl demo`, with the measurements behind its defaults;
`rl_settings`, its RL recipe as `run_rl` arguments; and `demo_splits`, which rebuilds a run's exact
problems from its recorded arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from prime_trl.demo.task import make_demo_splits
from prime_trl.prm import PRM_REFERENCES


# What a run recorded before a field existed had for it, where today's default differs: reading its eval.json back
# must give the recipe it ran.
RAN_BEFORE_RECORDED = {"prm_ref_type": "frozen"}


@dataclass
class DemoArguments:
    output_dir: str = field(default="prime-demo", metadata={"help": "Where eval.json and the models go."})
    seed: int = field(default=0, metadata={"help": "Seeds the task generator, the model init and the trainers."})
    num_threads: int = field(
        default=1,
        metadata={"help": "torch CPU threads (0: torch's default). On 2 shared cores, 2 threads ran SFT at 0.59 "
                  "steps/s and 1 thread at 2.78 steps/s side by side: OpenMP threads stall when another process "
                  "holds a core."},
    )  # fmt: skip
    # --- task (difficulty knobs of prime_trl.demo.task.sample_problem) ---
    min_steps: int = field(default=2, metadata={"help": "Fewest operations per problem."})
    max_steps: int = field(default=4, metadata={"help": "Most operations per problem."})
    max_operand: int = field(
        default=9,
        metadata={"help": "Operands of + and - are drawn from [1, max_operand]. Two-digit operands did not reach "
                  "0.1 accuracy within 600 SFT steps."},
    )  # fmt: skip
    max_multiplier: int = field(default=9, metadata={"help": "Operands of * are drawn from [2, max_multiplier]."})
    max_value: int = field(default=99, metadata={"help": "Every running value stays in [0, max_value]."})
    num_sft: int = field(
        default=20000, metadata={"help": "Worked solutions for the SFT warm start (< 1 epoch is used)."}
    )
    num_rl: int = field(default=2000, metadata={"help": "Prompts for the RL stage."})
    num_eval: int = field(
        default=1000,
        metadata={"help": "Held-out prompts for greedy accuracy. 1,000 puts the standard error of an accuracy near "
                  "0.5 at 0.016 (200 gave 0.035, wider than the differences we wanted to see)."},
    )  # fmt: skip
    num_dev: int = field(
        default=128, metadata={"help": "Held-out prompts (not eval) that decide when SFT stops (64 was noisy: +-0.06)."}
    )
    num_pool: int = field(
        default=128,
        metadata={"help": "Held-out prompts whose rollouts (num_generations each, sampled once from the SFT model) "
                  "form the fixed pool the PRM's health is measured on; about half give mixed groups."},
    )  # fmt: skip
    # --- model and tokenizer ---
    vocab_size: int = field(default=400, metadata={"help": "BPE vocabulary (digits are always single tokens)."})
    hidden_size: int = field(default=128, metadata={"help": "Model width (4 layers x 128: about 1M parameters)."})
    num_layers: int = field(default=4, metadata={"help": "Transformer layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (KV heads = heads / 2)."})
    # --- SFT warm start ---
    sft_max_steps: int = field(
        default=800, metadata={"help": "Cap on SFT optimizer steps if the dev target is never reached."}
    )
    sft_target_accuracy: float = field(
        default=0.3,
        metadata={"help": "Stop SFT once greedy dev accuracy reaches this: the model should be partly right, "
                  "leaving room for RL. Accuracy rises steeply (0.14 -> 0.71 between steps 300 and 600), so a "
                  "fixed step count would land anywhere in that range; 0 disables the check."},
    )  # fmt: skip
    reuse_sft: bool = field(
        default=False,
        metadata={"help": "Load output_dir/sft from an earlier run with the same arguments instead of training it "
                  "again (same seed, same weights); only the RL stage then runs."},
    )  # fmt: skip
    sft_eval_every: int = field(default=25, metadata={"help": "SFT steps between dev-accuracy checks."})
    sft_batch_size: int = field(default=32, metadata={"help": "SFT rows per optimizer step."})
    sft_learning_rate: float = field(
        default=1e-3, metadata={"help": "SFT learning rate, constant after a short warmup (3e-3 learned slower)."}
    )
    # --- evaluation ---
    max_completion_length: int = field(default=64, metadata={"help": "New tokens per completion (4 steps ~ 45)."})
    eval_batch_size: int = field(default=64, metadata={"help": "Prompts per generate call."})
    num_group_prompts: int = field(default=64, metadata={"help": "Prompts for the T=1 group-accuracy check."})
    num_generations: int = field(default=4, metadata={"help": "Samples per prompt (group-accuracy check and RL)."})
    # --- PRIME ---
    rl_max_steps: int = field(
        default=60,
        metadata={"help": "PRIME steps: generation batches of rl_prompts_per_step x num_generations rollouts, each "
                  "policy_mini_batches optimizer steps (60 x 128 = 7,680 completions trained on; dynamic sampling "
                  "samples about 3x as many to find them)."},
    )
    rl_prompts_per_step: int = field(
        default=32, metadata={"help": "Prompts per PRIME step (x num_generations samples)."}
    )
    rl_learning_rate: float = field(default=3e-5, metadata={"help": "Policy learning rate (constant)."})
    policy_mini_batches: int = field(
        default=4,
        metadata={"help": "Policy optimizer steps per generation batch (TRL's steps_per_generation), as the "
                  "authors' 4 mini-batches: with 1, PPO's ratio clipping never acts."},
    )  # fmt: skip
    prm_num_mini_batches: int = field(
        default=4,
        metadata={"help": "PRM optimizer steps per generation batch (PRIMEConfig.prm_num_mini_batches), as the "
                  "authors' 4: one Adam step on ~40 kept rows per RL step left the PRM near chance."},
    )  # fmt: skip
    prm_learning_rate: float = field(
        default=1e-4,
        metadata={"help": "Implicit PRM learning rate (constant; the library default is the authors' 1e-6, tuned "
                  "for 7B). An offline study on this model's rollouts (one seed) reached held-out pairwise "
                  "accuracy 0.65 at 1e-4 against 0.60 at 1e-3 (beta 0.05)."},
    )  # fmt: skip
    prm_beta: float = field(
        default=1.0,
        metadata={"help": "beta of the implicit reward. The authors' 0.05 goes with ~1,000-token completions; on "
                  "~40 tokens the PRM must move each token's log-probability ~20x more to express the same "
                  "logit, and drifts with length instead. Offline (one seed): beta 0.05 / 0.5 / 1.0 at lr 1e-4 "
                  "gave held-out pairwise accuracy 0.65 / 0.71 / 0.73."},
    )  # fmt: skip
    process_reward_norm: str = field(
        default="none",
        metadata={"help": "'none' keeps the process reward at beta * log-ratio, so it grows only as the PRM learns; "
                  "'batch_norm' (the authors') rescales even an untrained PRM's noise to the outcome's size, which "
                  "collapsed the tiny demo model in our runs."},
    )  # fmt: skip
    process_reward_coef: float = field(
        default=0.1,
        metadata={"help": "Weight of the process-reward returns against the outcome's (PRIMEConfig field). Against "
                  "outcome-only RLOO after 60 steps with dynamic sampling (3 paired seeds; README), 0.5 cost "
                  "-0.112 +- 0.096 and 0.1 is inside the noise (-0.016 +- 0.051), so the demo runs 0.1."},
    )  # fmt: skip
    prm_ref_type: str = field(
        default="policy",
        metadata={"help": "Reference of the implicit reward (PRIMEConfig field; the library's default is the paper's "
                  "'frozen' SFT model). 'policy' scores r_t against the policy that sampled: this PRM's rewards "
                  "largely repeat the policy's own drift from the SFT model, and against the policy that shared "
                  "drift cancels; no reference model is held. Over 5 paired runs it ended +0.013 +- 0.020 above "
                  "'frozen' (inside the noise; ahead on 4), and +0.10 or more above the SFT start on each of the "
                  "demo's 3 seeds (README).",
                  "choices": list(PRM_REFERENCES)},
    )  # fmt: skip
    gamma_process: float = field(
        default=1.0,
        metadata={"help": "Discount of the process-reward returns (PRIMEConfig field; the authors' 1.0). With 1.0 a "
                  "token's process return is the sum of every reward after it, so dense credit only spares the "
                  "tokens after a slip; below 1 it lands near the slip. A perfect PRM (bench/oracle_credit.py) "
                  "gained over outcome-only RLOO at 0.9 and not at 1.0; the demo's learned PRM lost more at 0.9 "
                  "(README)."},
    )  # fmt: skip
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "PRIMEConfig.dynamic_sampling: refill each batch with informative groups, as the authors "
                  "do. Against the masking filter (false) it lifted the demo's PRIME after 60 steps from 0.240 to "
                  "0.354 at process weight 0.5 (3 seeds; README), at about 3 generation rounds per step (~23,000 "
                  "completions sampled in 60 steps against 7,680)."},
    )  # fmt: skip
    rl_eval_every: int = field(default=15, metadata={"help": "PRIME steps between held-out accuracy checks."})
    prm_health_every: int = field(
        default=5,
        metadata={"help": "PRIME steps between PRM-health measurements on the held-out pool (prm/heldout_*)."},
    )


def recorded_arguments(recorded: dict) -> DemoArguments:
    """The `DemoArguments` of a run from the `args` its `eval.json` recorded (fields it predates as it ran them)."""
    return DemoArguments(**{**RAN_BEFORE_RECORDED, **recorded})


def rl_settings(args: DemoArguments) -> dict:
    """The demo's RL recipe as `run_rl` keyword arguments; the demo and the benchmarks start from these."""
    return dict(
        max_steps=args.rl_max_steps,
        prompts_per_step=args.rl_prompts_per_step,
        policy_mini_batches=args.policy_mini_batches,
        prm_num_mini_batches=args.prm_num_mini_batches,
        num_generations=args.num_generations,
        learning_rate=args.rl_learning_rate,
        prm_learning_rate=args.prm_learning_rate,
        prm_beta=args.prm_beta,
        max_completion_length=args.max_completion_length,
        eval_every=args.rl_eval_every,
        seed=args.seed,
        process_reward_norm=args.process_reward_norm,
        process_reward_coef=args.process_reward_coef,
        gamma_process=args.gamma_process,
        prm_ref_type=args.prm_ref_type,
        dynamic_sampling=args.dynamic_sampling,
    )


def demo_splits(args: DemoArguments) -> dict[str, list[dict]]:
    """The demo's "sft" / "rl" / "eval" / "dev" rows for `args`; other tools (bench/rerank.py)
    call this to rebuild the exact held-out problems of a run from its recorded args."""
    return make_demo_splits(
        num_sft=args.num_sft,
        num_rl=args.num_rl,
        num_eval=args.num_eval,
        num_dev=args.num_dev,
        num_pool=args.num_pool,
        seed=args.seed,
        num_steps=(args.min_steps, args.max_steps),
        max_operand=args.max_operand,
        max_multiplier=args.max_multiplier,
        max_value=args.max_value,
    )
