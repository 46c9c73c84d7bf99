"""Run-store failure modes: a failed group commit keeps its batch, a full disk is reported as such, stores opened
by several processes at once, files that are not run stores, bad records, a closed store and read-only stores."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tq_agents import RunStore, SQLiteRunStore, StoreError

pytestmark = pytest.mark.timeout(60)


def _raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute(sql).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


# ---- 1. a failed group commit keeps its batch ---------------------------------------------------------------


class _FailingOnce(SQLiteRunStore):
    """Its next ``fail`` commits raise ``error``."""

    fail = 0
    error: BaseException = sqlite3.OperationalError("database is locked")

    def _write(self, runs: Any, events: Any, statuses: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise self.error
        super()._write(runs, events, statuses)


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database is locked"), RuntimeError("boom")])
def test_a_failed_commit_keeps_the_batch_for_the_next_flush(tmp_path: Path, error: BaseException) -> None:
    path = tmp_path / "r.sqlite"
    s = _FailingOnce(path, commit_interval_s=10.0)  # in an event loop: buffered until flush()
    s.fail, s.error = 1, error

    async def go() -> None:
        s.create_run("r", workflow="w", check=False)
        s.create_run("done", workflow="w", check=False)
        for i in range(3):
            assert s.append_json("r", "k", f'{{"i":{i}}}', 1.0) == i + 1
        s.set_status("done", "failed")
        with pytest.raises(StoreError) as info:
            s.flush()
        assert str(path) in info.value.message and str(error) in info.value.message
        assert info.value.__cause__ is error
        # what comes after the failure goes behind the kept batch; the newer status of a run wins
        assert s.append_json("r", "k", '{"i":3}', 1.0) == 4
        s.set_status("done", "completed")
        s.flush()

    asyncio.run(go())
    assert [(e.seq, e.payload) for e in s.load_events("r")] == [(i + 1, {"i": i}) for i in range(4)]
    assert s.get_run("done").status == "completed" and s.get_run("r").status == "running"
    assert _raw(path, "SELECT first_seq, last_seq FROM event_segments ORDER BY first_seq") == [(1, 4)]
    s.close()


def test_a_commit_blocked_by_another_writer_is_retried_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    s = SQLiteRunStore(path, commit_interval_s=10.0)
    s._db.execute("PRAGMA busy_timeout=50")  # give up on the write lock quickly
    s.create_run("r", workflow="w", check=False)
    s.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    for i in (1, 2):
        with pytest.raises(StoreError, match="locked"):
            s.append("r", "k", {"i": i})  # no event loop: flushed at once, which fails
    holder.execute("COMMIT")
    holder.close()
    s.flush()
    assert [(e.seq, e.payload["i"]) for e in s.load_events("r")] == [(1, 1), (2, 2)]
    s.close()


def test_a_kind_that_is_not_utf8_is_refused_and_poisons_nothing(store: RunStore) -> None:
    store.create_run("side", workflow="w")
    store.create_run("r", workflow="w")
    store.append("r", "k", {"i": 1})
    with pytest.raises(StoreError, match=re.escape(repr("backend.\udcff"))):
        store.append("side", "backend.\udcff", {})
    with pytest.raises(StoreError, match=re.escape(repr("x\ud800"))):
        store.append_json("r", "x\ud800", "{}", 1.0)
    store.append("r", "k", {"i": 2})
    store.append("side", "k", {"i": 3})
    store.flush()
    assert [(e.seq, e.kind) for e in store.load_events("r")] == [(1, "k"), (2, "k")]
    assert [e.seq for e in store.load_events("side")] == [1]
    assert store.append("r", "ünïcode.kind", {}) == 3  # non-ASCII is fine


def test_run_ids_statuses_and_meta_are_checked_when_given(store: RunStore) -> None:
    with pytest.raises(StoreError, match="run id"):
        store.create_run("r\ud800", workflow="w")
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.create_run("m", workflow="w", meta={"o": object()})
    store.create_run("r", workflow="w")
    with pytest.raises(StoreError, match="status"):
        store.set_status("r", "done\udc00")
    store.append("r", "k", {})
    store.flush()
    assert store.get_run("r").status == "running" and [r.run_id for r in store.list_runs()] == ["r"]


def test_a_payload_with_a_lone_surrogate_does_not_poison_the_commit(tmp_path: Path) -> None:
    s = SQLiteRunStore(tmp_path / "r.sqlite", commit_interval_s=10.0)
    s.create_run("r", workflow="w")
    s.create_run("other", workflow="w")
    s.flush()
    s.append_json("other", "k", '{"ok":1}', 1.0)
    s.append_json("r", "k", '{"t":"\udcff"}', 1.0)  # not UTF-8: stored with the surrogate escaped
    s.append_json("r", "k", '{"ok":2}', 1.0)
    s.flush()
    assert [e.payload for e in s.load_events("r")] == [{"t": "\udcff"}, {"ok": 2}]
    assert [e.payload for e in s.load_events("other")] == [{"ok": 1}]
    s.close()


# ---- 2. a full disk is reported as such ---------------------------------------------------------------------


def test_a_full_disk_is_reported_as_the_error_and_the_batch_kept(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite"
    s = SQLiteRunStore(path, commit_interval_s=10.0)
    s.create_run("r", workflow="w")
    s.flush()
    s._db.execute("PRAGMA max_page_count=8")  # the disk is "full" at 8 pages
    with pytest.raises(StoreError) as info:
        s.append("r", "big", {"x": "y" * 100_000})
    assert "database or disk is full" in info.value.message and str(path) in info.value.message
    assert "rollback" not in info.value.message and "disk" in (info.value.hint or "")
    s._db.execute("PRAGMA max_page_count=1000000")  # space is freed
    s.flush()
    assert [(e.seq, e.kind) for e in s.load_events("r")] == [(1, "big")]
    s.close()


# ---- 3. several processes open a new store at once ----------------------------------------------------------

_OPENER = r"""
import os, sys, time
from tq_agents.store import SQLiteRunStore
d, n, t0, period = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
fails = []
for k in range(n):
    start = t0 + k * period
    time.sleep(max(0.0, start - time.time() - 0.02))
    while time.time() < start:
        pass
    try:
        s = SQLiteRunStore(os.path.join(d, f"{k}.sqlite"))
        s.create_run(f"r{os.getpid()}", workflow="w", check=False)
        s.append(f"r{os.getpid()}", "k", {})
        s.close()
    except Exception as e:
        fails.append(f"{k}: {e}".splitlines()[0])
print(repr(fails))
"""


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    procs, rounds = 6, 10
    t0 = time.time() + 2.0  # after the interpreters have started
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(tmp_path), str(rounds), str(t0), "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    outs = [c.communicate(timeout=40) for c in children]
    assert all(c.returncode == 0 for c in children), [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["[]"] * procs
    for k in range(rounds):
        assert _raw(tmp_path / f"{k}.sqlite", "SELECT COUNT(*) FROM runs") == [(procs,)]


def test_an_existing_wal_store_is_not_switched_again(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    SQLiteRunStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a writer is busy: opening must not need the write lock
    t = time.perf_counter()
    s = SQLiteRunStore(path)
    assert time.perf_counter() - t < 1.0 and s.list_runs() == []
    holder.execute("COMMIT")
    holder.close()
    s.close()


# ---- 4. files that are not run stores -----------------------------------------------------------------------


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    _raw(path, "CREATE TABLE foo(x)")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="is not a tq-agents run store") as info:
            SQLiteRunStore(path, readonly=readonly)
        assert str(path) in info.value.message and "foo" in info.value.message and info.value.hint
    assert _raw(path, "SELECT name FROM sqlite_master") == [("foo",)]


def test_an_incompatible_runs_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _raw(path, "CREATE TABLE runs(run_id TEXT PRIMARY KEY, workflow TEXT)")
    with pytest.raises(StoreError, match=r"is not a tq-agents run store \(table runs lacks column status\)") as info:
        SQLiteRunStore(path)
    assert str(path) in info.value.message and "store" in (info.value.hint or "")
    assert _raw(path, "SELECT name FROM sqlite_master WHERE type='table'") == [("runs",)]  # nothing added


def test_a_store_missing_its_segments_table_gets_it_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteRunStore(path) as s:
        s.create_run("r", workflow="w")
    _raw(path, "DROP TABLE event_segments")
    with SQLiteRunStore(path) as s:
        assert s.load_events("r") == []
        s.append("r", "k", {})
        assert [e.seq for e in s.load_events("r")] == [1]


def test_bad_rows_are_store_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteRunStore(path) as s:
        s.create_run("x", workflow="w")
    _raw(path, "UPDATE runs SET meta='not json'")
    with SQLiteRunStore(path) as s:
        for call in (lambda: s.get_run("x"), lambda: s.list_runs(), lambda: s.append("x", "k", {})):
            with pytest.raises(StoreError, match=re.escape(str(path))) as info:
                call()
            assert "damaged" in (info.value.hint or "")


def test_a_damaged_file_gets_a_damaged_file_hint(tmp_path: Path) -> None:
    good = tmp_path / "good.sqlite"
    with SQLiteRunStore(good) as s:
        s.create_run("r", workflow="w")
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * 3996
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(bytes(data))
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"malformed|not a database") as info:
            SQLiteRunStore(bad, readonly=readonly)
        assert str(bad) in info.value.message
        assert "damaged" in (info.value.hint or "") and "writable" not in (info.value.hint or "")


# ---- 5. a newline in append_json's kind or data -------------------------------------------------------------


def test_append_json_refuses_a_newline_in_kind_or_data(store: RunStore) -> None:
    store.create_run("r", workflow="w")
    store.append("r", "ok", {"a": 1})
    with pytest.raises(StoreError, match="newline"):
        store.append_json("r", "backend.x\ny", "{}", 1.0)
    with pytest.raises(StoreError, match="newline"):
        store.append_json("r", "x", '{"a":\n1}', 1.0)
    assert store.append("r", "ok", {"a": 2}) == 2
    store.flush()
    assert [(e.seq, e.payload) for e in store.load_events("r")] == [(1, {"a": 1}), (2, {"a": 2})]


# ---- 6. a closed store --------------------------------------------------------------------------------------


def test_a_closed_store_refuses_every_call(store: RunStore) -> None:
    store.create_run("r", workflow="w")
    store.close()
    store.close()  # twice is fine
    calls = {
        "create_run": lambda: store.create_run("r2", workflow="w"),
        "append": lambda: store.append("r", "k", {}),
        "append_json": lambda: store.append_json("r", "k", "{}", 1.0),
        "set_status": lambda: store.set_status("r", "completed"),
        "flush": store.flush,
        "get_run": lambda: store.get_run("r"),
        "list_runs": store.list_runs,
        "load_events": lambda: store.load_events("r"),
        "subscribe": lambda: store.subscribe("r", lambda seq: None),
    }
    for name, call in calls.items():
        with pytest.raises(StoreError, match=r"run store .* is closed"):
            call()
            pytest.fail(f"{name} worked on a closed store")


# ---- 7. read-only stores ------------------------------------------------------------------------------------


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_a_read_only_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteRunStore(path) as s:
        s.create_run("r", workflow="w", meta={"input": "hi"})
        s.append("r", "k", {"i": 1})
        s.set_status("r", "completed")
    before, files = path.read_bytes(), _files(tmp_path)
    ro = SQLiteRunStore(path, readonly=True)
    assert [r.run_id for r in ro.list_runs()] == ["r"] and ro.get_run("r").status == "completed"
    assert [e.payload for e in ro.load_events("r")] == [{"i": 1}]
    for write in (
        lambda: ro.create_run("r2", workflow="w"),
        lambda: ro.append("r", "k", {}),
        lambda: ro.append_json("r", "k", "{}", 1.0),
        lambda: ro.set_status("r", "failed"),
    ):
        with pytest.raises(StoreError, match="opened read-only") as info:
            write()
        assert str(path) in info.value.message
    ro.flush()
    ro.close()
    assert path.read_bytes() == before and _files(tmp_path) == files  # no -wal/-shm left behind


def test_a_read_only_store_sees_what_a_live_writer_committed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    w = SQLiteRunStore(path)
    w.create_run("r", workflow="w")
    w.append("r", "k", {"i": 1})  # committed to the WAL, not yet to the main file
    with SQLiteRunStore(path, readonly=True) as ro:
        assert [e.payload for e in ro.load_events("r")] == [{"i": 1}]
        w.append("r", "k", {"i": 2})
        assert [e.seq for e in ro.load_events("r")] == [1, 2]
    w.close()


def test_read_only_open_of_a_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run store at") as info:
        SQLiteRunStore(tmp_path / "nope" / "s.sqlite", readonly=True)
    assert info.value.hint
    assert not (tmp_path / "nope").exists()  # no directory made
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with SQLiteRunStore(empty, readonly=True) as ro:
        assert ro.list_runs() == []
    assert empty.stat().st_size == 0 and _files(tmp_path) == {"empty.sqlite"}


def test_read_only_store_falls_back_to_immutable_when_the_wal_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteRunStore(path) as s:
        s.create_run("r", workflow="w")
    Path(f"{path}-wal").mkdir()  # SQLite cannot open the WAL (as on media where it cannot be made)
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        con.execute("SELECT * FROM runs")
    con.close()
    with SQLiteRunStore(path, readonly=True) as ro:
        assert [r.run_id for r in ro.list_runs()] == ["r"]


def test_read_only_store_on_a_read_only_directory(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    path = d / "s.sqlite"
    with SQLiteRunStore(path) as s:
        s.create_run("r", workflow="w")
    path.chmod(0o444)
    d.chmod(0o555)
    try:
        with SQLiteRunStore(path, readonly=True) as ro:
            assert ro.get_run("r").workflow == "w"
        assert _files(d) == {"s.sqlite"}
    finally:
        d.chmod(0o755)
        path.chmod(0o644)


def test_a_run_whose_turns_never_await_is_committed_as_it_goes(tmp_path: Path) -> None:
    # sync function nodes never give the event loop a chance to fire the commit timer: the store commits from
    # append once its batch is big (or old), so the log is durable part-way and the buffer stays bounded
    from tq_agents import Message, TextMessage, Workflow

    path = tmp_path / "runs.sqlite"
    committed_midway: list[int] = []

    def step(m: Message) -> Message:
        n = int(m.text.split()[-1]) if m.text.startswith("n ") else 0  # type: ignore[attr-defined]
        if n == 1500:
            db = sqlite3.connect(path)
            committed_midway.append(
                db.execute("SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM event_segments").fetchone()[0]
            )
            db.close()
        return TextMessage(text=f"n {n + 1}")

    wf = (
        Workflow("loop")
        .add_node("s", step, max_visits=2000)
        .add_edge(
            "s",
            "s",
            condition=lambda m: int(m.text.split()[-1]) < 2000,  # type: ignore[attr-defined]
        )
    ).set_entry("s")
    store = SQLiteRunStore(path)
    res = wf.run_sync("go", store=store)
    assert res.status == "completed" and res.turns == 2000
    assert committed_midway and committed_midway[0] >= 1024  # before: 0 (all 8,000 events held until the end)
    assert len(store._buffer) == 0
