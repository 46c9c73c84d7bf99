"""Any-join rounds in loops and multi-message turns, routing failures logged on their turn, and messages a
function node returns left as they were. Real SQLite stores; function nodes with sleeps set the timing."""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from pathlib import Path

import pytest

from tq_agents import MemoryRunStore, Message, SQLiteRunStore, TextMessage, Workflow
from tq_agents.scheduler import resume
from tq_agents.store import StoredEvent

pytestmark = pytest.mark.timeout(60)


def _turns_consistent(events: list[StoredEvent]) -> None:
    started = Counter(e.payload["turn_id"] for e in events if e.kind == "NodeStarted")
    finished = Counter(e.payload["turn_id"] for e in events if e.kind == "NodeFinished")
    assert all(c == 1 for c in started.values()) and all(c == 1 for c in finished.values())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def _loop(fired: list[str], slow_s: float = 0.25) -> Workflow:
    """S -> F (fast), G (slow) -> K (any) -> S, for 3 rounds. G is still busy with round k when round k+1's
    message reaches it, so its round-k+1 turn starts after K already fired for round k+1."""
    rounds: list[str] = []

    async def s(m: Message) -> Message:
        rounds.append(m.text)  # type: ignore[attr-defined]
        return TextMessage(text=f"round{len(rounds)}")

    async def f(m: Message) -> Message:
        await asyncio.sleep(0.01)
        return TextMessage(text="F:" + m.text)  # type: ignore[attr-defined]

    async def g(m: Message) -> Message:
        await asyncio.sleep(slow_s)
        return TextMessage(text="G:" + m.text)  # type: ignore[attr-defined]

    async def k(m: Message) -> Message:
        fired.append(m.text)  # type: ignore[attr-defined]
        return TextMessage(text=f"k{len(fired)}")

    return (
        Workflow("rounds")
        .add_node("S", s, max_visits=10)
        .add_node("F", f)
        .add_node("G", g)
        .add_node("K", k, join="any")
        .add_edge("S", "F")
        .add_edge("S", "G")
        .add_edge("F", "K")
        .add_edge("G", "K")
        .add_edge("K", "S", condition=lambda m: int(m.text[1:]) < 3)  # type: ignore[attr-defined]
        .set_entry("S")
    )


def test_any_join_fires_once_per_round_when_the_slow_branch_lags_a_round_behind(tmp_path: Path) -> None:
    fired: list[str] = []
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = _loop(fired).run_sync("go", store=store)
    assert res.status == "completed", res.reason
    assert fired == ["F:round1", "F:round2", "F:round3"]  # G's messages are each one round late
    events = store.load_events(res.run_id)
    _turns_consistent(events)
    dropped = [e.payload for e in events if e.kind == "InputDropped"]
    assert len(dropped) == 3 and all(d["node"] == "K" and "late arrival from 'G'" in d["reason"] for d in dropped)


def test_resumed_loop_keeps_any_join_rounds(tmp_path: Path) -> None:
    # cancelled while round 2 is under way, then resumed: the rebuilt rounds drop G's late messages the same way
    fired: list[str] = []
    store = SQLiteRunStore(tmp_path / "runs.sqlite")

    async def main() -> tuple[str, str]:
        wf = _loop(fired, slow_s=0.3)
        run = wf.start("go", store=store)
        while len(fired) < 2:
            await asyncio.sleep(0.005)
        run.cancel()
        first = await run.result()
        assert first.status == "cancelled"
        again = await resume(run.run_id, _loop(fired, slow_s=0.3), store)
        return again.status, again.reason

    status, reason = asyncio.run(main())
    assert status == "completed", reason
    assert [t for t in fired if t.startswith("F:")] == fired and len(fired) == 3, fired


def test_any_join_fires_once_when_one_predecessor_returns_several_messages(tmp_path: Path) -> None:
    fired: list[str] = []

    async def f(m: Message) -> list[Message]:
        await asyncio.sleep(0.01)
        return [TextMessage(text="F1"), TextMessage(text="F2")]

    async def g(m: Message) -> Message:
        await asyncio.sleep(0.2)
        return TextMessage(text="G")

    def k(m: Message) -> Message:
        fired.append(m.text)  # type: ignore[attr-defined]
        return TextMessage(text="k")

    wf = (
        Workflow("multi")
        .add_node("S", lambda m: TextMessage(text="s"))
        .add_node("F", f)
        .add_node("G", g)
        .add_node("K", k, join="any")
        .add_edge("S", "F")
        .add_edge("S", "G")
        .add_edge("F", "K")
        .add_edge("G", "K")
    )
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = wf.run_sync("go", store=store)
    assert res.status == "completed" and fired == ["F1"]
    dropped = [e.payload for e in store.load_events(res.run_id) if e.kind == "InputDropped"]
    assert sorted(d["messages"][0] for d in dropped) == sorted(
        m.id
        for m in res.messages
        if isinstance(m, TextMessage) and m.text in ("F2", "G")  # type: ignore[attr-defined]
    )


def _branching(condition: object) -> Workflow:
    async def slow(m: Message) -> Message:
        await asyncio.sleep(0.05)
        return TextMessage(text="b")

    return (
        Workflow("route")
        .add_node("S", lambda m: TextMessage(text="s"))
        .add_node("A", lambda m: TextMessage(text="a"))
        .add_node("B", slow)
        .add_node("C", lambda m: TextMessage(text="c"))
        .add_edge("S", "A")
        .add_edge("S", "B")
        .add_edge("A", "C", condition=condition)  # type: ignore[arg-type]
    )


def _raises(m: Message) -> bool:
    raise ValueError("bad condition")


def test_a_condition_that_raises_fails_its_turn_in_the_log(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = _branching(_raises).run_sync("go", store=store)
    assert res.status == "failed" and res.reason == "edge A → C: condition raised ValueError: bad condition"
    events = store.load_events(res.run_id)
    a_done = [e.payload for e in events if e.kind == "NodeFinished" and e.payload["turn_id"] == "A:1"]
    assert len(a_done) == 1
    assert a_done[0]["status"] == "failed" and a_done[0]["reason"] == res.reason and a_done[0]["routed"] == []
    assert events[-1].kind == "RunFinished"


def test_a_condition_that_returns_an_awaitable_fails_the_run_clearly(tmp_path: Path) -> None:
    async def approved(m: Message) -> bool:
        return False

    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        res = _branching(lambda m: approved(m)).run_sync("go", store=store)
    assert res.status == "failed"
    assert "edge A → C: condition returned an awaitable (coroutine)" in res.reason
    assert not any(isinstance(m, TextMessage) and m.text == "c" for m in res.messages)  # type: ignore[attr-defined]


CONSTANT = TextMessage(text="always the same")


def test_a_message_a_function_returns_is_not_changed_by_the_run(tmp_path: Path) -> None:
    wf = Workflow("const").add_node("F", lambda m: CONSTANT)
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    first = wf.run_sync("go", store=store)
    second = wf.run_sync("go", store=store)
    assert CONSTANT.source is None and CONSTANT.run_id is None
    assert first.output is not None and first.output.run_id == first.run_id and first.output.source == "F"
    assert second.output is not None and second.output.run_id == second.run_id


def test_a_loop_that_does_not_pass_through_the_any_join_gives_it_a_round_per_iteration() -> None:
    # S loops on itself three times and forks to F (fast) and G (slow) each time: each S turn starts a round of J
    fired: list[str] = []
    count = [0]

    def s(m: Message) -> Message:
        count[0] += 1
        return TextMessage(text=f"s{count[0]}")

    async def f(m: Message) -> Message:
        await asyncio.sleep(0.01)
        return TextMessage(text="F:" + m.text)  # type: ignore[attr-defined]

    async def g(m: Message) -> Message:
        await asyncio.sleep(0.05)
        return TextMessage(text="G:" + m.text)  # type: ignore[attr-defined]

    def j(m: Message) -> Message:
        fired.append(m.text)  # type: ignore[attr-defined]
        return TextMessage(text="j")

    wf = (
        Workflow("side-loop")
        .add_node("S", s, max_visits=3)
        .add_node("F", f)
        .add_node("G", g)
        .add_node("J", j, join="any")
        .add_edge("S", "F")
        .add_edge("S", "G")
        .add_edge("F", "J")
        .add_edge("G", "J")
        .add_edge("S", "S", condition=lambda m: int(m.text[1:]) < 3)  # type: ignore[attr-defined]
        .set_entry("S")
    )
    res = wf.run_sync("go", store=MemoryRunStore())
    assert res.status == "completed" and fired == ["F:s1", "F:s2", "F:s3"]


def test_a_loop_through_the_any_join_alone_fires_it_each_time_round() -> None:
    # E forks to F and G (slow); K fires on F, drops G; then K -> F -> K loops twice more with no fork in between
    fired: list[str] = []

    async def f(m: Message) -> Message:
        await asyncio.sleep(0.01)
        return TextMessage(text="F")

    async def g(m: Message) -> Message:
        await asyncio.sleep(0.2)
        return TextMessage(text="G")

    def k(m: Message) -> Message:
        fired.append(m.text)  # type: ignore[attr-defined]
        return TextMessage(text=f"k{len(fired)}")

    wf = (
        Workflow("k-loop")
        .add_node("E", lambda m: TextMessage(text="e"))
        .add_node("F", f, max_visits=3, join="any")
        .add_node("G", g)
        .add_node("K", k, join="any")
        .add_edge("E", "F")
        .add_edge("E", "G")
        .add_edge("F", "K")
        .add_edge("G", "K")
        .add_edge("K", "F", condition=lambda m: int(m.text[1:]) < 3)  # type: ignore[attr-defined]
        .set_entry("E")
    )
    res = wf.run_sync("go", store=MemoryRunStore())
    assert res.status == "completed" and fired == ["F", "F", "F"]


def _fn(name: str, delay: float, log: list[tuple[str, str]]) -> object:
    async def node(m: Message) -> Message:
        await asyncio.sleep(delay)
        log.append((name, m.text))  # type: ignore[attr-defined]
        return TextMessage(text=f"{name}({m.text})")  # type: ignore[attr-defined]

    return node


def test_a_side_loop_iteration_that_sends_to_one_branch_only_still_starts_a_round() -> None:
    # S loops three times; only its first output goes to B (a condition): the third iteration routes to A alone,
    # and S's edges split towards J outside its loop, so it is still a new round of J
    log: list[tuple[str, str]] = []
    count = [0]

    def s(m: Message) -> Message:
        count[0] += 1
        return TextMessage(text=f"s{count[0]}")

    wf = (
        Workflow("side")
        .add_node("S", s, max_visits=3)
        .add_node("A", _fn("A", 0.01, log))
        .add_node("B", _fn("B", 0.05, log))
        .add_node("J", _fn("J", 0.0, log), join="any")
        .add_edge("S", "S", condition=lambda m: int(m.text[1:]) < 3)  # type: ignore[attr-defined]
        .add_edge("S", "A")
        .add_edge("S", "B", condition=lambda m: m.text == "s1")  # type: ignore[attr-defined]
        .add_edge("A", "J")
        .add_edge("B", "J")
        .set_entry("S")
    )
    assert wf.run_sync("go", store=MemoryRunStore()).status == "completed"
    assert [t for n, t in log if n == "J"] == ["A(s1)", "A(s2)", "A(s3)"]


def test_an_entry_any_join_feeds_back_from_its_input_turn_too() -> None:
    # J is an entry (fires on the input) and loops J -> A -> J once; S -> B -> J runs alongside: J fires on the
    # input, on B's message (the first of round 0) and on what comes back from its own input turn
    log: list[tuple[str, str]] = []
    wf = (
        Workflow("entry-any")
        .add_node("J", _fn("J", 0.0, log), join="any", max_visits=5)
        .add_node("A", _fn("A", 0.2, log))
        .add_node("S", _fn("S", 0.0, log))
        .add_node("B", _fn("B", 0.01, log))
        .add_edge("J", "A", condition=lambda m: m.text == "J(go)")  # type: ignore[attr-defined]
        .add_edge("A", "J")
        .add_edge("S", "B")
        .add_edge("B", "J")
        .set_entry("J", "S")
    )
    assert wf.run_sync("go", store=MemoryRunStore()).status == "completed"
    assert sorted(t for n, t in log if n == "J") == ["A(J(go))", "B(S(go))", "go"]


def test_an_exhausted_any_join_redirects_one_message_per_round(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    count = [0]

    def s(m: Message) -> Message:
        count[0] += 1
        return TextMessage(text=f"s{count[0]}")

    def build() -> Workflow:
        return (
            Workflow("exhausted")
            .add_node("S", s, max_visits=3)
            .add_node("A", _fn("A", 0.01, log))
            .add_node("B", _fn("B", 0.05, log))
            .add_node("J", _fn("J", 0.0, log), join="any", max_visits=1, on_exhausted="X")
            .add_node("X", _fn("X", 0.0, log))
            .add_edge("S", "S", condition=lambda m: int(m.text[1:]) < 2)  # type: ignore[attr-defined]
            .add_edge("S", "A")
            .add_edge("S", "B")
            .add_edge("A", "J")
            .add_edge("B", "J")
            .set_entry("S")
        )

    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = build().run_sync("go", store=store)
    assert res.status == "completed"
    assert [t for n, t in log if n == "J"] == ["A(s1)"] and [t for n, t in log if n == "X"] == ["A(s2)"]
    dropped = [e.payload for e in store.load_events(res.run_id) if e.kind == "InputDropped"]
    assert len([d for d in dropped if "late" in d["reason"]]) == 2  # B(s1) and B(s2)
