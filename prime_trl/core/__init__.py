"""PRIME's math as pure functions on tensors (imports torch only).

Notation: B rows = P prompts x G generations (the G rows of a prompt contiguous), T completion
positions, `mask` 1 on completion tokens (EOS included) and 0 on padding.
"""

from prime_trl.core.advantages import (
    discounted_returns,
    masked_whiten,
    outcome_rewards,
    rloo_returns,
    rloo_returns_paper_eq5,
)
from prime_trl.core.estimators import (
    explained_variance,
    gae_advantages,
    grpo_outcome_advantages,
    grpo_process_returns,
    grpo_returns,
    ppo_token_rewards,
    reinforce_returns,
)
from prime_trl.core.filtering import accuracy_filter
from prime_trl.core.labels import LABEL_TRANSFORMS, outcome_scores, prm_labels
from prime_trl.core.losses import clipped_value_loss, ppo_clip_loss, prm_ce_loss, prm_dpo_loss
from prime_trl.core.metrics import prm_pairwise_accuracy
from prime_trl.core.min_form import min_form_rewards
from prime_trl.core.prm_health import error_localisation, length_correlation
from prime_trl.core.rewards import implicit_process_rewards, normalize_process_rewards, sequence_implicit_rewards

__all__ = [
    "LABEL_TRANSFORMS",
    "accuracy_filter",
    "clipped_value_loss",
    "discounted_returns",
    "error_localisation",
    "explained_variance",
    "gae_advantages",
    "grpo_outcome_advantages",
    "grpo_process_returns",
    "grpo_returns",
    "implicit_process_rewards",
    "length_correlation",
    "masked_whiten",
    "min_form_rewards",
    "normalize_process_rewards",
    "outcome_rewards",
    "outcome_scores",
    "ppo_clip_loss",
    "ppo_token_rewards",
    "prm_ce_loss",
    "prm_dpo_loss",
    "prm_labels",
    "prm_pairwise_accuracy",
    "reinforce_returns",
    "rloo_returns",
    "rloo_returns_paper_eq5",
    "sequence_implicit_rewards",
]
