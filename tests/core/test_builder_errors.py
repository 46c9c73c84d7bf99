"""Bad input to the workflow builder and to message (de)serialisation: clear errors naming what is wrong."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import warnings
from typing import Any, ClassVar

import pytest

from tq_agents import (
    Agent,
    ConfigError,
    MemoryRunStore,
    Message,
    Review,
    StoreError,
    TextMessage,
    UserError,
    UserInput,
    Workflow,
    WorkflowValidationError,
)
from tq_agents.messages import message_types
from tq_agents.testing import ScriptedModel


def _start(m: UserInput) -> TextMessage:
    return TextMessage(text="go")


def _step(m: TextMessage) -> TextMessage:
    return m


def _problems(wf: Workflow) -> list[str]:
    with pytest.raises(WorkflowValidationError) as exc:
        wf.validate()
    return exc.value.problems


def _two_nodes(**edge: Any) -> Workflow:
    return Workflow("w").add_node("start", _start).add_node("next", _step).add_edge("start", "next", **edge)


# ---- 1. edge conditions ------------------------------------------------------------------------------


async def _async_cond(m: TextMessage) -> bool:
    return False


class _AsyncCallable:
    async def __call__(self, m: TextMessage) -> bool:
        return False


class _SyncCallable:
    def __call__(self, m: TextMessage) -> bool:
        return True


def test_async_condition_is_refused_naming_the_edge() -> None:
    for cond in (_async_cond, _AsyncCallable(), functools.partial(_async_cond)):
        problems = _problems(_two_nodes(condition=cond))
        assert len(problems) == 1, problems
        assert problems[0].startswith("edge start → next: condition")
        assert "async" in problems[0] and "plain sync function" in problems[0]


def test_async_condition_never_runs_as_always_true() -> None:
    wf = _two_nodes(condition=_async_cond)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited": the condition is never called
        with pytest.raises(WorkflowValidationError, match="condition"):
            wf.run_sync("x", store=MemoryRunStore())


@pytest.mark.parametrize("cond", [lambda a, b: True, lambda: True, lambda *, m: True])
def test_condition_with_wrong_arity_is_refused(cond: Any) -> None:
    problems = _problems(_two_nodes(condition=cond))
    assert problems == ["edge start → next: condition must take one argument, the message"]


@pytest.mark.parametrize("cond", [lambda m: True, lambda m, extra=1: True, lambda *a: True, _SyncCallable(), bool])
def test_sync_one_argument_conditions_are_accepted(cond: Any) -> None:
    assert _two_nodes(condition=cond).validate() is not None


# ---- 2. Mermaid ----------------------------------------------------------------------------------------


def _node_ids(text: str) -> dict[str, str]:
    """node label's first part → mermaid id."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r'    (\w+)\["(.*)<br/>.*"\]', line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def test_mermaid_node_ids_are_unique() -> None:
    wf = (
        Workflow("w")
        .add_node("a b", _step)
        .add_node("a_b", _step)
        .add_node("a-b", _step)
        .add_edge("a b", "a_b")
        .add_edge("a_b", "a-b")
    )
    text = wf.to_mermaid()
    ids = _node_ids(text)
    assert len(ids) == 3 and len(set(ids.values())) == 3, text
    assert f"    {ids['a b']} --> {ids['a_b']}" in text.splitlines()
    assert f"    {ids['a_b']} --> {ids['a-b']}" in text.splitlines()
    assert text == wf.to_mermaid()  # deterministic


def _cond(m: TextMessage) -> bool:
    return True


def test_mermaid_escapes_node_text_and_edge_labels() -> None:
    names = ['say "hi"', "x[1]", "a|b", "<b>x</b>", "#35;", "a-->b", "end", "a;b", "line\nbreak"]
    wf = Workflow("w")
    for n in names:
        wf.add_node(n, _step)
    for i, (a, b) in enumerate(itertools.pairwise(names)):
        wf.add_edge(a, b, label='yes|no "q" <x>' if i == 0 else None, condition=_cond if i == 1 else None)
    text = wf.to_mermaid()
    lines = text.splitlines()
    node_lines = [line for line in lines if "<br/>" in line]
    assert len(node_lines) == len(names)
    for line in node_lines:
        m = re.fullmatch(r'    n\d+\["(.*)"\]', line)
        assert m, line
        body = m.group(1).replace("<br/>", "")
        assert not set(body) & set('"|<>\n'), line  # nothing that could end the string or the label
    assert '    n0["say #quot;hi#quot;<br/>function → TextMessage"]' in lines
    assert '    n3["#lt;b#gt;x#lt;/b#gt;<br/>function → TextMessage"]' in lines
    assert '    n4["#35;35;<br/>function → TextMessage"]' in lines  # '#' itself is escaped, so it stays literal
    assert '    n0 -->|"yes#124;no #quot;q#quot; #lt;x#gt;"| n1' in lines
    assert "    n1 -.->|_cond| n2" in lines
    assert len(lines) == 2 + len(names) + 1 + len(names) - 1  # header, start, nodes, entry edge, edges


def test_mermaid_with_non_message_filter_does_not_crash() -> None:
    wf = Workflow("w").add_node("start", _start).add_node("next", _step).add_edge("start", "next", message_type=int)
    assert any("message_type must be Message subclasses" in p for p in wf.problems())
    text = wf.to_mermaid()
    assert "    n0 -->|int| n1" in text.splitlines()
    wf2 = Workflow("w").add_node("s", _start).add_node("n", _step).add_edge("s", "n", message_type=(Review, "Nope"))
    assert "    n0 -->|\"Review/'Nope'\"| n1" in wf2.to_mermaid().splitlines()


# ---- 3. builder arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["3", 2.5, True, False, 3.0])
def test_max_visits_must_be_a_positive_int(bad: Any) -> None:
    wf = Workflow("w").add_node("a", _start, max_visits=bad)
    assert _problems(wf) == [f"node 'a': max_visits must be an int >= 1, got {bad!r}"]


def test_max_visits_int_still_accepted() -> None:
    assert Workflow("w").add_node("a", _start, max_visits=3).validate().node("a").max_visits == 3


def test_node_unknown_name_is_a_user_error_listing_known_nodes() -> None:
    wf = Workflow("w").add_node("start", _start).add_node("next", _step)
    with pytest.raises(UserError) as exc:
        wf.node("nope")
    assert not isinstance(exc.value, KeyError)
    assert "unknown node 'nope'" in exc.value.message
    assert exc.value.hint is not None and "'next'" in exc.value.hint and "'start'" in exc.value.hint
    with pytest.raises(UserError, match="no nodes"):
        Workflow("w").node("x")


def test_add_edge_accepts_the_agents_that_were_added() -> None:
    model = ScriptedModel()
    a, b = Agent("a", model=model), Agent("b", model=model)
    wf = Workflow("w").add_node(a).add_node(b).add_edge(a, b).set_entry(a)
    assert wf.validate() is wf
    assert [(e.source, e.target) for e in wf.edges()] == [("a", "b")]
    assert wf.entry_nodes() == ["a"]


def test_add_edge_accepts_a_function_node_by_its_function() -> None:
    wf = Workflow("w").add_node("start", _start).add_node("next", _step).add_edge(_start, _step)
    assert [(e.source, e.target) for e in wf.edges()] == [("start", "next")]


def test_add_edge_with_agent_not_in_graph_names_it() -> None:
    model = ScriptedModel()
    a, b = Agent("a", model=model), Agent("b", model=model)
    problems = _problems(Workflow("w").add_node(a).add_edge(a, b))
    assert problems == ["edge a → b: unknown node 'b' (add_node it first)"]
    other = Agent("a", model=model)  # same name, a different Agent
    problems = _problems(Workflow("w").add_node(a).add_node(b).add_edge(other, b))
    assert len(problems) == 1 and problems[0].startswith("edge a → b: ")
    assert "is not the Agent added under that name" in problems[0]


def test_add_edge_with_non_node_object_says_what_is_expected() -> None:
    problems = _problems(Workflow("w").add_node("start", _start).add_edge("start", 5))
    assert problems == ["edge start → 5: 5 is not a node: pass a node name (str), or the Agent or function added"]


# ---- 4. Workflow(model=...) ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["qwen-7b", 5, object()])
def test_workflow_model_must_be_a_chat_model(bad: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        Workflow("w", model=bad)
    assert repr(bad)[:40] in exc.value.message and "complete" in exc.value.message
    assert exc.value.hint is not None and "LocalQwen" in exc.value.hint and "OpenAICompatible" in exc.value.hint


def test_workflow_model_none_or_chat_model_accepted() -> None:
    assert Workflow("w").model is None
    m = ScriptedModel()
    assert Workflow("w", model=m).model is m


# ---- 5. run_sync / start in the wrong place ------------------------------------------------------------


def _wf() -> Workflow:
    return Workflow("w", model=ScriptedModel({"a": ["hello"]})).add_node(Agent("a", "x"))


def test_run_sync_inside_running_loop_is_a_user_error_without_stray_coroutine() -> None:
    async def inside() -> None:
        _wf().run_sync("hi", store=MemoryRunStore())

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError) as exc:
            asyncio.run(inside())
    assert exc.value.message == "run_sync() was called inside a running event loop"
    assert exc.value.hint is not None and "await workflow.run(" in exc.value.hint


def test_start_outside_running_loop_is_a_user_error() -> None:
    with pytest.raises(UserError) as exc:
        _wf().start("hi", store=MemoryRunStore())
    assert "start() needs a running event loop" in exc.value.message
    assert exc.value.hint is not None and "run_sync" in exc.value.hint


# ---- 6. reserved message field names -------------------------------------------------------------------


def test_message_field_named_type_is_refused_at_definition() -> None:
    with pytest.raises(UserError) as exc:

        class TicketWithType(Message):
            type: str
            body: str

    assert "TicketWithType" in exc.value.message and "'type'" in exc.value.message
    assert exc.value.hint is not None and "rename" in exc.value.hint
    assert "TicketWithType" not in message_types()


def test_message_field_aliased_type_is_refused_at_definition() -> None:
    from pydantic import Field

    with pytest.raises(UserError, match="'type'"):

        class TicketAliased(Message):
            kind: str = Field(alias="type")


def test_message_other_fields_still_round_trip() -> None:
    class TicketKind(Message):
        type_name: ClassVar[str] = "TicketKind"
        kind: str

    t = TicketKind(kind="bug")
    assert Message.from_json(t.to_json()) == t


# ---- 7. from_dict / from_json given something else -----------------------------------------------------


@pytest.mark.parametrize(
    ("call", "given"),
    [
        (lambda: Message.from_dict(["x"]), "list"),
        (lambda: Message.from_dict(None), "None"),
        (lambda: Message.from_json("[1]"), "list"),
        (lambda: Message.from_json("5"), "int"),
        (lambda: Message.from_json("not json"), "invalid JSON"),
        (lambda: Message.from_json("{bad"), "invalid JSON"),
        (lambda: Message.from_json(b"\xff"), "invalid JSON"),
    ],
)
def test_from_dict_and_from_json_reject_non_objects(call: Any, given: str) -> None:
    with pytest.raises(StoreError) as exc:
        call()
    assert 'a JSON object with a "type" field' in exc.value.message
    assert given in exc.value.message
    assert exc.value.hint


def test_from_dict_without_type_key_says_so() -> None:
    with pytest.raises(StoreError, match='no "type" field'):
        Message.from_dict({"text": "x"})


# ---- 8. docstrings ---------------------------------------------------------------------------------------


def test_public_methods_of_graph_and_messages_have_docstrings() -> None:
    import inspect

    import tq_agents.graph
    import tq_agents.messages

    missing = []
    for mod in (tq_agents.graph, tq_agents.messages):
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(name)
            if not inspect.isclass(obj):
                continue
            for mname, member in vars(obj).items():
                if mname.startswith("_"):
                    continue
                fn = member.__func__ if isinstance(member, staticmethod | classmethod) else member
                fn = fn.fget if isinstance(fn, property) else fn
                if inspect.isfunction(fn) and not (fn.__doc__ or "").strip():
                    missing.append(f"{name}.{mname}")
    assert missing == []


def test_nodes_reached_only_through_chained_redirects_are_reachable() -> None:
    # c is reached from a only through two on_exhausted redirects (a → b → c); c and b were added first
    def f(m: Message) -> Message:
        return m

    wf = (
        Workflow("redirects")
        .add_node("c", f)
        .add_node("b", f, max_visits=1, on_exhausted="c")
        .add_node("a", f, max_visits=1, on_exhausted="b")
        .set_entry("a")
    )
    assert wf.problems() == []


def test_every_redirect_circle_is_reported_once_from_its_first_node() -> None:
    def f(m: Message) -> Message:
        return m

    wf = Workflow("circles").add_node("start", f).set_entry("start")
    for name, to in (("x", "y"), ("p", "q"), ("y", "z"), ("q", "p"), ("z", "x")):
        wf.add_node(name, f, max_visits=1, on_exhausted=to)
    for name in ("x", "p", "y", "q", "z"):
        wf.add_edge("start", name)
    circles = [p for p in wf.problems() if "redirects in a circle" in p]
    assert [c.split(":")[0] for c in circles] == ["node 'x'", "node 'p'"]
    assert "(x → y → z → x)" in circles[0] and "(p → q → p)" in circles[1]
