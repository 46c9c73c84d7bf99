"""Run stores: an append-only event log per run. ``SQLiteRunStore`` (one file, WAL) and ``MemoryRunStore``.

Both implement the ``RunStore`` ABC and pass the same conformance suite (``tests/core/test_store.py``).

* ``append(run_id, kind, payload)`` is generic: backends may append their own records (e.g.
  ``kind="backend.model_call"``). It returns the event's ``seq`` at once; the event is *buffered* and becomes
  durable at the next ``flush()``. The scheduler appends its events through ``append_json`` (the payload
  encoded once, by the event itself); ``append`` ends there too.
* Group commit: the SQLite store flushes every buffered event in one transaction, at the latest
  ``commit_interval_s`` after the first buffered append (when an event loop runs), or on ``flush()``.
* ``subscribe(run_id, callback)``: ``callback(seq)`` is called after each commit with the highest durable
  ``seq`` of that run; the scheduler's event stream releases events up to it, so an event reaches the caller
  only once it is durable.

Default: ``open_store(None)`` (what ``Workflow.run`` uses without ``store=``) is a SQLite file at
``default_store_path()`` (``$TQ_STORE``, else ``$TQ_HOME/runs.sqlite``, else ``~/.local/share/tq-agents/runs.sqlite``);
``MemoryRunStore()`` (or ``":memory:"``) is the explicit in-process option.

Durability: WAL with ``synchronous=NORMAL`` (the default) is *process-crash durable*: a committed event
survives a killed process (SIGKILL, OOM), since the OS holds the written pages; a power loss or kernel crash
may lose the last commits. ``SQLiteRunStore(path, synchronous="FULL")`` fsyncs every commit and also survives
power loss, at the cost of one fsync per group commit.
"""

from __future__ import annotations

import abc
import asyncio
import json
import os
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from tq_agents.errors import RunNotFoundError, StoreError

_get_running_loop = asyncio._get_running_loop  # the running loop or None, without raising

__all__ = ["MemoryRunStore", "RunInfo", "RunStore", "SQLiteRunStore", "StoredEvent", "default_store_path", "open_store"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of a run's log."""

    run_id: str
    seq: int
    ts: float
    kind: str
    payload: dict[str, Any]


@dataclass(slots=True)
class RunInfo:
    """Summary of one run."""

    run_id: str
    workflow: str
    status: str
    created_at: float
    updated_at: float
    meta: dict[str, Any] = field(default_factory=dict)


def _dumps(payload: Mapping[str, Any]) -> str:
    """JSON text of a payload; pydantic models inside it are serialised as their fields."""
    try:
        return to_json(payload).decode()
    except PydanticSerializationError as e:
        raise StoreError(f"event payload is not JSON-serialisable: {e}", hint="convert values to JSON types") from e


def _bad_kind(kind: str) -> StoreError:
    return StoreError(f"event kind {kind!r} contains a newline", hint="use a one-line name such as 'x.model_call'")


class RunStore(abc.ABC):
    """The run-store contract. Subclasses implement the ``_write``/``_read`` primitives; buffering, sequence
    numbers, group commit and durability callbacks live here.
    """

    commit_interval_s: float = 0.002

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._buffer: list[tuple[str, int, float, str, str]] = []
        self._status_buffer: dict[str, tuple[str, float]] = {}
        self._new_runs: list[RunInfo] = []
        self._next_seq: dict[str, int] = {}
        self._subs: dict[str, list[Callable[[int], None]]] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # the loop the flush timer belongs to
        self._closed = False

    # ---- primitives -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _write(
        self,
        runs: list[RunInfo],
        events: list[tuple[str, int, float, str, str]],
        statuses: dict[str, tuple[str, float]],
    ) -> None:
        """Make ``runs``, ``events`` and ``statuses`` durable, atomically."""

    @abc.abstractmethod
    def _max_seq(self, run_id: str) -> int | None:
        """Highest durable seq of ``run_id`` (0 if no events), or ``None`` if the run does not exist."""

    @abc.abstractmethod
    def _get_run(self, run_id: str) -> RunInfo | None: ...

    @abc.abstractmethod
    def _list_runs(self, limit: int, workflow: str | None) -> list[RunInfo]: ...

    @abc.abstractmethod
    def _load(self, run_id: str, after: int) -> list[StoredEvent]: ...

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    # ---- public API -------------------------------------------------------------------------------
    def create_run(
        self, run_id: str, *, workflow: str, meta: Mapping[str, Any] | None = None, check: bool = True
    ) -> None:
        """Register a new run (buffered like events). Raises ``StoreError`` if the id exists (``check=False``
        skips the lookup for ids known to be fresh, such as generated ones)."""
        with self._lock:
            if run_id in self._next_seq or (check and self._get_run(run_id) is not None):
                raise StoreError(f"run {run_id!r} already exists", hint="use a new run id or resume() the run")
            now = time.time()
            self._new_runs.append(RunInfo(run_id, workflow, "running", now, now, dict(meta or {})))
            self._next_seq[run_id] = 1
            self._schedule_flush()

    def append(self, run_id: str, kind: str, payload: Mapping[str, Any], *, ts: float | None = None) -> int:
        """Append one event to ``run_id``'s log; returns its ``seq`` (1, 2, ...). Durable after ``flush()``.
        ``ts`` (epoch seconds) defaults to now."""
        if "\n" in kind:
            raise _bad_kind(kind)
        return self.append_json(run_id, kind, _dumps(payload), time.time() if ts is None else ts)

    def append_json(self, run_id: str, kind: str, data: str, ts: float) -> int:
        """``append`` for a payload already serialised as one line of compact JSON (the scheduler's fast
        path: each event is encoded once, by the caller). ``kind`` must be a one-line name."""
        with self._lock:
            seq = self._next_seq.get(run_id)
            if seq is None:
                top = self._max_seq(run_id)
                if top is None:
                    raise RunNotFoundError(f"run {run_id!r} not found in the store", hint="create_run() it first")
                seq = top + 1
            self._next_seq[run_id] = seq + 1
            self._buffer.append((run_id, seq, ts, kind, data))
            # a timer is armed unless one is pending in a loop still running (a closed loop's timer never fires);
            # no running-loop lookup per append (it costs a getpid() syscall on Python 3.11)
            loop = self._flush_loop
            if loop is None or not loop.is_running():
                self._schedule_flush()
            return seq

    def set_status(self, run_id: str, status: str) -> None:
        """Record the run's status (``running``, ``completed``, ...), durable with the next flush."""
        with self._lock:
            self._status_buffer[run_id] = (status, time.time())
            self._schedule_flush()

    def flush(self) -> None:
        """Make everything appended so far durable (one transaction), then notify subscribers."""
        with self._lock:
            # a pending flush timer is left to fire (a no-op if nothing is buffered by then): back-to-back
            # short runs share one timer instead of creating and cancelling one each
            if not (self._buffer or self._new_runs or self._status_buffer):
                return
            events, runs, statuses = self._buffer, self._new_runs, self._status_buffer
            self._buffer, self._new_runs, self._status_buffer = [], [], {}
            try:
                self._write(runs, events, statuses)
            except sqlite3.Error as e:
                raise StoreError(f"run store write failed: {e}", hint="check the store path and free disk") from e
            for run_id, (status, _) in statuses.items():
                if status != "running":  # a finished run's next seq is read back from the log if ever needed:
                    self._next_seq.pop(run_id, None)  # a long-lived store keeps no state per past run
            if self._subs:
                top: dict[str, int] = {}
                for ev in events:
                    top[ev[0]] = ev[1]
                for run_id, seq in top.items():
                    for cb in self._subs.get(run_id, ()):
                        cb(seq)

    def _schedule_flush(self) -> None:
        loop = _get_running_loop()
        if self._flush_handle is not None and self._flush_loop is loop:
            return
        if loop is None:
            self.flush()  # no loop: commit at once
            return
        self._flush_handle = loop.call_later(self.commit_interval_s, self._timer_flush)
        self._flush_loop = loop

    def _timer_flush(self) -> None:
        self._flush_handle = self._flush_loop = None
        if not self._closed:
            self.flush()

    def subscribe(self, run_id: str, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(seq)`` with the run's highest durable seq after each commit; returns unsubscribe."""
        with self._lock:
            self._subs.setdefault(run_id, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                subs = self._subs.get(run_id, [])
                if callback in subs:
                    subs.remove(callback)
                if not subs:
                    self._subs.pop(run_id, None)

        return unsubscribe

    def get_run(self, run_id: str) -> RunInfo:
        """The run's info; ``RunNotFoundError`` if unknown."""
        self.flush()
        info = self._get_run(run_id)
        if info is None:
            raise RunNotFoundError(f"run {run_id!r} not found in the store", hint="list runs with `tq runs`")
        return info

    def list_runs(self, *, limit: int = 50, workflow: str | None = None) -> list[RunInfo]:
        """Most recent runs first."""
        self.flush()
        return self._list_runs(limit, workflow)

    def load_events(self, run_id: str, *, after: int = 0) -> list[StoredEvent]:
        """The run's events with ``seq > after``, in order; ``RunNotFoundError`` if unknown."""
        self.get_run(run_id)
        return self._load(run_id, after)

    def close(self) -> None:
        """Flush and release the store."""
        if self._closed:
            return
        self.flush()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = self._flush_loop = None
        self._closed = True
        self._close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryRunStore(RunStore):
    """In-process store: fast, nothing survives the process. Payloads are kept as JSON, like on disk."""

    commit_interval_s = 0.0

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[str, RunInfo] = {}
        self._events: dict[str, list[tuple[int, float, str, str]]] = {}

    def _schedule_flush(self) -> None:
        self.flush()

    def append_json(self, run_id: str, kind: str, data: str, ts: float) -> int:
        """Append and make durable at once (memory is as durable as this store gets)."""
        with self._lock:
            if self._new_runs:
                self.flush()
            evs = self._events.get(run_id)
            if evs is None:
                raise RunNotFoundError(f"run {run_id!r} not found in the store", hint="create_run() it first")
            seq = evs[-1][0] + 1 if evs else 1
            evs.append((seq, ts, kind, data))
            for cb in self._subs.get(run_id, ()):
                cb(seq)
            return seq

    def _write(
        self,
        runs: list[RunInfo],
        events: list[tuple[str, int, float, str, str]],
        statuses: dict[str, tuple[str, float]],
    ) -> None:
        for r in runs:
            self._runs[r.run_id] = r
            self._events[r.run_id] = []
        for run_id, seq, ts, kind, data in events:
            self._events[run_id].append((seq, ts, kind, data))
        for run_id, (status, ts) in statuses.items():
            info = self._runs.get(run_id)
            if info is not None:
                info.status, info.updated_at = status, ts

    def _max_seq(self, run_id: str) -> int | None:
        evs = self._events.get(run_id)
        if evs is None:
            return None
        return evs[-1][0] if evs else 0

    def _get_run(self, run_id: str) -> RunInfo | None:
        r = self._runs.get(run_id)
        return None if r is None else RunInfo(r.run_id, r.workflow, r.status, r.created_at, r.updated_at, dict(r.meta))

    def _list_runs(self, limit: int, workflow: str | None) -> list[RunInfo]:
        runs = [r for r in self._runs.values() if workflow is None or r.workflow == workflow]
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return [self._get_run(r.run_id) for r in runs[:limit]]  # type: ignore[misc]

    def _load(self, run_id: str, after: int) -> list[StoredEvent]:
        return [StoredEvent(run_id, s, ts, k, json.loads(d)) for s, ts, k, d in self._events[run_id] if s > after]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, meta TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_segments (
    run_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    kinds TEXT NOT NULL, times BLOB NOT NULL, payloads TEXT NOT NULL,
    PRIMARY KEY (run_id, first_seq)
);
"""
# Pages a commit writes are the cost of a commit (two WAL writes each): ``runs`` is one b-tree keyed by run_id
# (WITHOUT ROWID: no separate primary-key index) and has no index on created_at (``list_runs`` sorts; a
# store holds thousands of runs, not millions). Together 16 -> 12.5 WAL writes per one-run commit.


def _segments(events: list[tuple[str, int, float, str, str]]) -> list[tuple[str, int, int, str, bytes, str]]:
    """Group a commit's events into one row per run (consecutive seqs): kinds joined by newlines, the
    timestamps as packed doubles, the JSON payloads joined by newlines (compact JSON has no raw newline)."""
    run0 = events[0][0]
    for ev in events:
        if ev[0] != run0:
            break
    else:  # the common case: one run per commit
        return [_segment(run0, events)]
    by_run: dict[str, list[tuple[str, int, float, str, str]]] = {}
    for ev in events:
        by_run.setdefault(ev[0], []).append(ev)
    return [_segment(run_id, evs) for run_id, evs in by_run.items()]


def _segment(run_id: str, evs: list[tuple[str, int, float, str, str]]) -> tuple[str, int, int, str, bytes, str]:
    return (
        run_id,
        evs[0][1],
        evs[-1][1],
        "\n".join([e[3] for e in evs]),
        array("d", [e[2] for e in evs]).tobytes(),
        "\n".join([e[4] for e in evs]),
    )


_INSERT_RUN = "INSERT INTO runs VALUES (?,?,?,?,?,?)"
_INSERT_SEGMENT = "INSERT INTO event_segments VALUES (?,?,?,?,?,?)"


class SQLiteRunStore(RunStore):
    """One SQLite file in WAL mode with group commit. Safe to reopen after the writing process was killed.

    Each commit writes one row per run holding that run's new events (``event_segments``), which keeps the
    log append-only while making a commit cost about one row per run rather than one per event.

    Args:
        path: The database file (created with its parent directory).
        synchronous: ``"NORMAL"`` (survives a killed process) or ``"FULL"`` (also survives power loss).
        commit_interval_s: Longest time an appended event waits for its commit when an event loop runs.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL", commit_interval_s: float = 0.002):
        super().__init__()
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.commit_interval_s = commit_interval_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open run store {self.path}: {e}", hint="check the path is writable") from e

    def _write(
        self,
        runs: list[RunInfo],
        events: list[tuple[str, int, float, str, str]],
        statuses: dict[str, tuple[str, float]],
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if runs:
                statuses = dict(statuses)
                rows = []
                for r in runs:  # a run created and finished within one commit is written once
                    status, updated = statuses.pop(r.run_id, (r.status, r.updated_at))
                    rows.append((r.run_id, r.workflow, status, r.created_at, updated, _dumps(r.meta)))
                if len(rows) == 1:
                    db.execute(_INSERT_RUN, rows[0])
                else:
                    db.executemany(_INSERT_RUN, rows)
            if events:
                segs = _segments(events)
                if len(segs) == 1:
                    db.execute(_INSERT_SEGMENT, segs[0])
                else:
                    db.executemany(_INSERT_SEGMENT, segs)
            if statuses:
                db.executemany(
                    "UPDATE runs SET status=?, updated_at=? WHERE run_id=?",
                    [(s, ts, run_id) for run_id, (s, ts) in statuses.items()],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _max_seq(self, run_id: str) -> int | None:
        if self._get_run(run_id) is None:
            return None
        row = self._db.execute("SELECT MAX(last_seq) FROM event_segments WHERE run_id=?", (run_id,)).fetchone()
        return int(row[0] or 0)

    @staticmethod
    def _info(row: tuple[Any, ...]) -> RunInfo:
        return RunInfo(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))

    def _get_run(self, run_id: str) -> RunInfo | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else self._info(row)

    def _list_runs(self, limit: int, workflow: str | None) -> list[RunInfo]:
        if workflow is None:
            rows = self._db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE workflow=? ORDER BY created_at DESC LIMIT ?", (workflow, limit)
            ).fetchall()
        return [self._info(r) for r in rows]

    def _load(self, run_id: str, after: int) -> list[StoredEvent]:
        try:
            rows = self._db.execute(
                "SELECT first_seq, kinds, times, payloads FROM event_segments WHERE run_id=? AND last_seq>? "
                "ORDER BY first_seq",
                (run_id, after),
            ).fetchall()
            out: list[StoredEvent] = []
            for first, kinds, times, payloads in rows:
                ts = array("d")
                ts.frombytes(times)
                for i, (kind, data) in enumerate(zip(kinds.split("\n"), payloads.split("\n"), strict=True)):
                    if first + i > after:
                        out.append(StoredEvent(run_id, first + i, ts[i], kind, json.loads(data)))
            return out
        except (sqlite3.Error, ValueError) as e:
            raise StoreError(
                f"cannot read run {run_id!r} from {self.path}: {e}", hint="is the file a run store?"
            ) from e

    def _close(self) -> None:
        self._db.close()


def default_store_path() -> Path:
    """The per-user default run store: ``$TQ_STORE`` (a file path) if set, else ``$TQ_HOME/runs.sqlite``, else
    ``$XDG_DATA_HOME/tq-agents/runs.sqlite`` (``~/.local/share/tq-agents/runs.sqlite``)."""
    env = os.environ.get("TQ_STORE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("TQ_HOME")
    if home:
        return Path(home).expanduser() / "runs.sqlite"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tq-agents" / "runs.sqlite"


def open_store(store: RunStore | str | os.PathLike[str] | None) -> RunStore:
    """A ``RunStore`` from an instance (as is), a path (SQLite; ``":memory:"`` → ``MemoryRunStore``) or ``None``
    (the per-user default SQLite store at ``default_store_path()``, so that every run can be resumed)."""
    if isinstance(store, RunStore):
        return store
    if isinstance(store, str) and store == ":memory:":
        return MemoryRunStore()
    return SQLiteRunStore(default_store_path() if store is None else store)
