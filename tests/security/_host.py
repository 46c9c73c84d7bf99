"""The host side of the attack suite: listeners, canary files/process/env var, and harm checks."""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

from sandbox._support import TEST_LIMITS

REPO = Path(__file__).resolve().parents[2]
CANARY_ENV = "TQ_SECURITY_CANARY_SECRET"


def host_interface_ip() -> str | None:
    """This machine's own (non-loopback) IPv4 address, read from `ip`, never guessed by contacting anything."""
    if shutil.which("ip"):
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            parts = line.split()
            if "inet" in parts:
                return parts[parts.index("inet") + 1].split("/")[0]
    # Without iproute2: the kernel's own table of local addresses.
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return None
    for prev, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            addr = prev.split()[-1]
            if not addr.startswith("127."):
                return addr
    return None


class HostContext:
    """Everything the attacks aim at on the host, and the checks that the host came through unharmed."""

    def __init__(self) -> None:
        self.limits = TEST_LIMITS
        self.host_ip = host_interface_ip()
        self.hits: dict[str, int] = {}
        self.tag = "tq-leftover-" + secrets.token_hex(6)
        self.canary_value = "canary-" + secrets.token_hex(12)
        self.canary_file_text = "host-secret-" + secrets.token_hex(12)
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self.self_check: dict[str, int] = {}

    # -- setup / teardown ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.canary_dir = Path(tempfile.mkdtemp(prefix="tq-canary-"))
        self.canary_file = self.canary_dir / "secret.txt"
        self.canary_file.write_text(self.canary_file_text)
        self.canary_file.chmod(0o600)
        self.home_dir = Path(tempfile.mkdtemp(prefix=".tq-canary-", dir=Path.home()))
        self.home_canary = self.home_dir / "home-secret.txt"
        self.home_canary.write_text(self.canary_file_text)
        self._fingerprint = self._files_fingerprint()
        self._old_env = os.environ.get(CANARY_ENV)
        os.environ[CANARY_ENV] = self.canary_value
        self.canary_proc = subprocess.Popen(["sleep", "600"])
        try:
            self.shadow_marker = Path("/etc/shadow").read_text().splitlines()[0]
        except (OSError, IndexError):
            self.shadow_marker = ""
        self.ports: dict[str, int] = {}
        for addr_name, addr in (("LO", "127.0.0.1"), ("IP", self.host_ip)):
            if addr is None:
                continue
            self.ports[f"TCP_{addr_name}"] = self._listen(f"tcp {addr}", addr, socket.SOCK_STREAM)
            self.ports[f"UDP_{addr_name}"] = self._listen(f"udp {addr}", addr, socket.SOCK_DGRAM)
        self._prove_listeners()

    def stop(self) -> None:
        self._stop.set()
        for s in self._socks:
            s.close()
        self.canary_proc.kill()
        self.canary_proc.wait()
        if self._old_env is None:
            os.environ.pop(CANARY_ENV, None)
        else:
            os.environ[CANARY_ENV] = self._old_env
        shutil.rmtree(self.canary_dir, ignore_errors=True)
        shutil.rmtree(self.home_dir, ignore_errors=True)

    def _listen(self, name: str, addr: str, kind: int) -> int:
        s = socket.socket(socket.AF_INET, kind)
        s.bind((addr, 0))
        s.settimeout(0.2)
        if kind == socket.SOCK_STREAM:
            s.listen(16)
        self._socks.append(s)
        self.hits[name] = 0

        def serve() -> None:
            while not self._stop.is_set():
                try:
                    if kind == socket.SOCK_STREAM:
                        conn, _ = s.accept()
                        conn.close()
                    else:
                        s.recvfrom(4096)
                except (TimeoutError, OSError):
                    continue
                self.hits[name] += 1

        threading.Thread(target=serve, daemon=True, name=f"listener {name}").start()
        return int(s.getsockname()[1])

    def _prove_listeners(self) -> None:
        """Reach every listener from the host once: the containment checks below can really fail."""
        import time

        for name in list(self.hits):
            kind, addr = name.split()
            port = self.ports[f"{kind.upper()}_{'LO' if addr == '127.0.0.1' else 'IP'}"]
            if kind == "tcp":
                socket.create_connection((addr, port), timeout=2).close()
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.sendto(b"self-check", (addr, port))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(self.hits.values()):
            time.sleep(0.05)
        self.self_check = dict(self.hits)
        for name in self.hits:
            self.hits[name] = 0

    # -- what the attacks get -------------------------------------------------------------------------------
    def substitutions(self) -> dict[str, str]:
        """Values filled into the attacks' code."""
        subs = {
            "HOST_IP": self.host_ip or "127.0.0.1",
            "REPO": str(REPO),
            "HOME": str(Path.home()),
            "HOME_CANARY": str(self.home_canary),
            "CANARY_FILE": str(self.canary_file),
            "CANARY_DIR": str(self.canary_dir),
            "CANARY_PID": str(self.canary_proc.pid),
            "HOST_PID": str(os.getpid()),
            "TAG": self.tag,
            "TMP_MB": str(self.limits.tmp_mb),
        }
        subs.update({k: str(v) for k, v in self.ports.items()})
        subs.setdefault("TCP_IP", subs["TCP_LO"])
        subs.setdefault("UDP_IP", subs["UDP_LO"])
        return subs

    # -- harm checks ----------------------------------------------------------------------------------------
    def _files_fingerprint(self) -> list[tuple[str, str, int]]:
        out = []
        for d in (self.canary_dir, self.home_dir):
            for p in sorted(d.iterdir()):
                st = p.lstat()
                out.append((str(p), hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode)))
        return out

    def files_intact(self) -> bool:
        """Canary files unchanged (content, mode), no new files next to them or in the repo."""
        try:
            same = self._files_fingerprint() == self._fingerprint
        except OSError:
            return False
        return same and not (REPO / "tq-pwned").exists() and not Path("/tq-pwned").exists()

    def canary_process_alive(self) -> bool:
        """The host process the attacks try to kill is still running."""
        return self.canary_proc.poll() is None

    def can_fork(self) -> bool:
        """The host can still start a process."""
        return subprocess.run(["true"], timeout=10).returncode == 0

    def listener_hits(self) -> dict[str, int]:
        """Listeners that received anything since the self-check."""
        return {k: v for k, v in self.hits.items() if v}

    def tagged_processes(self) -> list[str]:
        """Host processes whose command line carries the leftover tag."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if self.tag.encode() in cmd:
                text = cmd.replace(b"\0", b" ").decode(errors="replace")[:80]
                found.append(f"{pid}: {text}")
        return found
