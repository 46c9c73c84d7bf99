"""Parse a Qwen completion into content, reasoning, tool calls and refused calls.

Reads both call formats in every family, because small models mix them up:

* Hermes JSON (Qwen2.5, Qwen3): ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``
* Qwen3-Coder XML: ``<tool_call>\\n<function=NAME>\\n<parameter=P>\\nvalue\\n</parameter>\\n</function>\\n</tool_call>``

Unlike vLLM's hermes parser (one regex, ``json.loads``, all or nothing), each call stands alone: a good call
beside a bad one is kept, and every bad one is reported with a reason written for the model.
"""

from __future__ import annotations

import ast
import difflib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from tq_agents.errors import ConfigError
from tq_agents.models.base import ChatMessage, MalformedToolCall, ToolCall
from tq_agents.models.qwen._json_repair import LenientJSONError, decode_lenient, loads_lenient
from tq_agents.models.qwen._schema import check, coerce, describe, text_to_value

__all__ = ["FAMILIES", "Family", "ParsedCompletion", "parse"]

log = logging.getLogger(__name__)

Family = Literal["qwen2.5", "qwen3", "qwen3-coder"]
FAMILIES: tuple[str, ...] = ("qwen2.5", "qwen3", "qwen3-coder")

# Set by the test-suite so that an internal bug fails the test instead of turning into a reported error.
_RAISE_INTERNAL_ERRORS = os.environ.get("TQ_PARSE_RAISE") == "1"

_TC_OPEN, _TC_CLOSE = "<tool_call>", "</tool_call>"
_TH_OPEN, _TH_CLOSE = "<think>", "</think>"
_FN_CLOSE, _P_CLOSE = "</function>", "</parameter>"
_OPENER_RE = re.compile(r"<tool_call>|<function=")
_FN_RE = re.compile(r"<function=([^>\n]{0,200})>")
_PARAM_RE = re.compile(r"<parameter=([^>\n]{0,200})>")
_TAG_RE = re.compile(r"</?tool_call>")
_FENCE_RE = re.compile(r"```[\w+-]*")
_PY_CALL_RE = re.compile(r"([A-Za-z_][\w.\-]{0,100})\((.*)\)", re.DOTALL)
_PARAM_END_RE = re.compile(r"</parameter>|<parameter=|</function>|<function=")
_END_TOKENS = ("<|im_end|>", "<|endoftext|>")
_WS = " \t\r\n"
_SEPARATORS = " \t\r\n,;}]`"
_RAW_LIMIT = 4000

_HERMES_SHAPE = '<tool_call>\n{"name": "<tool name>", "arguments": {<arguments as JSON>}}\n</tool_call>'
_XML_SHAPE = "<tool_call>\n<function=NAME>\n<parameter=NAME>\nvalue\n</parameter>\n</function>\n</tool_call>"


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


# ------------------------------------------------------------------------------------------- extraction


@dataclass(slots=True)
class _Attempt:
    """One call as found in the text, before tools are checked."""

    raw: str
    name: str | None = None
    arguments: Any = None  # JSON format: the decoded value; XML: dict of parameter texts
    xml: bool = False
    problem: str | None = None  # set when the call could not be read at all
    in_think: bool = False


def _skip_ws(text: str, p: int) -> int:
    n = len(text)
    while p < n and text[p] in _WS:
        p += 1
    return p


def _next_tag(text: str, p: int) -> int:
    """Index of the next ``</tool_call>`` or ``<tool_call>`` at/after p, or len(text)."""
    m = _TAG_RE.search(text, p)
    return len(text) if m is None else m.start()


def _clip(raw: str) -> str:
    raw = raw.strip()
    return raw if len(raw) <= _RAW_LIMIT else raw[:_RAW_LIMIT] + "..."


def _json_attempt(value: Any, raw: str) -> _Attempt:
    """Turn one decoded JSON value into an attempt (name + arguments), or say what is wrong with it."""
    if not isinstance(value, dict):
        return _Attempt(
            raw, problem=f'the call must be a JSON object with "name" and "arguments", got {describe(value)}'
        )
    obj = value
    if isinstance(obj.get("function"), dict):  # OpenAI shape: {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return _Attempt(raw, problem='the call has no "name" (a string naming the tool)')
    name = name.strip()
    if "arguments" in obj:
        args = obj["arguments"]
    elif "parameters" in obj:
        args = obj["parameters"]
    else:  # flat form {"name": "f", "city": "Paris"}: the other keys are the arguments
        args = {k: v for k, v in obj.items() if k not in ("name", "type", "id")}
    if isinstance(args, str):
        s = args.strip()
        if not s:
            args = {}
        else:
            try:
                args, _ = loads_lenient(s)
            except LenientJSONError as e:
                return _Attempt(
                    raw, name=name, problem=f'"arguments" is a string that is not a JSON object ({e.reason})'
                )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return _Attempt(raw, name=name, problem=f'"arguments" must be a JSON object, got {describe(args)}')
    return _Attempt(raw, name=name, arguments=args)


def _read_json_values(seg: str, autoclose: bool) -> tuple[list[_Attempt], int, LenientJSONError | None]:
    """Read successive JSON values from ``seg`` (one block's text); returns attempts, end, and the error
    that stopped it (``reason == "junk"`` when the next thing is not JSON at all)."""
    out: list[_Attempt] = []
    p, stop = 0, len(seg)
    while True:
        while p < stop and seg[p] in _SEPARATORS:
            p += 1
        if p >= stop or seg.startswith(_TC_CLOSE, p) or seg.startswith(_TC_OPEN, p):
            return out, p, None
        if not out and seg.startswith("json", p) and seg[p - 1 : p] == "`":
            p += 4  # ```json fence
            continue
        if seg[p] not in "{[":
            return out, p, LenientJSONError("junk", p)
        try:
            value, end, _ = decode_lenient(seg, p, autoclose=autoclose)
        except LenientJSONError as e:
            return out, p, e
        raw = seg[p:end]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.extend(_json_attempt(v, raw) for v in value)
        else:
            out.append(_json_attempt(value, raw))
        p = end


def _pythonic_call(body: str) -> _Attempt | None:
    """``name(key=value, ...)`` with literal values, as some small models write a call; None if not that."""
    m = _PY_CALL_RE.fullmatch(body.strip().removeprefix("```python").removesuffix("```").strip())
    if m is None or len(body) > 20_000:
        return None
    raw = _clip(body)
    try:
        node = ast.parse(m.group(0), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(node, ast.Call):
        return None
    name = m.group(1)
    if node.args:
        return _Attempt(
            raw, name=name, problem="arguments must be given by name, as JSON: name(key=value) is not a call"
        )
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            return None
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return _Attempt(raw, name=name, problem=f"the value of {kw.arg!r} is not a literal")
    try:
        return _Attempt(raw, name=name, arguments=_as_json(args))
    except ValueError as e:
        return _Attempt(raw, name=name, problem=f"the arguments are not JSON values ({e})")


def _as_json(value: Any, depth: int = 0) -> Any:
    """A Python literal as a JSON value (tuples become lists); ValueError for sets, bytes, complex, NaN..."""
    if depth > 64:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return value
    if isinstance(value, list | tuple):
        return [_as_json(v, depth + 1) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _as_json(v, depth + 1) for k, v in value.items()}
    raise ValueError(f"{type(value).__name__} {value!r:.30}")


def _read_past_opener(text: str, p: int, nxt: int, found: list[_Attempt]) -> int | None:
    """Read one value from p straight past the ``<tool_call>`` at nxt (it was inside a string).

    Taken only when the value ends after nxt and is followed by a tag or the end; returns where scanning
    resumes, or None.
    """
    q = _skip_ws(text, p)
    if text[q : q + 1] not in ("{", "["):
        return None
    try:
        value, end, _ = decode_lenient(text, q, strict_first=False)
    except LenientJSONError:
        return None
    after = _skip_ws(text, end)
    if end <= nxt or not (after == len(text) or text.startswith(_TC_CLOSE, after) or text.startswith(_TC_OPEN, after)):
        return None
    raw = text[q:end]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        found.extend(_json_attempt(v, raw) for v in value)
    else:
        found.append(_json_attempt(value, raw))
    return after + len(_TC_CLOSE) if text.startswith(_TC_CLOSE, after) else after


def _read_json_block(text: str, p: int, found: list[_Attempt]) -> int:
    """Read the JSON body of a ``<tool_call>`` starting at p; returns where scanning resumes.

    The block's region runs to the next ``<tool_call>`` (or the end), which keeps the scan linear.
    """
    nxt = text.find(_TC_OPEN, p)
    region_end = len(text) if nxt < 0 else nxt
    seg = text[p:region_end]
    # First pass: the whole region, so a "</tool_call>" inside a string is harmless.
    attempts, end, err = _read_json_values(seg, autoclose=False)
    if err is None:
        found.extend(attempts)
        end += p
        return end + len(_TC_CLOSE) if text.startswith(_TC_CLOSE, end) else end
    if nxt >= 0 and err.truncated and err.reason.startswith("a string was never closed"):
        resume = _read_past_opener(text, p, nxt, found)  # a "<tool_call>" inside a string cut the region
        if resume is not None:
            return resume
    # Second pass: the block ends at a </tool_call>, and a missing '}' or ']' before it is repaired. The
    # first </tool_call> may sit inside a string, so a few later ones are tried too.
    first: tuple[list[_Attempt], int, LenientJSONError | None, int] | None = None
    for tries, m in enumerate(_TAG_RE.finditer(seg)):
        block_end = m.start()
        attempts, end, err = _read_json_values(seg[:block_end], autoclose=True)
        if first is None:
            first = (attempts, end, err, block_end)
        if err is None or (attempts and err.reason == "junk") or tries >= 8:
            break
        if not (err.truncated and seg.find(_TC_CLOSE, m.end()) >= 0):
            break
    else:  # no </tool_call>: the block ends at the next <tool_call> (repairable) or at the end (cut off)
        block_end = len(seg)
        attempts, end, err = _read_json_values(seg, autoclose=nxt >= 0)
    if err is not None and first is not None and (not attempts or err.reason != "junk"):
        attempts, end, err, block_end = first  # no later end did better: report the first reading
    found.extend(attempts)
    closed = p + block_end < len(text)
    ends_with_close = seg.startswith(_TC_CLOSE, block_end)
    if err is not None and attempts and err.reason == "junk" and not ends_with_close:
        return p + end  # </tool_call> missing: what follows the call is ordinary text
    if err is not None and (not attempts or err.reason != "junk"):
        raw = seg[end:block_end]
        pythonic = _pythonic_call(raw) if err.reason == "junk" and not attempts else None
        if pythonic is not None:
            found.append(pythonic)
        else:
            if err.reason == "junk":
                reason = f"expected a JSON object after <tool_call>, got {_clip(raw)[:40]!r}"
            elif err.truncated and not closed:
                reason = f"the output ended before the call was complete ({err.reason}); it was probably cut off"
            else:
                reason = f"the call is not valid JSON: {err.reason}"
            found.append(_Attempt(_clip(raw), problem=reason))
    return p + block_end + (len(_TC_CLOSE) if ends_with_close else 0)


def _param_end(text: str, p: int) -> tuple[int, int]:
    """End of a parameter value starting at p: (value_end, resume). (-1, len) if the text ends inside it.

    The value ends at ``</parameter>`` unless another parameter or the function ends first (then
    ``</parameter>`` was left out); a ``<tool_call>``/``</tool_call>`` inside a closed value is text.
    """
    m = _PARAM_END_RE.search(text, p)
    if m is None:
        t = _TAG_RE.search(text, p)
        return (-1, len(text)) if t is None else (t.start(), t.start())
    if m.group() == _P_CLOSE:
        return m.start(), m.end()
    # unclosed </parameter>: the value ends at the next tag; a </tool_call> before it ends the value only
    # when a new call follows (otherwise it is text inside the value)
    t = _TAG_RE.search(text, p, m.start())
    if t is not None and (
        t.group() == _TC_OPEN or m.group() == "<function=" or text.find(_TC_OPEN, t.end(), m.start()) >= 0
    ):
        return t.start(), t.start()
    return m.start(), m.start()


def _read_xml(text: str, p: int, found: list[_Attempt], wrapped: bool) -> int:
    """Read ``<function=NAME>...</function>`` calls starting at p; returns where scanning resumes."""
    n = len(text)
    while True:
        m = _FN_RE.match(text, p)
        if m is None:
            end = _next_tag(text, p)
            found.append(_Attempt(_clip(text[p:end]), problem="expected <function=NAME> after <tool_call>"))
            return end + len(_TC_CLOSE) if text.startswith(_TC_CLOSE, end) else end
        start = p
        name = m.group(1).strip().strip("\"'").strip()
        q = m.end()
        params: dict[str, str] = {}
        problem: str | None = None
        while True:
            q = _skip_ws(text, q)
            if text.startswith("<parameter=", q):
                pm = _PARAM_RE.match(text, q)
                if pm is None:
                    problem = "a <parameter=NAME> tag is not closed with '>'"
                    q = _next_tag(text, q)
                    break
                pname = pm.group(1).strip().strip("\"'").strip()
                vend, q = _param_end(text, pm.end())
                if vend < 0:
                    problem = f"the output ended inside the parameter {pname!r}; it was probably cut off"
                    break
                value = text[pm.end() : vend]
                if value.startswith("\n"):
                    value = value[1:]
                if value.endswith("\n"):
                    value = value[:-1]
                if pname in params and problem is None:
                    problem = f"the parameter {pname!r} is given twice"
                params[pname] = value
            elif text.startswith(_FN_CLOSE, q):
                q += len(_FN_CLOSE)
                break
            elif q >= n:
                problem = problem or "the output ended before </function>; it was probably cut off"
                break
            elif text.startswith(_TC_CLOSE, q) or text.startswith("<function=", q) or text.startswith(_TC_OPEN, q):
                break  # missing </function>
            else:  # stray text between parameters: skip to the next tag
                nxt = text.find("<", q + 1)
                q = n if nxt < 0 else nxt
        raw = text[start:q]
        if not name:
            found.append(_Attempt(_clip(raw), problem="<function=...> has no tool name"))
        elif problem:
            found.append(_Attempt(_clip(raw), name=name, problem=problem))
        else:
            found.append(_Attempt(_clip(raw), name=name, arguments=params, xml=True))
        q = _skip_ws(text, q)
        if text.startswith("<function=", q):
            p = q
            continue
        if wrapped and text.startswith(_TC_CLOSE, q):
            return q + len(_TC_CLOSE)
        return q


def _extract(text: str) -> tuple[list[_Attempt], list[str]]:
    """All call attempts in text, in order, and the text pieces outside them."""
    found: list[_Attempt] = []
    pieces: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _OPENER_RE.search(text, pos)
        if m is None:
            pieces.append(text[pos:])
            break
        pieces.append(text[pos : m.start()])
        if m.group() == "<function=":
            pos = _read_xml(text, m.start(), found, wrapped=False)
            continue
        p = _skip_ws(text, m.end())
        if text.startswith(_TC_OPEN, p):  # doubled opener: the next round reads it
            pos = p
        elif text.startswith(_TC_CLOSE, p):
            found.append(_Attempt("<tool_call></tool_call>", problem="the <tool_call> block is empty"))
            pos = p + len(_TC_CLOSE)
        elif p >= n:
            found.append(
                _Attempt(_TC_OPEN, problem="the output ended right after <tool_call>; it was probably cut off")
            )
            pos = n
        elif text.startswith("<function=", p):
            pos = _read_xml(text, p, found, wrapped=True)
        else:
            pos = _read_json_block(text, p, found)
    return found, pieces


def _split_reasoning(text: str) -> list[tuple[bool, str]]:
    """Split into (is_reasoning, text) segments.

    ``</think>`` with no ``<think>`` before it means the prompt opened the reasoning: everything before it
    is reasoning. A ``<think>`` never closed ends at the first tool call (small models forget ``</think>``
    before calling), or else at the end of the text.
    """
    out: list[tuple[bool, str]] = []
    pos = 0
    first_open = text.find(_TH_OPEN)
    first_close = text.find(_TH_CLOSE)
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        out.append((True, text[:first_close]))
        pos = first_close + len(_TH_CLOSE)
    while True:
        i = text.find(_TH_OPEN, pos)
        if i < 0:
            out.append((False, text[pos:]))
            return out
        out.append((False, text[pos:i]))
        body = i + len(_TH_OPEN)
        j = text.find(_TH_CLOSE, body)
        if j < 0:
            m = _OPENER_RE.search(text, body)
            if m is None:
                out.append((True, text[body:]))
            else:
                out.append((True, text[body : m.start()]))
                out.append((False, text[m.start() :]))
            return out
        out.append((True, text[body:j]))
        pos = j + len(_TH_CLOSE)


def _bare_json_calls(content: str, tools: _Tools) -> list[_Attempt] | None:
    """Qwen2.5(-Coder) sometimes answers with a bare (or ```json-fenced) call object and no tags.

    Taken as calls only when the whole content is that JSON and every object names a known tool.
    """
    s = content.strip()
    if s.startswith("```"):
        first_nl = s.find("\n")
        if first_nl < 0 or not s.endswith("```"):
            return None
        s = s[first_nl + 1 : -3].strip()
    if not s or s[0] not in "{[":
        return None
    try:
        value, _ = loads_lenient(s)
    except LenientJSONError:
        return None
    values = value if isinstance(value, list) else [value]
    if not values:
        return None
    for v in values:
        if not (isinstance(v, dict) and v.get("name") in tools.schemas and ("arguments" in v or "parameters" in v)):
            return None
    return [_json_attempt(v, s) for v in values]


# --------------------------------------------------------------------------------------------- checking


def _unknown_tool(name: str, tools: _Tools) -> str:
    known = list(tools.schemas)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(repr(k) for k in known[:20]) or "none"
    return f"there is no tool named {name!r}.{hint} Available tools: {listed}"


def _resolve(att: _Attempt, index: int, tools: _Tools | None) -> ToolCall | MalformedToolCall:
    def refuse(reason: str, advice: str = "") -> MalformedToolCall:
        who = f"The call to {att.name!r}" if att.name else "A tool call"
        text = f"{who} was not run: {reason}." + (f" {advice}" if advice else "")
        return MalformedToolCall(index=index, raw=att.raw, reason=text, name=att.name)

    if att.in_think:
        return refuse(
            "it was written inside the <think> reasoning. To call a tool, close the reasoning with </think> "
            "and write the call after it"
        )
    if att.problem is not None:
        shape = _XML_SHAPE if att.raw.lstrip().startswith("<function=") else _HERMES_SHAPE
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


_EDGE_TAGS = (_TC_CLOSE, _TH_CLOSE, *_END_TOKENS)


def _clean(piece: str) -> str:
    """Strip a content piece, and stray closing tags / end tokens at its edges (a mention inside stays).

    A piece that is only a code-fence marker (the model fenced its calls: ```xml ... ```) is dropped.
    """
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
    piece = piece[i:j]
    return "" if _FENCE_RE.fullmatch(piece) else piece


def _parse(text: str, tools: _Tools | None, prompt_opened_think: bool = False) -> ParsedCompletion:
    text = text.strip()
    if prompt_opened_think and not text.startswith(_TH_OPEN):
        text = _TH_OPEN + text
    for tok in _END_TOKENS:
        while text.endswith(tok):
            text = text[: -len(tok)].rstrip()
    attempts: list[_Attempt] = []
    content: list[str] = []
    reasoning: list[str] | None = None
    for is_reasoning, segment in _split_reasoning(text):
        found, pieces = _extract(segment)
        if is_reasoning:
            reasoning = [] if reasoning is None else reasoning
            if segment.strip():
                reasoning.append(segment.strip())
            for att in found:
                att.in_think = True
        else:
            content.extend(pieces)
        attempts.extend(found)
    content_text = "\n\n".join(p for p in map(_clean, content) if p)
    if not attempts and tools is not None and content_text:
        bare = _bare_json_calls("".join(content), tools)
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
    family: Family | str,
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
            argument values are typed by the schema (``"5"`` → ``5`` for an integer parameter).
        prompt_opened_think: the prompt ended with ``<think>`` (Qwen3 thinking templates), so the completion
            starts inside the reasoning: with no ``</think>`` in it, it is reasoning up to the first tool call.

    Repairs: single quotes, bare keys, trailing commas, Python literals (``True``/``False``/``None``),
    a missing ``</tool_call>``, a missing ``}`` before ``</tool_call>``, several calls in a row, several
    objects (or a JSON array of calls) in one block, ``arguments`` given as a JSON string or named
    ``parameters``, ```json fences inside the block, a ``functions.`` name prefix, an unclosed
    ``</parameter>``/``</function>``, and (with ``tools``) a bare JSON call object with no tags at all.

    Refusals: a call inside ``<think>...</think>`` (reported, never returned as a call), text cut off inside
    a call, JSON beyond repair, no ``name``, non-object arguments, unknown tool, schema violations.
    A ``<think>`` never closed ends at the first tool call; a ``</think>`` with no opener (the prompt opened
    the reasoning) makes everything before it reasoning. Call ids are ``call_<index>``, ``index`` counting
    every attempted call (good, refused and in-reasoning) in order.

    Never raises for any ``text``; raises ``ConfigError`` for an unknown ``family`` or malformed ``tools``.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown Qwen family {family!r}", hint=f"use one of: {', '.join(FAMILIES)}")
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
                    raw=_clip(text),
                    reason=f"The output could not be parsed (internal parser error: {type(exc).__name__}). "
                    f"Write each tool call as:\n{_HERMES_SHAPE}",
                )
            ],
        )
