"""A per-run cgroup for BwrapSandbox (memory without swap, pids, CPU quota), cgroup v1 or v2; root only.

Best effort: when the host cannot create one (not root, read-only cgroupfs, controllers not delegated),
BwrapSandbox falls back to per-process rlimits and says so in ``BwrapSandbox.cgroup_limits``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

__all__ = ["RunCgroup"]

ROOT = Path("/sys/fs/cgroup")


class RunCgroup:
    """One cgroup per run. ``enter()`` runs in the forked child (as root, before it drops privileges)."""

    def __init__(self, dirs: list[Path], oom_file: Path | None, oom_key: str) -> None:
        self.dirs = dirs
        self.oom_file = oom_file
        self.oom_key = oom_key
        # Pre-encoded so that enter() only makes system calls in the forked child.
        self._procs = [str(d / "cgroup.procs").encode() for d in dirs]

    @classmethod
    def create(cls, memory_bytes: int, pids: int, cpus: float) -> RunCgroup | None:
        """Create the cgroup, or return None where this host does not allow it."""
        if os.geteuid() != 0 or not ROOT.is_dir():
            return None
        name = f"tq-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        made: list[Path] = []
        try:
            if (ROOT / "cgroup.controllers").exists():  # v2
                wanted = {"memory", "pids", "cpu"}
                enabled = set((ROOT / "cgroup.subtree_control").read_text().split())
                if not wanted <= enabled:
                    (ROOT / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(wanted - enabled)))
                d = ROOT / name
                d.mkdir()
                made.append(d)
                (d / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(pids))
                (d / "cpu.max").write_text(f"{int(cpus * 100000)} 100000")
                return cls(made, d / "memory.events", "oom_kill")
            mem, pid, cpu = ROOT / "memory" / name, ROOT / "pids" / name, ROOT / "cpu" / name
            for d in (mem, pid, cpu):
                d.mkdir()
                made.append(d)
            (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))  # no swap
            (pid / "pids.max").write_text(str(pids))
            (cpu / "cpu.cfs_period_us").write_text("100000")
            (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * 100000)))
            return cls(made, mem / "memory.oom_control", "oom_kill")
        except OSError:
            cls(made, None, "").destroy()
            return None

    def enter(self) -> None:
        """Move the calling process into the cgroup (raises OSError: the child then fails to start)."""
        pid = str(os.getpid()).encode()
        for path in self._procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this cgroup."""
        if self.oom_file is None:
            return 0
        try:
            for line in self.oom_file.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == self.oom_key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def destroy(self) -> None:
        """Kill anything left inside, then remove the cgroup directories."""
        for d in reversed(self.dirs):
            for _ in range(50):
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    pids = []
                for p in pids:
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
