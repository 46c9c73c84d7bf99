"""DockerSandbox: one fresh, locked-down container per run, through the Docker API (Docker or Podman).

Every container: no network, memory limit with no swap, CPU quota, pids limit, read-only root, tmpfs
``/work`` and ``/tmp`` with size limits, non-root user, all capabilities dropped, ``no-new-privileges``,
explicit ``nofile``/``nproc``/``fsize``/``core`` ulimits, no host mounts, an environment built from
scratch (nothing of the host's), logging off (output travels over the attach stream and is capped),
and a wall-clock deadline after which the container is killed. The in-sandbox runner is PID 1 and kills
every leftover process when the code exits. A container is used for exactly one run and then removed;
the optional warm pool only starts containers ahead of time.

The ``docker`` SDK is imported lazily; its exceptions are translated at this border into SandboxError.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tq_agents.sandbox._base import (
    WORK_DIR,
    BaseSandbox,
    ExecResult,
    HeadTail,
    Request,
    SandboxLimits,
    has_record,
    parse_result,
    raw_cap,
    runner_payload,
    runner_source,
)

from tq_agents.errors import SandboxError, SandboxUnavailableError

__all__ = ["DEFAULT_IMAGE", "DockerSandbox"]

log = logging.getLogger("tq_agents.sandbox")

#: The image built by ``sandbox/build_image.sh`` (or ``sandbox/Dockerfile``); override with TQ_SANDBOX_IMAGE.
DEFAULT_IMAGE = "tq-agents-sandbox:latest"
LABEL = "org.tq-agents.sandbox"
_HOST_GRACE_S = 3.0
_ENGINE_HINT = 'start an engine: `eval "$(bash scripts/engine.sh start)"` (Podman), or set DOCKER_HOST / base_url'


def _connection_errors() -> tuple[type[BaseException], ...]:
    import requests

    return (requests.exceptions.ConnectionError, ConnectionError)


@contextlib.contextmanager
def _engine_errors(what: str, url: str, image: str) -> Iterator[None]:
    """Translate docker SDK exceptions into the project's own, chained with ``from``."""
    import docker.errors

    try:
        yield
    except docker.errors.ImageNotFound as e:
        raise SandboxError(
            f"sandbox image {image!r} is not in the engine at {url}",
            hint="build it offline: `bash sandbox/build_image.sh` (or `docker build -t IMAGE sandbox/`)",
        ) from e
    except docker.errors.APIError as e:
        raise SandboxError(f"container engine refused to {what}: {e.explanation or e}") from e
    except _connection_errors() as e:
        raise SandboxUnavailableError(f"cannot reach the container engine at {url} to {what}", hint=_ENGINE_HINT) from e
    except docker.errors.DockerException as e:
        raise SandboxUnavailableError(f"container engine at {url} failed to {what}: {e}", hint=_ENGINE_HINT) from e


def _drain_pool(pool: queue.Queue[Any], closed: threading.Event) -> None:
    """Remove every pooled container (module-level: the finalizer must not hold the sandbox alive)."""
    closed.set()
    while True:
        try:
            container, sock = pool.get_nowait()
        except queue.Empty:
            return
        with contextlib.suppress(Exception):
            sock.close()
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)


class DockerSandbox(BaseSandbox):
    """Run code in a fresh locked-down container per run (Docker Engine or Podman's Docker API).

    ``base_url`` is the engine's API address (default: ``DOCKER_HOST``, else the default Docker socket);
    ``image`` defaults to ``TQ_SANDBOX_IMAGE`` or :data:`DEFAULT_IMAGE`; ``pool_size`` > 0 keeps that many
    containers started ahead of time (each is still used for one run only). Call :meth:`close` (or use
    the sandbox as a context manager) to remove them; those still pooled when the sandbox is garbage
    collected or the interpreter exits are removed then.
    """

    name = "docker"

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        base_url: str | None = None,
        image: str | None = None,
        pool_size: int = 0,
        python: str = "/usr/bin/python3",
        connect_attempts: int = 4,
    ) -> None:
        try:
            import docker
        except ImportError as e:
            raise SandboxUnavailableError(
                "the docker SDK is not installed", hint='pip install "tq-agents[sandbox]"'
            ) from e
        self.limits = limits or SandboxLimits()
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.image = image or os.environ.get("TQ_SANDBOX_IMAGE") or DEFAULT_IMAGE
        if pool_size < 0:
            raise SandboxError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.python = python
        self._attempts = max(1, connect_attempts)
        self._docker = docker
        self._closed_event = threading.Event()
        self._pool: queue.Queue[Any] = queue.Queue()
        # Pooled containers outlive a sandbox nobody closes: remove them when it is collected or at exit.
        self._finalizer = weakref.finalize(self, _drain_pool, self._pool, self._closed_event)
        self._filler: ThreadPoolExecutor | None = None
        # Finished containers are removed off the caller's path (the engine's cleanup takes ~0.5 s).
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tq-sandbox-reaper")
        self._reaping: set[Any] = set()
        self._lock = threading.Lock()
        with _engine_errors("connect", self.base_url, self.image):
            self._client = self._retrying(lambda: docker.DockerClient(base_url=self.base_url, max_pool_size=32))
            self._retrying(self._client.ping)
            self._client.images.get(self.image)
            components = self._client.version().get("Components") or []
        self.engine = "podman" if any("podman" in str(c.get("Name", "")).lower() for c in components) else "docker"
        if pool_size:
            self._filler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tq-sandbox-pool")
            self._filler.submit(self._refill)

    @property
    def _closed(self) -> bool:
        return self._closed_event.is_set()

    # -- engine calls -------------------------------------------------------------------------------------
    def _retrying(self, fn: Any) -> Any:
        """Call ``fn``, retrying only engine connection errors (never a run whose code may have started)."""
        import tenacity

        retry = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._is_connection_error),
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=tenacity.wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )
        return retry(fn)

    def _is_connection_error(self, exc: BaseException) -> bool:
        if isinstance(exc, _connection_errors()):
            return True
        # docker.from_env()/DockerClient wrap the refused connection in a DockerException.
        return (
            isinstance(exc, self._docker.errors.DockerException)
            and not isinstance(exc, self._docker.errors.APIError)
            and "Connection" in str(exc)
        )

    def ping(self) -> bool:
        """True when the engine answers."""
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def container_config(self) -> dict[str, Any]:
        """The keyword arguments every sandbox container is created with (the security settings live here)."""
        lim = self.limits
        ulimit = self._docker.types.Ulimit
        mem = f"{lim.memory_mb}m"
        # Podman ignores tmpfs `mode=`; its `U` option chowns the mount to the container user instead.
        owner = "U" if self.engine == "podman" else "mode=1777"
        return {
            "image": self.image,
            "command": [self.python, "-I", "-S", "-c", runner_source()],
            "user": "1000:1000",
            "working_dir": WORK_DIR,
            "environment": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},  # built here, never from os.environ
            "hostname": "sandbox",
            "network_mode": "none",
            "mem_limit": mem,
            "memswap_limit": mem,  # equal to mem_limit: no swap
            "nano_cpus": int(lim.cpus * 1e9),
            "pids_limit": lim.pids,
            "read_only": True,
            "tmpfs": {
                WORK_DIR: f"rw,nosuid,nodev,size={lim.work_mb}m,{owner}",
                "/tmp": f"rw,nosuid,nodev,size={lim.tmp_mb}m,{owner}",
                # Podman adds unsized tmpfs at /run and /var/tmp to read-only containers: size them.
                "/run": "rw,nosuid,nodev,noexec,size=1m",
                "/var/tmp": "rw,nosuid,nodev,noexec,size=1m",
            },
            "shm_size": f"{lim.tmp_mb}m",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "ipc_mode": "private",
            "ulimits": [
                ulimit(name="nofile", soft=lim.nofile, hard=lim.nofile),
                # RLIMIT_NPROC counts per host uid across containers; pids_limit is the per-container bound.
                ulimit(name="nproc", soft=lim.pids * 8, hard=lim.pids * 8),
                ulimit(name="fsize", soft=lim.file_mb << 20, hard=lim.file_mb << 20),
                ulimit(name="core", soft=0, hard=0),
            ],
            "stdin_open": True,
            "detach": True,
            "log_config": self._docker.types.LogConfig(type="none"),
            "labels": {LABEL: "1", f"{LABEL}.owner-pid": str(os.getpid())},
        }

    def _start_container(self) -> Any:
        with _engine_errors("create a container", self.base_url, self.image):
            container = self._retrying(lambda: self._client.containers.create(**self.container_config()))
            try:
                self._retrying(container.start)
            except BaseException:
                self._remove(container)
                raise
        return container

    def _remove(self, container: Any) -> None:
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)

    # -- warm pool ----------------------------------------------------------------------------------------
    def _refill(self) -> None:
        while not self._closed and self._pool.qsize() < self.pool_size:
            try:
                container = self._start_container()
            except Exception as e:  # the next run will create its own container and surface the error
                log.warning("sandbox pool: could not start a container: %s", e)
                return
            if self._closed:
                self._remove(container)
                return
            try:
                sock = self._attach(container)  # attached ahead too: one round trip less per run
            except Exception:
                self._remove(container)
                return
            self._pool.put((container, sock))

    def _attach(self, container: Any) -> Any:
        with _engine_errors("attach to the container", self.base_url, self.image):
            return self._retrying(
                lambda: self._client.api.attach_socket(
                    container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                )
            )

    def _acquire(self) -> tuple[Any, Any]:
        if self._closed:
            raise SandboxError("this DockerSandbox is closed", hint="create a new DockerSandbox")
        entry = None
        if self.pool_size:
            with contextlib.suppress(queue.Empty):
                entry = self._pool.get_nowait()
            with self._lock:
                if self._filler is not None and not self._closed:
                    self._filler.submit(self._refill)
        if entry is not None:
            return entry
        container = self._start_container()
        try:
            return container, self._attach(container)
        except BaseException:
            self._remove(container)
            raise

    def _remove_later(self, container: Any) -> None:
        try:
            fut = self._reaper.submit(self._remove, container)
        except RuntimeError:  # reaper shut down: remove inline
            self._remove(container)
            return
        with self._lock:
            self._reaping.add(fut)
        fut.add_done_callback(lambda f: self._reaping.discard(f))

    def flush(self) -> None:
        """Wait until the containers of finished runs are removed."""
        with self._lock:
            pending = list(self._reaping)
        for fut in pending:
            fut.result()

    def close(self) -> None:
        """Stop refilling the pool and remove every pooled and finished container (idempotent)."""
        self._closed_event.set()
        with self._lock:
            filler, self._filler = self._filler, None
        if filler is not None:
            filler.shutdown(wait=True, cancel_futures=True)
        self._finalizer()  # drains the pool now (and only once)
        _drain_pool(self._pool, self._closed_event)  # in case the finalizer already ran at exit
        self.flush()

    # -- one run ------------------------------------------------------------------------------------------
    def _execute(self, req: Request) -> ExecResult:
        payload = runner_payload(
            req,
            self.limits,
            python=self.python,
            bash="/bin/bash",
            rlimits={"fsize": self.limits.file_mb << 20, "core": 0, "nofile": self.limits.nofile},
        )
        container, sock = self._acquire()
        try:
            raw: socket.socket = getattr(sock, "_sock", sock)
            started = time.monotonic()
            out, err = HeadTail(raw_cap(self.limits)), HeadTail(self.limits.max_output_bytes)
            deadline = started + req.timeout + _HOST_GRACE_S
            try:
                raw.sendall(payload)
                raw.shutdown(socket.SHUT_WR)
                killed = not self._read_frames(raw, out, err, deadline)
            except OSError as e:
                raise SandboxError(f"lost the attach stream of the sandbox container: {e}") from e
            finally:
                with contextlib.suppress(OSError):
                    raw.close()
                with contextlib.suppress(Exception):
                    sock.close()
            duration = time.monotonic() - started
            stdout = out.value()
            if not killed and has_record(req, stdout):
                # The runner reported (exit code, OOM kills in its cgroup): no need to wait for the engine.
                exit_code, oom = None, False
            else:
                if killed:
                    with contextlib.suppress(Exception):
                        container.kill()
                with _engine_errors("wait for the container", self.base_url, self.image):
                    try:
                        status = container.wait(timeout=10)
                    except Exception:
                        container.kill()
                        status = container.wait(timeout=10)
                    container.reload()
                exit_code = None if killed else status.get("StatusCode")
                oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
            return parse_result(
                req,
                stdout,
                err.value(),
                exit_code=exit_code,
                timed_out=killed,
                oom_killed=oom,
                truncated=out.overflowed or err.overflowed,
                duration_s=duration,
                limits=self.limits,
            )
        finally:
            self._remove_later(container)

    @staticmethod
    def _read_frames(raw: socket.socket, out: HeadTail, err: HeadTail, deadline: float) -> bool:
        """Demultiplex the attach stream into ``out``/``err`` until EOF; False when the deadline passed first."""
        buf = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            raw.settimeout(remaining)
            try:
                data = raw.recv(262144)
            except TimeoutError:
                return False
            if not data:
                return True
            buf += data
            while len(buf) >= 8:
                size = int.from_bytes(buf[4:8], "big")
                if len(buf) < 8 + size:
                    break
                (err if buf[0] == 2 else out).feed(bytes(buf[8 : 8 + size]))
                del buf[: 8 + size]
