"""Code outcome reward: run the completion's last ```python block on APPS-format tests.

r_o^code = #passed / #tests (PRIME paper §4.1). Tests are `{"inputs": [...], "outputs": [...]}`,
either stdin/stdout text, or call-based with `"fn_name"` (inputs are argument lists, outputs the
return values). The program runs in `sandbox.run_python`; outputs are compared here, outside the
sandbox, so the program can neither see the expected outputs nor forge a verdict. A completion the
sandbox failed to run scores None, never 0.0: a broken sandbox is not a wrong answer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass

from .sandbox import ISOLATIONS, RunResult, SandboxLimits, map_bounded, run_python
from .sandbox_check import ISOLATION_ENV, check_sandbox
from .text import completion_text

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)

# Call-based driver, prepended to nothing: the solution runs with prints silenced, then the
# function is called on the JSON arguments from stdin and the JSON result goes to the saved stdout.
_CALL_DRIVER = """\
import json as _j, os as _o, sys as _s
_out = _o.fdopen(_o.dup(1), "w")
_s.stdout = open(_o.devnull, "w")
_args = _j.loads(_s.stdin.read())
_g = {{"__name__": "__solution__", "__builtins__": __builtins__}}
exec(compile({source!r}, "solution.py", "exec"), _g)
_name = {fn_name!r}
if "Solution" in _g and hasattr(_g["Solution"], _name):
    _f = getattr(_g["Solution"](), _name)
else:
    _f = _g[_name]
_r = _f(*_args) if isinstance(_args, list) else _f(_args)
_out.write(_j.dumps(_r, default=repr))
_out.flush()
"""


def extract_code(text: str) -> str | None:
    """The last fenced python block (an unclosed last fence counts: generation may stop early)."""
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else None


class InvalidTests(ValueError):
    """Code ground truth that is not APPS tests; `reason` completes "ground_truth ...", the message adds the row."""

    def __init__(self, reason: str, row: int | None = None):
        self.reason = reason
        super().__init__(f"{f'row {row}: ' if row is not None else ''}ground_truth {reason}")


def parse_tests(ground_truth, row: int | None = None) -> dict:
    """APPS test dict from a JSON string or dict; raises `InvalidTests` naming the row otherwise.

    An empty test list is valid here (it scores 0.0); `prime_trl.data` rejects such rows when loading.
    """
    tests = ground_truth
    if isinstance(tests, (str, bytes)):
        try:
            tests = json.loads(tests)
        except ValueError as e:
            raise InvalidTests(f"is not valid JSON for a code row ({getattr(e, 'msg', e)})", row) from None
    if not isinstance(tests, dict) or not isinstance(tests.get("inputs"), list) \
            or not isinstance(tests.get("outputs"), list):
        raise InvalidTests('must be JSON {"inputs": [...], "outputs": [...]} for a code row', row)
    if len(tests["inputs"]) != len(tests["outputs"]):
        raise InvalidTests("has unequal numbers of inputs and outputs", row)
    return tests


# ----------------------------------------------------------------------------- comparison


def _as_text(value) -> str:
    if isinstance(value, list):  # some datasets store a test's text as a list of lines
        return "\n".join(str(v) for v in value)
    return str(value)


def _is_close(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def stdout_matches(actual: str, expected) -> bool:
    """Whitespace-tolerant: equal token sequences, numeric tokens equal up to 1e-6."""
    got, want = actual.split(), _as_text(expected).split()
    if got == want:
        return True
    return len(got) == len(want) and all(g == w or _is_close(g, w) for g, w in zip(got, want))


def _normalise(value):
    """JSON round trip: tuples become lists, as APPS's checker does."""
    return json.loads(json.dumps(value, default=repr))


def _values_match(got, want) -> bool:
    if isinstance(got, float) or isinstance(want, float):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-6)
        except (TypeError, ValueError):
            return False
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_values_match(g, w) for g, w in zip(got, want))
    return got == want


def call_matches(actual_json: str, expected) -> bool:
    """APPS call-based rule: the return value equals the expected one, or its only element."""
    try:
        got = json.loads(actual_json)
    except ValueError:
        return False
    want = _normalise(expected)
    if _values_match(got, want):
        return True
    return isinstance(want, list) and len(want) == 1 and _values_match(got, want[0])


# ----------------------------------------------------------------------------- scoring

# What one test run's status says about the program when the test did not pass.
_FAILURE_OF_STATUS = {
    "ok": "wrong_answer",  # ran to the end, printed the wrong thing
    "timeout": "timeout",
    "skipped": "timeout",  # the completion's total time ran out before this test
    "error": "program_error",
    "compile_error": "program_error",
    "output_limit": "program_error",
}
# A completion's outcome: the first of these that applies (a program that times out on one test and
# answers wrongly on another is a timeout). "sandbox_error" rows score None, the others a number.
OUTCOMES = ("sandbox_error", "no_code", "timeout", "program_error", "wrong_answer", "passed")


@dataclass
class CodeScore:
    score: float | None  # None: the sandbox failed, the program could not be run (not a wrong answer)
    passed: int
    total: int
    outcome: str  # one of OUTCOMES
    sandbox_error: str | None = None  # why the sandbox failed, if it did


def score_program(source: str | None, tests: dict, limits: SandboxLimits, isolation: str = "namespaces",
                  max_tests: int | None = None) -> CodeScore:
    """Run one program on its tests; passed / total (total counts the tests that were run)."""
    inputs, outputs = tests["inputs"], tests["outputs"]
    if max_tests is not None:
        inputs, outputs = inputs[:max_tests], outputs[:max_tests]
    total = len(inputs)
    if not source or not source.strip():
        return CodeScore(0.0, 0, total, "no_code")
    fn_name = tests.get("fn_name")
    if fn_name:
        program = _CALL_DRIVER.format(source=source, fn_name=str(fn_name))
        stdins = [json.dumps(x) for x in inputs]
        match = call_matches
    else:
        program, stdins, match = source, [_as_text(x) for x in inputs], stdout_matches
    report = run_python(program, stdins, limits, isolation=isolation)
    if report.sandbox_error is not None:
        return CodeScore(None, 0, total, "sandbox_error", report.sandbox_error)
    passes = [_run_passed(run, want, match) for run, want in zip(report.runs, outputs)]
    failures = {_FAILURE_OF_STATUS.get(run.status, "program_error") for run, ok in zip(report.runs, passes) if not ok}
    outcome = next((o for o in OUTCOMES if o in failures), "passed")
    return CodeScore(sum(passes) / total, sum(passes), total, outcome)


def _run_passed(run: RunResult, expected, match) -> bool:
    return run.status == "ok" and match(run.stdout, expected)


def resolve_isolation(isolation: str | None) -> str:
    """The argument, else $PRIME_TRL_SANDBOX_ISOLATION (the opt-in for command-line runs), else "namespaces"."""
    value = isolation or os.environ.get(ISOLATION_ENV) or "namespaces"
    if value not in ISOLATIONS:
        where = "isolation" if isolation else ISOLATION_ENV
        raise ValueError(f"{where} must be one of {ISOLATIONS}, got {value!r}")
    return value


def _check_tests(tests: dict, row: int) -> dict:
    if not tests["inputs"]:
        raise ValueError(f"row {row}: code ground_truth has no tests, so no completion can pass or fail")
    return tests


def make_code_reward(
    timeout_s: float = 5.0,
    total_timeout_s: float = 60.0,
    memory_mb: int = 1024,
    max_procs: int = 16,
    file_size_mb: int = 16,
    output_bytes: int = 1 << 20,
    workers: int | None = None,
    max_tests: int | None = None,
    isolation: str | None = None,
):
    """A TRL reward function scoring code completions; the knobs bound each test and completion.

    workers: completions run at once (default: one per CPU core). max_tests: only the first
    `max_tests` tests of each problem (None: all, as the paper's r_o). isolation: see `run_python`;
    None reads $PRIME_TRL_SANDBOX_ISOLATION at each call, default "namespaces". "process" is the
    opt-in to run code without isolation (trusted data only).

    The first call checks that the sandbox works here and raises `SandboxUnavailable` (cause and
    fix) if not. Later, a completion whose sandbox fails scores None (unscorable: PRIMETrainer drops
    its group), is counted and warned about; if every completion of a call fails so, the sandbox
    is checked again and a failed check raises.
    """
    limits = SandboxLimits(timeout_s=timeout_s, total_timeout_s=total_timeout_s, memory_mb=memory_mb,
                           max_procs=max_procs, file_size_mb=file_size_mb, output_bytes=output_bytes)
    n_workers = workers or os.cpu_count() or 1
    sandbox_errors_total = [0]

    def code_reward(completions, ground_truth, log_metric=None, **kwargs) -> list[float | None]:
        if len(ground_truth) != len(completions):
            raise ValueError(f"code_reward: {len(completions)} completions but {len(ground_truth)} ground_truth")
        jobs = [(completion_text(c, row=i), _check_tests(parse_tests(gt, row=i), i)) for i, (c, gt) in
                enumerate(zip(completions, ground_truth))]
        mode = resolve_isolation(isolation)
        check_sandbox(limits, mode)  # once per process: a broken sandbox stops the run here
        scores = map_bounded(
            lambda job: score_program(extract_code(job[0]), job[1], limits, mode, max_tests), jobs, n_workers
        )
        failed = [s for s in scores if s.outcome == "sandbox_error"]
        if failed:
            if len(failed) == sum(s.outcome != "no_code" for s in scores):
                check_sandbox(limits, mode, force=True)  # nothing ran: is the sandbox itself broken?
            sandbox_errors_total[0] += len(failed)
            logger.warning("code_reward: the sandbox failed on %d of %d completions (scored None, %d so far in "
                           "this process); first error: %s", len(failed), len(scores), sandbox_errors_total[0],
                           failed[0].sandbox_error)
        if log_metric is not None:
            _log_outcomes(log_metric, [s.outcome for s in scores], sandbox_errors_total[0])
        return [s.score for s in scores]

    code_reward.__name__ = "code_reward"
    return code_reward


def _log_outcomes(log_metric, outcomes: list[str], sandbox_errors_total: int) -> None:
    """`verifiers/code/<outcome>`: fraction of this call's completions; plus the process's running count
    of sandbox failures."""
    for name in OUTCOMES:
        log_metric(f"verifiers/code/{name}", outcomes.count(name) / max(len(outcomes), 1))
    log_metric("verifiers/code/sandbox_errors_total", float(sandbox_errors_total))


code_reward = make_code_reward()
