"""Which reward functions give the implicit PRM its label, and how: `prm_label_funcs` and `prm_label_transform`.

Resolved once, when the trainer is built, from the reward functions GRPO loaded, so the rule cannot change
between batches or between a run and its resumption. The math is `prime_trl.core.labels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prime_trl.core.labels import LABEL_TRANSFORMS, prm_labels


@dataclass(frozen=True)
class LabelRule:
    """The PRM's label: the weighted mean of `funcs`' outputs, each mapped into [0, 1] by its transform."""

    names: tuple[str, ...]  # every reward function's name, in `reward_funcs` order
    funcs: tuple[int, ...]  # indices of the label functions
    transforms: tuple[str, ...]  # one LABEL_TRANSFORMS key per label function

    def __call__(self, rewards_per_func: torch.Tensor, reward_weights: torch.Tensor) -> torch.Tensor:
        """(B, F) rewards, NaN for None -> (B,) labels in [0, 1], NaN where no label function scored the row."""
        labels_per_func = torch.full_like(rewards_per_func, float("nan"))  # (B, F)
        weights = torch.zeros_like(reward_weights, dtype=rewards_per_func.dtype)  # (F,): 0 leaves a function out
        for index, transform in zip(self.funcs, self.transforms):
            labels_per_func[:, index] = LABEL_TRANSFORMS[transform](rewards_per_func[:, index])
            weights[index] = reward_weights[index]
            self._check_range(labels_per_func[:, index], rewards_per_func[:, index], index, transform)
        return prm_labels(labels_per_func, weights)

    def describe(self) -> str:
        parts = [f"{self.names[i]} ({t})" for i, t in zip(self.funcs, self.transforms)]
        return (f"PRIME's PRM label: the weighted mean of {', '.join(parts)} among reward functions "
                f"{list(self.names)}; prm_label_funcs and prm_label_transform choose others.")

    def _check_range(self, labels: torch.Tensor, raw: torch.Tensor, index: int, transform: str) -> None:
        bad = (labels < 0) | (labels > 1)  # NaN (None) compares False: not an error
        if bad.any():
            row = int(bad.nonzero()[0])
            raise ValueError(
                f"PRM label: reward function '{self.names[index]}' scored {raw[row].item():.4g} at row {row}, outside "
                f"[0, 1] after prm_label_transform '{transform}'. Set prm_label_transform='signed' for scores in "
                f"[-1, 1] or 'sigmoid' for unbounded ones, or pick other label functions with prm_label_funcs "
                f"(reward functions: {list(self.names)})."
            )


def resolve_label_rule(
    prm_label_funcs: list[str | int] | None,
    prm_label_transform: str,
    reward_funcs: list,
    reward_func_names: list[str],
    reward_weights: torch.Tensor,
) -> LabelRule:
    """Indices and transforms of the label functions; a one-line error for a rule that cannot work."""
    names = tuple(reward_func_names)
    requested = [0] if prm_label_funcs is None else prm_label_funcs  # default: the first reward function
    funcs = tuple(dict.fromkeys(_index_of(entry, names) for entry in requested))  # in order, without repeats
    for index in funcs:
        if reward_weights[index] <= 0:
            raise ValueError(
                f"prm_label_funcs: reward function '{names[index]}' has reward weight "
                f"{reward_weights[index].item():g}; "
                f"the label is a weighted mean, so each label function needs a positive weight. Choose label "
                f"functions among {list(names)} with prm_label_funcs."
            )
    transforms = tuple(_transform_for(prm_label_transform, reward_funcs[i]) for i in funcs)
    return LabelRule(names, funcs, transforms)


def _index_of(entry: str | int, names: tuple[str, ...]) -> int:
    if isinstance(entry, str) and entry in names:
        return names.index(entry)
    if isinstance(entry, int) or (isinstance(entry, str) and entry.isdigit()):
        if 0 <= int(entry) < len(names):
            return int(entry)
    raise ValueError(
        f"prm_label_funcs: {entry!r} is neither the name nor the index of a reward function {list(names)}."
    )


def _transform_for(requested: str, reward_func) -> str:
    if requested != "auto":
        return requested
    # a reward model's score is an unbounded logit; reward functions are taken to score in [0, 1] already
    return "sigmoid" if isinstance(reward_func, torch.nn.Module) else "identity"
