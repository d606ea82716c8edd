import os
import time

import pytest

from prime_trl.verifiers.sandbox import MARKER_VAR, marker_prefix


def sandbox_processes() -> list[int]:
    """PIDs of processes started by a sandbox of this test process (they carry its marker)."""
    needle = f"{MARKER_VAR}={marker_prefix()}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if any(v.startswith(needle) for v in f.read().split(b"\0")):
                    found.append(int(name))
        except OSError:
            continue
    return found


@pytest.fixture
def nothing_left_running():
    """After the test: no process of any sandbox of ours is alive (a short grace for the kernel)."""
    yield
    deadline = time.monotonic() + 2.0
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == []
