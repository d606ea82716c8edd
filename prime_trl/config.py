"""`PRIMEConfig`: GRPOConfig plus PRIME's fields (Cui et al. 2025, arXiv 2502.01456)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from trl import GRPOConfig

from prime_trl.core.labels import LABEL_TRANSFORMS
from prime_trl.estimators import ADVANTAGE_ESTIMATORS, CREDIT_ASSIGNMENTS, PROCESS_REWARD_NORMS
from prime_trl.prm import PLACEMENTS, PRM_LOSSES, PRM_REFERENCES, UPDATE_MODES

# Each option's choices come from the dict that implements it, so the two cannot drift apart.
PRM_UPDATE_MODES = tuple(UPDATE_MODES)
PRM_PLACEMENTS = tuple(PLACEMENTS)
PRM_LABEL_TRANSFORMS = ("auto", *LABEL_TRANSFORMS)

logger = logging.getLogger(__name__)


@dataclass
class PRIMEConfig(GRPOConfig):
    r"""
    Configuration for [`PRIMETrainer`]. Everything of [`~trl.GRPOConfig`] applies; the fields below are PRIME's.

    Defaults follow the authors' Eurus-2-7B-PRIME run (PRIME-RL/PRIME `run_prime_main.sh`) where they apply to TRL.
    Parent defaults that PRIME's objective depends on are pinned: `num_generations=4`, `beta=0.0` (no KL),
    `epsilon=0.2` and `loss_type="dapo"` (PPO-clip averaged over all valid tokens of the batch).
    A `GRPOConfig` given to `PRIMETrainer` becomes a PRIMEConfig by `prime_config_from_grpo`, keeping its values.
    """

    # Parent defaults pinned for PRIME
    num_generations: int | None = field(
        default=4, metadata={"help": "Completions sampled per prompt (the paper's K). PRIME uses 4; must be >= 2."}
    )
    beta: float = field(
        default=0.0,
        metadata={"help": "KL coefficient against the policy reference. PRIME uses 0 (paper Sec. 4.1). This is not "
                  "the implicit-PRM beta; see `prm_beta`."},
    )
    epsilon: float = field(default=0.2, metadata={"help": "PPO clip range (the authors' `clip_ratio`)."})
    loss_type: str = field(
        default="dapo",
        metadata={"help": "Policy loss aggregation. 'dapo' = PPO-clip token-mean over all valid tokens of the "
                  "generation batch, the authors' token-mean. Other GRPO loss types accept PRIME's per-token "
                  "advantages too."},
    )

    # Implicit PRM
    prm_beta: float = field(
        default=0.05,
        metadata={"help": "beta of the implicit reward r_t = beta * log(pi_prm / pi_ref) and of the PRM's "
                  "cross-entropy loss (the authors' `beta_train`, 0.05). Must be > 0."},
    )
    prm_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Initial PRM weights. Default: the policy's starting point (paper Alg. 1 line 1). Only "
                  "with `prm_placement='separate'`."},
    )
    prm_ref_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Frozen reference of the implicit PRM. Default: the PRM's initial weights, so every "
                  "process reward starts at exactly 0. Only with `prm_placement='separate'`."},
    )
    prm_placement: str | None = field(
        default=None,
        metadata={"help": "Where the PRM lives. 'separate': a full model of its own plus a frozen reference model "
                  "(default without `peft_config`). 'adapter': a second LoRA adapter on the policy's base model, "
                  "the reference being that base with adapters disabled (default with `peft_config`).",
                  "choices": list(PRM_PLACEMENTS)},
    )
    prm_update: str = field(
        default="after",
        metadata={"help": "When the PRM learns relative to scoring. 'after': rewards come from the same forward pass "
                  "that the update uses, before its optimizer step (the paper's 'single forward', App. B.2). "
                  "'before': update, then score with the updated PRM ('double forward'). 'none': frozen PRM, e.g. a "
                  "trained implicit PRM such as EurusPRM.", "choices": list(PRM_UPDATE_MODES)},
    )
    prm_learning_rate: float = field(default=1e-6, metadata={"help": "PRM AdamW learning rate (paper: 1e-6)."})
    prm_weight_decay: float = field(default=0.0, metadata={"help": "PRM AdamW weight decay (authors: 0)."})
    prm_max_grad_norm: float = field(default=10.0, metadata={"help": "PRM gradient-norm clip (authors: 10)."})
    prm_num_mini_batches: int = field(
        default=1,
        metadata={"help": "PRM optimizer steps per generation batch; each process splits its kept rows into this "
                  "many mini-batches. The authors' 1024-row batches with 256-row mini-batches give 4."},
    )
    prm_micro_batch_size: int | None = field(
        default=None,
        metadata={"help": "Rows per PRM/reference forward pass (memory knob; gradients accumulate over micro-"
                  "batches). Default: `per_device_train_batch_size`."},
    )

    # PRM label: which reward functions say whether an answer is right (the outcome reward uses them all)
    prm_label_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "Names (as logged under `rewards/<name>/mean`) or indices of the reward functions whose "
                  "`reward_weights`-weighted mean is the PRM's cross-entropy label and feeds the accuracy filter. "
                  "Each needs a positive weight. Default: the first reward function, fixed at start so the label "
                  "never changes during a run; the correctness reward is usually listed first, and shaping terms "
                  "(format, length penalties) are not correctness. The outcome reward for the advantage is always "
                  "GRPO's weighted sum of all reward functions, any range."},
    )
    prm_label_transform: str = field(
        default="auto",
        metadata={"help": "How each label function's output becomes a label in [0, 1]: 'identity' (must already lie "
                  "in [0, 1], as verifiers do), 'sigmoid' (an unbounded reward-model score read as a logit), "
                  "'signed' ((r + 1) / 2 for scores in [-1, 1] such as +-1 correctness). 'auto': 'sigmoid' for "
                  "reward models, 'identity' for reward functions. A label outside [0, 1] is an error naming the "
                  "function.", "choices": list(PRM_LABEL_TRANSFORMS)},
    )

    # Accuracy filter
    accuracy_lower_bound: float = field(
        default=0.2,
        metadata={"help": "Keep a prompt only if its group's mean outcome is >= this (inclusive; authors: 0.2)."},
    )
    accuracy_upper_bound: float = field(
        default=0.8,
        metadata={"help": "Keep a prompt only if its group's mean outcome is <= this (inclusive; authors: 0.8)."},
    )

    # Dynamic sampling: refill the generation batch with informative groups (prime_trl/sampling.py)
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Build each generation batch from informative groups only: sample a batch of prompts, "
                  "apply the accuracy filter, and while fewer groups pass than the batch has prompts, sample the "
                  "next prompts of the training data (same order, resumable) again, up to `max_sampling_rounds` "
                  "rounds; surplus passing prompts go back to the front of the data. The policy and the PRM then "
                  "train on the configured number of rows, none of them from a filtered group. Default True because "
                  "the authors' trainer always refills (PRIME-RL/PRIME ray_trainer keeps sampling until "
                  "batch_size * n rollouts pass; DAPO calls it dynamic sampling). False: filtered groups stay in the "
                  "batch, masked out of the losses (they still cost a policy forward and backward)."},
    )
    max_sampling_rounds: int = field(
        default=8,
        metadata={"help": "Most sampling rounds (each of one generation batch of prompts) per generation batch with "
                  "`dynamic_sampling`; >= 1. When they run out, a warning is logged and the step trains on the "
                  "passing groups held, rounded down to whole groups that split evenly over processes and "
                  "`steps_per_generation` (the rest go back to the data); with none, the step's micro-batches are "
                  "skipped: no forward, backward or weight change of policy or PRM (the step and the learning-rate "
                  "schedule still advance). 8 fills the batch while about one group "
                  "in 8 passes and caps a step's sampling at 8x GRPO's when the data is too easy or too hard."},
    )

    # Advantages
    process_reward_coef: float = field(
        default=1.0, metadata={"help": "Weight of the process-reward RLOO returns in the advantage; 0 disables them "
                               "(outcome-only RLOO, the paper's baseline)."}
    )
    outcome_reward_coef: float = field(
        default=1.0, metadata={"help": "Weight of the outcome-reward RLOO returns in the advantage; 0 disables them."}
    )
    gamma_process: float = field(default=1.0, metadata={"help": "Discount of the process-reward returns, in (0, 1]."})
    gamma_outcome: float = field(default=1.0, metadata={"help": "Discount of the outcome-reward returns, in (0, 1]."})
    process_reward_norm: str = field(
        default="batch_norm",
        metadata={"help": "'batch_norm': divide process rewards by the batch's largest |reverse cumulative sum| (the "
                  "authors' `prime_norm`); 'none': use beta * log-ratio as is.", "choices": list(PROCESS_REWARD_NORMS)},
    )
    process_credit_assignment: str = field(
        default="sum",
        metadata={"help": "'sum': returns sum the process rewards ahead (PRIME). 'min_form': PURE's min-form credit "
                  "assignment (Cheng et al. 2025, arXiv 2504.15275): rewards are re-weighted by "
                  "softmax(-r / min_form_temperature) so that a return approximates the worst reward ahead, "
                  "which resists reward hacking.", "choices": list(CREDIT_ASSIGNMENTS)},
    )
    min_form_temperature: float = field(
        default=0.1, metadata={"help": "Temperature of PURE's softmin re-weighting (PURE's code: 0.1). Must be > 0."}
    )

    # Advantage estimator, and the PRM's reference and loss variants (paper §5 Table 4, App. B.1, App. C.2)
    advantage_estimator: str = field(
        default="rloo",
        metadata={"help": "How rewards become advantages. 'rloo': PRIME's RLOO returns of each source, whitened (paper "
                  "§3.2, as the authors' code runs it). 'rloo_paper_eq5': the same as the paper's Eq. 5 writes it (the "
                  "baseline subtracted on every token; equal to 'rloo' at the first token). 'reinforce': the same "
                  "returns without baselines, whitened. 'grpo': GRPO's group-normalised "
                  "outcome (TRL's `scale_rewards`) on every token plus the group-normalised process return "
                  "(DeepSeekMath §4.1.3), not whitened; with process rewards off it is exactly GRPO. 'ppo': GAE "
                  "(`gae_gamma`, `gae_lambda`) with a learned value model. The paper's Table 4 runs all four.",
                  "choices": list(ADVANTAGE_ESTIMATORS)},
    )
    prm_ref_type: str = field(
        default="frozen",
        metadata={"help": "Reference of the implicit reward (the authors' `ref_type`). 'frozen': a frozen model, the "
                  "PRM's start (paper default). 'policy': the policy's own log-probs of its samples at temperature 1, "
                  "so no reference model is held or run (paper App. B.1 finds both give similar rewards).",
                  "choices": list(PRM_REFERENCES)},
    )
    prm_loss_type: str = field(
        default="ce",
        metadata={"help": "Loss of the online PRM update. 'ce': cross-entropy on the outcome (paper Alg. 1). 'dpo': "
                  "veRL's pairwise DPO loss of each row against its group's other side (paper App. C.2: similar "
                  "results, CE chosen for memory); costs one more PRM forward per batch.",
                  "choices": list(PRM_LOSSES)},
    )
    gae_gamma: float = field(
        default=1.0, metadata={"help": "GAE discount for 'ppo', in (0, 1]. 1 as PRIME's returns (no discount)."}
    )
    gae_lambda: float = field(
        default=0.95, metadata={"help": "GAE lambda for 'ppo', in [0, 1]; 0.95 as in veRL's PPO defaults."}
    )

    value_learning_rate: float = field(
        default=1e-5, metadata={"help": "AdamW learning rate of the 'ppo' value model (veRL's critic default, 1e-5)."}
    )
    value_weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay of the 'ppo' value model (veRL's critic default, 0.01)."}
    )
    value_max_grad_norm: float = field(
        default=1.0, metadata={"help": "Gradient-norm clip of the 'ppo' value model (veRL's critic default, 1.0)."}
    )
    value_clip_range: float = field(
        default=0.5,
        metadata={"help": "Clip range c of the value loss, V_old +- c (veRL's `cliprange_value`, 0.5). Must be > 0."},
    )

    def __post_init__(self):
        super().__post_init__()
        self._check_estimator_options()
        _check_choice("prm_update", self.prm_update, PRM_UPDATE_MODES)
        _check_choice("process_reward_norm", self.process_reward_norm, PROCESS_REWARD_NORMS)
        _check_choice("process_credit_assignment", self.process_credit_assignment, CREDIT_ASSIGNMENTS)
        _check_choice("prm_label_transform", self.prm_label_transform, PRM_LABEL_TRANSFORMS)
        if self.prm_label_funcs is not None and len(self.prm_label_funcs) == 0:
            raise ValueError("prm_label_funcs is empty: name at least one reward function, or leave it None.")
        if self.min_form_temperature <= 0:
            raise ValueError(f"min_form_temperature must be > 0, got {self.min_form_temperature}.")
        if self.prm_placement is not None:
            _check_choice("prm_placement", self.prm_placement, PRM_PLACEMENTS)
        if self.prm_beta <= 0:
            raise ValueError(f"prm_beta must be > 0 (it scales the implicit reward), got {self.prm_beta}.")
        if not 0.0 <= self.accuracy_lower_bound <= self.accuracy_upper_bound <= 1.0:
            raise ValueError(
                "Need 0 <= accuracy_lower_bound <= accuracy_upper_bound <= 1, got "
                f"accuracy_lower_bound={self.accuracy_lower_bound}, accuracy_upper_bound={self.accuracy_upper_bound}."
            )
        for name in ("gamma_process", "gamma_outcome"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], got {getattr(self, name)}.")
        for name in ("process_reward_coef", "outcome_reward_coef", "prm_learning_rate", "prm_weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.process_reward_coef == 0 and self.outcome_reward_coef == 0:
            raise ValueError("process_reward_coef and outcome_reward_coef are both 0: the policy would get no signal.")
        if self.prm_num_mini_batches < 1:
            raise ValueError(f"prm_num_mini_batches must be >= 1, got {self.prm_num_mini_batches}.")
        if self.prm_micro_batch_size is not None and self.prm_micro_batch_size < 1:
            raise ValueError(f"prm_micro_batch_size must be >= 1, got {self.prm_micro_batch_size}.")
        if self.max_sampling_rounds < 1:
            raise ValueError(f"max_sampling_rounds must be >= 1, got {self.max_sampling_rounds}.")
        if self.prm_placement == "adapter" and (self.prm_model_name_or_path or self.prm_ref_model_name_or_path):
            raise ValueError(
                "prm_placement='adapter' shares the policy's base model, so prm_model_name_or_path and "
                "prm_ref_model_name_or_path cannot be set; use prm_placement='separate' for another PRM checkpoint."
            )

    def _check_estimator_options(self) -> None:
        _check_choice("advantage_estimator", self.advantage_estimator, ADVANTAGE_ESTIMATORS)
        if not 0.0 < self.gae_gamma <= 1.0:
            raise ValueError(f"gae_gamma must lie in (0, 1], got {self.gae_gamma}.")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must lie in [0, 1], got {self.gae_lambda}.")
        _check_choice("prm_ref_type", self.prm_ref_type, PRM_REFERENCES)
        _check_choice("prm_loss_type", self.prm_loss_type, PRM_LOSSES)
        if self.prm_ref_type == "policy" and self.prm_ref_model_name_or_path:
            raise ValueError(
                "prm_ref_type='policy' takes the policy as the PRM's reference; unset prm_ref_model_name_or_path."
            )
        local_rows = self.per_device_train_batch_size * self.steps_per_generation
        if self.prm_loss_type == "dpo" and local_rows % self.num_generations != 0:
            raise ValueError(
                f"prm_loss_type='dpo' compares rows within a group, so each process's {local_rows} rows "
                f"(per_device_train_batch_size * steps_per_generation) must be a multiple of num_generations="
                f"{self.num_generations}."
            )
        for name in ("value_learning_rate", "value_weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        for name in ("value_max_grad_norm", "value_clip_range"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.advantage_estimator == "rloo_paper_eq5" and self.gamma_outcome != 1.0:
            raise ValueError(
                "advantage_estimator='rloo_paper_eq5' adds the outcome undiscounted (Eq. 5): gamma_outcome must be 1."
            )
        if self.advantage_estimator == "grpo" and self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "advantage_estimator='grpo' normalises PRIME's weighted-sum outcome, i.e. "
                f"multi_objective_aggregation='sum_then_normalize'; got {self.multi_objective_aggregation!r}."
            )


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}.")


def prime_config_from_grpo(args: GRPOConfig) -> PRIMEConfig:
    """A PRIMEConfig with every value of a GRPOConfig (PRIME's pinned defaults do not replace them) and
    PRIME's own fields at their defaults."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GRPOConfig) if f.init}
    # GRPOConfig.__post_init__ derived one of these from the other; passing both again is refused.
    values["generation_batch_size"] = None
    config = PRIMEConfig(**values)
    logger.warning(
        "PRIMETrainer got a GRPOConfig: converted to a PRIMEConfig with all its values (loss_type=%r, beta=%s, "
        "epsilon=%s, num_generations=%s) and PRIME's own fields at their defaults; pass a PRIMEConfig to set them. "
        "With the default advantage_estimator='rloo', scale_rewards and multi_objective_aggregation do not apply.",
        config.loss_type, config.beta, config.epsilon, config.num_generations,
    )
    return config
