"""Replay: re-execute a recorded run with the model answers (and tool results) taken from its log."""

from __future__ import annotations

import asyncio
import heapq
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tq_agents._record import RunRecord, TurnRecord
from tq_agents.errors import ModelError
from tq_agents.models.base import ChatResponse, ToolCall
from tq_agents.store import MemoryRunStore, RunStore, open_store

if TYPE_CHECKING:
    from tq_agents._turn import _Turn
    from tq_agents.graph import Workflow
    from tq_agents.messages import Message
    from tq_agents.scheduler import Run

__all__ = ["Divergence", "ReplayReport", "ReplaySource", "replay"]


@dataclass(frozen=True)
class Divergence:
    """The first point where the replay differs from the record."""

    turn_id: str
    what: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"turn {self.turn_id}: {self.what} (recorded: {self.expected}; replayed: {self.actual})"


@dataclass
class ReplayReport:
    """Outcome of ``replay``: ``diverged`` with the first ``divergence``, or a faithful re-execution."""

    run_id: str
    replay_run_id: str
    status: str
    recorded_status: str
    turns_compared: int
    divergence: Divergence | None = None

    @property
    def diverged(self) -> bool:
        """Whether the replay differed from the record (``divergence`` says where first)."""
        return self.divergence is not None


class _Diverged(Exception):
    pass


class ReplaySource:
    """Serves recorded model answers and tool results; notes the first divergence; lets turns complete in the
    recorded order (``in_order``)."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.divergence: Divergence | None = None
        self.compared: set[str] = set()
        # turns running in the replay, by their recorded finish seq (a heap, ended ones dropped lazily), and the
        # turns waiting in ``in_order`` for the ones before them
        self._running: list[tuple[int, str]] = []
        self._ended: set[str] = set()
        self._waiting: dict[str, asyncio.Future[None]] = {}

    def _diverge(self, turn_id: str, what: str, expected: Any, actual: Any) -> None:
        from tq_agents._turn import _Stop

        if self.divergence is None:
            self.divergence = Divergence(turn_id, what, str(expected)[:300], str(actual)[:300])
        raise _Stop("failed", f"replay diverged: {self.divergence}")

    def _cut(self, rec: TurnRecord) -> None:
        """The recorded run stopped during this turn (it has no NodeFinished: a deadline, a cancel, a crash):
        the replay stops here too, with the recorded status, as there is nothing to compare beyond."""
        from tq_agents._turn import _Stop

        status = self.record.finished.status if self.record.finished is not None else "cancelled"
        raise _Stop(status, f"replay reached turn {rec.turn_id}, where the recorded run stopped ({status})")

    def _unrecorded(self, turn: _Turn) -> None:
        """``turn`` is not in the record: where the recorded run stopped early (a budget, a deadline, a cancel),
        a turn past its last one is where the replay stops too; otherwise the replay has diverged."""
        from tq_agents._turn import _ENDED, _Stop

        finished = self.record.finished
        if finished is not None and finished.status not in _ENDED:  # stopped early (resumable)
            raise _Stop(
                finished.status,
                f"replay reached turn {turn.turn_id}, past the recorded run's last turn ({finished.status})",
            )
        self._diverge(turn.turn_id, "turn is not in the record", "no such turn", f"node {turn.node} ran")

    def turn_started(self, turn_id: str) -> None:
        """A turn of the replay started running."""
        seq = self._finish_seq(turn_id)
        if seq is not None:
            heapq.heappush(self._running, (seq, turn_id))

    async def in_order(self, run: Run, turn: _Turn) -> None:
        """Wait until the turns that finished before ``turn`` in the record, and run now, have finished: with
        answers served at once, concurrent turns would otherwise finish in whatever order the replay runs them,
        and an any-join would fire on another first message than it did. (A heap of the running turns' recorded
        finish seqs: only the turn now first is woken, so a wide fan-out replays in n log n.)"""
        mine = self._finish_seq(turn.turn_id)
        if mine is None:
            return
        while True:
            self._prune()
            if not self._running or self._running[0][0] >= mine:
                return
            waiter = self._waiting[turn.turn_id] = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiting.pop(turn.turn_id, None)

    def turn_ended(self, turn_id: str) -> None:
        """A turn of the replay ended: the turn now first in the recorded order goes on, if it waits."""
        self._ended.add(turn_id)
        self._prune()
        if self._running:
            waiter = self._waiting.get(self._running[0][1])
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _prune(self) -> None:
        running, ended = self._running, self._ended
        while running and running[0][1] in ended:
            heapq.heappop(running)

    def _finish_seq(self, turn_id: str) -> int | None:
        rec = self.record.turns.get(turn_id)
        return rec.finished.seq if rec is not None and rec.finished is not None else None

    def model_response(self, turn: _Turn, index: int, rhash: str) -> ChatResponse:
        rec = self.record.turns.get(turn.turn_id)
        if rec is None:
            self._unrecorded(turn)
        assert rec is not None
        self.compared.add(turn.turn_id)
        if index not in rec.responses:
            error = rec.failures.get(index)
            if error is not None:  # the recorded call failed for good: this one fails the same way
                raise ModelError(f"recorded failure: {error}")
            if rec.finished is None:
                self._cut(rec)
            self._diverge(turn.turn_id, f"model call #{index} is not in the record", "no call", "a call")
        expected = rec.request_hashes.get(index)
        if expected is not None and expected != rhash:
            self._diverge(turn.turn_id, f"model call #{index} request differs", expected, rhash)
        return rec.responses[index]

    def tool_result(self, turn: _Turn, key: str, call: ToolCall) -> dict[str, Any]:
        rec = self.record.turns.get(turn.turn_id)
        if rec is not None and key not in rec.tools and rec.finished is None:
            self._cut(rec)
        if rec is None or key not in rec.tools:
            self._diverge(turn.turn_id, f"tool call {call.name} ({key}) is not in the record", "no call", call.name)
        assert rec is not None
        return rec.tools[key]

    def check_outputs(self, turn: _Turn, outputs: list[Message]) -> None:
        rec = self.record.turns.get(turn.turn_id)
        if rec is None:
            self._unrecorded(turn)
        assert rec is not None
        if rec.finished is None:
            self._cut(rec)
        self.compared.add(turn.turn_id)
        # compared as JSON text (NaN written as NaN), not with ==: NaN != NaN would make a faithful replay differ
        want = json.dumps([{**m.payload(), "type": m.type_name} for m in rec.outputs], sort_keys=True)
        got = json.dumps([{**m.payload(), "type": m.type_name} for m in outputs], sort_keys=True)
        if want != got:
            self._diverge(turn.turn_id, "output differs", want, got)


async def replay(
    run_id: str, workflow: Workflow, store: RunStore | str, *, into: RunStore | None = None
) -> ReplayReport:
    """Re-execute run ``run_id`` of ``workflow`` with model answers and tool results from its log.

    The replay is recorded in ``into`` (default: a fresh in-memory store). Returns a ``ReplayReport`` naming
    the first divergence: a request that differs, a call or turn the record lacks, a different output, or a
    different final status.
    """
    from tq_agents.messages import Message
    from tq_agents.scheduler import start_run

    source_store = open_store(store)
    try:
        record = RunRecord.load(source_store, run_id)
    finally:
        if source_store is not store:
            source_store.close()
    if record.started is None:
        from tq_agents.errors import RunError

        raise RunError(f"run {run_id!r} has no RunStarted event; nothing to replay")
    source = ReplaySource(record)
    input_msg = Message.from_dict(record.started.input)
    # the turn budget in force at the end (a resume may have raised it); no token budget: turns here may
    # interleave differently, and where the recorded run stopped, the replay stops too (ReplaySource)
    run = start_run(
        workflow,
        input_msg.model_copy(update={"run_id": None}),
        store=into or MemoryRunStore(),
        model=_NoModel(),
        max_turns=record.budgets.get("max_turns"),
        replay=source,
    )
    result = await run.result()
    recorded_status = record.finished.status if record.finished else "running"
    div = source.divergence
    if div is None:
        missing = [t for t, r in record.turns.items() if r.finished is not None and t not in source.compared]
        gone = [t for t in missing if record.turns[t].node not in workflow.graph]
        fn_turns = {t for t in missing if t not in gone and workflow.node(record.turns[t].node).agent is None}
        missing = [t for t in missing if t not in fn_turns]
        if gone and gone[0] == missing[0]:
            node = record.turns[gone[0]].node
            div = Divergence(gone[0], "recorded node is not in the workflow", f"node {node}", "no such node")
        elif missing:
            div = Divergence(missing[0], "recorded turn did not run in the replay", "ran", "did not run")
        elif record.finished is not None and result.status != recorded_status:
            div = Divergence("(run)", "final status differs", recorded_status, result.status)
    return ReplayReport(run_id, result.run_id, result.status, recorded_status, len(source.compared), div)


class _NoModel:
    """Stands in for agents' models during replay; never called (answers come from the record)."""

    model_name = "replay"

    async def complete(self, request: Any) -> ChatResponse:  # pragma: no cover - guarded by ReplaySource
        raise AssertionError("replay must not call a model")
