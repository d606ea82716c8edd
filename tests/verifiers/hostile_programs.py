"""Programs the code verifier must score correctly, hostile ones included, as data: the sandbox tests run
them in this process and, through `layout_driver.py`, from interpreters installed elsewhere.

Each case: (id, source, tests, expected score, needs namespaces). Every case must end with its score
in bounded time and leave no process behind. Expected scores are what the program *earns*: a hostile
program that answers after its attack scores 1.0 only if the attack did nothing to the verifier.
"""

import contextlib
import functools
import os
import socket
import uuid

ADD = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}
ONE = {"inputs": ["1 2\n"], "outputs": ["3\n"]}  # for programs that run into a limit: one test, one timeout
BLOCKED = {"inputs": [""], "outputs": ["blocked\n"]}
SECRET_VAR, SECRET = "PRIME_TEST_SECRET", "hunter2"  # set in the verifier's environment by the tests
ESCAPE_NAME = f"prime-escape-{uuid.uuid4().hex}"

_WRITES_OUTSIDE = f"""
import os, sys
name = {ESCAPE_NAME!r}
open('/dev/shm/' + name, 'w').write('x')  # the sandbox's own /dev/shm: writable, gone afterwards
targets = ['/var/tmp/' + name, '/root/' + name, os.path.join(sys.prefix, name), os.path.join(sys.base_prefix, name)]
ok = 0
for p in targets:
    try:
        open(p, 'w').write('x')
    except OSError:
        ok += 1
open('inside.txt', 'w').write('fine')
print('blocked' if ok == len(targets) and open('inside.txt').read() == 'fine' else 'wrote')
"""

CASES = [
    ("correct", "a, b = map(int, input().split())\nprint(a + b)", ADD, 1.0, False),
    ("wrong", "a, b = map(int, input().split())\nprint(a * b)", ADD, 0.0, False),
    ("half_right", "a, b = map(int, input().split())\nprint(3)", ADD, 0.5, False),
    ("compile_error", "def f(:\n    pass", ADD, 0.0, False),
    ("crashes", "raise RuntimeError('boom')", ADD, 0.0, False),
    ("loops_forever", "while True:\n    pass", ONE, 0.0, False),
    ("sleeps_forever", "import time\ntime.sleep(100)", ONE, 0.0, False),
    ("allocates_without_bound", "x = []\nwhile True:\n    x.append(bytearray(10**7))", ONE, 0.0, False),
    ("floods_stdout", "while True:\n    print('x' * 4096)", ONE, 0.0, False),
    ("daemon_in_new_session", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
     "        time.sleep(60)\n    os._exit(0)\na, b = map(int, input().split())\nprint(a + b)", ADD, 1.0, False),
    ("reads_environment", f"import os\nprint('blocked' if {SECRET!r} not in repr(dict(os.environ)) else 'leaked')",
     BLOCKED, 1.0, False),
    ("fork_bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", ADD, 0.0,
     True),
    ("kills_its_parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\n"
     "a, b = map(int, input().split())\nprint(a + b)", ADD, 1.0, True),
    ("writes_outside_its_directory", _WRITES_OUTSIDE, BLOCKED, 1.0, True),
    # PORT: a listener the verifier opens on the host's loopback (see `loopback_listener`).
    ("no_network", "import socket\ntry:\n    socket.create_connection(('127.0.0.1', PORT), timeout=0.5)\n"
     "    print('connected')\nexcept OSError:\n    print('blocked')", BLOCKED, 1.0, True),
]

# Small limits keep every case to about a second: timeouts are what the slow cases cost.
LIMITS = dict(timeout_s=1.0, total_timeout_s=4.0, memory_mb=256, max_procs=8, output_bytes=1 << 16)


def fenced(src: str) -> str:
    return f"Here is my solution.\n```python\n{src}\n```\n"


def escape_targets(prefixes: list[str]) -> list[str]:
    """Host paths `writes_outside_its_directory` tries to create (it must not create any)."""
    home = os.path.expanduser("~")
    return [f"/var/tmp/{ESCAPE_NAME}", f"/root/{ESCAPE_NAME}", f"/dev/shm/{ESCAPE_NAME}", f"{home}/{ESCAPE_NAME}"] + [
        os.path.join(p, ESCAPE_NAME) for p in prefixes]


@contextlib.contextmanager
def loopback_listener():
    """A listening socket on 127.0.0.1; yields its port. On exit, asserts nobody connected."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        yield listener.getsockname()[1]
        try:
            listener.accept()
        except BlockingIOError:
            return
        raise AssertionError("a sandboxed program connected to the host's loopback")


def with_port(src: str, port: int) -> str:
    return src.replace("PORT", str(port))


@functools.cache
def namespaces_available() -> bool:
    from prime_trl.verifiers import SandboxUnavailable, check_sandbox

    try:
        return check_sandbox() == "namespaces"
    except SandboxUnavailable:
        return False
