"""``Agent``: one turn = request → model → validated tool calls (bounded) → typed output (bounded retries).

```python
agent = Agent("support", "You answer customers.", model=model, tools=[lookup_order], output_type=SupportReply)
reply = await agent.run("Where is order A1001?")         # SupportReply, or AgentTurnError
result = await agent.run_turn([UserInput(text="...")])  # TurnResult with .status / .reason, never raises
```

The prompt is built stable-part-first so prefix caches hit across turns: system instructions (+ the output
schema), tool schemas, then the node's earlier turns, then the new input. Structured output types set
``response_format`` (json_schema) on the request so constrained backends emit valid JSON; a reply that does
not parse is fed back with the reason, at most ``max_output_retries`` times. Tool-call errors (malformed
calls reported by the backend, unknown tools, invalid arguments, exceptions, timeouts) are sent back to the
model as ``tool`` messages; after ``max_tool_iterations`` rounds of tool calls the turn fails.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from tq_agents._tool import Tool, ToolError, ToolResult, _got, format_validation_error, tool
from tq_agents.errors import (
    AgentTurnError,
    ConfigError,
    ModelError,
    ToolDefinitionError,
    TransientModelError,
    UserError,
)
from tq_agents.messages import Message, TextMessage, UserInput
from tq_agents.models.base import (
    ChatMessage,
    ChatModel,
    ChatRequest,
    ChatResponse,
    ToolCall,
    ToolChoice,
    Usage,
    check_chat_model,
    not_a_chat_model,
)

__all__ = ["Agent", "RetryPolicy", "TurnContext", "TurnResult", "TurnStatus"]

TurnStatus = Literal["completed", "failed"]


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_number(value: Any, least: float) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and value >= least
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of a model call that raised ``TransientModelError`` (exponential backoff, via tenacity).

    Args:
        attempts: Tries in all, the first one included (``1`` = no retry).
        initial_s: Wait before the second try, in seconds; each later wait doubles.
        max_s: The longest wait between two tries, in seconds.
    """

    attempts: int = 3
    initial_s: float = 0.5
    max_s: float = 8.0

    def __post_init__(self) -> None:
        if not _is_int(self.attempts, 1):
            raise ConfigError(
                f"RetryPolicy: attempts must be an int >= 1, got {_got(self.attempts)}",
                hint="attempts counts the first try too: 1 means no retry",
            )
        for name in ("initial_s", "max_s"):
            value = getattr(self, name)
            if not _is_number(value, 0):
                raise ConfigError(f"RetryPolicy: {name} must be a number of seconds >= 0, got {_got(value)}")

    def retrying(self) -> AsyncRetrying:
        """A fresh tenacity ``AsyncRetrying`` for one model call: ``attempts`` tries in all, exponential waits
        (``initial_s``, doubling, at most ``max_s``) between them, retrying only ``TransientModelError``; the last
        error is re-raised. Use as ``async for attempt in policy.retrying(): with attempt: ...``.
        """
        return AsyncRetrying(
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait_exponential(multiplier=self.initial_s, max=self.max_s),
            retry=retry_if_exception_type(TransientModelError),
            reraise=True,
        )


@dataclass(slots=True)
class TurnResult:
    """What one agent turn produced. ``status`` is ``completed`` (``output`` set) or ``failed`` (``reason``;
    ``hint``: what to do about it, when the failure came with one, e.g. a ``ModelError``'s hint)."""

    status: TurnStatus
    output: Message | None = None
    reason: str = ""
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    transcript: list[ChatMessage] = field(default_factory=list)
    hint: str = ""


class TurnContext:
    """Where an agent turn sends its model and tool calls. The scheduler subclasses it to record every call
    in the run store and to serve recorded results on resume/replay; the default calls straight through.
    """

    run_id: str | None = None
    turn_id: str = "turn"

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(
                f"TurnContext: retry must be a RetryPolicy, got {_got(retry)}",
                hint="e.g. TurnContext(RetryPolicy(attempts=3, initial_s=0.5, max_s=8.0))",
            )
        self.retry = retry or RetryPolicy()

    async def complete(self, agent: Agent, model: ChatModel, request: ChatRequest, index: int) -> ChatResponse:
        """Run model call number ``index`` of this turn (retrying transient errors)."""
        async for attempt in self.retry.retrying():
            with attempt:
                return await model.complete(request)
        raise AssertionError("unreachable")  # pragma: no cover

    async def call_tool(self, agent: Agent, tool: Tool, call: ToolCall) -> ToolResult | ToolError:
        """Run one validated-on-entry tool call."""
        return await tool.call(call.arguments)


_DEFAULT_CONTEXT = TurnContext()
_NO_USAGE = Usage()
# Hot-path constructors: the models' own validators called on a dict (full validation, no Python __init__ frame).
_new_request = ChatRequest.__pydantic_validator__.validate_python
_new_chat_message = ChatMessage.__pydantic_validator__.validate_python
_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.S)


def render_inputs(inputs: Sequence[Message]) -> str:
    """The user-turn text for ``inputs``: a lone input as is, several each headed by their source."""
    if len(inputs) == 1:
        return inputs[0].to_prompt()
    return "\n\n".join(f"[{m.source or 'input'}]\n{m.to_prompt()}" for m in inputs)


def _unique_call_ids(response: ChatResponse) -> ChatResponse:
    """``response`` with each tool call's id unique within it: a repeated id (some servers repeat them) gets a
    ``~N`` suffix (N: the call's position). Tool results are keyed and recorded by id, so two calls with one id
    would share one result (and a resume would skip the second call); the same ids come out on every resume."""
    calls = response.message.tool_calls
    seen: set[str] = set()
    if len({c.id for c in calls}) == len(calls):
        return response
    fixed: list[ToolCall] = []
    taken = {c.id for c in calls}
    for pos, c in enumerate(calls):
        if c.id in seen:
            new = f"{c.id}~{pos}"
            while new in taken:
                new += "~"
            taken.add(new)
            c = c.model_copy(update={"id": new})
        seen.add(c.id)
        fixed.append(c)
    return response.model_copy(update={"message": response.message.model_copy(update={"tool_calls": fixed})})


def _check_agent_options(
    name: Any,
    *,
    instructions: Any,
    model: Any,
    max_tool_iterations: Any,
    max_output_retries: Any,
    tool_choice: Any,
    max_tokens: Any,
    temperature: Any,
    enable_thinking: Any,
) -> None:
    """``ConfigError`` naming the agent and the first bad ``Agent(...)`` argument, and what it must be."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"agent {name!r}: name must be a non-empty str, got {_got(name)}",
            hint="the name is the agent's node name in a workflow, e.g. Agent('support', ...)",
        )
    who = f"agent {name!r}"
    if not isinstance(instructions, str):
        raise ConfigError(f"{who}: instructions must be a str, got {_got(instructions)}", hint="use '' for none")
    check_chat_model(model, who)
    if not _is_int(max_tool_iterations, 0):
        raise ConfigError(
            f"{who}: max_tool_iterations must be an int >= 0, got {_got(max_tool_iterations)}",
            hint="the rounds of tool calls one turn may make; 0 allows none",
        )
    if not _is_int(max_output_retries, 0):
        raise ConfigError(f"{who}: max_output_retries must be an int >= 0, got {_got(max_output_retries)}")
    if tool_choice is not None and not isinstance(tool_choice, str):
        raise ConfigError(
            f"{who}: tool_choice must be None or a str ('auto', 'required', 'none' or a tool name), "
            f"got {_got(tool_choice)}"
        )
    if max_tokens is not None and not _is_int(max_tokens, 1):
        raise ConfigError(f"{who}: max_tokens must be None or an int >= 1, got {_got(max_tokens)}")
    if not _is_number(temperature, 0):
        raise ConfigError(f"{who}: temperature must be a number >= 0, got {_got(temperature)}", hint="e.g. 0.7")
    if enable_thinking is not None and not isinstance(enable_thinking, bool):
        raise ConfigError(f"{who}: enable_thinking must be None or a bool, got {_got(enable_thinking)}")


def _check_tools(name: str, tools: Any) -> Sequence[Any]:
    """``tools`` as a sequence, or a ``ConfigError`` for a str, a mapping, a lone tool or a non-sequence."""
    if tools is None:
        return ()
    if isinstance(tools, Tool) or (callable(tools) and not isinstance(tools, (Sequence, Mapping))):
        what = f"a Tool ({tools.name!r})" if isinstance(tools, Tool) else f"one function ({_got(tools)})"
        raise ConfigError(
            f"agent {name!r}: tools must be a list or tuple of tools, got {what}", hint="wrap it in a list: tools=[...]"
        )
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ConfigError(
            f"agent {name!r}: tools must be a list or tuple of tools, got {_got(tools)}",
            hint="e.g. tools=[lookup_order, refund] (Tool objects or typed functions)",
        )
    return tools


class Agent:
    """An LLM-backed workflow node.

    Args:
        name: Unique node name (a non-empty str); also sent as ``ChatRequest.agent`` (``ScriptedModel`` scripts
            key on it).
        instructions: The role's system prompt.
        model: The ``ChatModel`` (an object with an async ``complete``); if ``None`` the workflow's model is used.
        tools: A list or tuple of ``Tool`` objects (or plain typed functions, wrapped with ``@tool``); ``None``
            means none.
        output_type: A ``Message`` subclass; ``TextMessage`` means free text.
        max_tool_iterations: Rounds of tool calls allowed in one turn before it fails (``0``: a tool call fails
            the turn, or with ``final_answer_without_tools`` every request forbids tools).
        max_output_retries: How often an unparsable final answer is fed back before the turn fails (``>= 0``).
        tool_choice: ``"auto"``/``"required"``/``"none"``/a tool name, for the first request of a turn (and for the
            next one while a round brought only malformed calls, so a required call is still owed).
        max_tokens: Completion-token cap per model call (``None`` or ``>= 1``).
        temperature: Sampling temperature (a number ``>= 0``).
        enable_thinking: Qwen3 thinking switch (``None`` = model default).
        remember: Show the node's earlier turns (inputs and answers) in later turns.
        final_answer_without_tools: Once the turn has used ``max_tool_iterations`` rounds of tool calls, or
            after its answer was refused (did not parse into ``output_type``), send the next requests with
            ``tool_choice="none"``: constrained backends then decode the typed answer under its JSON grammar,
            so the turn ends with an output instead of failing on one more tool round. Only applies to agents
            with tools and a structured ``output_type``.
    """

    def __init__(
        self,
        name: str,
        instructions: str = "",
        *,
        model: ChatModel | None = None,
        tools: Sequence[Tool | Callable[..., Any]] | None = (),
        output_type: type[Message] = TextMessage,
        max_tool_iterations: int = 8,
        max_output_retries: int = 2,
        tool_choice: ToolChoice | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        enable_thinking: bool | None = None,
        remember: bool = True,
        final_answer_without_tools: bool = False,
    ) -> None:
        _check_agent_options(
            name,
            instructions=instructions,
            model=model,
            max_tool_iterations=max_tool_iterations,
            max_output_retries=max_output_retries,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            temperature=temperature,
            enable_thinking=enable_thinking,
        )
        if not isinstance(output_type, type) or not issubclass(output_type, Message):
            raise ConfigError(
                f"agent {name!r}: output_type must be a Message subclass, got {output_type!r}",
                hint="use TextMessage for free text or subclass tq_agents.Message",
            )
        self.name = name
        self.instructions = instructions
        self.model = model
        self.tools: dict[str, Tool] = {}
        for i, t in enumerate(_check_tools(name, tools)):
            try:
                t = t if isinstance(t, Tool) else tool(t)
            except ToolDefinitionError as e:
                raise ToolDefinitionError(f"agent {name!r}: tools[{i}]: {e.message}", hint=e.hint) from e
            if t.name in self.tools:
                raise ConfigError(f"agent {name!r}: two tools are named {t.name!r}")
            self.tools[t.name] = t
        self.output_type = output_type
        self.max_tool_iterations = max_tool_iterations
        self.max_output_retries = max_output_retries
        self.tool_choice = tool_choice
        if tool_choice not in (None, "auto", "required", "none") and tool_choice not in self.tools:
            raise ConfigError(f"agent {name!r}: tool_choice {tool_choice!r} is not one of its tools")
        self.max_tokens = max_tokens
        self.temperature = float(temperature)
        self.enable_thinking = enable_thinking
        self.remember = remember
        self.final_answer_without_tools = final_answer_without_tools
        self._free_text = issubclass(output_type, TextMessage) and set(output_type.model_fields) == set(
            TextMessage.model_fields
        )
        self._validate_output = output_type.__pydantic_validator__.validate_python
        self._system = self._build_system()
        self._system_message = ChatMessage(role="system", content=self._system) if self._system else None
        self._tool_schemas = [t.schema for t in self.tools.values()]
        self._response_format = (
            None
            if self._free_text
            else {
                "type": "json_schema",
                "json_schema": {"name": output_type.type_name, "schema": output_type.payload_schema(), "strict": True},
            }
        )

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, output_type={self.output_type.type_name}, tools={list(self.tools)})"

    @property
    def input_types(self) -> tuple[type[Message], ...]:
        """Agents accept any message: it is rendered into the prompt."""
        return (Message,)

    def _build_system(self) -> str:
        parts = [self.instructions.strip()] if self.instructions.strip() else []
        if not self._free_text:
            schema = json.dumps(self.output_type.payload_schema(), ensure_ascii=False, separators=(",", ":"))
            parts.append(
                f"Give your final answer as one JSON object (no prose, no code fence) matching this JSON schema "
                f"of `{self.output_type.type_name}`:\n{schema}"
            )
        return "\n\n".join(parts)

    def build_messages(
        self, inputs: Sequence[Message], history: Sequence[tuple[Sequence[Message], Message]] = ()
    ) -> list[ChatMessage]:
        """System prompt, then the node's earlier turns (if ``remember``), then ``inputs`` as a user turn."""
        msgs: list[ChatMessage] = []
        if self._system_message is not None:
            msgs.append(self._system_message)
        if self.remember:
            for past_inputs, past_output in history:
                msgs.append(ChatMessage(role="user", content=render_inputs(past_inputs)))
                msgs.append(ChatMessage(role="assistant", content=past_output.to_prompt()))
        msgs.append(_new_chat_message({"role": "user", "content": render_inputs(inputs)}))
        return msgs

    def _request(self, messages: list[ChatMessage], tool_choice: ToolChoice) -> ChatRequest:
        return _new_request(  # validated like ChatRequest(...), minus the Python __init__ frame
            {
                "messages": list(messages),
                "tools": self._tool_schemas,
                "tool_choice": tool_choice,
                "response_format": self._response_format,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "enable_thinking": self.enable_thinking,
                "agent": self.name,
            }
        )

    def parse_output(self, content: str | None, *, run_id: str | None = None) -> Message | str:
        """The final answer as ``output_type``, or a reason (str) why it cannot be used."""
        text = (content or "").strip()
        if self._free_text:
            if not text:
                return "the answer was empty; reply with your answer as text"
            return self._validate_output({"text": text, "source": self.name, "run_id": run_id})  # type: ignore[no-any-return]
        m = _FENCE.match(text)
        if m:
            text = m.group(1).strip()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            start, end = text.find("{"), text.rfind("}")
            data = None
            if 0 <= start < end:
                try:
                    data = json.loads(text[start : end + 1])
                except json.JSONDecodeError:
                    data = None
            if data is None:
                return f"the answer is not valid JSON ({e.msg} at char {e.pos}); reply with one JSON object only"
        if not isinstance(data, dict):
            return f"the answer must be a JSON object, got {type(data).__name__}"
        try:
            return self.output_type.from_payload(data, source=self.name, run_id=run_id)
        except ValidationError as e:
            what = f"the answer does not match the `{self.output_type.type_name}` schema"
            return format_validation_error(e, what=what, model=self.output_type)

    async def run_turn(
        self,
        inputs: Sequence[Message],
        *,
        history: Sequence[tuple[Sequence[Message], Message]] = (),
        context: TurnContext | None = None,
        model: ChatModel | None = None,
    ) -> TurnResult:
        """Run one turn on ``inputs``. Never raises for model/tool/parse problems: see ``TurnResult.status``.

        ``ModelError`` that survives the context's retries is turned into a failed result as well;
        ``asyncio.CancelledError`` propagates. Raises ``UserError`` when there is no model, and ``ConfigError``
        when ``model`` is not a ``ChatModel`` (the agent's own arguments were checked when it was built).
        """
        ctx = context or _DEFAULT_CONTEXT
        model = model or self.model
        if model is None:
            raise UserError(
                f"agent {self.name!r} has no model",
                hint="pass model=... to the Agent, or to the Workflow / run() so every agent without one uses it",
            )
        if model is not self.model and not callable(getattr(model, "complete", None)):  # (cheap on the hot path)
            raise not_a_chat_model(model, f"agent {self.name!r}")
        messages = self.build_messages(inputs, history)
        result = TurnResult("failed", None, "", _NO_USAGE, 0, 0, messages)
        tool_rounds = 0
        retries = 0
        tool_choice: ToolChoice = self.tool_choice or "auto"
        force_final = self.final_answer_without_tools and bool(self.tools) and not self._free_text
        while True:
            if force_final and (tool_rounds >= self.max_tool_iterations or retries):
                tool_choice = "none"
            request = self._request(messages, tool_choice)
            asked = tool_choice
            if tool_choice != "none":
                tool_choice = "auto"
            try:
                response = await ctx.complete(self, model, request, result.model_calls)
            except ModelError as e:
                result.reason = f"model call failed: {type(e).__name__}: {e.message}"
                result.hint = e.hint or ""
                return result
            result.model_calls += 1
            # one model call (the common case): its usage is the turn's, no new object needed
            result.usage = response.usage if result.model_calls == 1 else result.usage + response.usage
            reply = response.message
            if len(reply.tool_calls) > 1:
                response = _unique_call_ids(response)
                reply = response.message
            messages.append(reply)
            if reply.tool_calls or response.tool_call_errors:
                if tool_rounds >= self.max_tool_iterations:
                    result.reason = (
                        f"agent {self.name!r} still calling tools after max_tool_iterations={self.max_tool_iterations}"
                    )
                    return result
                tool_rounds += 1
                messages.extend(await self._run_tools(ctx, response))
                result.tool_calls += len(reply.tool_calls)
                if not reply.tool_calls and asked not in ("auto", "none"):
                    tool_choice = asked  # only malformed calls: a required/named call is still owed
                continue
            parsed = self.parse_output(reply.content, run_id=ctx.run_id)
            if isinstance(parsed, Message):
                result.status = "completed"
                result.output = parsed
                return result
            if retries >= self.max_output_retries:
                result.reason = (
                    f"agent {self.name!r} gave no usable `{self.output_type.type_name}` after "
                    f"{retries + 1} attempt(s): {parsed}"
                )
                return result
            retries += 1
            messages.append(ChatMessage(role="user", content=f"Your answer could not be used: {parsed}\nAnswer again."))

    async def _run_tools(self, ctx: TurnContext, response: ChatResponse) -> list[ChatMessage]:
        out: list[ChatMessage] = []
        for call in response.message.tool_calls:
            t = self.tools.get(call.name)
            if t is None:
                known = ", ".join(self.tools) or "(none)"
                res: ToolResult | ToolError = ToolError(
                    tool=call.name,
                    kind="unknown_tool",
                    content=f"there is no tool named `{call.name}`; available tools: {known}",
                )
            else:
                res = await ctx.call_tool(self, t, call)
            out.append(ChatMessage(role="tool", content=res.content, tool_call_id=call.id, name=call.name))
        for err in response.tool_call_errors:
            out.append(
                ChatMessage(
                    role="tool",
                    content=f"tool call #{err.index + 1} could not be used: {err.reason}",
                    tool_call_id=f"malformed_{err.index}",
                    name=err.name,
                )
            )
        return out

    def _run_inputs(self, input: Any) -> list[Message]:
        if isinstance(input, str):
            return [UserInput(text=input, source="user")]
        if isinstance(input, Message):
            return [input]
        if not isinstance(input, Sequence) or isinstance(input, (bytes, bytearray)):
            raise UserError(
                f"agent {self.name!r}: run() input must be a str, a Message or a sequence of Messages, "
                f"got {_got(input)}",
                hint="e.g. agent.run('Where is order A1001?') or agent.run([UserInput(text='...')])",
            )
        inputs = list(input)
        if not inputs:
            raise UserError(f"agent {self.name!r}: run() needs at least one input message, got an empty sequence")
        for i, m in enumerate(inputs):
            if not isinstance(m, Message):
                raise UserError(
                    f"agent {self.name!r}: run() input[{i}] must be a Message, got {_got(m)}",
                    hint="wrap text in a message, e.g. UserInput(text='...')",
                )
        return inputs

    async def run(
        self,
        input: str | Message | Sequence[Message],
        *,
        model: ChatModel | None = None,
        context: TurnContext | None = None,
    ) -> Message:
        """Run one turn outside a workflow and return its output; raise ``AgentTurnError`` if it fails.

        ``input`` is a str (sent as a ``UserInput``), a ``Message``, or a non-empty sequence of ``Message``;
        anything else raises ``UserError``.
        """
        inputs = self._run_inputs(input)
        t0 = time.perf_counter()
        res = await self.run_turn(inputs, context=context, model=model)
        if res.output is None:
            raise AgentTurnError(  # a model error's own hint says best what to do
                f"{res.reason} (after {time.perf_counter() - t0:.2f} s, {res.model_calls} model call(s))",
                hint=res.hint or "inspect the transcript with run_turn(...).transcript",
            )
        return res.output
