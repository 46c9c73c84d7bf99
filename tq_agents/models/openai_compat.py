"""``OpenAICompatible``: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ``tq serve``) as a ``ChatModel``.

Two modes:

* ``mode="tools"`` — ``/v1/chat/completions`` with the server's native tool calling (``tools``, ``tool_choice``,
  ``response_format``).
* ``mode="raw"`` — the prompt is rendered here with Qwen's own format (``tq_agents.models.qwen.render``) and sent
  to ``/v1/completions``; the completion is parsed with ``tq_agents.models.qwen.parse``. Works with servers
  started without a tool parser. When a call or a JSON output is required, the llguidance Lark grammar of
  ``tq_agents.models._grammar`` is sent as ``structured_outputs.grammar`` (vLLM's guidance backend and
  ``tq serve`` take it; set ``grammar_param=None`` for servers that do not).

Retries (tenacity): 429, 5xx, 408/409, connection errors and timeouts are retried with jittered exponential
backoff, capped; 400/401/403/404/422 fail at once with a clear message. The SDK's own retries are off, and
``openai`` exceptions never leave this module (they become ``tq_agents.errors`` types, chained with ``from``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

from tq_agents.errors import ConfigError, ModelError, ModelRequestError, ModelUnavailableError, TransientModelError
from tq_agents.models.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    MalformedToolCall,
    StreamDelta,
    ToolCall,
    Usage,
)

__all__ = ["OpenAICompatible", "guess_family"]

log = logging.getLogger(__name__)

_FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


def guess_family(model: str) -> str:
    """Qwen family from a model name: ``*coder*`` with qwen3 → qwen3-coder, ``*qwen3*`` → qwen3, else qwen2.5."""
    m = model.lower()
    if "qwen3" in m and "coder" in m:
        return "qwen3-coder"
    if "qwen3" in m:
        return "qwen3"
    return "qwen2.5"


class OpenAICompatible:
    """A model behind an OpenAI-compatible HTTP API.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model id.
        api_key: bearer token; default ``$OPENAI_API_KEY`` or a placeholder (local servers ignore it).
        mode: ``"tools"`` (native tool calling) or ``"raw"`` (Qwen prompt rendered here, ``/v1/completions``).
        family: Qwen family for ``raw`` mode; guessed from ``model`` when ``None``.
        timeout: seconds per HTTP attempt.
        max_attempts: attempts per request including the first (retries only for transient failures).
        backoff_initial / backoff_max: jittered exponential backoff, seconds (capped at ``backoff_max``).
        max_tokens: default completion budget when a request sets none.
        grammar_param: where ``raw`` mode sends its grammar (``"structured_outputs"``, ``"guided_grammar"`` or
            ``None`` to send none).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        mode: Literal["tools", "raw"] = "tools",
        family: str | None = None,
        timeout: float = 120.0,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        max_tokens: int = 1024,
        grammar_param: str | None = "structured_outputs",
    ) -> None:
        if mode not in ("tools", "raw"):
            raise ConfigError(f"OpenAICompatible mode must be 'tools' or 'raw', got {mode!r}")
        if family is not None and family not in _FAMILIES:
            raise ConfigError(f"unknown family {family!r}", hint=f"use one of: {', '.join(_FAMILIES)}")
        if grammar_param not in (None, "structured_outputs", "guided_grammar"):
            raise ConfigError("grammar_param must be 'structured_outputs', 'guided_grammar' or None")
        try:
            import openai
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ModelUnavailableError(
                "the 'openai' package is needed for OpenAICompatible", hint="pip install 'tq-agents[openai]'"
            ) from e
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.mode = mode
        self.family = family or guess_family(model)
        self.max_attempts = max(1, max_attempts)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_tokens = max_tokens
        self.grammar_param = grammar_param
        self.attempts = 0  # HTTP attempts made (for tests and diagnostics)
        key = api_key or os.environ.get("OPENAI_API_KEY") or "sk-no-key-needed"
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0)

    @property
    def model_name(self) -> str:
        return self.model

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.base_url!r}, {self.model!r}, mode={self.mode!r})"

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    # ------------------------------------------------------------------ public
    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Send ``request`` (retrying transient failures) and return the parsed response."""
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
            retry=retry_if_exception_type(TransientModelError),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "%s: attempt %d failed (%s); retrying", self, rs.attempt_number, rs.outcome.exception()
            ),
        )
        async for attempt in retrying:
            with attempt:
                self.attempts += 1
                if self.mode == "tools":
                    return await self._tools_once(request)
                return await self._raw_once(request)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ error translation
    def _translate(self, e: Exception) -> ModelError:
        import openai

        where = f"{self.base_url} (model {self.model!r})"
        if isinstance(e, openai.APITimeoutError):
            return TransientModelError(f"request to {where} timed out")
        if isinstance(e, openai.APIConnectionError):
            return TransientModelError(f"cannot connect to {where}: {e}")
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            detail = _detail(e)
            if status == 401:
                return ModelRequestError(
                    f"{where} rejected the API key (401): {detail}",
                    hint="pass api_key=... or set OPENAI_API_KEY to a key this server accepts",
                )
            if status == 404:
                return ModelRequestError(
                    f"{where} answered 404: {detail}",
                    hint="check the model id (GET /v1/models lists what the server serves) and that base_url ends "
                    "in /v1",
                )
            if status == 429 or status >= 500 or status in (408, 409):
                return TransientModelError(f"{where} answered {status}: {detail}")
            return ModelRequestError(f"{where} refused the request ({status}): {detail}")
        if isinstance(e, openai.APIError):
            # no HTTP status: an error event inside a stream (the body is the event's error object) or a body
            # that failed validation; only an error the server calls the request's fault will not heal
            body = e.body if isinstance(e.body, dict) else {}
            err = body.get("error", body)
            kind = err.get("type") if isinstance(err, dict) else None
            if kind == "invalid_request_error":
                return ModelRequestError(f"{where} refused the request: {_detail(e)}")
            return TransientModelError(f"{where} failed mid-response ({kind or type(e).__name__}): {_detail(e)}")
        if isinstance(e, openai.OpenAIError):
            return ModelError(f"{where}: {type(e).__name__}: {e}")
        return ModelError(f"{where}: unexpected {type(e).__name__}: {e}")

    def _garbled(self, what: str, body: Any) -> TransientModelError:
        """A 200 answer that is not the OpenAI shape expected (a proxy's HTML page, a truncated JSON body)."""
        text = body if isinstance(body, str) else repr(body)
        start = text[:200] + ("..." if len(text) > 200 else "")
        return TransientModelError(
            f"{self.base_url} (model {self.model!r}): {what}, not an OpenAI-compatible response; "
            f"the body starts with: {start!r}",
            hint="check base_url: it must be the server's OpenAI-compatible API root, usually ending in /v1",
        )

    async def _call(self, fn: Any, **kwargs: Any) -> Any:
        import openai

        try:
            result = await fn(**kwargs)
        except openai.OpenAIError as e:
            raise self._translate(e) from e
        except json.JSONDecodeError as e:  # a 200 whose JSON body is cut off or garbled
            raise self._garbled("the 200 response body is not valid JSON", e.doc) from e
        if isinstance(result, (str, bytes)):  # the SDK hands back the text of a body that is not JSON
            raise self._garbled("the 200 response body is not JSON", result)
        if kwargs.get("stream"):
            ctype = result.response.headers.get("content-type", "")
            if ctype.startswith(("text/html", "application/json")):  # not an event stream: a page or an error
                body = (await result.response.aread()).decode("utf-8", "replace")
                await result.close()
                raise self._garbled(f"the stream request was answered with {ctype.split(';')[0]}", body)
        elif not isinstance(getattr(result, "choices", None), list):
            body = result.model_dump_json() if hasattr(result, "model_dump_json") else result
            raise self._garbled("the 200 response JSON holds no 'choices' list", body)
        return result

    # ------------------------------------------------------------------ tools mode
    def _tools_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [_to_openai_message(m) for m in request.messages],
            "max_tokens": request.max_tokens or self.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = request.stop
        if request.tools:
            kwargs["tools"] = request.tools
            choice = request.tool_choice or "auto"
            kwargs["tool_choice"] = (
                choice if choice in ("auto", "none", "required") else {"type": "function", "function": {"name": choice}}
            )
        if request.response_format:
            kwargs["response_format"] = request.response_format
        extra: dict[str, Any] = {}
        if request.enable_thinking is not None:
            extra["chat_template_kwargs"] = {"enable_thinking": request.enable_thinking}
        if request.priority:
            extra["priority"] = request.priority
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def _tools_response(
        self,
        request: ChatRequest,
        *,
        content: str | None,
        raw_calls: list[tuple[str | None, str | None, str]],
        reasoning: str | None,
        finish_reason: str | None,
        usage: Any,
        model: str | None,
    ) -> ChatResponse:
        known = set(request.tool_names())
        calls: list[ToolCall] = []
        errors: list[MalformedToolCall] = []
        for i, (call_id, name, raw_args) in enumerate(raw_calls):
            raw = json.dumps({"name": name, "arguments": raw_args}, ensure_ascii=False)
            try:
                args = json.loads(raw_args) if raw_args.strip() else {}
            except json.JSONDecodeError as e:
                errors.append(MalformedToolCall(index=i, raw=raw, name=name, reason=f"arguments are not JSON: {e}"))
                continue
            if not isinstance(args, dict):
                errors.append(MalformedToolCall(index=i, raw=raw, name=name, reason="arguments must be a JSON object"))
            elif known and name not in known:
                reason = f"there is no tool named {name!r}; available: {', '.join(sorted(known))}"
                errors.append(MalformedToolCall(index=i, raw=raw, name=name, reason=reason))
            else:
                calls.append(ToolCall(id=call_id or f"call_{i}", name=str(name), arguments=args))
        finish = _FINISH.get(finish_reason or "stop", "stop")
        if calls and finish == "stop":
            finish = "tool_calls"
        return ChatResponse(
            message=ChatMessage(role="assistant", content=content, tool_calls=calls, reasoning_content=reasoning),
            finish_reason=finish,
            usage=_usage(usage),
            model=model or self.model,
            raw_text=content,
            tool_call_errors=errors,
        )

    async def _tools_once(self, request: ChatRequest) -> ChatResponse:
        completion = await self._call(self._client.chat.completions.create, **self._tools_kwargs(request))
        if not completion.choices:
            raise TransientModelError(f"{self.base_url} returned no choices")
        try:
            choice0 = completion.choices[0]
            msg = choice0.message
            raw_calls = []
            for c in msg.tool_calls or []:
                fn = getattr(c, "function", None)
                raw_calls.append((c.id, getattr(fn, "name", None), getattr(fn, "arguments", "") or ""))
        except (AttributeError, TypeError) as e:  # a choice of the wrong shape
            body = completion.model_dump_json()
            raise self._garbled("a choice of the 200 response is not a chat choice", body) from e
        extra_fields = getattr(msg, "model_extra", None) or {}
        return self._tools_response(
            request,
            content=msg.content,
            raw_calls=raw_calls,
            reasoning=extra_fields.get("reasoning_content") or extra_fields.get("reasoning"),
            finish_reason=choice0.finish_reason,
            usage=completion.usage,
            model=completion.model,
        )

    # ------------------------------------------------------------------ streaming
    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream text deltas, then a last delta with the whole ``ChatResponse``. Transient failures before the
        first chunk are retried like ``complete``; a failure mid-stream raises ``TransientModelError``."""
        import openai
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

        if self.mode == "tools":
            fn, kwargs = self._client.chat.completions.create, self._tools_kwargs(request)
        else:
            fn, (kwargs, _) = self._client.completions.create, self._raw_kwargs(request)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
            retry=retry_if_exception_type(TransientModelError),
            reraise=True,
        )
        stream: Any = None
        async for attempt in retrying:
            with attempt:
                self.attempts += 1
                stream = await self._call(fn, **kwargs)
        text_parts: list[str] = []
        reasoning_parts: list[str] = []
        calls: dict[int, list[Any]] = {}
        finish, usage, model = None, None, None
        chunks = 0
        try:
            async for chunk in stream:
                chunks += 1
                model = chunk.model or model
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                if not chunk.choices:
                    continue
                ch = chunk.choices[0]
                finish = ch.finish_reason or finish
                if self.mode == "raw":
                    piece = ch.text or ""
                else:
                    delta = ch.delta
                    piece = delta.content or ""
                    extra = getattr(delta, "model_extra", None) or {}
                    reasoning_parts.append(extra.get("reasoning_content") or extra.get("reasoning") or "")
                    for tc in delta.tool_calls or []:
                        slot = calls.setdefault(tc.index, [None, None, ""])
                        slot[0] = tc.id or slot[0]
                        if tc.function is not None:
                            slot[1] = tc.function.name or slot[1]
                            slot[2] += tc.function.arguments or ""
                if piece:
                    text_parts.append(piece)
                    yield StreamDelta(text=piece)
        except openai.APIConnectionError as e:
            if chunks == 0:
                raise self._translate(e) from e
            how = "stalled (timed out)" if isinstance(e, openai.APITimeoutError) else f"broke off ({e})"
            raise TransientModelError(
                f"the stream from {self.base_url} (model {self.model!r}) {how} after {chunks} chunks"
            ) from e
        except openai.OpenAIError as e:
            raise self._translate(e) from e
        except json.JSONDecodeError as e:
            raise self._garbled("a stream event is not valid JSON", e.doc) from e
        except (AttributeError, TypeError) as e:  # a chunk of the wrong shape (e.g. "choices": 5)
            raise TransientModelError(
                f"{self.base_url} (model {self.model!r}) sent a stream chunk that is not an OpenAI chunk: {e}",
                hint="check base_url: it must be the server's OpenAI-compatible API root, usually ending in /v1",
            ) from e
        finally:
            await stream.close()
        if chunks == 0:
            raise TransientModelError(
                f"{self.base_url} (model {self.model!r}) ended the stream without sending any chunk",
                hint="check base_url: it must be the server's OpenAI-compatible API root, usually ending in /v1",
            )
        text = "".join(text_parts)
        if self.mode == "raw":
            response = self._raw_response(request, text, finish, usage, model)
        else:
            response = self._tools_response(
                request,
                content=text or None,
                raw_calls=[tuple(calls[i]) for i in sorted(calls)],
                reasoning="".join(reasoning_parts) or None,
                finish_reason=finish,
                usage=usage,
                model=model,
            )
        yield StreamDelta(response=response)

    # ------------------------------------------------------------------ raw mode
    def render(self, request: ChatRequest) -> tuple[str, str | None]:
        """(prompt text, grammar or None) for ``raw`` mode."""
        from tq_agents.models._grammar import (
            GrammarLimits,
            json_output_grammar,
            tool_call_grammar,
            xml_tool_call_grammar,
        )
        from tq_agents.models.qwen import render

        choice = request.tool_choice or "auto"
        fmt = request.response_format or {}
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
        if fmt.get("type") == "json_object":
            schema = {"type": "object"}
        grammar = None
        max_tokens = request.max_tokens or self.max_tokens
        limits = GrammarLimits(max_tokens=max_tokens)
        if self.grammar_param:
            if request.tools and choice not in ("auto", "none") and self.family == "qwen3-coder":
                grammar = xml_tool_call_grammar(request.tools, choice=choice, limits=limits)
            elif request.tools and choice not in ("auto", "none"):
                grammar = tool_call_grammar(request.tools, choice=choice, limits=limits)
            elif schema is not None and (choice == "none" or not request.tools):
                grammar = json_output_grammar(schema, limits=limits)
            elif schema is not None and request.tools and self.family != "qwen3-coder":
                grammar = tool_call_grammar(request.tools, choice="auto", limits=limits, alt_schema=schema)
        thinking = request.enable_thinking
        if grammar is not None and self.family != "qwen2.5" and thinking is None:
            thinking = False
        messages = [m.to_openai() for m in request.messages]
        for m in messages:
            if m.get("content") is None:
                m["content"] = ""
        prompt = render(
            messages,
            tools=request.tools or None,
            family=self.family,
            add_generation_prompt=True,
            enable_thinking=thinking,
        )
        return prompt, grammar

    def _raw_kwargs(self, request: ChatRequest) -> tuple[dict[str, Any], str | None]:
        prompt, grammar = self.render(request)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": request.max_tokens or self.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": [*request.stop, "<|im_end|>", "<|endoftext|>"][:4],
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        extra: dict[str, Any] = {}
        if grammar is not None:
            if self.grammar_param == "structured_outputs":
                extra["structured_outputs"] = {"grammar": grammar}
            else:
                extra["guided_grammar"] = grammar
        if request.priority:
            extra["priority"] = request.priority
        if extra:
            kwargs["extra_body"] = extra
        return kwargs, grammar

    def _raw_response(
        self, request: ChatRequest, text: str, finish_reason: str | None, usage: Any, model: str | None
    ) -> ChatResponse:
        from tq_agents.models.qwen import parse

        tools = request.tools if request.tools and request.tool_choice != "none" else None
        parsed = parse(text, family=self.family, tools=tools)
        finish = _FINISH.get(finish_reason or "stop", "stop")
        if parsed.tool_calls and finish == "stop":
            finish = "tool_calls"
        return ChatResponse(
            message=ChatMessage(
                role="assistant",
                content=parsed.content or None,
                tool_calls=parsed.tool_calls,
                reasoning_content=parsed.reasoning,
            ),
            finish_reason=finish,
            usage=_usage(usage),
            model=model or self.model,
            raw_text=text,
            tool_call_errors=parsed.errors,
        )

    async def _raw_once(self, request: ChatRequest) -> ChatResponse:
        kwargs, _ = self._raw_kwargs(request)
        completion = await self._call(self._client.completions.create, **kwargs)
        if not completion.choices:
            raise TransientModelError(f"{self.base_url} returned no choices")
        try:
            choice0 = completion.choices[0]
            text, finish = choice0.text or "", choice0.finish_reason
        except (AttributeError, TypeError) as e:  # a choice of the wrong shape
            body = completion.model_dump_json()
            raise self._garbled("a choice of the 200 response is not a completion choice", body) from e
        return self._raw_response(request, text, finish, completion.usage, completion.model)


def _to_openai_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
            }
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
        if m.name:
            out["name"] = m.name
    return out


def _usage(u: Any) -> Usage:
    if u is None:
        return Usage()
    details = getattr(u, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        prompt_tokens=int(getattr(u, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(u, "completion_tokens", 0) or 0),
        cached_prompt_tokens=int(cached or 0),
    )


def _detail(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(e, "message", e)).splitlines()[0][:300]
