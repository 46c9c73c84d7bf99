"""``tq_agents.testing.ScriptedModel`` and what a scripted run leaves behind: scripts given in the wrong shape,
deterministic tool-call ids, non-JSON values, ``'*'``, scripted errors; and runs whose messages hold non-finite
floats or aliased fields (their logs load, resume and replay), cached-token accounting, ``RunResult.output``."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from tq_agents import (
    Agent,
    AgentTurnError,
    ConfigError,
    MemoryRunStore,
    Message,
    ModelRequestError,
    Review,
    RunFinished,
    SQLiteRunStore,
    TextMessage,
    ToolCallStarted,
    TransientModelError,
    UserInput,
    Workflow,
    replay,
    resume,
    tool,
)
from tq_agents._record import RunRecord
from tq_agents.events import MessageEmitted, event_from_stored
from tq_agents.models.base import ChatMessage, ChatRequest, ChatResponse, ToolCall, Usage
from tq_agents.scheduler import RunResult
from tq_agents.testing import ScriptedModel, call

pytestmark = pytest.mark.timeout(60)


def _req(agent: str | None = "a", text: str = "hi") -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)], agent=agent)


def _complete(model: ScriptedModel, agent: str | None = "a") -> ChatResponse:
    return asyncio.run(model.complete(_req(agent)))


async def _interrupted(wf: Workflow, store: SQLiteRunStore, stop_at: str) -> RunResult:
    """Start ``wf`` and cancel it as soon as node ``stop_at`` starts (a resumable, interrupted log)."""
    run = wf.start("go", store=store)
    async for ev in run.events():
        if ev.kind == "NodeStarted" and ev.node == stop_at:  # type: ignore[attr-defined]
            run.cancel("interrupted by the test")
    return await run.result()


def _loaded(store: SQLiteRunStore, run_id: str) -> list[Any]:
    return [event_from_stored(s.run_id, s.seq, s.ts, s.kind, s.payload) for s in store.load_events(run_id)]


# ---- finding 1: non-finite floats in a message --------------------------------------------------------------


class _Score(Message):
    type_name: ClassVar[str] = "TestingApiScore"

    value: float
    ratio: float
    by_key: dict[str, float] = Field(default_factory=dict)


def _score(m: TextMessage) -> _Score:
    return _Score(value=float("inf"), ratio=float("nan"), by_key={"low": float("-inf")})


def _scored(model: ScriptedModel) -> Workflow:
    return Workflow("nan", model=model).add_node("score", _score).add_node(Agent("b")).add_edge("score", "b")


def _is_score(m: Any) -> bool:
    return (
        isinstance(m, _Score)
        and m.value == math.inf
        and math.isnan(m.ratio)
        and m.by_key == {"low": -math.inf}
        and m.source == "score"
    )


def test_a_message_with_inf_and_nan_keeps_its_values_in_the_log_resume_and_replay(tmp_path: Path) -> None:
    db = tmp_path / "nan.sqlite"
    store = SQLiteRunStore(db)
    first = asyncio.run(_interrupted(_scored(ScriptedModel({"b": ["ok"]}, latency={"b": 5})), store, "b"))
    assert first.status == "cancelled"
    emitted = [e for e in _loaded(store, first.run_id) if isinstance(e, MessageEmitted)]
    assert len(emitted) == 1 and _is_score(emitted[0].message)
    record = RunRecord.load(store, first.run_id)
    assert _is_score(record.turns["score:1"].outputs[0])
    store.close()

    done = asyncio.run(resume(first.run_id, _scored(ScriptedModel({"b": ["ok"]})), db))
    assert done.status == "completed" and done.output is not None and done.output.text == "ok"  # type: ignore[attr-defined]
    assert [m for m in done.messages if _is_score(m)]
    again = asyncio.run(resume(first.run_id, _scored(ScriptedModel()), db))  # the recorded end, rebuilt
    assert again.status == "completed" and [m for m in again.messages if _is_score(m)]

    report = asyncio.run(replay(first.run_id, _scored(ScriptedModel()), db))  # the log loads for a replay
    assert report.recorded_status == "completed" and report.turns_compared >= 1


def test_a_message_with_nan_replays_without_divergence(tmp_path: Path) -> None:
    db = tmp_path / "nan.sqlite"
    res = _scored(ScriptedModel(default="ok")).run_sync("go", store=str(db))
    assert res.status == "completed"
    report = asyncio.run(replay(res.run_id, _scored(ScriptedModel()), db))
    assert not report.diverged, report.divergence


def test_a_message_with_inf_replays_without_divergence(tmp_path: Path) -> None:
    def only_inf(m: TextMessage) -> _Score:
        return _Score(value=float("inf"), ratio=-math.inf)

    def build() -> Workflow:
        return Workflow("inf", model=ScriptedModel(default="ok")).add_node("score", only_inf)

    db = tmp_path / "inf.sqlite"
    res = build().run_sync("go", store=str(db))
    assert res.status == "completed" and res.output.value == math.inf  # type: ignore[union-attr]
    report = asyncio.run(replay(res.run_id, build(), db))
    assert not report.diverged, report.divergence


# ---- finding 2: aliased fields -------------------------------------------------------------------------------


class _Ticket(Message):
    """A ticket with a field named by a Python keyword."""

    type_name: ClassVar[str] = "TestingApiTicket"

    from_: str = Field(alias="from")
    prio: int = 1


def _ticketing(model: ScriptedModel) -> Workflow:
    return (
        Workflow("alias", model=model).add_node(Agent("a", output_type=_Ticket)).add_node(Agent("b")).add_edge("a", "b")
    )


def test_an_agent_with_an_aliased_output_type_is_scripted_by_alias_or_by_instance() -> None:
    ticket = asyncio.run(
        Agent("a", model=ScriptedModel({"a": [{"from": "bob", "prio": 2}]}), output_type=_Ticket).run("x")
    )
    assert isinstance(ticket, _Ticket) and ticket.from_ == "bob" and ticket.prio == 2

    model = ScriptedModel({"a": [_Ticket(**{"from": "ann"})]})
    ticket = asyncio.run(Agent("a", model=model, output_type=_Ticket).run("x"))
    assert isinstance(ticket, _Ticket) and ticket.from_ == "ann"
    # the scripted answer is what a model following the schema writes: by alias
    assert json.loads(_complete(ScriptedModel([_Ticket(**{"from": "ann"})])).message.content or "") == {
        "from": "ann",
        "prio": 1,
    }
    assert "from" in _Ticket.payload_schema()["properties"]


def test_a_run_with_an_aliased_message_loads_resumes_and_replays(tmp_path: Path) -> None:
    db = tmp_path / "alias.sqlite"
    store = SQLiteRunStore(db)
    first = asyncio.run(
        _interrupted(_ticketing(ScriptedModel({"a": [{"from": "bob"}], "b": ["ok"]}, latency={"b": 5})), store, "b")
    )
    assert first.status == "cancelled"
    emitted = [e for e in _loaded(store, first.run_id) if isinstance(e, MessageEmitted)]
    assert [(type(e.message), e.message.from_) for e in emitted] == [(_Ticket, "bob")]  # type: ignore[attr-defined]
    RunRecord.load(store, first.run_id)
    store.close()

    done = asyncio.run(resume(first.run_id, _ticketing(ScriptedModel({"b": ["ok"]})), db))
    assert done.status == "completed"
    assert [m.from_ for m in done.messages if isinstance(m, _Ticket)] == ["bob"]
    report = asyncio.run(replay(first.run_id, _ticketing(ScriptedModel()), db))
    assert not report.diverged, report.divergence


# ---- finding 3: a script in the wrong shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scripts", "match"),
    [
        ({"a": "The answer"}, r"agent 'a'.*list of steps.*got str"),
        ({"a": b"bytes"}, r"agent 'a'.*got bytes"),
        ({"a": {"verdict": "approve"}}, r"agent 'a'.*got dict"),
        ({"a": call("t", x=1)}, r"agent 'a'.*got ToolCall"),
        ({"a": Review(verdict="approve")}, r"agent 'a'.*got Review"),
        ({"a": TransientModelError("429")}, r"agent 'a'.*got TransientModelError"),
        ("hello", r"scripts must be a list of steps.*got str"),
        (b"hello", r"scripts must be a list of steps.*got bytes"),
        (Review(verdict="approve"), r"scripts must be a list of steps.*got Review"),
        (call("t"), r"scripts must be a list of steps.*got ToolCall"),
        (lambda r: "x", r"scripts must be a list of steps.*got function"),
    ],
)
def test_a_script_that_is_not_a_list_of_steps_is_refused(scripts: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        ScriptedModel(scripts)
    assert e.value.hint is not None and "[...]" in e.value.hint


@pytest.mark.parametrize(
    ("default", "match"),
    [
        (["a", "b"], r"default: a list step holds tool calls only.*\[0\] is str"),
        ([], r"default: an empty list"),
        (b"x", r"default: cannot use a step of type bytes"),
    ],
)
def test_a_default_that_is_not_one_step_is_refused(default: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ScriptedModel(default=default)


def test_steps_of_an_unknown_type_are_refused_when_the_model_is_built() -> None:
    class Plain(BaseModel):
        a: int

    with pytest.raises(ConfigError, match=r"scripts\['a'\]\[1\]: cannot use a step of type Plain"):
        ScriptedModel({"a": ["ok", Plain(a=1)]})
    with pytest.raises(ConfigError, match=r"scripts\[0\]: a list step holds tool calls only.*\[1\] is str"):
        ScriptedModel([[call("t"), "text"]])


def test_a_list_and_a_tuple_of_steps_still_work() -> None:
    assert _complete(ScriptedModel({"a": ("one",)})).message.content == "one"
    assert _complete(ScriptedModel(["one"])).message.content == "one"


# ---- finding 4: cached prompt tokens --------------------------------------------------------------------------


def _cached_response(cached: int) -> ChatResponse:
    return ChatResponse(
        message=ChatMessage(role="assistant", content="ok"),
        usage=Usage(prompt_tokens=100, completion_tokens=5, cached_prompt_tokens=cached),
    )


def test_run_usage_counts_cached_prompt_tokens(tmp_path: Path) -> None:
    model = ScriptedModel({"a": [_cached_response(80)], "b": [_cached_response(30)]})
    wf = Workflow("c", model=model).add_node(Agent("a")).add_node(Agent("b")).add_edge("a", "b")
    store = SQLiteRunStore(tmp_path / "c.sqlite")

    async def go() -> tuple[RunResult, list[Any], int]:
        run = wf.start("x", store=store)
        events = [e async for e in run.events()]
        res = await run.result()
        return res, events, run.usage.cached_prompt_tokens

    res, events, run_cached = asyncio.run(go())
    assert res.usage == Usage(prompt_tokens=200, completion_tokens=10, cached_prompt_tokens=110)
    assert run_cached == 110
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert finished[0].cached_prompt_tokens == 110
    assert next(e for e in _loaded(store, res.run_id) if isinstance(e, RunFinished)).cached_prompt_tokens == 110
    again = asyncio.run(resume(res.run_id, wf, store))  # a finished run: its result is rebuilt from RunFinished
    assert again.usage.cached_prompt_tokens == 110
    store.close()


def test_a_resumed_run_counts_the_cached_tokens_of_the_log(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"

    def build(latency: float) -> Workflow:
        model = ScriptedModel({"a": [_cached_response(80)], "b": [_cached_response(30)]}, latency={"b": latency})
        return Workflow("r", model=model).add_node(Agent("a")).add_node(Agent("b")).add_edge("a", "b")

    store = SQLiteRunStore(db)
    first = asyncio.run(_interrupted(build(5), store, "b"))
    store.close()
    assert first.status == "cancelled" and first.usage.cached_prompt_tokens == 80
    done = asyncio.run(resume(first.run_id, build(0), db))
    assert done.status == "completed" and done.usage.cached_prompt_tokens == 110


# ---- finding 5: RunResult.output -----------------------------------------------------------------------------


def test_run_result_output_rule_is_documented_and_holds() -> None:
    doc = RunResult.__doc__ or ""
    assert "sink" in doc and "last" in doc and "failed" in doc
    # a failed run still reports the last message made (here an intermediate one)
    model = ScriptedModel({"w": ["draft"], "r": ["not json"] * 3})
    wf = Workflow("f", model=model).add_node(Agent("w")).add_node(Agent("r", output_type=Review)).add_edge("w", "r")
    res = wf.run_sync("x", store=MemoryRunStore())
    assert res.status == "failed" and res.output is not None and res.output.source == "w"


# ---- finding 6: tool-call ids depend on the script only ------------------------------------------------------


@tool
def _echo(x: int) -> int:
    """Echo x.

    Args:
        x: A number.
    """
    return x


def _tool_keys() -> list[str]:
    model = ScriptedModel({"a": [[call("_echo", x=1), call("_echo", x=2)], call("_echo", x=3), "done"]})
    wf = Workflow("ids", model=model).add_node(Agent("a", tools=[_echo]))

    async def go() -> list[str]:
        run = wf.start("x", store=MemoryRunStore())
        return [e.key for e in [e async for e in run.events()] if isinstance(e, ToolCallStarted)]

    return asyncio.run(go())


def test_tool_call_ids_are_the_same_whatever_ran_before() -> None:
    first = _tool_keys()
    call("_echo", x=9)  # another test building calls in between
    assert first == _tool_keys() == ["0:call_0", "0:call_1", "1:call_0"]


def test_a_repeated_call_step_gets_fresh_ids_and_arguments() -> None:
    c = call("t", items=[1])
    model = ScriptedModel(default=c)
    r1, r2 = _complete(model), _complete(model)
    t1, t2 = r1.message.tool_calls[0], r2.message.tool_calls[0]
    assert t1.id == t2.id == "call_0"
    assert t1.arguments == {"items": [1]} and t1.arguments is not c.arguments
    t1.arguments["items"].append(2)  # an agent or tool that changes its arguments changes neither the script ...
    assert c.arguments == {"items": [1]} and t2.arguments == {"items": [1]}  # ... nor another response
    assert type(t1) is ToolCall  # a plain ToolCall, as a backend gives


def test_an_explicit_tool_call_id_is_kept() -> None:
    r = _complete(ScriptedModel([[ToolCall(id="mine", name="t"), call("t")]]))
    assert [c.id for c in r.message.tool_calls] == ["mine", "call_1"]


def test_call_in_a_scripted_chat_response_gets_numbered() -> None:
    resp = ChatResponse(message=ChatMessage(role="assistant", content="", tool_calls=[call("t"), call("u")]))
    r = _complete(ScriptedModel([resp]))
    assert [c.id for c in r.message.tool_calls] == ["call_0", "call_1"]


# ---- finding 7: values that are not JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [datetime.date(2024, 1, 2), decimal.Decimal("1.5"), {1, 2}, b"ab", float("nan")], ids=repr
)
def test_tool_arguments_that_are_not_json_do_not_break_token_counting(value: Any) -> None:
    r = _complete(ScriptedModel([call("t", v=value)]))
    assert r.finish_reason == "tool_calls" and r.usage.completion_tokens > 0


def test_a_dict_step_that_cannot_be_json_is_refused_naming_agent_and_step() -> None:
    with pytest.raises(ConfigError, match=r"scripts\['a'\]\[1\]: a dict step must be JSON.*date"):
        ScriptedModel({"a": ["ok", {"when": datetime.date(2024, 1, 2)}]})
    model = ScriptedModel({"a": [lambda r: {"when": datetime.date(2024, 1, 2)}]})
    with pytest.raises(ModelRequestError, match=r"agent 'a'.*scripts\['a'\]\[0\].*JSON") as e:
        _complete(model)
    assert e.value.hint


# ---- finding 9: '*' means any agent --------------------------------------------------------------------------


def test_star_latency_applies_to_every_agent_without_its_own() -> None:
    model = ScriptedModel(default="x", latency={"*": 0.2, "fast": 0.0})
    t0 = time.perf_counter()
    _complete(model, "a")
    assert time.perf_counter() - t0 >= 0.19
    t0 = time.perf_counter()
    _complete(model, "fast")
    assert time.perf_counter() - t0 < 0.15


def test_remaining_counts_the_script_an_agent_draws_from() -> None:
    model = ScriptedModel(["x", "y", "z"])
    _complete(model, "a")
    assert model.remaining("a") == model.remaining() == 2
    model = ScriptedModel({"a": ["1"], "*": ["s1", "s2"]})
    assert model.remaining("a") == 1 and model.remaining("other") == 2


# ---- finding 10: events of turns stopped mid-way (documented) ------------------------------------------------


def test_open_turns_at_run_finished_are_documented() -> None:
    import tq_agents.events as events

    assert "RunFinished" in (events.__doc__ or "") and "rerun" in (events.__doc__ or "")
    assert "stopped" in (events.NodeFinished.__doc__ or "")
    assert "re-open" in (events.RunResumed.__doc__ or "")


# ---- finding 11: retries in tests; hints -----------------------------------------------------------------------


def test_testing_docs_say_how_to_test_retries_quickly() -> None:
    import tq_agents.testing as testing

    assert "initial_s=0" in (testing.__doc__ or "")


def test_agent_run_error_carries_the_model_errors_hint() -> None:
    model = ScriptedModel({"x": [ModelRequestError("401 unauthorized", hint="set OPENAI_API_KEY")]})
    with pytest.raises(AgentTurnError) as e:
        asyncio.run(Agent("x", model=model).run("hi"))
    assert e.value.hint is not None and "set OPENAI_API_KEY" in e.value.hint
    assert "401 unauthorized" in e.value.message


def test_run_turn_reports_the_hint() -> None:
    model = ScriptedModel({"x": [ModelRequestError("bad", hint="do this")]})
    res = asyncio.run(Agent("x", model=model).run_turn([UserInput(text="hi")]))
    assert res.status == "failed" and res.hint == "do this"


# ---- finding 12: scripted exceptions, empty list steps -------------------------------------------------------


def test_a_scripted_exception_does_not_grow_its_traceback() -> None:
    err = TransientModelError("429")
    model = ScriptedModel(default=err)
    depths = []
    for _ in range(3):
        with pytest.raises(TransientModelError, match="429") as e:
            _complete(model)
        depths.append(len(traceback.extract_tb(e.value.__traceback__)))
    assert depths[0] == depths[1] == depths[2]
    assert err.__traceback__ is None  # the scripted object itself is never raised


def test_an_empty_list_step_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"scripts\['x'\]\[0\]: an empty list"):
        ScriptedModel({"x": [[], "fine"]})
    model = ScriptedModel({"x": [lambda r: []]})
    with pytest.raises(ModelRequestError, match=r"agent 'x'.*an empty list"):
        _complete(model, "x")
