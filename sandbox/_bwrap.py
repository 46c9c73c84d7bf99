"""BwrapSandbox: the same contract as DockerSandbox on bubblewrap, for machines without a container engine.

Each run gets new user, pid, network, ipc, uts and cgroup namespaces; the Python runtime (``/usr`` and
the interpreter's prefix) bound read-only; size-limited tmpfs at ``/work``, ``/tmp`` and ``/dev/shm``; a
fresh ``/proc`` and a minimal read-only ``/dev``; no capabilities; no nested user namespaces; rlimits for
address space, CPU time, processes, open files and file size; and a wall-clock deadline enforced twice (by the
in-sandbox runner, which kills every process in the pid namespace, and by the host, which kills the
whole bubblewrap process group). When the host process is root, bubblewrap itself is started as
``nobody`` so that nothing in the sandbox maps to a privileged host user.
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tq_agents.sandbox._base import (
    WORK_DIR,
    BaseSandbox,
    ExecResult,
    HeadTail,
    Request,
    SandboxLimits,
    parse_result,
    raw_cap,
    runner_payload,
    runner_source,
)
from tq_agents.sandbox._cgroup import RunCgroup

from tq_agents.errors import SandboxError, SandboxUnavailableError

__all__ = ["BwrapSandbox"]

log = logging.getLogger("tq_agents.sandbox")

_NOBODY = 65534
_SANDBOX_UID = 1000
_HOST_GRACE_S = 3.0


def _find_python() -> str:
    for cand in ("/usr/bin/python3", shutil.which("python3") or ""):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise SandboxUnavailableError(
        "bubblewrap sandbox: no python3 interpreter found on this machine",
        hint="apt-get install python3-minimal (or pass python=/path/to/python3)",
    )


class BwrapSandbox(BaseSandbox):
    """Run code under bubblewrap with the same ``run`` contract and limits as :class:`DockerSandbox`.

    ``python`` is the interpreter used inside the sandbox (default: the system ``/usr/bin/python3``); its
    installation prefix is bound read-only. ``bwrap`` is the bubblewrap binary (default: found on PATH).
    """

    name = "bwrap"

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        python: str | None = None,
        bwrap: str | None = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        found = bwrap or shutil.which("bwrap")
        if not found:
            raise SandboxUnavailableError(
                "bubblewrap (bwrap) is not installed", hint="apt-get install bubblewrap, or use a container engine"
            )
        self.bwrap = found
        self.python = python or _find_python()
        self.bash = shutil.which("bash") or "/bin/bash"
        self._drop_to_nobody = os.geteuid() == 0
        self._warned = False
        #: True when the last run had a per-run cgroup (memory without swap, pids, CPU quota) on top of rlimits.
        self.cgroup_limits = False

    # -- command line -------------------------------------------------------------------------------------
    def _binds(self) -> list[str]:
        args: list[str] = ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/" + top)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        prefix = Path(os.path.realpath(self.python)).parent.parent
        if not str(prefix).startswith(("/usr", "/bin", "/lib")) and prefix != Path("/"):
            args += ["--ro-bind", str(prefix), str(prefix)]
        if Path(self.python).parent != Path(os.path.realpath(self.python)).parent:
            alias = Path(self.python).parent
            if not str(alias).startswith(("/usr", "/bin")):
                args += ["--ro-bind", str(alias), str(alias)]
        return args

    def command(self) -> list[str]:
        """The bubblewrap command line that starts the in-sandbox runner."""
        lim = self.limits
        return [
            self.bwrap,
            "--unshare-user",
            "--uid",
            str(_SANDBOX_UID),
            "--gid",
            str(_SANDBOX_UID),
            "--disable-userns",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--cap-drop",
            "ALL",
            *self._binds(),
            "--proc",
            "/proc",
            # /dev: bwrap's minimal device set on a tmpfs, made read-only below, so it holds nothing the
            # code writes; /dev/shm (POSIX shared memory, multiprocessing) is a tmpfs sized like /tmp, as
            # a container's shm_size. Unsized, both could take half the host's RAM outside every limit.
            "--dev",
            "/dev",
            "--perms",
            "1777",
            "--size",
            str(lim.tmp_mb << 20),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/dev",
            "--size",
            str(lim.tmp_mb << 20),
            "--tmpfs",
            "/tmp",
            "--size",
            str(lim.work_mb << 20),
            "--perms",
            "0755",
            "--tmpfs",
            WORK_DIR,
            "--remount-ro",
            "/",
            "--chdir",
            WORK_DIR,
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--",
            self.python,
            "-I",
            "-S",
            "-c",
            runner_source(),
        ]

    def _rlimits(self, timeout: float) -> dict[str, int]:
        lim = self.limits
        return {
            "as": lim.memory_mb << 20,
            "cpu": math.ceil(timeout * lim.cpus) + 1,
            "nproc": lim.pids,
            "nofile": lim.nofile,
            "fsize": lim.file_mb << 20,
            "core": 0,
        }

    def _preexec(self, cgroup: RunCgroup | None) -> None:  # runs in the forked child before exec of bwrap
        os.setsid()
        if cgroup is not None:
            cgroup.enter()
        if self._drop_to_nobody:
            os.setgroups([])
            os.setgid(_NOBODY)
            os.setuid(_NOBODY)

    # -- one run ------------------------------------------------------------------------------------------
    def _execute(self, req: Request) -> ExecResult:
        payload = runner_payload(
            req, self.limits, python=self.python, bash=self.bash, rlimits=self._rlimits(req.timeout)
        )
        cgroup = RunCgroup.create(self.limits.memory_mb << 20, self.limits.pids, self.limits.cpus)
        if cgroup is None and not self._warned:
            self._warned = True
            log.info("bwrap sandbox: no per-run cgroup here (not root or no writable cgroupfs): rlimits only")
        self.cgroup_limits = cgroup is not None
        try:
            return self._run_bwrap(req, payload, cgroup)
        finally:
            if cgroup is not None:
                cgroup.destroy()

    def _run_bwrap(self, req: Request, payload: bytes, cgroup: RunCgroup | None) -> ExecResult:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},  # never the host's environment
                cwd="/",
                close_fds=True,
                preexec_fn=lambda: self._preexec(cgroup),  # drops to nobody before exec
            )
        except OSError as e:
            raise SandboxError(f"cannot start bubblewrap ({self.bwrap}): {e}", hint="check bwrap --version") from e
        out, err = HeadTail(raw_cap(self.limits)), HeadTail(self.limits.max_output_bytes)
        deadline = started + req.timeout + _HOST_GRACE_S
        killed = False
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            try:
                proc.stdin.write(payload)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # bwrap failed to start; its stderr says why
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    killed = True
                    self._kill(proc)
                    break
                for key, _ in sel.select(timeout=min(remaining, 0.5)):
                    data = os.read(key.fd, 65536)
                    if data:
                        key.data.feed(data)
                    else:
                        sel.unregister(key.fileobj)
            sel.close()
            try:
                rc = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                killed = True
                self._kill(proc)
                rc = proc.wait()
        finally:
            if proc.poll() is None:
                self._kill(proc)
                proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
        duration = time.monotonic() - started
        stderr = err.value()
        if rc != 0 and not out.total and b"bwrap:" in stderr:
            raise SandboxError(
                f"bubblewrap failed to create the sandbox: {stderr.decode(errors='replace').strip()}",
                hint="user namespaces must be enabled (sysctl kernel.unprivileged_userns_clone=1)",
            )
        return parse_result(
            req,
            out.value(),
            stderr,
            exit_code=(128 - rc if rc < 0 else rc) if not killed else None,
            timed_out=killed,
            oom_killed=cgroup is not None and cgroup.oom_kills() > 0,
            truncated=out.overflowed or err.overflowed,
            duration_s=duration,
            limits=self.limits,
        )

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
