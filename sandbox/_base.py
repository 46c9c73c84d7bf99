"""The sandbox contract: `Sandbox` protocol, `ExecResult`, `SandboxLimits`, and the shared plumbing.

Every sandbox runs the same in-sandbox runner (`_runner.py`) and speaks the same request/result
protocol, so the Docker and bubblewrap sandboxes differ only in how they start an isolated process.
The blocking `run` is the one implementation; `arun` is a thin wrapper that runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
from functools import cache
from importlib import resources
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from tq_agents.sandbox._runner import MAIN_NAMES

from tq_agents.errors import ConfigError, SandboxError

__all__ = ["BaseSandbox", "ExecResult", "Language", "Sandbox", "SandboxLimits"]

Language = Literal["python", "bash"]

#: Environment every run starts from; nothing of the host's environment is ever added.
BASE_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/work",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
WORK_DIR = "/work"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_INPUT_BYTES = 16 * 1024 * 1024
_NAME_MAX = 255  # bytes in one path component (Linux NAME_MAX)
_PATH_MAX = 4095  # bytes in a whole path, terminating NUL excluded (Linux PATH_MAX)
_PAGE = 4096  # tmpfs allocates whole pages


class SandboxLimits(BaseModel):
    """Resource limits applied to every run. The defaults are safe for model-written code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(10.0, gt=0, le=3600, description="Default wall-clock limit of one run, in seconds.")
    memory_mb: int = Field(512, ge=32, description="Memory limit (no swap); address-space limit under bubblewrap.")
    cpus: float = Field(1.0, gt=0, le=64, description="CPU quota in cores (containers); CPU-time limit otherwise.")
    pids: int = Field(128, ge=8, description="Maximum number of processes/threads.")
    nofile: int = Field(256, ge=16, description="Maximum open file descriptors.")
    work_mb: int = Field(64, ge=1, description="Size of the tmpfs work dir /work.")
    tmp_mb: int = Field(16, ge=1, description="Size of the tmpfs /tmp.")
    file_mb: int = Field(32, ge=1, description="Largest file a run may write (RLIMIT_FSIZE).")
    max_output_bytes: int = Field(64 * 1024, ge=1024, description="Cap per stream (stdout, stderr); head+tail kept.")
    max_files_out_bytes: int = Field(
        1024 * 1024, ge=0, description="Cap on the total size of returned files: contents plus path names."
    )
    max_files_out_count: int = Field(1000, ge=0, description="Cap on the number of returned files.")


class ExecResult(BaseModel):
    """What one sandboxed run produced."""

    model_config = ConfigDict(frozen=True)

    exit_code: int | None = Field(description="Exit status; 128+N when killed by signal N; None if unknown.")
    stdout: str = Field(description="Captured standard output (head and tail kept when over the cap).")
    stderr: str = Field(description="Captured standard error (head and tail kept when over the cap).")
    timed_out: bool = Field(description="The wall-clock limit was reached and the run was killed.")
    oom_killed: bool = Field(description="The run hit its memory limit (OOM-killed, or MemoryError under rlimits).")
    truncated: bool = Field(description="Output or returned files were cut to their caps.")
    duration_s: float = Field(description="Wall-clock seconds the code ran (host-measured when the runner died).")
    files_out: dict[str, bytes] = Field(
        default_factory=dict, description="New or changed files under /work, by relative path."
    )

    @property
    def ok(self) -> bool:
        """True when the code exited 0 within its limits."""
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed


@runtime_checkable
class Sandbox(Protocol):
    """Runs untrusted code in isolation. Implementations: DockerSandbox, BwrapSandbox."""

    name: str
    limits: SandboxLimits

    def run(
        self,
        code: str,
        *,
        language: Language = "python",
        files: dict[str, bytes | str] | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run ``code`` and return its result; raises SandboxError only when the sandbox itself fails."""
        ...

    async def arun(
        self,
        code: str,
        *,
        language: Language = "python",
        files: dict[str, bytes | str] | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """The async twin of :meth:`run`."""
        ...

    def close(self) -> None:
        """Release pooled resources (idempotent)."""
        ...


@cache
def runner_source() -> str:
    """The in-sandbox runner's source, passed to the sandbox's Python with ``-c``."""
    return resources.files("tq_agents.sandbox").joinpath("_runner.py").read_text(encoding="utf-8")


class Request(BaseModel):
    """A validated run request, as sent to the in-sandbox runner."""

    code: str
    language: Language
    files: dict[str, str]  # relative path -> base64
    env: dict[str, str]
    timeout: float
    nonce: str


def build_request(
    code: str,
    language: str,
    files: dict[str, bytes | str] | None,
    timeout: float | None,
    env: dict[str, str] | None,
    limits: SandboxLimits,
) -> Request:
    """Validate the arguments of ``run`` and build the runner request. Raises ConfigError naming the bad field."""
    if not isinstance(code, str):
        raise ConfigError(f"code must be a str, got {type(code).__name__}")
    if language not in ("python", "bash"):
        raise ConfigError(f"language must be 'python' or 'bash', got {language!r}")
    if timeout is None:
        timeout = limits.timeout_s
    if not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ConfigError(f"timeout must be a number of seconds in (0, 3600], got {timeout!r}")
    if not _is_text(code):
        raise ConfigError("code is not valid Unicode text (it has a lone surrogate); pass text that encodes to UTF-8")
    encoded: dict[str, str] = {}
    total = len(code.encode("utf-8"))
    pages = -(-total // _PAGE)
    for path, content in (files or {}).items():
        _check_file_path(path)
        if isinstance(content, str):
            try:
                data = content.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ConfigError(
                    f"files: the content of {_short(path)} is not valid Unicode text ({e.reason} at {e.start})",
                    hint="pass text that encodes to UTF-8, or bytes",
                ) from e
        elif isinstance(content, bytes | bytearray | memoryview):
            data = bytes(content)
        else:
            raise ConfigError(
                f"files: the content of {_short(path)} must be str or bytes, got {type(content).__name__}"
            )
        total += len(data)
        pages += -(-len(data) // _PAGE)
        encoded[path] = base64.b64encode(data).decode("ascii")
    _check_file_tree(encoded)
    if total > _MAX_INPUT_BYTES:
        raise ConfigError(f"code and files total {total} bytes; the limit is {_MAX_INPUT_BYTES}")
    if pages * _PAGE > limits.work_mb << 20:
        raise ConfigError(
            f"files: code and files need about {pages * _PAGE} bytes in the work dir, "
            f"more than its size (work_mb={limits.work_mb})",
            hint="pass less data, or raise SandboxLimits.work_mb",
        )
    run_env = dict(BASE_ENV)
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not _ENV_NAME.match(key) or not _is_text(value) or "\x00" in value:
            raise ConfigError(f"env: bad variable {key!r}", hint="names match [A-Za-z_][A-Za-z0-9_]*; values are str")
        run_env[key] = value
    return Request(
        code=code, language=language, files=encoded, env=run_env, timeout=float(timeout), nonce=secrets.token_hex(16)
    )


def _is_text(value: object) -> bool:
    """A str that encodes to UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_PATH_HINT = "use a relative path under the work dir without '..', e.g. 'data/input.csv'"


def _check_file_path(path: object) -> None:
    """Refuse a ``files`` path the runner could not write: ConfigError naming the entry."""
    if not isinstance(path, str):
        raise ConfigError(f"files: bad path {path!r}: must be a str, got {type(path).__name__}", hint=_PATH_HINT)
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in path:
        raise ConfigError(f"files: bad path {_short(path)}", hint=_PATH_HINT)
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(
            f"files: bad path {_short(path)}: not valid Unicode text ({e.reason})", hint=_PATH_HINT
        ) from e
    long = next((p for p in parts if len(p.encode("utf-8")) > _NAME_MAX), None)
    if long is not None:
        which = "" if long == path else f"the name {_short(long)} is "
        raise ConfigError(
            f"files: bad path {_short(path)}: {which}{len(long.encode('utf-8'))} bytes long; "
            f"a file or directory name may have at most {_NAME_MAX} bytes",
            hint=_PATH_HINT,
        )
    if len(WORK_DIR) + 1 + len(raw) > _PATH_MAX:
        raise ConfigError(
            f"files: bad path {_short(path)}: {len(raw)} bytes long; "
            f"a path may have at most {_PATH_MAX - len(WORK_DIR) - 1} bytes",
            hint=_PATH_HINT,
        )
    if parts[0] in MAIN_NAMES.values():  # where the runner writes the code itself
        raise ConfigError(f"files: bad path {path!r}: {parts[0]!r} is reserved for the code itself", hint=_PATH_HINT)


def _short(text: str, keep: int = 60) -> str:
    """``repr`` of ``text``, shortened in the middle when long (error messages stay readable)."""
    if len(text) <= keep:
        return repr(text)
    return repr(text[: keep - 15]) + f"...({len(text)} chars)..." + repr(text[-10:])


def _check_file_tree(paths: dict[str, str]) -> None:
    """Refuse a file that another entry needs as a directory (e.g. ``data`` and ``data/input.csv``)."""
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in paths:
                raise ConfigError(
                    f"files: {_short(parent)} is given as a file, but {_short(path)} needs it to be a directory",
                    hint="give each path once, either as a file or as a directory of other files",
                )


def runner_payload(req: Request, limits: SandboxLimits, *, python: str, bash: str, rlimits: dict[str, int]) -> bytes:
    """The JSON line the host writes to the runner's stdin."""
    body: dict[str, Any] = req.model_dump()
    body.update(
        work=WORK_DIR,
        python=python,
        bash=bash,
        rlimits=rlimits,
        max_output=limits.max_output_bytes,
        max_files_out=limits.max_files_out_bytes,
        max_files_out_count=limits.max_files_out_count,
        nonce="TQ-SANDBOX-RESULT-" + req.nonce,
    )
    return json.dumps(body).encode("utf-8")


def has_record(req: Request, stdout: bytes) -> bool:
    """True when the runner's result record is in ``stdout``."""
    return (b"\nTQ-SANDBOX-RESULT-" + req.nonce.encode("ascii") + b"\n") in stdout


def parse_result(
    req: Request,
    stdout: bytes,
    stderr: bytes,
    *,
    exit_code: int | None,
    timed_out: bool,
    oom_killed: bool,
    truncated: bool,
    duration_s: float,
    limits: SandboxLimits,
) -> ExecResult:
    """Combine the runner's result record with what the host observed.

    The host's own observations (timeout, OOM kill, output overflow) are never overridden by the record:
    code inside the sandbox could forge a record for itself, but not clear a host-side flag.
    """
    marker = b"\nTQ-SANDBOX-RESULT-" + req.nonce.encode("ascii") + b"\n"
    at = stdout.rfind(marker)
    record: dict[str, Any] | None = None
    if at >= 0:
        try:
            record = json.loads(stdout[at + len(marker) :].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            record = None
    if record is not None and not isinstance(record, dict):
        record = None
    if record is not None and record.get("setup_error"):
        # The runner could not write the input files (what build_request cannot foresee, e.g. a full work dir).
        raise ConfigError(
            f"files: {record['setup_error']}", hint="pass fewer or smaller files, or raise SandboxLimits.work_mb"
        )
    if record is None and at >= 0 and not (timed_out or oom_killed):
        # The runner reported, but its record is cut or garbled: the code's outcome is unknown. Never pass the
        # protocol text off as the code's output (and never as a success).
        raise SandboxError(
            f"the sandbox runner's result record could not be read ({len(stdout)} bytes of output kept"
            f"{', cut to the cap' if truncated else ''})",
            hint="lower SandboxLimits.max_output_bytes / max_files_out_bytes, or report this as a bug",
        )
    if record is None:
        # The runner died (killed at the host deadline, OOM, or killed by the code): report raw output.
        cap = limits.max_output_bytes
        if at >= 0:
            stdout = stdout[:at]  # a record cut off by the kill: protocol text, not the code's output
        return ExecResult(
            exit_code=exit_code,
            stdout=_clip(stdout, cap),
            stderr=_clip(stderr, cap),
            timed_out=timed_out,
            oom_killed=oom_killed,
            truncated=truncated or len(stdout) > cap or len(stderr) > cap,
            duration_s=duration_s,
        )
    try:
        files_out = {k: base64.b64decode(v, validate=True) for k, v in dict(record.get("files_out") or {}).items()}
    except (binascii.Error, ValueError, TypeError, AttributeError) as e:
        raise SandboxError("the sandbox runner returned a malformed file list") from e
    return ExecResult(
        exit_code=record.get("exit_code"),
        stdout=str(record.get("stdout", "")),
        stderr=_clip(stderr, limits.max_output_bytes, prefix=str(record.get("stderr", ""))),
        timed_out=timed_out or bool(record.get("timed_out")),
        oom_killed=oom_killed or bool(record.get("oom_killed")),
        truncated=truncated or bool(record.get("truncated")),
        duration_s=float(record.get("duration_s", duration_s)),
        files_out=files_out,
    )


def _clip(data: bytes, cap: int, prefix: str = "") -> str:
    text = data.decode("utf-8", "replace")
    if prefix:
        text = prefix + ("\n" + text if text else "")
    if len(text) > cap:
        half = cap // 2
        text = text[:half] + f"\n...[{len(text) - 2 * half} chars truncated]...\n" + text[-half:]
    return text


class BaseSandbox:
    """Shared behaviour: argument validation, the async twin, context management."""

    name: str = "sandbox"
    limits: SandboxLimits

    def run(
        self,
        code: str,
        *,
        language: Language = "python",
        files: dict[str, bytes | str] | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run ``code`` (Python source or a bash script) in a fresh isolated process tree.

        ``files`` are written under the work dir first (relative paths); ``env`` adds variables to a clean
        environment (the host's environment is never passed in). Returns an ExecResult even when the code
        fails, times out or runs out of memory; raises ConfigError for bad arguments and SandboxError when
        the sandbox itself cannot run.
        """
        req = build_request(code, language, files, timeout, env, self.limits)
        return self._execute(req)

    async def arun(
        self,
        code: str,
        *,
        language: Language = "python",
        files: dict[str, bytes | str] | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """The async twin of :meth:`run`: the same call in a worker thread, so the event loop never blocks."""
        return await asyncio.to_thread(self.run, code, language=language, files=files, timeout=timeout, env=env)

    def _execute(self, req: Request) -> ExecResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled resources (idempotent)."""

    def __enter__(self) -> BaseSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HeadTail:
    """Host-side byte capture that keeps the first and last ``cap // 2`` bytes of a stream."""

    def __init__(self, cap: int) -> None:
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        """Add ``data`` to the stream."""
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]

    @property
    def overflowed(self) -> bool:
        """More bytes arrived than were kept."""
        return self.total > len(self.head) + min(len(self.tail), self.half)

    def value(self) -> bytes:
        """The kept bytes: the whole stream, or head + tail when it overflowed."""
        tail = bytes(self.tail[-self.half :]) if self.overflowed else bytes(self.tail)
        return bytes(self.head) + tail


def raw_cap(limits: SandboxLimits) -> int:
    """How many bytes of the runner's stdout the host keeps: room for the JSON record at worst-case escaping."""
    return 2 * (12 * limits.max_output_bytes + 2 * limits.max_files_out_bytes + (1 << 20))
