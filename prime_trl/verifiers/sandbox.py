"""Run untrusted Python programs in a disposable, isolated process tree. Nothing here scores.

`run_python(source, stdins, limits)` runs `source` once per stdin and returns each run's status
and (capped) stdout. The process tree, see `_sandbox_child.py`:

    verifier (this process, untouched by the code)
      └─ launcher      python -I -S; creates the namespaces, then only waits
           └─ harness  PID 1 of a new PID namespace; forks one child per run, kills the rest
                └─ child  runs the program

What is enforced with namespaces (Linux with user namespaces, or running as root):
* network: a new network namespace with only a down loopback: no connection to anything,
  127.0.0.1 included;
* processes: a new PID namespace. The harness is its PID 1, so after every run `kill(-1)` reaches
  every process the program started (daemons in new sessions too), and when the launcher dies the
  kernel kills the whole namespace (PR_SET_PDEATHSIG on PID 1). The code cannot see or signal the
  verifier; PID 1 ignores SIGKILL from inside its namespace, so "kill my parent" is harmless;
* privileges: the harness runs as a non-zero uid (root: `root_uid`, 65534 by default) with no
  capabilities and no_new_privs, in its own user namespace, so RLIMIT_NPROC bounds processes +
  threads *per sandbox* (the kernel counts per user namespace);
* filesystem: its own mount namespace; every mount is read-only; /tmp (the cwd, HOME and TMPDIR)
  is a fresh size-limited tmpfs and /dev/shm a tiny one, both gone when the sandbox ends; the home
  directory and any directory others cannot traverse on the way to the Python install are covered
  by an empty tmpfs. The Python install (the interpreter's prefixes: a venv and its base) is bound
  back, read-only, wherever one of these covers hides it, so any layout works: a venv under /tmp
  or in a home directory, conda under /opt, pyenv or uv under ~. Readable: the rest of the host
  filesystem that is world-readable (it is not a chroot);
* resources: RLIMIT_CPU and a wall deadline per run, a wall deadline per sandbox, RLIMIT_AS per
  process, RLIMIT_FSIZE, RLIMIT_NOFILE, no core dumps, stdout capped per run;
* environment: only the variables built in `_sandbox_env` (no host variables, no secrets).

If the sandbox cannot be set up, `run_python` reports `setup_failed` and `check_sandbox` raises
`SandboxUnavailable` naming the cause and the fix: the verifiers call it before their first
program, so a machine without namespaces stops a run instead of scoring every program 0.0.

Fallback, opt-in only (`isolation="process"`, or "auto": namespaces where available, else the
fallback, warned once): the launcher is a child subreaper and the harness kills its whole
descendant tree after each run, and the verifier kills leftovers carrying the run's marker
variable; same rlimits except RLIMIT_NPROC, scratch dir as cwd/HOME/TMPDIR, scrubbed environment.
NOT enforced there: network isolation, a process-count bound, a read-only filesystem (the code can
write wherever its uid can), and protection of the verifier from signals (the code runs under the
verifier's uid). Use it only for trusted data.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

logger = logging.getLogger(__name__)

MARKER_VAR = "PRIME_SANDBOX_ID"
ISOLATIONS = ("namespaces", "process", "auto")
SCRATCH_MOUNTS = ("/tmp", "/dev/shm")  # fresh tmpfs in every sandbox (mounted by _sandbox_child.py)
_CHILD_SOURCE = open(os.path.join(os.path.dirname(__file__), "_sandbox_child.py"), encoding="utf-8").read()
_WARNED: set[str] = set()
_WARN_LOCK = threading.Lock()


@dataclass(frozen=True)
class SandboxLimits:
    """Bounds for one sandbox (one completion). Defaults follow PRIME's 5 s per test case."""

    timeout_s: float = 5.0  # wall (and, rounded up + 1, CPU) seconds per run
    total_timeout_s: float = 60.0  # wall seconds for all runs of one sandbox; later runs are "skipped"
    memory_mb: int = 1024  # RLIMIT_AS per process (a fork multiplies it: see max_procs)
    max_procs: int = 16  # processes + threads in the sandbox, harness included (RLIMIT_NPROC);
    # memory is bounded per process, so a sandbox can hold up to max_procs * memory_mb
    file_size_mb: int = 16  # largest file the program may write (RLIMIT_FSIZE)
    scratch_mb: int = 64  # size of the private /tmp (namespaces only)
    output_bytes: int = 1 << 20  # stdout captured per run; more is status "output_limit"


@dataclass(frozen=True)
class RunResult:
    """One run of the program. status: ok | error | compile_error | timeout | output_limit |
    skipped (the sandbox's total time ran out first) | sandbox_error (the sandbox died)."""

    status: str
    stdout: str = ""
    returncode: int | None = None
    seconds: float | None = None


@dataclass
class SandboxReport:
    runs: list[RunResult]
    isolation: str = "unknown"  # "namespaces" | "process" | "unknown" (died before saying)
    sandbox_error: str | None = None  # why the sandbox itself failed, if it did
    setup_failed: bool = False  # it failed before running the program (no namespaces, a mount, exec)
    setup_stage: str | None = None  # "unshare" | "setup" | "start" (the launcher never reported)
    setup_errno: int | None = None
    timed_out: bool = False  # the verifier had to kill the sandbox at its total deadline
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _warn_once(message: str) -> None:
    with _WARN_LOCK:
        if message in _WARNED:
            return
        _WARNED.add(message)
    logger.warning("prime_trl sandbox: %s", message)


def marker_prefix() -> str:
    """Prefix of the marker variable value of every sandbox started by this process."""
    return f"{os.getpid()}-"


def _interpreter() -> tuple[str, str]:
    """(binary to exec, its argv[0]). The binary is resolved: a symlink on the way to it may lie in a
    directory the sandbox hides. In a venv, argv[0] is the venv's own bin/python (directory resolved):
    Python finds pyvenv.cfg from argv[0], so the program keeps the venv's packages."""
    binary = os.path.realpath(sys.executable)
    if sys.prefix == sys.base_prefix:
        return binary, binary
    return binary, os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _sandbox_env(marker: str, home: str) -> dict[str, str]:
    bin_dir = os.path.dirname(_interpreter()[1])
    return {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONHASHSEED": "0",
        # Numeric libraries start one thread per core otherwise, which RLIMIT_NPROC counts.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        MARKER_VAR: marker,
    }


def _python_dirs() -> list[str]:
    """Directories the sandboxed interpreter needs: its prefixes (a venv has two), outermost only."""
    dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    dirs = sorted(d for d in dirs if d != "/")
    return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]


def _dirs_to_hide(expose: list[str]) -> list[str]:
    """Home directories and the topmost non-world-traversable ancestor of each exposed dir, except
    those under /tmp or /dev/shm: the sandbox's own tmpfs covers them anyway."""
    hide = set()
    for home in {os.path.expanduser("~"), pwd.getpwuid(os.getuid()).pw_dir}:
        home = os.path.realpath(home)
        if home not in ("/", "") and os.path.isdir(home):
            hide.add(home)
    for path in expose:
        parts = path.strip("/").split("/")
        for k in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:k])
            if not os.stat(ancestor).st_mode & 0o001:
                hide.add(ancestor)
                break
    hide = {h for h in hide if not any(_under(h, s) for s in SCRATCH_MOUNTS)}
    # Drop nested entries: covering the outer one already hides them.
    return sorted(h for h in hide if not any(h != o and _under(h, o) for o in hide))


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _kill_marked(marker: str) -> int:
    """Kill every process whose environment carries `marker` (process-mode backstop)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    killed = 0
    for _ in range(50):
        found = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle not in f.read().split(b"\0"):
                        continue
                os.kill(int(name), signal.SIGKILL)
                found += 1
            except OSError:
                continue
        killed += found
        if not found:
            break
        time.sleep(0.01)
    return killed


def run_python(
    source: str,
    stdins: list[str],
    limits: SandboxLimits = SandboxLimits(),
    isolation: str = "namespaces",
    root_uid: int = 65534,
) -> SandboxReport:
    """Run `source` once per element of `stdins` in one sandbox; never raises for anything the code does.

    isolation: "namespaces" (report `setup_failed` where they are unavailable), "process" (the
    fallback, for trusted code) or "auto" (namespaces, else the fallback with a one-time warning).
    root_uid: the uid the code runs as when the verifier is root.
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    start = time.monotonic()
    marker = f"{marker_prefix()}{uuid.uuid4().hex}"
    scratch = tempfile.mkdtemp(prefix="prime-sandbox-")
    home = "/tmp" if isolation != "process" else scratch
    env = _sandbox_env(marker, home)
    expose = _python_dirs()
    python, argv0 = _interpreter()
    job = {
        "python": python,
        "argv0": argv0,
        "child_source": _CHILD_SOURCE,
        "env": env,
        "isolation": isolation,
        "expose": expose,
        "hide": _dirs_to_hide(expose),
        "root_uid": root_uid,
        "root_gid": root_uid,
        "scratch": scratch,
        "source": source,
        "stdins": list(stdins),
        "limits": asdict(limits),
    }
    report = SandboxReport(runs=[])
    try:
        report = _drive(job, env, scratch, limits, len(stdins))
    finally:
        if report.isolation != "namespaces":
            _kill_marked(marker)
        shutil.rmtree(scratch, ignore_errors=True)
    for w in report.warnings:
        _warn_once(w)
    report.seconds = time.monotonic() - start
    return report


def _drive(job: dict, env: dict, scratch: str, limits: SandboxLimits, n: int) -> SandboxReport:
    """Start the launcher, feed it the job, collect its lines until done or the deadline."""
    proc = subprocess.Popen(
        [job["python"], "-I", "-S", "-c", _CHILD_SOURCE, "launch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=scratch,
        close_fds=True,
        start_new_session=True,
    )
    report = SandboxReport(runs=[])
    results: dict[int, RunResult] = {}
    try:
        proc.stdin.write(json.dumps(job).encode("utf-8", "replace"))
        proc.stdin.close()
    except OSError:
        pass
    deadline = time.monotonic() + limits.total_timeout_s + 5.0  # + startup and teardown
    max_bytes = n * (6 * limits.output_bytes + 512) + (1 << 16)
    buf, received = b"", 0
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                report.timed_out = True
                break
            if not sel.select(timeout=min(left, 1.0)):
                continue
            data = os.read(proc.stdout.fileno(), 1 << 16)
            if not data:
                break
            received += len(data)
            if received > max_bytes:
                report.sandbox_error = "sandbox wrote more than its output budget"
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                _take_line(line, report, results, n)
    finally:
        sel.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # launcher; PID 1 follows via PDEATHSIG
        except OSError:
            pass
        proc.wait()
        proc.stdout.close()
    if report.timed_out and report.sandbox_error is None:
        report.sandbox_error = "sandbox exceeded its total deadline"
    missing = "sandbox_error" if report.sandbox_error or len(results) < n else "skipped"
    report.runs = [results.get(i, RunResult(missing)) for i in range(n)]
    if len(results) < n and report.sandbox_error is None:
        report.sandbox_error = "sandbox ended before reporting every run"
    if report.isolation == "unknown" and not report.setup_failed:  # the launcher never said a word
        report.setup_failed, report.setup_stage = True, "start"
        report.sandbox_error = f"the sandbox launcher ({job['python']}) exited before starting: {report.sandbox_error}"
    return report


def _take_line(line: bytes, report: SandboxReport, results: dict[int, RunResult], n: int) -> None:
    try:
        msg = json.loads(line)
    except ValueError:
        return
    if not isinstance(msg, dict):
        return
    if "isolation" in msg:
        report.isolation = str(msg["isolation"])
        if report.isolation != "namespaces":
            _warn_once(
                f"{msg.get('warning')}: untrusted code runs without network, filesystem or "
                "process-count isolation (see prime_trl/verifiers/sandbox.py)"
            )
    elif "warning" in msg:
        report.warnings.append(str(msg["warning"]))
    elif "fatal" in msg:
        report.sandbox_error = str(msg["fatal"])
        report.setup_failed, report.setup_stage = True, str(msg.get("stage", "setup"))
        report.setup_errno = msg["errno"] if isinstance(msg.get("errno"), int) else None
    elif isinstance(msg.get("i"), int) and 0 <= msg["i"] < n and msg["i"] not in results:
        results[msg["i"]] = RunResult(
            status=str(msg.get("status")),
            stdout=msg.get("out") if isinstance(msg.get("out"), str) else "",
            returncode=msg.get("rc") if isinstance(msg.get("rc"), int) else None,
            seconds=msg.get("seconds"),
        )


def map_bounded(fn, items: list, workers: int) -> list:
    """`[fn(x) for x in items]` with at most `workers` calls at once, in order. Threads suffice:
    each call only waits on its sandbox's process tree."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="prime-sandbox") as ex:
        return list(ex.map(fn, items))
