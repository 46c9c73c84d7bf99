"""Tools inside runs: errors that are not Exceptions, repeated call ids, turns that ignore their cancel, and a
tool call durable in the log before the tool runs. Real SQLite stores, ScriptedModel."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tq_agents import Agent, SQLiteRunStore, Workflow, resume, tool
from tq_agents.models.base import ChatRequest, ToolCall
from tq_agents.testing import ScriptedModel

pytestmark = pytest.mark.timeout(60)


def _after_tool(call: ToolCall) -> object:
    """One tool call, then a final answer once a tool result is in the transcript."""
    return lambda req: "final" if any(m.role == "tool" for m in req.messages) else call


class Abort(BaseException):
    pass


def test_a_tool_raising_a_base_exception_fails_the_run_instead_of_completing_it(tmp_path: Path) -> None:
    @tool
    async def boom(x: int) -> str:
        """Fail hard.

        Args:
            x: Anything.
        """
        raise Abort("stop now")

    model = ScriptedModel(default=_after_tool(ToolCall(id="c1", name="boom", arguments={"x": 1})))
    wf = Workflow("w").add_node(Agent("a", "Do.", model=model, tools=[boom]))
    store = SQLiteRunStore(tmp_path / "runs.sqlite")

    async def main() -> tuple[str, str]:
        run = wf.start("go", store=store)  # a task of its own, as a server would run it
        res = await run.result()
        return res.status, res.reason

    status, reason = asyncio.run(main())
    assert status == "failed" and reason == "node 'a' failed: Abort: stop now"
    assert store.get_run(store.list_runs()[0].run_id).status == "failed"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_a_tool_raising_keyboard_interrupt_stops_the_run_resumably_and_propagates(
    tmp_path: Path, exc: type[BaseException]
) -> None:
    calls: list[int] = []

    @tool
    async def once(x: int) -> str:
        """Interrupt the first time.

        Args:
            x: Anything.
        """
        calls.append(x)
        if len(calls) == 1:
            raise exc("interrupted")
        return "done"

    model = ScriptedModel(default=_after_tool(ToolCall(id="c1", name="once", arguments={"x": 1})))
    wf = Workflow("w").add_node(Agent("a", "Do.", model=model, tools=[once]))
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    with pytest.raises(exc):
        asyncio.run(wf.run("go", store=store))
    (info,) = store.list_runs()
    assert info.status == "cancelled"  # not completed: the turn is in flight in the log, so resume re-runs it
    res = asyncio.run(resume(info.run_id, wf, store))
    assert res.status == "completed" and calls == [1, 1]


def test_calls_that_repeat_an_id_each_run_and_get_their_own_result(tmp_path: Path) -> None:
    paid: list[str] = []

    @tool
    def transfer(to: str) -> str:
        """Send money.

        Args:
            to: Who gets it.
        """
        paid.append(to)
        return f"sent to {to}"

    seen: list[list[tuple[str | None, str | None]]] = []

    def script(req: ChatRequest) -> object:
        results = [(m.tool_call_id, m.content) for m in req.messages if m.role == "tool"]
        if results:
            seen.append(results)
            return "final"
        return [ToolCall(id="call_0", name="transfer", arguments={"to": w}) for w in ("alice", "bob")]

    model = ScriptedModel(default=script)
    wf = Workflow("w").add_node(Agent("a", "Pay.", model=model, tools=[transfer]))
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = wf.run_sync("go", store=store)
    assert res.status == "completed" and paid == ["alice", "bob"]
    assert seen == [[("call_0", "sent to alice"), ("call_0~1", "sent to bob")]]
    keys = [e.payload["key"] for e in store.load_events(res.run_id) if e.kind == "ToolCallFinished"]
    assert keys == ["0:call_0", "0:call_0~1"]


def test_a_turn_that_ignores_its_cancel_makes_no_new_model_or_tool_call(tmp_path: Path) -> None:
    started: list[int] = []

    @tool
    async def stubborn(i: int) -> str:
        """Hold on.

        Args:
            i: The call number.
        """
        started.append(i)
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            pass  # ignores the cancel and returns
        return f"r{i}"

    def step(req: ChatRequest) -> object:
        n = sum(1 for m in req.messages if m.role == "tool")
        return "final" if n >= 3 else ToolCall(id=f"c{n}", name="stubborn", arguments={"i": n})

    model = ScriptedModel(default=step)
    wf = Workflow("w").add_node(Agent("a", "Do.", model=model, tools=[stubborn]))
    store = SQLiteRunStore(tmp_path / "runs.sqlite")

    async def main() -> str:
        run = wf.start("go", store=store)
        await asyncio.sleep(0.1)
        run.cancel()
        res = await run.result()
        await asyncio.sleep(0.6)  # time for the turn to carry on, if it could
        return res.status

    assert asyncio.run(main()) == "cancelled"
    assert started == [0] and len(model.requests) == 1


def test_a_tool_call_is_durable_in_the_log_before_the_tool_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    seen_by_tool: list[list[str]] = []

    @tool
    def look(x: int) -> str:
        """Read the log from another connection, as a crash would leave it.

        Args:
            x: Anything.
        """
        db = sqlite3.connect(path)
        kinds = [k for (ks,) in db.execute("SELECT kinds FROM event_segments") for k in ks.split("\n")]
        db.close()
        seen_by_tool.append(kinds)
        return "looked"

    model = ScriptedModel(default=_after_tool(ToolCall(id="c1", name="look", arguments={"x": 1})))
    wf = Workflow("w").add_node(Agent("a", "Do.", model=model, tools=[look]))
    assert wf.run_sync("go", store=SQLiteRunStore(path)).status == "completed"
    assert seen_by_tool and seen_by_tool[0][-1] == "ToolCallStarted"
