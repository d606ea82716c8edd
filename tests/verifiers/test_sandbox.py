"""Hostile programs: each must end with the right score, in bounded time, leaving nothing behind."""

import json
import os
import sys
import time
import uuid

import hostile_programs as hostile
import pytest

from prime_trl.verifiers import make_code_reward, run_python
from prime_trl.verifiers.sandbox import SandboxLimits

LIMITS = SandboxLimits(**hostile.LIMITS)
ADD = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
BLOCKED = hostile.BLOCKED

pytestmark = pytest.mark.usefixtures("nothing_left_running")
needs_namespaces = pytest.mark.skipif(not hostile.namespaces_available(), reason="no Linux namespaces here")


@pytest.fixture(scope="module")
def reward():
    return make_code_reward(workers=1, **hostile.LIMITS)


def score(reward, src: str, tests: dict, bound_s: float) -> float:
    start = time.monotonic()
    [s] = reward([hostile.fenced(src)], [json.dumps(tests)])
    assert time.monotonic() - start < bound_s
    return s


@pytest.mark.parametrize(
    "src, tests, expected, needs_ns",
    [pytest.param(*case[1:], id=case[0]) for case in hostile.CASES],
)
def test_hostile_program(reward, monkeypatch, src, tests, expected, needs_ns):
    """Each case of hostile_programs.py from this interpreter (test_layouts.py runs them from others)."""
    if needs_ns and not hostile.namespaces_available():
        pytest.skip("no Linux namespaces here")
    monkeypatch.setenv(hostile.SECRET_VAR, hostile.SECRET)
    with hostile.loopback_listener() as port:
        assert score(reward, hostile.with_port(src, port), tests, 10) == expected
    assert [p for p in hostile.escape_targets([sys.prefix, sys.base_prefix]) if os.path.exists(p)] == []


@needs_namespaces
def test_process_count_is_bounded():
    src = (
        "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    print(n)"
    )
    [run] = run_python(src, [""], LIMITS).runs
    assert run.status == "ok"
    assert 0 < int(run.stdout) < LIMITS.max_procs  # the harness and the program count too


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


@needs_namespaces
def test_runs_unprivileged_and_sees_no_host_processes():
    src = (
        "import os\ncap = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\n"
        "print(os.getuid() != 0 or int(cap, 16) == 0, int(cap, 16), "
        "len([p for p in os.listdir('/proc') if p.isdigit()]))"
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
