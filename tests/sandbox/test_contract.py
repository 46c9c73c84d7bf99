"""The Sandbox contract, run for real in both sandboxes (container engine and bubblewrap)."""

from __future__ import annotations

import asyncio
import time

import pytest
from tq_agents.sandbox import BwrapSandbox, DockerSandbox, ExecResult, Sandbox

from tq_agents.errors import ConfigError

pytestmark = [pytest.mark.engine, pytest.mark.timeout(120)]

AnySandbox = DockerSandbox | BwrapSandbox


def test_both_implement_the_protocol(sandbox: AnySandbox) -> None:
    assert isinstance(sandbox, Sandbox)


def test_python_stdout_stderr_and_exit_code(sandbox: AnySandbox) -> None:
    r = sandbox.run("import sys\nprint(sum(range(10)))\nprint('warn', file=sys.stderr)\nsys.exit(3)")
    assert isinstance(r, ExecResult)
    assert (r.exit_code, r.stdout, r.stderr) == (3, "45\n", "warn\n")
    assert not (r.timed_out or r.oom_killed or r.truncated)
    assert not r.ok
    assert 0 < r.duration_s < 5


def test_bash(sandbox: AnySandbox) -> None:
    r = sandbox.run('echo "$((6 * 7))"; pwd; id -u; echo err >&2; exit 4', language="bash")
    assert (r.exit_code, r.stdout, r.stderr) == (4, "42\n/work\n1000\n", "err\n")


def test_traceback_is_returned(sandbox: AnySandbox) -> None:
    r = sandbox.run("def f():\n    return 1 / 0\nf()\n")
    assert r.exit_code == 1
    assert "ZeroDivisionError: division by zero" in r.stderr
    assert "line 2, in f" in r.stderr


def test_files_in_and_out(sandbox: AnySandbox) -> None:
    code = (
        "import pathlib\n"
        "rows = pathlib.Path('data/in.csv').read_text().splitlines()\n"
        "pathlib.Path('out').mkdir()\n"
        "pathlib.Path('out/total.txt').write_text(str(sum(int(r) for r in rows)))\n"
        "pathlib.Path('changed.bin').write_bytes(b'\\x00new')\n"
    )
    files = {"data/in.csv": "1\n2\n39\n", "changed.bin": b"\x00old", "same.txt": "untouched"}
    r = sandbox.run(code, files=files)
    assert r.exit_code == 0, r.stderr
    # New and changed files come back; inputs left untouched (and the code itself) do not.
    assert r.files_out == {"out/total.txt": b"42", "changed.bin": b"\x00new"}


def test_user_env_is_passed_host_env_is_not(sandbox: AnySandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_HOST_ONLY_SECRET", "host-secret-value")
    r = sandbox.run("import os, json; print(json.dumps(dict(os.environ)))", env={"GREETING": "hi"})
    import json

    env = json.loads(r.stdout)
    assert env["GREETING"] == "hi"
    assert "TQ_HOST_ONLY_SECRET" not in env
    assert "host-secret-value" not in r.stdout
    assert env["HOME"] == "/work"


def test_timeout_kills_and_reports(sandbox: AnySandbox) -> None:
    t0 = time.monotonic()
    r = sandbox.run("import time\nprint('started', flush=True)\ntime.sleep(30)", timeout=1.0)
    elapsed = time.monotonic() - t0
    assert r.timed_out
    assert r.exit_code != 0
    assert elapsed < 15, elapsed  # 1 s limit + container start/kill on a loaded 2-core CI machine
    assert "started" in r.stdout  # output before the kill is kept


def test_output_is_capped_head_and_tail(sandbox: AnySandbox) -> None:
    cap = sandbox.limits.max_output_bytes
    r = sandbox.run("print('FIRST'); print('x' * 1_000_000); print('LAST')")
    assert r.exit_code == 0
    assert r.truncated
    assert r.stdout.startswith("FIRST\n")
    assert r.stdout.rstrip().endswith("LAST")
    assert "bytes truncated" in r.stdout
    assert len(r.stdout.encode()) < cap + 200


def test_memory_limit_reports_oom(sandbox: AnySandbox) -> None:
    r = sandbox.run("x = bytearray(1024 * 1024 * 1024)\nprint('allocated')")
    assert r.oom_killed, r
    assert r.exit_code != 0
    assert "allocated" not in r.stdout


def test_limits_are_applied_inside(sandbox: AnySandbox) -> None:
    code = (
        "import resource, os\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "print(resource.getrlimit(resource.RLIMIT_FSIZE)[0])\n"
        "st = open('/proc/self/status').read()\n"
        "print([l.split()[1] for l in st.splitlines() if l.startswith(('CapEff', 'NoNewPrivs'))])\n"
        "print(os.getuid())\n"
    )
    r = sandbox.run(code)
    lines = r.stdout.splitlines()
    lim = sandbox.limits
    assert lines[0] == str(lim.nofile)
    assert lines[1] == str(lim.file_mb << 20)
    assert lines[2] in ("['0000000000000000', '1']", "['0000000000000000', '0']")
    assert lines[3] == "1000"


def test_async_twin_runs_concurrently(sandbox: AnySandbox) -> None:
    async def main() -> list[ExecResult]:
        return await asyncio.gather(*(sandbox.arun(f"print({i} * 2)") for i in range(3)))

    results = asyncio.run(main())
    assert [r.stdout for r in results] == ["0\n", "2\n", "4\n"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"language": "ruby"}, "language"),
        ({"files": {"../escape.txt": "x"}}, "files"),
        ({"files": {"/etc/passwd": "x"}}, "files"),
        ({"env": {"BAD-NAME": "x"}}, "env"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_arguments_are_config_errors(sandbox: AnySandbox, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        sandbox.run("print(1)", **kwargs)


def test_exports_are_complete_and_resolve() -> None:
    import tq_agents.sandbox as pkg

    assert len(set(pkg.__all__)) == len(pkg.__all__)  # order: ruff's RUF022 (isort-style)
    public = {
        n for n, v in vars(pkg).items() if not n.startswith("_") and getattr(v, "__module__", "").startswith("tq_")
    }
    assert public <= set(pkg.__all__), public - set(pkg.__all__)
    for name in pkg.__all__:
        assert hasattr(pkg, name), name
