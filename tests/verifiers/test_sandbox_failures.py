"""A sandbox that fails is not a wrong answer: setup failures raise with the cause and the fix, and a
completion whose sandbox died mid-run scores None (counted, warned about), never 0.0.

Failures are injected into the real sandbox: a directory it cannot open, an unshare that fails as on
a kernel without user namespaces, and sandboxes killed from outside while they run.
"""

import json
import logging
import os
import signal
import threading
import time
import uuid

import hostile_programs as hostile
import pytest

from prime_trl.verifiers import SandboxUnavailable, check_sandbox, make_code_reward, run_python, sandbox, sandbox_check
from prime_trl.verifiers.sandbox import MARKER_VAR, SandboxLimits, marker_prefix

ADD = json.dumps(hostile.ADD)
CORRECT = hostile.fenced("a, b = map(int, input().split())\nprint(a + b)")
SLEEPER = hostile.fenced("import time\ntime.sleep(8)\nprint(3)")
LIMITS = dict(hostile.LIMITS, timeout_s=10.0, total_timeout_s=20.0)

pytestmark = [
    pytest.mark.usefixtures("nothing_left_running"),
    pytest.mark.skipif(not hostile.namespaces_available(), reason="no Linux namespaces here"),
]


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget this process's earlier successful sandbox checks, so the next use checks again."""
    monkeypatch.setattr(sandbox_check, "_PROBED", {})


@pytest.fixture
def unopenable_install_dir(monkeypatch, fresh_probe):
    """Setup fails as for an interpreter layout the sandbox cannot handle: a dir it cannot open."""
    real = sandbox._python_dirs
    missing = f"/nonexistent-prime-{uuid.uuid4().hex}"
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: real() + [missing])
    return missing


def test_setup_failure_is_reported_not_run():
    limits = SandboxLimits(**hostile.LIMITS)
    with pytest.MonkeyPatch.context() as mp:
        real = sandbox._python_dirs
        mp.setattr(sandbox, "_python_dirs", lambda: real() + ["/nonexistent-prime-dir"])
        report = run_python("print(3)", ["", ""], limits)
    assert report.setup_failed and report.setup_stage == "setup"
    assert "No such file or directory" in report.sandbox_error
    assert [r.status for r in report.runs] == ["sandbox_error"] * 2


def test_first_use_raises_with_cause_and_fix_instead_of_scoring(unopenable_install_dir):
    reward = make_code_reward(**hostile.LIMITS)
    with pytest.raises(SandboxUnavailable) as info:
        reward([CORRECT, "no code"], [ADD, ADD])  # nothing is returned, so no 0.0 reaches the trainer
    message = str(info.value)
    assert "sandbox setup failed" in message and "No such file or directory" in message
    assert "Fix:" in message and "isolation='process'" in message


@pytest.fixture
def no_user_namespaces(monkeypatch, fresh_probe):
    """The launcher's unshare fails with EPERM, as on a kernel or container without (user) namespaces."""
    call = '_ok(_libc.unshare(flags), "unshare")'
    assert call in sandbox._CHILD_SOURCE
    monkeypatch.setattr(sandbox, "_CHILD_SOURCE", sandbox._CHILD_SOURCE.replace(
        call, 'raise OSError(1, "unshare: Operation not permitted")'))


def test_without_namespaces_the_error_names_the_fix_and_the_opt_in(no_user_namespaces, caplog):
    with pytest.raises(SandboxUnavailable, match="namespaces unavailable: .*Operation not permitted") as info:
        make_code_reward(**hostile.LIMITS)([CORRECT], [ADD])
    assert "kernel.unprivileged_userns_clone" in str(info.value) and "isolation='process'" in str(info.value)
    assert "PRIME_TRL_SANDBOX_ISOLATION=process" in str(info.value)
    # The documented opt-ins still run the code, without isolation: "process", and "auto" (warned).
    assert make_code_reward(isolation="process", **hostile.LIMITS)([CORRECT], [ADD]) == [1.0]
    with caplog.at_level(logging.WARNING, logger="prime_trl.verifiers.sandbox"):
        assert make_code_reward(isolation="auto", **hostile.LIMITS)([CORRECT], [ADD]) == [1.0]
    assert "running WITHOUT isolation" in caplog.text


def test_the_environment_variable_opts_default_verifiers_in(no_user_namespaces, monkeypatch):
    reward = make_code_reward(**hostile.LIMITS)  # isolation unset: read at each call
    monkeypatch.setenv("PRIME_TRL_SANDBOX_ISOLATION", "process")
    assert reward([CORRECT], [ADD]) == [1.0]
    monkeypatch.setenv("PRIME_TRL_SANDBOX_ISOLATION", "none")
    with pytest.raises(ValueError, match="PRIME_TRL_SANDBOX_ISOLATION must be one of"):
        reward([CORRECT], [ADD])


def _sandbox_markers() -> dict[int, str]:
    """pid -> marker value, for every process of a sandbox started by this test process."""
    prefix = f"{MARKER_VAR}={marker_prefix()}".encode()
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                for var in f.read().split(b"\0"):
                    if var.startswith(prefix):
                        found[int(name)] = var.split(b"=", 1)[1].decode()
        except OSError:
            continue
    return found


class KillFirstSandbox(threading.Thread):
    """Kills every process of the first sandbox that appears, `after_s` seconds after it appeared, as an
    OOM killer or an operator would; later sandboxes are left alone."""

    def __init__(self, after_s: float = 1.0):
        super().__init__(daemon=True)
        self.after_s, self.killed, self.stop = after_s, 0, threading.Event()

    def run(self):
        marker, seen_at = None, None
        while not self.stop.is_set():
            procs = _sandbox_markers()
            if marker is None and procs:
                marker, seen_at = next(iter(procs.values())), time.monotonic()
            if marker is not None and time.monotonic() - seen_at >= self.after_s:
                victims = [pid for pid, m in procs.items() if m == marker]
                for pid in victims:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                self.killed += len(victims)
                if not victims and self.killed:
                    return
            time.sleep(0.02)


def score_while_killing(reward, completions, **kwargs):
    killer = KillFirstSandbox()
    killer.start()
    try:
        return reward(completions, [ADD] * len(completions), **kwargs), killer
    finally:
        killer.stop.set()
        killer.join()


def test_a_sandbox_killed_mid_run_scores_none_and_is_counted(caplog):
    check_sandbox(SandboxLimits(**LIMITS))  # the probe's sandbox must not be the one killed
    reward = make_code_reward(workers=1, **LIMITS)  # in order: the sleeper's sandbox is the first
    logged = {}
    with caplog.at_level(logging.WARNING, logger="prime_trl.verifiers.code_verifier"):
        scores, killer = score_while_killing(reward, [SLEEPER, CORRECT], log_metric=logged.__setitem__)
    assert killer.killed > 0
    assert scores == [None, 1.0]  # None: PRIMETrainer treats the row as unscorable and drops its group
    assert logged["verifiers/code/sandbox_error"] == 0.5 and logged["verifiers/code/passed"] == 0.5
    assert logged["verifiers/code/sandbox_errors_total"] == 1.0
    assert "the sandbox failed on 1 of 2 completions" in caplog.text


def test_when_every_completion_fails_a_working_sandbox_keeps_the_run_going():
    reward = make_code_reward(workers=1, **LIMITS)
    reward([CORRECT], [ADD])  # first use: the probe
    scores, killer = score_while_killing(reward, [SLEEPER])
    assert killer.killed > 0 and scores == [None]  # the re-check found the sandbox working: no error


def test_when_every_completion_fails_a_broken_sandbox_stops_the_run(monkeypatch):
    reward = make_code_reward(**hostile.LIMITS)
    assert reward([CORRECT], [ADD]) == [1.0]
    real = sandbox._python_dirs
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: real() + ["/nonexistent-prime-dir"])  # breaks mid-run
    with pytest.raises(SandboxUnavailable, match="No such file or directory"):
        reward([CORRECT, CORRECT, "no code"], [ADD] * 3)
