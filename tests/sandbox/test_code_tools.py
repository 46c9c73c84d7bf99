"""run_python / run_bash tools on real sandboxes: structured results a model can read."""

from __future__ import annotations

import json

import pytest
from tq_agents.sandbox import BwrapSandbox, DockerSandbox, ExecResult
from tq_agents.tools.code import CodeRunResult, code_tools, summarize_result

from tq_agents._tool import ToolError, ToolResult

pytestmark = [pytest.mark.engine, pytest.mark.timeout(120)]


def test_schemas_name_the_arguments() -> None:
    run_python, run_bash = code_tools(sandbox=None)
    assert run_python.name == "run_python" and run_bash.name == "run_bash"
    assert run_python.parameters["required"] == ["code"]
    assert run_bash.parameters["required"] == ["script"]
    assert set(run_python.parameters["properties"]) == {"code", "files", "timeout_s"}


def test_run_python_success_with_files(sandbox: DockerSandbox | BwrapSandbox) -> None:
    run_python, _ = code_tools(sandbox)
    res = run_python.call_sync(
        {
            "code": "n = int(open('n.txt').read())\nprint(n * n)\nopen('sq.txt', 'w').write(str(n * n))",
            "files": {"n.txt": "12"},
        }
    )
    assert isinstance(res, ToolResult)
    out = CodeRunResult.model_validate(res.value)
    assert out.ok and out.exit_code == 0
    assert out.stdout_tail == "144\n"
    assert out.files_out == {"sq.txt": "144"}
    assert json.loads(res.content)["summary"] == "Exited 0."


def test_run_bash_failure_and_traceback_tail(sandbox: DockerSandbox | BwrapSandbox) -> None:
    run_python, run_bash = code_tools(sandbox, tail_chars=200)
    res = run_bash.call_sync({"script": "echo out; echo boom >&2; exit 7"})
    out = CodeRunResult.model_validate(res.value)  # type: ignore[union-attr]
    assert (out.ok, out.exit_code, out.stdout_tail, out.stderr_tail) == (False, 7, "out\n", "boom\n")
    assert "exit code 7" in out.summary
    res = run_python.call_sync({"code": "print('y' * 5000)\nraise ValueError('bad input')"})
    out = CodeRunResult.model_validate(res.value)  # type: ignore[union-attr]
    assert out.stderr_tail.rstrip().endswith("ValueError: bad input")
    assert out.stdout_tail.startswith("...[") and len(out.stdout_tail) < 300


def test_timeout_flag_and_cap(sandbox: DockerSandbox | BwrapSandbox) -> None:
    run_python, _ = code_tools(sandbox, max_timeout_s=1.0)
    res = run_python.call_sync({"code": "import time; time.sleep(20)", "timeout_s": 600})
    out = CodeRunResult.model_validate(res.value)  # type: ignore[union-attr]
    assert out.timed_out and not out.ok
    assert out.summary.startswith("Timed out") and "1 s" in out.summary
    assert out.duration_s < 6


def test_bad_arguments_come_back_as_tool_errors(sandbox: DockerSandbox | BwrapSandbox) -> None:
    run_python, _ = code_tools(sandbox)
    err = run_python.call_sync({"code": 5})
    assert isinstance(err, ToolError) and err.kind == "invalid_arguments" and "code" in err.fields
    err = run_python.call_sync({"code": "print(1)", "files": {"../../etc/passwd": "x"}})
    assert isinstance(err, ToolError) and err.kind == "exception"
    assert "files: bad path" in err.content


def test_text_for_the_model_is_bounded_with_many_files(sandbox: DockerSandbox | BwrapSandbox) -> None:
    """20,000 files with long names: the tool's text stays small and says that files were left out."""
    run_python, _ = code_tools(sandbox)
    code = "for i in range(20000):\n    open('f%05d_' % i + 'x' * 200, 'w').close()\nprint('done')"
    res = run_python.call_sync({"code": code, "timeout_s": 30})
    assert isinstance(res, ToolResult), res
    out = CodeRunResult.model_validate(res.value)
    assert out.ok and out.stdout_tail == "done\n"
    assert out.truncated and 0 < len(out.files_out) <= 20 and out.files_not_shown > 0
    assert "not shown" in out.summary
    assert len(res.content) < 30_000, len(res.content)


def test_summarize_result_bounds_files_by_count_and_chars() -> None:
    files = {f"dir/{'n' * 300}{i:03d}.txt": b"y" * 10_000 for i in range(100)}
    files["bin.dat"] = b"\xff\xfe" * 10
    r = ExecResult(
        exit_code=0, stdout="", stderr="", timed_out=False, oom_killed=False, truncated=False, duration_s=0.1,
        files_out=files,
    )  # fmt: skip
    out = summarize_result(r, tail_chars=1000)
    assert sum(len(k) + len(v) for k, v in out.files_out.items()) <= 4 * 1000
    assert out.files_not_shown == len(files) - len(out.files_out) > 0
    assert out.truncated and "not shown" in out.summary and "at least" not in out.summary
    assert out.files_out["bin.dat"] == "<binary, 20 bytes>"
    few = summarize_result(r.model_copy(update={"files_out": {"a.txt": b"1"}}))
    assert (few.files_out, few.files_not_shown, few.truncated, few.summary) == ({"a.txt": "1"}, 0, False, "Exited 0.")
