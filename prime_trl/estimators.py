"""Which `prime_trl.core` function each `PRIMEConfig.advantage_estimator` runs, and with which config fields.

Every entry takes the global batch after PRIME's process-reward preprocessing (credit assignment,
normalisation) and returns the policy's (B, T) advantages, plus, for PPO, the value model's targets.
`ADVANTAGE_ESTIMATORS` is the one definition: the config's `choices` and validation read its keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prime_trl.core import (
    gae_advantages,
    grpo_returns,
    masked_whiten,
    min_form_rewards,
    normalize_process_rewards,
    ppo_token_rewards,
    reinforce_returns,
    rloo_returns,
    rloo_returns_paper_eq5,
)


# How process rewards become credit: PRIME sums them; PURE re-weights them towards the minimum ahead.
CREDIT_ASSIGNMENTS = {
    "sum": lambda rewards, mask, temperature: rewards,
    "min_form": min_form_rewards,
}
# How they are scaled: the authors' batch_norm (by the batch's largest |return|), or beta * log-ratio as is.
PROCESS_REWARD_NORMS = {
    "batch_norm": normalize_process_rewards,
    "none": lambda rewards, mask: rewards,
}


def preprocess_process_rewards(rewards, mask, credit_assignment: str, norm: str, temperature: float):
    """(B, T) implicit process rewards -> the (B, T) rewards an estimator sees: credit assignment, then norm."""
    rewards = CREDIT_ASSIGNMENTS[credit_assignment](rewards, mask, temperature)
    return PROCESS_REWARD_NORMS[norm](rewards, mask)


@dataclass
class EstimatorInputs:
    """The global batch an estimator sees.

    process_rewards: (B, T) preprocessed implicit process rewards (zeros when the PRM is off)
    outcome_scores:  (B,)  outcome rewards r_o (GRPO's weighted sum of the reward functions, any range)
    mask:            (B, T) 1 on the completion tokens that enter the loss (filtered rows all 0)
    num_generations: G
    values:          (B, T) value-model predictions V(s_t), only for "ppo"
    """

    process_rewards: torch.Tensor
    outcome_scores: torch.Tensor
    mask: torch.Tensor
    num_generations: int
    values: torch.Tensor | None = None


@dataclass
class EstimatorOutput:
    advantages: torch.Tensor  # (B, T), 0 off the mask
    value_targets: torch.Tensor | None = None  # (B, T) GAE returns R_t = A_t + V_t, only for "ppo"


def _rloo(x: EstimatorInputs, args) -> EstimatorOutput:
    # PRIME (paper §3.2): RLOO return of each source, summed, whitened over the batch's tokens
    returns = rloo_returns(
        x.process_rewards, x.outcome_scores, x.mask, x.num_generations,
        args.process_reward_coef, args.outcome_reward_coef, args.gamma_process, args.gamma_outcome,
    )  # fmt: skip
    return EstimatorOutput(masked_whiten(returns, x.mask) * x.mask)


def _rloo_paper_eq5(x: EstimatorInputs, args) -> EstimatorOutput:
    # PRIME's RLOO as the paper's Eq. 5 writes it (baseline on every token, outcome undiscounted), whitened
    returns = rloo_returns_paper_eq5(
        x.process_rewards, x.outcome_scores, x.mask, x.num_generations,
        args.process_reward_coef, args.outcome_reward_coef, args.gamma_process,
    )  # fmt: skip
    return EstimatorOutput(masked_whiten(returns, x.mask) * x.mask)


def _reinforce(x: EstimatorInputs, args) -> EstimatorOutput:
    # REINFORCE: the same returns without the leave-one-out baselines, whitened like PRIME's
    returns = reinforce_returns(
        x.process_rewards, x.outcome_scores, x.mask,
        args.process_reward_coef, args.outcome_reward_coef, args.gamma_process, args.gamma_outcome,
    )  # fmt: skip
    return EstimatorOutput(masked_whiten(returns, x.mask) * x.mask)


def _grpo(x: EstimatorInputs, args) -> EstimatorOutput:
    # GRPO: group-normalised outcome on every token (TRL's scale_rewards) + normalised process return; no whitening
    advantages = grpo_returns(
        x.process_rewards, x.outcome_scores, x.mask, x.num_generations, args.scale_rewards,
        args.process_reward_coef, args.outcome_reward_coef, args.gamma_process,
    )  # fmt: skip
    return EstimatorOutput(advantages * x.mask)


def _ppo(x: EstimatorInputs, args) -> EstimatorOutput:
    # PPO: GAE on r_t = c_p r_phi(y_t) + c_o r_o 1[last]; advantages whitened, value targets A + V not
    rewards = ppo_token_rewards(
        x.process_rewards, x.outcome_scores, x.mask, args.process_reward_coef, args.outcome_reward_coef
    )
    advantages, returns = gae_advantages(rewards, x.values, x.mask, args.gae_gamma, args.gae_lambda)
    return EstimatorOutput(masked_whiten(advantages, x.mask) * x.mask, returns)


ADVANTAGE_ESTIMATORS = {
    "rloo": _rloo,
    "rloo_paper_eq5": _rloo_paper_eq5,
    "reinforce": _reinforce,
    "grpo": _grpo,
    "ppo": _ppo,
}
# Estimators that need a learned value model (built and trained by `prime_trl.value`).
NEEDS_VALUE_MODEL = frozenset({"ppo"})
