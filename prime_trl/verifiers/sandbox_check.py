"""Can the sandbox run programs here? One probe run per process, and when it fails, the cause and the fix.

The code verifier calls `check_sandbox` before its first program: a machine where the sandbox
cannot be set up must stop a run at once, not score every program 0.0 (a failure to run is not a
wrong answer).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from dataclasses import replace

from .sandbox import SandboxLimits, SandboxReport, run_python


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run programs on this machine; the message says why and what to do."""


_PROBE_SOURCE = "print(input()[::-1])"
_PROBE_STDIN, _PROBE_STDOUT = "krow\n", "work\n"
_PROBED: dict[tuple, str] = {}
_LOCK = threading.Lock()

_USERNS_FIX = (
    "allow user namespaces for this user (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 23.10+ also "
    "kernel.apparmor_restrict_unprivileged_userns=0) or run the verifier as root; in a container, start it "
    "with --security-opt seccomp=unconfined --security-opt apparmor=unconfined (or --privileged)"
)
_REPORT_FIX = (
    "this interpreter layout is not handled by the sandbox; please report this message with the output of "
    "`python -c 'import sys; print(sys.executable, sys.prefix, sys.base_prefix)'`"
)
# (stage, errno) -> what to do; (stage, None) is the stage's default.
_FIXES = {
    ("unshare", None): _USERNS_FIX,
    ("unshare", errno.ENOSPC): "user namespaces are switched off (sysctl user.max_user_namespaces=0): raise it, "
                               "e.g. sysctl user.max_user_namespaces=15000",
    ("setup", None): _REPORT_FIX,
    ("setup", errno.EPERM): _USERNS_FIX,
    ("setup", errno.EACCES): "as root the sandbox runs code as an unprivileged uid (root_uid, default 65534), "
                             "which must be able to read and execute the Python install: make its directories "
                             "world-readable (chmod -R o+rX), or use an interpreter outside private directories",
    ("start", None): "the interpreter could not start the sandbox launcher; check that `python -I -S -c 1` runs "
                     "and that the temporary directory is writable",
    ("run", None): "the sandbox started but did not run a trivial program correctly: raise timeout_s/memory_mb "
                   "if they are very small, else please report this message",
}
ISOLATION_ENV = "PRIME_TRL_SANDBOX_ISOLATION"
_OPT_OUT = (
    "To run code WITHOUT isolation instead (trusted data only: no network, filesystem or process-count "
    f"bounds), pass isolation='process' to make_code_reward, or set {ISOLATION_ENV}=process for the "
    "default verifiers and the command line (README, Verifiers)."
)


def explain(report: SandboxReport, isolation: str) -> str:
    """The error message for a failed probe: what failed, why, and how to fix it."""
    stage = report.setup_stage if report.setup_failed else "run"
    fix = _FIXES.get((stage, report.setup_errno)) or _FIXES[(stage, None)]
    cause = report.sandbox_error or "runs: " + ", ".join(f"{r.status} {r.stdout[:80]!r}" for r in report.runs)
    return (
        f"code verifier: the sandbox (isolation={isolation!r}, python {sys.executable}) cannot run programs "
        f"here, so no completion is scored: {cause}.\nFix: {fix}.\n{_OPT_OUT}"
    )


def _probe_limits(limits: SandboxLimits) -> SandboxLimits:
    """The caller's limits, with time to spare: a busy machine must not look like a broken sandbox."""
    return replace(limits, timeout_s=max(limits.timeout_s, 30.0), total_timeout_s=max(limits.total_timeout_s, 30.0))


def check_sandbox(limits: SandboxLimits = SandboxLimits(), isolation: str = "namespaces", root_uid: int = 65534,
                  force: bool = False) -> str:
    """Run a trivial program in the sandbox once per process (again with `force`).

    Returns the isolation in use ("namespaces" or "process"); raises `SandboxUnavailable` with the
    cause and the fix if the program does not run and print what it should.
    """
    key = (isolation, root_uid, sys.executable, os.getpid())
    with _LOCK:
        if not force and key in _PROBED:
            return _PROBED[key]
    report = run_python(_PROBE_SOURCE, [_PROBE_STDIN], _probe_limits(limits), isolation=isolation,
                        root_uid=root_uid)
    if [(r.status, r.stdout) for r in report.runs] != [("ok", _PROBE_STDOUT)] or report.sandbox_error:
        raise SandboxUnavailable(explain(report, isolation))
    with _LOCK:
        _PROBED[key] = report.isolation
    return report.isolation
