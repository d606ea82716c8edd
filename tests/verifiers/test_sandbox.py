"""Hostile programs: each must end with the right score, in bounded time, leaving nothing behind."""

import json
import os
import socket
import time
import uuid

import pytest

from prime_trl.verifiers import make_code_reward, run_python
from prime_trl.verifiers.sandbox import SandboxLimits

LIMITS = SandboxLimits(timeout_s=1.0, total_timeout_s=4.0, memory_mb=256, max_procs=8, output_bytes=1 << 16)
ADD = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
BLOCKED = {"inputs": [""], "outputs": ["blocked\n"]}

pytestmark = pytest.mark.usefixtures("nothing_left_running")


def namespaces_available() -> bool:
    return run_python("print(1)", [""], LIMITS).isolation == "namespaces"


needs_namespaces = pytest.mark.skipif(not namespaces_available(), reason="no Linux namespaces here")


@pytest.fixture(scope="module")
def reward():
    return make_code_reward(timeout_s=1.0, total_timeout_s=4.0, memory_mb=256, max_procs=8,
                            output_bytes=1 << 16, workers=1)


def score(reward, src: str, tests: dict, bound_s: float) -> float:
    start = time.monotonic()
    [s] = reward([f"```python\n{src}\n```"], [json.dumps(tests)])
    assert time.monotonic() - start < bound_s
    return s


def test_loops_forever(reward):
    assert score(reward, "while True:\n    pass", ADD, 8) == 0.0


def test_sleeps_forever(reward):
    assert score(reward, "import time\ntime.sleep(100)", ADD, 8) == 0.0


def test_allocates_without_bound(reward):
    src = "x = []\nwhile True:\n    x.append(bytearray(10**7))"
    assert score(reward, src, ADD, 8) == 0.0


def test_floods_stdout(reward):
    assert score(reward, "while True:\n    print('x' * 4096)", ADD, 8) == 0.0


@needs_namespaces
def test_fork_bomb(reward):
    src = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert score(reward, src, ADD, 10) == 0.0


@needs_namespaces
def test_process_count_is_bounded():
    src = (
        "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    print(n)"
    )
    [run] = run_python(src, [""], LIMITS).runs
    assert run.status == "ok"
    assert 0 < int(run.stdout) < LIMITS.max_procs  # the harness and the program count too


def test_daemon_in_new_session_is_killed(reward):
    src = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(60)\n    os._exit(0)\nprint(3)"
    )
    assert score(reward, src, ADD, 8) == 1.0  # answered; the daemon is gone (fixture)


@needs_namespaces
def test_writes_outside_its_directory(reward, tmp_path):
    name = f"prime-escape-{uuid.uuid4().hex}"
    targets = [str(tmp_path / "escape.txt"), f"/var/tmp/{name}", os.path.expanduser(f"~/{name}")]
    private = f"/dev/shm/{name}"  # the sandbox's own /dev/shm: writable, gone afterwards
    src = (
        f"open({private!r}, 'w').write('x')\n"
        f"ok = 0\nfor p in {targets!r}:\n    try:\n        open(p, 'w').write('x')\n    except OSError:\n"
        "        ok += 1\nopen('inside.txt', 'w').write('fine')\n"
        f"print('blocked' if ok == {len(targets)} and open('inside.txt').read() == 'fine' else 'wrote')"
    )
    assert score(reward, src, BLOCKED, 8) == 1.0
    assert not any(os.path.exists(p) for p in targets + [private])


def test_reads_environment_variables(reward, monkeypatch):
    monkeypatch.setenv("PRIME_TEST_SECRET", "hunter2")
    src = "import os\nprint('blocked' if 'hunter2' not in repr(dict(os.environ)) else 'leaked')"
    assert score(reward, src, BLOCKED, 8) == 1.0


@needs_namespaces
def test_cannot_connect_to_loopback_listener(reward):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        src = (
            "import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=0.5)\n"
            "    print('connected')\nexcept OSError:\n    print('blocked')" % port
        )
        assert score(reward, src, BLOCKED, 8) == 1.0
        with pytest.raises(BlockingIOError):
            listener.accept()


@needs_namespaces
def test_kills_its_parent(reward):
    src = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\nprint(3)"
    assert score(reward, src, ADD, 8) == 1.0  # PID 1 of the sandbox ignores it; we are untouched


@needs_namespaces
def test_runs_unprivileged_and_sees_no_host_processes():
    src = (
        "import os\ncap = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\n"
        "print(os.getuid() != 0 or int(cap, 16) == 0, int(cap, 16), len([p for p in os.listdir('/proc') if p.isdigit()]))"
    )
    [run] = run_python(src, [""], LIMITS).runs
    ok, cap, nprocs = run.stdout.split()
    assert ok == "True" and cap == "0" and int(nprocs) <= 3


def test_process_fallback_scores_and_cleans_up():
    src = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
        "a, b = map(int, input().split())\nprint(a + b)"
    )
    report = run_python(src, ["1 2\n", "5 5\n"], LIMITS, isolation="process")
    assert report.isolation == "process"
    assert [r.stdout for r in report.runs] == ["3\n", "10\n"]


def test_total_deadline_skips_remaining_runs():
    report = run_python("import time\ntime.sleep(5)", [""] * 10, LIMITS)
    assert [r.status for r in report.runs[:3]] == ["timeout"] * 3
    assert report.runs[-1].status == "skipped"
    assert report.seconds < 8
