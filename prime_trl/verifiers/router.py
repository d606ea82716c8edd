"""`outcome_reward`: route each row to the verifier of its `ability`, for mixed datasets such as
Eurus-2-RL-Data (`ability` in {"math", "code"}, `reward_model.ground_truth` flattened to a
`ground_truth` column)."""

from __future__ import annotations

from .code_verifier import make_code_reward
from .math_verifier import make_math_reward


def make_outcome_reward(verifiers: dict | None = None):
    """A TRL reward function that scores each row with `verifiers[ability]`.

    verifiers: ability -> reward function `(completions, ground_truth, **kw) -> list[float | None]`;
    default {"math": make_math_reward(), "code": make_code_reward()}. Rows of one ability are
    scored in one call, so each verifier keeps its own parallelism.
    """
    table = dict(verifiers) if verifiers is not None else {"math": make_math_reward(), "code": make_code_reward()}

    def outcome_reward(completions, ground_truth, ability, **kwargs) -> list[float | None]:
        if not (len(completions) == len(ground_truth) == len(ability)):
            raise ValueError(
                f"outcome_reward: {len(completions)} completions, {len(ground_truth)} ground_truth, "
                f"{len(ability)} ability"
            )
        rows: dict[str, list[int]] = {}
        for i, a in enumerate(ability):
            if a not in table:
                raise ValueError(f"row {i}: unknown ability {a!r}; expected one of {sorted(table)}")
            rows.setdefault(a, []).append(i)
        scores: list[float | None] = [None] * len(completions)  # every row is filled below
        for a, idx in rows.items():
            part = table[a]([completions[i] for i in idx], [ground_truth[i] for i in idx], **kwargs)
            for i, s in zip(idx, part):
                scores[i] = s
        return scores

    outcome_reward.__name__ = "outcome_reward"
    return outcome_reward
