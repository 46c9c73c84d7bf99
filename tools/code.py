"""Code-execution tools for the coder agent: ``run_python`` and ``run_bash``, always sandboxed.

```python
from tq_agents.sandbox import DockerSandbox
from tq_agents.tools.code import code_tools

with DockerSandbox(pool_size=2) as sandbox:   # leaving the block removes the warm containers (close())
    run_python, run_bash = code_tools(sandbox)
    result = await run_python.call({"code": "print(6 * 7)"})   # ToolResult; .value is a CodeRunResult dict
```

The module-level ``run_python`` / ``run_bash`` use :func:`tq_agents.sandbox.default_sandbox`, created on
first use (a clear SandboxUnavailableError, returned to the model as a ToolError, when there is none).
Results are structured for the model: exit code, the tails of stdout/stderr, timeout/OOM/truncation
flags, returned files, and a one-line ``summary`` in words. Everything shown is bounded: the tails of the
output, at most ``max_files`` returned files within ``files_chars`` characters (names included).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, Field

from tq_agents._tool import Tool, tool

if TYPE_CHECKING:
    from tq_agents.sandbox import ExecResult, Sandbox

__all__ = ["CodeRunResult", "code_tools", "run_bash", "run_python", "summarize_result"]


class CodeRunResult(BaseModel):
    """What a sandboxed run produced, shaped for a model to read."""

    ok: bool = Field(description="True when the code exited 0 within its time and memory limits.")
    exit_code: int | None = Field(description="Exit status (128+N when killed by signal N; null when killed).")
    stdout_tail: str = Field(description="The end of standard output.")
    stderr_tail: str = Field(description="The end of standard error (tracebacks are here).")
    timed_out: bool = Field(description="The time limit was reached and the code was killed.")
    oom_killed: bool = Field(description="The memory limit was reached.")
    truncated: bool = Field(description="Output was longer than shown.")
    duration_s: float = Field(description="Seconds the code ran.")
    files_out: dict[str, str] = Field(default_factory=dict, description="New or changed files under /work (text).")
    files_not_shown: int = Field(
        0, description="How many more new or changed files there were than shown (more when truncated)."
    )
    summary: str = Field(description="One line: what happened and what to do next.")


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"...[{len(text) - limit} earlier chars not shown]...\n" + text[-limit:]


def summarize_result(
    result: ExecResult,
    *,
    tail_chars: int = 4000,
    timeout: float | None = None,
    max_files: int = 20,
    files_chars: int | None = None,
) -> CodeRunResult:
    """Turn an ExecResult into the CodeRunResult shown to the model.

    At most ``max_files`` returned files are shown, within ``files_chars`` characters of names and text
    together (default: ``4 * tail_chars``); each file's text is cut to its last ``tail_chars`` characters.
    """
    if result.timed_out:
        limit = f" of {timeout:g} s" if timeout else ""
        summary = f"Timed out: killed at the time limit{limit}. Make the code faster or print progress earlier."
    elif result.oom_killed:
        summary = "Out of memory: the memory limit was reached. Process the data in smaller pieces."
    elif result.exit_code == 0:
        summary = "Exited 0."
    else:
        summary = f"Failed with exit code {result.exit_code}; see stderr_tail."
    files, not_shown = _shown_files(
        result.files_out,
        tail_chars=tail_chars,
        max_files=max_files,
        budget=4 * tail_chars if files_chars is None else files_chars,
    )
    if result.truncated or not_shown:
        summary += " Output was truncated; print less."
    if not_shown:
        more = "at least " if result.truncated else ""
        summary += f" {more}{not_shown} more new or changed files not shown; write fewer files."
    return CodeRunResult(
        ok=result.ok,
        exit_code=result.exit_code,
        stdout_tail=_tail(result.stdout, tail_chars),
        stderr_tail=_tail(result.stderr, tail_chars),
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        truncated=result.truncated or bool(not_shown),
        duration_s=round(result.duration_s, 3),
        files_out=files,
        files_not_shown=not_shown,
        summary=summary,
    )


def _shown_files(
    files_out: dict[str, bytes], *, tail_chars: int, max_files: int, budget: int
) -> tuple[dict[str, str], int]:
    """The files shown to the model (text, or a note for binary data) and how many were left out."""
    shown: dict[str, str] = {}
    for path, data in sorted(files_out.items()):
        if len(shown) >= max_files or len(path) >= budget:
            continue
        try:
            text = _tail(data.decode("utf-8"), tail_chars)
        except UnicodeDecodeError:
            text = f"<binary, {len(data)} bytes>"
        room = budget - len(path)
        if len(text) > room:
            if room < 200:
                continue
            text = _tail(text, room - 60)
        shown[path] = text
        budget -= len(path) + len(text)
    return shown, len(files_out) - len(shown)


def code_tools(
    sandbox: Sandbox | None = None, *, tail_chars: int = 4000, max_timeout_s: float = 60.0
) -> tuple[Tool, Tool]:
    """Build ``(run_python, run_bash)`` bound to ``sandbox`` (default: ``default_sandbox()`` on first use).

    Args:
        sandbox: Where the code runs. Never the bare host.
        tail_chars: How many trailing characters of stdout/stderr (and of each returned file) the model sees.
        max_timeout_s: Upper bound on the ``timeout_s`` a model may ask for.
    """
    holder: dict[str, Sandbox] = {}
    lock = threading.Lock()

    def get() -> Sandbox:
        if sandbox is not None:
            return sandbox
        with lock:
            if "sb" not in holder:
                from tq_agents.sandbox import default_sandbox

                holder["sb"] = default_sandbox()
            return holder["sb"]

    async def execute(code: str, language: str, files: dict[str, str] | None, timeout_s: float) -> CodeRunResult:
        timeout = min(max(timeout_s, 0.1), max_timeout_s)
        result = await get().arun(code, language=language, files=files, timeout=timeout)  # type: ignore[arg-type]
        return summarize_result(result, tail_chars=tail_chars, timeout=timeout)

    outer = max_timeout_s + 30.0

    @tool(name="run_python", timeout=outer, max_output_chars=None)  # the sandbox bounds its own output
    async def run_python(
        code: Annotated[str, Field(description="Python 3 source to run as a script; print what you need to see.")],
        files: Annotated[
            dict[str, str] | None, Field(description="Text files to create first: relative path -> content.")
        ] = None,
        timeout_s: Annotated[float, Field(description="Time limit in seconds.", gt=0)] = 10.0,
    ) -> CodeRunResult:
        """Run Python code in an isolated sandbox (no network, no host files; /work is a scratch dir).

        Returns the exit code, the tails of stdout and stderr, timeout/out-of-memory flags and new files.
        """
        return await execute(code, "python", files, timeout_s)

    @tool(name="run_bash", timeout=outer, max_output_chars=None)  # the sandbox bounds its own output
    async def run_bash(
        script: Annotated[str, Field(description="A bash script to run; coreutils, grep, sed, python3 available.")],
        files: Annotated[
            dict[str, str] | None, Field(description="Text files to create first: relative path -> content.")
        ] = None,
        timeout_s: Annotated[float, Field(description="Time limit in seconds.", gt=0)] = 10.0,
    ) -> CodeRunResult:
        """Run a bash script in an isolated sandbox (no network, no host files; /work is a scratch dir).

        Returns the exit code, the tails of stdout and stderr, timeout/out-of-memory flags and new files.
        """
        return await execute(script, "bash", files, timeout_s)

    return run_python, run_bash


#: Tools on the default sandbox (created on first call).
run_python, run_bash = code_tools()
