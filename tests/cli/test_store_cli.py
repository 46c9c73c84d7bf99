"""`tq` and the run store: the read-only commands (`runs`, `replay`) open the store read-only, and files that are
not run stores (another application's database, an old schema, bad rows, a damaged file) get one clear error."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

ECHO = textwrap.dedent(
    """
    from tq_agents import Agent, Workflow
    from tq_agents.workflows import workflow

    @workflow("echo", description="One agent.")
    def echo(model):
        return Workflow("echo", model=model).add_node(Agent("a", "Answer.")).set_entry("a")
    """
)

# runs `tq` in-process with SQLiteRunStore.__init__ wrapped to print how each store is opened
_SPY = textwrap.dedent(
    """
    import sys
    import tq_agents.store as store

    real = store.SQLiteRunStore.__init__

    def spy(self, path, **kw):
        sys.stderr.write(f"OPEN readonly={kw.get('readonly', False)}\\n")
        real(self, path, **kw)

    store.SQLiteRunStore.__init__ = spy
    from tq_agents.cli import main

    main(sys.argv[1:])
    """
)


def _echo_run(tq) -> str:
    wf = tq.tmp / "echo_wf.py"
    wf.write_text(ECHO)
    model = tq.script("echo", {"a": ["hello"]})
    code, out = tq.json("run", "echo", "--file", str(wf), "--input", "hi", "--model", model)
    assert code == 0, out
    return str(out["run_id"])


def _spy(tq, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SPY, *args], capture_output=True, text=True, env=tq.env, cwd=tq.tmp, timeout=60
    )


def test_runs_and_replay_open_the_store_read_only_and_leave_it_as_it_is(tq):
    run_id = _echo_run(tq)
    before = tq.store.read_bytes()
    files = sorted(p.name for p in tq.tmp.iterdir())
    for args in (["runs", "--json"], ["replay", run_id, "--json"]):
        proc = _spy(tq, *args)
        assert proc.returncode == 0, proc.stderr
        assert "OPEN readonly=True" in proc.stderr and "readonly=False" not in proc.stderr, proc.stderr
    assert json.loads(_spy(tq, "replay", run_id, "--json").stdout)["diverged"] is False
    assert tq.store.read_bytes() == before and sorted(p.name for p in tq.tmp.iterdir()) == files
    # resume writes: it opens the store read-write
    proc = _spy(tq, "resume", run_id, "--json")
    assert "OPEN readonly=False" in proc.stderr, proc.stderr


def test_runs_on_an_empty_file_writes_nothing(tq):
    empty = tq.tmp / "empty.sqlite"
    empty.touch()
    proc = tq("runs", "--store", str(empty))
    assert proc.returncode == 0 and "no runs" in proc.stdout, proc.stderr
    assert empty.stat().st_size == 0 and not (tq.tmp / "empty.sqlite-wal").exists()


def _db(path, *sql: str) -> None:
    con = sqlite3.connect(path)
    for s in sql:
        con.execute(s)
    con.commit()
    con.close()


def test_files_that_are_not_run_stores_get_a_clear_error(tq):
    other = tq.tmp / "other.sqlite"
    _db(other, "CREATE TABLE foo(x)")
    old = tq.tmp / "old.sqlite"
    _db(old, "CREATE TABLE runs(run_id TEXT PRIMARY KEY, workflow TEXT)", "INSERT INTO runs VALUES ('x', 'y')")
    model = tq.script("m", {"a": ["hello"]})
    for args, needle in [
        (["runs", "--store", str(other)], f"error: {other} is not a tq-agents run store"),
        (["run", "support", "--input", "hi", "--model", model, "--store", str(other)], "is not a tq-agents run store"),
        (["runs", "--store", str(old)], "(table runs lacks column status)"),
        (["resume", "x", "--store", str(old)], "(table runs lacks column status)"),
    ]:
        proc = tq(*args)
        assert proc.returncode == 1 and needle in proc.stderr and "hint: " in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    con = sqlite3.connect(other)
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("foo",)]  # nothing was added
    con.close()


def test_bad_rows_and_damaged_files_name_the_store(tq):
    bad = tq.tmp / "badmeta.sqlite"
    _db(
        bad,
        "CREATE TABLE runs(run_id TEXT PRIMARY KEY, workflow TEXT, status TEXT, created_at REAL, updated_at REAL, "
        "meta TEXT)",
        "INSERT INTO runs VALUES ('x', 'y', 'running', 1, 1, 'not json')",
    )
    run_id = _echo_run(tq)
    data = bytearray(tq.store.read_bytes())
    data[100:4096] = b"\xff" * 3996
    damaged = tq.tmp / "damaged.sqlite"
    damaged.write_bytes(bytes(data))
    for args in (
        ["runs", "--store", str(bad)],
        ["replay", "x", "--store", str(bad)],
        ["runs", "--store", str(damaged)],
        ["replay", run_id, "--store", str(damaged)],
    ):
        proc = tq(*args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{args[-1]}" in proc.stderr and "damaged" in proc.stderr, (args, proc.stderr)


def test_resume_refuses_a_run_another_live_process_runs_unless_forced(tq) -> None:  # type: ignore[no-untyped-def]
    import socket
    import time

    from tq_agents import SQLiteRunStore

    run_id = _echo_run(tq)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        st = SQLiteRunStore(tq.store)  # that process took the run over (as a resume of it would record)
        st.append(run_id, "RunResumed", {"rerun": [], "budgets": {}, "pid": other.pid, "host": socket.gethostname()})
        st.close()
        refused = tq("resume", run_id)
        assert refused.returncode == 1
        assert f"still running in process {other.pid} on this host" in refused.stderr
        assert "--force" in refused.stderr
        forced = tq("resume", run_id, "--force")
        assert "still running" not in forced.stderr
        assert forced.returncode == 0, forced.stderr
        # once that process has stopped the run (e.g. cancelled it), it may be resumed while the process lives on
        st = SQLiteRunStore(tq.store)
        st.append(run_id, "RunResumed", {"rerun": [], "budgets": {}, "pid": other.pid, "host": socket.gethostname()})
        st.append(run_id, "RunFinished", {"status": "cancelled", "reason": "cancelled by the caller", "turns": 1})
        st.close()
        stopped = tq("resume", run_id)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        other.kill()
        other.wait()
