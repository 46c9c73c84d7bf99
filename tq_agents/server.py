"""``tq serve``: an OpenAI-compatible HTTP API (FastAPI + uvicorn) over ``LocalQwen``.

Imports fastapi at module level: import it only where the `serve` extra is installed (the CLI does so lazily).

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (tools, ``tool_choice``,
``response_format`` json_schema/json_object, SSE streaming with ``stream_options.include_usage``),
``POST /v1/completions`` (raw prompt; ``guided_grammar`` / ``structured_outputs.grammar`` (llguidance Lark) and
``guided_json`` / ``structured_outputs.json`` extensions, as vLLM's guidance backend takes them).

All requests share one ``LocalQwen`` and so one engine: concurrent clients are batched together. Bad input gets
an OpenAI-style error body ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tq_agents.errors import ModelError, ModelRequestError, TQError
from tq_agents.models.base import ChatMessage, ChatRequest, ChatResponse, ToolCall

if TYPE_CHECKING:  # pragma: no cover
    from tq_agents.models.local import LocalQwen, PreparedPrompt

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

# Where streamed content stops being plain text: tool calls (Hermes and XML), reasoning, a tool response the model
# wrote itself, end-of-turn tokens. What follows is sent from the parsed response at the end of the stream.
_MARKERS = (
    "<tool_call>",
    "<function=",
    "<think>",
    "</think>",
    "<tool_response>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>",
)
_CALL_OPENERS = ("<tool_call>", "<function=")


class _BadRequest(Exception):
    def __init__(self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def _error_body(message: str, *, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# ------------------------------------------------------------------------------------------------ request parsing


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__
    )


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise _BadRequest(f"{where}.{key} must be a string or null, got {_type_name(v)}", param=f"{where}.{key}")
    return v


def _opt_bool(obj: dict[str, Any], key: str, where: str | None = None) -> bool | None:
    v = obj.get(key)
    name = f"{where}.{key}" if where else key
    if v is not None and not isinstance(v, bool):
        raise _BadRequest(f"'{name}' must be a boolean (true or false), got {v!r}", param=name)
    return v


def _opt_object(obj: dict[str, Any], key: str, where: str | None = None) -> dict[str, Any]:
    v = obj.get(key)
    name = f"{where}.{key}" if where else key
    if v is not None and not isinstance(v, dict):
        raise _BadRequest(f"'{name}' must be an object, got {_type_name(v)}", param=name)
    return v or {}


def _validation_message(e: ValidationError, where: str) -> str:
    """A pydantic error as one line naming the fields (``messages[1].name: Input should be a valid string``)."""
    parts = []
    for err in e.errors()[:5]:
        loc = where
        for x in err.get("loc", ()):
            loc += f"[{x}]" if isinstance(x, int) else f".{x}" if loc else str(x)
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _text_content(content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _BadRequest(f"{where}.content[{i}] must be a text part {{'type': 'text', 'text': ...}}")
            parts.append(part["text"])
        return "".join(parts)
    raise _BadRequest(f"{where}.content must be a string, a list of text parts or null", param=f"{where}.content")


def _messages(raw: Any) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise _BadRequest("'messages' must be a non-empty list of chat messages", param="messages")
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _BadRequest(f"{where} must be an object", param=where)
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise _BadRequest(
                f"{where}.role must be one of system, user, assistant, tool; got {role!r}", param=f"{where}.role"
            )
        raw_calls = m.get("tool_calls")
        if raw_calls is not None and not isinstance(raw_calls, list):
            raise _BadRequest(
                f"{where}.tool_calls must be a list of tool calls or null, got {_type_name(raw_calls)}",
                param=f"{where}.tool_calls",
            )
        calls = []
        for j, c in enumerate(raw_calls or []):
            fn = c.get("function") if isinstance(c, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise _BadRequest(f"{where}.tool_calls[{j}].function.name is missing", param=f"{where}.tool_calls")
            if c.get("id") is not None and not isinstance(c["id"], str):
                raise _BadRequest(
                    f"{where}.tool_calls[{j}].id must be a string, got {_type_name(c['id'])}",
                    param=f"{where}.tool_calls",
                )
            args = fn.get("arguments", {})
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError as e:
                    raise _BadRequest(
                        f"{where}.tool_calls[{j}].function.arguments is not valid JSON: {e.msg}",
                        param=f"{where}.tool_calls",
                    ) from e
            if not isinstance(args, dict):
                raise _BadRequest(
                    f"{where}.tool_calls[{j}].function.arguments must be a JSON object", param=f"{where}.tool_calls"
                )
            calls.append(ToolCall(id=c.get("id") or f"call_{j}", name=fn["name"], arguments=args))
        fields = {k: _opt_str(m, k, where) for k in ("tool_call_id", "name", "reasoning_content")}
        try:
            msg = ChatMessage(role=role, content=_text_content(m.get("content"), where), tool_calls=calls, **fields)
        except ValidationError as e:  # a field checked nowhere above: still the client's mistake
            raise _BadRequest(_validation_message(e, where), param=where) from e
        out.append(msg)
    return out


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _BadRequest("'tools' must be a list", param="tools")
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _BadRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", param=f"tools[{i}]")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _BadRequest(f"tools[{i}].function.name is missing", param=f"tools[{i}].function.name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _BadRequest(f"tools[{i}].function.parameters must be a JSON schema object")
    return [{"type": "function", "function": t["function"]} for t in raw]


def _tool_choice(raw: Any, tools: list[dict[str, Any]]) -> str:
    if raw is None:
        return "auto"
    if isinstance(raw, dict):
        fn = raw.get("function")
        shape = "{'type': 'function', 'function': {'name': ...}}"
        if raw.get("type") != "function":
            raise _BadRequest(
                f"tool_choice.type must be 'function' (tool_choice object: {shape}), got {raw.get('type')!r}",
                param="tool_choice.type",
            )
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            got = _type_name(fn) if not isinstance(fn, dict) else f"name {_type_name(fn.get('name'))}"
            raise _BadRequest(
                f"tool_choice.function must be an object with a string 'name' ({shape}), got {got}",
                param="tool_choice.function",
            )
        raw = fn["name"]
    if not isinstance(raw, str):
        raise _BadRequest("tool_choice must be 'auto', 'none', 'required' or a function object", param="tool_choice")
    names = [t["function"]["name"] for t in tools]
    if raw not in ("auto", "none", "required") and raw not in names:
        raise _BadRequest(
            f"tool_choice names {raw!r}, which is not among the tools ({', '.join(names) or 'none given'})",
            param="tool_choice",
        )
    if raw in ("required",) and not tools:
        raise _BadRequest("tool_choice 'required' needs a non-empty 'tools' list", param="tool_choice")
    return raw


def _number(body: dict[str, Any], key: str, default: Any, lo: float, hi: float, kind: type = float) -> Any:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise _BadRequest(f"'{key}' must be a{'n integer' if kind is int else ' number'}, got {v!r}", param=key)
    if not lo <= v <= hi:
        raise _BadRequest(f"'{key}' must be between {lo:g} and {hi:g}, got {v!r}", param=key)
    return kind(v)


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return raw
    raise _BadRequest("'stop' must be a string or a list of strings", param="stop")


def chat_request_from_openai(body: dict[str, Any]) -> tuple[ChatRequest, bool, bool]:
    """(request, stream, include_usage) from an OpenAI chat-completions body; raises ``_BadRequest``."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _BadRequest(f"only n=1 is supported, got n={n!r}", param="n")
    tools = _tools(body.get("tools"))
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise _BadRequest(
                "response_format.type must be 'text', 'json_object' or 'json_schema'", param="response_format"
            )
        if fmt["type"] == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict):
                raise _BadRequest(
                    "response_format.json_schema must be an object {'name': ..., 'schema': {...}}, "
                    f"got {_type_name(spec)}",
                    param="response_format.json_schema",
                )
            if not isinstance(spec.get("schema"), dict):
                raise _BadRequest(
                    "response_format.json_schema.schema must be a JSON schema object",
                    param="response_format.json_schema.schema",
                )
    # max_completion_tokens (current name) wins over max_tokens (deprecated); null means not given
    tokens_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, tokens_key, None, 1, 1 << 20, int)
    stream = _opt_bool(body, "stream")
    opts = _opt_object(body, "stream_options")
    include_usage = _opt_bool(opts, "include_usage", "stream_options")
    template_kwargs = _opt_object(body, "chat_template_kwargs")
    enable_thinking = _opt_bool(template_kwargs, "enable_thinking", "chat_template_kwargs")
    messages = _messages(body.get("messages"))
    tool_choice = _tool_choice(body.get("tool_choice"), tools)
    try:
        req = ChatRequest(
            messages=messages,
            tools=tools,
            tool_choice=tool_choice,
            response_format=fmt if fmt and fmt.get("type") != "text" else None,
            max_tokens=max_tokens,
            temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
            top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
            seed=_number(body, "seed", None, -(2**63), 2**63 - 1, int),
            stop=_stop(body.get("stop")),
            enable_thinking=enable_thinking,
            priority=_number(body, "priority", 0, -(2**31), 2**31, int),
            metadata={"user": body["user"]} if isinstance(body.get("user"), str) else {},
        )
    except ValidationError as e:  # a field checked nowhere above: still the client's mistake
        raise _BadRequest(_validation_message(e, "")) from e
    return req, bool(stream), bool(include_usage)


# ------------------------------------------------------------------------------------------------ responses


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


def _usage(resp: ChatResponse) -> dict[str, Any]:
    u = resp.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
    }


def _openai_calls(calls: list[ToolCall], *, with_index: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        d: dict[str, Any] = {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
        }
        if with_index:
            d["index"] = i
        out.append(d)
    return out


def chat_response_to_openai(resp: ChatResponse, *, model: str, rid: str, created: int) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": resp.message.content}
    if resp.message.tool_calls:
        msg["tool_calls"] = _openai_calls(resp.message.tool_calls)
    if resp.message.reasoning_content:
        msg["reasoning_content"] = resp.message.reasoning_content
    choice = {"index": 0, "message": msg, "finish_reason": _finish(resp.finish_reason), "logprobs": None}
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(resp),
        "system_fingerprint": None,
        "tq_tool_call_errors": [e.model_dump() for e in resp.tool_call_errors],
    }


def _safe_prefix(text: str) -> tuple[str, bool]:
    """The part of streamed raw text that is plain content: up to the first marker, minus a partial marker
    (held back until the next tokens tell; the end of the stream sends it from the final response)."""
    cut = min((i for i in (text.find(m) for m in _MARKERS) if i >= 0), default=-1)
    if cut >= 0:
        return text[:cut], True
    longest = 0
    for m in _MARKERS:
        for k in range(len(m) - 1, longest, -1):
            if text.endswith(m[:k]):
                longest = k
                break
    return text[: len(text) - longest], False


def _streamable_content(raw: str, opened_think: bool) -> tuple[str, bool]:
    """(content of the completion so far that may be streamed, whether the rest must wait for the end).

    The reasoning is never content: when the prompt opened it (``opened_think``) or the completion starts with
    ``<think>``, content begins after ``</think>`` (a tool call before any ``</think>`` ends the reasoning, and
    the rest comes from the parsed response). Edges are stripped as the parser strips them: leading whitespace
    is dropped and trailing whitespace held back, so what is streamed is a prefix of the final content.
    """
    if opened_think or raw.lstrip().startswith("<think>"):
        close = raw.find("</think>")
        opener = min((i for i in (raw.find(m) for m in _CALL_OPENERS) if i >= 0), default=-1)
        if opener >= 0 and (close < 0 or opener < close):
            return "", True
        if close < 0:
            return "", False
        raw = raw[close + len("</think>") :]
    safe, held = _safe_prefix(raw)
    return safe.strip(), held


def _sse(data: Any) -> str:
    return "data: " + (data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)) + "\n\n"


async def _chat_stream(
    model: Any,
    req: ChatRequest,
    *,
    model_id: str,
    rid: str,
    created: int,
    include_usage: bool,
    opened_think: bool = False,
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    yield _sse(chunk({"role": "assistant", "content": ""}))
    raw, streamed, held = "", "", False
    final: ChatResponse | None = None
    try:
        async for d in model.stream(req):
            if d.response is not None:
                final = d.response
                break
            raw += d.text
            if held or not d.text:
                continue
            safe, held = _streamable_content(raw, opened_think)
            if len(safe) > len(streamed) and safe.startswith(streamed):
                yield _sse(chunk({"content": safe[len(streamed) :]}))
                streamed = safe
    except ModelError as e:
        kind = "invalid_request_error" if isinstance(e, ModelRequestError) else "server_error"
        yield _sse(_error_body(e.message, kind=kind))
        yield _sse("[DONE]")
        return
    if final is None:  # pragma: no cover - the model always ends with a response
        return
    content = final.message.content or ""
    if content.startswith(streamed):  # what was held back (partial markers, trailing whitespace, after markers)
        if len(content) > len(streamed):
            yield _sse(chunk({"content": content[len(streamed) :]}))
    else:  # the parser rewrote text already sent (e.g. a bare JSON call): it cannot be taken back
        log.debug("streamed content %r is not a prefix of the final content %r", streamed[:80], content[:80])
    if final.message.reasoning_content:
        yield _sse(chunk({"reasoning_content": final.message.reasoning_content}))
    if final.message.tool_calls:
        yield _sse(chunk({"tool_calls": _openai_calls(final.message.tool_calls, with_index=True)}))
    yield _sse(chunk({}, _finish(final.finish_reason)))
    if include_usage:
        yield _sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_id, "choices": [],
                    "usage": _usage(final)})  # fmt: skip
    yield _sse("[DONE]")


# ------------------------------------------------------------------------------------------------ app


def create_app(model: LocalQwen, *, model_id: str | None = None) -> FastAPI:
    """The FastAPI app serving ``model`` (a loaded ``LocalQwen``) under ``model_id`` (default: its name)."""
    served = model_id or model.model_name
    aliases = {served, model.model_name, str(getattr(model, "path", served))}
    app = FastAPI(title="tq-agents OpenAI-compatible server", version="0.1.0")
    app.state.model = model

    def err(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(_error_body(message, kind=kind, param=param, code=code), status_code=status)

    @app.exception_handler(_BadRequest)
    async def _bad(_: Request, e: _BadRequest) -> JSONResponse:
        return err(e.status, e.message, param=e.param, code=e.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return err(400, f"invalid request: {e.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return err(e.status_code, str(e.detail), code="not_found" if e.status_code == 404 else None)

    @app.exception_handler(TQError)
    async def _tq(_: Request, e: TQError) -> JSONResponse:
        if isinstance(e, ModelRequestError):
            return err(400, e.message)
        log.exception("request failed")
        return err(500, f"{type(e).__name__}: {e.message}")

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except UnicodeDecodeError as e:
            raise _BadRequest(f"request body is not valid UTF-8: byte {raw[e.start]:#04x} at offset {e.start}") from e
        except json.JSONDecodeError as e:
            raise _BadRequest(f"request body is not valid JSON: {e.msg} at char {e.pos}") from e
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise _BadRequest("'model' is required", param="model")
        if name not in aliases:
            raise _BadRequest(
                f"The model `{name}` does not exist. This server serves `{served}`.",
                param="model",
                status=404,
                code="model_not_found",
            )
        return body

    @app.get("/health")
    async def health() -> dict[str, Any]:
        engine = getattr(model, "_engine", None)
        return {"status": "ok", "model": served, "engine": engine.stats() if engine is not None else None}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": served, "object": "model", "created": int(time.time()), "owned_by": "tq-agents"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Any:
        body = await body_of(request)
        req, stream, include_usage = chat_request_from_openai(body)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        prep = await _run_prepare(model, req)
        if stream:
            gen = _chat_stream(
                model,
                req,
                model_id=served,
                rid=rid,
                created=created,
                include_usage=include_usage,
                opened_think=bool(getattr(prep, "opened_think", False)),
            )
            return StreamingResponse(gen, media_type="text/event-stream")
        resp = await model.complete(req)
        return chat_response_to_openai(resp, model=served, rid=rid, created=created)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Any:
        body = await body_of(request)
        return await _completions(model, body, served)

    return app


async def _run_prepare(model: Any, req: ChatRequest) -> PreparedPrompt | None:
    """Fail bad requests (unknown tool, bad schema, prompt longer than the context) with a 400 before a stream
    starts. Returns the prepared prompt (``None`` for a model without ``prepare``): the stream needs to know
    whether the prompt opened the reasoning."""
    import asyncio

    prepare = getattr(model, "prepare", None)
    if prepare is None:
        return None
    return await asyncio.to_thread(prepare, req)


async def _completions(model: LocalQwen, body: dict[str, Any], served: str) -> Any:
    """``/v1/completions`` on the raw prompt (no chat template), optionally grammar-constrained."""
    from tq_agents.models._engine import SamplingParams
    from tq_agents.models._grammar import GrammarLimits

    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise _BadRequest("'prompt' must be a non-empty string (one prompt per request)", param="prompt")
    max_tokens = _number(body, "max_tokens", 16, 1, 1 << 20, int)
    stops = _stop(body.get("stop"))
    tok = model.tokenizer
    ids = tok.encode(prompt, add_special_tokens=False)
    stream = _opt_bool(body, "stream")
    include_usage = _opt_bool(_opt_object(body, "stream_options"), "include_usage", "stream_options")
    so = _opt_object(body, "structured_outputs")
    grammar = so.get("grammar") or body.get("guided_grammar")
    schema = so.get("json") or body.get("guided_json")
    constraint = None
    limits = GrammarLimits(max_tokens=max_tokens)
    try:
        if grammar:
            if not isinstance(grammar, str):
                raise _BadRequest("guided_grammar must be a string (llguidance Lark)", param="guided_grammar")
            constraint = model._compiler().constraint(grammar)
        elif schema:
            if isinstance(schema, str):
                try:
                    schema = json.loads(schema)
                except json.JSONDecodeError as e:
                    raise _BadRequest(f"guided_json is not valid JSON: {e.msg}", param="guided_json") from e
            if not isinstance(schema, dict):
                raise _BadRequest("guided_json must be a JSON schema object", param="guided_json")
            constraint = model._compiler().json_output(schema, limits)[1]
    except ModelRequestError as e:
        raise _BadRequest(e.message, param="guided_grammar" if grammar else "guided_json") from e
    stop_ids = () if body.get("ignore_eos") else tuple(model._stop_ids)
    params = SamplingParams(
        max_new_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        seed=_number(body, "seed", None, -(2**63), 2**63 - 1, int),
        stop_token_ids=stop_ids,
    )
    handle = model.engine.submit(
        ids, params, constraint=constraint, priority=_number(body, "priority", 0, -1e9, 1e9, int)
    )
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    stop_set = set(stop_ids)

    def text_of(tokens: list[int]) -> str:
        return tok.decode([t for t in tokens if t not in stop_set], skip_special_tokens=True)

    def cut(text: str) -> tuple[str, bool]:
        hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
        return (text[: min(hits)], True) if hits else (text, False)

    def payload(text: str, finish: str | None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": served,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        }
        if usage is not None:
            out["usage"] = usage
        return out

    if stream:

        async def gen() -> AsyncIterator[str]:
            tokens: list[int] = []
            sent = ""
            try:
                async for t in handle:
                    tokens.append(t)
                    text = text_of(tokens)
                    if text.endswith("\ufffd"):
                        continue
                    text, hit = cut(text)
                    if len(text) > len(sent):
                        yield _sse(payload(text[len(sent) :], None))
                        sent = text
                    if hit:
                        handle.cancel()
                        break
                res = await handle.result()
            except BaseException:
                handle.cancel()
                raise
            yield _sse(payload("", "stop" if res.finish_reason != "length" else "length"))
            if include_usage:
                usage = {
                    "prompt_tokens": res.prompt_tokens,
                    "completion_tokens": len(res.token_ids),
                    "total_tokens": res.prompt_tokens + len(res.token_ids),
                    "prompt_tokens_details": {"cached_tokens": res.cached_prompt_tokens},
                }
                done = payload("", None, usage)
                done["choices"] = []
                yield _sse(done)
            yield _sse("[DONE]")

        return StreamingResponse(gen(), media_type="text/event-stream")
    try:
        res = await handle.result()
    except BaseException:
        handle.cancel()
        raise
    if res.finish_reason == "error":
        raise ModelError(f"generation failed: {res.error}")
    text, hit = cut(text_of(res.token_ids))
    finish = "length" if res.finish_reason == "length" and not hit else "stop"
    usage = {
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": len(res.token_ids),
        "total_tokens": res.prompt_tokens + len(res.token_ids),
        "prompt_tokens_details": {"cached_tokens": res.cached_prompt_tokens},
    }
    return payload(text, finish, usage)


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, dtype: str | None = None) -> None:
    """Load ``model`` (hub id or checkpoint directory) and serve the OpenAI-compatible API until interrupted.

    Raises ``ModelUnavailableError`` (before listening) when the model cannot be found or loaded.
    """
    import sys

    import uvicorn

    from tq_agents.models.local import LocalQwen

    local = LocalQwen(model, dtype=dtype).load()
    local._compiler()  # build the grammar compiler (vocabulary scan) now, not on the first constrained request
    app = create_app(local, model_id=model)
    sys.stderr.write(f"tq serve: {model} ({local.family}) on http://{host}:{port}/v1\n")
    uvicorn.run(app, host=host, port=port, log_level="warning")
