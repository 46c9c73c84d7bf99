"""resume() from a truncated log (in-process, both stores) and replay() with divergence reports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tq_agents import (
    Agent,
    MemoryRunStore,
    RunNotFoundError,
    RunStore,
    SQLiteRunStore,
    TextMessage,
    Workflow,
    replay,
    resume,
    tool,
)
from tq_agents.models.base import ChatRequest
from tq_agents.testing import ScriptedModel, call

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "memory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    made: list[RunStore] = []

    def make(name: str) -> RunStore:
        s: RunStore = SQLiteRunStore(tmp_path / f"{name}.sqlite") if request.param == "sqlite" else MemoryRunStore()
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def build(executed: list[str], instructions: str = "Use the tool.") -> Workflow:
    @tool
    def charge(order: str) -> str:
        """Charge an order (a side effect).

        Args:
            order: Order id.
        """
        executed.append(order)
        return f"charged {order}"

    orders = {"A": "o1", "B": "o2"}

    def script(req: ChatRequest) -> object:  # request-driven, so a fresh model continues a resumed turn
        if req.messages[-1].role == "tool" or req.agent not in orders:
            return f"{req.agent} done"
        return call("charge", order=orders[req.agent])

    model = ScriptedModel(default=script)
    wf = Workflow("three", model=model)
    for n in "ABC":
        wf.add_node(Agent(n, instructions, tools=[charge]))
    return wf.add_edge("A", "B").add_edge("B", "C")


def copy_prefix(src: RunStore, dst: RunStore, run_id: str, upto_kind: str, nth: int) -> None:
    """Simulate a crash: the destination log holds the source's events up to the nth event of a kind."""
    info = src.get_run(run_id)
    dst.create_run(run_id, workflow=info.workflow, meta=info.meta)
    seen = 0
    for ev in src.load_events(run_id):
        dst.append(run_id, ev.kind, ev.payload)
        if ev.kind == upto_kind:
            seen += 1
            if seen == nth:
                break
    dst.flush()


def test_resume_reruns_only_the_in_flight_turn(make_store) -> None:  # type: ignore[no-untyped-def]
    executed: list[str] = []
    full = make_store("full")
    res = build(executed).run_sync("go", store=full)
    assert res.status == "completed" and executed == ["o1", "o2"]

    # crash after B's tool result was recorded, before B's turn finished
    crashed = make_store("crashed")
    copy_prefix(full, crashed, res.run_id, "ToolCallFinished", 2)
    executed2: list[str] = []
    wf2 = build(executed2)
    result = asyncio.run(resume(res.run_id, wf2, crashed))
    assert result.status == "completed" and result.output.text == "C done"  # type: ignore[union-attr]
    assert executed2 == []  # B's recorded tool call was not executed again; A is not re-run
    model = wf2.node("A").agent.model or wf2.model  # type: ignore[union-attr]
    assert [r.agent for r in model.requests] == ["B", "C"]  # type: ignore[union-attr]  # B's 2nd call, then C
    log = crashed.load_events(res.run_id)
    finished = [e.payload["turn_id"] for e in log if e.kind == "NodeFinished"]
    assert finished == ["A:1", "B:1", "C:1"]
    assert [e.kind for e in log].count("RunResumed") == 1

    # resuming a finished run gives back the recorded result without running anything
    again = asyncio.run(resume(res.run_id, build(executed2), crashed))
    assert again.status == "completed" and executed2 == []


def test_resume_unknown_run(make_store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunNotFoundError):
        asyncio.run(resume("missing", build([]), make_store("x")))


def test_replay_reproduces_without_running_tools(make_store) -> None:  # type: ignore[no-untyped-def]
    executed: list[str] = []
    store = make_store("s")
    res = build(executed).run_sync("go", store=store)
    executed.clear()
    report = asyncio.run(replay(res.run_id, build(executed), store))
    assert not report.diverged, report.divergence
    assert report.status == "completed" and report.recorded_status == "completed"
    assert report.turns_compared == 3
    assert executed == []  # tool results come from the record


def test_replay_reports_first_divergence(make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store("s")
    res = build([]).run_sync("go", store=store)
    report = asyncio.run(replay(res.run_id, build([], instructions="Different prompt."), store))
    assert report.diverged
    d = report.divergence
    assert d is not None and d.turn_id == "A:1" and d.what == "model call #0 request differs"
    assert "turn A:1" in str(d)

    # a function node whose output changed since the recording
    def with_post(text: str) -> Workflow:
        def post(m: TextMessage) -> TextMessage:
            return TextMessage(text=text)

        return build([]).add_node("post", post).add_edge("C", "post")

    res2 = with_post("v1").run_sync("go", store=store)
    same = asyncio.run(replay(res2.run_id, with_post("v1"), store))
    assert not same.diverged and same.turns_compared == 4
    changed = asyncio.run(replay(res2.run_id, with_post("v2"), store))
    assert changed.divergence is not None
    assert changed.divergence.turn_id == "post:1" and changed.divergence.what == "output differs"
    assert '"v1"' in changed.divergence.expected and '"v2"' in changed.divergence.actual


def test_resume_of_finished_run_streams_nothing_and_ends(make_store) -> None:  # type: ignore[no-untyped-def]
    from tq_agents import start_resume

    store = make_store("s")
    res = build([]).run_sync("go", store=store)

    async def go() -> list[object]:
        run = start_resume(res.run_id, build([]), store)
        evs = [e async for e in run.events()]
        assert (await run.result()).status == "completed"
        return evs

    assert asyncio.run(go()) == []
    d = res.to_dict()
    assert d["status"] == "completed" and d["turns"] == 3 and d["output"]["text"] == "C done"
    assert d["tokens"]["total"] == res.usage.total_tokens > 0


def test_request_hash_with_cached_prefix_equals_the_plain_definition() -> None:
    from tq_agents._record import _request_hash_reference, request_hash
    from tq_agents.models.base import ChatMessage, ChatRequest, ToolCall

    sys_msg = ChatMessage(role="system", content="Be brief.")
    call_msg = ChatMessage(role="assistant", content="", tool_calls=[ToolCall(id="c1", name="f", arguments={"x": 1})])
    cases = [
        ChatRequest(messages=[]),
        ChatRequest(messages=[ChatMessage(role="user", content="hi")], agent="A"),
        ChatRequest(messages=[sys_msg], agent="A"),
        ChatRequest(messages=[sys_msg, ChatMessage(role="user", content="hi")], agent="A", max_tokens=5),
        ChatRequest(messages=[sys_msg, ChatMessage(role="user", content="hi"), call_msg], tool_choice="none"),
        ChatRequest(messages=[call_msg, ChatMessage(role="tool", content="1", tool_call_id="c1")]),
    ]
    seen = set()
    for req in cases * 2:  # the second pass hits the prefix cache
        assert request_hash(req) == _request_hash_reference(req)
        seen.add(request_hash(req))
    assert len(seen) == len(cases)
    # the cached prefix does not leak into a request that differs only after it
    a = ChatRequest(messages=[sys_msg, ChatMessage(role="user", content="one")], agent="A")
    b = ChatRequest(messages=[sys_msg, ChatMessage(role="user", content="two")], agent="A")
    assert request_hash(a) != request_hash(b)
    # an int assigned after validation hashes as its text ("1"), not as the equal float's cached prefix ("1.0")
    c = ChatRequest(messages=[sys_msg], agent="A", temperature=1.0)
    request_hash(c)
    c.temperature = 1
    assert request_hash(c) == _request_hash_reference(c)


@pytest.mark.parametrize("error", ["ModelRequestError", "TransientModelError"])
def test_replay_of_a_failed_model_call_fails_it_the_same_way(make_store, error: str) -> None:  # type: ignore[no-untyped-def]
    import tq_agents
    from tq_agents import ModelCallFailed
    from tq_agents.agent import RetryPolicy

    exc = getattr(tq_agents, error)("upstream said no")
    model = ScriptedModel({"B": [exc] * 3}, default=lambda r: f"{r.agent} done")
    wf = Workflow("f", model=model).add_node(Agent("A")).add_node(Agent("B")).add_edge("A", "B")
    store = make_store("s")
    res = wf.run_sync("go", store=store, retry=RetryPolicy(attempts=2, initial_s=0.0, max_s=0.0))
    assert res.status == "failed" and "upstream said no" in res.reason
    failed = [e for e in store.load_events(res.run_id) if e.kind == ModelCallFailed.kind]
    assert failed and failed[-1].payload["will_retry"] is False  # a permanent error is logged too
    report = asyncio.run(replay(res.run_id, wf, store))
    assert not report.diverged, report.divergence
    assert report.status == "failed" == report.recorded_status


def any_join_loop(fired: list[str]) -> Workflow:
    """router sends round 1 to ``fast`` and round 2 to ``slow``; both feed ``merge`` (an any-join) in a loop."""

    def router(m: TextMessage) -> TextMessage:
        return TextMessage(text=m.text)

    def fast(m: TextMessage) -> TextMessage:
        return TextMessage(text="fast:" + m.text)

    def slow(m: TextMessage) -> TextMessage:
        return TextMessage(text="slow:" + m.text)

    def merge(m: TextMessage) -> TextMessage:  # numbered from the message itself: the same after a resume
        fired.append(m.text)
        return TextMessage(text=f"merged#{m.text.count('merged#') + 1}({m.text})")

    return (
        Workflow("anyloop")
        .add_node("router", router, max_visits=3)
        .add_node("fast", fast)
        .add_node("slow", slow)
        .add_node("merge", merge, join="any")
        .add_edge("router", "fast", condition=lambda m: m.text == "go")
        .add_edge("router", "slow", condition=lambda m: m.text != "go")
        .add_edge("fast", "merge")
        .add_edge("slow", "merge")
        .add_edge("merge", "router", condition=lambda m: m.text.startswith("merged#1"))
        .set_entry("router")
    )


def test_any_join_round_may_come_from_another_predecessor(make_store) -> None:  # type: ignore[no-untyped-def]
    # regression: round 2's only message (from slow) was dropped as a "late arrival" because round 1 came from
    # fast; a message is late only if its turn was already running when the join fired
    fired: list[str] = []
    store = make_store("s")
    res = any_join_loop(fired).run_sync("go", store=store)
    assert res.status == "completed" and res.output.text == "merged#2(slow:merged#1(fast:go))"  # type: ignore[union-attr]
    assert fired == ["fast:go", "slow:merged#1(fast:go)"]
    assert not [e for e in store.load_events(res.run_id) if e.kind == "InputDropped"]
    # a crash after any finished turn resumes to the same end (the rebuild makes the same round decisions)
    for k in range(1, res.turns):
        crashed = make_store(f"c{k}")
        copy_prefix(store, crashed, res.run_id, "NodeFinished", k)
        again = asyncio.run(resume(res.run_id, any_join_loop([]), crashed))
        assert again.status == "completed" and again.output.text == res.output.text, k  # type: ignore[union-attr]
        finished = [e.payload["turn_id"] for e in crashed.load_events(res.run_id) if e.kind == "NodeFinished"]
        assert len(finished) == len(set(finished)) == res.turns, k


def test_replay_of_a_run_stopped_mid_turn_stops_there_too(make_store) -> None:  # type: ignore[no-untyped-def]
    # regression: the turn a deadline (or a cancel) cut short has no recorded output, and the replay reported
    # that as a divergence; it now ends at that turn with the recorded status
    model = ScriptedModel(default=lambda r: f"{r.agent}<{r.messages[-1].content}>", latency={"C": 30.0})
    wf = Workflow("w", model=model)
    for n in "ABCD":
        wf.add_node(Agent(n))
    wf.add_edge("A", "B").add_edge("B", "C").add_edge("C", "D")
    store = make_store("s")
    res = wf.run_sync("go", store=store, deadline_s=0.5)
    assert res.status == "deadline" and res.turns == 3
    report = asyncio.run(replay(res.run_id, wf, store))
    assert not report.diverged, report.divergence
    assert report.status == "deadline" == report.recorded_status and report.turns_compared == 3
    # a change before the cut is still reported
    other = ScriptedModel(default=lambda r: "changed", latency={"C": 30.0})
    changed = Workflow("w", model=other)
    for n in "ABCD":
        changed.add_node(Agent(n, f"You are {n}." if n == "B" else ""))
    changed.add_edge("A", "B").add_edge("B", "C").add_edge("C", "D")
    report = asyncio.run(replay(res.run_id, changed, store))
    assert report.divergence is not None and report.divergence.turn_id == "B:1"
