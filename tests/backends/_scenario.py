"""The agent scenario every backend must pass (LocalQwen in-process, OpenAICompatible in both modes).

An ``Agent`` with two tools runs turns with ``tool_choice="required"``; every call the model emits must
validate and execute (the tools count their executions), and a structured-output agent must return a value
of its pydantic type.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from pydantic import Field

from tq_agents import Message, tool
from tq_agents.agent import Agent
from tq_agents.models.base import ChatModel, ChatRequest, ChatResponse

EXECUTED: list[tuple[str, dict[str, Any]]] = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: First addend.
        b: Second addend.
    """
    EXECUTED.append(("add", {"a": a, "b": b}))
    return a + b


@tool
def shout(text: str, times: int = 1) -> str:
    """Repeat a text in capitals.

    Args:
        text: What to shout.
        times: How often.
    """
    EXECUTED.append(("shout", {"text": text, "times": times}))
    return (text.upper() + " ") * max(0, min(times, 3))


class BackendsReport(Message):
    """A small typed report."""

    type_name: ClassVar[str] = "BackendsReport"
    title: str = Field(min_length=1)
    count: int = Field(ge=0)
    ratio: float
    labels: list[str]
    done: bool


class Recorder:
    """Wraps a ChatModel and keeps every response (to check every emitted call).

    Requests without a seed get one (1000, 1001, ... per Recorder): the scenario samples at temperature 1.0, and a
    seeded request gives the same tokens on every run (a retried request, too), so the tests are deterministic.
    """

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.responses: list[ChatResponse] = []
        self._seeds = itertools.count(1000)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if request.seed is None:
            request = request.model_copy(update={"seed": next(self._seeds)})
        resp = await self.inner.complete(request)
        self.responses.append(resp)
        return resp


async def run_tool_scenario(model: ChatModel, prompts: list[str], *, max_tokens: int = 96) -> Recorder:
    """Run one required-tool turn per prompt; assert every emitted call validated and executed exactly once."""
    rec = Recorder(model)
    agent = Agent(
        "calc",
        "You are a calculator. Use the tools.",
        model=rec,
        tools=[add, shout],
        tool_choice="required",
        max_tokens=max_tokens,
        max_tool_iterations=3,
        temperature=1.0,  # greedy random weights answer "\n\n\n..." (empty after strip) in the free-text round
    )
    EXECUTED.clear()
    for prompt in prompts:
        result = await agent.run_turn([_user(prompt)])
        assert result.status == "completed", result.reason
        assert result.tool_calls >= 1
    first_round = [r for r in rec.responses if r.message.tool_calls or r.tool_call_errors]
    assert len(first_round) >= len(prompts)
    emitted = [c for r in rec.responses for c in r.message.tool_calls]
    for r in rec.responses:
        assert r.tool_call_errors == [], (r.raw_text, r.tool_call_errors)
    for c in emitted:
        tool_obj = {"add": add, "shout": shout}[c.name]
        validated = tool_obj.validate(c.arguments)
        assert not hasattr(validated, "kind"), validated  # a ToolError has a kind
    assert [name for name, _ in EXECUTED] == [c.name for c in emitted]  # each call ran once, in order
    return rec


async def run_structured_scenario(model: ChatModel, n: int = 3) -> list[BackendsReport]:
    agent = Agent("reporter", "Report.", model=model, output_type=BackendsReport, max_tokens=160)
    out = []
    for i in range(n):
        result = await agent.run_turn([_user(f"report {i}")])
        assert result.status == "completed", result.reason
        assert isinstance(result.output, BackendsReport)
        out.append(result.output)
    return out


def _user(text: str) -> Message:
    from tq_agents import UserInput

    return UserInput(text=text)
