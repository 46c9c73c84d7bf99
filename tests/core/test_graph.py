"""Workflow builder: every validation error names its node or edge; Mermaid export."""

from __future__ import annotations

import pytest

from tq_agents import Agent, Message, Plan, Review, TextMessage, Workflow, WorkflowValidationError
from tq_agents.testing import ScriptedModel

model = ScriptedModel()


def agent(name: str, out: type[Message] = TextMessage) -> Agent:
    return Agent(name, model=model, output_type=out)


def problems(wf: Workflow) -> list[str]:
    with pytest.raises(WorkflowValidationError) as exc:
        wf.validate()
    assert str(exc.value).startswith("workflow is invalid:")
    return exc.value.problems


def test_valid_workflow_validates_and_returns_self() -> None:
    wf = Workflow("ok").add_node(agent("a")).add_node(agent("b")).add_edge("a", "b")
    assert wf.validate() is wf
    assert wf.entry_nodes() == ["a"]


def test_duplicate_names() -> None:
    wf = Workflow().add_node(agent("a")).add_node(agent("a"))
    assert problems(wf) == ["node 'a': duplicate name (each node needs a unique name)"]


def test_unknown_node_in_edge_and_entry() -> None:
    wf = Workflow().add_node(agent("a")).add_edge("a", "ghost").set_entry("a", "nobody")
    ps = problems(wf)
    assert "edge a → ghost: unknown node 'ghost' (add_node it first)" in ps
    assert "entry 'nobody': unknown node" in ps


def test_no_entry() -> None:
    wf = (
        Workflow()
        .add_node(agent("a"), max_visits=2)
        .add_node(agent("b"))
        .add_edge("a", "b")
        .add_edge("b", "a", condition=lambda m: True)
    )
    assert problems(wf) == ["no entry node: every node has a predecessor; call set_entry('name')"]


def test_unreachable_node() -> None:
    wf = Workflow().add_node(agent("a")).add_node(agent("b")).add_node(agent("c")).add_edge("c", "b")
    wf.set_entry("a")
    ps = problems(wf)
    assert "node 'b': unreachable from the entry node(s) a" in ps
    assert "node 'c': unreachable from the entry node(s) a" in ps


def test_incompatible_edge_types() -> None:
    async def needs_review(r: Review) -> TextMessage:
        return TextMessage(text=r.verdict)

    wf = (
        Workflow()
        .add_node(agent("planner", Plan))
        .add_node("check", needs_review)
        .add_node(agent("writer"))
        .add_edge("planner", "check")
        .add_edge("planner", "writer", message_type=Review)
    )
    ps = problems(wf)
    assert "edge planner → check: 'planner' produces Plan but 'check' accepts Review" in ps
    assert "edge planner → writer: filter Review never matches what 'planner' produces (Plan)" in ps


def test_cycle_without_condition_or_bound() -> None:
    wf = (
        Workflow()
        .add_node(agent("coder"))
        .add_node(agent("reviewer", Review))
        .add_edge("coder", "reviewer")
        .add_edge("reviewer", "coder")
        .set_entry("coder")
    )
    ps = problems(wf)
    assert any(p.startswith("cycle ") and "no edge has a condition" in p for p in ps), ps
    assert any(p.startswith("cycle ") and "no node has a visit bound" in p for p in ps), ps
    assert any("coder → reviewer → coder" in p or "reviewer → coder → reviewer" in p for p in ps)


def test_bounded_conditional_cycle_is_valid() -> None:
    wf = (
        Workflow()
        .add_node(agent("coder"), max_visits=3)
        .add_node(agent("reviewer", Review))
        .add_edge("coder", "reviewer")
        .add_edge("reviewer", "coder", condition=lambda r: r.verdict == "revise")
        .set_entry("coder")
    )
    wf.validate()


def test_function_node_join_needs_list() -> None:
    def merge(m: TextMessage) -> TextMessage:
        return m

    wf = (
        Workflow()
        .add_node(agent("a"))
        .add_node(agent("b"))
        .add_node(agent("c"))
        .add_node("merge", merge)
        .add_edge("a", "b")
        .add_edge("a", "c")
        .add_edge("b", "merge")
        .add_edge("c", "merge")
    )
    assert any("node 'merge': joins 2 predecessors with 'all'" in p for p in problems(wf))


def test_bad_options() -> None:
    wf = Workflow().add_node(agent("a"), join="some", max_visits=0, on_exhausted="zz")  # type: ignore[arg-type]
    ps = problems(wf)
    assert "node 'a': join must be 'all' or 'any', got 'some'" in ps
    assert "node 'a': max_visits must be >= 1, got 0" in ps
    assert "node 'a': on_exhausted names unknown node 'zz'" in ps
    assert problems(Workflow()) == ["workflow has no nodes (add_node first)"]


def test_mermaid() -> None:
    def is_revise(r: Review) -> bool:
        return r.verdict == "revise"

    wf = (
        Workflow()
        .add_node(agent("coder"), max_visits=2, on_exhausted="done")
        .add_node(agent("reviewer", Review))
        .add_node(agent("done"))
        .add_edge("coder", "reviewer")
        .add_edge("reviewer", "coder", condition=is_revise)
        .add_edge("reviewer", "done", condition=lambda r: r.verdict == "approve", label="approve")
        .set_entry("coder")
    )
    text = wf.to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    # node ids are n0, n1, ... in the order the nodes were added (unique whatever the names hold)
    assert '    n0["coder<br/>agent → TextMessage (max 2)"]' in lines
    assert "    __start__ --> n0" in lines
    assert '    n1["reviewer<br/>agent → Review"]' in lines
    assert "    n1 -.->|is_revise| n0" in lines
    assert "    n1 -.->|approve| n2" in lines
    assert "    n0 -.->|exhausted| n2" in lines
    assert "    n0 --> n1" in lines


def _step(m: TextMessage) -> TextMessage:
    return m


def test_on_exhausted_circle_is_refused() -> None:
    # a node redirecting to itself, and two redirecting to each other: once all are exhausted, a message
    # would go round for ever (the run used to spin without yielding, so not even deadline_s could stop it)
    itself = (
        Workflow("w")
        .add_node("a", _step, max_visits=2, on_exhausted="a")
        .add_node("b", _step)
        .add_edge("a", "b")
        .add_edge("b", "a", condition=lambda m: True)
        .set_entry("a")
    )
    pair = (
        Workflow("w")
        .add_node("a", _step, max_visits=2, on_exhausted="b")
        .add_node("b", _step, max_visits=1, on_exhausted="a")
        .add_edge("a", "b")
        .add_edge("b", "a", condition=lambda m: True)
        .set_entry("a")
    )
    for wf, path in ((itself, "a → a"), (pair, "a → b → a")):
        with pytest.raises(WorkflowValidationError) as e:
            wf.validate()
        assert [p for p in e.value.problems if "circle" in p] == [
            f"node 'a': on_exhausted redirects in a circle ({path}); once all of them have used their visits a "
            "message would go round for ever: redirect to a node outside the circle"
        ]


def test_unknown_entry_is_reported_once() -> None:
    with pytest.raises(WorkflowValidationError) as e:
        Workflow("w").add_node("a", _step).set_entry("x").validate()
    assert e.value.problems == ["entry 'x': unknown node"]
