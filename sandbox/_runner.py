"""The in-sandbox runner: runs as PID 1 inside the container or bubblewrap sandbox.

This file is never imported by the host. Its source text is passed to the sandbox's own Python
(`python3 -I -S -c <source>`), so the image needs no copy of it and can never drift from the library.

Protocol: the host writes one JSON request to stdin and closes it. The runner writes the input files
under the work dir, runs the code as a child process in its own session with rlimits, captures
stdout/stderr with a byte cap (head and tail kept), kills the child and every other process in the
sandbox at the deadline or when the child exits, collects new/changed files from the work dir (no
symlinks followed), and writes one result record to stdout: a marker line carrying the request's nonce,
then JSON. Only the standard library of Python >= 3.8 is used.
"""

import base64
import hashlib
import json
import os
import resource
import selectors
import signal
import stat
import sys
import time

MAIN_NAMES = {"python": ".tq_main.py", "bash": ".tq_main.sh"}
RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}


class Capture:
    """Keeps the first and last ``cap // 2`` bytes of a stream and counts the rest."""

    def __init__(self, cap):
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data):
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self):
        kept = len(self.head) + len(self.tail)
        if self.total > kept:
            middle = f"\n...[{self.total - kept} bytes truncated]...\n"
            return self.head.decode("utf-8", "replace") + middle + self.tail.decode("utf-8", "replace"), True
        return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace"), False


def oom_kills():
    """The cgroup's OOM-kill counter (v1 or v2), or None where the cgroup files are not visible."""
    for path, key in (
        ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
        ("/sys/fs/cgroup/memory.events", "oom_kill"),
    ):
        try:
            with open(path) as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == key:
                        return int(parts[1])
        except OSError:
            continue
    return None


# Signals the runner ignores for itself: it is PID 1, which the kernel already shields from signals sent
# inside its namespace unless it has a handler, and Python installs one for SIGINT. Faults (SIGSEGV, ...)
# are left alone. The child gets every one of them back at its default, with SIGPIPE and SIGXFSZ (which
# Python itself ignores), as a process started from a shell would.
_IGNORED = (
    "SIGHUP SIGINT SIGQUIT SIGTERM SIGUSR1 SIGUSR2 SIGALRM SIGVTALRM SIGPROF SIGIO SIGPWR SIGTSTP SIGTTIN SIGTTOU"
)
RUNNER_IGNORES = [getattr(signal, name) for name in _IGNORED.split() if hasattr(signal, name)]
CHILD_DEFAULTS = [*RUNNER_IGNORES, signal.SIGPIPE, signal.SIGXFSZ]


def ignore_signals():
    for sig in RUNNER_IGNORES:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass


def default_signals():
    for sig in CHILD_DEFAULTS:
        signal.signal(sig, signal.SIG_DFL)


REAPED = {}


def reap(block_for=None):
    """Reap every exited child (we are PID 1, so orphans are ours too); remember their statuses."""
    while True:
        try:
            pid, st = os.waitpid(-1, 0 if block_for is not None and block_for not in REAPED else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        REAPED[pid] = st


def kill_everything_else():
    """SIGKILL every process in the sandbox except this one, then reap them."""
    if os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    reap()


def status_of(pid, block):
    """The wait status of our child ``pid``, or None while it runs (``block``: wait for it)."""
    if pid not in REAPED:
        reap(block_for=pid if block else None)
    return REAPED.get(pid)


# seccomp: refuse new user namespaces (unshare/clone with CLONE_NEWUSER) and clone3 (ENOSYS: libc falls back
# to clone, whose flags we can see). An unprivileged user namespace is the door to most kernel exploits;
# some engines' default profiles (Podman's) leave it open. Foreign-ABI syscalls are refused outright.
SECCOMP_ARCH = {  # machine: (AUDIT_ARCH, unshare, clone, clone3)
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}


def seccomp_no_userns():
    """Install the filter in the calling process (inherited across exec). False on an unknown machine."""
    import ctypes
    import platform

    spec = SECCOMP_ARCH.get(platform.machine())
    if spec is None:
        return False
    arch, nr_unshare, nr_clone, nr_clone3 = spec
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    prog = [
        (ld, 0, 0, 4),  # 0: A = arch
        (jeq, 0, 9, arch),  # 1: foreign ABI -> 11 (EPERM)
        (ld, 0, 0, 0),  # 2: A = syscall nr
        (jge, 7, 0, 0x40000000),  # 3: x32 ABI -> 11
        (jeq, 7, 0, nr_clone3),  # 4: clone3 -> 12 (ENOSYS)
        (jeq, 2, 0, nr_unshare),  # 5: unshare -> 8
        (jeq, 1, 0, nr_clone),  # 6: clone -> 8
        (ret, 0, 0, allow),  # 7
        (ld, 0, 0, 16),  # 8: A = low 32 bits of args[0] (flags)
        (jset, 1, 0, 0x10000000),  # 9: CLONE_NEWUSER -> 11
        (ret, 0, 0, allow),  # 10
        (ret, 0, 0, eperm),  # 11
        (ret, 0, 0, enosys),  # 12
    ]

    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

    insns = (Insn * len(prog))(*[Insn(*i) for i in prog])
    fprog = Prog(len(prog), insns)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    return True


def safe_path(work, rel):
    full = os.path.normpath(os.path.join(work, rel))
    if not full.startswith(work.rstrip("/") + "/"):
        raise ValueError(f"file path escapes the work dir: {rel!r}")
    return full


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def collect_files(work, inputs, budget, max_count):
    """New or changed regular files under ``work`` (symlinks are never followed), within ``budget`` bytes.

    Each returned file is charged its content plus its path as written in the JSON record (and a few bytes
    of punctuation), so a flood of empty files with long names cannot blow up the record; at most
    ``max_count`` files are returned. ``truncated`` is True when any new or changed file was left out.
    """
    out, truncated = {}, False
    for root, dirs, files in os.walk(work, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, work)
            try:
                st = os.lstat(full)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if rel in inputs and sha256_of(full) == inputs[rel]:
                    continue  # an input file left as it was
                cost = len(json.dumps(rel)) + 4
                if len(out) >= max_count:
                    return out, True  # no room for one more file: stop walking
                if cost + st.st_size > budget:
                    truncated = True
                    continue
                with open(full, "rb") as fh:
                    data = fh.read(budget - cost + 1)
            except OSError:
                continue
            if cost + len(data) > budget:
                truncated = True
                continue
            budget -= cost + len(data)
            out[rel] = base64.b64encode(data).decode("ascii")
    return out, truncated


def not_dumpable():
    """PR_SET_DUMPABLE 0: the code (same uid) cannot ptrace us or read our memory, environ or fds via /proc."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass


def main():
    ignore_signals()  # before anything else: the code must not be able to kill the runner (PID 1)
    not_dumpable()
    req = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    started = time.monotonic()
    work = req["work"]
    os.chdir(work)
    inputs = {}
    main_name = MAIN_NAMES[req["language"]]
    rel = main_name
    try:
        for rel, b64 in sorted(req["files"].items()):
            data = base64.b64decode(b64)
            full = safe_path(work, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as fh:
                fh.write(data)
            inputs[os.path.relpath(full, work)] = hashlib.sha256(data).hexdigest()
        rel = main_name
        code = req["code"].encode("utf-8")
        with open(os.path.join(work, main_name), "wb") as fh:
            fh.write(code)
        inputs[main_name] = hashlib.sha256(code).hexdigest()
    except (OSError, ValueError) as exc:
        # The host validates paths up front; what is left (e.g. a full work dir) is reported, not a traceback.
        what = "the code" if rel == main_name else repr(rel)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        write_record(req["nonce"], {"setup_error": f"cannot write {what} into the work dir: {reason}"})
        return 0
    if req["language"] == "python":
        argv = [req["python"], "-s", "-u", main_name]
    else:
        argv = [req["bash"], main_name]

    limits = [(RLIMITS[k], int(v)) for k, v in sorted(req["rlimits"].items())]

    def preexec():
        default_signals()
        os.setsid()
        for which, value in limits:
            resource.setrlimit(which, (value, value))
        try:
            with open("/proc/self/oom_score_adj", "w") as fh:  # the OOM killer takes the child, not us
                fh.write("1000")
        except OSError:
            pass

    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    oom_before = oom_kills()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.dup2(w_out, 1)
            os.dup2(w_err, 2)
            devnull = os.open("/dev/null", os.O_RDONLY)
            os.dup2(devnull, 0)
            for fd in (r_out, w_out, r_err, w_err, devnull):
                os.close(fd)
            preexec()
            seccomp_no_userns()
            os.execve(argv[0], argv, req["env"])
        except BaseException as exc:  # exec failed: report and leave without running host cleanup
            os.write(2, f"sandbox runner: cannot start {argv[0]}: {exc}\n".encode())
        os._exit(127)
    os.close(w_out)
    os.close(w_err)

    caps = {r_out: Capture(req["max_output"]), r_err: Capture(req["max_output"])}
    sel = selectors.DefaultSelector()
    sel.register(r_out, selectors.EVENT_READ)
    sel.register(r_err, selectors.EVENT_READ)
    deadline = started + float(req["timeout"])
    timed_out, status, open_fds, drain_until = False, None, 2, None
    while open_fds or status is None:
        now = time.monotonic()
        if status is None:
            status = status_of(pid, block=False)
            if status is not None:
                kill_everything_else()  # background processes die with the main one
            elif now >= deadline:
                timed_out = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                kill_everything_else()
                status = status_of(pid, block=True)
            if status is not None:
                drain_until = time.monotonic() + 1.0
        elif now >= drain_until:
            break  # something outside our reach still holds the pipes: stop reading
        wait = 0.05 if status is None else max(drain_until - now, 0.01)
        if not open_fds:
            if status is None:  # the code closed its output but still runs
                time.sleep(min(0.01, max(deadline - now, 0.001)))
            continue
        for key, _ in sel.select(timeout=min(wait, max(deadline - now, 0.01)) if status is None else wait):
            data = os.read(key.fd, 65536)
            if data:
                caps[key.fd].feed(data)
            else:
                sel.unregister(key.fd)
                os.close(key.fd)
                open_fds -= 1
    if status is None:
        status = status_of(pid, block=True)
    kill_everything_else()
    duration = time.monotonic() - started

    if os.WIFEXITED(status):
        exit_code, signaled = os.WEXITSTATUS(status), None
    else:
        signaled = os.WTERMSIG(status)
        exit_code = 128 + signaled
    stdout, t1 = caps[r_out].text()
    stderr, t2 = caps[r_err].text()
    oom_after = oom_kills()
    oom = oom_before is not None and oom_after is not None and oom_after > oom_before
    if not oom and req["language"] == "python" and exit_code == 1:
        last = stderr.rstrip().rsplit("\n", 1)[-1]
        oom = last.startswith("MemoryError")  # RLIMIT_AS (bubblewrap) fails allocations instead
    files_out, t3 = collect_files(work, inputs, int(req["max_files_out"]), int(req["max_files_out_count"]))
    result = {
        "exit_code": exit_code,
        "signal": signaled,
        "stdout": stdout,
        "stderr": stderr,
        "timed_out": timed_out,
        "oom_killed": oom,
        "truncated": t1 or t2 or t3,
        "duration_s": duration,
        "files_out": files_out,
    }
    write_record(req["nonce"], result)
    return 0


def write_record(nonce, result):
    """The result record: a marker line carrying the request's nonce, then JSON."""
    sys.stdout.buffer.write(b"\n" + nonce.encode("ascii") + b"\n" + json.dumps(result).encode("utf-8"))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    sys.exit(main())
