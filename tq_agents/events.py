"""Typed run events. Every event is appended to the run store; the caller's stream gets it once durable.

```python
run = workflow.start("hello", store=SQLiteRunStore("runs.sqlite"))
async for ev in run.events():
    match ev:
        case NodeStarted(node=n): ...
        case ModelCallFinished(tokens_per_s=tps): ...
        case RunFinished(status=s): ...
```

``Event.to_dict()`` gives a JSON-able dict (``kind``, ``run_id``, ``seq``, ``ts`` and the fields) for ``--json``
output; ``event_from_stored`` rebuilds the typed event from a stored row.

Turns. A turn opens with ``NodeStarted`` and normally closes with its ``NodeFinished`` (same ``turn_id``). A turn
that a stop interrupts (``cancel()``, the deadline, the token budget, another turn's failure, an internal error)
gets no ``NodeFinished``: a UI should treat every turn still open at ``RunFinished`` as closed, stopped, with the
run's status (``cancelled``, ``deadline``, ``max_tokens``, ``failed``). A ``RunResumed`` re-opens the turns its
``rerun`` lists: they run again under the same ``turn_id`` without a new ``NodeStarted`` (their recorded model
answers and tool results are reused, not logged again) and close with a ``NodeFinished`` as usual. A process that
dies leaves no ``RunFinished``: its turns stay open until the run is resumed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import orjson
import pydantic_core

from tq_agents.messages import Message
from tq_agents.models.base import ChatMessage, ChatResponse, Usage

__all__ = [
    "Event",
    "InputDropped",
    "MessageEmitted",
    "ModelCallFailed",
    "ModelCallFinished",
    "ModelCallStarted",
    "NodeFinished",
    "NodeStarted",
    "RunFinished",
    "RunResumed",
    "RunStarted",
    "ToolCallFinished",
    "ToolCallStarted",
    "event_from_stored",
]

_to_json = pydantic_core.to_json
_orjson_dumps = orjson.dumps
# anything but plain JSON values (str/int/float/bool/None/list/dict, not subclasses) goes to pydantic instead
_PLAIN_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
_response_json = ChatResponse.__pydantic_serializer__.to_json
_EXCLUDE_RUN_ID = {"run_id"}


def _json(fields: dict[str, Any]) -> bytes:
    """Compact JSON of a payload the scheduler built (ids, names, counts, finite floats): orjson for plain JSON
    values (about 3x faster than pydantic's inferring encoder), pydantic for anything else (models, datetimes,
    ...), which raises ``PydanticSerializationError`` for what cannot be encoded at all. Not for payloads that
    may hold user values: orjson writes a non-finite float as ``null`` where pydantic writes ``Infinity``."""
    try:
        return _orjson_dumps(fields, option=_PLAIN_ONLY)
    except TypeError:  # orjson.JSONEncodeError: a value that is not plain JSON
        return _to_json(fields)


def strict_json(text: str, *, separators: tuple[str, str] | None = None) -> str:
    """JSON ``text`` that any parser reads: the non-standard constants ``NaN``/``Infinity``/``-Infinity`` (a
    non-finite float) become the strings ``"NaN"``/``"Infinity"``/``"-Infinity"``; other text is returned
    as is. ``separators`` as in ``json.dumps`` for the rewritten text."""
    if "NaN" not in text and "Infinity" not in text:  # (or just the word inside a string: then unchanged)
        return text
    # parse_constant gets only the bare constants, never string contents: each becomes its name
    return json.dumps(json.loads(text, parse_constant=str), ensure_ascii=False, separators=separators)


_EVENT_TYPES: dict[str, type[Event]] = {}


_PLAIN_EXCLUDE: dict[str, Any] = {
    "message": {"tool_call_id", "name", "reasoning_content", "tool_calls"},
    "raw_text": True,
    "tool_call_errors": True,
    "finish_reason": True,
}


def _unset(r: ChatResponse) -> dict[str, Any]:
    """The fields of ``r`` that hold their (empty) defaults, as a serializer ``exclude`` (cheaper than
    ``exclude_defaults``, which compares every field, nested models by ``__eq__``)."""
    m = r.message
    if (
        m.tool_call_id is None
        and m.name is None
        and m.reasoning_content is None
        and not m.tool_calls
        and r.raw_text is None
        and not r.tool_call_errors
        and r.finish_reason == "stop"
    ):  # a plain text answer (the common case): one shared exclude, no sets built
        return _PLAIN_EXCLUDE
    ex_m = {
        k
        for k, v in (("tool_call_id", m.tool_call_id), ("name", m.name), ("reasoning_content", m.reasoning_content))
        if v is None
    }
    if not m.tool_calls:
        ex_m.add("tool_calls")
    ex: dict[str, Any] = {"message": ex_m}
    if r.raw_text is None:
        ex["raw_text"] = True
    if not r.tool_call_errors:
        ex["tool_call_errors"] = True
    if r.finish_reason == "stop":
        ex["finish_reason"] = True
    return ex


def _response_bytes(r: ChatResponse) -> bytes:
    """``r`` as stored: compact JSON without its default-valued fields. A plain text answer of the exact base
    models (no subclass fields) is encoded by orjson from its few set fields, the same bytes as pydantic's
    serializer writes (about 3x faster); anything else, or a value orjson does not take as plain JSON (a str
    subclass, an int over 64 bits, a lone surrogate), goes through pydantic."""
    exclude = _unset(r)
    if exclude is _PLAIN_EXCLUDE and type(r) is ChatResponse:
        m, u = r.message, r.usage
        p, c, k = u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens
        if type(m) is ChatMessage and type(u) is Usage and type(p) is int and type(c) is int and type(k) is int:
            try:
                return _orjson_dumps(
                    {
                        "message": {"role": m.role, "content": m.content},
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "cached_prompt_tokens": k},
                        "model": r.model,
                    },
                    option=_PLAIN_ONLY,
                )
            except TypeError:  # orjson.JSONEncodeError
                pass
    return _response_json(r, exclude=exclude)


_PAYLOAD_FNS: dict[type, Any] = {}
_ENVELOPE = ("run_id", "seq", "ts")


def _payload_fn(cls: type) -> Any:
    """A compiled ``self -> {field: value}`` for ``cls``'s payload fields (one dict display, no loop)."""
    names = [f.name for f in fields(cls) if f.name not in _ENVELOPE]
    src = "def payload(self):\n    return {" + ", ".join(f"{n!r}: self.{n}" for n in names) + "}\n"
    ns: dict[str, Any] = {}
    exec(src, ns)  # source built from dataclass field names (identifiers)
    return ns["payload"]


@dataclass(slots=True, kw_only=True)
class Event:
    """Base of all run events. ``seq`` is the position in the run's log (set when appended)."""

    kind: ClassVar[str] = "Event"
    # payload values are the scheduler's own (see ``_json``); user values (tool arguments, budgets) are not
    _scheduler_values: ClassVar[bool] = False
    run_id: str
    seq: int = 0
    ts: float = field(default_factory=time.time)

    def __init_subclass__(cls, **kwargs: Any) -> None:  # no super(): slotted dataclasses re-create the class
        cls.kind = cls.__name__
        _EVENT_TYPES[cls.__name__] = cls

    def payload(self) -> dict[str, Any]:
        """The fields other than run_id/seq/ts (what the store keeps as the payload)."""
        cls = type(self)
        fn = _PAYLOAD_FNS.get(cls)
        if fn is None:
            fn = _PAYLOAD_FNS[cls] = _payload_fn(cls)
        return fn(self)

    def payload_json(self) -> bytes:
        """``payload()`` as compact JSON: what the run store keeps."""
        return self.encode(self.run_id, self.payload())

    @classmethod
    def encode(cls, run_id: str, fields: dict[str, Any]) -> bytes:
        """The stored payload JSON for an event of this kind with payload ``fields``, without building the
        event object (the scheduler's path when no one streams the run's events)."""
        return _json(fields) if cls._scheduler_values else _to_json(fields)

    def to_json(self) -> str:
        """``{"kind", "run_id", "seq", "ts", **payload}`` as strict JSON (messages and responses as objects).

        A non-finite float (in a message, tool arguments, ...) is written as the string ``"Infinity"``,
        ``"-Infinity"`` or ``"NaN"``, so that any JSON parser reads the output. (The stored payload, see
        ``payload_json``, keeps them as the constants ``Infinity``/``NaN``, which load back as floats.)"""
        head = {"kind": self.kind, "run_id": self.run_id, "seq": self.seq, "ts": self.ts}
        return strict_json(pydantic_core.to_json({**head, **self.payload()}).decode(), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of ``to_json`` (strict JSON values: a non-finite float as ``"Infinity"`` etc.)."""
        return json.loads(self.to_json())  # type: ignore[no-any-return]

    @classmethod
    def from_payload(cls, run_id: str, seq: int, ts: float, payload: dict[str, Any]) -> Event:
        """Rebuild from a stored payload (subclasses decode nested objects)."""
        return cls(run_id=run_id, seq=seq, ts=ts, **payload)


@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    """A run began. ``input`` is the input message (``Message.to_dict``); ``pid`` and ``host`` name the
    process that runs it (``resume`` refuses a run whose process still runs; absent in older logs)."""

    workflow: str
    input: dict[str, Any]
    entries: list[str]
    budgets: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    host: str = ""


@dataclass(slots=True, kw_only=True)
class RunResumed(Event):
    """A crashed/interrupted run continues; ``rerun`` lists in-flight turns that run again; ``budgets`` are
    those in force from here on (``max_turns``, ``max_tokens``, ``deadline_s``; empty in older logs).

    Each turn in ``rerun`` had a ``NodeStarted`` before and no ``NodeFinished``; this event re-opens it (no new
    ``NodeStarted`` follows): its ``NodeFinished`` comes later under the same ``turn_id``. A UI that closed it
    as stopped at an earlier ``RunFinished`` shows it as running again (see the module docstring)."""

    rerun: list[str] = field(default_factory=list)
    budgets: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    host: str = ""


@dataclass(slots=True, kw_only=True)
class NodeStarted(Event):
    """A turn of ``node`` began (``turn_id`` = ``node:visit``) on the messages ``inputs`` (ids)."""

    _scheduler_values: ClassVar[bool] = True

    node: str
    turn_id: str
    visit: int
    inputs: list[str]


@dataclass(slots=True, kw_only=True)
class ModelCallStarted(Event):
    """Model call ``index`` of a turn was sent. ``request_hash`` identifies the request for replay.

    Not emitted by the scheduler since the hot-path rework: ``ModelCallFinished`` carries the same facts
    (``request_hash``, ``prompt_messages``; the call began at ``ts - duration_s``), one event per call instead
    of two. Kept so that logs written before still load (``RunRecord`` reads hashes from either)."""

    node: str
    turn_id: str
    index: int
    request_hash: str
    prompt_messages: int = 0


@dataclass(slots=True, kw_only=True)
class ModelCallFinished(Event):
    """Model call ``index`` of a turn answered with ``response`` after ``duration_s``. ``request_hash``
    fingerprints the request (replay compares it), ``prompt_messages`` counts the request's messages."""

    node: str
    turn_id: str
    index: int
    response: ChatResponse
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0
    tokens_per_s: float = 0.0
    request_hash: str = ""
    prompt_messages: int = 0

    @classmethod
    def encode(cls, run_id: str, fields: dict[str, Any]) -> bytes:
        """The response is stored without its default-valued fields (empty tool calls, ``None`` fields, ...),
        which ``from_payload`` restores; keeps a turn's log row small."""
        rest = dict(fields)
        response = rest.pop("response")
        return _json(rest)[:-1] + b',"response":' + _response_bytes(response) + b"}"

    @classmethod
    def from_payload(cls, run_id: str, seq: int, ts: float, payload: dict[str, Any]) -> Event:
        payload = dict(payload)
        payload["response"] = ChatResponse.model_validate(payload["response"])
        return cls(run_id=run_id, seq=seq, ts=ts, **payload)


@dataclass(slots=True, kw_only=True)
class ModelCallFailed(Event):
    """A model call raised; ``will_retry`` tells whether it is tried again."""

    node: str
    turn_id: str
    index: int
    attempt: int
    error: str
    will_retry: bool


@dataclass(slots=True, kw_only=True)
class ToolCallStarted(Event):
    """A tool call is about to run (``key`` identifies it within the run)."""

    node: str
    turn_id: str
    key: str
    tool: str
    arguments: dict[str, Any]


@dataclass(slots=True, kw_only=True)
class ToolCallFinished(Event):
    """A tool call ended; ``result`` is the ``ToolResult``/``ToolError`` as a dict."""

    node: str
    turn_id: str
    key: str
    tool: str
    ok: bool
    result: dict[str, Any]


@dataclass(slots=True, kw_only=True)
class MessageEmitted(Event):
    """A node produced ``message`` (stored with its ``type_name`` so it loads as the same subclass)."""

    node: str
    turn_id: str
    message: Message

    def payload(self) -> dict[str, Any]:
        return {"node": self.node, "turn_id": self.turn_id, "message": self.message, "type": self.message.type_name}

    @classmethod
    def encode(cls, run_id: str, fields: dict[str, Any]) -> bytes:
        """The message's ``run_id`` is left out when it is the event's (the usual case; ``from_payload`` puts
        it back)."""
        msg = fields["message"]
        if msg.run_id != run_id:
            return _to_json({**fields, "type": msg.type_name})
        head = _json({"node": fields["node"], "turn_id": fields["turn_id"], "type": msg.type_name})
        body = msg.__pydantic_serializer__.to_json(msg, exclude=_EXCLUDE_RUN_ID)
        return head[:-1] + b',"message":' + body + b"}"

    @classmethod
    def from_payload(cls, run_id: str, seq: int, ts: float, payload: dict[str, Any]) -> Event:
        data = payload["message"]
        if "run_id" not in data:
            data = {**data, "run_id": run_id}
        msg = Message.from_dict({**data, "type": payload["type"]})
        return cls(run_id=run_id, seq=seq, ts=ts, node=payload["node"], turn_id=payload["turn_id"], message=msg)


@dataclass(slots=True, kw_only=True)
class NodeFinished(Event):
    """A turn ended. ``status``: completed | failed. ``routed``: [target, message id] pairs sent along edges.

    A turn interrupted by a stop (cancel, deadline, token budget, another turn's failure) gets none: it is closed, as
    stopped, by the run's ``RunFinished``; after a resume that re-opens it (``RunResumed.rerun``) its
    ``NodeFinished`` arrives without a new ``NodeStarted``."""

    _scheduler_values: ClassVar[bool] = True

    node: str
    turn_id: str
    status: str
    reason: str = ""
    outputs: list[str] = field(default_factory=list)
    routed: list[list[str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class InputDropped(Event):
    """Messages for ``node`` were not used: a visit bound (maybe redirected) or a late ``any`` arrival."""

    node: str
    messages: list[str]
    reason: str
    redirected_to: str | None = None


@dataclass(slots=True, kw_only=True)
class RunFinished(Event):
    """The run ended. ``status``: completed | failed | cancelled | max_turns | max_tokens | deadline.

    Token counts are the whole run's (every model call, resumes included); ``output`` is the id of the
    ``RunResult.output`` message. Turns still open here (no ``NodeFinished``) were stopped by it."""

    _scheduler_values: ClassVar[bool] = True

    status: str
    reason: str = ""
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # part of prompt_tokens, served from a prefix cache (0 in older logs)
    output: str | None = None
    duration_s: float = 0.0


def event_from_stored(run_id: str, seq: int, ts: float, kind: str, payload: dict[str, Any]) -> Event | None:
    """The typed event for a stored row, or ``None`` for kinds that are not core events (e.g. backends')."""
    cls = _EVENT_TYPES.get(kind)
    if cls is None:
        return None
    return cls.from_payload(run_id, seq, ts, payload)
