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
from prime_trl.core.filtering import accuracy_filter
from prime_trl.core.labels import LABEL_TRANSFORMS, outcome_scores, prm_labels
from prime_trl.core.losses import ppo_clip_loss, prm_ce_loss
from prime_trl.core.metrics import prm_pairwise_accuracy
from prime_trl.core.min_form import min_form_returns, min_form_rewards
from prime_trl.core.prm_health import error_localisation, length_correlation
from prime_trl.core.rewards import implicit_process_rewards, normalize_process_rewards, sequence_implicit_rewards

__all__ = [
    "LABEL_TRANSFORMS",
    "accuracy_filter",
    "discounted_returns",
    "error_localisation",
    "implicit_process_rewards",
    "length_correlation",
    "masked_whiten",
    "min_form_returns",
    "min_form_rewards",
    "normalize_process_rewards",
    "outcome_rewards",
    "outcome_scores",
    "ppo_clip_loss",
    "prm_ce_loss",
    "prm_labels",
    "prm_pairwise_accuracy",
    "rloo_returns",
    "rloo_returns_paper_eq5",
    "sequence_implicit_rewards",
]
