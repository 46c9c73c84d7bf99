"""RunStore conformance: the same contract checked against the SQLite and in-memory stores."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tq_agents import MemoryRunStore, RunNotFoundError, RunStore, SQLiteRunStore, StoreError, TextMessage
from tq_agents.store import open_store

pytestmark = pytest.mark.timeout(60)


def test_is_a_real_abc() -> None:
    class Half(RunStore):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]


def test_append_and_load_in_order(store: RunStore) -> None:
    store.create_run("r1", workflow="wf", meta={"input": "hi"})
    seqs = [store.append("r1", "k", {"i": i, "nested": {"a": [1, 2.5, None, "ü"]}}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    store.flush()
    evs = store.load_events("r1")
    assert [e.seq for e in evs] == seqs
    assert evs[3].payload == {"i": 3, "nested": {"a": [1, 2.5, None, "ü"]}}
    assert all(e.kind == "k" and e.run_id == "r1" for e in evs)
    assert [e.seq for e in store.load_events("r1", after=3)] == [4, 5]
    assert evs[0].ts <= evs[-1].ts


def test_pydantic_values_are_stored_as_json(store: RunStore) -> None:
    store.create_run("r", workflow="wf")
    msg = TextMessage(text="hello")
    store.append("r", "m", {"message": msg})
    (ev,) = store.load_events("r")
    assert ev.payload["message"]["text"] == "hello" and ev.payload["message"]["id"] == msg.id


def test_runs_listing_and_status(store: RunStore) -> None:
    store.create_run("a", workflow="w1")
    store.create_run("b", workflow="w2")
    store.set_status("a", "completed")
    runs = store.list_runs()
    assert [r.run_id for r in runs] == ["b", "a"]
    assert store.get_run("a").status == "completed" and store.get_run("b").status == "running"
    assert [r.run_id for r in store.list_runs(workflow="w1")] == ["a"]
    assert len(store.list_runs(limit=1)) == 1


def test_errors(store: RunStore) -> None:
    with pytest.raises(RunNotFoundError, match="run 'nope' not found"):
        store.get_run("nope")
    with pytest.raises(RunNotFoundError):
        store.load_events("nope")
    with pytest.raises(RunNotFoundError):
        store.append("nope", "k", {})
    store.create_run("x", workflow="w")
    with pytest.raises(StoreError, match="already exists"):
        store.create_run("x", workflow="w")
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.append("x", "k", {"f": object()})


def test_runs_are_separate(store: RunStore) -> None:
    store.create_run("a", workflow="w")
    store.create_run("b", workflow="w")
    store.append("a", "k", {"v": 1})
    store.append("b", "k", {"v": 2})
    store.append("a", "k", {"v": 3})
    assert [e.payload["v"] for e in store.load_events("a")] == [1, 3]
    assert [e.seq for e in store.load_events("b")] == [1]


def test_subscribers_hear_only_durable_seqs(store: RunStore) -> None:
    heard: list[int] = []
    store.create_run("r", workflow="w")
    unsubscribe = store.subscribe("r", heard.append)

    async def go() -> None:
        store.append("r", "k", {})
        store.append("r", "k", {})
        await asyncio.sleep(0.05)  # the group commit timer fires
        store.append("r", "k", {})
        store.flush()

    asyncio.run(go())
    assert heard and heard[-1] == 3 and heard == sorted(heard)
    unsubscribe()
    store.append("r", "k", {})
    store.flush()
    assert heard[-1] == 3


def test_finished_runs_leave_no_per_run_state(store: RunStore) -> None:
    # a long-lived store (a support bot's server) must not grow with every run it has finished
    for i in range(200):
        store.create_run(f"r{i}", workflow="w", check=False)
        store.append(f"r{i}", "k", {"i": i})
        store.set_status(f"r{i}", "completed")
        store.flush()
    assert store._next_seq == {}
    # the log still knows where a finished run's sequence continues (e.g. a backend's late record)
    assert store.append("r7", "late", {}) == 2
    store.flush()
    assert [e.kind for e in store.load_events("r7")] == ["k", "late"]
    assert store.get_run("r7").status == "completed"


def test_sqlite_group_commit_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    s = SQLiteRunStore(path, commit_interval_s=10.0)
    s.create_run("r", workflow="w")
    s.flush()

    async def go() -> int:
        for i in range(50):
            s.append("r", "k", {"i": i})
        other = sqlite3.connect(path)
        return other.execute("SELECT COUNT(*) FROM event_segments").fetchone()[0]  # type: ignore[no-any-return]

    assert asyncio.run(go()) == 0  # buffered, not yet committed (commit interval 10 s)
    s.flush()
    rows = sqlite3.connect(path).execute("SELECT COUNT(*), MAX(last_seq) FROM event_segments").fetchone()
    assert rows == (1, 50)  # one group commit, one segment row
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()
    again = SQLiteRunStore(path)
    assert again.append("r", "k", {"i": 50}) == 51  # seq continues after reopening
    assert len(again.load_events("r")) == 51


def test_sqlite_commit_timer_outlives_flushes_and_event_loops(tmp_path: Path) -> None:
    # the group-commit timer is not cancelled by a flush (runs share it) and is renewed in a new event loop
    path = tmp_path / "r.sqlite"
    s = SQLiteRunStore(path, commit_interval_s=0.02)
    s.create_run("r", workflow="w")
    s.flush()

    def on_disk() -> int:
        return sqlite3.connect(path).execute("SELECT COALESCE(MAX(last_seq), 0) FROM event_segments").fetchone()[0]  # type: ignore[no-any-return]

    async def first_loop() -> None:
        s.append("r", "k", {"i": 1})
        s.flush()  # the timer stays armed
        s.append("r", "k", {"i": 2})
        assert on_disk() == 1
        await asyncio.sleep(0.2)  # the timer commits what came after the flush
        assert on_disk() == 2
        s.append("r", "k", {"i": 3})  # arms a timer this loop will never run

    async def second_loop() -> None:
        s.append("r", "k", {"i": 4})  # the stale timer belongs to a closed loop: a new one is armed here
        await asyncio.sleep(0.2)
        assert on_disk() == 4

    asyncio.run(first_loop())
    asyncio.run(second_loop())
    s.close()


def test_open_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_STORE", str(tmp_path / "default" / "runs.sqlite"))
    default = open_store(None)  # the per-user default: SQLite at default_store_path()
    assert isinstance(default, SQLiteRunStore) and default.path == tmp_path / "default" / "runs.sqlite"
    default.close()
    assert isinstance(open_store(":memory:"), MemoryRunStore)
    s = open_store(str(tmp_path / "x.sqlite"))
    assert isinstance(s, SQLiteRunStore) and open_store(s) is s
    with pytest.raises(StoreError, match="synchronous"):
        SQLiteRunStore(tmp_path / "y.sqlite", synchronous="SOMETIMES")


def test_kind_must_be_one_line(store: RunStore) -> None:
    store.create_run("r", workflow="w")
    with pytest.raises(StoreError, match="newline"):
        store.append("r", "a\nb", {})


def test_default_store_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tq_agents import default_store_path

    monkeypatch.setenv("TQ_STORE", str(tmp_path / "explicit.sqlite"))
    monkeypatch.setenv("TQ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "explicit.sqlite"
    monkeypatch.delenv("TQ_STORE")
    assert default_store_path() == tmp_path / "home" / "runs.sqlite"
    monkeypatch.delenv("TQ_HOME")
    assert default_store_path() == tmp_path / "xdg" / "tq-agents" / "runs.sqlite"


def test_run_without_store_is_recorded_in_the_default_sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tq_agents import Agent, Workflow
    from tq_agents.testing import ScriptedModel

    path = tmp_path / "data" / "runs.sqlite"
    monkeypatch.setenv("TQ_STORE", str(path))
    wf = Workflow("default-store", model=ScriptedModel(default="ok"))
    wf.add_node(Agent("a", "say ok"))
    res = wf.run_sync("hi")
    assert res.status == "completed" and path.is_file()
    with SQLiteRunStore(path) as st:  # a second connection sees the committed run and its whole log
        assert st.get_run(res.run_id).status == "completed"
        kinds = [e.kind for e in st.load_events(res.run_id)]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished" and "MessageEmitted" in kinds
