"""Agent turns with ScriptedModel: tool loop, errors fed back, structured output retries, bounds."""

from __future__ import annotations

import asyncio
import json

import pytest

from tq_agents import AgentTurnError, Review, SupportReply, TextMessage, TransientModelError, UserInput, tool
from tq_agents.agent import Agent, RetryPolicy, TurnContext
from tq_agents.models.base import ChatMessage, ChatResponse, MalformedToolCall
from tq_agents.testing import ScriptedModel, call

pytestmark = pytest.mark.timeout(60)

ORDERS = {"A1001": "shipped"}
calls_made: list[str] = []


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order.

    Args:
        order_id: The order id.
    """
    calls_made.append(order_id)
    if order_id not in ORDERS:
        raise KeyError(order_id)
    return {"order_id": order_id, "status": ORDERS[order_id]}


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_free_text_turn_and_request_shape() -> None:
    model = ScriptedModel({"helper": ["hello there"]})
    agent = Agent("helper", "You help.", model=model, tools=[lookup_order])
    out = run(agent.run("hi"))
    assert isinstance(out, TextMessage) and out.text == "hello there" and out.source == "helper"
    req = model.requests[0]
    assert req.agent == "helper"
    assert [m.role for m in req.messages] == ["system", "user"]
    assert req.messages[0].content == "You help."
    assert req.tools == [lookup_order.schema]
    assert req.response_format is None


def test_tool_loop_feeds_results_and_errors_back() -> None:
    calls_made.clear()
    model = ScriptedModel(
        {
            "support": [
                [call("lookup_order", order_id="A1001"), call("lookup_order", order_ref=7), call("nope")],
                call("lookup_order", order_id="ZZZ"),
                {"answer": "Your order A1001 has shipped.", "actions_taken": ["looked up A1001"]},
            ]
        }
    )
    agent = Agent("support", "Support.", model=model, tools=[lookup_order], output_type=SupportReply)
    res = run(agent.run_turn([UserInput(text="where is A1001?")]))
    assert res.status == "completed", res.reason
    assert isinstance(res.output, SupportReply) and res.output.answer.startswith("Your order")
    assert calls_made == ["A1001", "ZZZ"]  # the invalid call never ran
    second = model.requests[1].messages
    tool_msgs = [m for m in second if m.role == "tool"]
    assert json.loads(tool_msgs[0].content) == {"order_id": "A1001", "status": "shipped"}
    assert "`order_id`: required field is missing" in tool_msgs[1].content
    assert "`order_ref`: unexpected field" in tool_msgs[1].content
    assert "no tool named `nope`" in tool_msgs[2].content
    third = [m for m in model.requests[2].messages if m.role == "tool"]
    assert "KeyError" in third[-1].content
    # structured output: response_format + schema in the system prompt
    assert model.requests[0].response_format["json_schema"]["name"] == "SupportReply"
    assert '"answer"' in model.requests[0].messages[0].content
    assert res.model_calls == 3 and res.tool_calls == 4


def test_malformed_tool_calls_from_backend_are_shown_to_model() -> None:
    bad = ChatResponse(
        message=ChatMessage(role="assistant", content=""),
        tool_call_errors=[MalformedToolCall(index=0, raw="<tool_call>{oops", reason="invalid JSON", name=None)],
    )
    model = ScriptedModel({"a": [bad, "fine"]})
    res = run(Agent("a", model=model).run_turn([UserInput(text="x")]))
    assert res.status == "completed"
    last = model.requests[1].messages[-1]
    assert last.role == "tool" and "could not be used: invalid JSON" in last.content


def test_required_tool_choice_is_kept_until_a_call_is_usable() -> None:
    bad = ChatResponse(
        message=ChatMessage(role="assistant", content=""),
        tool_call_errors=[MalformedToolCall(index=0, raw='<tool_call>{"na', reason="cut off", name=None)],
    )
    model = ScriptedModel({"a": [bad, call("lookup_order", order_id="A1001"), "done"]})
    agent = Agent("a", model=model, tools=[lookup_order], tool_choice="required")
    res = run(agent.run_turn([UserInput(text="x")]))
    assert res.status == "completed" and res.tool_calls == 1
    assert [r.tool_choice for r in model.requests] == ["required", "required", "auto"]


def test_output_validation_error_is_fed_back_then_succeeds() -> None:
    model = ScriptedModel({"rev": ["not json", {"verdict": "maybe"}, '```json\n{"verdict": "approve"}\n```']})
    res = run(Agent("rev", model=model, output_type=Review, max_output_retries=2).run_turn([UserInput(text="x")]))
    assert res.status == "completed"
    assert isinstance(res.output, Review) and res.output.verdict == "approve"
    fb1 = model.requests[1].messages[-1].content
    assert "not valid JSON" in fb1
    fb2 = model.requests[2].messages[-1].content
    assert "`verdict`" in fb2 and "'approve' or 'revise'" in fb2


def test_output_retries_are_bounded() -> None:
    model = ScriptedModel({"rev": [{"verdict": "x"}] * 5})
    agent = Agent("rev", model=model, output_type=Review, max_output_retries=1)
    res = run(agent.run_turn([UserInput(text="x")]))
    assert res.status == "failed" and res.output is None
    assert "after 2 attempt(s)" in res.reason and "`verdict`" in res.reason
    assert len(model.requests) == 2
    with pytest.raises(AgentTurnError, match="no usable `Review`"):
        run(Agent("rev", model=ScriptedModel({"rev": ["{}"] * 3}), output_type=Review, max_output_retries=0).run("x"))


def test_tool_iterations_are_bounded() -> None:
    model = ScriptedModel({"loop": [call("lookup_order", order_id="A1001")] * 10})
    res = run(Agent("loop", model=model, tools=[lookup_order], max_tool_iterations=2).run_turn([UserInput(text="x")]))
    assert res.status == "failed" and "max_tool_iterations=2" in res.reason
    assert len(model.requests) == 3


def test_transient_errors_are_retried_with_backoff() -> None:
    model = ScriptedModel({"a": [TransientModelError("429"), TransientModelError("503"), "ok"]})
    ctx = TurnContext(RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02))
    res = run(Agent("a", model=model).run_turn([UserInput(text="x")], context=ctx))
    assert res.status == "completed" and res.output.text == "ok"  # type: ignore[union-attr]
    model2 = ScriptedModel({"a": [TransientModelError("429")] * 3})
    res2 = run(Agent("a", model=model2).run_turn([UserInput(text="x")], context=ctx))
    assert res2.status == "failed" and "TransientModelError: 429" in res2.reason


def test_history_is_stable_prefix() -> None:
    model = ScriptedModel({"a": ["one", "two"]})
    agent = Agent("a", "sys", model=model)
    first = run(agent.run_turn([UserInput(text="q1")]))
    run(agent.run_turn([UserInput(text="q2")], history=[([UserInput(text="q1")], first.output)]))
    r1, r2 = model.requests
    assert r2.messages[: len(r1.messages)] == r1.messages
    assert [m.content for m in r2.messages] == ["sys", "q1", "one", "q2"]


def test_final_answer_without_tools_after_tool_budget_and_refusal() -> None:
    # tool budget of 1: the second request (after one tool round) and the one after a refused answer go out
    # with tool_choice="none"; without the option every request after the first is "auto"
    script = [call("lookup_order", order_id="A1001"), "not json", {"answer": "shipped", "actions_taken": []}]
    forced = ScriptedModel({"support": list(script)})
    agent = Agent(
        "support",
        "Support.",
        model=forced,
        tools=[lookup_order],
        output_type=SupportReply,
        max_tool_iterations=1,
        tool_choice="required",
        final_answer_without_tools=True,
    )
    res = run(agent.run_turn([UserInput(text="where is A1001?")]))
    assert res.status == "completed", res.reason
    assert [r.tool_choice for r in forced.requests] == ["required", "none", "none"]

    plain_model = ScriptedModel({"support": [call("lookup_order", order_id="A1001"), "not json", {"answer": "x"}]})
    plain = Agent("support", "Support.", model=plain_model, tools=[lookup_order], output_type=SupportReply)
    run(plain.run_turn([UserInput(text="where is A1001?")]))
    assert [r.tool_choice for r in plain_model.requests] == ["auto", "auto", "auto"]

    # a refusal alone (tool budget left) also forces the final answer
    model2 = ScriptedModel({"support": ["nope", {"answer": "ok"}]})
    agent2 = Agent(
        "support", "S.", model=model2, tools=[lookup_order], output_type=SupportReply, final_answer_without_tools=True
    )
    assert run(agent2.run_turn([UserInput(text="q")])).status == "completed"
    assert [r.tool_choice for r in model2.requests] == ["auto", "none"]
