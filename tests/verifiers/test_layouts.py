"""The sandbox works wherever Python is installed: real venvs in the places users put them score the
hostile cases exactly as this interpreter does (`layout_driver.py` runs them with each interpreter).

A venv under /tmp once scored every program 0.0: the sandbox's private /tmp hid the interpreter.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import hostile_programs as hostile
import pytest

from prime_trl.verifiers.sandbox import SCRATCH_MOUNTS

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SYSTEM_PYTHON = "/usr/bin/python3"
SANDBOX_TMP = SCRATCH_MOUNTS[0]  # the folder every sandbox replaces with a fresh tmpfs: where venvs once vanished
# The FHS's temp folder that outlives reboots: outside the sandbox's scratch mounts and traversable by every
# user, as /home is, so a 0700 folder in it stands in for a user's home.
PERSISTENT_TMP = "/var/tmp"
EXPECTED = {case[0]: case[3] for case in hostile.CASES}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hostile.namespaces_available(), reason="no Linux namespaces here"),
]


def make_venv(python: str, path: str, *flags: str) -> str:
    """A real venv (no pip: fast) made by `python`; returns its bin/python."""
    subprocess.run([python, "-m", "venv", "--without-pip", *flags, path], check=True, capture_output=True)
    return os.path.join(path, "bin", "python")


def start_driver(python: str, home: str, pythonpath: str = REPO, user: list[str] = ()) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": pythonpath}
    cmd = [*user, python, os.path.join(pythonpath, "tests", "verifiers", "layout_driver.py")]
    return subprocess.run(cmd, env=env, cwd="/", capture_output=True, text=True, timeout=120)


def run_driver(python: str, home: str, pythonpath: str = REPO, user: list[str] = ()) -> dict:
    proc = start_driver(python, home, pythonpath, user)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_scored_like_here(out: dict, prefix: str) -> None:
    assert os.path.realpath(out["prefix"]) == os.path.realpath(prefix)  # the layout under test really ran
    assert out["isolation"] == "namespaces"
    assert out["scores"] == EXPECTED
    assert out["left_running"] == 0 and out["escaped"] == []


@pytest.fixture
def tmp_folder():
    """A folder directly in the sandbox's /tmp, traversable by everyone (unlike pytest's tmp_path)."""
    path = tempfile.mkdtemp(prefix="prime-layout-", dir=SANDBOX_TMP)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home():
    """A home-like directory outside /tmp that nobody else may enter (0700), as the verifier's HOME:
    the sandbox covers it, so a venv inside it must be bound back."""
    if not os.path.isdir(PERSISTENT_TMP):
        pytest.skip(f"no {PERSISTENT_TMP} to hold a home-like folder outside {SANDBOX_TMP}")
    path = tempfile.mkdtemp(prefix="prime-home-", dir=PERSISTENT_TMP)  # mode 0700
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_venv_in_pytest_tmp_path(tmp_path, home):
    venv = str(tmp_path / "venv")  # under /tmp/pytest-of-<user>, which is 0700
    assert_scored_like_here(run_driver(make_venv(sys.executable, venv), home), venv)


def test_venv_in_a_folder_under_tmp(tmp_folder, home):
    venv = os.path.join(tmp_folder, "venv")
    assert_scored_like_here(run_driver(make_venv(sys.executable, venv), home), venv)


def test_venv_in_a_project_folder_in_the_home_directory(home):
    venv = os.path.join(home, "project", ".venv")  # the home is hidden from the code, the venv bound back
    # --copies: the venv runs its own copy of the interpreter, not a symlink to the base one
    assert_scored_like_here(run_driver(make_venv(sys.executable, venv, "--copies"), home), venv)


def test_venv_made_through_a_symlink_in_dot_local(home, tmp_path):
    """~/.local/bin/python3 -> the real interpreter, and the venv's bin/python -> ~/.local/bin/python3:
    a symlink chain through the hidden home."""
    local_bin = os.path.join(home, ".local", "bin")
    os.makedirs(local_bin)
    os.symlink(os.path.realpath(sys.executable), os.path.join(local_bin, "python3"))
    venv = str(tmp_path / "venv")
    python = make_venv(os.path.join(local_bin, "python3"), venv)
    assert os.readlink(os.path.join(venv, "bin", "python3")).startswith(home)
    assert_scored_like_here(run_driver(python, home), venv)


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason=f"no {SYSTEM_PYTHON}")
def test_system_python(home):
    out = run_driver(SYSTEM_PYTHON, home)
    assert_scored_like_here(out, out["prefix"])
    assert out["executable"] == SYSTEM_PYTHON


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root, setpriv and a system python to run the verifier as another user")
@pytest.mark.parametrize("where", ["under_tmp", "in_its_home"])
def test_venv_as_an_unprivileged_user(tmp_folder, home, where):
    """Not root: the sandbox makes its own user namespace and the code runs as the verifier's uid, the
    owner of the venv, so only the read-only bind (not file permissions) keeps it out of the venv."""
    uid = 65534
    for sub in ("prime_trl/verifiers", "tests/verifiers"):  # a copy the user can read (the checkout may be private)
        shutil.copytree(os.path.join(REPO, sub), os.path.join(tmp_folder, sub),
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(REPO, "prime_trl", "__init__.py"), os.path.join(tmp_folder, "prime_trl"))
    venv = os.path.join({"under_tmp": tmp_folder, "in_its_home": home}[where], "venv")
    python = make_venv(SYSTEM_PYTHON, venv)
    for path in (tmp_folder, home):
        subprocess.run(["chown", "-R", f"{uid}:{uid}", path], check=True)
    user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    out = run_driver(python, home, pythonpath=tmp_folder, user=user)
    assert out["uid"] == uid
    assert_scored_like_here(out, venv)


@pytest.mark.skipif(os.getuid() != 0, reason="as root the code runs as uid 65534, which must read the install")
def test_a_venv_only_root_can_read_stops_with_the_fix(home):
    """A real setup failure, not an injected one: made with umask 077, the venv's own copy of the
    interpreter is unreadable for the sandbox uid. The verifier must say so, not score 0.0."""
    venv = os.path.join(home, "venv")
    old = os.umask(0o077)
    try:
        python = make_venv(sys.executable, venv, "--copies")
    finally:
        os.umask(old)
    proc = start_driver(python, home)
    assert proc.returncode != 0 and proc.stdout == ""  # no scores at all
    assert "SandboxUnavailable" in proc.stderr and "Permission denied" in proc.stderr
    assert "chmod -R o+rX" in proc.stderr and "isolation='process'" in proc.stderr
