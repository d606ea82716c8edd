"""Outcome verifiers as TRL reward functions: `(completions, ground_truth, **columns) -> list[float | None]`.

They accept and ignore TRL's other keyword arguments (prompts, completion_ids, trainer_state,
log_extra, other dataset columns) and report what each completion's score is made of through
`log_metric` (`verifiers/code/*`, `verifiers/math/*`) when TRL passes it. A row scores None only
when the verifier itself failed on it (sandbox or math worker died); a verifier that cannot start
raises on its first call. Looked up by name through `REWARD_FUNCS`.
"""

from .code_verifier import code_reward, extract_code, make_code_reward
from .math_verifier import extract_answer, make_math_reward, math_reward
from .router import make_outcome_reward
from .math_verifier import MathVerifierUnavailable
from .sandbox import RunResult, SandboxLimits, SandboxReport, run_python
from .sandbox_check import SandboxUnavailable, check_sandbox

outcome_reward = make_outcome_reward({"math": math_reward, "code": code_reward})

REWARD_FUNCS = {
    "math": math_reward,
    "code": code_reward,
    "outcome": outcome_reward,
}

__all__ = [
    "REWARD_FUNCS",
    "MathVerifierUnavailable",
    "RunResult",
    "SandboxLimits",
    "SandboxReport",
    "SandboxUnavailable",
    "check_sandbox",
    "code_reward",
    "extract_answer",
    "extract_code",
    "make_code_reward",
    "make_math_reward",
    "make_outcome_reward",
    "math_reward",
    "outcome_reward",
    "run_python",
]
