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

Failures: a commit that fails (the write lock held too long by another process, a full disk) raises
``StoreError`` naming the file and the cause; the batch stays buffered, in order, and the next ``flush()``
retries it. ``SQLiteRunStore(path, readonly=True)`` reads a store without writing to it (``tq runs``,
``tq replay``). A closed store refuses every call with ``StoreError``.
"""

from __future__ import annotations

import abc
import asyncio
import json
import os
import random
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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


def _text(what: str, value: str) -> None:
    """Refuse a name that SQLite cannot store as UTF-8 text (a lone surrogate) when it is given, not at the commit
    (where it would fail the whole batch). ``isascii()`` is O(1): only non-ASCII text is encoded."""
    if not isinstance(value, str):
        raise StoreError(f"{what} must be a str, got {value!r} ({type(value).__name__})")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise StoreError(
                f"{what} {value!r} is not valid UTF-8 text (it holds a lone surrogate)",
                hint="decode bytes with errors='replace', not 'surrogateescape', before using them as a name",
            ) from None


def _check_event(kind: str, data: str) -> None:
    """The slow path of ``append_json``'s one-branch check: raise for a bad kind or payload line."""
    if "\n" in kind:
        raise StoreError(f"event kind {kind!r} contains a newline", hint="use a one-line name such as 'x.model_call'")
    if "\n" in data:
        raise StoreError(
            f"event payload of kind {kind!r} contains a raw newline: {data[:80]!r}",
            hint="pass one line of compact JSON (newlines inside strings are escaped as \\n)",
        )
    _text("event kind", kind)


def _hint(e: BaseException, *, reading: bool = True) -> str:
    """What to do about a store error, by its cause (``reading``: bad content read from the file)."""
    text = str(e).lower()
    if not reading and not isinstance(e, sqlite3.Error):
        return "the unsaved events stay buffered: flush() again once the cause is fixed"
    if (reading and isinstance(e, ValueError | TypeError)) or "malformed" in text or "not a database" in text:
        return (
            "the file is damaged or was not written by tq-agents: use another store path (tq: --store PATH or "
            "$TQ_STORE), or restore the file from a backup"
        )
    if "full" in text:
        return "free disk space on the store's filesystem (the unsaved events stay buffered; flush() retries)"
    if "readonly" in text or "read-only" in text:
        return "the store file or its directory is read-only: use a writable store path (tq: --store PATH)"
    if "locked" in text or "busy" in text:
        return "another process held the store's write lock too long: retry, or give each process its own store"
    if "unable to open" in text:
        return "check that the store's directory exists and that you may read and write there"
    return "check that the store path is writable and its disk has free space"


_NOT_A_STORE_HINT = "use another store path (tq: --store PATH or $TQ_STORE): this file is not one tq-agents wrote"


_MAX_BATCH = 1024  # events buffered at most before an append commits them itself
_MAX_BATCH_AGE_S = 0.05  # ... or once the oldest buffered event is this much older than the newest


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
        self._no_write = False  # closed or read-only: the one flag the append hot path checks
        self._label = "(in memory)"  # names the store in errors: its path, for a file

    def _refuse(self) -> StoreError:
        if self._closed:
            return StoreError(
                f"run store {self._label} is closed", hint="open the store again; close it only after its last use"
            )
        return StoreError(
            f"run store {self._label} is opened read-only",
            hint="open it without readonly=True to record runs (tq: `tq run` and `tq resume` write)",
        )

    # ---- primitives -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _write(
        self,
        runs: list[tuple[RunInfo, str]],
        events: list[tuple[str, int, float, str, str]],
        statuses: dict[str, tuple[str, float]],
    ) -> None:
        """Make ``runs`` (each with its meta as JSON), ``events`` and ``statuses`` durable, atomically; on an
        exception nothing of them may be kept (the caller buffers them again and retries)."""

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
        if self._no_write:
            raise self._refuse()
        _text("run id", run_id)
        _text("workflow name", workflow)
        meta = dict(meta or {})
        meta_json = _dumps(meta)  # a bad value fails here, not the commit
        with self._lock:
            if run_id in self._next_seq or (check and self._get_run(run_id) is not None):
                raise StoreError(f"run {run_id!r} already exists", hint="use a new run id or resume() the run")
            now = time.time()
            self._new_runs.append((RunInfo(run_id, workflow, "running", now, now, meta), meta_json))
            self._next_seq[run_id] = 1
            self._schedule_flush()

    def append(self, run_id: str, kind: str, payload: Mapping[str, Any], *, ts: float | None = None) -> int:
        """Append one event to ``run_id``'s log; returns its ``seq`` (1, 2, ...). Durable after ``flush()``.
        ``ts`` (epoch seconds) defaults to now."""
        if self._no_write:
            raise self._refuse()
        return self.append_json(run_id, kind, _dumps(payload), time.time() if ts is None else ts)

    def append_json(self, run_id: str, kind: str, data: str, ts: float) -> int:
        """``append`` for a payload already serialised as one line of compact JSON (the scheduler's fast
        path: each event is encoded once, by the caller). ``kind`` must be a one-line name, ``data`` one line."""
        if self._no_write or "\n" in kind or "\n" in data or not kind.isascii():  # one branch on the hot path
            if self._no_write:
                raise self._refuse()
            _check_event(kind, data)
        with self._lock:
            seq = self._next_seq.get(run_id)
            if seq is None:
                top = self._max_seq(run_id)
                if top is None:
                    raise RunNotFoundError(f"run {run_id!r} not found in the store", hint="create_run() it first")
                seq = top + 1
            self._next_seq[run_id] = seq + 1
            buffer = self._buffer
            buffer.append((run_id, seq, ts, kind, data))
            # turns that never await give the commit timer no chance to fire: commit from here once the batch is
            # big or old (by the events' own times), so such a run is not held in one ever-growing buffer
            if len(buffer) >= _MAX_BATCH or ts - buffer[0][2] > _MAX_BATCH_AGE_S:
                self.flush()
                return seq
            # a timer is armed unless one is pending in a loop still running (a closed loop's timer never fires);
            # no running-loop lookup per append (it costs a getpid() syscall on Python 3.11)
            loop = self._flush_loop
            if loop is None or not loop.is_running():
                self._schedule_flush()
            return seq

    def set_status(self, run_id: str, status: str) -> None:
        """Record the run's status (``running``, ``completed``, ...), durable with the next flush."""
        if self._no_write:
            raise self._refuse()
        _text("run status", status)
        with self._lock:
            self._status_buffer[run_id] = (status, time.time())
            self._schedule_flush()

    def flush(self) -> None:
        """Make everything appended so far durable (one transaction), then notify subscribers.

        If the commit fails, ``StoreError`` names the store and the cause; what was buffered stays buffered, in
        order, and the next ``flush()`` retries it."""
        if self._closed:
            raise self._refuse()
        with self._lock:
            # a pending flush timer is left to fire (a no-op if nothing is buffered by then): back-to-back
            # short runs share one timer instead of creating and cancelling one each
            if not (self._buffer or self._new_runs or self._status_buffer):
                return
            events, runs, statuses = self._buffer, self._new_runs, self._status_buffer
            self._buffer, self._new_runs, self._status_buffer = [], [], {}
            try:
                self._write(runs, events, statuses)
            except BaseException as e:
                # the batch goes back in front of anything buffered since (nothing, unless _write appended)
                events.extend(self._buffer)
                runs.extend(self._new_runs)
                statuses.update(self._status_buffer)  # a newer status of a run wins
                self._buffer, self._new_runs, self._status_buffer = events, runs, statuses
                if not isinstance(e, Exception):  # KeyboardInterrupt, CancelledError: as they are
                    raise
                raise StoreError(
                    f"cannot write to run store {self._label}: {e} ({len(events)} events and {len(runs)} new runs "
                    "stay buffered; the next flush() retries)",
                    hint=_hint(e, reading=False),
                ) from e
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
        if self._closed:
            raise self._refuse()
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
        """Flush and release the store; closing it again does nothing. If the final flush fails, ``StoreError``
        is raised and the store stays open (its buffer intact), so ``close()`` can be retried."""
        if self._closed:
            return
        self.flush()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = self._flush_loop = None
        self._closed = self._no_write = True
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
        if self._no_write or "\n" in kind or "\n" in data or not kind.isascii():
            if self._no_write:
                raise self._refuse()
            _check_event(kind, data)
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
        runs: list[tuple[RunInfo, str]],
        events: list[tuple[str, int, float, str, str]],
        statuses: dict[str, tuple[str, float]],
    ) -> None:
        for r, _ in runs:
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


_TABLES = {
    "runs": """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, meta TEXT NOT NULL
) WITHOUT ROWID;""",
    "event_segments": """
CREATE TABLE IF NOT EXISTS event_segments (
    run_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    kinds TEXT NOT NULL, times BLOB NOT NULL, payloads TEXT NOT NULL,
    PRIMARY KEY (run_id, first_seq)
);""",
}
_SCHEMA = "".join(_TABLES.values())
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
_COLUMNS = {
    "runs": ("run_id", "workflow", "status", "created_at", "updated_at", "meta"),
    "event_segments": ("run_id", "first_seq", "last_seq", "kinds", "times", "payloads"),
}
_READ_ERRORS = (sqlite3.Error, ValueError, TypeError, AttributeError)  # SQLite, bad JSON or a bad segment row
_OPEN_RETRY_S = 5.0

_T = TypeVar("_T")


def _busy(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(e)


def _retry_busy(fn: Callable[[], _T]) -> _T:
    """``fn()``, retried with a short random backoff while SQLite answers BUSY/locked. Needed when several
    processes open a new store at once: switching to WAL needs an exclusive lock, and SQLite answers BUSY at
    once, without waiting on the busy timeout, where waiting could deadlock."""
    deadline = time.monotonic() + _OPEN_RETRY_S
    delay = 0.002
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not _busy(e) or time.monotonic() >= deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.1)


def _escape_surrogates(events: list[tuple[str, int, float, str, str]]) -> list[tuple[str, int, float, str, str]]:
    """``events`` with each payload that is not valid UTF-8 (a lone surrogate, given to ``append_json``)
    re-encoded with JSON escapes (``\udcff``): it loads back as the same string. The same list if none is."""
    out: list[tuple[str, int, float, str, str]] = []
    changed = False
    for ev in events:
        data = ev[4]
        try:
            data.encode()
        except UnicodeEncodeError:
            try:
                data = json.dumps(json.loads(data), separators=(",", ":"))  # ensure_ascii: escapes surrogates
            except ValueError:
                data = data.encode("utf-8", "backslashreplace").decode()
            ev = (ev[0], ev[1], ev[2], ev[3], data)
            changed = True
        out.append(ev)
    return out if changed else events


def _is_wal(path: Path) -> bool:
    """Whether the file's header says WAL mode (bytes 18-19 of an SQLite header are 2 and 2)."""
    try:
        with path.open("rb") as f:
            return f.read(20)[18:20] == b"\x02\x02"
    except OSError:
        return False


class SQLiteRunStore(RunStore):
    """One SQLite file in WAL mode with group commit. Safe to reopen after the writing process was killed.

    Each commit writes one row per run holding that run's new events (``event_segments``), which keeps the
    log append-only while making a commit cost about one row per run rather than one per event.

    Args:
        path: The database file (created with its parent directory, unless ``readonly``).
        synchronous: ``"NORMAL"`` (survives a killed process) or ``"FULL"`` (also survives power loss).
        commit_interval_s: Longest time an appended event waits for its commit when an event loop runs.
        readonly: Read an existing store without writing to it or next to it (read-only files and media too):
            ``create_run``, ``append`` and ``set_status`` raise ``StoreError``. A store that no process has
            open (no ``-wal``/``-shm`` file beside it) is read as an immutable file, creating nothing; one
            that a writer has open is read through SQLite's shared WAL index, seeing every commit.

    A file that holds other tables than a run store's, or a ``runs``/``event_segments`` table with other
    columns, is refused with ``StoreError`` (nothing is added to it).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        commit_interval_s: float = 0.002,
        readonly: bool = False,
    ):
        super().__init__()
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self._label = str(self.path)
        self.commit_interval_s = commit_interval_s
        self.readonly = self._no_write = readonly
        db: sqlite3.Connection | None = None
        try:
            if readonly:
                db = self._db = self._open_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA busy_timeout=5000")  # first: what follows may wait for other processes
                _retry_busy(self._use_wal)
                db.execute(f"PRAGMA synchronous={synchronous.upper()}")
                if _retry_busy(self._check_schema):
                    _retry_busy(lambda: self._db.executescript(_SCHEMA))
        except sqlite3.Error as e:
            if db is not None:
                db.close()
            raise StoreError(f"cannot open run store {self.path}: {e}", hint=_hint(e)) from e
        except OSError as e:
            raise StoreError(
                f"cannot create the directory of run store {self.path}: {e.strerror or e} ({e.filename})",
                hint="pass a store path in a directory you can write to (tq: --store PATH or $TQ_STORE)",
            ) from e
        except BaseException:
            if db is not None:
                db.close()
            raise

    def _use_wal(self) -> None:
        """Switch the file to WAL unless it is already (the mode is stored in the file: once per store)."""
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")

    def _check_schema(self) -> list[str]:
        """Refuse a file that is not a run store; return the run-store tables it lacks (all of them if new)."""
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')").fetchall()
        tables = {r[0] for r in rows}
        if not tables & _COLUMNS.keys():
            others = sorted(t for t in tables if not t.startswith("sqlite_"))
            if others:
                raise StoreError(
                    f"{self.path} is not a tq-agents run store (it holds other tables: {', '.join(others[:5])}"
                    f"{', ...' if len(others) > 5 else ''})",
                    hint=_NOT_A_STORE_HINT,
                )
        for table, want in _COLUMNS.items():
            if table not in tables:
                continue
            have = tuple(r[1] for r in self._db.execute(f"PRAGMA table_info({table})"))
            if have != want:
                lacking = [c for c in want if c not in have]
                why = (
                    f"table {table} lacks column {lacking[0]}"
                    if lacking
                    else f"table {table} has columns {', '.join(have)}; expected {', '.join(want)}"
                )
                raise StoreError(f"{self.path} is not a tq-agents run store ({why})", hint=_NOT_A_STORE_HINT)
        return [t for t in _COLUMNS if t not in tables]

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(
                f"no run store at {self.path}",
                hint="pass the store file `tq run` wrote (tq: --store PATH or $TQ_STORE)",
            )
        uri = self.path.absolute().as_uri()
        modes = ["mode=ro", "immutable=1"]  # immutable: the -shm cannot be made (read-only media)
        if _is_wal(self.path) and not os.path.exists(f"{self.path}-wal") and not os.path.exists(f"{self.path}-shm"):
            # no process has the store open and every commit is in the file: reading it as immutable creates
            # no -wal/-shm beside it (mode=ro would, and leave them behind)
            modes = ["immutable=1"]
        first: sqlite3.Error | None = None
        for mode in modes:
            self._db = sqlite3.connect(f"{uri}?{mode}", uri=True, check_same_thread=False, isolation_level=None)
            try:
                self._db.execute("PRAGMA busy_timeout=5000")
                missing = _retry_busy(self._check_schema)
                break
            except sqlite3.OperationalError as e:
                self._db.close()
                first = first or e
            except BaseException:
                self._db.close()
                raise
        else:
            assert first is not None
            raise first
        if missing:  # a new (empty) file, or a store without a table: empty TEMP tables stand in, in memory
            self._db.execute("PRAGMA temp_store=MEMORY")
            for table in missing:
                self._db.execute(_TABLES[table].replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
        return self._db

    def _write(
        self,
        runs: list[tuple[RunInfo, str]],
        events: list[tuple[str, int, float, str, str]],
        statuses: dict[str, tuple[str, float]],
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            updates = statuses
            if runs:
                updates = dict(statuses)
                rows = []
                for r, meta in runs:  # a run created and finished within one commit is written once
                    status, updated = updates.pop(r.run_id, (r.status, r.updated_at))
                    rows.append((r.run_id, r.workflow, status, r.created_at, updated, meta))
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
            if updates:
                db.executemany(
                    "UPDATE runs SET status=?, updated_at=? WHERE run_id=?",
                    [(s, ts, run_id) for run_id, (s, ts) in updates.items()],
                )
            db.execute("COMMIT")
        except BaseException as e:
            if db.in_transaction:  # SQLite may have rolled back itself (a full disk): the real error is e
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(e, UnicodeEncodeError):  # a payload that is not UTF-8 (via append_json)
                escaped = _escape_surrogates(events)
                if escaped is not events:
                    self._write(runs, escaped, statuses)
                    return
            raise

    def _read_error(self, what: str, e: BaseException) -> StoreError:
        return StoreError(f"cannot read {what} from run store {self.path}: {e}", hint=_hint(e))

    def _max_seq(self, run_id: str) -> int | None:
        if self._get_run(run_id) is None:
            return None
        try:
            row = self._db.execute("SELECT MAX(last_seq) FROM event_segments WHERE run_id=?", (run_id,)).fetchone()
            return int(row[0] or 0)
        except _READ_ERRORS as e:
            raise self._read_error(f"run {run_id!r}", e) from e

    @staticmethod
    def _info(row: tuple[Any, ...]) -> RunInfo:
        return RunInfo(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))

    def _get_run(self, run_id: str) -> RunInfo | None:
        try:
            row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
            return None if row is None else self._info(row)
        except _READ_ERRORS as e:
            raise self._read_error(f"run {run_id!r}", e) from e

    def _list_runs(self, limit: int, workflow: str | None) -> list[RunInfo]:
        try:
            if workflow is None:
                rows = self._db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM runs WHERE workflow=? ORDER BY created_at DESC LIMIT ?", (workflow, limit)
                ).fetchall()
            return [self._info(r) for r in rows]
        except _READ_ERRORS as e:
            raise self._read_error("the list of runs", e) from e

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
        except _READ_ERRORS as e:
            raise self._read_error(f"the events of run {run_id!r}", e) from e

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
