"""Test doubles shipped with the package: ``ScriptedModel``, a deterministic ``ChatModel``.

```python
from tq_agents.testing import ScriptedModel, call

model = ScriptedModel({
    "planner": [{"goal": "add", "steps": [{"description": "write add()"}]}],   # a structured answer
    "coder": [call("run_python", code="print(1+1)"), "done: 2"],              # a tool call, then text
})
```

Each agent (``ChatRequest.agent``) has its own list of steps, consumed one per ``complete`` call. The key
``"*"`` means any agent, everywhere: an agent without its own script draws from the ``"*"`` script (one list
given instead of a dict is the ``"*"`` script), an agent without its own ``latency`` entry waits the ``"*"``
one, and ``remaining(agent)`` counts the script the agent draws from. An agent whose script is used up gets
the ``default`` step (its own used-up script does not fall back to ``"*"``). A step is one of:

* ``str`` — the assistant's text;
* ``dict`` / ``Message`` — a structured answer, sent as JSON text (a ``Message`` contributes its payload, its
  fields under their aliases as a model writes them);
* ``ToolCall`` (build with ``call(name, **arguments)``) or a non-empty list of them — the tool calls of one
  response. A call built with ``call`` gets its id when the model answers: ``call_0``, ``call_1``, ... in the
  order of that response's calls, so ids (and ``ToolCallStarted.key``) depend on the script only; every
  response gets its own copy of the arguments;
* ``ChatResponse`` — returned as is (``call`` ids in it are numbered the same way);
* an ``Exception`` instance — raised, a fresh copy each time (e.g. ``TransientModelError("429")`` to test
  retries);
* a callable ``(ChatRequest) -> step`` — computed from the request (for stateless scripts).

The scripts are checked when the model is built: a script that is not a list of steps (a str, a dict, a
single step: wrap it in a list, ``{"a": ["text"]}``), an empty or mixed list step, a dict step that is not JSON,
or a step of any other type raises ``ConfigError`` naming the agent and the step (``scripts['a'][1]``). A step
computed by a callable is checked when it is used, and a bad one raises ``ModelRequestError`` (the agent's turn
fails with it).

Testing retries: a scripted ``TransientModelError`` is retried with the run's ``RetryPolicy``, whose default
waits 0.5 s, then 1 s, ... between tries. Make the waits zero with ``workflow.run(..., retry=RetryPolicy(initial_s=0))``
(or ``start``/``run_sync``), and outside a workflow with
``agent.run(input, context=TurnContext(RetryPolicy(initial_s=0)))`` (or ``run_turn``).

Every request is kept in ``model.requests`` for assertions. Usage is counted deterministically
(about four characters per token) so budgets can be tested.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from tq_agents.errors import ConfigError, ModelRequestError
from tq_agents.messages import ENVELOPE_FIELDS, Message
from tq_agents.models.base import ChatMessage, ChatRequest, ChatResponse, ToolCall, Usage

__all__ = ["ScriptedModel", "Step", "call"]

Step = Any
"""``str | dict | Message | ToolCall | list[ToolCall] | ChatResponse | Exception | Callable[[ChatRequest], Step]``."""


class _ScriptedCall(ToolCall):
    """A ``ToolCall`` built by ``call``: ``ScriptedModel`` numbers it in each response it is part of."""

    def __repr_name__(self) -> str:  # shown as what it is to its user
        return "ToolCall"


def call(name: str, /, **arguments: Any) -> ToolCall:
    """A scripted tool call: ``call("lookup_order", order_id="A1001")``.

    Its id is a placeholder (``call_0``): ``ScriptedModel`` gives it ``call_<i>``, ``i`` being its position among
    the calls of the response, and a fresh copy of ``arguments`` each time it answers with it."""
    return _ScriptedCall(id="call_0", name=name, arguments=arguments)


def _tokens(text: str | None) -> int:
    return 0 if not text else max(1, len(text) // 4)


def _prompt_tokens(request: ChatRequest) -> int:
    n = 0
    for m in request.messages:  # a loop, not sum() over a generator: called once per scripted answer
        if m.content:
            n += len(m.content) // 4 + 1
    return n


def _call_tokens(c: ToolCall) -> int:
    """Deterministic completion tokens of one tool call (the arguments need not be JSON: a date, a set, ...)."""
    try:
        text = json.dumps(c.arguments, default=str)
    except (TypeError, ValueError):  # keys JSON cannot have, a circular value
        text = str(c.arguments)
    return _tokens(text) + 2


def _numbered(calls: Sequence[ToolCall]) -> list[ToolCall]:
    """The calls of one response: ``call()`` ones numbered by position, each with its own arguments."""
    return [
        ToolCall.model_construct(id=f"call_{i}", name=c.name, arguments=copy.deepcopy(c.arguments))
        if type(c) is _ScriptedCall
        else c.model_copy(update={"arguments": copy.deepcopy(c.arguments)})
        for i, c in enumerate(calls)
    ]


def _fresh(e: BaseException) -> BaseException:
    """A copy of a scripted exception to raise (raising the same object again would grow its traceback)."""
    try:
        fresh = copy.copy(e)
    except Exception:  # an exception class whose __init__ cannot be called again with its args
        fresh = None
    if type(fresh) is not type(e):
        return e.with_traceback(None)
    return fresh  # type: ignore[return-value]


def _kind(value: Any) -> str:
    return "ToolCall" if type(value) is _ScriptedCall else type(value).__name__


def _what(value: Any) -> str:
    text = repr(value)
    return f"{_kind(value)} {text if len(text) <= 40 else text[:37] + '...'}"


_NOT_CALLABLE_STEPS = (ToolCall, Message, BaseException)
_STEP_TYPES = (str, Message, ToolCall, ChatResponse, BaseException)
# not a list of steps (a set would be one in no fixed order)
_NOT_A_SCRIPT = (str, bytes, bytearray, memoryview, Mapping, BaseModel, BaseException, set, frozenset)
_STEP_HINT = (
    "a step is a str, a dict, a Message, call(...) or a list of calls, a ChatResponse, an exception instance, "
    "or a callable (request) -> step"
)
_LIST_HINT = (
    "a list step is the tool calls of one response, e.g. [call('a'), call('b')]; give separate answers as "
    "separate steps of the script, and text with tool calls as a ChatResponse"
)
_JSON_HINT = "use JSON values (str, int, float, bool, None, list, dict with str keys), e.g. a date as d.isoformat()"
_validate_response = ChatResponse.__pydantic_validator__.validate_python  # ChatResponse(**d), no __init__ frame


def _list_problem(step: list[Any]) -> str | None:
    """Why a list step cannot be used (``None`` if it can)."""
    if not step:
        return "an empty list is not a step (a list step holds the tool calls of one response)"
    for i, c in enumerate(step):
        if not isinstance(c, ToolCall):
            return f"a list step holds tool calls only (call(...)), but [{i}] is {_what(c)}"
    return None


def _check_step(step: Step, where: str) -> None:
    """Refuse a script step that cannot be used, naming it (``where``)."""
    if isinstance(step, _STEP_TYPES):
        return
    if isinstance(step, dict):
        try:
            json.dumps(step)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"ScriptedModel: {where}: a dict step must be JSON (it is the structured answer's text): {e}",
                hint=_JSON_HINT,
            ) from None
        return
    if isinstance(step, list):
        problem = _list_problem(step)
        if problem is not None:
            raise ConfigError(f"ScriptedModel: {where}: {problem}", hint=_LIST_HINT)
        return
    if callable(step):
        return
    raise ConfigError(f"ScriptedModel: {where}: cannot use a step of type {_kind(step)}", hint=_STEP_HINT)


def _script(value: Any, agent: str | None) -> list[Step]:
    """The checked list of steps of ``agent``'s script (``None``: the list given for every agent)."""
    if isinstance(value, _NOT_A_SCRIPT) or not isinstance(value, Iterable):
        if agent is None:
            if callable(value) and not isinstance(value, _NOT_CALLABLE_STEPS):
                hint = (
                    "a callable is one step: wrap it in a list, ScriptedModel([...]), or pass default=fn for every call"
                )
            else:
                hint = f"wrap it in a list: ScriptedModel([...]), e.g. ScriptedModel([{value!r:.40}])"
            raise ConfigError(
                "ScriptedModel: scripts must be a list of steps (used for every agent) or a dict of agent name "
                f"→ list of steps, got {_what(value)}",
                hint=hint,
            )
        raise ConfigError(
            f"ScriptedModel: the script for agent {agent!r} must be a list of steps, got {_what(value)}",
            hint=f"wrap it in a list: {{{agent!r}: [...]}} (a dict given as scripts maps agent names to lists of "
            "steps; one structured answer for every agent is ScriptedModel([{...}]))",
        )
    steps = list(value)
    prefix = "scripts" if agent is None else f"scripts[{agent!r}]"
    for i, step in enumerate(steps):
        _check_step(step, f"{prefix}[{i}]")
    return steps


class ScriptedModel:
    """A deterministic ``ChatModel`` that answers from per-agent scripts (see module docstring).

    Args:
        scripts: agent name → list of steps (``"*"``: any agent without its own), or one list of steps used
            for every agent. A script that is not a list raises ``ConfigError`` (wrap it in a list: ``[...]``).
        default: one step used when an agent has no script (or its script is used up); a callable default
            makes an endless, request-driven script. Without one, a used-up script raises ``ModelRequestError``
            naming the agent.
        latency: seconds to sleep before answering, one number or agent name → seconds (``"*"``: any agent
            without its own entry; others do not wait).
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
        self._scripts: dict[str, list[Step]] = {}
        self._labels: dict[str, str] = {}  # script key → how errors name it
        if scripts is None:
            pass
        elif isinstance(scripts, Mapping):
            for agent, steps in scripts.items():
                if not isinstance(agent, str):
                    raise ConfigError(
                        f"ScriptedModel: scripts must map agent names (str) to lists of steps, got the key "
                        f"{_what(agent)}",
                        hint="e.g. ScriptedModel({'writer': ['a draft'], '*': ['for any other agent']})",
                    )
                self._scripts[agent] = _script(steps, agent)
                self._labels[agent] = f"scripts[{agent!r}]"
        else:
            self._scripts["*"] = _script(scripts, None)
            self._labels["*"] = "scripts"
        if default is not None:
            _check_step(default, "default")
        self._cursor: dict[str, int] = {}
        self._default = default
        self._latency = latency
        self._fixed_latency = not isinstance(latency, Mapping)
        self._any_latency: float = 0.0 if self._fixed_latency else latency.get("*", 0.0)  # type: ignore[union-attr]
        self._name = name
        self.requests: list[ChatRequest] = []
        self._keep = keep_requests

    @property
    def model_name(self) -> str:
        return self._name

    def remaining(self, agent: str = "*") -> int:
        """Steps not yet used in the script ``agent`` draws from: its own, else the ``"*"`` script."""
        key = agent if agent in self._scripts else "*"
        return len(self._scripts.get(key, ())) - self._cursor.get(key, 0)

    def _next_step(self, request: ChatRequest) -> tuple[Step, str, int]:
        """The agent's next step, its script key and position there (``-1``: the default step)."""
        agent = request.agent or "*"
        key = agent if agent in self._scripts else "*"
        steps = self._scripts.get(key)
        pos = self._cursor.get(key, 0)
        if steps is not None and pos < len(steps):
            self._cursor[key] = pos + 1
            return steps[pos], key, pos
        if self._default is not None:
            return self._default, key, -1
        used = len(steps) if steps is not None else 0
        raise ModelRequestError(
            f"ScriptedModel: no scripted response left for agent {agent!r} (used {used})",
            hint=f"add more steps for {agent!r} or pass default=... to ScriptedModel",
        )

    def _where(self, key: str, pos: int) -> str:
        """How an error names a step: ``scripts['a'][1]``, ``scripts[0]`` or ``default``."""
        return "default" if pos < 0 else f"{self._labels[key]}[{pos}]"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer ``request`` with the agent's next scripted step."""
        if self._keep:
            self.requests.append(request)
        step, key, pos = self._next_step(request)
        computed = False
        while callable(step) and not isinstance(step, _NOT_CALLABLE_STEPS):
            step = step(request)
            computed = True
        if self._fixed_latency:
            latency = self._latency
        else:
            latency = self._latency.get(request.agent or "*")  # type: ignore[union-attr]
            if latency is None:
                latency = self._any_latency
        if latency:
            await asyncio.sleep(latency)
        if isinstance(step, BaseException):
            raise _fresh(step)
        return self._response(request, step, (key, pos, computed))

    def _bad_step(
        self, request: ChatRequest, origin: tuple[str, int, bool], problem: str, hint: str
    ) -> ModelRequestError:
        key, pos, computed = origin
        where = self._where(key, pos) + (", computed by the callable" if computed else "")
        return ModelRequestError(f"ScriptedModel: agent {request.agent or '*'!r} ({where}): {problem}", hint=hint)

    def _response(self, request: ChatRequest, step: Step, origin: tuple[str, int, bool]) -> ChatResponse:
        """The response for ``step``; ``origin`` (script key, position, computed by a callable) names it in an
        error."""
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
            calls = step.message.tool_calls
            if calls and any(type(c) is _ScriptedCall for c in calls):
                message = step.message.model_copy(update={"tool_calls": _numbered(calls)})
                return step.model_copy(update={"message": message})
            return step
        if isinstance(step, ToolCall):
            step = [step]
        if isinstance(step, list):
            problem = _list_problem(step)
            if problem is not None:
                raise self._bad_step(request, origin, problem, _LIST_HINT)
            calls = _numbered(step)
            return ChatResponse(
                message=ChatMessage(role="assistant", content="", tool_calls=calls),
                finish_reason="tool_calls",
                usage=Usage(prompt_tokens=prompt, completion_tokens=sum(_call_tokens(c) for c in calls)),
                model=self._name,
            )
        if isinstance(step, Message):
            text = json.dumps(
                step.model_dump(mode="json", by_alias=True, exclude=ENVELOPE_FIELDS),  # type: ignore[arg-type]
                ensure_ascii=False,
            )
        elif isinstance(step, dict):
            try:
                text = json.dumps(step, ensure_ascii=False)
            except (TypeError, ValueError) as e:
                problem = f"a dict step must be JSON (the structured answer's text): {e}"
                raise self._bad_step(request, origin, problem, _JSON_HINT) from None
        elif isinstance(step, str):
            text = step
        else:
            raise self._bad_step(request, origin, f"cannot use a step of type {_kind(step)}", _STEP_HINT)
        return ChatResponse(
            message=ChatMessage(role="assistant", content=text),
            finish_reason="stop",
            usage=Usage(prompt_tokens=prompt, completion_tokens=_tokens(text)),
            model=self._name,
        )
