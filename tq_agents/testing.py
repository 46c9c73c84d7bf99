"""Test doubles shipped with the package: ``ScriptedModel``, a deterministic ``ChatModel``.

```python
from tq_agents.testing import ScriptedModel, call

model = ScriptedModel({
    "planner": [{"goal": "add", "steps": [{"description": "write add()"}]}],   # a structured answer
    "coder": [call("run_python", code="print(1+1)"), "done: 2"],              # a tool call, then text
})
```

Each agent (``ChatRequest.agent``; ``"*"`` matches any) has its own list of steps, consumed one per
``complete`` call. A step is one of:

* ``str`` — the assistant's text;
* ``dict`` / ``Message`` — a structured answer, sent as JSON text (a ``Message`` contributes its payload);
* ``ToolCall`` (build with ``call(name, **arguments)``) or a list of them — tool calls;
* ``ChatResponse`` — returned as is;
* an ``Exception`` instance — raised (e.g. ``TransientModelError("429")`` to test retries);
* a callable ``(ChatRequest) -> step`` — computed from the request (for stateless scripts).

Every request is kept in ``model.requests`` for assertions. Usage is counted deterministically
(about four characters per token) so budgets can be tested.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tq_agents.errors import ModelRequestError
from tq_agents.messages import Message
from tq_agents.models.base import ChatMessage, ChatRequest, ChatResponse, ToolCall, Usage

__all__ = ["ScriptedModel", "Step", "call"]

Step = Any
"""``str | dict | Message | ToolCall | list[ToolCall] | ChatResponse | Exception | Callable[[ChatRequest], Step]``."""

_ids = itertools.count()


def call(name: str, /, **arguments: Any) -> ToolCall:
    """A scripted tool call: ``call("lookup_order", order_id="A1001")``."""
    return ToolCall(id=f"call_{next(_ids)}", name=name, arguments=arguments)


def _tokens(text: str | None) -> int:
    return 0 if not text else max(1, len(text) // 4)


def _prompt_tokens(request: ChatRequest) -> int:
    n = 0
    for m in request.messages:  # a loop, not sum() over a generator: called once per scripted answer
        if m.content:
            n += len(m.content) // 4 + 1
    return n


_NOT_CALLABLE_STEPS = (ToolCall, Message, BaseException)
_validate_response = ChatResponse.__pydantic_validator__.validate_python  # ChatResponse(**d), no __init__ frame


class ScriptedModel:
    """A deterministic ``ChatModel`` that answers from per-agent scripts (see module docstring).

    Args:
        scripts: agent name → steps, or one list of steps used for every agent.
        default: a step used when an agent has no script (or its script is used up); a callable
            default makes an endless, request-driven script. Without one, a used-up script raises
            ``ModelRequestError`` naming the agent.
        latency: seconds to sleep before answering, one number or agent name → seconds.
        name: reported as ``model_name`` and ``ChatResponse.model``.
        keep_requests: keep every request in ``requests`` (for assertions); ``False`` for long benchmark runs.
    """

    def __init__(
        self,
        scripts: Mapping[str, Sequence[Step]] | Sequence[Step] | None = None,
        *,
        default: Step | None = None,
        latency: float | Mapping[str, float] = 0.0,
        name: str = "scripted",
        keep_requests: bool = True,
    ) -> None:
        if scripts is None:
            scripts = {}
        if not isinstance(scripts, Mapping):
            scripts = {"*": list(scripts)}
        self._scripts: dict[str, list[Step]] = {k: list(v) for k, v in scripts.items()}
        self._cursor: dict[str, int] = {}
        self._default = default
        self._latency = latency
        self._fixed_latency = not isinstance(latency, Mapping)
        self._name = name
        self.requests: list[ChatRequest] = []
        self._keep = keep_requests

    @property
    def model_name(self) -> str:
        return self._name

    def remaining(self, agent: str = "*") -> int:
        """Steps not yet used in ``agent``'s script."""
        return len(self._scripts.get(agent, ())) - self._cursor.get(agent, 0)

    def _next_step(self, request: ChatRequest) -> Step:
        agent = request.agent or "*"
        key = agent if agent in self._scripts else "*"
        steps = self._scripts.get(key)
        pos = self._cursor.get(key, 0)
        if steps is not None and pos < len(steps):
            self._cursor[key] = pos + 1
            return steps[pos]
        if self._default is not None:
            return self._default
        used = len(steps) if steps is not None else 0
        raise ModelRequestError(
            f"ScriptedModel: no scripted response left for agent {agent!r} (used {used})",
            hint=f"add more steps for {agent!r} or pass default=... to ScriptedModel",
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer ``request`` with the agent's next scripted step."""
        if self._keep:
            self.requests.append(request)
        step = self._next_step(request)
        while callable(step) and not isinstance(step, _NOT_CALLABLE_STEPS):
            step = step(request)
        latency = self._latency if self._fixed_latency else self._latency.get(request.agent or "*", 0.0)  # type: ignore[union-attr]
        if latency:
            await asyncio.sleep(latency)
        if isinstance(step, BaseException):
            raise step
        return self._response(request, step)

    def _response(self, request: ChatRequest, step: Step) -> ChatResponse:
        if type(step) is str:  # the common case first: one validation call builds the nested objects
            return _validate_response(
                {
                    "message": {"role": "assistant", "content": step},
                    "usage": {"prompt_tokens": _prompt_tokens(request), "completion_tokens": _tokens(step)},
                    "model": self._name,
                }
            )
        prompt = _prompt_tokens(request)
        if isinstance(step, ChatResponse):
            return step
        if isinstance(step, ToolCall):
            step = [step]
        if isinstance(step, list) and all(isinstance(s, ToolCall) for s in step):
            calls = [c.model_copy() for c in step]
            completion = sum(_tokens(json.dumps(c.arguments)) + 2 for c in calls)
            return ChatResponse(
                message=ChatMessage(role="assistant", content="", tool_calls=calls),
                finish_reason="tool_calls",
                usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
                model=self._name,
            )
        if isinstance(step, Message):
            text = json.dumps(step.payload(), ensure_ascii=False)
        elif isinstance(step, dict):
            text = json.dumps(step, ensure_ascii=False)
        elif isinstance(step, str):
            text = step
        else:
            raise ModelRequestError(f"ScriptedModel: cannot use a step of type {type(step).__name__}")
        return ChatResponse(
            message=ChatMessage(role="assistant", content=text),
            finish_reason="stop",
            usage=Usage(prompt_tokens=prompt, completion_tokens=_tokens(text)),
            model=self._name,
        )
