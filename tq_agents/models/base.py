"""The one model interface: ``ChatModel`` with OpenAI-shaped ``ChatRequest`` / ``ChatResponse``.

Every backend (scripted, in-process Qwen, OpenAI-compatible server, replay) implements ``ChatModel``.
The core (agent, scheduler) only ever sees these types.

Shapes follow OpenAI's chat API with two deliberate differences:

* tool-call ``arguments`` are always a **mapping** (never a JSON string) — Qwen's templates need a
  mapping, and a string would be double-encoded;
* ``reasoning_content`` (Qwen3's ``<think>`` text) is kept apart from ``content``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from tq_agents.errors import ConfigError

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "FinishReason",
    "MalformedToolCall",
    "StreamDelta",
    "StreamingChatModel",
    "ToolCall",
    "ToolChoice",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "error"]
ToolChoice = str
"""``"auto"`` (default), ``"required"``, ``"none"``, or the name of one tool that must be called."""


class ToolCall(BaseModel):
    """One tool call made by the model."""

    model_config = ConfigDict(frozen=False)

    id: str = Field(description="Call id, unique within the response (e.g. 'call_0').")
    name: str = Field(description="Name of the tool to call.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Arguments as a mapping.")

    def to_openai(self) -> dict[str, Any]:
        """OpenAI shape, with ``arguments`` kept as a mapping (see module docstring)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


class MalformedToolCall(BaseModel):
    """A tool call the model tried to make that could not be used. Shown back to the model."""

    index: int = Field(description="0-based position of the call among the calls in the completion.")
    raw: str = Field(description="The raw text of the call as the model wrote it.")
    reason: str = Field(description="Why it was refused, in words fit to show the model.")
    name: str | None = Field(default=None, description="Tool name, if one could be read.")


class ChatMessage(BaseModel):
    """One chat message in OpenAI shape."""

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = Field(default=None, description="For role='tool': the call answered.")
    name: str | None = Field(default=None, description="For role='tool': the tool's name.")
    reasoning_content: str | None = Field(default=None, description="Qwen3 <think> text, apart from content.")

    def to_openai(self) -> dict[str, Any]:
        """A plain dict as accepted by ``tq_agents.models.qwen.render`` and OpenAI-style servers."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        return out


class Usage(BaseModel):
    """Token counts of one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = Field(default=0, description="Prompt tokens served from a prefix cache.")

    @property
    def total_tokens(self) -> int:
        """``prompt_tokens + completion_tokens`` (cached prompt tokens are part of ``prompt_tokens``)."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
        )


class ChatRequest(BaseModel):
    """One request to a chat model."""

    messages: list[ChatMessage]
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        description='OpenAI-shaped tool schemas: {"type": "function", "function": {name, description, parameters}}.',
    )
    tool_choice: ToolChoice = "auto"
    response_format: dict[str, Any] | None = Field(
        default=None,
        description='OpenAI-shaped: {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}.',
    )
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    enable_thinking: bool | None = Field(default=None, description="Qwen3 only; None = template default.")
    priority: int = Field(default=0, description="Higher is admitted first by engines that queue requests.")
    agent: str | None = Field(default=None, description="Name of the agent making the request, if any.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    def tool_names(self) -> list[str]:
        """The names of the offered tools, in the order of ``tools``."""
        return [t["function"]["name"] for t in self.tools]

    def openai_messages(self) -> list[dict[str, Any]]:
        """``messages`` as plain OpenAI-shaped dicts (``ChatMessage.to_openai``: tool-call arguments stay
        mappings, ``reasoning_content`` is kept apart), e.g. for a chat template or an HTTP request body."""
        return [m.to_openai() for m in self.messages]


class ChatResponse(BaseModel):
    """The model's answer to one ``ChatRequest``."""

    message: ChatMessage = Field(description="role='assistant': content, reasoning, tool calls.")
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    raw_text: str | None = Field(default=None, description="The completion text before parsing, if known.")
    tool_call_errors: list[MalformedToolCall] = Field(
        default_factory=list, description="Calls the model attempted that could not be parsed or validated."
    )


class StreamDelta(BaseModel):
    """One piece of a streamed response: new text, or (last) the whole response."""

    text: str = ""
    token_ids: list[int] = Field(default_factory=list)
    response: ChatResponse | None = Field(default=None, description="Set on the final delta only.")


@runtime_checkable
class ChatModel(Protocol):
    """What every model backend implements. One method; async; never returns partial state on error.

    Errors are raised as ``tq_agents.errors.ModelError`` subclasses: ``TransientModelError`` for
    failures worth retrying, ``ModelRequestError``/``ModelUnavailableError`` for the rest.
    """

    @property
    def model_name(self) -> str:
        """The model's name as shown in logs, events and ``ChatResponse.model`` (e.g. a hub id)."""
        ...

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer ``request`` with one assistant message: return a ``ChatResponse`` whose ``message`` has
        ``role="assistant"``, with ``usage`` filled in where the backend knows it. Tool calls the model tried to
        make but that could not be parsed go into ``tool_call_errors`` (the agent shows them to the model), not
        into an exception.

        Errors: raise ``tq_agents.errors.TransientModelError`` for failures worth retrying (rate limit, 5xx,
        connection reset, timeout): the agent's ``TurnContext`` retries them with its ``RetryPolicy``. Raise
        another ``ModelError`` (``ModelRequestError``, ``ModelUnavailableError``) for failures that retrying will
        not heal: they are not retried, and the turn fails with the error's message (a run records the failed
        call). Any other exception is treated as a bug: the node's turn fails with it.

        Concurrency: one model object serves a whole workflow, and the scheduler runs ready nodes concurrently,
        so ``complete`` may be awaited by several tasks at once on the same event loop. Implementations must
        allow that (serialise internally if the backend cannot serve requests in parallel) and must not block
        the event loop. The awaiting task may be cancelled (``run.cancel()``, a deadline):
        ``asyncio.CancelledError`` must propagate, leaving the model usable. Treat ``request`` as read-only; in a
        run, ``request.metadata`` holds the ``run_id`` and ``turn_id`` of the call.
        """
        ...


_MODEL_HINT = (
    "build a model object, e.g. LocalQwen('Qwen/Qwen2.5-1.5B-Instruct') from tq_agents.models.local (in process), "
    "OpenAICompatible(base_url, 'model-name') from tq_agents.models.openai_compat (a server), or "
    "tq_agents.testing.ScriptedModel for tests"
)


def not_a_chat_model(model: object, where: str) -> ConfigError:
    """The ``ConfigError`` for a ``model`` option that is not a ``ChatModel`` (no callable ``complete``),
    naming ``where`` it was given (``"agent 'a'"``, ``"Workflow('w')"``, ``"start_run()"``)."""
    from tq_agents.errors import ConfigError

    got = "None" if model is None else f"{model!r:.60} ({type(model).__name__})"
    return ConfigError(
        f"{where}: model must be a ChatModel (an object with an async complete(request) method), got {got}",
        hint=f"a model name is not a model: {_MODEL_HINT}" if isinstance(model, str) else _MODEL_HINT,
    )


def check_chat_model(model: object, where: str) -> None:
    """Raise ``not_a_chat_model`` unless ``model`` is ``None`` or has a callable ``complete``."""
    if model is not None and not callable(getattr(model, "complete", None)):
        raise not_a_chat_model(model, where)


@runtime_checkable
class StreamingChatModel(ChatModel, Protocol):
    """A ``ChatModel`` that can also stream tokens. The last delta carries the full ``ChatResponse``."""

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Yield ``StreamDelta`` pieces as tokens are generated; the last one carries the full ``ChatResponse``
        (as ``complete`` would return it). Errors and concurrency follow ``complete``."""
        ...


def tool_schema_map(tools: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Map tool name → its ``function`` object (name, description, parameters)."""
    return {t["function"]["name"]: t["function"] for t in tools}
