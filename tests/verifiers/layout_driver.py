"""Score the hostile cases with the interpreter this script runs on; print one JSON line.

Run by test_layouts.py as `<interpreter> layout_driver.py` (PYTHONPATH: the repository), so the
sandbox is set up for that interpreter's layout (a venv under /tmp, in a home directory, ...).
"""

import json
import os
import sys
import time

from hostile_programs import CASES, LIMITS, SECRET, SECRET_VAR, escape_targets, fenced, loopback_listener, with_port

from prime_trl.verifiers import check_sandbox, make_code_reward
from prime_trl.verifiers.sandbox import MARKER_VAR, marker_prefix


def marked_processes() -> list[int]:
    needle = f"{MARKER_VAR}={marker_prefix()}".encode()
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if any(v.startswith(needle) for v in f.read().split(b"\0")):
                    found.append(int(name))
        except OSError:
            continue
    return found


def main() -> None:
    os.environ[SECRET_VAR] = SECRET
    isolation = check_sandbox()
    reward = make_code_reward(workers=8, **LIMITS)
    start = time.monotonic()
    with loopback_listener() as port:
        scores = reward([fenced(with_port(src, port)) for _, src, _, _, _ in CASES],
                        [json.dumps(tests) for _, _, tests, _, _ in CASES])
    seconds = time.monotonic() - start
    deadline = time.monotonic() + 2.0
    while marked_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    targets = escape_targets(sorted({sys.prefix, sys.base_prefix}))
    print(json.dumps({
        "executable": sys.executable, "prefix": sys.prefix, "uid": os.getuid(), "isolation": isolation,
        "scores": dict(zip([c[0] for c in CASES], scores)), "seconds": seconds,
        "left_running": len(marked_processes()), "escaped": [p for p in targets if os.path.exists(p)],
    }))


if __name__ == "__main__":
    main()
