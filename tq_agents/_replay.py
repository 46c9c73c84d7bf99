"""Replay: re-execute a recorded run with the model answers (and tool results) taken from its log."""

from __future__ import annotations

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
        return self.divergence is not None


class _Diverged(Exception):
    pass


class ReplaySource:
    """Serves recorded model answers and tool results; notes the first divergence."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.divergence: Divergence | None = None
        self.compared: set[str] = set()

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

    def model_response(self, turn: _Turn, index: int, rhash: str) -> ChatResponse:
        rec = self.record.turns.get(turn.turn_id)
        if rec is None:
            self._diverge(turn.turn_id, "turn is not in the record", "no such turn", f"node {turn.node} ran")
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
            self._diverge(turn.turn_id, "turn is not in the record", "no such turn", f"node {turn.node} ran")
        assert rec is not None
        if rec.finished is None:
            self._cut(rec)
        self.compared.add(turn.turn_id)
        want = [{**m.payload(), "type": m.type_name} for m in rec.outputs]
        got = [{**m.payload(), "type": m.type_name} for m in outputs]
        if want != got:
            self._diverge(turn.turn_id, "output differs", json.dumps(want), json.dumps(got))


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
    budgets = record.started.budgets
    input_msg = Message.from_dict(record.started.input)
    run = start_run(
        workflow,
        input_msg.model_copy(update={"run_id": None}),
        store=into or MemoryRunStore(),
        model=_NoModel(),
        max_turns=budgets.get("max_turns"),
        max_tokens=budgets.get("max_tokens"),
        replay=source,
    )
    result = await run.result()
    recorded_status = record.finished.status if record.finished else "running"
    div = source.divergence
    if div is None:
        missing = [t for t, r in record.turns.items() if r.finished is not None and t not in source.compared]
        fn_turns = {t for t in missing if workflow.node(record.turns[t].node).agent is None}
        missing = [t for t in missing if t not in fn_turns]
        if missing:
            div = Divergence(missing[0], "recorded turn did not run in the replay", "ran", "did not run")
        elif record.finished is not None and result.status != recorded_status:
            div = Divergence("(run)", "final status differs", recorded_status, result.status)
    return ReplayReport(run_id, result.run_id, result.status, recorded_status, len(source.compared), div)


class _NoModel:
    """Stands in for agents' models during replay; never called (answers come from the record)."""

    model_name = "replay"

    async def complete(self, request: Any) -> ChatResponse:  # pragma: no cover - guarded by ReplaySource
        raise AssertionError("replay must not call a model")
