"""``LocalQwen``: a Qwen checkpoint run in-process on the shared engine, with grammar-constrained tool calls.

One engine per process and model (``tq_agents.models._engine.get_engine``): every ``LocalQwen`` on the same
checkpoint shares it, so concurrent agent turns are batched together and share the prefix cache.

Per request: render the chat with the checkpoint's own ``chat_template`` (else ``tq_agents.models.qwen.render``),
tokenize, build a grammar constraint when the request needs one (``tool_choice="required"``/a tool name → one or
more valid ``<tool_call>`` blocks; ``response_format`` json_schema → one JSON value of that schema; ``auto`` →
free text, and once the model opens ``<tool_call>`` only valid calls; ``none`` → ``<tool_call>`` is banned), submit
with the request's priority, stream tokens, and parse the completion with ``tq_agents.models.qwen.parse``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tq_agents.errors import ConfigError, ModelError, ModelRequestError
from tq_agents.models._hub import resolve_model_path
from tq_agents.models.base import ChatMessage, ChatRequest, ChatResponse, StreamDelta, Usage

__all__ = ["LocalQwen", "PreparedPrompt", "detect_family"]

log = logging.getLogger(__name__)

_FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")
DEFAULT_MAX_TOKENS = 1024


def detect_family(path: Path, chat_template: str | None = None) -> str:
    """Family of a checkpoint from its ``config.json`` (qwen2 → qwen2.5, qwen3* → qwen3; a chat template that
    writes ``<function=`` calls → qwen3-coder)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path / 'config.json'}: {e}") from e
    model_type = str(cfg.get("model_type", ""))
    if model_type.startswith("qwen3"):
        if (chat_template and "<function=" in chat_template) or "coder" in path.name.lower():
            return "qwen3-coder"
        return "qwen3"
    if model_type.startswith("qwen2"):
        return "qwen2.5"
    raise ConfigError(
        f"{path} holds a {model_type or 'unknown'!r} model, not a Qwen2/Qwen3 checkpoint",
        hint="pass family='qwen2.5'|'qwen3'|'qwen3-coder' to LocalQwen to use it anyway",
    )


def _revision(path: Path) -> str:
    """Identify the weights: the hub snapshot commit when cached from the hub, else a hash of config + files."""
    if path.parent.name == "snapshots" and len(path.name) == 40:
        return path.name
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".jinja"):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 16))
    return "sha256:" + h.hexdigest()[:16]


@dataclass
class PreparedPrompt:
    """What is sent to the engine for one request (also recorded by ``RecordingModel``)."""

    text: str
    token_ids: list[int]
    constraint: Any
    grammar: str | None
    max_new_tokens: int
    enable_thinking: bool | None
    opened_think: bool = False
    """The prompt itself opened the reasoning (thinking templates ending in ``<think>``): the completion starts
    inside the reasoning."""


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of one of ``stops`` (0 when none): text
    that may yet turn into a stop string, so it is not streamed until the next tokens tell."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


def _control_text_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """A pattern matching the text of every added token of ``tokenizer`` (Qwen's control and markup tokens)."""
    added = [t for t in getattr(tokenizer, "get_added_vocab", dict)() if t.startswith("<") and len(t) > 1]
    if not added:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))


def _defuse(m: re.Match[str]) -> str:
    return m.group(0)[0] + "\u200b" + m.group(0)[1:]


class _BanTokens:
    """``tool_choice="none"``: the model may not open a tool call."""

    def __init__(self, ids: list[int]) -> None:
        self._ids = ids

    def apply(self, logits: Any) -> None:
        logits[self._ids] = float("-inf")

    def advance(self, token_id: int) -> None:
        pass

    def is_finished(self) -> bool:
        return False


class LocalQwen:
    """A local Qwen checkpoint (hub id or directory) behind the ``ChatModel`` protocol.

    Args:
        model: hub id (``Qwen/Qwen2.5-1.5B-Instruct``) or checkpoint directory. A hub id must be in the local
            cache unless the hub is reachable; otherwise ``ModelUnavailableError`` says the ways forward.
        device: ``"cpu"``.
        dtype: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``None`` (the engine's measured default).
        family: ``"qwen2.5"``, ``"qwen3"`` or ``"qwen3-coder"``; detected from the checkpoint when ``None``.
        max_tokens: default completion budget when a request sets none.
        constrain: use grammar-constrained decoding (tool calls, JSON outputs); on by default.
        max_calls: most tool calls one constrained completion may hold.
        engine_kwargs: passed to the engine when this call creates it (``max_batch_size``, ...).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        family: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        constrain: bool = True,
        max_calls: int = 4,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if family is not None and family not in _FAMILIES:
            raise ConfigError(f"unknown family {family!r}", hint=f"use one of: {', '.join(_FAMILIES)} (or None)")
        self._model_arg = str(model)
        self.path = resolve_model_path(self._model_arg)
        self.device = device
        self.dtype = dtype
        self.max_tokens = max_tokens
        self.constrain = constrain
        self.max_calls = max_calls
        self._engine_kwargs = dict(engine_kwargs or {})
        self._family_override = family
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._engine: Any = None
        self._grammar: Any = None
        self._control_text: re.Pattern[str] | None = None  # added tokens' text (set by load)
        self.family = family or detect_family(self.path, self._read_template())
        self.revision = _revision(self.path)

    # ------------------------------------------------------------------ identity
    @property
    def model_name(self) -> str:
        return self._model_arg

    def _read_template(self) -> str | None:
        try:
            cfg = json.loads((self.path / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        tmpl = cfg.get("chat_template")
        if tmpl is None and (self.path / "chat_template.jinja").is_file():
            tmpl = (self.path / "chat_template.jinja").read_text()
        if isinstance(tmpl, list):  # [{"name": "default", "template": ...}, ...]
            tmpl = next((t.get("template") for t in tmpl if t.get("name") == "default"), None)
        return tmpl if isinstance(tmpl, str) else None

    # ------------------------------------------------------------------ loading
    def load(self) -> LocalQwen:
        """Load tokenizer and engine now (otherwise on the first request). Returns ``self``."""
        with self._lock:
            if self._engine is None:
                from transformers import AutoTokenizer

                from tq_agents.models._engine import get_engine

                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
                except Exception as e:
                    raise ModelError(
                        f"could not load the tokenizer of {self.path}: {type(e).__name__}: {e}".splitlines()[0],
                        hint="the checkpoint directory needs tokenizer.json and tokenizer_config.json",
                    ) from e
                self._engine = get_engine(str(self.path), dtype=self.dtype, device=self.device, **self._engine_kwargs)
                ids = self._tokenizer.convert_tokens_to_ids
                self._stop_ids = tuple(i for i in (ids("<|im_end|>"), ids("<|endoftext|>")) if isinstance(i, int))
                self._tool_open = ids("<tool_call>")
                self._control_text = _control_text_pattern(self._tokenizer)
        return self

    @property
    def tokenizer(self) -> Any:
        return self.load()._tokenizer

    @property
    def engine(self) -> Any:
        return self.load()._engine

    def _compiler(self) -> Any:
        if self._grammar is None:
            from tq_agents.models._grammar import GrammarCompiler

            self._grammar = GrammarCompiler.for_tokenizer(self.tokenizer, vocab_size=self.engine.vocab_size)
        return self._grammar

    # ------------------------------------------------------------------ prompt
    def render(self, request: ChatRequest, *, enable_thinking: bool | None = None) -> str:
        """The prompt text for ``request`` (generation prompt included).

        The text of the tokenizer's added tokens (``<|im_start|>``, ``<|im_end|>``, ``<tool_response>``, ...)
        inside user and tool messages is defused with a zero-width space after its ``<``, so that it is encoded
        as plain text: a customer (or a web page a tool fetched) cannot close its turn and open a system turn.
        System and assistant messages are the application's and the model's own, and are left as they are."""
        self.load()
        pattern = self._control_text
        messages = []
        for m in request.openai_messages():
            if m.get("content") is None:
                m["content"] = ""  # early Qwen3 templates fail on None
            elif pattern is not None and m.get("role") in ("user", "tool") and isinstance(m["content"], str):
                m["content"] = pattern.sub(_defuse, m["content"])
            messages.append(m)
        tools = request.tools or None
        kwargs: dict[str, Any] = {}
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            try:
                return tok.apply_chat_template(
                    messages, tools=tools, add_generation_prompt=True, tokenize=False, **kwargs
                )
            except Exception as e:
                raise ModelRequestError(
                    f"the checkpoint's chat template failed on this request: {type(e).__name__}: {e}".splitlines()[0]
                ) from e
        from tq_agents.models.qwen import render

        return render(messages, tools=tools, family=self.family, add_generation_prompt=True, **kwargs)

    def prepare(self, request: ChatRequest) -> PreparedPrompt:
        """Render, tokenize and build the grammar constraint for ``request`` (CPU work, no decoding)."""
        from tq_agents.models._grammar import GrammarLimits

        self.load()
        max_new = request.max_tokens if request.max_tokens is not None else self.max_tokens
        if max_new < 1:
            raise ModelRequestError(f"max_tokens must be >= 1, got {max_new}")
        choice = request.tool_choice or "auto"
        fmt = request.response_format or {}
        schema = None
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise ModelRequestError("response_format.json_schema.schema must be a JSON schema object")
        elif fmt.get("type") == "json_object":
            schema = {"type": "object"}
        elif fmt and fmt.get("type") not in (None, "text"):
            raise ModelRequestError(
                f"response_format.type {fmt.get('type')!r} is not supported: use 'json_schema', 'json_object' or 'text'"
            )
        if choice not in ("auto", "none", "required") and choice not in request.tool_names():
            raise ModelRequestError(
                f"tool_choice {choice!r} is not 'auto', 'none', 'required' or the name of one of the request's tools",
                hint="tools offered: " + (", ".join(request.tool_names()) or "none"),
            )
        if choice != "auto" and choice != "none" and not request.tools:
            raise ModelRequestError(f"tool_choice {choice!r} needs tools in the request, but none were given")
        mode = "free"
        xml = self.family == "qwen3-coder"  # XML calls: <function=NAME><parameter=P>value</parameter>
        if self.constrain:
            if request.tools and choice not in ("auto", "none"):
                mode = "calls"
            elif schema is not None and (choice == "none" or not request.tools):
                mode = "json"
            elif request.tools and choice == "auto":
                mode = "lazy_calls" if schema is None or xml else "calls_or_json"
        thinking = request.enable_thinking
        if self.family != "qwen2.5" and mode in ("calls", "json", "calls_or_json") and thinking is None:
            thinking = False  # constrained turns answer directly unless thinking is asked for
        text = self.render(request, enable_thinking=thinking)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        context = getattr(self.engine, "max_positions", None)
        if isinstance(context, int) and len(ids) >= context:
            raise ModelRequestError(
                f"the prompt is {len(ids)} tokens long, but the model's context holds {context} tokens "
                "(prompt and completion together): shorten the messages or send fewer tools"
            )
        think_chars = min(2048, max_new // 4) if (self.family != "qwen2.5" and thinking) else 0
        limits = GrammarLimits(max_tokens=max_new, max_calls=self.max_calls, think_chars=think_chars)
        constraint, grammar = None, None
        if mode == "calls":
            grammar, constraint = self._compiler().tool_calls(request.tools, choice, limits, xml=xml)
        elif mode == "json":
            grammar, constraint = self._compiler().json_output(schema, limits)
        elif mode == "lazy_calls":
            grammar, constraint = self._compiler().tool_calls(request.tools, "auto", limits, xml=xml)
        elif mode == "calls_or_json":
            grammar, constraint = self._compiler().tool_calls(request.tools, "auto", limits, alt_schema=schema)
        if constraint is None and choice == "none" and request.tools and isinstance(self._tool_open, int):
            constraint = _BanTokens([self._tool_open])
        opened_think = text.rstrip().endswith("<think>")  # thinking templates that open the reasoning
        return PreparedPrompt(text, ids, constraint, grammar, max_new, thinking, opened_think)

    # ------------------------------------------------------------------ generation
    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Run one request to the end and return the parsed response."""
        response: ChatResponse | None = None
        async for delta in self.stream(request):
            if delta.response is not None:
                response = delta.response
        assert response is not None
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream the completion: one delta per token (text may be empty while UTF-8 is incomplete, or while the
        text might be the start of a ``stop`` string), then, when text was held back and no stop string matched,
        one delta with the rest, then a last delta carrying the whole ``ChatResponse``; the texts joined equal
        its ``raw_text``. Closing the iterator or cancelling the task cancels the request in the engine and frees
        its slot."""
        from tq_agents.models._engine import SamplingParams

        prep = await asyncio.to_thread(self.prepare, request)
        params = SamplingParams(
            max_new_tokens=prep.max_new_tokens,
            temperature=float(request.temperature),
            top_p=float(request.top_p),
            seed=request.seed,
            stop_token_ids=self._stop_ids,
        )
        try:
            handle = self.engine.submit(prep.token_ids, params, constraint=prep.constraint, priority=request.priority)
        except ModelError:
            raise
        except Exception as e:
            raise ModelRequestError(f"the engine refused the request: {type(e).__name__}: {e}") from e
        tok = self.tokenizer
        stop_set = set(self._stop_ids)
        stops = [s for s in request.stop if s]
        ids: list[int] = []
        emitted = ""  # text yielded so far; a tail that may begin a stop string is held back
        stopped_by_string = False
        try:
            async for token in handle:
                ids.append(token)
                if token in stop_set:
                    continue
                text = tok.decode([t for t in ids if t not in stop_set], skip_special_tokens=False)
                if text.endswith("\ufffd"):
                    yield StreamDelta(text="", token_ids=[token])
                    continue
                if stops:
                    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
                    if cut >= 0:
                        piece = text[len(emitted) : max(cut, len(emitted))]
                        emitted, stopped_by_string = text[:cut], True
                        if piece:
                            yield StreamDelta(text=piece, token_ids=[token])
                        handle.cancel()
                        break
                    safe = len(text) - _stop_prefix_len(text, stops)
                else:
                    safe = len(text)
                piece = text[len(emitted) : max(safe, len(emitted))]
                emitted += piece
                yield StreamDelta(text=piece, token_ids=[token])
            result = await handle.result()
        except BaseException:
            handle.cancel()
            raise
        if result.finish_reason == "error":
            raise ModelError(f"local generation failed: {result.error}", hint="see the log for the engine's error")
        completion_ids = [t for t in result.token_ids if t not in stop_set]
        raw = tok.decode(completion_ids, skip_special_tokens=False)
        if stopped_by_string:
            raw = emitted
        elif raw.startswith(emitted) and len(raw) > len(emitted):
            # no stop string matched: flush the held-back tail (and any incomplete UTF-8 at the very end)
            yield StreamDelta(text=raw[len(emitted) :])
        opened_think = prep.opened_think
        yield StreamDelta(response=self._response(request, raw, result, stopped_by_string, opened_think))

    def _response(
        self, request: ChatRequest, raw: str, result: Any, stopped_by_string: bool, opened_think: bool = False
    ) -> ChatResponse:
        from tq_agents.models.qwen import parse

        tools = request.tools if request.tools and request.tool_choice != "none" else None
        parsed = parse(raw, family=self.family, tools=tools, prompt_opened_think=opened_think)
        finish = result.finish_reason
        if stopped_by_string and finish == "cancelled":
            finish = "stop"
        if finish == "stop" and parsed.tool_calls:
            finish = "tool_calls"
        message = ChatMessage(
            role="assistant",
            content=parsed.content or None,
            tool_calls=parsed.tool_calls,
            reasoning_content=parsed.reasoning,
        )
        usage = Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=len(result.token_ids),
            cached_prompt_tokens=result.cached_prompt_tokens,
        )
        return ChatResponse(
            message=message,
            finish_reason=finish,
            usage=usage,
            model=self.model_name,
            raw_text=raw,
            tool_call_errors=parsed.errors,
        )

    def __repr__(self) -> str:
        return f"LocalQwen({self._model_arg!r}, family={self.family!r}, dtype={self.dtype!r})"
