"""Parse a Qwen completion into content, reasoning, tool calls and refused calls.

Reads both call formats in every family, because small models mix them up:

* Hermes JSON (Qwen2.5, Qwen3): ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``
* Qwen3-Coder XML: ``<tool_call>\\n<function=NAME>\\n<parameter=P>\\nvalue\\n</parameter>\\n</function>\\n</tool_call>``

Unlike vLLM's hermes parser (one regex, ``json.loads``, all or nothing), each call stands alone: a good call
beside a bad one is kept, and every bad one is reported with a reason written for the model.
``_extract`` finds the call attempts, ``_json_repair`` reads JSON-ish text, ``_schema`` types and checks
arguments; this module splits reasoning from content and decides, per attempt, call or refusal.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from tq_agents.errors import ConfigError
from tq_agents.models.base import ChatMessage, MalformedToolCall, ToolCall
from tq_agents.models.qwen._extract import (
    END_TOKENS,
    FENCE_RE,
    HERMES_SHAPE,
    TC_CLOSE,
    TH_CLOSE,
    TH_OPEN,
    XML_SHAPE,
    Attempt,
    bare_json_calls,
    clip,
    extract,
    find_tag,
    split_reasoning,
)
from tq_agents.models.qwen._schema import check, coerce, text_to_value

__all__ = ["ParsedCompletion", "parse"]

log = logging.getLogger(__name__)

_FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")

# Set by the test-suite so that an internal bug fails the test instead of turning into a reported error.
_RAISE_INTERNAL_ERRORS = os.environ.get("TQ_PARSE_RAISE") == "1"


class ParsedCompletion(BaseModel):
    """What a Qwen completion says: visible content, reasoning, usable calls, refused calls."""

    content: str = Field(default="", description="Text outside reasoning and tool calls, stripped.")
    reasoning: str | None = Field(
        default=None, description="Text of the <think> block(s); None when there was none, '' when empty."
    )
    tool_calls: list[ToolCall] = Field(default_factory=list, description="Calls that can be run, in order.")
    errors: list[MalformedToolCall] = Field(
        default_factory=list, description="Calls that were attempted but refused, each with the reason."
    )

    def to_message(self) -> ChatMessage:
        """The assistant ``ChatMessage`` for this completion (refused calls are not part of it)."""
        return ChatMessage(
            role="assistant",
            content=self.content,
            tool_calls=list(self.tool_calls),
            reasoning_content=self.reasoning,
        )


# --------------------------------------------------------------------------------------------- tools


@dataclass(frozen=True, slots=True)
class _Tools:
    schemas: dict[str, Any]  # name -> parameters schema ({} when none)

    @classmethod
    def build(cls, tools: Sequence[Mapping[str, Any]] | None) -> _Tools | None:
        if tools is None:
            return None
        if isinstance(tools, Mapping | str | bytes) or not isinstance(tools, Sequence):
            raise ConfigError(
                f"parse(tools=...) must be a list of OpenAI-shaped tool schemas, got {type(tools).__name__}",
                hint='pass [{"type": "function", "function": {"name": ..., "parameters": {...}}}, ...]',
            )
        schemas: dict[str, Any] = {}
        for i, tool in enumerate(tools):
            fn = tool.get("function", tool) if isinstance(tool, Mapping) else None
            name = fn.get("name") if isinstance(fn, Mapping) else None
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    f"parse(tools=...): tool #{i} has no function name",
                    hint='each tool must look like {"type": "function", "function": {"name": ..., "parameters": ...}}',
                )
            params = fn.get("parameters")  # type: ignore[union-attr]
            if isinstance(params, dict):
                schemas[name] = params  # JSON-shaped already (as from pydantic or a JSON file)
            else:
                schemas[name] = _plain(params) if isinstance(params, Mapping) else {}
        return cls(schemas)


def _plain(value: Any) -> Any:
    """Mappings and sequences of a schema as plain dicts and lists (the checker tests ``isinstance(x, dict)``)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------- checking


def _unknown_tool(name: str, tools: _Tools) -> str:
    known = list(tools.schemas)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(repr(k) for k in known[:20]) or "none"
    return f"there is no tool named {name!r}.{hint} Available tools: {listed}"


def _resolve(att: Attempt, index: int, tools: _Tools | None) -> ToolCall | MalformedToolCall:
    def refuse(reason: str, advice: str = "") -> MalformedToolCall:
        who = f"The call to {att.name!r}" if att.name else "A tool call"
        text = f"{who} was not run: {reason}." + (f" {advice}" if advice else "")
        return MalformedToolCall(index=index, raw=clip(att.raw), reason=text, name=att.name)

    if att.in_think:
        return refuse(
            "it was written inside the <think> reasoning. To call a tool, close the reasoning with </think> "
            "and write the call after it"
        )
    if att.after_response:
        return refuse(
            "it was written after a <tool_response> that the model wrote itself. Tool results come from the "
            "system: stop after your calls and wait for the real results"
        )
    if att.problem is not None:
        shape = XML_SHAPE if att.raw.lstrip().startswith("<function=") else HERMES_SHAPE
        return refuse(att.problem, f"Write each call as:\n{shape}")
    name = att.name or ""
    schema: Any = None
    if tools is not None:
        if name not in tools.schemas:
            short = name.removeprefix("functions.")
            if short in tools.schemas:
                name = short
            else:
                return refuse(_unknown_tool(name, tools))
        schema = tools.schemas[name]
    if att.xml:
        props = schema.get("properties") if isinstance(schema, Mapping) else None
        props = props if isinstance(props, Mapping) else {}
        args = {k: text_to_value(v, props.get(k), schema) for k, v in att.arguments.items()}
    else:
        args = att.arguments
    if schema is not None:
        problems = check(args, schema)
        if problems:  # type what the model wrote by the schema ("5" -> 5), then look again
            args = coerce(args, schema, schema)
            problems = check(args, schema)
        if problems:
            return refuse(f"its arguments do not fit the tool's parameters: {'; '.join(problems)}")
    return ToolCall(id=f"call_{index}", name=name, arguments=args)


# ------------------------------------------------------------------------------------------------- parse


_EDGE_TAGS = (TC_CLOSE, TH_CLOSE, *END_TOKENS)
_TURN_END_RE = re.compile(r"<\|im_end\|>|<\|endoftext\|>|<\|im_start\|>")
_TR_OPEN = "<tool_response>"


def _clean(piece: str) -> str:
    """Strip a content piece, and stray closing tags / end tokens at its edges (a mention inside stays)."""
    i, j = 0, len(piece)
    while True:  # move the edges inward without copying (linear even for thousands of stray tags)
        while i < j and piece[i].isspace():
            i += 1
        while j > i and piece[j - 1].isspace():
            j -= 1
        tag = next((t for t in _EDGE_TAGS if piece.startswith(t, i, j)), None)
        if tag is not None:
            i += len(tag)
            continue
        tag = next((t for t in _EDGE_TAGS if piece.endswith(t, i, j)), None)
        if tag is None:
            break
        j -= len(tag)
    return piece[i:j]


def _made_up_response(segment: str) -> int:
    """Index of the first ``<tool_response>`` the model wrote itself, or -1. An occurrence inside a tool call
    (a string argument that mentions the tag, or an XML parameter value: ``inside_call``) is not a response."""
    return find_tag(segment, _TR_OPEN, 0)


def _parse(text: str, tools: _Tools | None, prompt_opened_think: bool = False) -> ParsedCompletion:
    turn_end = _TURN_END_RE.search(text)
    if turn_end is not None:  # the assistant turn ends there (an engine that did not stop on it)
        text = text[: turn_end.start()]
    text = text.strip()
    if prompt_opened_think and not text.startswith(TH_OPEN):
        text = TH_OPEN + text
    attempts: list[Attempt] = []
    content: list[str] = []
    reasoning: list[str] | None = None
    made_up: list[Attempt] | None = None  # calls after a <tool_response> the model wrote itself
    for is_reasoning, segment in split_reasoning(text):
        if made_up is not None:  # everything after a made-up tool response is untrusted
            made_up.extend(extract(segment)[0])
            continue
        cut = -1 if is_reasoning else _made_up_response(segment)
        if cut >= 0:
            segment, tail = segment[:cut], segment[cut + len(_TR_OPEN) :]
            made_up = extract(tail)[0]
        found, pieces = extract(segment)
        if is_reasoning:
            reasoning = [] if reasoning is None else reasoning
            if segment.strip():
                reasoning.append(segment.strip())
            for att in found:
                att.in_think = True
        else:
            content.extend(pieces)
        attempts.extend(found)
    for att in made_up or ():
        att.after_response = True
        attempts.append(att)
    pieces = [_clean(c) for c in content]
    # the model fenced its calls (```xml ... ```): calls and at least two fence-only pieces, which are dropped;
    # an unmatched fence is content
    if attempts and sum(1 for p in pieces if FENCE_RE.fullmatch(p)) >= 2:
        pieces = [p for p in pieces if not FENCE_RE.fullmatch(p)]
    content_text = "\n\n".join(p for p in pieces if p)
    if not attempts and tools is not None and content_text:
        bare = bare_json_calls("".join(content), tools.schemas)
        if bare:
            attempts, content_text = bare, ""
    calls: list[ToolCall] = []
    errors: list[MalformedToolCall] = []
    for index, att in enumerate(attempts):
        result = _resolve(att, index, tools)
        (calls if isinstance(result, ToolCall) else errors).append(result)  # type: ignore[arg-type]
    return ParsedCompletion(
        content=content_text,
        reasoning=None if reasoning is None else "\n\n".join(reasoning),
        tool_calls=calls,
        errors=errors,
    )


def parse(
    text: str,
    *,
    family: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
    prompt_opened_think: bool = False,
) -> ParsedCompletion:
    """Parse one Qwen completion into content, reasoning, tool calls and refused calls.

    Args:
        text: the decoded completion (special tokens such as ``<|im_end|>`` may be left in).
        family: ``"qwen2.5"``, ``"qwen3"`` or ``"qwen3-coder"``. Both call formats (Hermes JSON and
            Qwen3-Coder XML) are read in every family; the family is checked so that a typo is caught.
        tools: the OpenAI-shaped tool schemas offered to the model. When given, a call to an unknown tool or
            with arguments that do not fit the tool's JSON schema is refused (listed in ``errors``), and
            argument values are typed by the schema (``"5"`` → ``5`` for an integer parameter). Without
            ``tools``, any name is accepted and Qwen3-Coder parameter values stay strings (a JSON object or
            array is decoded).
        prompt_opened_think: the prompt ended with ``<think>`` (Qwen3 thinking templates), so the completion
            starts inside the reasoning: with no ``</think>`` in it, it is reasoning up to the first tool call.

    Repairs: single quotes, bare keys, trailing commas, missing commas, comments, Python literals
    (``True``/``False``/``None``) and escapes, a missing ``</tool_call>``, a missing or extra ``}`` before
    ``</tool_call>``, several calls in a row, several objects (or a JSON array of calls) in one block,
    ``arguments`` given as a JSON string or named ``parameters``, ```json fences, a ``functions.`` name
    prefix, ``name(key=value)`` Python call syntax, ``<tool_call>``/``</tool_call>`` text inside a string
    argument, ``<think>``/``</think>``/``<tool_response>`` text inside a call's arguments (argument text, not
    markup), an unclosed ``</parameter>``/``</function>`` before the next tag, Python-repr values in XML
    parameters, and (with ``tools``) a bare JSON call object with no tags at all.

    Refusals: a call inside ``<think>...</think>`` (reported, never returned as a call), a call after a
    ``<tool_response>`` the model wrote itself (that invented result and what follows are dropped from the
    content), text cut off inside a call, JSON beyond repair, no ``name``, non-object arguments, unknown
    tool, schema violations. Text after ``<|im_end|>``/``<|endoftext|>``/``<|im_start|>`` is not part of
    the turn and is ignored.
    A ``<think>`` never closed ends at the first tool call; a ``</think>`` with no opener (the prompt opened
    the reasoning) makes everything before it reasoning. Call ids are ``call_<index>``, ``index`` counting
    every attempted call (good, refused and in-reasoning) in order.

    Never raises for any ``text``; raises ``ConfigError`` for an unknown ``family`` or malformed ``tools``.
    """
    if family not in _FAMILIES:
        raise ConfigError(f"unknown Qwen family {family!r}", hint=f"use one of: {', '.join(_FAMILIES)}")
    compiled = _Tools.build(tools)
    if not isinstance(text, str):
        raise ConfigError(f"parse(text=...) must be a str, got {type(text).__name__}")
    try:
        return _parse(text, compiled, prompt_opened_think)
    except Exception as exc:  # a bug here must not take down a run: report it as a refused call
        if _RAISE_INTERNAL_ERRORS:
            raise
        log.exception("internal error while parsing a Qwen completion")
        return ParsedCompletion(
            content=text,
            errors=[
                MalformedToolCall(
                    index=0,
                    raw=clip(text),
                    reason=f"The output could not be parsed (internal parser error: {type(exc).__name__}). "
                    f"Write each tool call as:\n{HERMES_SHAPE}",
                )
            ],
        )
