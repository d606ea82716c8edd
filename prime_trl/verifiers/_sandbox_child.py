"""The part of the sandbox that runs *inside* the sandboxed process tree.

This file is never imported by the verifier: `sandbox.py` reads its text and runs it with
`python -I -S -c <source> launch`, so it needs no import path and uses the stdlib only.
Two roles, chosen by argv[1]:

* `launch`: reads the job (JSON on stdin), creates the namespaces, forks the process that
  becomes PID 1 of the new PID namespace, prepares its mounts, drops every privilege and
  execs this file again as `harness`. It exists so that the direct parent of untrusted code is
  a disposable process, never the training process.
* `harness`: PID 1 of the sandbox. For each stdin it forks a child that runs the program, reads
  its stdout (capped) until the child exits or the wall deadline passes, then kills every other
  process in the sandbox. It writes one JSON line per run on its stdout; the verifier parses and
  scores them, so nothing here knows what a correct output is.

Without namespaces (`isolation == "process"`), the launcher is a child subreaper and the
harness kills its whole descendant tree after each run; see `sandbox.py` for what that leaves
unenforced.
"""

import ctypes
import io
import json
import os
import resource
import select
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
SYS_MOUNT_SETATTR = 442  # same number on x86_64 and aarch64 (syscalls added after 5.x are unified)
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
EXIT_COMPILE_ERROR = 97  # exit status of a run whose source does not compile

_libc = ctypes.CDLL(None, use_errno=True)


def _ok(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _ok(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _prctl(option, arg):
    _ok(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def _emit(obj):
    os.write(1, (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace"))


# ----------------------------------------------------------------------------- launch


def _write_id_maps(uid, gid):
    """Map only our own uid/gid into the new user namespace (what an unprivileged process may do)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _set_readonly(path):
    """Make every mount at or below `path` read-only; returns a warning or None."""

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    ret = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, ctypes.byref(attr),
                        ctypes.sizeof(attr))
    if ret == 0:
        return None
    return f"mount_setattr failed ({os.strerror(ctypes.get_errno())}): {path} stays writable"


def _under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


def _bind_back(keep, covers):
    """Bind each kept dir that one of `covers` hides back at its own path; returns the paths bound.

    keep: path -> O_PATH fd taken before the covers were mounted. Binding `/proc/self/fd/N` reaches
    the directory even when no path does any more (a venv under /tmp, an install in a hidden home).
    """
    bound = []
    for path, fd in sorted(keep.items()):
        if any(_under(path, c) for c in covers) and not any(_under(path, b) for b in bound):
            os.makedirs(path, exist_ok=True)  # inside the cover's tmpfs, never on a host filesystem
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            bound.append(path)
    return bound


def _prepare_mounts(job, uid, gid):
    """Private mounts: empty tmpfs over the `hide` dirs, the rest read-only, a fresh /tmp and /dev/shm,
    and every `expose` dir (the Python install) bound back, read-only, wherever a cover hid it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.umask(0o022)  # mount points made below must be traversable by the sandbox uid
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for path in job["expose"]}
    for hidden in job["hide"]:
        _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    _bind_back(keep, job["hide"])
    warnings = [_set_readonly("/")]
    scratch = {"/tmp": job["limits"]["scratch_mb"], "/dev/shm": 1}
    for target, size_mb in scratch.items():
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=0700,uid={uid},gid={gid}")
    warnings += [_set_readonly(path) for path in _bind_back(keep, list(scratch))]
    for fd in keep.values():
        os.close(fd)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)  # shows only this PID namespace
    return "; ".join(w for w in warnings if w) or None


def _exec_harness(job, job_fd):
    """Become the harness; it reads its job from `job_fd` (a pipe the launcher writes)."""
    os.dup2(job_fd, 0)
    python = job["python"]
    # argv[0] is the interpreter as the verifier was started (a venv's bin/python): Python finds its
    # pyvenv.cfg from argv[0], so the program sees the venv's packages even if the symlink chain from
    # there to `python` (the resolved binary) runs through a hidden directory.
    try:
        os.execve(python, [job["argv0"], "-I", "-c", job["child_source"], "harness"], job["env"])
    except OSError as e:
        raise OSError(e.errno, f"exec {python} as uid {os.getuid()}: {e.strerror}") from None


def _launch_namespaces(job, job_fd):
    """Create the namespaces and fork PID 1; returns only in the launcher (the parent)."""
    uid, gid = os.getuid(), os.getgid()
    as_root = uid == 0
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not as_root:
        flags |= CLONE_NEWUSER
    _ok(_libc.unshare(flags), "unshare")
    if not as_root:
        _write_id_maps(uid, gid)
    _emit({"isolation": "namespaces"})
    pid = os.fork()
    if pid:
        return pid
    try:  # PID 1 of the sandbox
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        sandbox_uid, sandbox_gid = (job["root_uid"], job["root_gid"]) if as_root else (uid, gid)
        warning = _prepare_mounts(job, sandbox_uid, sandbox_gid)
        if as_root:
            # A real uid other than 0: RLIMIT_NPROC is not enforced for uid 0. The private user
            # namespace makes the process count per sandbox rather than per uid on the host.
            os.setgroups([])
            os.setgid(sandbox_gid)
            os.setuid(sandbox_uid)
            _prctl(PR_SET_DUMPABLE, 1)  # the uid change cleared it; /proc/self would stay root's
            _ok(_libc.unshare(CLONE_NEWUSER), "unshare(user)")
            _write_id_maps(sandbox_uid, sandbox_gid)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change
        if warning:
            _emit({"warning": warning})
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        os.chdir("/tmp")
        _exec_harness(job, job_fd)  # execve as a non-zero uid drops all capabilities
    except BaseException as e:  # noqa: BLE001 - report and die; the verifier raises or scores None
        import traceback

        where = traceback.extract_tb(e.__traceback__)[-1]
        _emit({"fatal": f"sandbox setup failed: {e!r} in {where.name} line {where.lineno}",
               "stage": "setup", "errno": getattr(e, "errno", None)})
    os._exit(70)


def _launch_process(job, job_fd, reason):
    """Fallback without namespaces: a subreaper launcher and a harness in a private cwd."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _emit({"isolation": "process", "warning": reason})
    pid = os.fork()
    if pid:
        return pid
    os.chdir(job["scratch"])
    _exec_harness(job, job_fd)


def launch():
    job = json.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    job_r, job_w = os.pipe()
    isolation = "process"
    if job["isolation"] == "process":
        pid = _launch_process(job, job_r, "isolation='process' requested")
    else:
        try:
            pid = _launch_namespaces(job, job_r)
            isolation = "namespaces"
        except OSError as e:
            if job["isolation"] == "namespaces":
                _emit({"fatal": f"namespaces unavailable: {e}", "stage": "unshare", "errno": e.errno})
                os._exit(70)
            pid = _launch_process(job, job_r, f"namespaces unavailable ({e}); running WITHOUT isolation")
    os.close(job_r)
    harness_job = {k: job[k] for k in ("source", "stdins", "limits")}
    # RLIMIT_NPROC counts per uid and user namespace: only a private user namespace makes it a
    # per-sandbox bound. In the fallback it would count the trainer's own threads, so it is off.
    harness_job["limit_nproc"] = isolation == "namespaces"
    try:
        with os.fdopen(job_w, "wb") as f:
            f.write(json.dumps(harness_job).encode("utf-8", "replace"))
    except OSError:
        pass  # the harness died during setup; its fatal line (if any) is already out
    os.waitpid(pid, 0)
    _kill_descendants()  # process mode: orphans were re-parented to us (subreaper)
    os._exit(0)


# ----------------------------------------------------------------------------- harness


def _children_of():
    """Map ppid -> [pid] over /proc (for the process-mode cleanup)."""
    tree = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _kill_descendants():
    """Kill every descendant of this process until none is left; return how many rounds it took."""
    me = os.getpid()
    for rounds in range(1, 200):
        if me == 1:
            found = True
            try:
                os.kill(-1, signal.SIGKILL)  # PID 1: everyone else in this PID namespace
            except ProcessLookupError:
                found = False
        else:
            tree, stack, found = _children_of(), [me], False
            while stack:
                for child in tree.get(stack.pop(), []):
                    found = True
                    stack.append(child)
                    try:
                        os.kill(child, signal.SIGKILL)
                    except OSError:
                        pass
        while True:  # reap whatever has died (orphans included: we are PID 1 or a subreaper)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
        if not found:
            return rounds
        time.sleep(0.002)
    return rounds


def _run_child(source, stdin_fd, out_fd, limits):
    """In the forked child: limits, fds, then run the program as __main__. Never returns."""
    try:
        os.dup2(stdin_fd, 0)
        os.dup2(out_fd, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.closerange(3, 1 << 16)
        os.setsid()  # process mode: a group we can kill even if the tree walk races
        cpu = int(limits["timeout_s"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        mem = limits["memory_mb"] << 20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8")
        sys.argv = ["solution.py"]
    except BaseException:  # noqa: BLE001
        os._exit(71)
    try:
        code = compile(source, "solution.py", "exec")
    except BaseException:  # noqa: BLE001 - SyntaxError, ValueError (NUL bytes), MemoryError...
        os._exit(EXIT_COMPILE_ERROR)
    rc = 0
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001
        rc = 1
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001
        rc = rc or 1
    os._exit(rc & 0xFF)


def _run_one(source, stdin, limits, wall_s):
    """Run the program once; returns the JSON-able record (status, rc, out)."""
    path = f".stdin-{os.getpid()}"
    with open(path, "wb") as f:
        f.write(stdin.encode("utf-8", "replace"))
    stdin_fd = os.open(path, os.O_RDONLY)
    os.unlink(path)
    r, w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _run_child(source, stdin_fd, w, limits)
    os.close(w)
    os.close(stdin_fd)
    cap, chunks, size, status, rc = limits["output_bytes"], [], 0, None, None
    deadline = start + wall_s
    open_pipe = True
    while status is None:
        now = time.monotonic()
        if now >= deadline:
            status = "timeout"
            break
        if open_pipe:
            ready, _, _ = select.select([r], [], [], min(0.05, deadline - now))
            if ready:
                data = os.read(r, 65536)
                if not data:
                    open_pipe = False
                size += len(data)
                if size > cap:
                    status = "output_limit"
                    break
                chunks.append(data)
        else:
            time.sleep(min(0.005, max(0.0, deadline - now)))
        done, wstatus = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(wstatus)
            status = "ok" if rc == 0 else ("compile_error" if rc == EXIT_COMPILE_ERROR else "error")
    if status in ("ok", "error", "compile_error"):  # drain what the child wrote before exiting
        while size <= cap and select.select([r], [], [], 0)[0]:
            data = os.read(r, 65536)
            if not data:
                break
            size += len(data)
            chunks.append(data)
        if size > cap:
            status = "output_limit"
    os.close(r)
    _kill_descendants()
    out = b"".join(chunks)[:cap].decode("utf-8", "replace")
    return {"status": status, "rc": rc, "out": out, "seconds": round(time.monotonic() - start, 4)}


def harness():
    job = json.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    try:
        _prctl(PR_SET_DUMPABLE, 0)  # no /proc/1/fd or ptrace access for same-uid code
        if os.getpid() != 1:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        pass
    limits = job["limits"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = limits["file_size_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    if job["limit_nproc"]:
        n = limits["max_procs"]
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
    deadline = time.monotonic() + limits["total_timeout_s"]
    for i, stdin in enumerate(job["stdins"]):
        wall = min(limits["timeout_s"], deadline - time.monotonic())
        if wall <= 0:
            _emit({"i": i, "status": "skipped", "rc": None, "out": ""})
            continue
        record = _run_one(job["source"], stdin, limits, wall)
        _emit(dict(record, i=i))
        if record["status"] == "compile_error":  # every later run would fail the same way
            for j in range(i + 1, len(job["stdins"])):
                _emit({"i": j, "status": "compile_error", "rc": None, "out": ""})
            break


if __name__ == "__main__":
    {"launch": launch, "harness": harness}[sys.argv[1]]()
