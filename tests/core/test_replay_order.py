"""Replay of unchanged workflows reports no divergence where turns ran concurrently (any-joins, token
budgets) or where the run was resumed with larger budgets; a node that is gone is reported, not a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tq_agents import Agent, Message, SQLiteRunStore, TextMessage, Workflow, replay, resume
from tq_agents.models.base import ChatModel
from tq_agents.testing import ScriptedModel, call

pytestmark = pytest.mark.timeout(60)


def _any_join(model: ChatModel | None) -> Workflow:
    return (
        Workflow("any", model=model)
        .add_node("S", lambda m: TextMessage(text="s"))
        .add_node(Agent("F", "f"))
        .add_node(Agent("G", "g"))
        .add_node(Agent("K", "k"), join="any")
        .add_edge("S", "F")
        .add_edge("S", "G")
        .add_edge("F", "K")
        .add_edge("G", "K")
    )


def test_replay_of_an_any_join_follows_the_recorded_arrival_order(tmp_path: Path) -> None:
    # recorded: G (fast) reached K first; replayed answers come at once, so F (started first) would finish
    # first and K would fire on F's message unless turns complete in the recorded order
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    model = ScriptedModel({"F": ["from F"], "G": ["from G"], "K": ["k done"]}, latency={"F": 0.15, "G": 0.01})
    res = _any_join(model).run_sync("x", store=store)
    assert [r.messages[-1].content for r in model.requests if r.agent == "K"] == ["from G"]
    report = asyncio.run(replay(res.run_id, _any_join(None), store))
    assert report.divergence is None and report.status == "completed"


async def _slow_tool(x: int) -> str:
    """Look a value up.

    Args:
        x: The value.
    """
    await asyncio.sleep(0.05)
    return f"r{x}"


def _fan(model: ChatModel | None) -> Workflow:
    wf = Workflow("fan", model=model).add_node("S", lambda m: TextMessage(text="go"))

    async def join(ms: list[Message]) -> Message:
        return TextMessage(text="|".join(m.text for m in ms))  # type: ignore[attr-defined]

    wf.add_node("J", join)
    for i in range(3):
        wf.add_node(Agent(f"a{i}", "you", tools=[_slow_tool])).add_edge("S", f"a{i}").add_edge(f"a{i}", "J")
    return wf.set_entry("S")


def _script() -> ScriptedModel:
    return ScriptedModel({f"a{i}": [call("_slow_tool", x=i), f"ans{i}"] for i in range(3)}, latency=0.01)


def test_replay_of_a_run_stopped_by_its_token_budget_while_turns_ran_together(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = _fan(_script()).run_sync("x", store=store, max_tokens=20)
    assert res.status == "max_tokens"
    report = asyncio.run(replay(res.run_id, _fan(None), store))
    assert report.divergence is None and report.status == "max_tokens"


@pytest.mark.parametrize(
    ("small", "large"),
    [({"max_turns": 3}, {"max_turns": 100}), ({"max_tokens": 20}, {"max_tokens": 10_000})],
)
def test_replay_of_a_run_resumed_with_a_larger_budget(
    tmp_path: Path, small: dict[str, int], large: dict[str, int]
) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    first = _fan(_script()).run_sync("x", store=store, **small)
    assert first.status in ("max_turns", "max_tokens")
    model = ScriptedModel({f"a{i}": [f"ans{i}"] for i in range(3)}, default="ans")
    again = asyncio.run(resume(first.run_id, _fan(model), store, **large))
    assert again.status == "completed"
    report = asyncio.run(replay(first.run_id, _fan(None), store))
    assert report.divergence is None and report.status == "completed"


def test_replay_with_a_node_removed_reports_it(tmp_path: Path) -> None:
    def build(with_b: bool) -> Workflow:
        wf = Workflow("gone").add_node(Agent("a", "A"))
        if with_b:
            wf.add_node(Agent("b", "B")).add_edge("a", "b")
        return wf.set_entry("a")

    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = build(True).run_sync("x", store=store, model=ScriptedModel({"a": ["yes"], "b": ["bb"]}))
    report = asyncio.run(replay(res.run_id, build(False), store))
    assert report.divergence is not None
    assert (report.divergence.turn_id, report.divergence.what) == ("b:1", "recorded node is not in the workflow")
