"""The Sandbox contract, run for real in both sandboxes (container engine and bubblewrap)."""

from __future__ import annotations

import asyncio
import time

import pytest
from tq_agents.sandbox import BwrapSandbox, DockerSandbox, ExecResult, Sandbox, SandboxLimits
from tq_agents.sandbox._base import build_request, parse_result

from tq_agents.errors import ConfigError, SandboxError

from ._support import TEST_LIMITS, make_bwrap, make_docker

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


# -- regressions from the sandbox audit ----------------------------------------------------------------------


def _same_kind(sandbox: AnySandbox, limits: SandboxLimits) -> AnySandbox:
    """A sandbox of the same kind as ``sandbox`` with other limits (closed by the caller)."""
    return make_docker(limits) if isinstance(sandbox, DockerSandbox) else make_bwrap(limits)


def test_dev_and_dev_shm_hold_only_a_bounded_amount(sandbox: AnySandbox) -> None:
    """/dev is not writable and /dev/shm is a tmpfs of tmp_mb: neither is room outside the limits."""
    code = (
        "import errno, multiprocessing, os\n"
        "try:\n    open('/dev/tq-x', 'wb').write(b'x'); print('dev: wrote')\n"
        "except OSError as e:\n    print('dev:', errno.errorcode[e.errno])\n"
        "lock = multiprocessing.Lock(); lock.acquire(); lock.release(); print('semaphore ok')\n"
        "n, block = 0, b'S' * (1 << 20)\n"
        "try:\n"
        f"    for i in range({4 * sandbox.limits.tmp_mb}):\n"
        "        with open(f'/dev/shm/f{i}', 'wb') as f:\n            f.write(block); f.flush(); n += len(block)\n"
        "    print('shm: no limit')\n"
        "except OSError as e:\n    print('shm:', errno.errorcode[e.errno])\n"
        "print('written', n)\n"
    )
    r = sandbox.run(code, timeout=20)
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] in ("dev: EROFS", "dev: EACCES"), r.stdout
    assert lines[1] == "semaphore ok"  # POSIX shared memory itself still works
    assert lines[2] == "shm: ENOSPC", r.stdout
    assert 0 < int(lines[3].split()[1]) <= sandbox.limits.tmp_mb << 20
    assert not r.oom_killed


def test_runner_ignores_signals_and_the_code_gets_default_dispositions(sandbox: AnySandbox) -> None:
    """The code cannot kill the runner (PID 1) with a signal it handles; the code's own signals are defaults."""
    r = sandbox.run(
        "import os, signal, time\n"
        "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):\n"
        "    os.kill(1, s)\n    time.sleep(0.1)\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
        "time.sleep(0.5)\nprint('still here')\n"
    )
    assert (r.exit_code, r.stdout, r.stderr) == (0, "True\nstill here\n", ""), r
    # A program the code starts sees no signal ignored (SIGPIPE and SIGXFSZ are back at their defaults).
    r = sandbox.run("grep SigIgn /proc/self/status; yes | head -n 1 >/dev/null; echo ${PIPESTATUS[0]}", language="bash")
    assert r.stdout == "SigIgn:\t0000000000000000\n141\n", r


def test_many_files_out_are_capped_by_count_and_by_bytes_including_names(sandbox: AnySandbox) -> None:
    """45,000 empty files with long names: the record stays in bounds, and truncated says files were left out."""
    code = "for i in range(45000):\n    open('f%05d_' % i + 'x' * 200, 'w').close()\nprint('hello from code')"
    r = sandbox.run(code, timeout=60)
    assert r.ok, r.stderr
    assert r.stdout == "hello from code\n"  # never the runner's protocol text
    assert r.truncated
    lim = sandbox.limits
    assert 0 < len(r.files_out) <= lim.max_files_out_count
    assert sum(len(k) + len(v) for k, v in r.files_out.items()) <= lim.max_files_out_bytes

    # Names count against max_files_out_bytes: 2,000 bytes hold only a few files with 200-char names.
    small = _same_kind(sandbox, TEST_LIMITS.model_copy(update={"max_files_out_bytes": 2000}))
    try:
        r = small.run("for i in range(50):\n    open('f%02d_' % i + 'x' * 200, 'w').close()")
        assert r.ok and r.truncated
        assert 0 < len(r.files_out) < 10
        assert sum(len(k) + 4 for k in r.files_out) <= 2000
        r = small.run("open('a.txt', 'w').write('1')")  # within both caps: not truncated
        assert (r.files_out, r.truncated) == ({"a.txt": b"1"}, False)
    finally:
        small.close()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"data": "x", "data/input.csv": "1,2"}, r"files: 'data' is given as a file, but 'data/input.csv' needs"),
        ({"a" * 300: "x"}, r"files: bad path .*300 bytes long; .* at most 255 bytes"),
        ({"d/" + "b" * 256 + "/c.txt": "x"}, r"files: bad path .*the name .* is 256 bytes long"),
        ({"/".join(["d" * 200] * 25): "x"}, r"files: bad path .*a path may have at most"),
        ({".tq_main.py/x": "x"}, r"files: bad path '.tq_main.py/x': '.tq_main.py' is reserved"),
        ({"bad\udc80.txt": "x"}, r"files: bad path .*not valid Unicode"),
        ({"a.txt": "\ud800"}, r"files: the content of 'a.txt' is not valid Unicode"),
        ({"a.txt": 5}, r"files: the content of 'a.txt' must be str or bytes, got int"),
        ({"big.bin": b"0" * (5 << 20)}, r"files: code and files need about .* \(work_mb=4\)"),
    ],
)
def test_files_the_runner_cannot_write_are_config_errors(sandbox: AnySandbox, files: dict, expected: str) -> None:
    small = sandbox if "work_mb" not in expected else _same_kind(sandbox, TEST_LIMITS.model_copy(update={"work_mb": 4}))
    try:
        with pytest.raises(ConfigError, match=expected):
            small.run("print('code ran')", files=files)
    finally:
        if small is not sandbox:
            small.close()


def test_runner_reports_files_it_cannot_write_as_config_error(sandbox: AnySandbox) -> None:
    """Whatever build_request cannot foresee, the runner reports (no traceback passed off as the code's exit 1)."""
    req = build_request("print('code ran')", "python", {"data/x.csv": "1"}, None, None, sandbox.limits)
    bad = req.model_copy(update={"files": {"data": req.files["data/x.csv"], **req.files}})  # skips the checks
    with pytest.raises(ConfigError, match=r"files: cannot write 'data/x.csv' into the work dir: \w"):
        sandbox._execute(bad)
    assert sandbox.run("print('next run is fine')").stdout == "next run is fine\n"


def test_a_cut_result_record_is_never_passed_off_as_output() -> None:
    """The host's fallback: a record that cannot be read is a SandboxError, never raw protocol text with ok."""
    req = build_request("print(1)", "python", None, None, None, TEST_LIMITS)
    raw = b"\nTQ-SANDBOX-RESULT-" + req.nonce.encode() + b'\n{"exit_code": 0, "stdout": "hel'
    kw = {"exit_code": 0, "oom_killed": False, "duration_s": 0.1, "limits": TEST_LIMITS}
    with pytest.raises(SandboxError, match="result record could not be read"):
        parse_result(req, raw, b"", timed_out=False, truncated=True, **kw)
    killed = parse_result(req, b"partial output" + raw, b"", timed_out=True, truncated=False, **kw)
    assert killed.timed_out and not killed.ok and killed.stdout == "partial output"
